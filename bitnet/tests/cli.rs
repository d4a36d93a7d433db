//! `bitnet-infer` end to end: runs every fixture, and turns bad files into one clear
//! error line and exit code 1 (never a panic). Runs `BITNET_INFER_BIN` when set; more
//! hostile files in `cli_malformed.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

use bitnet::gguf::{Gguf, GgufWriter};
use bitnet::{npy, synth};

mod gguf_support;
use gguf_support::{argmax, fixture, infer, rewrite_fixture};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A file under cargo's scratch directory (`target/tmp/cli`), as the tokenizer tests keep
/// theirs: a fixed name per use, overwritten by the next run, so nothing piles up (a
/// directory per process under /tmp left 13 MB behind every run).
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli");
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

/// `--logits-out` of a run on `model` with `extra` flags: (shape, data).
fn logits_of(model: &Path, out_name: &str, extra: &[&str]) -> (Vec<usize>, Vec<f32>) {
    let path = scratch(out_name);
    let mut args = vec![
        "--model",
        model.to_str().unwrap(),
        "--kernel",
        "scalar",
        "--threads",
        "1",
        "--temperature",
        "0",
        "--logits-out",
        path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = infer(&args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    npy::read_f32(&std::fs::read(&path).unwrap()).unwrap()
}

#[test]
fn teacher_forcing_with_own_greedy_tokens_reproduces_greedy_logits() {
    let vocab = synth::FIXTURE_VOCAB;
    let prompt = "376,72,101,108";
    let n_prompt = 4;
    for name in [
        "tiny-b158-i2_s.gguf",
        "tiny-bitnet-tq1_0.gguf",
        "tiny-llama-tq2_0.gguf",
    ] {
        let model = fixture(name);
        for kv in ["f32", "f16"] {
            let greedy_args = [
                "--prompt-tokens",
                prompt,
                "--max-tokens",
                "6",
                "--kv-type",
                kv,
            ];
            let (shape, greedy) = logits_of(&model, "greedy.npy", &greedy_args);
            // 6 tokens sampled, the first 5 fed back: no end-of-text cut this run short.
            assert_eq!(shape, vec![n_prompt + 5, vocab], "{name}");
            let fed: Vec<String> = (n_prompt - 1..n_prompt + 4)
                .map(|r| argmax(&greedy[r * vocab..(r + 1) * vocab]).to_string())
                .collect();
            let fed = fed.join(",");
            let forced_args = [
                "--prompt-tokens",
                prompt,
                "--force-tokens",
                &fed,
                "--kv-type",
                kv,
            ];
            let (shape, forced) = logits_of(&model, "forced.npy", &forced_args);
            assert_eq!(shape, vec![n_prompt + 5, vocab], "{name} kv {kv}");
            // Same tokens at the same positions through the same code: bit for bit.
            assert!(
                greedy
                    .iter()
                    .zip(&forced)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{name} kv {kv}: forced {fed} differs from the greedy run"
            );
        }
    }
}

#[test]
fn teacher_forcing_ignores_end_of_text_and_max_tokens() {
    let model = fixture("tiny-b158-tq2_0.gguf");
    let eos = (synth::BOS + 1).to_string();
    let forced = format!("72,{eos},101,{eos}");
    let args = [
        "--prompt-tokens",
        "376,72,101",
        "--force-tokens",
        &forced,
        "--max-tokens",
        "1",
    ];
    let (shape, data) = logits_of(&model, "forced-eos.npy", &args);
    // One row per prompt position and per forced token, end-of-text included.
    assert_eq!(shape, vec![3 + 4, synth::FIXTURE_VOCAB]);
    assert!(data.iter().all(|v| v.is_finite()));
}

/// Runs a teacher-forced f16-KV run of fixture `name` on `threads` threads with both tie
/// dumps; returns their contents (activations, KV).
fn tie_dumps(name: &str, threads: &str) -> (String, String) {
    let (acts, kv) = (
        scratch(&format!("ties-{name}-{threads}.txt")),
        scratch(&format!("kv-ties-{name}-{threads}.txt")),
    );
    let model = fixture(name);
    let out = Command::new(env!("CARGO_BIN_EXE_bitnet-infer"))
        .args([
            "--model",
            model.to_str().unwrap(),
            "--prompt-tokens",
            "376,72,101,108,108,111,44,32",
            "--force-tokens",
            "119,111,114,108,100,33",
            "--kv-type",
            "f16",
            "--threads",
            threads,
        ])
        .env("BITNET_DUMP_TIES", &acts)
        .env("BITNET_DUMP_KV_TIES", &kv)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
    (read(&acts), read(&kv))
}

#[test]
fn tie_dumps_cover_prefill_and_decode_and_match_the_codes() {
    let (acts, kv) = tie_dumps("tiny-bitnet-i2_s.gguf", "1");
    let sites = ["attn_norm", "attn_sub_norm", "ffn_norm", "ffn_sub_norm"];
    let mut positions = std::collections::BTreeSet::new();
    for line in acts.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 5, "{line}");
        let (layer, norm) = f[0]
            .strip_prefix("blk.")
            .and_then(|s| s.split_once('.'))
            .unwrap_or_else(|| panic!("{line}"));
        assert!(
            layer.parse::<usize>().unwrap() < 4 && sites.contains(&norm),
            "{line}"
        );
        positions.insert(f[1].parse::<usize>().unwrap());
        let elem: usize = f[2].parse().unwrap();
        assert!(elem < 768, "{line}");
        let (xs, code): (f64, i32) = (f[3].parse().unwrap(), f[4].parse().unwrap());
        assert!(
            (xs - xs.floor() - 0.5).abs() <= 1e-3 + 1e-9,
            "not a near-tie: {line}"
        );
        assert!(
            f64::from(code) == xs.floor() || f64::from(code) == xs.floor() + 1.0,
            "{line}"
        );
    }
    // 8 prompt + 6 forced positions, 0-based; ~1% of elements are near-ties, so each
    // position has some.
    assert_eq!(positions, (0..14).collect(), "positions with near-ties");
    let mut kv_lines = 0;
    for line in kv.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 5, "{line}");
        assert!(
            f[0].ends_with(".cache_k") || f[0].ends_with(".cache_v"),
            "{line}"
        );
        assert!(f[1].parse::<usize>().unwrap() < 14, "{line}");
        let (x, stored): (f32, f32) = (f[3].parse().unwrap(), f[4].parse().unwrap());
        // The stored f16 is an f16, and one of the two around x.
        assert_eq!(half_round_trip(stored), stored, "{line}");
        assert!(
            (x - stored).abs() <= x.abs() * 2f32.powi(-10) + 2f32.powi(-24),
            "{line}"
        );
        kv_lines += 1;
    }
    assert!(kv_lines > 0, "no KV near-ties in an f16 run");
    // Threads split the quantization, not what it computes: the same file.
    assert_eq!(tie_dumps("tiny-bitnet-i2_s.gguf", "2"), (acts, kv));
}

