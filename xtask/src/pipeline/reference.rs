//! The host's scalar runs: what every target, profile and kernel is compared with (the
//! product's promise), next to the numpy reference (the independent oracle).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use super::inputs::{Inputs, KV_TYPES};
use super::runs::{self, RunError, Spec};
use crate::checks::logits::Logits;

pub struct HostRun {
    /// The tokens every run is teacher-forced through after the prompt.
    pub decode: Vec<u32>,
    /// KV type -> logits over prompt + decode.
    pub logits: BTreeMap<String, Logits>,
}

fn greedy(v: &[f32]) -> u32 {
    v.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |m, (i, &x)| if x > m.1 { (i, x) } else { m },
        )
        .0 as u32
}

/// Scalar kernel, one thread, every KV type; models without reference decode tokens get
/// the host's greedy continuation.
pub fn host_runs(bin: &Path, inputs: &Inputs) -> Result<Vec<HostRun>, String> {
    let dir = inputs.scratch.join("host-reference");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let err = |case: &str, e: RunError| match e {
        RunError::IllegalInstruction => format!("host scalar reference, {case}: died of SIGILL"),
        RunError::Other(e) => format!("host scalar reference, {case}: {e}"),
    };
    let mut out = Vec::new();
    for case in &inputs.cases {
        let decode = match &case.decode {
            Some(d) => d.clone(),
            None => {
                // Greedy: the fed tokens are the argmax of the previous row.
                let s = Spec {
                    kernel: "scalar",
                    kv: "f32",
                    threads: 1,
                };
                let npy = dir.join(format!("{}-greedy.npy", case.name));
                let n = inputs.decode_steps;
                let mut c = Command::new(bin);
                c.args(runs::args(case, &[], n + 1, &s, &npy));
                let o = super::emulate::run(c, inputs.timeout)?;
                if !o.success() {
                    return Err(
                        o.describe(&format!("host greedy run, {}", case.name), inputs.timeout)
                    );
                }
                let l = crate::checks::logits::read(&npy)?;
                let vocab = l.shape[1];
                let p = case.prompt.len();
                (0..n.min(l.shape[0] + 1 - p))
                    .map(|i| greedy(&l.data[(p - 1 + i) * vocab..(p + i) * vocab]))
                    .collect()
            }
        };
        let mut logits = BTreeMap::new();
        for kv in KV_TYPES {
            let s = Spec {
                kernel: "scalar",
                kv,
                threads: 1,
            };
            let l = runs::run(Command::new(bin), case, &decode, &s, &dir, inputs)
                .map_err(|e| err(&case.name, e))?;
            logits.insert(kv.to_string(), l);
        }
        out.push(HostRun { decode, logits });
    }
    Ok(out)
}
