//! Whole models on every kernel this CPU runs: the same logits as the scalar reference
//! (BitLinear bit for bit, the head up to summation order), batched prefill and decode equal
//! to separate sequences, the Q8_0 head, and the CLI's kernel, thread and bench options.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;

use bitnet::gguf::Gguf;
use bitnet::kernels::Kernel;
use bitnet::model::{Batch, KvType, Model, State};
use bitnet::parallel::{Pool, Serial};
use bitnet::synth;

fn load(spec: &synth::SynthSpec, kernel: Kernel) -> Model {
    let bytes = synth::build(spec).unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    Model::load(&g, Arc::new(bytes), kernel).unwrap()
}

fn logits(model: &Model, exec: &dyn bitnet::parallel::Exec, tokens: &[u32]) -> Vec<f32> {
    let mut state = State::new(&model.config, 64, KvType::F32).unwrap();
    model
        .forward(exec, &mut state, tokens, true)
        .unwrap()
        .to_vec()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / scale)
        .fold(0.0, f32::max)
}

#[test]
fn every_kernel_matches_scalar_on_every_fixture() {
    let tokens = synth::fixture_prompt_tokens();
    let pool = Pool::new(2).unwrap();
    for spec in synth::fixture_specs() {
        let want = logits(&load(&spec, Kernel::SCALAR), &Serial, &tokens);
        for k in Kernel::available() {
            let model = load(&spec, k);
            for (exec, threads) in [(&Serial as &dyn bitnet::parallel::Exec, 1), (&pool, 2)] {
                let got = logits(&model, exec, &tokens);
                // The BitLinear layers are exact; only the head's f32 dot may sum in
                // another order, and that difference flows through nothing else.
                let d = max_rel_diff(&got, &want);
                assert!(d <= 1e-5, "{} on {k} ({threads} threads): {d}", spec.name);
                // Kernels whose head is the scalar one: the whole pass bit for bit.
                if k.logits_exact() {
                    assert!(
                        bits(&got) == bits(&want),
                        "{} on {k} ({threads} threads): logits_exact but max rel diff {d}",
                        spec.name
                    );
                }
            }
        }
    }
}

#[test]
fn batch_decode_equals_separate_sequences() {
    let spec = &synth::fixture_specs()[1];
    for k in Kernel::available() {
        let model = load(spec, k);
        let prompts: [&[u32]; 3] = [&[256, 72, 105], &[256, 66], &[256, 1, 2, 3, 4]];
        let steps: [[u32; 3]; 3] = [[10, 20, 30], [40, 50, 60], [70, 80, 90]];
        // Separately: each sequence on its own.
        let mut want = Vec::new();
        for (s, p) in prompts.iter().enumerate() {
            let mut state = State::new(&model.config, 32, KvType::F16).unwrap();
            model.forward(&Serial, &mut state, p, false).unwrap();
            let mut per = Vec::new();
            for step in &steps {
                per.push(
                    model
                        .forward(&Serial, &mut state, &[step[s]], false)
                        .unwrap()
                        .to_vec(),
                );
            }
            want.push(per);
        }
        // Together: one forward per step for all three.
        let mut batch = Batch::new(&model.config, 3, 32, KvType::F16).unwrap();
        for (s, p) in prompts.iter().enumerate() {
            model
                .forward(&Serial, &mut batch.seqs[s], p, false)
                .unwrap();
        }
        let v = model.config.vocab;
        for (i, step) in steps.iter().enumerate() {
            let got = model
                .forward_batch(&Serial, &mut batch, step)
                .unwrap()
                .to_vec();
            for s in 0..3 {
                assert_eq!(
                    got[s * v..(s + 1) * v],
                    want[s][i][..],
                    "{k}: step {i} seq {s}"
                );
            }
        }
        assert!(model.forward_batch(&Serial, &mut batch, &[1, 2]).is_err());
    }
}

