//! `cargo xtask validate`: the same prompt through the host's scalar reference and through
//! the target binary under every board profile, with every kernel that board has forced
//! in turn; the logits are compared position by position.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::emulate::{self, Outcome};
use crate::targets::{Profile, Refusal, Target};

/// What every run evaluates.
pub struct Inputs {
    pub models: Vec<PathBuf>,
    pub prompt_tokens: Vec<u32>,
    pub tolerance: f32,
    pub timeout: Duration,
    /// Test builds only: make this kernel's output wrong, to prove validation notices.
    pub inject_fault: Option<String>,
    pub scratch: PathBuf,
}

/// Logits of one model: (n_positions, n_vocab).
pub struct Logits {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ProfileReport {
    pub name: String,
    pub board: String,
    /// `pass` or `fail`.
    pub status: String,
    pub max_abs_diff: Option<f32>,
    pub max_rel_diff: Option<f32>,
    /// The integer paths are bit-identical to the scalar reference: the kernel exactness
    /// tests passed on this CPU or, where no test binary is built (zigbuild targets),
    /// every kernel's logits equal the host's bit for bit.
    pub bit_identical: Option<bool>,
    /// Every kernel's logits equal the host scalar reference bit for bit (SIMD heads sum
    /// in another order, so this is expected only where the head runs scalar).
    pub logits_identical: Option<bool>,
    /// The kernel exactness tests (integer accumulators vs the scalar reference) on this CPU.
    pub kernel_tests: Option<String>,
    pub kernels_checked: Vec<String>,
    pub errors: Vec<String>,
}

fn eval_args(model: &Path, inputs: &Inputs, npy: &Path) -> Vec<String> {
    let tokens: Vec<String> = inputs.prompt_tokens.iter().map(u32::to_string).collect();
    vec![
        "--model".into(),
        model.display().to_string(),
        "--prompt-tokens".into(),
        tokens.join(","),
        "--max-tokens".into(),
        "1".into(),
        "--temperature".into(),
        "0".into(),
        "--threads".into(),
        "1".into(),
        "--kv-type".into(),
        "f32".into(),
        "--logits-out".into(),
        npy.display().to_string(),
    ]
}

fn read_logits(path: &Path) -> Result<Logits, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (shape, data) =
        bitnet::npy::read_f32(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Logits { shape, data })
}

fn model_name(m: &Path) -> String {
    m.file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
}

/// The host's scalar reference logits for every model.
pub fn reference(host_bin: &Path, inputs: &Inputs) -> Result<Vec<Logits>, String> {
    let dir = inputs.scratch.join("reference");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    inputs
        .models
        .iter()
        .map(|m| {
            let npy = dir.join(format!("{}.npy", model_name(m)));
            let mut c = std::process::Command::new(host_bin);
            c.args(eval_args(m, inputs, &npy))
                .args(["--kernel", "scalar"]);
            let o = emulate::run(c, inputs.timeout)?;
            if !o.success() {
                return Err(o.describe("host scalar reference", inputs.timeout));
            }
            read_logits(&npy)
        })
        .collect()
}

struct Diff {
    max_abs: f32,
    max_rel: f32,
    /// (position, token, reference, got) of the first element beyond tolerance.
    first_bad: Option<(usize, usize, f32, f32)>,
    argmax_mismatch: Vec<usize>,
}

fn compare(r: &Logits, g: &Logits, tol: f32) -> Result<Diff, String> {
    if r.shape != g.shape {
        return Err(format!(
            "logits have shape {:?}, reference {:?}",
            g.shape, r.shape
        ));
    }
    let vocab = *r.shape.last().unwrap_or(&1);
    let mut d = Diff {
        max_abs: 0.0,
        max_rel: 0.0,
        first_bad: None,
        argmax_mismatch: Vec::new(),
    };
    for (i, (&a, &b)) in r.data.iter().zip(&g.data).enumerate() {
        let abs = (a - b).abs();
        if abs.is_nan() || !approx::abs_diff_eq!(a, b, epsilon = tol) {
            d.first_bad.get_or_insert((i / vocab, i % vocab, a, b));
        }
        d.max_abs = d
            .max_abs
            .max(if abs.is_nan() { f32::INFINITY } else { abs });
        d.max_rel = d.max_rel.max(abs / a.abs().max(1e-6));
    }
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |m, (i, &x)| if x > m.1 { (i, x) } else { m },
            )
            .0
    };
    for (p, (a, b)) in r.data.chunks(vocab).zip(g.data.chunks(vocab)).enumerate() {
        if argmax(a) != argmax(b) {
            d.argmax_mismatch.push(p);
        }
    }
    Ok(d)
}

