//! `bitnet-infer` on truncated and hostile GGUF files: exit code 1 and an `error:` line
//! naming the file, never a panic, for `info` and for a run.
//!
//! Runs the binary named by `BITNET_INFER_BIN` when it is set, else the one cargo built for
//! this test. Point it at the release build (`panic = "abort"`: a panic there is SIGABRT, exit
//! 134, not a message) to hold the shipped binary to the same contract:
//!
//! ```text
//! cargo build --release -p bitnet-edge
//! BITNET_INFER_BIN=$PWD/target/release/bitnet-infer cargo test -p bitnet-edge --test cli_malformed
//! ```

use std::path::{Path, PathBuf};

use bitnet::gguf::{GgufWriter, Value};
use bitnet::quants::{i2_s, GgmlType};

mod gguf_support;
use gguf_support::{bin, fixture, infer, one_tensor, rewrite_fixture, Raw};

/// A directory of this test process's files, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "bitnet-cli-malformed-{}-{test}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `bitnet-infer info` and a one-token run on `path` both fail cleanly: exit code 1 (not a
/// signal: 134 is a panic under `panic = "abort"`), an `error:` line that names the file and
/// contains every needle, no panic message.
fn assert_rejected(path: &Path, needles: &[&str]) {
    let p = path.to_str().unwrap();
    assert_fails(&["info", "--model", p], p, needles);
    let run = ["--model", p, "--prompt-tokens", "1", "--max-tokens", "1"];
    assert_fails(&run, p, needles);
}

fn assert_fails(args: &[&str], p: &str, needles: &[&str]) {
    let o = infer(args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{} {args:?}: {} (a code of 134 or none is a panic / abort)\n{stderr}",
        bin().display(),
        o.status
    );
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{args:?}: no `error:` line in {stderr:?}"));
    println!("{} -> {line}", args[0]);
    assert!(
        line.contains(p),
        "{args:?}: the error does not name {p}: {line}"
    );
    for n in needles {
        assert!(line.contains(n), "{args:?}: expected {n:?} in: {line}");
    }
}

/// A small valid GGUF (every kind of field) that is not a loadable model.
fn small_valid_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", "bitnet-b1.58")
        .unwrap();
    w.add_metadata("bitnet-b1.58.block_count", 2u32).unwrap();
    w.add_metadata("tokens", vec!["a".to_string(), "bc".to_string()])
        .unwrap();
    w.add_metadata("scores", vec![0.5f32, 1.5]).unwrap();
    w.add_tensor(
        "blk.0.attn_q.weight",
        &[128],
        GgmlType::I2_S,
        vec![1u8; i2_s::BLOCK_BYTES + i2_s::TAIL_BYTES],
    )
    .unwrap();
    w.add_tensor("output_norm.weight", &[8], GgmlType::F32, vec![2u8; 32])
        .unwrap();
    w.finish().unwrap()
}

#[test]
fn truncated_files_are_rejected() {
    let dir = Scratch::new("truncated");
    let small = small_valid_file();
    for (len, needles) in [
        (0, &["truncated at byte 0", "magic"][..]),
        (3, &["truncated at byte 0", "magic"]),
        (12, &["truncated at byte 8", "tensor_count"]),
        (20, &["truncated at byte 16", "kv_count"]),
        (40, &["truncated"]),
        (small.len() / 2, &[]),
        (small.len() - 1, &[]),
    ] {
        let p = dir.write(&format!("small-{len}.gguf"), &small[..len]);
        assert_rejected(&p, needles);
    }
    // A real model cut inside its tensor data, and inside its metadata.
    let model = std::fs::read(fixture("tiny-b158-i2_s.gguf")).unwrap();
    let p = dir.write("model-half.gguf", &model[..model.len() / 2]);
    assert_rejected(&p, &["tensor"]);
    let p = dir.write("model-1000.gguf", &model[..1000]);
    assert_rejected(&p, &[]);
    // Not a file at all.
    assert_rejected(&dir.0, &["directory"]);
    assert_rejected(&dir.0.join("missing.gguf"), &[]);
}

