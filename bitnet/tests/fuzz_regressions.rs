//! Findings outside the fuzz targets' reach, kept as tests. (Fuzzer findings are files
//! under `fixtures/fuzz-regressions/<target>/`, replayed by `fuzz_corpus.rs`.)

mod gguf_support;

use std::process::Command;

/// `convert` sized its vocabulary by config.json's `vocab_size` alone: raising it to 2^24
/// in a 100-byte file made the converter allocate ~1 GB of padding tokens before any check.
/// Now the embedding's shape is checked first. Under a 1 GB address-space limit the old
/// code aborted on the allocation (signal 6); the fixed one exits 1 naming the tensor.
#[test]
fn convert_refuses_a_vocab_size_the_embedding_does_not_have_before_allocating_it() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("vocab-bomb");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = gguf_support::fixture("hf-random/bf16");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    assert!(config.contains("\"vocab_size\": 384"));
    let forged = config.replace("\"vocab_size\": 384", "\"vocab_size\": 16777216");
    std::fs::write(dir.join("config.json"), forged).unwrap();

    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 1000000; exec \"$0\" convert \"$1\" -o \"$2\"")
        .arg(gguf_support::bin())
        .arg(&dir)
        .arg(dir.join("out.gguf"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("model.embed_tokens.weight")
            && stderr.contains("[384, 128]")
            && stderr.contains("[16777216, 128]"),
        "{stderr}"
    );
    assert!(!dir.join("out.gguf").exists());
}
