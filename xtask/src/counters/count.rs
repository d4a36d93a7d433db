//! One counted run: `bitnet-infer` (or a `bitnet-bare` image) under the counting QEMU with the plugin, teacher-forced
//! through a prompt and decode tokens on one kernel and one thread, and what the plugin
//! wrote, per phase, per part of a token.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::parts::{self, Part};
use crate::flags::BootArgs;
use crate::pipeline::emulate;
use crate::targets::{Profile, Target};

/// What one phase of a run did, summed over its tokens.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Phase {
    pub instructions: u64,
    pub loaded_bytes: u64,
    pub stored_bytes: u64,
    /// Instructions per part of a token (ternary, head, attention, norms, rest).
    pub parts: BTreeMap<Part, u64>,
}

/// The phases both binaries mark (`bitnet::marks`).
pub struct Counts {
    pub prefill: Phase,
    pub decode: Phase,
}

/// A model and the tokens a counted run feeds it.
pub struct Workload<'a> {
    pub model: &'a Path,
    pub prompt: &'a [u32],
    pub decode: &'a [u32],
}

/// Runs `bin` for `t` on `profile`'s CPU model with `kernel`, under the counting QEMU: its
/// qemu-user for a Linux triple, its qemu-system booting the image for a bare-metal one.
pub fn run(
    bin: &Path,
    t: &Target,
    profile: &Profile,
    kernel: &str,
    w: &Workload,
    out: &Path,
    limit: Duration,
) -> Result<Counts, String> {
    let _ = std::fs::remove_file(out);
    let ids = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let model = w.model.to_string_lossy().into_owned();
    let args: Vec<String> = [
        "--model",
        &model,
        "--prompt-tokens",
        &ids(w.prompt),
        "--force-tokens",
        &ids(w.decode),
        "--temperature",
        "0",
        "--threads",
        "1",
        "--kernel",
        kernel,
    ]
    .map(String::from)
    .into();
    let plugin = format!("{},out={}", super::qemu::plugin().display(), out.display());
    let c = if t.is_bare_metal() {
        // The counting qemu-system boots the image as `cargo xtask boot` would.
        let mut c = crate::boot::command(&BootArgs {
            qemu: super::qemu::emulator(&t.run).to_string_lossy().into_owned(),
            cpu: profile
                .cpu
                .clone()
                .ok_or("a bare-metal profile names its CPU model")?,
            image: bin.to_path_buf(),
            args,
        })?;
        c.arg("-plugin").arg(plugin);
        c
    } else {
        let qemu = profile
            .qemu
            .as_ref()
            .ok_or("a native profile cannot be counted (no emulator)")?;
        let mut c = Command::new(super::qemu::emulator(qemu));
        if let Some(cpu) = &profile.cpu {
            c.args(["-cpu", cpu]);
        }
        if let Some(prefix) = &t.ld_prefix {
            c.env("QEMU_LD_PREFIX", prefix);
        }
        c.arg("-plugin").arg(plugin).arg(bin).args(args);
        c
    };
    let o = emulate::run(c, limit)?;
    if !o.success() {
        return Err(o.describe("counted run", limit));
    }
    let text = std::fs::read_to_string(out).map_err(|e| {
        format!(
            "{}: {e}: the plugin wrote nothing (is {} the counting plugin?)",
            out.display(),
            super::qemu::plugin().display()
        )
    })?;
    let phases = parse(&text).map_err(|e| format!("{}: {e}", out.display()))?;
    let take = |name: &str| {
        phases.get(name).cloned().ok_or_else(|| {
            format!(
                "{}: no `{name}` phase: the binary lacks the bitnet_counters_phase_* marks (stripped?)",
                out.display()
            )
        })
    };
    Ok(Counts {
        prefill: take("prefill")?,
        decode: take("decode")?,
    })
}

/// The plugin's tab-separated output, summed per phase and part.
pub fn parse(text: &str) -> Result<BTreeMap<String, Phase>, String> {
    let mut lines = text.lines();
    match lines.next() {
        Some(h) if h.starts_with("# qemu-counters 1 ") => {}
        other => {
            return Err(format!(
                "not a qemu-counters 1 report (first line {other:?})"
            ))
        }
    }
    let mut phases: BTreeMap<String, Phase> = BTreeMap::new();
    for (i, line) in lines.enumerate().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let [phase, symbol, insns, loaded, stored] = f[..] else {
            return Err(format!("line {}: {} fields, expected 5", i + 2, f.len()));
        };
        let num = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("line {}: `{s}` is not a count", i + 2))
        };
        let p = phases.entry(phase.to_string()).or_default();
        let n = num(insns)?;
        p.instructions += n;
        p.loaded_bytes += num(loaded)?;
        p.stored_bytes += num(stored)?;
        *p.parts.entry(parts::of(symbol)).or_default() += n;
    }
    Ok(phases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_sum_their_symbols_into_parts() {
        let text = "# qemu-counters 1 aarch64\n\
            phase\tsymbol\tinstructions\tloaded_bytes\tstored_bytes\n\
            decode\t_ZN6bitnet7kernels7aarch6416acc_rows_dotprod17hd59117c5ab51fdafE\t100\t64\t8\n\
            decode\t_ZN6bitnet7kernels7aarch6413head_f16_neon17hcfc817e9d9bd27baE\t10\t32\t0\n\
            decode\t?\t5\t1\t2\n\
            prefill\t?\t7\t0\t0\n";
        let p = parse(text).unwrap();
        let d = &p["decode"];
        assert_eq!(
            (d.instructions, d.loaded_bytes, d.stored_bytes),
            (115, 97, 10)
        );
        assert_eq!(d.parts[&Part::Ternary], 100);
        assert_eq!(d.parts[&Part::Head], 10);
        assert_eq!(d.parts[&Part::Rest], 5);
        assert_eq!(p["prefill"].instructions, 7);
    }

    #[test]
    fn a_malformed_report_is_an_error_naming_the_line() {
        assert!(parse("hello\n").is_err());
        let e = parse("# qemu-counters 1 arm\nheader\ndecode\tx\t1\t2\n").unwrap_err();
        assert!(e.contains("line 3"), "{e}");
        let e = parse("# qemu-counters 1 arm\nheader\ndecode\tx\t1\ttwo\t3\n").unwrap_err();
        assert!(e.contains("`two`"), "{e}");
    }
}
