//! Malformed GGUF files: every one must give a typed error whose message names the
//! offending field and value, without panicking and without allocating by header counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bitnet::gguf::{Gguf, GgufError, GgufFile, GgufWriter, Value};
use bitnet::quants::{i2_s, GgmlType};

mod gguf_support;
use gguf_support::{one_tensor, Raw};

/// Records the largest single allocation per thread, so a test can prove that a forged
/// count did not turn into a huge `Vec::with_capacity`.
struct Counting;

thread_local! {
    static LARGEST_ALLOC: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST_ALLOC.try_with(|m| m.set(m.get().max(layout.size())));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LARGEST_ALLOC.try_with(|m| m.set(m.get().max(new_size)));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Parses `bytes`, expecting an error; also checks no allocation exceeded 1 MiB.
fn parse_err(bytes: &[u8]) -> (GgufError, String) {
    LARGEST_ALLOC.with(|m| m.set(0));
    let result = Gguf::parse(bytes);
    let largest = LARGEST_ALLOC.with(Cell::get);
    assert!(
        largest < 1 << 20,
        "parsing allocated {largest} bytes at once"
    );
    let err = result.expect_err("malformed file was accepted");
    let msg = err.to_string();
    (err, msg)
}

fn assert_contains(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(
            msg.contains(p),
            "error message {msg:?} does not contain {p:?}"
        );
    }
}

/// A valid file using every kind of field, whose last tensor ends exactly at the end of the
/// file, so that every proper prefix is truncated.
fn small_valid_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", "bitnet-b1.58")
        .unwrap();
    w.add_metadata("bitnet-b1.58.block_count", 2u32).unwrap();
    w.add_metadata("eps", 1e-5f32).unwrap();
    w.add_metadata("flag", true).unwrap();
    w.add_metadata("tokens", vec!["a".to_string(), "bc".to_string()])
        .unwrap();
    w.add_metadata("scores", vec![0.5f32, 1.5]).unwrap();
    w.add_metadata(
        "nested",
        Value::Array(bitnet::gguf::Array::Array(vec![
            vec![1i32, 2].into(),
            vec![true].into(),
        ])),
    )
    .unwrap();
    w.add_tensor(
        "blk.0.attn_q.weight",
        &[128],
        GgmlType::I2_S,
        vec![1u8; i2_s::BLOCK_BYTES + i2_s::TAIL_BYTES],
    )
    .unwrap();
    w.add_tensor("output_norm.weight", &[8], GgmlType::F32, vec![2u8; 32])
        .unwrap();
    let bytes = w.finish().unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!(
        g.data_offset + 96,
        bytes.len() as u64,
        "no trailing padding in the fixture"
    );
    bytes
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = small_valid_file();
    for len in 0..bytes.len() {
        let (err, msg) = parse_err(&bytes[..len]);
        let expected = matches!(
            err,
            GgufError::Truncated { .. }
                | GgufError::StringPastEnd { .. }
                | GgufError::CountTooLarge { .. }
                | GgufError::ArrayTooLarge { .. }
                | GgufError::DataOutOfBounds { .. }
        );
        assert!(expected, "prefix of {len} bytes: unexpected error {msg}");
        if let GgufError::Truncated { offset, .. } = err {
            assert_contains(
                &msg,
                &[&format!("truncated at byte {offset} while reading ")],
            );
        }
    }
    assert!(Gguf::parse(&bytes).is_ok());
}

#[test]
fn truncation_names_the_field_and_offset() {
    let bytes = small_valid_file();
    let (_, msg) = parse_err(&bytes[..3]);
    assert_eq!(
        msg,
        "truncated at byte 0 while reading magic (needs 4 bytes, 3 left)"
    );
    let (_, msg) = parse_err(&bytes[..12]);
    assert_eq!(
        msg,
        "truncated at byte 8 while reading tensor_count (needs 8 bytes, 4 left)"
    );
    let (_, msg) = parse_err(&bytes[..20]);
    assert_eq!(
        msg,
        "truncated at byte 16 while reading kv_count (needs 8 bytes, 4 left)"
    );
}

#[test]
fn bad_magic() {
    let mut bytes = small_valid_file();
    bytes[..4].copy_from_slice(b"GGML");
    let (err, msg) = parse_err(&bytes);
    assert!(matches!(err, GgufError::BadMagic { found } if &found == b"GGML"));
    assert_contains(&msg, &["bad magic", "GGML", "expected \"GGUF\""]);
}

