//! `cargo xtask bench-model`: writes the synthetic BitNet b1.58 2B4T-shape model that
//! `bitnet-infer bench` measures, under `target/bench/` (never committed: ~1.2 GB).
//! `--arch bitnet` writes the same shape under the architecture upstream llama.cpp loads
//! (what `cargo xtask compare` runs both engines on).

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use bitnet::model::Arch;
use bitnet::quants::GgmlType;
use bitnet::synth;

use crate::flags::BenchModelArgs;

pub fn run(a: &BenchModelArgs) -> Result<(), String> {
    ensure(&a.arch, &a.weights, &a.head, a.force).map(|_| ())
}

/// The benchmark model of this architecture, weight and head type under `target/bench/`:
/// written unless it exists (or `force`); returns its path.
pub fn ensure(arch: &str, weights: &str, head: &str, force: bool) -> Result<PathBuf, String> {
    let arch = match arch {
        "bitnet-b1.58" => Arch::BitnetB158,
        "bitnet" => Arch::Bitnet,
        other => return Err(format!("--arch {other}: expected bitnet-b1.58 or bitnet")),
    };
    let weights = match weights {
        "i2_s" => GgmlType::I2_S,
        "tq2_0" => GgmlType::TQ2_0,
        "tq1_0" => GgmlType::TQ1_0,
        other => return Err(format!("--weights {other}: expected i2_s, tq2_0 or tq1_0")),
    };
    let head = match head {
        "f16" => GgmlType::F16,
        "q8_0" => GgmlType::Q8_0,
        other => return Err(format!("--head {other}: expected f16 or q8_0")),
    };
    let spec = synth::bench_spec(arch, weights, head);
    let dir = crate::project_root().join("target").join("bench");
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(format!("{}.gguf", spec.name));
    if path.exists() && !force {
        println!("{} (exists; --force rewrites it)", path.display());
        return Ok(path);
    }
    let t = Instant::now();
    let bytes = synth::build_with_vocab(&spec, synth::BENCH_VOCAB)?;
    // Written under a temporary name first: an interrupted run leaves no truncated model
    // that a later run would take for a finished one.
    let tmp = path.with_extension("gguf.tmp");
    fs::write(&tmp, &bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    println!(
        "wrote {} ({:.2} GB) in {:.1} s",
        path.display(),
        bytes.len() as f64 / 1e9,
        t.elapsed().as_secs_f64()
    );
    Ok(path)
}