/// Kernels the engine reports as available on this profile's CPU.
fn available_kernels(
    bin: &Path,
    t: &Target,
    p: &Profile,
    inputs: &Inputs,
) -> Result<Vec<String>, String> {
    let mut c = emulate::command(bin, t, p);
    c.args(["info", "--json", "--model"]).arg(&inputs.models[0]);
    let o = emulate::run(c, inputs.timeout)?;
    if !o.success() {
        return Err(o.describe("bitnet-infer info", inputs.timeout));
    }
    let v: serde_json::Value = serde_json::from_str(&o.stdout)
        .map_err(|e| format!("info --json printed no JSON ({e}): {}", o.stdout))?;
    v["kernels"]["available"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|k| k.as_str().map(String::from))
                .collect()
        })
        .ok_or_else(|| format!("info --json has no kernels.available: {}", o.stdout))
}

/// Validates one target on one profile against the reference.
pub fn profile(
    t: &Target,
    name: &str,
    p: &Profile,
    bin: &Path,
    test_bin: Option<&Path>,
    reference: &[Logits],
    inputs: &Inputs,
) -> ProfileReport {
    let mut rep = ProfileReport {
        name: name.to_string(),
        board: p.board.clone(),
        ..Default::default()
    };
    let where_ = format!("{} on {name}", t.triple);
    match available_kernels(bin, t, p, inputs) {
        Err(e) => rep.errors.push(format!("{where_}: {e}")),
        Ok(kernels) => {
            if let Some(profile_kernels) = &p.kernels {
                let expected: std::collections::BTreeSet<&String> =
                    profile_kernels.iter().chain(&t.compiled_kernels).collect();
                let expected: Vec<String> = expected.into_iter().cloned().collect();
                let got: std::collections::BTreeSet<&String> = kernels.iter().collect();
                if got.len() != expected.len() || expected.iter().any(|k| !got.contains(k)) {
                    rep.errors.push(format!(
                        "{where_}: the engine detects kernels [{}], profile {name} ({}) expects [{}]",
                        kernels.join(", "),
                        p.features.join("+"),
                        expected.join(", ")
                    ));
                }
            }
            let mut identical = true;
            let (mut max_abs, mut max_rel) = (0.0f32, 0.0f32);
            let dir = inputs.scratch.join(&t.triple).join(name);
            let _ = std::fs::create_dir_all(&dir);
            for k in &kernels {
                for (m, r) in inputs.models.iter().zip(reference) {
                    let npy = dir.join(format!("{k}-{}.npy", model_name(m)));
                    let what = format!("{where_}, kernel {k}, {}", model_name(m));
                    match run_one(bin, t, p, k, m, &npy, inputs).and_then(|_| read_logits(&npy)) {
                        Err(e) => rep.errors.push(explain(&what, &e, k, name, p)),
                        Ok(g) => match compare(r, &g, inputs.tolerance) {
                            Err(e) => rep.errors.push(format!("{what}: {e}")),
                            Ok(d) => {
                                identical &= d.max_abs == 0.0;
                                max_abs = max_abs.max(d.max_abs);
                                max_rel = max_rel.max(d.max_rel);
                                if let Some((pos, tok, a, b)) = d.first_bad {
                                    rep.errors.push(format!(
                                        "{what}: logits differ at position {pos}, token {tok}: {b} vs reference {a} (max |diff| {} > {})",
                                        d.max_abs, inputs.tolerance
                                    ));
                                } else if !d.argmax_mismatch.is_empty() {
                                    rep.errors.push(format!(
                                        "{what}: argmax differs from the reference at positions {:?}",
                                        d.argmax_mismatch
                                    ));
                                }
                            }
                        },
                    }
                }
            }
            rep.kernels_checked = kernels;
            rep.max_abs_diff = Some(max_abs);
            rep.max_rel_diff = Some(max_rel);
            rep.logits_identical = Some(identical && rep.errors.is_empty());
        }
    }
    if let Some(tb) = test_bin {
        let mut c = emulate::command(tb, t, p);
        c.args(["kernels::", "--test-threads", "1"]);
        rep.kernel_tests = Some(match emulate::run(c, inputs.timeout * 4) {
            Ok(o) if o.success() => "pass".into(),
            Ok(o) => {
                rep.errors.push(o.describe(
                    &format!("{where_}: kernel exactness tests"),
                    inputs.timeout * 4,
                ));
                "fail".into()
            }
            Err(e) => {
                rep.errors.push(e);
                "fail".into()
            }
        });
    }
    rep.bit_identical = match &rep.kernel_tests {
        Some(t) => Some(t == "pass"),
        None => rep.logits_identical,
    };
    rep.status = if rep.errors.is_empty() {
        "pass"
    } else {
        "fail"
    }
    .into();
    rep
}

