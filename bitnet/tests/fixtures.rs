//! The committed fixtures are exactly what the generator produces, and the engine's scalar
//! path stays within 1e-3 of their golden logits, which come from the independent float64
//! numpy reference (tools/reference/golden.py), over the prompt and teacher-forced decode
//! positions, with an f32 and an f16 KV cache.

use std::path::PathBuf;
use std::sync::Arc;

use bitnet::gguf::Gguf;
use bitnet::kernels::Kernel;
use bitnet::model::{KvType, Model, State};
use bitnet::parallel::Serial;
use bitnet::{npy, synth};
use serde_json::Value;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

#[test]
fn fixtures_regenerate_byte_for_byte() {
    let specs = synth::fixture_specs();
    assert_eq!(
        specs.len(),
        7,
        "one fixture per BitNet architecture x ternary type, and one llama (TQ2_0)"
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

/// `<name>.golden.json` field `key` as token ids.
fn tokens(json: &Value, key: &str, path: &std::path::Path) -> Vec<u32> {
    json[key]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no array '{key}'", path.display()))
        .iter()
        .map(|v| {
            v.as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or_else(|| panic!("{}: '{key}' holds {v}, not a token id", path.display()))
        })
        .collect()
}

/// Logits (prompt + decode, vocab) of the scalar path: the prompt as one prefill batch, then
/// each decode token as its own step, as generation runs them.
fn teacher_forced(model: &Model, kv: KvType, prompt: &[u32], decode: &[u32]) -> Vec<f32> {
    let mut state = State::new(&model.config, prompt.len() + decode.len(), kv).unwrap();
    let mut logits = model
        .forward(&Serial, &mut state, prompt, true)
        .unwrap()
        .to_vec();
    for &t in decode {
        logits.extend_from_slice(model.forward(&Serial, &mut state, &[t], false).unwrap());
    }
    logits
}

#[test]
fn golden_logits_hold() {
    for spec in synth::fixture_specs() {
        let json_path = fixtures_dir().join(format!("{}.golden.json", spec.name));
        let text = std::fs::read_to_string(&json_path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run tools/reference/golden.py",
                json_path.display()
            )
        });
        let json: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", json_path.display()));
        let source = json["source"].as_str().unwrap_or_default();
        assert!(
            source.contains("bitnet_ref.py"),
            "{}: source {source:?}, expected the numpy reference",
            json_path.display()
        );
        let prompt = tokens(&json, "prompt_tokens", &json_path);
        let decode = tokens(&json, "decode_tokens", &json_path);
        assert!(
            !prompt.is_empty() && !decode.is_empty(),
            "{}: the goldens must cover prompt and decode positions",
            json_path.display()
        );
        let bytes = std::fs::read(fixtures_dir().join(format!("{}.gguf", spec.name))).unwrap();
        let g = Gguf::parse(&bytes).unwrap();
        let model = Model::load(&g, Arc::new(bytes.clone()), Kernel::SCALAR).unwrap();
        for (kv, key) in [(KvType::F32, "f32"), (KvType::F16, "f16")] {
            let file = json["kv"][key]
                .as_str()
                .unwrap_or_else(|| panic!("{}: no string 'kv.{key}'", json_path.display()));
            let path = fixtures_dir().join(file);
            let (shape, golden) = npy::read_f32(&std::fs::read(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let n_pos = prompt.len() + decode.len();
            assert_eq!(
                shape,
                vec![n_pos, synth::FIXTURE_VOCAB],
                "{}",
                path.display()
            );
            let logits = teacher_forced(&model, kv, &prompt, &decode);
            // Row by row, so a failure names the first position (prompt or decode) that is off.
            for (pos, (got, want)) in logits
                .chunks_exact(synth::FIXTURE_VOCAB)
                .zip(golden.chunks_exact(synth::FIXTURE_VOCAB))
                .enumerate()
            {
                let d = got
                    .iter()
                    .zip(want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                // The reference is float64 and takes the engine's observed roundings at
                // near-ties: what remains is f32 noise, ~1e-5.
                assert!(
                    d <= 1e-3,
                    "{} kv {key}: position {pos} ({}) max |engine - golden| {d}",
                    path.display(),
                    if pos < prompt.len() {
                        "prompt"
                    } else {
                        "decode"
                    }
                );
            }
            // Logits of a sane model: finite, of order 1-10, not all equal.
            assert!(logits.iter().all(|v| v.is_finite()), "{}", path.display());
            let amax = logits.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(
                (1.0..=50.0).contains(&amax),
                "{} kv {key}: max |logit| {amax}",
                spec.name
            );
            let first = logits[0];
            assert!(
                logits.iter().any(|&v| v != first),
                "{} kv {key}: all logits equal",
                spec.name
            );
        }
    }
}
