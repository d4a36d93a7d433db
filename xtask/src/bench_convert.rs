//! `cargo xtask bench-convert`: a synthetic checkpoint of BitNet b1.58 2B4T's shape in one of
//! its published formats, written under `target/bench/` (never committed: 4.8 GB for bf16),
//! then converted by the release `bitnet-infer convert`, which prints its time and peak RSS.
//!
//! * `bf16`: master weights in two shards with an index, as `microsoft/bitnet-b1.58-2B-4T-bf16`.
//! * `packed`: uint8 `[out/4, in]` codes plus a bf16 `weight_scale` per projection, as
//!   `microsoft/bitnet-b1.58-2B-4T`.
//!
//! The values are random (the figures are about bytes, not about language); the vocabulary
//! has the real one's size (128000 byte-level BPE tokens with merges, 256 specials), so the
//! tokenizer's share of memory and time is counted too.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use bitnet::tokenizer::byte_to_char;
use serde_json::{json, Value};
use xshell::{cmd, Shell};

use crate::flags::BenchConvertArgs;

const HIDDEN: usize = 2560;
const FF: usize = 6912;
const LAYERS: usize = 30;
const HEADS: usize = 20;
const KV_HEADS: usize = 5;
const HEAD_DIM: usize = HIDDEN / HEADS;
/// Llama 3's: 128000 BPE tokens, then 256 special ones.
const BPE_TOKENS: usize = 128_000;
const VOCAB: usize = BPE_TOKENS + 256;

#[derive(Clone, Copy, PartialEq)]
enum Form {
    Bf16,
    Packed,
}

/// One tensor to write: name, safetensors dtype, shape, and how to fill it.
struct Spec {
    name: String,
    dtype: &'static str,
    shape: Vec<usize>,
    fill: Fill,
}

#[derive(Clone, Copy)]
enum Fill {
    /// bf16 uniform in ±amplitude.
    Uniform(f32),
    /// bf16 near 1 (norm weights).
    Norm,
    /// uint8 bytes of four random codes in 0..=2 each.
    Codes,
    /// One bf16 value.
    Scale(f32),
}

impl Spec {
    fn bytes(&self) -> usize {
        let elem = if self.dtype == "U8" { 1 } else { 2 };
        self.shape.iter().product::<usize>() * elem
    }
}

/// Every tensor of the checkpoint, in the order transformers' state dict lists them.
fn specs(form: Form) -> Vec<Spec> {
    let t = |name: String, dtype, shape: Vec<usize>, fill| Spec {
        name,
        dtype,
        shape,
        fill,
    };
    let mut out = vec![t(
        "model.embed_tokens.weight".into(),
        "BF16",
        vec![VOCAB, HIDDEN],
        Fill::Uniform(0.05),
    )];
    let kv = KV_HEADS * HEAD_DIM;
    let proj = [
        ("self_attn.q_proj", HIDDEN, HIDDEN),
        ("self_attn.k_proj", kv, HIDDEN),
        ("self_attn.v_proj", kv, HIDDEN),
        ("self_attn.o_proj", HIDDEN, HIDDEN),
        ("mlp.gate_proj", FF, HIDDEN),
        ("mlp.up_proj", FF, HIDDEN),
        ("mlp.down_proj", HIDDEN, FF),
    ];
    let norms = [
        ("input_layernorm", HIDDEN),
        ("self_attn.attn_sub_norm", HIDDEN),
        ("post_attention_layernorm", HIDDEN),
        ("mlp.ffn_sub_norm", FF),
    ];
    for l in 0..LAYERS {
        let base = format!("model.layers.{l}");
        for (name, n) in norms {
            out.push(t(
                format!("{base}.{name}.weight"),
                "BF16",
                vec![n],
                Fill::Norm,
            ));
        }
        for (name, rows, cols) in proj {
            match form {
                Form::Bf16 => out.push(t(
                    format!("{base}.{name}.weight"),
                    "BF16",
                    vec![rows, cols],
                    Fill::Uniform(0.02),
                )),
                Form::Packed => {
                    out.push(t(
                        format!("{base}.{name}.weight"),
                        "U8",
                        vec![rows / 4, cols],
                        Fill::Codes,
                    ));
                    out.push(t(
                        format!("{base}.{name}.weight_scale"),
                        "BF16",
                        vec![1],
                        Fill::Scale(100.0),
                    ));
                }
            }
        }
    }
    out.push(t(
        "model.norm.weight".into(),
        "BF16",
        vec![HIDDEN],
        Fill::Norm,
    ));
    out
}

