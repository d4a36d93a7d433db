//! `cargo xtask counters`: how much work a token is on each board, without the board.
//! Every target's binary runs under a QEMU built with TCG plugins (`qemu.rs`) and the
//! counting plugin (`qemu/counters`), once per board profile and kernel, teacher-forced
//! through a prompt and decode tokens; the plugin counts the guest instructions and the
//! bytes loaded and stored, per function, split at the phase marks `bitnet-infer` calls.
//! Out come instructions and bytes per prefill and per decode token, per part of a token
//! (`parts.rs`), as a table, JSON and an SVG plot (`report.rs`), and the baseline the
//! matrix gates on (`baseline.rs`).
//!
//! Wall time under emulation says nothing; these counts say exactly what a kernel
//! executes. They do not say how long a board's loads wait: that is a board's job.

pub mod baseline;
mod count;
mod parts;
pub mod qemu;
mod report;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::flags::CountersArgs;
use crate::pipeline::{build, evaluate, inputs};
use crate::progress::Progress;
use crate::report::{Failure, FailureKind};
use crate::targets::{Profile, Target};
pub use count::Phase;

/// The model the matrix gates on: the bundled fixture of the 2B4T architecture.
pub const GATE_MODEL: &str = "fixtures/tiny-bitnet-tq2_0.gguf";
/// A counted 2B4T-shape token takes 20 s (dotprod) to a minute (scalar) under QEMU.
const LIMIT: Duration = Duration::from_secs(900);

/// One counted run: a model on one target, board profile and kernel.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub model: String,
    pub triple: String,
    pub profile: String,
    pub board: String,
    pub kernel: String,
    pub prefill_tokens: usize,
    pub decode_tokens: usize,
    /// Whole phases, summed over their tokens.
    pub prefill: Phase,
    pub decode: Phase,
}

/// A phase per token.
pub struct PerToken {
    pub instructions: f64,
    pub loaded_bytes: f64,
    pub stored_bytes: f64,
}

impl Row {
    pub fn key(&self) -> String {
        baseline::key(&self.model, &self.triple, &self.profile, &self.kernel)
    }

    fn per_token(p: &Phase, n: usize) -> PerToken {
        let n = n.max(1) as f64;
        PerToken {
            instructions: p.instructions as f64 / n,
            loaded_bytes: p.loaded_bytes as f64 / n,
            stored_bytes: p.stored_bytes as f64 / n,
        }
    }

    pub fn prefill_per_token(&self) -> PerToken {
        Row::per_token(&self.prefill, self.prefill_tokens)
    }

    pub fn decode_per_token(&self) -> PerToken {
        Row::per_token(&self.decode, self.decode_tokens)
    }

    /// What the baseline holds of this row: instructions per prefill and decode token.
    pub fn entry(&self) -> baseline::Entry {
        baseline::Entry {
            prefill: self.prefill_per_token().instructions,
            decode: self.decode_per_token().instructions,
        }
    }
}

/// A model and the tokens a counted run feeds it.
pub struct Model {
    pub path: PathBuf,
    pub name: String,
    pub prompt: Vec<u32>,
    pub decode: Vec<u32>,
}

impl Model {
    /// A model with its reference's prompt and decode tokens (fixtures), or one prompt
    /// token and one decode token (any other model: one token of each phase).
    pub fn new(path: &Path) -> Result<Model, String> {
        let case = inputs::case(path, None)?;
        let (prompt, decode) = match case.decode {
            Some(d) if !d.is_empty() => (case.prompt, d),
            _ => (vec![1], vec![2]),
        };
        Ok(Model {
            path: path.to_path_buf(),
            name: case.name,
            prompt,
            decode,
        })
    }

    fn workload(&self) -> count::Workload<'_> {
        count::Workload {
            model: &self.path,
            prompt: &self.prompt,
            decode: &self.decode,
        }
    }
}

/// Where a counted run leaves the plugin's output.
fn tsv_path(scratch: &Path, model: &str, triple: &str, profile: &str, kernel: &str) -> PathBuf {
    scratch.join(format!("{model}-{triple}-{profile}-{kernel}.tsv"))
}