#[test]
fn hostile_headers_are_rejected() {
    let dir = Scratch::new("headers");
    let mut bad_magic = small_valid_file();
    bad_magic[..4].copy_from_slice(b"GGML");
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        ("magic", bad_magic, vec!["bad magic", "GGML"]),
        ("version-1", Raw::header(1, 0, 0).0, vec!["version 1"]),
        ("version-99", Raw::header(99, 0, 0).0, vec!["version 99"]),
        (
            "big-endian",
            Raw::header(3u32.swap_bytes(), 0, 0).0,
            vec!["big-endian"],
        ),
        (
            "tensor-count",
            Raw::header(3, u64::MAX, 0).data(64).0,
            vec!["tensor_count 18446744073709551615 is impossible"],
        ),
        (
            "kv-count",
            Raw::header(3, 0, 1 << 40).data(64).0,
            vec!["kv_count 1099511627776 is impossible"],
        ),
        (
            "key-length",
            Raw::header(3, 0, 1).u64(u64::MAX).u32(4).u32(0).0,
            vec!["string length 18446744073709551615"],
        ),
        (
            "tensor-name-length",
            Raw::header(3, 1, 0).u64(1 << 40).data(64).0,
            vec!["name of tensor 0", "string length 1099511627776"],
        ),
        (
            "array-count",
            Raw::header(3, 0, 1)
                .str("tokenizer.ggml.scores")
                .u32(9)
                .u32(6)
                .u64(u64::MAX)
                .data(100)
                .0,
            vec!["'tokenizer.ggml.scores'", "array of 18446744073709551615 "],
        ),
        (
            "value-type",
            Raw::header(3, 0, 1).str("weird").u32(13).u64(0).0,
            vec!["'weird'", "unknown value type 13"],
        ),
        (
            "nested",
            nested_arrays(40),
            vec!["'deep'", "nested deeper than 16"],
        ),
        (
            "alignment",
            Raw::header(3, 0, 1).kv_u32("general.alignment", 48).0,
            vec!["'general.alignment'", "power-of-two u32"],
        ),
        (
            "architecture-type",
            Raw::header(3, 0, 1).kv_u32("general.architecture", 7).0,
            vec!["'general.architecture'", "expected string"],
        ),
        (
            "duplicate-key",
            Raw::header(3, 0, 2).kv_u32("k", 1).kv_u32("k", 2).0,
            vec!["duplicate metadata key 'k'"],
        ),
    ];
    for (name, bytes, needles) in &cases {
        let p = dir.write(&format!("{name}.gguf"), bytes);
        assert_rejected(&p, needles);
    }
}

fn nested_arrays(depth: usize) -> Vec<u8> {
    let mut raw = Raw::header(3, 0, 1).str("deep").u32(9);
    for _ in 0..depth {
        raw = raw.u32(9).u64(1);
    }
    raw.u32(0).u64(0).0
}

#[test]
fn hostile_tensor_infos_are_rejected() {
    let dir = Scratch::new("tensors");
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "offset-far",
            one_tensor("llama", "blk.0.attn_q.weight", &[64], 0, 1 << 40),
            vec!["'blk.0.attn_q.weight'", "extends past the end of the file"],
        ),
        (
            "offset-wraps",
            one_tensor("llama", "t", &[64], 0, u64::MAX - 31),
            vec!["'t'", "extends past the end of the file"],
        ),
        (
            "misaligned",
            one_tensor("llama", "tok", &[4], 0, 4),
            vec!["'tok'", "not a multiple of the alignment 32"],
        ),
        (
            "unknown-type",
            one_tensor("llama", "blk.3.ffn_up.weight", &[256], 99, 0),
            vec!["'blk.3.ffn_up.weight'", "unknown type id 99"],
        ),
        (
            "i2_s-outside-bitnet",
            one_tensor("llama", "w", &[128], 36, 0),
            vec!["'w'", "I2_S"],
        ),
        (
            "dims-overflow",
            one_tensor("llama", "big", &[1 << 32, 1 << 32, 2], 0, 0),
            vec!["'big'", "overflows"],
        ),
        (
            "bytes-overflow",
            one_tensor("llama", "wide", &[1 << 62, 2], 0, 0),
            vec!["'wide'", "overflows"],
        ),
        (
            "zero-dim",
            one_tensor("llama", "z", &[4, 0], 0, 0),
            vec!["'z'", "contain a zero"],
        ),
        (
            "dim-count",
            Raw::header(3, 1, 0).str("huge").u32(u32::MAX).data(64).0,
            vec!["'huge'", "4294967295 dimensions"],
        ),
        (
            "block-size",
            one_tensor("llama", "emb", &[20], 8, 0),
            vec!["'emb'", "Q8_0 block size 32"],
        ),
        (
            "overlap",
            Raw::header(3, 2, 0)
                .tensor("a", &[16], 0, 0)
                .tensor("b", &[8], 0, 32)
                .data(128)
                .0,
            vec!["tensor 'b'", "overlaps tensor 'a'"],
        ),
    ];
    for (name, bytes, needles) in &cases {
        let p = dir.write(&format!("{name}.gguf"), bytes);
        assert_rejected(&p, needles);
    }
}

