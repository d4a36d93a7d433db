//! `cargo xtask matrix`: every target through setup-check, build, size report and
//! validation on each profile; keeps going past failures and ends with one table.

use std::io::IsTerminal;
use std::time::Instant;

use serde::Serialize;

use crate::ctx::Ctx;
use crate::flags::MatrixArgs;
use crate::targets::Target;
use crate::validate::{self, Inputs, Logits, ProfileReport};
use crate::{build, setup, size};

#[derive(Debug, Serialize)]
pub struct TargetReport {
    pub triple: String,
    pub stands_for: String,
    /// `pass`, `fail` or `build-only`.
    pub status: String,
    pub size_bytes: Option<u64>,
    pub budget_bytes: u64,
    pub is_static: Option<bool>,
    pub kernels: Vec<String>,
    pub profiles: Vec<ProfileReport>,
    pub errors: Vec<String>,
    pub seconds: f64,
}

/// Progress lines: a spinner on a terminal, plain lines in CI.
pub struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    pub fn new() -> Progress {
        let tty = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        Progress(tty.then(|| {
            let pb = indicatif::ProgressBar::new_spinner();
            pb.enable_steady_tick(std::time::Duration::from_millis(120));
            pb
        }))
    }

    pub fn step(&self, msg: String) {
        match &self.0 {
            Some(pb) => pb.set_message(msg),
            None => eprintln!("{msg}"),
        }
    }

    pub fn done(&self, msg: String) {
        match &self.0 {
            Some(pb) => pb.println(msg),
            None => eprintln!("{msg}"),
        }
    }

    pub fn finish(&self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

/// The host binary and its scalar reference logits, computed once per run.
pub fn host_reference(ctx: &Ctx, inputs: &Inputs) -> Result<Vec<Logits>, String> {
    let host = ctx.host()?;
    let bin = build::binary(&ctx.sh, &host, inputs)?;
    validate::reference(&bin, inputs)
}

/// Build, size-check and (where it runs) validate one target.
pub fn evaluate(
    ctx: &Ctx,
    t: &Target,
    reference: &[Logits],
    inputs: &Inputs,
    only_profile: Option<&str>,
    progress: &Progress,
) -> TargetReport {
    let start = Instant::now();
    let mut rep = TargetReport {
        triple: t.triple.clone(),
        stands_for: t.stands_for.clone(),
        status: "fail".into(),
        size_bytes: None,
        budget_bytes: t.size_budget,
        is_static: None,
        kernels: Vec::new(),
        profiles: Vec::new(),
        errors: Vec::new(),
        seconds: 0.0,
    };
    let missing: Vec<String> = setup::checks(t)
        .into_iter()
        .filter(|c| !c.ok)
        .map(|c| c.what)
        .collect();
    if !missing.is_empty() {
        rep.errors.push(format!(
            "{}: not ready, missing {}: run `cargo xtask setup`",
            t.triple,
            missing.join(", ")
        ));
        return rep;
    }
    progress.step(format!("{}: building", t.triple));
    let bin = match build::binary(&ctx.sh, t, inputs) {
        Ok(b) => b,
        Err(e) => {
            rep.errors.push(e);
            return rep;
        }
    };
    match size::inspect(t, &bin, &ctx.scratch.join("size")) {
        Ok(s) => {
            rep.errors.extend(size::check(t, &s));
            rep.size_bytes = Some(s.stripped_bytes);
            rep.is_static = Some(s.is_static);
            rep.kernels = s.kernels;
        }
        Err(e) => rep.errors.push(e),
    }
    if t.run == "none" {
        rep.status = if rep.errors.is_empty() {
            "build-only"
        } else {
            "fail"
        }
        .into();
        rep.seconds = start.elapsed().as_secs_f64();
        return rep;
    }
    progress.step(format!("{}: building kernel tests", t.triple));
    let tests = match build::kernel_tests(&ctx.sh, t) {
        Ok(tb) => tb,
        Err(e) => {
            rep.errors.push(e);
            None
        }
    };
    for name in t
        .profiles
        .iter()
        .filter(|p| only_profile.is_none_or(|o| o == *p))
    {
        let p = &ctx.matrix.profiles[name];
        progress.step(format!("{}: validating on {name} ({})", t.triple, p.board));
        rep.profiles.push(validate::profile(
            t,
            name,
            p,
            &bin,
            tests.as_deref(),
            reference,
            inputs,
        ));
    }
    for r in t
        .refuse_profiles
        .iter()
        .filter(|r| only_profile.is_none_or(|o| o == r.profile))
    {
        let p = &ctx.matrix.profiles[&r.profile];
        progress.step(format!("{}: start-up check on {}", t.triple, r.profile));
        rep.profiles.push(validate::refusal(t, r, p, &bin, inputs));
    }
    let profiles_ok = rep.profiles.iter().all(|p| p.status == "pass");
    rep.status = if rep.errors.is_empty() && profiles_ok {
        "pass"
    } else {
        "fail"
    }
    .into();
    rep.seconds = start.elapsed().as_secs_f64();
    rep
}

pub fn all_errors(r: &TargetReport) -> Vec<String> {
    r.errors
        .iter()
        .chain(r.profiles.iter().flat_map(|p| &p.errors))
        .cloned()
        .collect()
}

fn fmt_diff(p: &ProfileReport) -> String {
    p.max_abs_diff.map_or("-".into(), |d| format!("{d:.1e}"))
}

fn fmt_exact(p: &ProfileReport) -> String {
    match (p.bit_identical, &p.kernel_tests) {
        (Some(true), Some(_)) => "yes (tests)".into(),
        (Some(true), None) => "yes (logits)".into(),
        (Some(false), _) => "NO".into(),
        (None, _) => "-".into(),
    }
}

const COLUMNS: usize = 8;

/// One row per (target, profile): build, size vs budget, kernels, max |diff|, verdict.
pub fn table(reports: &[TargetReport], markdown: bool) -> String {
    let mut rows: Vec<[String; COLUMNS]> = Vec::new();
    for r in reports {
        let size = r.size_bytes.map_or("-".into(), |s| {
            format!(
                "{:.0} / {:.0} KiB",
                s as f64 / 1024.0,
                r.budget_bytes as f64 / 1024.0
            )
        });
        let build = if r.size_bytes.is_some() {
            "ok"
        } else {
            "FAILED"
        };
        let kernels = r.kernels.join(" ");
        if r.profiles.is_empty() {
            rows.push([
                r.triple.clone(),
                "-".into(),
                build.into(),
                size.clone(),
                kernels.clone(),
                "-".into(),
                "-".into(),
                r.status.clone(),
            ]);
        }
        for p in &r.profiles {
            let checked = if p.kernels_checked.is_empty() {
                kernels.clone()
            } else {
                p.kernels_checked.join(" ")
            };
            rows.push([
                r.triple.clone(),
                p.name.clone(),
                build.into(),
                size.clone(),
                checked,
                fmt_diff(p),
                fmt_exact(p),
                p.status.clone(),
            ]);
        }
    }
    let head: [&str; COLUMNS] = [
        "target",
        "profile",
        "build",
        "size / budget",
        "kernels",
        "max |diff|",
        "integer exact",
        "verdict",
    ];
    let mut out = String::new();
    if markdown {
        out += &format!("| {} |\n|{}\n", head.join(" | "), "---|".repeat(head.len()));
        for r in &rows {
            out += &format!("| {} |\n", r.join(" | "));
        }
        return out;
    }
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
            + "\n"
    };
    out += &line(head.to_vec());
    for r in &rows {
        out += &line(r.iter().map(String::as_str).collect());
    }
    out
}

