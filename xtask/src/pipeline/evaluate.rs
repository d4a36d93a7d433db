//! One target through the pipeline: readiness, build, size and symbol checks, then on
//! each board profile: the kernels the engine detects, every kernel's teacher-forced
//! logits against the host scalar run and the independent reference (numpy or transformers), and the exactness tests'
//! own per-kernel counts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use xshell::Shell;

use super::build;
use super::emulate::{self, Ending};
use super::inputs::{Inputs, KV_TYPES};
use super::reference::HostRun;
use super::runs::{self, RunError, Spec};
use crate::checks::{kernel_tests, logits, size};
use crate::report::{
    Failure, FailureKind, KernelLogits, ProfileReport, Status, TargetReport, Unproven,
};
use crate::targets::{Matrix, Profile, Refusal, Target};

/// One target's binary on one board profile: where every run of `profile` happens.
struct Board<'a> {
    t: &'a Target,
    name: &'a str,
    p: &'a Profile,
    bin: &'a Path,
}

impl Board<'_> {
    /// `<triple> on <profile>`, the prefix of every message.
    fn where_(&self) -> String {
        format!("{} on {}", self.t.triple, self.name)
    }

    fn command(&self, bin: &Path) -> std::process::Command {
        emulate::command(bin, self.t, self.p)
    }
}

/// What `bitnet-infer info --json` says about kernels on this CPU.
struct Detected {
    available: Vec<String>,
    logits_exact: BTreeSet<String>,
}

fn detect(b: &Board, inputs: &Inputs) -> Result<Detected, String> {
    let mut c = b.command(b.bin);
    c.args(["info", "--json", "--model"])
        .arg(&inputs.cases[0].model);
    let o = emulate::run(c, inputs.timeout)?;
    if !o.success() {
        return Err(o.describe("bitnet-infer info", inputs.timeout));
    }
    let v: serde_json::Value = serde_json::from_str(&o.stdout)
        .map_err(|e| format!("info --json printed no JSON ({e}): {}", o.stdout))?;
    let list = |key: &str| -> Option<Vec<String>> {
        v["kernels"][key].as_array().map(|a| {
            a.iter()
                .filter_map(|k| k.as_str().map(String::from))
                .collect()
        })
    };
    Ok(Detected {
        available: list("available")
            .ok_or_else(|| format!("info --json has no kernels.available: {}", o.stdout))?,
        logits_exact: list("logits_exact")
            .ok_or_else(|| format!("info --json has no kernels.logits_exact: {}", o.stdout))?
            .into_iter()
            .collect(),
    })
}

/// The kernels a profile must detect: its list (or the host's CPU flags for the native
/// profile) plus those the target's rustflags compile in.
pub fn expected_kernels(t: &Target, p: &Profile) -> Option<Vec<String>> {
    let mut k: BTreeSet<String> = p.expected_kernels()?.into_iter().collect();
    k.extend(t.compiled_kernels.iter().cloned());
    Some(k.into_iter().collect())
}

