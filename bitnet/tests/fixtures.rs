//! The committed fixtures are exactly what the generator produces, and the scalar path
//! still computes their golden logits.

use std::path::PathBuf;

use bitnet::{npy, synth};

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

#[test]
fn fixtures_regenerate_byte_for_byte() {
    let specs = synth::fixture_specs();
    assert_eq!(
        specs.len(),
        6,
        "one fixture per architecture x ternary type"
    );
    for spec in specs {
        let path = fixtures_dir().join(format!("{}.gguf", spec.name));
        let committed = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask fixtures`", path.display()));
        let built = synth::build(&spec).unwrap();
        assert!(
            committed == built,
            "{} differs from the generator; run `cargo xtask fixtures`",
            path.display()
        );
    }
}

#[test]
fn golden_logits_hold() {
    for spec in synth::fixture_specs() {
        let path = fixtures_dir().join(format!("{}.golden.npy", spec.name));
        let (shape, golden) = npy::read_f32(&std::fs::read(&path).unwrap()).unwrap();
        let n_pos = synth::fixture_prompt_tokens().len();
        assert_eq!(
            shape,
            vec![n_pos, synth::FIXTURE_VOCAB],
            "{}",
            path.display()
        );
        let model = std::fs::read(fixtures_dir().join(format!("{}.gguf", spec.name))).unwrap();
        let logits = synth::golden_logits(model).unwrap();
        let max_diff = logits
            .iter()
            .zip(&golden)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        // The scalar path is deterministic (libm math, exact integer dot products): the only
        // slack is for a target whose float rounding differs in the last bit.
        assert!(max_diff <= 1e-5, "{}: max |diff| {max_diff}", spec.name);
        // Logits of a sane model: finite, of order 1-10, not all equal.
        assert!(logits.iter().all(|v| v.is_finite()));
        let amax = logits.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(
            (1.0..=50.0).contains(&amax),
            "{}: max |logit| {amax}",
            spec.name
        );
    }
}