/// xorshift64*: fast enough to fill gigabytes in seconds.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// bf16 bits of `x` (truncation: random values need no rounding).
fn bf16_bits(x: f32) -> [u8; 2] {
    let b = (x.to_bits() >> 16) as u16;
    b.to_le_bytes()
}

fn write_data(w: &mut impl Write, s: &Spec, rng: &mut Rng) -> std::io::Result<()> {
    const CHUNK: usize = 1 << 16;
    let mut buf = Vec::with_capacity(CHUNK * 2);
    let total = s.bytes();
    let mut done = 0;
    while done < total {
        buf.clear();
        let n = (total - done).min(CHUNK * 2);
        match s.fill {
            Fill::Uniform(_) | Fill::Norm => {
                // Norm weights near 1; matrices uniform in +-amplitude.
                let (base, spread) = match s.fill {
                    Fill::Uniform(a) => (0.0, 2.0 * a),
                    _ => (1.0, 0.2),
                };
                for _ in 0..n / 2 {
                    let u = (rng.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                    buf.extend_from_slice(&bf16_bits(base + spread * u));
                }
            }
            Fill::Codes => {
                for _ in 0..n {
                    let r = rng.next() >> 32;
                    let code = |i: u32| ((r >> (8 * i)) & 0xff) as u8 % 3;
                    buf.push(code(0) | code(1) << 2 | code(2) << 4 | code(3) << 6);
                }
            }
            Fill::Scale(v) => buf.extend_from_slice(&bf16_bits(v)),
        }
        w.write_all(&buf)?;
        done += buf.len();
    }
    Ok(())
}

/// One safetensors file: 8-byte header length, JSON header padded to 8 bytes, data.
fn write_safetensors(path: &Path, specs: &[&Spec], rng: &mut Rng) -> Result<u64, String> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut off = 0usize;
    for s in specs {
        let end = off + s.bytes();
        header.insert(
            s.name.clone(),
            json!({"dtype": s.dtype, "shape": s.shape, "data_offsets": [off, end]}),
        );
        off = end;
    }
    let mut h = serde_json::to_vec(&Value::Object(header)).map_err(|e| e.to_string())?;
    h.resize(h.len().div_ceil(8) * 8, b' ');
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path).map_err(err)?);
    w.write_all(&(h.len() as u64).to_le_bytes()).map_err(err)?;
    w.write_all(&h).map_err(err)?;
    for s in specs {
        write_data(&mut w, s, rng).map_err(err)?;
    }
    w.flush().map_err(err)?;
    Ok((8 + h.len() + off) as u64)
}

/// A byte-level BPE vocabulary of Llama 3's size: the 256 byte tokens, then every pair of
/// them, then triples (pair + byte) until 128000 tokens, each with the merge that makes it.
fn tokenizer_json() -> Value {
    let chars: Vec<String> = (0..=255u8).map(|b| byte_to_char(b).to_string()).collect();
    let mut vocab = serde_json::Map::with_capacity(VOCAB);
    let mut merges = Vec::with_capacity(BPE_TOKENS - 256);
    for (i, c) in chars.iter().enumerate() {
        vocab.insert(c.clone(), json!(i));
    }
    'fill: for len in [2, 3] {
        for a in 0..256usize.pow(len - 1) {
            let left: String = match len {
                2 => chars[a].clone(),
                _ => format!("{}{}", chars[a / 256], chars[a % 256]),
            };
            for right in &chars {
                if vocab.len() == BPE_TOKENS {
                    break 'fill;
                }
                merges.push(json!(format!("{left} {right}")));
                vocab.insert(format!("{left}{right}"), json!(vocab.len()));
            }
        }
    }
    let specials: Vec<Value> = (0..256)
        .map(|i| {
            let content = match i {
                0 => "<|begin_of_text|>".to_string(),
                1 => "<|end_of_text|>".to_string(),
                9 => "<|eot_id|>".to_string(),
                _ => format!("<|reserved_special_token_{i}|>"),
            };
            json!({"id": BPE_TOKENS + i, "content": content, "single_word": false,
                   "lstrip": false, "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    json!({
        "version": "1.0",
        "added_tokens": specials,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "vocab": vocab, "merges": merges}
    })
}

