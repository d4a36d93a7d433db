//! `cargo xtask matrix`: setup, then every target through the pipeline; keeps going past
//! failures and ends with one table (text, and JSON / Markdown on request).

use std::time::Instant;

use crate::ctx::Ctx;
use crate::flags::MatrixArgs;
use crate::pipeline::{build, evaluate, reference};
use crate::progress::Progress;
use crate::report::{table, MatrixReport, Status};

pub fn run(ctx: &Ctx, a: &MatrixArgs) -> Result<(), String> {
    let targets = ctx.matrix.select(&a.select.target)?;
    if a.list_json {
        let list: Vec<&str> = targets.iter().map(|t| t.triple.as_str()).collect();
        println!("{}", serde_json::json!({ "target": list }));
        return Ok(());
    }
    let start = Instant::now();
    crate::disk::warn_if_short();
    if !a.no_setup {
        let mut with_host = targets.clone();
        if !with_host.iter().any(|t| t.is_host()) {
            with_host.push(ctx.host()?);
        }
        crate::setup::setup(&ctx.matrix, &with_host)?;
    }
    let mut inputs = ctx.inputs(&a.eval)?;
    // A fault-injection build counts other instructions: the gate is for real builds.
    if !a.no_counters && inputs.inject_fault.is_none() {
        inputs.counters = Some(crate::counters::baseline::load(
            &crate::counters::baseline::path(),
        )?);
    }
    let progress = Progress::new();
    progress.step("host: building the reference".into());
    let host_bin = build::binary(&ctx.sh, &ctx.host()?, None)?;
    let host = reference::host_runs(&host_bin, &inputs)?;
    let mut reports = Vec::new();
    for t in &targets {
        let r = evaluate::target(&ctx.sh, &ctx.matrix, t, &host, &inputs, None, &|m| {
            progress.step(m)
        });
        progress.done(format!(
            "{:<34} {:<10} {:>6.1} s",
            r.triple,
            r.status.word(),
            r.seconds
        ));
        reports.push(r);
    }
    progress.finish();
    let report = MatrixReport {
        ok: reports.iter().all(|r| r.status != Status::Fail),
        host: host_description(),
        targets: reports,
    };
    print!("\n{}", table::render(&report, false));
    println!(
        "matrix: {} target(s), {} failed, {:.0} s",
        report.targets.len(),
        report
            .targets
            .iter()
            .filter(|r| r.status == Status::Fail)
            .count(),
        start.elapsed().as_secs_f64()
    );
    if let Some(path) = &a.json {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&report).unwrap_or_default(),
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let md_path = a
        .markdown
        .clone()
        .or_else(|| std::env::var_os("GITHUB_STEP_SUMMARY").map(Into::into));
    if let Some(path) = md_path {
        let md = format!("## Target matrix\n\n{}", table::render(&report, true));
        std::fs::write(&path, md).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if report.ok {
        Ok(())
    } else {
        Err("the matrix has failures (see above)".into())
    }
}

/// The host's CPU model and core count, for the report.
pub fn host_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".to_string(), |(_, m)| m.trim().to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} CPUs")
}
