//! `bitnet-infer tokenize`: the ids and pieces of a text under a model's vocabulary (any
//! GGUF with `tokenizer.*` metadata, tensors or not), and `--bench`: encode throughput.

use std::time::Instant;

use bitnet::gguf::GgufFile;
use bitnet::rng::Rng;
use bitnet::tokenizer::Tokenizer;

use crate::args::TokenizeArgs;

pub fn main(a: &TokenizeArgs) -> Result<(), String> {
    let file = GgufFile::open(&a.model).map_err(|e| e.to_string())?;
    let path = a.model.display();
    let tok = Tokenizer::from_gguf(file.gguf()).map_err(|e| format!("{path}: {e}"))?;
    tok.notes.iter().for_each(|n| eprintln!("{path}: {n}"));
    if a.bench {
        return bench(&tok, &path.to_string());
    }
    let text = a
        .text
        .as_deref()
        .ok_or("give the text: --text TEXT (or --bench)")?;
    let ids = if a.chat {
        tok.chat_prompt(a.system.as_deref(), text)
            .map_err(|e| format!("{path}: {e}"))?
    } else {
        tok.encode_with(text, !a.no_special, !a.no_special)
    };
    let pieces: Vec<&str> = ids.iter().map(|&id| tok.piece(id).unwrap_or("")).collect();
    if a.json {
        let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
        let pieces: Vec<String> = pieces.iter().map(|p| json_str(p)).collect();
        println!(
            "{{\"ids\": [{}], \"pieces\": [{}]}}",
            ids.join(", "),
            pieces.join(", ")
        );
    } else {
        for (id, piece) in ids.iter().zip(&pieces) {
            println!("{id:>7}  {}", json_str(piece));
        }
        eprintln!("{} tokens", ids.len());
    }
    Ok(())
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Encode (and decode) throughput on 1 MiB of mixed text.
fn bench(tok: &Tokenizer, path: &str) -> Result<(), String> {
    let text = mixed_text(1 << 20, 0x70CE);
    let mb = text.len() as f64 / 1e6;
    let mut ids = tok.encode(&text);
    let mut best_enc = f64::INFINITY;
    let mut best_dec = f64::INFINITY;
    let mut reps = 0;
    let t_all = Instant::now();
    // Best of at least 5 runs and at least 2 s: the figure a quiet machine gives.
    while reps < 5 || t_all.elapsed().as_secs_f64() < 2.0 {
        let t = Instant::now();
        ids = tok.encode(&text);
        best_enc = best_enc.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let bytes = tok.decode(&ids, true);
        best_dec = best_dec.min(t.elapsed().as_secs_f64());
        if reps == 0 && bytes.len() < text.len() {
            return Err("decode(encode(text)) lost bytes".into());
        }
        reps += 1;
    }
    println!(
        "vocabulary   {path} ({}, {} tokens)",
        tok.model_name(),
        tok.vocab_size()
    );
    println!(
        "text         {} bytes of mixed prose, code, numbers, whitespace, accents, CJK, emoji",
        text.len()
    );
    println!(
        "tokens       {} ({:.2} bytes/token)",
        ids.len(),
        text.len() as f64 / ids.len() as f64
    );
    println!(
        "encode       {:.1} MB/s ({:.2} ms, best of {reps})",
        mb / best_enc,
        best_enc * 1e3
    );
    println!(
        "decode       {:.1} MB/s ({:.2} ms, best of {reps})",
        mb / best_dec,
        best_dec * 1e3
    );
    Ok(())
}

/// `len` bytes (cut at a character boundary) of snippets in a seeded random order.
fn mixed_text(len: usize, seed: u64) -> String {
    const SNIPPETS: &[&str] = &[
        "The quick brown fox jumps over the lazy dog. ",
        "Ternary weights take the values -1, 0 and +1, so a matrix product needs no multiplications. ",
        "In 2024, researchers trained a 2-billion-parameter model on 4 trillion tokens. ",
        "She didn't say it'd work; we'll see what they're planning. ",
        "fn main() {\n    let x: Vec<u32> = (0..10).map(|i| i * i).collect();\n    println!(\"{x:?}\");\n}\n",
        "def softmax(x):\n\te = np.exp(x - x.max())\n\treturn e / e.sum()\n\n",
        "for (int i = 0; i < n; ++i) { acc += a[i] * b[i]; }\n",
        "{\"id\": 12345, \"score\": 0.987, \"tags\": [\"a\", \"b\"]}\n",
        "3.14159 2.71828 1.41421 6.02214076e23 1234567890 ",
        "    \n\n\t\t  \r\n",
        "Ça va? Très bien, merci. Größe, Straße, naïve café, São Paulo. ",
        "Привет, как дела? Всё хорошо. ",
        "Γειά σου κόσμε. ",
        "机器学习模型需要大量的数据。我们今天去公园散步吧。",
        "日本語の文章はひらがなとカタカナと漢字で書かれています。",
        "한국어 문장도 섞여 있습니다. ",
        "Emoji: 🦙🚀👍🏽❤️ 😀 ",
        "<|eot_id|>",
    ];
    // Prose is the bulk of real prompts: weight the English sentences up.
    const WEIGHTS: &[u64] = &[6, 4, 4, 4, 2, 2, 2, 2, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1];
    let total: u64 = WEIGHTS.iter().sum();
    let mut rng = Rng::new(seed);
    let mut out = String::with_capacity(len + 256);
    while out.len() < len {
        let mut r = rng.below(total);
        let k = WEIGHTS
            .iter()
            .position(|&w| {
                if r < w {
                    return true;
                }
                r -= w;
                false
            })
            .unwrap_or(0);
        out.push_str(SNIPPETS[k]);
    }
    let mut cut = len;
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    out.truncate(cut);
    out
}