#[test]
fn unsupported_versions() {
    let (_, msg) = parse_err(&Raw::header(1, 0, 0).0);
    assert_contains(&msg, &["version 1", "not supported", "2 or 3"]);
    let (_, msg) = parse_err(&Raw::header(99, 0, 0).0);
    assert_contains(&msg, &["unsupported GGUF version 99", "2 or 3"]);
    let (_, msg) = parse_err(&Raw::header(0, 0, 0).0);
    assert_contains(&msg, &["version 0"]);
    let (_, msg) = parse_err(&Raw::header(3u32.swap_bytes(), 0, 0).0);
    assert_contains(&msg, &["big-endian", "version 3"]);
}

#[test]
fn huge_counts_fail_without_allocating() {
    for count in [u64::MAX, 1 << 40, 1 << 20] {
        let (_, msg) = parse_err(&Raw::header(3, count, 0).data(64).0);
        assert_contains(
            &msg,
            &[
                &format!("tensor_count {count} is impossible"),
                "at least 32",
            ],
        );
        let (_, msg) = parse_err(&Raw::header(3, 0, count).data(64).0);
        assert_contains(
            &msg,
            &[&format!("kv_count {count} is impossible"), "at least 13"],
        );
    }
}

#[test]
fn huge_string_lengths() {
    // Key length.
    let (err, msg) = parse_err(&Raw::header(3, 0, 1).u64(u64::MAX).u32(4).u32(0).0);
    assert!(matches!(err, GgufError::StringPastEnd { offset: 24, .. }));
    assert_contains(
        &msg,
        &[
            "key of metadata entry 0",
            "string length 18446744073709551615",
        ],
    );
    // String value length.
    let raw = Raw::header(3, 0, 1)
        .str("general.name")
        .u32(8)
        .u64(1 << 40)
        .u64(0);
    let (_, msg) = parse_err(&raw.0);
    assert_contains(
        &msg,
        &["value of 'general.name'", "string length 1099511627776"],
    );
    // Tensor name length.
    let raw = Raw::header(3, 1, 0).u64(1 << 40).data(64);
    let (_, msg) = parse_err(&raw.0);
    assert_contains(&msg, &["name of tensor 0", "string length 1099511627776"]);
    // A string inside an array.
    let raw = Raw::header(3, 0, 1)
        .str("tokenizer.ggml.tokens")
        .u32(9)
        .u32(8)
        .u64(1)
        .u64(u64::MAX);
    let (_, msg) = parse_err(&raw.data(64).0);
    assert_contains(
        &msg,
        &[
            "element 0 of 'tokenizer.ggml.tokens'",
            "18446744073709551615",
        ],
    );
}

#[test]
fn huge_array_counts() {
    for (elem, count) in [
        (8u32, u64::MAX),
        (0, 1 << 40),
        (9, 1 << 20),
        (12, u64::MAX / 4),
    ] {
        let raw = Raw::header(3, 0, 1)
            .str("tokenizer.ggml.scores")
            .u32(9)
            .u32(elem)
            .u64(count);
        let (err, msg) = parse_err(&raw.data(100).0);
        assert!(matches!(err, GgufError::ArrayTooLarge { .. }), "{msg}");
        assert_contains(
            &msg,
            &["'tokenizer.ggml.scores'", &format!("array of {count} ")],
        );
    }
}

#[test]
fn unknown_value_types() {
    let raw = Raw::header(3, 0, 1).str("weird").u32(13).u64(0);
    let (_, msg) = parse_err(&raw.0);
    assert_contains(&msg, &["'weird'", "unknown value type 13"]);
    let raw = Raw::header(3, 0, 1).str("weird.arr").u32(9).u32(77).u64(0);
    let (_, msg) = parse_err(&raw.0);
    assert_contains(&msg, &["'weird.arr'", "unknown value type 77"]);
}

#[test]
fn arrays_nested_too_deep() {
    let mut raw = Raw::header(3, 0, 1).str("deep").u32(9);
    for _ in 0..40 {
        raw = raw.u32(9).u64(1);
    }
    let (_, msg) = parse_err(&raw.u32(0).u64(0).0);
    assert_contains(&msg, &["'deep'", "nested deeper than 16"]);
}

