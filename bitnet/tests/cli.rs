//! `bitnet-infer` end to end: runs every fixture, and turns bad files into one clear
//! error line and exit code 1 (never a panic).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bitnet::gguf::{Gguf, GgufWriter};
use bitnet::{npy, synth};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
}

fn infer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bitnet-infer"))
        .args(args)
        .output()
        .expect("bitnet-infer runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bitnet-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn runs_every_fixture_with_text_and_stats() {
    for spec in synth::fixture_specs() {
        let model = fixture(&format!("{}.gguf", spec.name));
        let out = infer(&[
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "Hello",
            "--max-tokens",
            "8",
            "--seed",
            "3",
        ]);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "{}: {stderr}", spec.name);
        assert!(stdout.starts_with("Hello"), "{stdout}");
        for field in ["load", "prefill", "tok/s", "ms/token", "peak rss", "kernel"] {
            assert!(
                stderr.contains(field),
                "{}: no '{field}' in {stderr}",
                spec.name
            );
        }
        let info = infer(&["info", "--model", model.to_str().unwrap()]);
        assert!(info.status.success());
        let info = text(&info.stdout);
        for field in ["architecture", "layers        4", "kernels", "cpu"] {
            assert!(info.contains(field), "{info}");
        }
    }
}

#[test]
fn logits_out_has_one_row_per_evaluated_position() {
    let path = scratch("logits.npy");
    let model = fixture("tiny-b158-tq2_0.gguf");
    let out = infer(&[
        "--model",
        model.to_str().unwrap(),
        "--prompt-tokens",
        "256,72,105",
        "--max-tokens",
        "4",
        "--temperature",
        "0",
        "--logits-out",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (shape, data) = npy::read_f32(&std::fs::read(&path).unwrap()).unwrap();
    // 3 prompt positions + 3 generated tokens fed back (the 4th is sampled, not evaluated).
    assert_eq!(shape, vec![6, synth::FIXTURE_VOCAB]);
    assert!(data.iter().all(|v| v.is_finite()));
}

fn assert_clean_error(args: &[&str], needles: &[&str]) {
    let out = infer(args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "expected '{n}' in: {stderr}");
    }
}

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let p = scratch(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn run_on(p: &Path) -> Vec<String> {
    vec![
        "--model".into(),
        p.to_str().unwrap().into(),
        "--prompt-tokens".into(),
        "1".into(),
    ]
}

fn check_file(name: &str, bytes: &[u8], needles: &[&str]) {
    let p = write(name, bytes);
    let args = run_on(&p);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut with_path = vec![p.to_str().unwrap()];
    with_path.extend_from_slice(needles);
    assert_clean_error(&args, &with_path);
    assert_clean_error(&["info", "--model", p.to_str().unwrap()], &with_path);
}

#[test]
fn malformed_files_give_one_clear_error() {
    let good = std::fs::read(fixture("tiny-b158-i2_s.gguf")).unwrap();
    check_file("truncated.gguf", &good[..good.len() / 2], &["tensor"]);
    check_file("header-only.gguf", &good[..20], &["truncated"]);
    let mut bad_magic = good.clone();
    bad_magic[..4].copy_from_slice(b"GGML");
    check_file("magic.gguf", &bad_magic, &["magic"]);
    let mut huge = good.clone();
    huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes()); // tensor_count
    check_file("huge-count.gguf", &huge, &["tensor_count"]);
    check_file("empty.gguf", &[], &["truncated"]);
    assert_clean_error(
        &["--model", "/nonexistent/model.gguf", "--prompt-tokens", "1"],
        &["/nonexistent/model.gguf"],
    );
}

/// Rewrites a fixture with one tensor's dims or type changed.
fn rewrite(f: impl Fn(&str, &mut Vec<u64>, &mut bitnet::quants::GgmlType)) -> Vec<u8> {
    let bytes = std::fs::read(fixture("tiny-b158-tq2_0.gguf")).unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in g.metadata.iter() {
        w.add_metadata(k, v.clone()).unwrap();
    }
    for t in &g.tensors {
        let (mut dims, mut ty) = (t.dims.clone(), t.ty);
        f(&t.name, &mut dims, &mut ty);
        w.add_tensor(t.name.clone(), &dims, ty, g.tensor_data(&bytes, t).to_vec())
            .unwrap();
    }
    w.finish().unwrap()
}

#[test]
fn wrong_shapes_and_types_are_named() {
    let swapped = rewrite(|name, dims, _| {
        if name == "blk.1.attn_k.weight" {
            dims.swap(0, 1);
        }
    });
    check_file("shape.gguf", &swapped, &["blk.1.attn_k.weight", "expected"]);
    let missing = {
        let bytes = std::fs::read(fixture("tiny-b158-tq2_0.gguf")).unwrap();
        let g = Gguf::parse(&bytes).unwrap();
        let mut w = GgufWriter::new();
        for (k, v) in g.metadata.iter() {
            w.add_metadata(k, v.clone()).unwrap();
        }
        for t in g.tensors.iter().filter(|t| t.name != "blk.2.ffn_up.weight") {
            w.add_tensor(
                t.name.clone(),
                &t.dims,
                t.ty,
                g.tensor_data(&bytes, t).to_vec(),
            )
            .unwrap();
        }
        w.finish().unwrap()
    };
    check_file(
        "missing.gguf",
        &missing,
        &["blk.2.ffn_up.weight", "missing"],
    );
    // Type id 99 patched into the first tensor info: find its type field by position.
    let good = std::fs::read(fixture("tiny-b158-tq2_0.gguf")).unwrap();
    let g = Gguf::parse(&good).unwrap();
    let name = &g.tensors[0].name;
    let at = good
        .windows(name.len())
        .rposition(|w| w == name.as_bytes())
        .unwrap();
    let type_at = at + name.len() + 4 + 8 * g.tensors[0].dims.len();
    let mut unknown = good.clone();
    unknown[type_at..type_at + 4].copy_from_slice(&99u32.to_le_bytes());
    check_file("unknown-type.gguf", &unknown, &[name, "99"]);
}

#[test]
fn bad_arguments_are_errors() {
    let model = fixture("tiny-b158-i2_s.gguf");
    let m = model.to_str().unwrap();
    assert_clean_error(&["--model", m, "--prompt-tokens", "999999"], &["999999"]);
    assert_clean_error(&["--model", m], &["--prompt"]);
    let out = infer(&["--model", m, "--prompt-tokens", "1", "--kv-type", "q3"]);
    assert_eq!(out.status.code(), Some(2)); // clap's usage error
}