/// Every kernel x model x KV type x thread count: teacher-forced logits compared with
/// the host scalar run (tolerance, and bit for bit where the engine declares it) and with
/// the independent reference (numpy for fixtures, transformers for trained models).
fn logits_runs(
    b: &Board,
    d: &Detected,
    host: &[HostRun],
    inputs: &Inputs,
    rep: &mut ProfileReport,
) {
    let (name, p) = (b.name, b.p);
    let where_ = b.where_();
    let dir = inputs.scratch.join(&b.t.triple).join(name);
    let _ = std::fs::create_dir_all(&dir);
    let (mut vs_host, mut vs_oracle) = (0.0f32, None::<f32>);
    for k in &d.available {
        let mut kl = KernelLogits {
            declared_exact: d.logits_exact.contains(k),
            logits_bit_identical: true,
            ..Default::default()
        };
        for (case, h) in inputs.cases.iter().zip(host) {
            kl.prefill_positions = case.prompt.len();
            kl.decode_positions = h.decode.len();
            for &threads in &p.threads {
                // More threads change only the split of rows: the default KV type shows it.
                let kvs: &[&str] = if threads == 1 { &KV_TYPES } else { &["f16"] };
                for &kv in kvs {
                    let s = Spec {
                        kernel: k,
                        kv,
                        threads,
                    };
                    let what = format!("{where_}, {}, {}", s.label(), case.name);
                    let got = match runs::run(b.command(b.bin), case, &h.decode, &s, &dir, inputs) {
                        Ok(g) => g,
                        Err(RunError::IllegalInstruction) => {
                            rep.failures.push(Failure::new(
                                FailureKind::IllegalInstruction,
                                format!(
                                    "{what}: died of SIGILL: kernel {k} executed an instruction profile {name} ({}) lacks; features there: {}",
                                    p.board,
                                    p.features.join(", ")
                                ),
                            ));
                            kl.logits_bit_identical = false;
                            continue;
                        }
                        Err(RunError::Other(e)) => {
                            rep.failures
                                .push(Failure::new(FailureKind::Run, format!("{what}: {e}")));
                            kl.logits_bit_identical = false;
                            continue;
                        }
                    };
                    kl.runs += 1;
                    judge_logits(
                        &what,
                        &got,
                        &h.logits[kv],
                        inputs,
                        &mut kl,
                        rep,
                        Against::Host,
                    );
                    if let Some(o) = case.oracle.get(kv) {
                        let before = kl.max_abs_vs_host;
                        let against = Against::Oracle(case.oracle_source);
                        judge_logits(&what, &got, o, inputs, &mut kl, rep, against);
                        kl.max_abs_vs_host = before;
                    }
                }
            }
        }
        if kl.declared_exact && !kl.logits_bit_identical && kl.runs > 0 {
            rep.failures.push(Failure::new(
                FailureKind::NotBitIdentical,
                format!("{where_}, kernel {k}: declared logits-exact (info --json kernels.logits_exact) but its logits differ from the host scalar run's"),
            ));
        }
        vs_host = vs_host.max(kl.max_abs_vs_host);
        if let Some(o) = kl.max_abs_vs_oracle {
            vs_oracle = Some(vs_oracle.map_or(o, |v: f32| v.max(o)));
        }
        rep.kernels.insert(k.clone(), kl);
    }
    rep.max_abs_vs_host = Some(vs_host);
    rep.max_abs_vs_oracle = vs_oracle;
    rep.logits_bit_identical =
        Some(!rep.kernels.is_empty() && rep.kernels.values().all(|k| k.logits_bit_identical));
}

