//! One evaluation run of `bitnet-infer`: a model, teacher-forced through its prompt and
//! decode tokens with a given kernel, KV type and thread count, logits to a .npy.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::emulate::{self, Ending};
use super::inputs::{Case, Inputs};
use crate::checks::logits::{self, Logits};

#[derive(Clone, Debug)]
pub struct Spec<'a> {
    pub kernel: &'a str,
    pub kv: &'a str,
    pub threads: usize,
}

impl Spec<'_> {
    pub fn label(&self) -> String {
        format!(
            "kernel {}, kv {}, {} thread(s)",
            self.kernel, self.kv, self.threads
        )
    }
}

/// Arguments that evaluate `case`: prefill the prompt, then feed each decode token in
/// turn (never the sampled one), so every position is compared even past a near-tie.
/// Without decode tokens the run is greedy for `max_tokens`.
pub fn args(case: &Case, decode: &[u32], max_tokens: usize, s: &Spec, npy: &Path) -> Vec<String> {
    let ids = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let mut a: Vec<String> = vec![
        "--model".into(),
        case.model.display().to_string(),
        "--prompt-tokens".into(),
        ids(&case.prompt),
        "--temperature".into(),
        "0".into(),
        "--threads".into(),
        s.threads.to_string(),
        "--kv-type".into(),
        s.kv.into(),
        "--kernel".into(),
        s.kernel.into(),
        "--logits-out".into(),
        npy.display().to_string(),
        "--max-tokens".into(),
        max_tokens.to_string(),
    ];
    if !decode.is_empty() {
        a.push("--force-tokens".into());
        a.push(ids(decode));
    }
    a
}

/// Why a run produced no logits.
pub enum RunError {
    IllegalInstruction,
    Other(String),
}

pub fn npy_path(dir: &Path, case: &Case, s: &Spec) -> PathBuf {
    dir.join(format!(
        "{}-{}-kv{}-t{}.npy",
        case.name, s.kernel, s.kv, s.threads
    ))
}

/// Runs `cmd` (already pointing at the binary, natively or under QEMU) on `case`.
pub fn run(
    mut cmd: Command,
    case: &Case,
    decode: &[u32],
    s: &Spec,
    dir: &Path,
    inputs: &Inputs,
) -> Result<Logits, RunError> {
    let npy = npy_path(dir, case, s);
    let _ = std::fs::remove_file(&npy);
    cmd.args(args(case, decode, decode.len() + 1, s, &npy));
    if let Some(k) = &inputs.inject_fault {
        cmd.env("BITNET_INJECT_FAULT", k);
    }
    let o = emulate::run(cmd, inputs.timeout).map_err(RunError::Other)?;
    match o.ending() {
        Ending::Exit(0) => logits::read(&npy).map_err(RunError::Other),
        Ending::IllegalInstruction => Err(RunError::IllegalInstruction),
        _ => Err(RunError::Other(o.describe("run", inputs.timeout))),
    }
}