#[test]
fn tensor_offset_out_of_range() {
    let (err, msg) = parse_err(&one_tensor(
        "llama",
        "blk.0.attn_q.weight",
        &[64],
        0,
        1 << 40,
    ));
    assert!(matches!(err, GgufError::DataOutOfBounds { .. }));
    assert_contains(
        &msg,
        &["'blk.0.attn_q.weight'", "extends past the end of the file"],
    );
    // Offset near u64::MAX: the extent is reported without wrapping around.
    let offset = u64::MAX - 31;
    let (_, msg) = parse_err(&one_tensor("llama", "t", &[64], 0, offset));
    let start = u128::from(offset) + 128; // header + infos padded to 128 bytes
    assert_contains(&msg, &["'t'", &format!("[{start}..{})", start + 256)]);
}

#[test]
fn data_extent_past_end_names_range_and_file_length() {
    // 64 F32 = 256 bytes; only 256 data bytes exist, so offset 32 ends 32 bytes too late.
    let bytes = one_tensor("llama", "x", &[64], 0, 32);
    let (_, msg) = parse_err(&bytes);
    let len = bytes.len();
    assert_eq!(
        msg,
        format!(
            "tensor 'x': data [{}..{}) extends past the end of the file ({len} bytes)",
            len - 256 + 32,
            len + 32
        )
    );
}

#[test]
fn misaligned_tensor_offset() {
    let (_, msg) = parse_err(&one_tensor("llama", "tok", &[4], 0, 4));
    assert_eq!(
        msg,
        "tensor 'tok': data offset 4 is not a multiple of the alignment 32"
    );
}

#[test]
fn unknown_tensor_type() {
    let (err, msg) = parse_err(&one_tensor("llama", "blk.3.ffn_up.weight", &[256], 99, 0));
    assert!(matches!(err, GgufError::UnknownTensorType { id: 99, .. }));
    assert_contains(
        &msg,
        &["'blk.3.ffn_up.weight'", "unknown type id 99", "'llama'"],
    );
}

#[test]
fn type_36_outside_bitnet_is_not_i2_s() {
    let (_, msg) = parse_err(&one_tensor("llama", "blk.0.attn_q.weight", &[128], 36, 0));
    assert_contains(
        &msg,
        &[
            "'blk.0.attn_q.weight'",
            "36",
            "'llama'",
            "I2_S only for bitnet-b1.58/bitnet-25/bitnet",
        ],
    );
    // No architecture key at all.
    let bytes = Raw::header(3, 1, 0).tensor("w", &[128], 36, 0).data(64).0;
    let (_, msg) = parse_err(&bytes);
    assert_contains(&msg, &["'w'", "architecture ''", "I2_S"]);
    // The same tensor under each bitnet architecture is fine.
    for arch in ["bitnet-b1.58", "bitnet-25", "bitnet"] {
        let g = Gguf::parse(&one_tensor(arch, "w", &[128], 36, 0)).unwrap();
        assert_eq!(g.tensors[0].ty, GgmlType::I2_S);
    }
}

#[test]
fn dims_product_overflow() {
    let (_, msg) = parse_err(&one_tensor("llama", "big", &[1 << 32, 1 << 32, 2], 0, 0));
    assert_contains(&msg, &["'big'", "[4294967296, 4294967296, 2]", "overflows"]);
    // Element count fits, byte size does not.
    let (_, msg) = parse_err(&one_tensor("llama", "wide", &[1 << 62, 2], 0, 0));
    assert_contains(&msg, &["'wide'", "9223372036854775808", "F32", "overflows"]);
}

#[test]
fn zero_and_bad_dimension_counts() {
    let (_, msg) = parse_err(&one_tensor("llama", "z", &[4, 0], 0, 0));
    assert_eq!(msg, "tensor 'z': dimensions [4, 0] contain a zero");
    let (_, msg) = parse_err(&one_tensor("llama", "none", &[], 0, 0));
    assert_contains(&msg, &["'none'", "0 dimensions", "1 to 4"]);
    let (_, msg) = parse_err(&one_tensor("llama", "five", &[1, 1, 1, 1, 1], 0, 0));
    assert_contains(&msg, &["'five'", "5 dimensions"]);
    let raw = Raw::header(3, 1, 0).str("huge").u32(u32::MAX).data(64);
    let (_, msg) = parse_err(&raw.0);
    assert_contains(&msg, &["'huge'", "4294967295 dimensions"]);
}

#[test]
fn block_size_mismatch() {
    // Q8_0 (id 8) has 32-element blocks.
    let (_, msg) = parse_err(&one_tensor("llama", "emb", &[20], 8, 0));
    assert_eq!(
        msg,
        "tensor 'emb': 20 elements is not a multiple of the Q8_0 block size 32"
    );
}