fn config_json(form: Form) -> Value {
    let mut c = json!({
        "architectures": ["BitNetForCausalLM"],
        "model_type": "bitnet",
        "hidden_size": HIDDEN,
        "intermediate_size": FF,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "hidden_act": "relu2",
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "max_position_embeddings": 4096,
        "vocab_size": VOCAB,
        "tie_word_embeddings": true,
        "bos_token_id": BPE_TOKENS,
        "eos_token_id": BPE_TOKENS + 1,
        "torch_dtype": "bfloat16",
    });
    if form == Form::Packed {
        c["quantization_config"] = json!({
            "quant_method": "bitnet", "linear_class": "bitlinear", "quantization_mode": "offline"
        });
    }
    c
}

/// Writes the checkpoint into `dir` (complete, or removed): returns its size in bytes.
fn write_checkpoint(dir: &Path, form: Form) -> Result<u64, String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let put = |name: &str, v: &Value| {
        let p = dir.join(name);
        fs::write(&p, serde_json::to_vec_pretty(v).unwrap())
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    put("config.json", &config_json(form))?;
    put("tokenizer.json", &tokenizer_json())?;
    put(
        "tokenizer_config.json",
        &json!({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>", "add_bos_token": true}),
    )?;
    let specs = specs(form);
    let mut rng = Rng(0x2B4_7EA5);
    let mut total = 0;
    match form {
        Form::Packed => {
            let all: Vec<&Spec> = specs.iter().collect();
            total += write_safetensors(&dir.join("model.safetensors"), &all, &mut rng)?;
        }
        Form::Bf16 => {
            // Two shards split at the middle layer, as sharded uploads are.
            let mid = format!("model.layers.{}.", LAYERS / 2);
            let split = specs.iter().position(|s| s.name.starts_with(&mid)).unwrap();
            let mut map = serde_json::Map::new();
            for (i, part) in [&specs[..split], &specs[split..]].iter().enumerate() {
                let file = format!("model-{:05}-of-00002.safetensors", i + 1);
                let refs: Vec<&Spec> = part.iter().collect();
                total += write_safetensors(&dir.join(&file), &refs, &mut rng)?;
                for s in *part {
                    map.insert(s.name.clone(), json!(file));
                }
            }
            put(
                "model.safetensors.index.json",
                &json!({"metadata": {"total_size": total}, "weight_map": map}),
            )?;
        }
    }
    Ok(total)
}

pub fn run(a: &BenchConvertArgs) -> Result<(), String> {
    let form = match a.form.as_str() {
        "bf16" => Form::Bf16,
        "packed" => Form::Packed,
        other => return Err(format!("--form {other}: expected bf16 or packed")),
    };
    let root = crate::project_root();
    let bench = root.join("target").join("bench");
    let dir: PathBuf = bench.join(format!("hf-2b4t-{}", a.form));
    let done_marker = dir.join(".complete");
    if !done_marker.exists() || a.force {
        let _ = fs::remove_dir_all(&dir);
        let t = Instant::now();
        let written = write_checkpoint(&dir, form).inspect_err(|_| {
            let _ = fs::remove_dir_all(&dir);
        })?;
        fs::write(&done_marker, b"").map_err(|e| format!("{}: {e}", done_marker.display()))?;
        println!(
            "wrote {} ({:.2} GB) in {:.1} s",
            dir.display(),
            written as f64 / 1e9,
            t.elapsed().as_secs_f64()
        );
    } else {
        println!("{} (exists; --force rewrites it)", dir.display());
    }

    let sh = Shell::new().map_err(|e| e.to_string())?;
    sh.change_dir(&root);
    cmd!(
        sh,
        "cargo build --release -p bitnet-edge --bin bitnet-infer"
    )
    .run()
    .map_err(|e| format!("building bitnet-infer: {e}"))?;
    let bin = root.join("target/release/bitnet-infer");
    let out = bench.join(format!("converted-2b4t-{}-{}.gguf", a.form, a.r#type));
    let ty = &a.r#type;
    // The converter's own closing line carries the figures (time, peak RSS).
    cmd!(sh, "{bin} convert {dir} -o {out} --type {ty}")
        .run()
        .map_err(|e| format!("bitnet-infer convert: {e}"))?;
    Ok(())
}