#[test]
fn batch_prefill_equals_separate_sequences() {
    let spec = &synth::fixture_specs()[1];
    let pool = Pool::new(2).unwrap();
    // Unequal lengths, one of a single token; the second turn starts each sequence at its
    // own position, as a chat's next turn would.
    let turns: [[&[u32]; 3]; 2] = [
        [&[256, 72, 105, 33, 10], &[256], &[256, 66, 67]],
        [&[32, 119], &[44, 32, 116, 104, 101], &[33]],
    ];
    for k in Kernel::available() {
        let model = load(spec, k);
        for (exec, threads) in [(&Serial as &dyn bitnet::parallel::Exec, 1), (&pool, 2)] {
            for all_logits in [false, true] {
                let mut batch = Batch::new(&model.config, 3, 32, KvType::F16).unwrap();
                let mut alone: Vec<State> = (0..3)
                    .map(|_| State::new(&model.config, 32, KvType::F16).unwrap())
                    .collect();
                for (turn, prompts) in turns.iter().enumerate() {
                    let got = model
                        .forward_seqs(exec, &mut batch, prompts, all_logits)
                        .unwrap()
                        .to_vec();
                    let mut want = Vec::new();
                    for (s, p) in alone.iter_mut().zip(prompts) {
                        want.extend_from_slice(model.forward(exec, s, p, all_logits).unwrap());
                    }
                    // Every token's arithmetic is the same whichever tokens share the call
                    // (integer BitLinear sums, per-token norms, the head's per-token dot):
                    // bit for bit, on every kernel.
                    assert!(
                        bits(&got) == bits(&want),
                        "{k} ({threads} threads) turn {turn} all_logits {all_logits}"
                    );
                }
                let pos: Vec<usize> = batch.seqs.iter().map(|s| s.pos).collect();
                assert_eq!(pos, [7, 6, 4]);
            }
        }
    }
    let model = load(spec, Kernel::SCALAR);
    let mut batch = Batch::new(&model.config, 2, 32, KvType::F16).unwrap();
    for bad in [&[&[1u32][..]][..], &[&[1], &[]], &[&[1], &[2], &[3]]] {
        assert!(model.forward_seqs(&Serial, &mut batch, bad, false).is_err());
    }
    assert!(batch.seqs.iter().all(|s| s.pos == 0));
}

#[test]
fn q8_0_head_is_close_to_f16_and_the_same_on_every_kernel() {
    let tokens = synth::fixture_prompt_tokens();
    let spec = &synth::fixture_specs()[0];
    let f16 = logits(&load(spec, Kernel::SCALAR), &Serial, &tokens);
    let mut reference = load(spec, Kernel::SCALAR);
    reference.quantize_head_q8_0(&Serial).unwrap();
    assert_eq!(reference.head().ty, bitnet::quants::GgmlType::Q8_0);
    let q8 = logits(&reference, &Serial, &tokens);
    // Q8_0 weights and activations: ~1% error on logits of order 10, never more.
    let d = max_rel_diff(&q8, &f16);
    assert!(d > 0.0 && d < 0.02, "q8_0 head vs f16: {d}");
    let pool = Pool::new(2).unwrap();
    for k in Kernel::available() {
        let mut model = load(spec, k);
        model.quantize_head_q8_0(&pool).unwrap();
        let got = logits(&model, &pool, &tokens);
        let d = max_rel_diff(&got, &q8);
        assert!(d <= 1e-5, "{k}: {d}");
        if k.logits_exact() {
            assert!(
                bits(&got) == bits(&q8),
                "{k}: logits_exact but max rel diff {d}"
            );
        }
    }
}

fn infer(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bitnet-infer"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("bitnet-infer runs")
}

/// Panics with the whole output unless it contains every one of `wanted`.
fn assert_contains_all(out: &str, wanted: &[&str]) {
    for w in wanted {
        assert!(out.contains(w), "{w}: {out}");
    }
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn info_json_lists_logits_exact_kernels_and_cpu_features() {
    let m = fixture("tiny-b158-tq2_0.gguf");
    let o = infer(&["info", "--model", &m, "--json"], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("info --json is JSON");
    let names = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("not an array: {v}"))
            .iter()
            .map(|s| s.as_str().expect("a string").to_string())
            .collect()
    };
    let kernels = &json["kernels"];
    let available = names(&kernels["available"]);
    let exact = names(&kernels["logits_exact"]);
    let want: Vec<String> = Kernel::available()
        .filter(|k| k.logits_exact())
        .map(|k| k.name().to_string())
        .collect();
    assert_eq!(exact, want);
    assert!(exact.iter().any(|k| k == "scalar"), "{exact:?}");
    assert!(exact.iter().all(|k| available.contains(k)), "{exact:?}");
    // x86 kernels run SIMD heads: bit-exact BitLinear, but not bit-identical logits.
    #[cfg(target_arch = "x86_64")]
    assert_eq!(exact, ["scalar"]);
    // The features run-time detection saw, by name.
    let features = names(&kernels["cpu_features"]);
    assert!(features.iter().all(|f| !f.is_empty()), "{features:?}");
    #[cfg(target_arch = "x86_64")]
    for (f, detected) in [
        ("avx2", std::arch::is_x86_feature_detected!("avx2")),
        (
            "avx512vnni",
            std::arch::is_x86_feature_detected!("avx512vnni"),
        ),
        ("avxvnni", std::arch::is_x86_feature_detected!("avxvnni")),
    ] {
        assert_eq!(
            features.iter().any(|x| x == f),
            detected,
            "{f}: {features:?}"
        );
    }
}