#[test]
fn bad_alignment_values() {
    for (raw, shown) in [
        (Raw::header(3, 0, 1).kv_u32("general.alignment", 0), "u32 0"),
        (
            Raw::header(3, 0, 1).kv_u32("general.alignment", 48),
            "u32 48",
        ),
        (
            Raw::header(3, 0, 1)
                .str("general.alignment")
                .u32(10)
                .u64(32),
            "u64 32",
        ),
        (
            Raw::header(3, 0, 1).kv_str("general.alignment", "32"),
            "string \"32\"",
        ),
    ] {
        let (_, msg) = parse_err(&raw.0);
        assert_contains(&msg, &["'general.alignment'", "power-of-two u32", shown]);
    }
    // A valid custom alignment is honoured.
    let bytes = Raw::header(3, 1, 1)
        .kv_u32("general.alignment", 64)
        .tensor("t", &[8], 0, 64)
        .data(128)
        .0;
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!((g.alignment, g.tensors[0].offset), (64, 64));
}

#[test]
fn architecture_must_be_a_string() {
    let (_, msg) = parse_err(&Raw::header(3, 0, 1).kv_u32("general.architecture", 7).0);
    assert_contains(
        &msg,
        &["'general.architecture'", "expected string", "u32 7"],
    );
}

#[test]
fn duplicates_and_overlaps() {
    let raw = Raw::header(3, 0, 2).kv_u32("k", 1).kv_u32("k", 2);
    let (_, msg) = parse_err(&raw.0);
    assert_eq!(msg, "duplicate metadata key 'k'");
    let raw = Raw::header(3, 2, 0)
        .tensor("t", &[8], 0, 0)
        .tensor("t", &[8], 0, 32);
    let (_, msg) = parse_err(&raw.data(64).0);
    assert_eq!(msg, "duplicate tensor name 't'");
    let raw = Raw::header(3, 2, 0)
        .tensor("a", &[16], 0, 0)
        .tensor("b", &[8], 0, 32);
    let (_, msg) = parse_err(&raw.data(128).0);
    assert_contains(&msg, &["tensor 'b'", "overlaps tensor 'a'"]);
}

/// A path in the temp directory unique to this test process.
fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("gguf-malformed-{}-{name}", std::process::id()))
}

#[test]
fn file_errors_start_with_the_path() {
    let missing = temp_path("missing.gguf");
    let msg = GgufFile::open(&missing).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("{}: cannot open", missing.display())),
        "{msg}"
    );

    let dir = std::env::temp_dir();
    let msg = GgufFile::open(&dir).unwrap_err().to_string();
    assert!(msg.starts_with(&format!("{}: ", dir.display())), "{msg}");
    assert_contains(&msg, &["directory"]);

    let empty = temp_path("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let msg = GgufFile::open(&empty).unwrap_err().to_string();
    std::fs::remove_file(&empty).unwrap();
    assert_eq!(
        msg,
        format!(
            "{}: truncated at byte 0 while reading magic (needs 4 bytes, 0 left)",
            empty.display()
        )
    );

    let cut = temp_path("cut.gguf");
    std::fs::write(&cut, &small_valid_file()[..20]).unwrap();
    let msg = GgufFile::open(&cut).unwrap_err().to_string();
    std::fs::remove_file(&cut).unwrap();
    assert_eq!(
        msg,
        format!(
            "{}: truncated at byte 16 while reading kv_count (needs 8 bytes, 4 left)",
            cut.display()
        )
    );
}

#[test]
fn file_open_serves_tensor_data() {
    let path = temp_path("ok.gguf");
    let bytes = small_valid_file();
    std::fs::write(&path, &bytes).unwrap();
    let file = GgufFile::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(file.bytes(), bytes.as_slice());
    assert_eq!(file.gguf().architecture().unwrap(), "bitnet-b1.58");
    assert_eq!(file.gguf().get_u32("bitnet-b1.58.block_count").unwrap(), 2);
    let (info, data) = file.tensor("output_norm.weight").unwrap();
    assert_eq!((info.ty, data), (GgmlType::F32, &[2u8; 32][..]));
    assert_eq!(
        file.tensor_data(file.gguf().require_tensor("blk.0.attn_q.weight").unwrap()),
        [1u8; 64]
    );
    assert_eq!((*file.source()).as_ref().len(), bytes.len());
    let msg = file.tensor("nope").unwrap_err().to_string();
    assert_eq!(msg, format!("{}: tensor 'nope' is missing", path.display()));
}
