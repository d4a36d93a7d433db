//! `cargo xtask bench-model`: writes the synthetic BitNet b1.58 2B4T-shape model that
//! `bitnet-infer bench` measures, under `target/bench/` (never committed: ~1.2 GB).

use std::fs;
use std::time::Instant;

use bitnet::quants::GgmlType;
use bitnet::synth;

use crate::flags::BenchModelArgs;

pub fn run(a: &BenchModelArgs) -> Result<(), String> {
    let weights = match a.weights.as_str() {
        "i2_s" => GgmlType::I2_S,
        "tq2_0" => GgmlType::TQ2_0,
        "tq1_0" => GgmlType::TQ1_0,
        other => return Err(format!("--weights {other}: expected i2_s, tq2_0 or tq1_0")),
    };
    let head = match a.head.as_str() {
        "f16" => GgmlType::F16,
        "q8_0" => GgmlType::Q8_0,
        other => return Err(format!("--head {other}: expected f16 or q8_0")),
    };
    let spec = synth::bench_spec(weights, head);
    let dir = crate::project_root().join("target").join("bench");
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(format!("{}.gguf", spec.name));
    if path.exists() && !a.force {
        println!("{} (exists; --force rewrites it)", path.display());
        return Ok(());
    }
    let t = Instant::now();
    let bytes = synth::build_with_vocab(&spec, synth::BENCH_VOCAB)?;
    fs::write(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    println!(
        "wrote {} ({:.2} GB) in {:.1} s",
        path.display(),
        bytes.len() as f64 / 1e9,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