#[test]
fn cli_kernel_selection_info_json_and_bench() {
    let m = fixture("tiny-b158-tq2_0.gguf");
    let text = |o: &Output| String::from_utf8_lossy(&o.stdout).into_owned();
    let err = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    let info = infer(&["info", "--model", &m, "--json"], &[]);
    assert!(info.status.success(), "{}", err(&info));
    let json = text(&info);
    assert!(
        json.contains("\"kernels\": {\"available\": [\"scalar\""),
        "{json}"
    );
    assert!(
        json.contains(&format!("\"selected\": \"{}\"", Kernel::detect())),
        "{json}"
    );
    assert!(
        json.contains("\"vocab\": ") && json.contains("\"TQ2_0\""),
        "{json}"
    );

    // Forcing: by flag or environment, and a clear error for unknown / unavailable kernels.
    let forced = infer(
        &["info", "--model", &m, "--json"],
        &[("BITNET_KERNEL", "scalar")],
    );
    assert!(text(&forced).contains("\"selected\": \"scalar\""));
    let bad = infer(&["info", "--model", &m, "--kernel", "nope"], &[]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(err(&bad).contains("unknown kernel 'nope'"), "{}", err(&bad));
    if let Some(k) = bitnet::kernels::compiled().find(|k| !k.is_available()) {
        let o = infer(
            &["--model", &m, "--prompt-tokens", "1", "--kernel", k.name],
            &[],
        );
        assert_eq!(o.status.code(), Some(1));
        assert!(err(&o).contains("lacks"), "{}", err(&o));
    }

    for k in Kernel::available() {
        let args = [
            "--model",
            &m,
            "--prompt-tokens",
            "256,72,105",
            "-n",
            "4",
            "--temperature",
            "0",
            "--kernel",
            k.name(),
            "--threads",
            "2",
            "--head",
            "q8_0",
            "--batch-size",
            "2",
        ];
        let o = infer(&args, &[]);
        assert!(o.status.success(), "{k}: {}", err(&o));
        // Same prompt, greedy: both sequences produce the same text.
        let out = text(&o);
        let seqs: Vec<&str> = out.split("--- sequence").skip(1).collect();
        assert_eq!(seqs.len(), 2, "{out}");
        let body = |s: &str| s.split_once('\n').map(|(_, b)| b.to_string()).unwrap();
        assert_eq!(body(seqs[0]), body(seqs[1]));
        assert!(
            err(&o).contains(&format!("kernel       {k}")),
            "{}",
            err(&o)
        );
    }

    let bench = infer(
        &[
            "bench", "--model", &m, "-p", "8", "-n", "4", "-t", "1,2", "-r", "2", "--bw-mib", "16",
            "--json",
        ],
        &[],
    );
    assert!(bench.status.success(), "{}", err(&bench));
    let json = text(&bench);
    assert_contains_all(
        &json,
        &[
            "\"threads\": 1",
            "\"threads\": 2",
            "prefill_tok_s",
            "decode_tok_s",
            "decode_gb_s",
            "mem_read_gb_s",
            "decode_bw_ratio",
        ],
    );
    let table_args = [
        "bench", "--model", &m, "-p", "4", "-n", "2", "-r", "1", "--bw-mib", "8",
    ];
    let table = infer(&table_args, &[]);
    assert!(text(&table).contains("| pp4"), "{}", text(&table));
    assert!(!text(&table).contains("vs 1 seq"), "{}", text(&table));

    // --profile: every part of a token, and decode's ternary layers next to one section.
    let profiled = infer(&[&table_args[..], &["-t", "2", "--profile"]].concat(), &[]);
    assert!(profiled.status.success(), "{}", err(&profiled));
    let out = text(&profiled);
    assert_contains_all(
        &out,
        &[
            "profile pp4, 2 threads",
            "profile tg2, 2 threads",
            "| norms + act quant |",
            "| ternary layers |",
            "| (the same in one section) |",
            "| attention |",
            "| head (+ final norm) |",
            "G int8 multiply-adds per second",
        ],
    );

    // -b 2: two sequences next to one, in the table and in JSON.
    let batched = [
        "bench", "--model", &m, "-p", "4", "-n", "2", "-r", "1", "-b", "2",
    ];
    let table = infer(&[&batched[..], &["--bw-mib", "0"]].concat(), &[]);
    let out = text(&table);
    assert_contains_all(
        &out,
        &[
            "| pp4   |",
            "| pp4x2 |",
            "| tg2   |",
            "| tg2x2 |",
            "| vs 1 seq |",
        ],
    );
    let json = text(&infer(
        &[&batched[..], &["--bw-mib", "8", "--json"]].concat(),
        &[],
    ));
    assert_contains_all(
        &json,
        &[
            "\"batch_size\": 2",
            "\"prefill_tok_s\"",
            "\"decode_tok_s\"",
            "\"batch_prefill_tok_s\"",
            "\"batch_prefill_vs_1\"",
            "\"batch_decode_tok_s\"",
            "\"batch_decode_gb_s\"",
            "\"batch_decode_vs_1\"",
            "\"decode_bw_ratio\"",
        ],
    );
    let bad = infer(&["bench", "--model", &m, "-t", "0"], &[]);
    assert_eq!(bad.status.code(), Some(1));

    // At a context depth, with a quantized cache: the KV bytes read per decode token are
    // those of depth + (n + 1) / 2 positions on average, next to the weight bytes.
    let deep = infer(
        &[
            "bench",
            "--model",
            &m,
            "-p",
            "4",
            "-n",
            "3",
            "-r",
            "1",
            "--bw-mib",
            "0",
            "-d",
            "20",
            "--kv-type",
            "q4_0",
            "--json",
        ],
        &[],
    );
    assert!(deep.status.success(), "{}", err(&deep));
    let json = text(&deep);
    let info = text(&infer(&["info", "--model", &m, "--json"], &[]));
    let per: f64 = info
        .split("\"q4_0\": {\"bytes_per_token\": ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{info}"));
    let want = format!("\"kv_bytes_per_token_read\": {:.0}", per * 22.0);
    assert_contains_all(
        &json,
        &["\"ctx_depth\": 20", "\"kv_type\": \"q4_0\"", &want],
    );
    let too_deep = infer(&["bench", "--model", &m, "-d", "100000"], &[]);
    assert_eq!(too_deep.status.code(), Some(1));
    assert!(err(&too_deep).contains("-d 100000"), "{}", err(&too_deep));
}