/// Rows of an earlier run, their parts derived again from the plugin's outputs where those
/// are still in `scratch` (the rules of `parts.rs` may have changed since).
fn reread(f: &Path, scratch: &Path) -> Result<Vec<Row>, String> {
    let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
    let mut rows: Vec<Row> =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", f.display()))?;
    for r in &mut rows {
        let tsv = tsv_path(scratch, &r.model, &r.triple, &r.profile, &r.kernel);
        if let Ok(text) = std::fs::read_to_string(&tsv) {
            let mut phases = count::parse(&text).map_err(|e| format!("{}: {e}", tsv.display()))?;
            let mut take = |name: &str| phases.remove(name).unwrap_or_default();
            let (prefill, decode) = (take("prefill"), take("decode"));
            if (prefill.instructions, decode.instructions)
                != (r.prefill.instructions, r.decode.instructions)
            {
                return Err(format!(
                    "{}: does not match {} (a later run overwrote it?)",
                    tsv.display(),
                    f.display()
                ));
            }
            (r.prefill, r.decode) = (prefill, decode);
        }
    }
    Ok(rows)
}

/// Counts `model` on `t`'s binary `bin` on profile `name` with `kernel`.
pub fn count_one(
    t: &Target,
    name: &str,
    p: &Profile,
    bin: &Path,
    kernel: &str,
    model: &Model,
    scratch: &Path,
) -> Result<Row, String> {
    let _ = std::fs::create_dir_all(scratch);
    let out = tsv_path(scratch, &model.name, &t.triple, name, kernel);
    let c = count::run(bin, t, p, kernel, &model.workload(), &out, LIMIT).map_err(|e| {
        format!(
            "{} on {name}, kernel {kernel}, {}: {e}",
            t.triple, model.name
        )
    })?;
    Ok(Row {
        model: model.name.clone(),
        triple: t.triple.clone(),
        profile: name.to_string(),
        board: p.board.clone(),
        kernel: kernel.to_string(),
        prefill_tokens: model.prompt.len(),
        decode_tokens: model.decode.len(),
        prefill: c.prefill,
        decode: c.decode,
    })
}

/// The matrix's gate on one board profile: every kernel counted on the gate model and
/// held to the baseline. Native profiles are not counted (QEMU cannot host them).
pub fn gate(
    t: &Target,
    name: &str,
    p: &Profile,
    bin: &Path,
    kernels: &[String],
    b: &baseline::Baseline,
    scratch: &Path,
) -> (Vec<Row>, Vec<Failure>) {
    let (mut rows, mut failures) = (Vec::new(), Vec::new());
    if !t.emulated_on(p) {
        return (rows, failures);
    }
    let model = match Model::new(&crate::project_root().join(GATE_MODEL)) {
        Ok(m) => m,
        Err(e) => return (rows, vec![Failure::new(FailureKind::Counters, e)]),
    };
    for k in kernels {
        match count_one(t, name, p, bin, k, &model, scratch) {
            Ok(r) => {
                if let Some(why) = baseline::judge(b, &r.key(), r.entry()) {
                    failures.push(Failure::new(FailureKind::Counters, why));
                }
                rows.push(r);
            }
            Err(e) => failures.push(Failure::new(FailureKind::Counters, e)),
        }
    }
    (rows, failures)
}

pub fn run(ctx: &Ctx, a: &CountersArgs) -> Result<(), String> {
    let rows = match &a.from {
        Some(f) => reread(f, &ctx.scratch.join("counters"))?,
        None => count_all(ctx, a)?,
    };
    publish(ctx, a, &rows)
}