pub fn run(ctx: &Ctx, a: &MatrixArgs) -> Result<(), String> {
    let targets = ctx.matrix.select(&a.select.target)?;
    if a.list_json {
        let list: Vec<&str> = targets.iter().map(|t| t.triple.as_str()).collect();
        println!("{}", serde_json::json!({ "target": list }));
        return Ok(());
    }
    let start = Instant::now();
    if !a.no_setup {
        setup::setup(&targets)?;
    }
    let inputs = ctx.inputs(&a.eval)?;
    let progress = Progress::new();
    progress.step("host: building the reference".into());
    let reference = host_reference(ctx, &inputs)?;
    let mut reports = Vec::new();
    for t in &targets {
        let r = evaluate(ctx, t, &reference, &inputs, None, &progress);
        progress.done(format!(
            "{:<34} {:<10} {:>6.1} s",
            r.triple, r.status, r.seconds
        ));
        reports.push(r);
    }
    progress.finish();
    let ok = reports.iter().all(|r| r.status != "fail");
    print!("\n{}", table(&reports, false));
    let errors: Vec<String> = reports.iter().flat_map(all_errors).collect();
    for e in &errors {
        println!("  - {e}");
    }
    println!(
        "matrix: {} target(s), {} failed, {:.0} s",
        reports.len(),
        reports.iter().filter(|r| r.status == "fail").count(),
        start.elapsed().as_secs_f64()
    );
    if let Some(path) = &a.json {
        let v = serde_json::json!({ "ok": ok, "targets": reports });
        std::fs::write(path, serde_json::to_string_pretty(&v).unwrap_or_default())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let md_path = a
        .markdown
        .clone()
        .or_else(|| std::env::var_os("GITHUB_STEP_SUMMARY").map(Into::into));
    if let Some(path) = md_path {
        let mut md = format!("## Target matrix\n\n{}", table(&reports, true));
        for e in &errors {
            md += &format!("\n- {e}");
        }
        std::fs::write(&path, md + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if ok {
        Ok(())
    } else {
        Err("the matrix has failures (see above)".into())
    }
}