#[test]
fn prefetch_choice_is_reported_checked_and_leaves_logits_alone() {
    let m = fixture("tiny-b158-tq2_0.gguf");
    let err = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let dir = std::env::temp_dir().join(format!("bitnet-prefetch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Decode steps (one token each) go through the loops that prefetch.
    let logits = |mode: &str| {
        let path = dir.join(format!("{mode}.npy"));
        let args = [
            "--model",
            &m,
            "--prompt-tokens",
            "256,72,105",
            "-n",
            "4",
            "--temperature",
            "0",
            "--threads",
            "2",
            "--prefetch",
            mode,
            "--logits-out",
            path.to_str().unwrap(),
        ];
        let o = infer(&args, &[]);
        assert!(o.status.success(), "{mode}: {}", err(&o));
        std::fs::read(&path).unwrap()
    };
    assert_eq!(logits("on"), logits("off"));

    let info = infer(&["info", "--model", &m, "--json", "--prefetch", "off"], &[]);
    let json = String::from_utf8_lossy(&info.stdout);
    assert!(json.contains("\"prefetch\": \"off\""), "{json}");
    let auto = infer(&["info", "--model", &m, "--json"], &[]);
    let want = if bitnet::cpu::is_amd() {
        "\"prefetch\": \"off (auto: AMD CPU)\""
    } else {
        "\"prefetch\": \"on (auto)\""
    };
    assert!(String::from_utf8_lossy(&auto.stdout).contains(want));

    let bad = infer(&["info", "--model", &m], &[("BITNET_PREFETCH", "maybe")]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        err(&bad)
            .contains("BITNET_PREFETCH: unknown value 'maybe' (expected one of: auto, on, off)"),
        "{}",
        err(&bad)
    );
    std::fs::remove_dir_all(&dir).ok();
}