/// llama has no sub-norms: the inputs of `attn_output` and `ffn_down` are quantized raw,
/// and their near-ties are dumped under the projection's name.
#[test]
fn llama_tie_dumps_name_the_unnormed_inputs_and_ignore_threads() {
    let (acts, kv) = tie_dumps("tiny-llama-tq2_0.gguf", "1");
    let mut seen = std::collections::BTreeSet::new();
    for line in acts.lines() {
        let site = line.split(' ').next().unwrap();
        let (_, name) = site.strip_prefix("blk.").unwrap().split_once('.').unwrap();
        seen.insert(name.to_string());
    }
    let want = ["attn_norm", "attn_output", "ffn_down", "ffn_norm"];
    assert_eq!(seen, want.iter().map(|s| s.to_string()).collect());
    assert_eq!(tie_dumps("tiny-llama-tq2_0.gguf", "2"), (acts, kv));
}

/// `x` through f16 and back (round to nearest even, normal range).
fn half_round_trip(x: f32) -> f32 {
    let e = x.abs().log2().floor() as i32;
    let ulp = 2f32.powi(e.max(-14) - 10);
    (x / ulp).round_ties_even() * ulp
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
    let missing = rewrite_fixture(
        "tiny-b158-tq2_0.gguf",
        |_, v| Some(v),
        |t| t.name != "blk.2.ffn_up.weight",
    );
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
    assert_clean_error(
        &[
            "--model",
            m,
            "--prompt-tokens",
            "1",
            "--force-tokens",
            "2",
            "--batch-size",
            "2",
        ],
        &["--force-tokens", "--batch-size"],
    );
    assert_clean_error(
        &[
            "--model",
            m,
            "--prompt-tokens",
            "1",
            "--force-tokens",
            "2,999999",
        ],
        &["999999"],
    );
    assert_clean_error(
        &[
            "--model",
            m,
            "--prompt-tokens",
            "1,2",
            "--ctx",
            "4",
            "--force-tokens",
            "3,4,5",
        ],
        &["--force-tokens", "context of 4"],
    );
    let out = infer(&["--model", m, "--prompt-tokens", "1", "--kv-type", "q3"]);
    assert_eq!(out.status.code(), Some(2)); // clap's usage error
}

/// The KV types the stats line reports for `kv_args` on a fixture.
fn kv_of(model: &Path, kv_args: &[&str]) -> Result<String, String> {
    let mut args = vec![
        "--model",
        model.to_str().unwrap(),
        "--prompt-tokens",
        "1,72,101",
        "--max-tokens",
        "3",
        "--seed",
        "1",
    ];
    args.extend_from_slice(kv_args);
    let out = infer(&args);
    let stderr = text(&out.stderr);
    if !out.status.success() {
        return Err(stderr);
    }
    let line = stderr.lines().find(|l| l.starts_with("kernel")).unwrap();
    let kv = line
        .split("kv ")
        .nth(1)
        .unwrap()
        .split(", ctx")
        .next()
        .unwrap();
    assert!(stderr.contains("bytes/token"), "{stderr}");
    Ok(kv.to_string())
}