/// A fixture model with its metadata changed by `f` (tensors as they are).
fn with_metadata(f: impl Fn(&str, Value) -> Option<Value>) -> Vec<u8> {
    rewrite_fixture("tiny-b158-tq2_0.gguf", f, |_| true)
}

#[test]
fn hostile_model_metadata_is_rejected() {
    let dir = Scratch::new("metadata");
    // A valid GGUF that is no model.
    let p = dir.write("not-a-model.gguf", &small_valid_file());
    assert_rejected(&p, &["is missing"]);
    // The fixture with one hyperparameter forged: each error names the key.
    let arch = "bitnet-b1.58";
    for (i, (key, value)) in [
        ("attention.head_count", Value::U32(0)),
        ("attention.head_count", Value::U32(3)),
        ("attention.head_count_kv", Value::U32(0)),
        ("attention.head_count_kv", Value::U32(3)),
        ("embedding_length", Value::U32(0)),
        ("embedding_length", Value::U32(u32::MAX)),
        ("block_count", Value::U32(1 << 30)),
        ("feed_forward_length", Value::U32(0)),
        ("context_length", Value::U32(0)),
        ("rope.dimension_count", Value::U32(1 << 20)),
        (
            "attention.layer_norm_rms_epsilon",
            Value::String("small".into()),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let key = format!("{arch}.{key}");
        let bytes = with_metadata(|k, v| Some(if k == key { value.clone() } else { v }));
        let p = dir.write(&format!("forged-{i}.gguf"), &bytes);
        assert_rejected(&p, &[&key]);
    }
    let key = format!("{arch}.attention.head_count");
    let p = dir.write(
        "no-heads.gguf",
        &with_metadata(|k, v| (k != key).then_some(v)),
    );
    assert_rejected(&p, &[&key, "is missing"]);
}

/// A `llama` file whose block projection is a float matrix is an ordinary Llama, which this
/// engine does not run: a clear error naming the tensor and the ternary types it needs.
#[test]
fn llama_with_a_float_projection_is_rejected() {
    let dir = Scratch::new("llama-float");
    let bytes = std::fs::read(fixture("tiny-llama-tq2_0.gguf")).unwrap();
    let g = bitnet::gguf::Gguf::parse(&bytes).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in g.metadata.iter() {
        w.add_metadata(k, v.clone()).unwrap();
    }
    for t in &g.tensors {
        let (ty, data) = if t.name == "blk.0.attn_q.weight" {
            let n: u64 = t.dims.iter().product();
            (GgmlType::F16, vec![0u8; 2 * n as usize])
        } else {
            (t.ty, g.tensor_data(&bytes, t).to_vec())
        };
        w.add_tensor(t.name.clone(), &t.dims, ty, data).unwrap();
    }
    let p = dir.write("llama-f16-q.gguf", &w.finish().unwrap());
    assert_rejected(
        &p,
        &["blk.0.attn_q.weight", "F16", "ternary llama", "TQ2_0"],
    );
}