/// Every selected target, profile, kernel and model, counted.
fn count_all(ctx: &Ctx, a: &CountersArgs) -> Result<Vec<Row>, String> {
    let targets: Vec<Target> = ctx
        .matrix
        .select(&a.select.target)?
        .into_iter()
        .filter(|t| {
            t.profiles
                .iter()
                .any(|p| t.emulated_on(&ctx.matrix.profiles[p]))
        })
        .collect();
    if targets.is_empty() {
        return Err("none of the selected targets has a profile that runs under QEMU".into());
    }
    if !a.no_setup {
        crate::setup::setup(&ctx.matrix, &targets)?;
    }
    qemu::ensure(targets.iter().any(Target::is_bare_metal))?;
    let models: Vec<Model> = if a.model.is_empty() {
        let big = crate::bench_model::ensure("bitnet", "tq2_0", "f16", false)?;
        vec![Model::new(&ctx.root.join(GATE_MODEL))?, Model::new(&big)?]
    } else {
        a.model
            .iter()
            .map(|m| Model::new(&ctx.root.join(m)))
            .collect::<Result<_, _>>()?
    };
    let scratch = ctx.scratch.join("counters");
    let progress = Progress::new();
    let mut rows = Vec::new();
    for t in &targets {
        progress.step(format!("{}: building", t.triple));
        let bin = build::binary(&ctx.sh, t, None)?;
        for name in t.profiles.iter().filter(|p| {
            (a.cpu.is_empty() || a.cpu.contains(p)) && t.emulated_on(&ctx.matrix.profiles[*p])
        }) {
            let p = &ctx.matrix.profiles[name];
            let kernels = evaluate::expected_kernels(t, p).unwrap_or_default();
            for k in &kernels {
                for m in models.iter().filter(|m| fits(t, m)) {
                    progress.step(format!("{} on {name}: {k}, {}", t.triple, m.name));
                    let r = count_one(t, name, p, &bin, k, m, &scratch)?;
                    progress.done(format!(
                        "{:<30} {:<12} {:<10} {:<34} decode {:>14.0} instructions/token",
                        t.triple,
                        name,
                        k,
                        m.name,
                        r.decode_per_token().instructions
                    ));
                    rows.push(r);
                }
            }
        }
    }
    progress.finish();
    if rows.is_empty() {
        return Err(format!("no profile matches --cpu {}", a.cpu.join(",")));
    }
    Ok(rows)
}

/// Whether `t` can hold `m`: a bare-metal image reads the whole model into the RAM of its
/// machine file (512 MiB on `virt`, a 256 MiB heap on the Cortex-M55), so the 2B4T-shape
/// model (1.2 GB) is counted on the Linux triples only; their kernels are the same code.
fn fits(t: &Target, m: &Model) -> bool {
    const BARE_METAL_MODEL_LIMIT: u64 = 192 << 20;
    !t.is_bare_metal()
        || std::fs::metadata(&m.path).is_ok_and(|f| f.len() <= BARE_METAL_MODEL_LIMIT)
}

/// The table, JSON, plot, and on request the README, the baseline and the check.
fn publish(ctx: &Ctx, a: &CountersArgs, rows: &[Row]) -> Result<(), String> {
    let md = report::markdown(rows);
    print!("\n{md}");
    let out = ctx.root.join("target/counters");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    // Rows read with --from are written again only where asked.
    let json = match (&a.json, &a.from) {
        (Some(p), _) => Some(p.clone()),
        (None, None) => Some(out.join("counters.json")),
        (None, Some(_)) => None,
    };
    if let Some(json) = &json {
        let text = serde_json::to_string_pretty(rows).map_err(|e| e.to_string())?;
        std::fs::write(json, text).map_err(|e| format!("{}: {e}", json.display()))?;
    }
    let svg = match (&a.svg, a.readme) {
        (Some(p), _) => p.clone(),
        (None, true) => ctx.root.join(report::README_PLOT),
        (None, false) => out.join("counters.svg"),
    };
    std::fs::write(&svg, report::svg(rows)).map_err(|e| format!("{}: {e}", svg.display()))?;
    println!(
        "counters: {} runs; JSON {}, plot {}",
        rows.len(),
        json.map_or("not written".into(), |j| j.display().to_string()),
        svg.display()
    );
    if a.readme {
        report::into_readme(&ctx.root.join("README.md"), &md)?;
        println!("README.md: table updated; plot {}", report::README_PLOT);
    }
    let base_path = a.baseline.clone().unwrap_or_else(baseline::path);
    if a.save_baseline {
        baseline::save(&base_path, rows)?;
        println!("baseline: {} updated", base_path.display());
    }
    if a.check {
        let b = baseline::load(&base_path)?;
        let problems: Vec<String> = rows
            .iter()
            .filter_map(|r| baseline::judge(&b, &r.key(), r.entry()))
            .collect();
        if !problems.is_empty() {
            return Err(format!(
                "{} of {} counts fail {}:\n  {}",
                problems.len(),
                rows.len(),
                base_path.display(),
                problems.join("\n  ")
            ));
        }
        println!(
            "baseline: all {} counts within +{:.0}% of {}",
            rows.len(),
            baseline::GROWTH_LIMIT * 100.0,
            base_path.display()
        );
    }
    Ok(())
}