#[test]
fn kv_type_flags_override_in_order() {
    let m = fixture("tiny-b158-i2_s.gguf");
    assert_eq!(kv_of(&m, &[]).unwrap(), "f16");
    assert_eq!(kv_of(&m, &["--kv-bits", "4"]).unwrap(), "q4_0");
    assert_eq!(kv_of(&m, &["--kv-bits", "8"]).unwrap(), "q8_0");
    let over = ["--kv-bits", "4", "--kv-type", "q8_0"];
    assert_eq!(kv_of(&m, &over).unwrap(), "q8_0");
    let split = ["--kv-bits", "4", "--kv-type", "q8_0", "--kv-type-v", "f32"];
    assert_eq!(kv_of(&m, &split).unwrap(), "k q8_0 / v f32");
    assert_eq!(
        kv_of(&m, &["--kv-type-k", "q4_0"]).unwrap(),
        "k q4_0 / v f16"
    );
    // info: 4 layers x kv_dim 128, keys and values: q4_0 is 2 x 4 x (128 / 32) x 18 bytes.
    let info = text(&infer(&["info", "--model", m.to_str().unwrap()]).stdout);
    let q4 = info
        .lines()
        .find(|l| l.trim_start().starts_with("q4_0"))
        .unwrap();
    assert!(q4.contains(" 576 bytes/token"), "{info}");
    let out = infer(&["--model", m.to_str().unwrap(), "--kv-bits", "3"]);
    assert_eq!(out.status.code(), Some(2)); // clap's usage error
}

#[test]
fn block_kv_type_on_a_head_size_not_a_multiple_of_32_names_the_flag() {
    use bitnet::gguf::Value;
    // The fixture's 256 query / 128 kv dims cut into 16 heads of 16 (8 kv heads).
    let bytes = rewrite_fixture(
        "tiny-b158-tq2_0.gguf",
        |k, v| match k {
            "bitnet-b1.58.attention.head_count" => Some(Value::U32(16)),
            "bitnet-b1.58.attention.head_count_kv" => Some(Value::U32(8)),
            "bitnet-b1.58.rope.dimension_count" => Some(Value::U32(16)),
            _ => Some(v),
        },
        |_| true,
    );
    let path = scratch("head16.gguf");
    std::fs::write(&path, bytes).unwrap();
    let info = text(&infer(&["info", "--model", path.to_str().unwrap()]).stdout);
    assert!(info.contains("head size 16"), "{info}");
    // Only the types this head size allows are listed.
    assert!(info.contains("f16 ") && !info.contains("q4_0"), "{info}");
    assert_eq!(kv_of(&path, &["--kv-type", "f32"]).unwrap(), "f32");
    for (args, flag) in [
        (&["--kv-type-k", "q4_0"][..], "--kv-type-k q4_0"),
        (
            &["--kv-type", "f16", "--kv-type-v", "q8_0"][..],
            "--kv-type-v q8_0",
        ),
        (&["--kv-bits", "8"][..], "--kv-bits 8"),
    ] {
        let e = kv_of(&path, args).unwrap_err();
        assert!(
            e.contains(flag) && e.contains("head size is 16") && !e.contains("panicked"),
            "{args:?}: {e}"
        );
    }
}

#[test]
fn head_in_file_or_copied_gives_the_same_logits() {
    let model = fixture("tiny-b158-tq2_0.gguf");
    let args = ["--prompt-tokens", "256,72,105", "--max-tokens", "3"];
    let copied = logits_of(&model, "head-copied.npy", &args);
    let in_file = logits_of(
        &model,
        "head-in-file.npy",
        &[&args[..], &["--head-in-file"]].concat(),
    );
    assert_eq!(copied, in_file);
}

#[test]
fn page_cache_rereads_a_file_and_names_a_missing_one() {
    let path = scratch("page-cache.bin");
    std::fs::write(&path, vec![7u8; 5 << 20]).unwrap();
    let out = infer(&["page-cache", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("5.2 of 5.2 MB in the page cache"),
        "{stdout}"
    );
    let missing = scratch("no-such-file.bin");
    let out = infer(&["page-cache", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no-such-file.bin") && stderr.contains("No such file"),
        "{stderr}"
    );
}

#[test]
fn membw_prints_its_table_and_the_core_to_core_round_trip() {
    let out = infer(&["membw", "--mib", "4", "-r", "1", "-t", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("| probe (bench: widest loads, 4 accumulators) | 2 MiB pages"),
        "{stdout}"
    );
    if std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2 {
        let line = stdout
            .lines()
            .find(|l| l.starts_with("core-to-core round trip"))
            .unwrap_or_else(|| panic!("no round trip line: {stdout}"));
        // "...: 101 ns before the passes, 98 ns after": two positive figures.
        let ns: Vec<f64> = line
            .split(": ")
            .last()
            .unwrap()
            .split(", ")
            .map(|p| p.split(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(ns.len() == 2 && ns.iter().all(|&v| v > 0.0), "{line}");
    }
}