fn run_one(
    bin: &Path,
    t: &Target,
    p: &Profile,
    kernel: &str,
    model: &Path,
    npy: &Path,
    inputs: &Inputs,
) -> Result<(), String> {
    let mut c = emulate::command(bin, t, p);
    c.args(eval_args(model, inputs, npy))
        .args(["--kernel", kernel]);
    if let Some(k) = &inputs.inject_fault {
        c.env("BITNET_INJECT_FAULT", k);
    }
    let o: Outcome = emulate::run(c, inputs.timeout)?;
    if o.success() {
        Ok(())
    } else if o.illegal_instruction() {
        Err("SIGILL".into())
    } else {
        Err(o.describe("run", inputs.timeout))
    }
}

fn explain(what: &str, e: &str, kernel: &str, profile: &str, p: &Profile) -> String {
    if e == "SIGILL" {
        format!(
            "{what}: died of SIGILL: kernel {kernel} executed an instruction profile {profile} ({}) lacks; features there: {}",
            p.board,
            p.features.join(", ")
        )
    } else {
        format!("{what}: {e}")
    }
}

/// On a profile lacking a feature the binary was built for, it must refuse to start with
/// exit code 2 and a message naming the feature, never die of SIGILL.
pub fn refusal(t: &Target, r: &Refusal, p: &Profile, bin: &Path, inputs: &Inputs) -> ProfileReport {
    let mut rep = ProfileReport {
        name: format!("{} (must refuse)", r.profile),
        board: p.board.clone(),
        ..Default::default()
    };
    let mut c = emulate::command(bin, t, p);
    c.args(["info", "--model"]).arg(&inputs.models[0]);
    let what = format!("{} on {} (built with +{})", t.triple, r.profile, r.feature);
    match emulate::run(c, inputs.timeout) {
        Err(e) => rep.errors.push(e),
        Ok(o) if o.code == Some(2) && o.stderr.contains(&r.feature) => {}
        Ok(o) if o.illegal_instruction() => rep.errors.push(format!(
            "{what}: died of SIGILL; the start-up feature check did not speak first"
        )),
        Ok(o) => rep.errors.push(format!(
            "{what}: expected exit code 2 and a message naming {}; {}",
            r.feature,
            o.describe("got", inputs.timeout)
        )),
    }
    rep.status = if rep.errors.is_empty() {
        "pass"
    } else {
        "fail"
    }
    .into();
    rep
}

/// The `validate` command.
pub fn run(ctx: &crate::ctx::Ctx, a: &crate::flags::ValidateArgs) -> Result<(), String> {
    let targets = ctx.matrix.select(&a.select.target)?;
    if let Some(cpu) = &a.cpu {
        if !ctx.matrix.profiles.contains_key(cpu) {
            return Err(format!(
                "unknown profile '{cpu}'; qemu/profiles.toml defines: {}",
                ctx.matrix
                    .profiles
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let inputs = ctx.inputs(&a.eval)?;
    let progress = crate::matrix::Progress::new();
    progress.step("host: building the reference".into());
    let reference = crate::matrix::host_reference(ctx, &inputs)?;
    let mut failed = 0;
    for t in &targets {
        let r = crate::matrix::evaluate(ctx, t, &reference, &inputs, a.cpu.as_deref(), &progress);
        for p in &r.profiles {
            progress.done(format!(
                "{} {:<22} {:<5} kernels [{}] max |diff| {} max rel {} bit-identical {} kernel tests {}",
                t.triple,
                p.name,
                p.status,
                p.kernels_checked.join(", "),
                p.max_abs_diff.map_or("-".into(), |d| format!("{d:.2e}")),
                p.max_rel_diff.map_or("-".into(), |d| format!("{d:.2e}")),
                p.bit_identical.map_or("-".into(), |b| b.to_string()),
                p.kernel_tests.as_deref().unwrap_or("-"),
            ));
        }
        for e in crate::matrix::all_errors(&r) {
            progress.done(format!("  - {e}"));
        }
        if r.status == "fail" {
            failed += 1;
        }
    }
    progress.finish();
    if failed > 0 {
        return Err(format!("validation failed on {failed} target(s)"));
    }
    Ok(())
}
