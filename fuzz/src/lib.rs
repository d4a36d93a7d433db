//! Code shared by the fuzz targets: what each target does with an input (`entries`), the
//! structure-aware generators (`gguf_gen`) and the counting allocator (`meter`). Separate
//! files so that `bitnet/tests/fuzz_corpus.rs` can include them by `#[path]` and replay
//! the corpus in plain `cargo test`, without libFuzzer.

pub mod convert_entries;
pub mod entries;
pub mod gguf_gen;
pub mod meter;