/// What a run's logits are judged against.
#[derive(Clone, Copy)]
enum Against {
    /// The host scalar run: the product's promise.
    Host,
    /// An independent reference, named (the numpy reference, transformers).
    Oracle(&'static str),
}

/// One comparison of a run's logits.
#[allow(clippy::too_many_arguments)]
fn judge_logits(
    what: &str,
    got: &logits::Logits,
    reference: &logits::Logits,
    inputs: &Inputs,
    kl: &mut KernelLogits,
    rep: &mut ProfileReport,
    against: Against,
) {
    let host = matches!(against, Against::Host);
    let (kind, against) = match against {
        Against::Host => (FailureKind::LogitsVsHost, "the host scalar run"),
        Against::Oracle(source) => (FailureKind::LogitsVsOracle, source),
    };
    let d = match logits::compare(reference, got, inputs.tolerance) {
        Ok(d) => d,
        Err(e) => {
            rep.failures
                .push(Failure::new(kind, format!("{what}: {e}")));
            return;
        }
    };
    if host {
        kl.logits_bit_identical &= d.bit_identical;
        kl.max_abs_vs_host = kl.max_abs_vs_host.max(d.max_abs);
    } else {
        kl.max_abs_vs_oracle = Some(kl.max_abs_vs_oracle.unwrap_or(0.0).max(d.max_abs));
    }
    if let Some((pos, tok, a, b)) = d.first_bad {
        rep.failures.push(Failure::new(
            kind,
            format!(
                "{what}: logits differ from {against} at position {pos}, token {tok}: {b} vs {a} (max |diff| {} > {})",
                d.max_abs, inputs.tolerance
            ),
        ));
    } else if !d.argmax_mismatch.is_empty() {
        rep.failures.push(Failure::new(
            FailureKind::Argmax,
            format!(
                "{what}: argmax differs from {against} at positions {:?}",
                d.argmax_mismatch
            ),
        ));
    }
}

/// The exactness tests on this CPU, judged by their own per-kernel counts.
fn kernel_test_run(b: &Board, test_bin: &Path, inputs: &Inputs, rep: &mut ProfileReport) {
    let where_ = b.where_();
    let mut c = b.command(test_bin);
    if b.t.is_bare_metal() {
        c.arg("--kernel-tests");
    } else {
        c.args(["kernels::", "--test-threads", "1", "--nocapture"]);
    }
    let limit = inputs.timeout * 4;
    let mut ok = true;
    let counts = match emulate::run(c, limit) {
        Err(e) => {
            rep.failures.push(Failure::new(
                FailureKind::Run,
                format!("{where_}: kernel exactness tests: {e}"),
            ));
            ok = false;
            BTreeMap::new()
        }
        Ok(o) => {
            if o.ending() != Ending::Exit(0) {
                ok = false;
                rep.failures.push(Failure::new(
                    FailureKind::KernelTest,
                    o.describe(&format!("{where_}: kernel exactness tests"), limit),
                ));
            }
            kernel_tests::parse(&o.stdout)
        }
    };
    let expected = expected_kernels(b.t, b.p).unwrap_or_default();
    let judged = kernel_tests::judge(&counts, &expected, &where_);
    ok &= judged.is_empty();
    rep.failures.extend(judged);
    rep.kernel_tests = Some(counts);
    rep.kernel_tests_passed = Some(ok);
}

/// Validates one target on one profile.
pub fn profile(
    t: &Target,
    name: &str,
    p: &Profile,
    bin: &Path,
    test_bin: Option<&Path>,
    host: &[HostRun],
    inputs: &Inputs,
) -> ProfileReport {
    let mut rep = ProfileReport::new(name, &p.board);
    rep.threads = p.threads.clone();
    let b = Board { t, name, p, bin };
    let where_ = b.where_();
    match detect(&b, inputs) {
        Err(e) => rep
            .failures
            .push(Failure::new(FailureKind::Run, format!("{where_}: {e}"))),
        Ok(d) => {
            if let Some(expected) = expected_kernels(t, p) {
                let got: BTreeSet<&String> = d.available.iter().collect();
                if got != expected.iter().collect() {
                    rep.failures.push(Failure::new(
                        FailureKind::KernelsDetected,
                        format!(
                            "{where_}: the engine detects kernels [{}], profile {name} ({}) expects [{}]",
                            d.available.join(", "),
                            if p.features.is_empty() { "host CPU flags".into() } else { p.features.join("+") },
                            expected.join(", ")
                        ),
                    ));
                }
            }
            logits_runs(&b, &d, host, inputs, &mut rep);
            if let Some(baseline) = &inputs.counters {
                let scratch = inputs.scratch.join("counters");
                let (rows, failures) =
                    crate::counters::gate(t, name, p, bin, &d.available, baseline, &scratch);
                rep.instructions_per_token = rows
                    .iter()
                    .map(|r| {
                        let e = r.entry();
                        (r.kernel.clone(), [e.prefill, e.decode])
                    })
                    .collect();
                rep.failures.extend(failures);
            }
        }
    }
    if let Some(tb) = test_bin {
        kernel_test_run(&b, tb, inputs, &mut rep);
    }
    rep.status = Status::of(&rep.failures);
    rep
}

/// On a profile lacking a feature the binary was built for, it must refuse to start with
/// exit code 2 and a message naming the feature, never die of SIGILL.
pub fn refusal(t: &Target, r: &Refusal, p: &Profile, bin: &Path, inputs: &Inputs) -> ProfileReport {
    let mut rep = ProfileReport::new(&format!("{} (must refuse)", r.profile), &p.board);
    rep.refusal = true;
    let mut c = emulate::command(bin, t, p);
    c.args(["info", "--model"]).arg(&inputs.cases[0].model);
    let what = format!("{} on {} (built with +{})", t.triple, r.profile, r.feature);
    match emulate::run(c, inputs.timeout) {
        Err(e) => rep.failures.push(Failure::new(FailureKind::Run, e)),
        Ok(o) if o.code == Some(2) && o.stderr.contains(&r.feature) => {}
        Ok(o) if o.illegal_instruction() => rep.failures.push(Failure::new(
            FailureKind::IllegalInstruction,
            format!("{what}: died of SIGILL; the start-up feature check did not speak first"),
        )),
        Ok(o) => rep.failures.push(Failure::new(
            FailureKind::Refusal,
            format!(
                "{what}: expected exit code 2 and a message naming {}; {}",
                r.feature,
                o.describe("got", inputs.timeout)
            ),
        )),
    }
    rep.status = Status::of(&rep.failures);
    rep
}

/// Kernels the binary carries that no profile proved with exactness tests here, grouped
/// by the reason.
fn unproven(m: &Matrix, t: &Target, profiles: &[ProfileReport], has_tests: bool) -> Vec<Unproven> {
    let flags = crate::targets::host_cpu_flags();
    let mut out: Vec<Unproven> = Vec::new();
    for k in t.kernels.iter().filter(|k| {
        !profiles.iter().any(|p| {
            p.kernel_tests
                .as_ref()
                .and_then(|c| c.get(*k))
                .is_some_and(|c| c.ran > 0)
        })
    }) {
        let why = if t.run == "none" {
            "build only: this target cannot run here".into()
        } else if !has_tests {
            "its exactness test binary did not build (see the failures)".into()
        } else if t.native_only.contains(k) {
            let lacks: Vec<String> = m
                .profiles
                .values()
                .filter_map(|p| p.cpuinfo_kernels.as_ref()?.get(k))
                .flatten()
                .filter(|f| !flags.contains(*f))
                .cloned()
                .collect();
            format!(
                "native only (QEMU's TCG emulates neither AVX-VNNI nor AVX-512), and this host's CPU lacks {}",
                lacks.join(", ")
            )
        } else {
            "no profile of this target has the features it needs".into()
        };
        match out.iter_mut().find(|u| u.why == why) {
            Some(u) => u.kernels.push(k.clone()),
            None => out.push(Unproven {
                kernels: vec![k.clone()],
                why,
            }),
        }
    }
    out
}

/// Build, size-check and (where it runs) validate one target.
pub fn target(
    sh: &Shell,
    m: &Matrix,
    t: &Target,
    host: &[HostRun],
    inputs: &Inputs,
    only_profile: Option<&str>,
    progress: &dyn Fn(String),
) -> TargetReport {
    let start = Instant::now();
    let mut rep = TargetReport {
        triple: t.triple.clone(),
        stands_for: t.stands_for.clone(),
        status: Status::Fail,
        size_bytes: None,
        budget_bytes: t.size_budget,
        is_static: None,
        symbols: Vec::new(),
        profiles: Vec::new(),
        unproven: Vec::new(),
        failures: Vec::new(),
        seconds: 0.0,
    };
    let missing: Vec<String> = crate::setup::checks(m, t)
        .into_iter()
        .filter(|c| !c.ok)
        .map(|c| c.what)
        .collect();
    if !missing.is_empty() {
        rep.failures.push(Failure::new(
            FailureKind::NotReady,
            format!(
                "{}: not ready, missing {}: run `cargo xtask setup`",
                t.triple,
                missing.join(", ")
            ),
        ));
        return rep;
    }
    progress(format!("{}: building", t.triple));
    let bin = match build::binary(sh, t, inputs.inject_fault.as_deref()) {
        Ok(b) => b,
        Err(e) => {
            rep.failures.push(Failure::new(FailureKind::Build, e));
            return rep;
        }
    };
    match size::inspect(t, &bin, &inputs.scratch.join("size")) {
        Ok(s) => {
            rep.failures.extend(size::check(t, &s));
            rep.size_bytes = Some(s.stripped_bytes);
            rep.is_static = Some(s.is_static);
            rep.symbols = s.kernels;
        }
        Err(e) => rep.failures.push(Failure::new(FailureKind::Build, e)),
    }
    if t.run == "none" {
        rep.unproven = unproven(m, t, &[], false);
        rep.status = if rep.failures.is_empty() {
            Status::BuildOnly
        } else {
            Status::Fail
        };
        rep.seconds = start.elapsed().as_secs_f64();
        return rep;
    }
    progress(format!("{}: building kernel tests", t.triple));
    let tests = match build::kernel_tests(sh, t) {
        Ok(tb) => Some(tb),
        Err(e) => {
            rep.failures.push(Failure::new(FailureKind::Build, e));
            None
        }
    };
    for name in t
        .profiles
        .iter()
        .filter(|p| only_profile.is_none_or(|o| o == *p))
    {
        let mut p = m.profiles[name].clone();
        if t.is_bare_metal() {
            p.threads = vec![1]; // the image starts one core
        }
        progress(format!("{}: validating on {name} ({})", t.triple, p.board));
        rep.profiles
            .push(profile(t, name, &p, &bin, tests.as_deref(), host, inputs));
    }
    for r in t
        .refuse_profiles
        .iter()
        .filter(|r| only_profile.is_none_or(|o| o == r.profile))
    {
        let p = &m.profiles[&r.profile];
        progress(format!("{}: start-up check on {}", t.triple, r.profile));
        rep.profiles.push(refusal(t, r, p, &bin, inputs));
    }
    if only_profile.is_none() {
        rep.unproven = unproven(m, t, &rep.profiles, tests.is_some());
    }
    let profiles_ok = rep.profiles.iter().all(|p| p.status == Status::Pass);
    rep.status = if rep.failures.is_empty() && profiles_ok {
        Status::Pass
    } else {
        Status::Fail
    };
    rep.seconds = start.elapsed().as_secs_f64();
    rep
}
