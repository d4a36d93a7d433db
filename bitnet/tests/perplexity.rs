//! `bitnet-infer perplexity` against llama.cpp's definition, recomputed here from the logits
//! `run --logits-out` dumps for the same token ids (the forward pass itself is held to the
//! numpy reference by the matrix; this checks the chunking, BOS, scoring and statistics).

mod gguf_support;

use gguf_support::{fixture, infer};

const TEXT: &str = "It was the best of times, it was the worst of times, it was the age of \
    wisdom, it was the age of foolishness, it was the epoch of belief, it was the epoch of \
    incredulity, it was the season of Light, it was the season of Darkness, it was the spring \
    of hope, it was the winter of despair, we had everything before us, we had nothing before \
    us, we were all going direct to Heaven, we were all going direct the other way.";
const CTX: usize = 32;

fn json(o: &std::process::Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("JSON")
}

fn text_file(dir: &std::path::Path) -> String {
    let p = dir.join("text.txt");
    std::fs::write(&p, TEXT).unwrap();
    p.to_string_lossy().into_owned()
}

/// The NLL sum llama.cpp's rule gives: per chunk, BOS in place of the first token, positions
/// ctx/2 .. ctx-1 scored against the next token, log-softmax in f64.
fn expected_nll(model: &str, ids: &[u32], bos: u32, dir: &std::path::Path) -> (f64, usize) {
    let (mut sum, mut n) = (0.0f64, 0);
    for (c, chunk) in ids.chunks_exact(CTX).enumerate() {
        let mut toks = chunk.to_vec();
        toks[0] = bos;
        let list: Vec<String> = toks.iter().map(|t| t.to_string()).collect();
        let out = dir.join(format!("chunk{c}.npy"));
        let o = infer(&[
            "--model",
            model,
            "--prompt-tokens",
            &list.join(","),
            "-n",
            "0",
            "--kernel",
            "scalar",
            "--threads",
            "1",
            "--kv-type",
            "f32",
            "--logits-out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (shape, logits) = bitnet::npy::read_f32(&std::fs::read(&out).unwrap()).unwrap();
        let vocab = shape[1];
        assert_eq!(shape[0], CTX);
        for j in CTX / 2..CTX - 1 {
            let row = &logits[j * vocab..(j + 1) * vocab];
            let max = row
                .iter()
                .cloned()
                .fold(f64::NEG_INFINITY, |m, x| m.max(x as f64));
            let z: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
            sum -= row[chunk[j + 1] as usize] as f64 - max - z.ln();
            n += 1;
        }
    }
    (sum, n)
}

#[test]
fn perplexity_follows_llama_cpp_and_compares_runs() {
    let dir = std::env::temp_dir().join(format!("bitnet-ppl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = text_file(&dir);
    let m = fixture("tiny-b158-tq2_0.gguf");
    let m = m.to_str().unwrap();

    let tok = json(&infer(&[
        "tokenize", "--model", m, "--text", TEXT, "--json",
    ]));
    let ids: Vec<u32> = tok["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let bos = ids[0];
    assert!(ids.len() >= 2 * CTX, "{} tokens", ids.len());
    let chunks = ids.len() / CTX;

    let base = dir.join("base.kld");
    let args = |extra: &[&str]| {
        let mut v = vec![
            "perplexity",
            "--model",
            m,
            "--file",
            &text,
            "--ctx",
            "32",
            "--kernel",
            "scalar",
            "--threads",
            "1",
            "--kv-type",
            "f32",
            "--json",
        ];
        v.extend_from_slice(extra);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        json(&infer(&a.iter().map(String::as_str).collect::<Vec<_>>()))
    };
    let got = run(&["--kl-divergence-base", base.to_str().unwrap()]);
    let (want_sum, want_n) = expected_nll(m, &ids, bos, &dir);
    assert_eq!(got["n_scored"].as_u64().unwrap() as usize, want_n);
    assert_eq!(want_n, chunks * (CTX / 2 - 1));
    assert_eq!(got["chunks"].as_u64().unwrap() as usize, chunks);
    let sum = got["nll_sum"].as_f64().unwrap();
    assert!(
        (sum - want_sum).abs() <= 1e-6 * want_sum.abs(),
        "nll_sum {sum} vs {want_sum}"
    );
    let ppl = got["ppl"].as_f64().unwrap();
    assert!((ppl - (want_sum / want_n as f64).exp()).abs() <= 1e-6 * ppl);
    assert!(got["ppl_stderr"].as_f64().unwrap() > 0.0);

    // Smaller forward passes, and a limit on the chunks.
    let batched = run(&["--batch-size", "5"]);
    let b = batched["nll_sum"].as_f64().unwrap();
    assert!((b - sum).abs() <= 1e-4 * sum.abs(), "{b} vs {sum}");
    let one = run(&["--chunks", "1"]);
    assert_eq!(one["n_scored"].as_u64().unwrap() as usize, CTX / 2 - 1);

    // The same run against its own base: no divergence, the same top-1 everywhere; an F16
    // cache diverges a little but agrees on almost every top-1.
    let same = run(&["--kl-divergence", base.to_str().unwrap()]);
    assert!(same["kld_mean"].as_f64().unwrap().abs() < 1e-9, "{same}");
    assert_eq!(same["top1_agreement"].as_f64().unwrap(), 1.0);
    let f16 = {
        let mut a = args(&["--kl-divergence", base.to_str().unwrap()]);
        let i = a.iter().position(|x| x == "f32").unwrap();
        a[i] = "f16".into();
        json(&infer(&a.iter().map(String::as_str).collect::<Vec<_>>()))
    };
    let kld = f16["kld_mean"].as_f64().unwrap();
    assert!(kld > 0.0 && kld < 0.01, "{f16}");
    // The paired difference: zero against itself; the base's PPL is the f32 run's (from the
    // saved f32 log-probabilities); a 4-bit cache diverges more than f16, with a nonzero
    // standard error of the difference.
    assert_eq!(same["ppl_diff"].as_f64().unwrap(), 0.0, "{same}");
    assert_eq!(same["ppl_diff_stderr"].as_f64().unwrap(), 0.0, "{same}");
    let pb = f16["ppl_base"].as_f64().unwrap();
    assert!((pb - ppl).abs() <= 1e-4 * ppl, "{pb} vs {ppl}");
    let q4 = {
        let mut a = args(&["--kl-divergence", base.to_str().unwrap()]);
        let i = a.iter().position(|x| x == "f32").unwrap();
        a[i] = "q4_0".into();
        json(&infer(&a.iter().map(String::as_str).collect::<Vec<_>>()))
    };
    assert!(q4["kld_mean"].as_f64().unwrap() > kld, "{q4} vs {f16}");
    let (d, se) = (
        q4["ppl_diff"].as_f64().unwrap(),
        q4["ppl_diff_stderr"].as_f64().unwrap(),
    );
    assert!(d.is_finite() && se > 0.0, "{q4}");
    let run_ppl = q4["ppl"].as_f64().unwrap();
    assert!((pb + d - run_ppl).abs() <= 1e-3 * run_ppl, "{q4}");

    // A base from another text, a short text, a file that is not a base: clear errors.
    let a = args(&["--chunks", "1", "--kl-divergence", base.to_str().unwrap()]);
    let o = infer(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("scored other tokens"));
    let short = dir.join("short.txt");
    std::fs::write(&short, "too short").unwrap();
    let o = infer(&[
        "perplexity",
        "--model",
        m,
        "--file",
        short.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not one chunk"));
    let o = infer(&[
        "perplexity",
        "--model",
        m,
        "--file",
        &text,
        "--ctx",
        "32",
        "--kl-divergence",
        &text,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a KL-divergence base"));
    std::fs::remove_dir_all(&dir).ok();
}
