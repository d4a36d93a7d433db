//! `bitnet-infer convert` on small replicas of the published `BitNetForCausalLM`
//! checkpoints, written here from their descriptions (tensor names, dtypes, layouts and
//! config keys of `microsoft/bitnet-b1.58-2B-4T` and its `-bf16` sibling), and of the
//! published 1.58-bit `LlamaForCausalLM` ones (Falcon3-*-1.58bit, Llama3-8B-1.58: packed
//! uint8 trits + `weight_scale`, `quantization_config.quant_method = "bitnet"`, no
//! sub-norms, untied `lm_head`), never from the converter's own code.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bitnet::gguf::{Gguf, Value};
use bitnet::tokenizer::byte_to_char;
use half::bf16;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde_json::json;

const HIDDEN: usize = 256;
const FF: usize = 512;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = HIDDEN / HEADS;
const LAYERS: usize = 2;
/// 256 bytes, 5 merges, 2 special tokens, and one id no token uses.
const VOCAB: usize = 264;
const BOS: u32 = 261;

/// The projections of a block: (checkpoint name, GGUF name, rows, cols).
const PROJ: [(&str, &str, usize, usize); 7] = [
    ("self_attn.q_proj", "attn_q", HIDDEN, HIDDEN),
    ("self_attn.k_proj", "attn_k", KV_HEADS * HEAD_DIM, HIDDEN),
    ("self_attn.v_proj", "attn_v", KV_HEADS * HEAD_DIM, HIDDEN),
    ("self_attn.o_proj", "attn_output", HIDDEN, HIDDEN),
    ("mlp.gate_proj", "ffn_gate", FF, HIDDEN),
    ("mlp.up_proj", "ffn_up", FF, HIDDEN),
    ("mlp.down_proj", "ffn_down", HIDDEN, FF),
];
const NORMS: [(&str, usize); 4] = [
    ("input_layernorm", HIDDEN),
    ("self_attn.attn_sub_norm", HIDDEN),
    ("post_attention_layernorm", HIDDEN),
    ("mlp.ffn_sub_norm", FF),
];

#[derive(Clone, Copy, PartialEq)]
enum Form {
    /// uint8 `[rows/4, cols]` + bf16 `weight_scale`, one file, Llama 3 pre-tokenizer,
    /// "a b" merges.
    Packed,
    /// bf16 master weights in two shards with an index, GPT-2 pre-tokenizer, [a, b] merges.
    Bf16,
    /// A 1.58-bit `LlamaForCausalLM`: packed as `Packed`, no sub-norms, SiLU, an untied
    /// bf16 `lm_head`; row 0 of every `o_proj` is all zero (a TQ block of zeros).
    Llama,
}

struct Entry {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Projection `k` of layer `l`: master weights whose mean |W| is exactly `a` = 2^-(3..7),
/// so `WeightQuant` gives s = 1/a and beta = a, with the trits this function also returns.
/// Every group of 4 holds |W|/a = 0.5, 1.5, 0.25, 1.75 in a shuffled order: 0.5 is a tie
/// that rounds to even (0), 1.75 is clamped to 1.
fn projection(l: usize, k: usize, rows: usize, cols: usize) -> (Vec<f32>, Vec<i8>, f32) {
    let a = (2.0f32).powi(-(3 + ((l * 7 + k) % 5) as i32));
    let mut rng = Lcg(0xB17 + 100 * l as u64 + k as u64);
    let mut w = Vec::with_capacity(rows * cols);
    let mut trits = Vec::with_capacity(rows * cols);
    for _ in 0..rows * cols / 4 {
        let mut mags = [(0.5f32, 0i8), (1.5, 1), (0.25, 0), (1.75, 1)];
        for i in (1..4).rev() {
            mags.swap(i, rng.next() as usize % (i + 1));
        }
        for (m, t) in mags {
            let neg = rng.next() % 2 == 1;
            w.push(if neg { -m * a } else { m * a });
            trits.push(if neg { -t } else { t });
        }
    }
    (w, trits, a)
}

/// The trits of projection `k` of layer `l` in the `Llama` replica: [`projection`]'s, with
/// row 0 of `o_proj` (k = 3; one 256-element block) zeroed.
fn llama_trits(l: usize, k: usize, rows: usize, cols: usize) -> (Vec<i8>, f32) {
    let (_, mut trits, a) = projection(l, k, rows, cols);
    if k == 3 {
        trits[..cols].fill(0);
    }
    (trits, a)
}

fn bf16_bytes(x: &[f32]) -> Vec<u8> {
    x.iter()
        .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
        .collect()
}

/// transformers' `pack_weights`: packed row i holds rows j*(rows/4) + i in bits 2j, as
/// trit + 1.
fn pack(trits: &[i8], rows: usize, cols: usize) -> Vec<u8> {
    let pr = rows / 4;
    let mut out = vec![0u8; pr * cols];
    for r in 0..rows {
        for c in 0..cols {
            out[(r % pr) * cols + c] |= ((trits[r * cols + c] + 1) as u8) << (2 * (r / pr));
        }
    }
    out
}

fn tensors(form: Form) -> Vec<Entry> {
    let mut rng = Lcg(7);
    let mut smooth = |n: usize, base: f32, spread: f32| -> Vec<f32> {
        (0..n)
            .map(|_| base + spread * ((rng.next() % 1000) as f32 / 1000.0 - 0.5))
            .collect()
    };
    let e = |name: String, dtype, shape: Vec<usize>, data| Entry {
        name,
        dtype,
        shape,
        data,
    };
    let mut out = vec![e(
        "model.embed_tokens.weight".into(),
        Dtype::BF16,
        vec![VOCAB, HIDDEN],
        bf16_bytes(&smooth(VOCAB * HIDDEN, 0.0, 1.0)),
    )];
    for l in 0..LAYERS {
        for (name, n) in NORMS {
            if form == Form::Llama && name.contains("sub_norm") {
                continue;
            }
            let w = smooth(n, 1.0, 0.2);
            out.push(e(
                format!("model.layers.{l}.{name}.weight"),
                Dtype::BF16,
                vec![n],
                bf16_bytes(&w),
            ));
        }
        for (k, (name, _, rows, cols)) in PROJ.iter().enumerate() {
            let (w, mut trits, a) = projection(l, k, *rows, *cols);
            if form == Form::Llama {
                trits = llama_trits(l, k, *rows, *cols).0;
            }
            let base = format!("model.layers.{l}.{name}");
            match form {
                Form::Bf16 => out.push(e(
                    format!("{base}.weight"),
                    Dtype::BF16,
                    vec![*rows, *cols],
                    bf16_bytes(&w),
                )),
                Form::Packed | Form::Llama => {
                    out.push(e(
                        format!("{base}.weight"),
                        Dtype::U8,
                        vec![rows / 4, *cols],
                        pack(&trits, *rows, *cols),
                    ));
                    out.push(e(
                        format!("{base}.weight_scale"),
                        Dtype::BF16,
                        vec![1],
                        bf16_bytes(&[1.0 / a]),
                    ));
                }
            }
        }
    }
    out.push(e(
        "model.norm.weight".into(),
        Dtype::BF16,
        vec![HIDDEN],
        bf16_bytes(&smooth(HIDDEN, 1.0, 0.2)),
    ));
    if form == Form::Llama {
        out.push(e(
            "lm_head.weight".into(),
            Dtype::BF16,
            vec![VOCAB, HIDDEN],
            bf16_bytes(&smooth(VOCAB * HIDDEN, 0.0, 0.5)),
        ));
    }
    out
}

fn write_safetensors(path: &Path, entries: &[Entry]) {
    let views: Vec<(String, TensorView)> = entries
        .iter()
        .map(|e| {
            let v = TensorView::new(e.dtype, e.shape.clone(), &e.data).unwrap();
            (e.name.clone(), v)
        })
        .collect();
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    std::fs::write(path, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
}

const GPT2_REGEX: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn tokenizer_json(form: Form) -> serde_json::Value {
    // Bytes at their own value's id (GPT-2's byte-to-char map), then the merges' tokens.
    let mut vocab = serde_json::Map::new();
    for b in 0..=255u8 {
        vocab.insert(byte_to_char(b).to_string(), json!(b));
    }
    let merges = [
        ("h", "e"),
        ("l", "l"),
        ("he", "ll"),
        ("hell", "o"),
        ("Ġ", "w"),
    ];
    for (i, (a, b)) in merges.iter().enumerate() {
        vocab.insert(format!("{a}{b}"), json!(256 + i));
    }
    let (merges, pre) = match form {
        Form::Packed | Form::Llama => (
            merges
                .iter()
                .map(|(a, b)| json!(format!("{a} {b}")))
                .collect::<Vec<_>>(),
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": LLAMA3_REGEX}, "behavior": "Isolated", "invert": false},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
            ]}),
        ),
        Form::Bf16 => (
            merges.iter().map(|(a, b)| json!([a, b])).collect(),
            json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}),
        ),
    };
    let special = |id: u32, s: &str| json!({"id": id, "content": s, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true});
    json!({
        "version": "1.0",
        "added_tokens": [special(BOS, "<|begin_of_text|>"), special(BOS + 1, "<|end_of_text|>")],
        "normalizer": null,
        "pre_tokenizer": pre,
        "post_processor": {"type": "TemplateProcessing", "single": [
            {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}}
        ]},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "vocab": vocab, "merges": merges}
    })
}

fn config_json(form: Form) -> serde_json::Value {
    if form == Form::Llama {
        // As Falcon3-*-1.58bit's config.json (sizes scaled down).
        return json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": HIDDEN,
            "intermediate_size": FF,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS,
            "num_key_value_heads": KV_HEADS,
            "head_dim": HEAD_DIM,
            "hidden_act": "silu",
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000042.0,
            "rope_scaling": null,
            "attention_bias": false,
            "mlp_bias": false,
            "max_position_embeddings": 128,
            "vocab_size": VOCAB,
            "tie_word_embeddings": false,
            "bos_token_id": BOS,
            "eos_token_id": BOS + 1,
            "torch_dtype": "bfloat16",
            "quantization_config": {"quant_method": "bitnet", "linear_class": "bitlinear",
                                    "quantization_mode": "offline", "use_rms_norm": false,
                                    "modules_to_not_convert": null},
        });
    }
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
        "max_position_embeddings": 128,
        "vocab_size": VOCAB,
        "tie_word_embeddings": true,
        "bos_token_id": BOS,
        "eos_token_id": BOS + 1,
        "torch_dtype": "bfloat16",
    });
    let o = c.as_object_mut().unwrap();
    match form {
        // As the 2B4T repository: offline-packed BitLinear, rope_theta on top.
        Form::Packed => {
            o.insert("rope_theta".into(), json!(500000.0));
            o.insert(
                "quantization_config".into(),
                json!({"quant_method": "bitnet", "linear_class": "bitlinear", "quantization_mode": "offline"}),
            );
        }
        // As transformers 5 writes it (tools/train): rope_parameters.
        Form::Bf16 => {
            o.insert(
                "rope_parameters".into(),
                json!({"rope_theta": 500000.0, "rope_type": "default"}),
            );
        }
        Form::Llama => unreachable!("returned above"),
    }
    c
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bitnet-convert-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes the replica of `form` in `dir`, after `edit` has had its way with the tensors.
fn replica(dir: &Path, form: Form, edit: impl FnOnce(&mut Vec<Entry>)) {
    let put = |name: &str, j: &serde_json::Value| {
        std::fs::write(dir.join(name), serde_json::to_string_pretty(j).unwrap()).unwrap()
    };
    put("config.json", &config_json(form));
    put("tokenizer.json", &tokenizer_json(form));
    let mut tc = json!({
        "bos_token": "<|begin_of_text|>",
        "eos_token": {"content": "<|end_of_text|>", "special": true},
        "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}",
    });
    // The packed replica leaves add_bos_token to the post-processor, as Llama 3's files do.
    if form == Form::Bf16 {
        tc["add_bos_token"] = json!(true);
    }
    put("tokenizer_config.json", &tc);
    let mut entries = tensors(form);
    edit(&mut entries);
    match form {
        Form::Packed | Form::Llama => write_safetensors(&dir.join("model.safetensors"), &entries),
        Form::Bf16 => {
            let half = entries.len() / 2;
            let mut map = serde_json::Map::new();
            for (i, chunk) in [&entries[..half], &entries[half..]].iter().enumerate() {
                let file = format!("model-{:05}-of-00002.safetensors", i + 1);
                write_safetensors(&dir.join(&file), chunk);
                for e in chunk.iter() {
                    map.insert(e.name.clone(), json!(file));
                }
            }
            put(
                "model.safetensors.index.json",
                &json!({"metadata": {"total_size": 0}, "weight_map": map}),
            );
        }
    }
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bitnet-infer"))
}

fn convert(dir: &Path, out: &Path, extra: &[&str]) -> Output {
    bin()
        .arg("convert")
        .arg(dir)
        .arg("-o")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn convert_ok(dir: &Path, out: &Path, extra: &[&str]) -> Vec<u8> {
    let o = convert(dir, out, extra);
    assert!(
        o.status.success(),
        "convert failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read(out).unwrap()
}

/// I2_S as `shared/design/formats.md` describes it: blocks of 128 in 32 bytes,
/// `byte = c[g]<<6 | c[32+g]<<4 | c[64+g]<<2 | c[96+g]`, then an f32 beta.
fn decode_i2_s(data: &[u8], n: usize) -> (Vec<i8>, f32) {
    let mut t = vec![0i8; n];
    for (i, block) in data[..n / 4].chunks_exact(32).enumerate() {
        for (g, &b) in block.iter().enumerate() {
            for j in 0..4 {
                t[i * 128 + 32 * j + g] = ((b >> (6 - 2 * j)) & 3) as i8 - 1;
            }
        }
    }
    let beta = f32::from_le_bytes(data[n / 4..n / 4 + 4].try_into().unwrap());
    (t, beta)
}

/// TQ2_0: per 256, `qs[64]` then f16 `d`; element 128h + 32l + m in qs[32h + m] bits 2l.
fn decode_tq2_0(data: &[u8], n: usize) -> (Vec<i8>, Vec<f32>) {
    let mut t = vec![0i8; n];
    let mut d = Vec::new();
    for (i, block) in data.chunks_exact(66).enumerate() {
        for h in 0..2 {
            for l in 0..4 {
                for m in 0..32 {
                    t[i * 256 + 128 * h + 32 * l + m] =
                        ((block[32 * h + m] >> (2 * l)) & 3) as i8 - 1;
                }
            }
        }
        d.push(half::f16::from_le_bytes([block[64], block[65]]).to_f32());
    }
    (t, d)
}

#[test]
fn packed_and_bf16_forms_give_identical_tensors_with_the_replicas_trits() {
    let dir = temp_dir("forms");
    let (packed, masters) = (dir.join("packed"), dir.join("bf16"));
    for (d, form) in [(&packed, Form::Packed), (&masters, Form::Bf16)] {
        std::fs::create_dir_all(d).unwrap();
        replica(d, form, |_| {});
    }
    let a = convert_ok(&packed, &dir.join("a.gguf"), &[]);
    let b = convert_ok(&masters, &dir.join("b.gguf"), &[]);
    let (ga, gb) = (Gguf::parse(&a).unwrap(), Gguf::parse(&b).unwrap());
    assert_eq!(ga.tensors.len(), 3 + LAYERS * 11 - 1);
    for (ta, tb) in ga.tensors.iter().zip(&gb.tensors) {
        assert_eq!((&ta.name, &ta.dims, ta.ty), (&tb.name, &tb.dims, tb.ty));
        assert!(
            ga.tensor_data(&a, ta) == gb.tensor_data(&b, tb),
            "tensor '{}' differs between the forms",
            ta.name
        );
    }
    assert_eq!(ga.get_str("general.architecture").unwrap(), "bitnet-b1.58");
    assert_eq!(ga.get_str("tokenizer.ggml.pre").unwrap(), "llama-bpe");
    assert_eq!(gb.get_str("tokenizer.ggml.pre").unwrap(), "gpt-2");
    assert_eq!(
        ga.get("bitnet-b1.58.rope.freq_base"),
        Some(&Value::F32(500000.0))
    );
    assert_eq!(
        gb.get("bitnet-b1.58.rope.freq_base"),
        Some(&Value::F32(500000.0))
    );
    assert_eq!(
        ga.get("tokenizer.ggml.add_bos_token"),
        Some(&Value::Bool(true)),
        "from the post-processor"
    );

    // GPT-2's regex as an explicit Split is GPT-2's pre-tokenizer too.
    let mut t = tokenizer_json(Form::Bf16);
    t["pre_tokenizer"] = json!({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": GPT2_REGEX}, "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
    ]});
    std::fs::write(masters.join("tokenizer.json"), t.to_string()).unwrap();
    let s = convert_ok(&masters, &dir.join("s.gguf"), &[]);
    let gs = Gguf::parse(&s).unwrap();
    assert_eq!(gs.get_str("tokenizer.ggml.pre").unwrap(), "gpt-2");

    // The trits and beta in the file are the replica's.
    for l in 0..LAYERS {
        for (k, (_, name, rows, cols)) in PROJ.iter().enumerate() {
            let (_, trits, a_) = projection(l, k, *rows, *cols);
            let t = ga.tensor(&format!("blk.{l}.{name}.weight")).unwrap();
            let (got, beta) = decode_i2_s(ga.tensor_data(&a, t), rows * cols);
            assert!(got == trits, "blk.{l}.{name}: trits differ");
            assert_eq!(beta, a_, "blk.{l}.{name}: beta");
        }
    }

    // TQ2_0: the same trits, d = 1 in every block and beta in the F32 `.scale` tensor.
    let c = convert_ok(&packed, &dir.join("c.gguf"), &["--type", "tq2_0"]);
    let gc = Gguf::parse(&c).unwrap();
    for l in 0..LAYERS {
        for (k, (_, name, rows, cols)) in PROJ.iter().enumerate() {
            let (_, trits, a_) = projection(l, k, *rows, *cols);
            let t = gc.tensor(&format!("blk.{l}.{name}.weight")).unwrap();
            let (got, d) = decode_tq2_0(gc.tensor_data(&c, t), rows * cols);
            assert!(got == trits, "blk.{l}.{name}: TQ2_0 trits differ");
            assert!(d.iter().all(|&d| d == 1.0));
            let s = gc.tensor(&format!("blk.{l}.{name}.scale")).unwrap();
            assert_eq!(gc.tensor_data(&c, s), a_.to_le_bytes());
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn converted_models_load_run_and_tokenize() {
    let dir = temp_dir("run");
    let mut outputs = Vec::new();
    for (form, tag) in [(Form::Packed, "packed"), (Form::Bf16, "bf16")] {
        let src = dir.join(tag);
        std::fs::create_dir_all(&src).unwrap();
        replica(&src, form, |_| {});
        for (ty, head) in [("i2_s", "f16"), ("tq1_0", "q8_0"), ("tq2_0", "f32")] {
            let out = dir.join(format!("{tag}-{ty}.gguf"));
            convert_ok(&src, &out, &["--type", ty, "--head", head]);
            let logits = dir.join(format!("{tag}-{ty}.npy"));
            let o = bin()
                .arg("-m")
                .arg(&out)
                .args([
                    "--prompt-tokens",
                    "261,259,260,111",
                    "-n",
                    "0",
                    "--logits-out",
                ])
                .arg(&logits)
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "run on {tag} {ty}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(std::fs::metadata(&logits).unwrap().len() > 0);
            outputs.push(out);
        }
    }

    // ids the replica's vocabulary and merges imply (BOS 261 first).
    let cases: [(&str, &[u32]); 4] = [
        ("hello world", &[BOS, 259, 260, 111, 114, 108, 100]),
        ("hello hello", &[BOS, 259, 32, 259]),
        ("well", &[BOS, 119, 101, 257]),
        ("<|end_of_text|>he", &[BOS, BOS + 1, 256]),
    ];
    for out in &outputs {
        for (text, want) in cases {
            let o = bin()
                .arg("tokenize")
                .arg("-m")
                .arg(out)
                .args(["--json", "-t", text])
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let ids: Vec<u32> = j["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(ids, want, "{text:?} in {}", out.display());
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

struct BadCase {
    tag: &'static str,
    form: Form,
    /// Applied to the tensors before they are written.
    edit: fn(&mut Vec<Entry>),
    /// Applied to the directory after the replica is written.
    after: fn(&Path),
    want: Vec<&'static str>,
}

fn q_proj_of(es: &mut [Entry]) -> &mut Entry {
    let name = "model.layers.0.self_attn.q_proj.weight";
    es.iter_mut().find(|e| e.name == name).unwrap()
}

/// Every bad input: exit 1, the file and the tensor or field named, no output left.
#[test]
fn bad_inputs_are_named_and_leave_no_output() {
    let dir = temp_dir("bad");
    let q = "model.layers.0.self_attn.q_proj.weight";
    let late = "model.layers.1.mlp.down_proj.weight";
    let none = |_: &mut Vec<Entry>| {};
    let keep = |_: &Path| {};
    let cases: Vec<BadCase> = vec![
        BadCase {
            tag: "missing-file",
            form: Form::Packed,
            edit: none,
            after: |d| std::fs::remove_file(d.join("tokenizer.json")).unwrap(),
            want: vec!["tokenizer.json"],
        },
        BadCase {
            tag: "arch",
            form: Form::Packed,
            edit: none,
            after: |d| {
                let mut c = config_json(Form::Packed);
                c["architectures"] = json!(["MistralForCausalLM"]);
                std::fs::write(d.join("config.json"), c.to_string()).unwrap();
            },
            want: vec!["config.json", "architectures", "MistralForCausalLM"],
        },
        BadCase {
            tag: "truncated",
            form: Form::Packed,
            edit: none,
            after: |d| {
                let p = d.join("model.safetensors");
                let bytes = std::fs::read(&p).unwrap();
                std::fs::write(&p, &bytes[..100]).unwrap();
            },
            want: vec!["model.safetensors"],
        },
        BadCase {
            tag: "pre-tokenizer",
            form: Form::Bf16,
            edit: none,
            after: |d| {
                let mut t = tokenizer_json(Form::Bf16);
                t["pre_tokenizer"] = json!({"type": "Whitespace"});
                std::fs::write(d.join("tokenizer.json"), t.to_string()).unwrap();
            },
            want: vec!["tokenizer.json", "pre_tokenizer", "Whitespace"],
        },
        BadCase {
            tag: "shape",
            form: Form::Packed,
            edit: |es| q_proj_of(es).shape = vec![HIDDEN / 2, HIDDEN / 2],
            after: keep,
            want: vec!["model.safetensors", q, "shape [128, 128]"],
        },
        BadCase {
            tag: "dtype",
            form: Form::Packed,
            edit: |es| {
                let e = q_proj_of(es);
                e.dtype = Dtype::I16;
                e.shape = vec![HIDDEN / 8, HIDDEN];
            },
            after: keep,
            want: vec!["model.safetensors", q, "dtype I16"],
        },
        BadCase {
            tag: "missing-tensor",
            form: Form::Bf16,
            edit: |es| es.retain(|e| e.name != "model.layers.1.mlp.down_proj.weight"),
            after: keep,
            want: vec!["model-00001-of-00002.safetensors", late, "missing"],
        },
        BadCase {
            tag: "late-shape",
            form: Form::Bf16,
            edit: |es| {
                let name = "model.layers.1.mlp.down_proj.weight";
                let e = es.iter_mut().find(|e| e.name == name).unwrap();
                e.shape = vec![FF, HIDDEN];
            },
            after: keep,
            want: vec!["model-00002-of-00002.safetensors", late, "shape [512, 256]"],
        },
    ];
    for BadCase {
        tag,
        form,
        edit,
        after,
        want,
    } in cases
    {
        let src = dir.join(tag);
        std::fs::create_dir_all(&src).unwrap();
        replica(&src, form, edit);
        after(&src);
        let out = dir.join(format!("{tag}.gguf"));
        let o = convert(&src, &out, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{tag}: {err}");
        for w in want {
            assert!(err.contains(w), "{tag}: {w:?} not in {err}");
        }
        assert!(!out.exists(), "{tag}: output left behind");
        assert!(
            !dir.join(format!("{tag}.gguf.tmp")).exists(),
            "{tag}: temp file left behind"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The GGUF row order llama.cpp's converter gives q/k for its NORM RoPE, from its
/// description: within each head of `HEAD_DIM` rows, GGUF row 2i holds HF row i and GGUF
/// row 2i + 1 holds HF row i + HEAD_DIM/2.
fn norm_rope_order(hf: &[i8], rows: usize, cols: usize) -> Vec<i8> {
    let mut out = Vec::with_capacity(rows * cols);
    for h in 0..rows / HEAD_DIM {
        for i in 0..HEAD_DIM / 2 {
            for hf_row in [h * HEAD_DIM + i, h * HEAD_DIM + HEAD_DIM / 2 + i] {
                out.extend_from_slice(&hf[hf_row * cols..(hf_row + 1) * cols]);
            }
        }
    }
    out
}

#[test]
fn llama_packed_replica_converts_to_a_ternary_llama_that_runs() {
    let dir = temp_dir("llama");
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    replica(&src, Form::Llama, |_| {});
    let out = dir.join("llama.gguf");
    let bytes = convert_ok(&src, &out, &[]);
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(g.get("llama.rope.freq_base"), Some(&Value::F32(1000042.0)));
    assert_eq!(g.get("llama.attention.head_count_kv"), Some(&Value::U32(2)));
    assert_eq!(
        g.get("llama.attention.layer_norm_rms_epsilon"),
        Some(&Value::F32(1e-6))
    );
    // token_embd, output_norm, output, and 9 tensors per block (no sub-norms), each of the
    // 7 projections with its exact F32 `.scale`.
    assert_eq!(g.tensors.len(), 3 + LAYERS * (9 + 7));
    assert!(g.tensor("output.weight").is_some(), "untied head");
    assert!(g.tensors.iter().all(|t| !t.name.contains("sub_norm")));

    // `--fold-scale`: beta folded into each block's d as llama.cpp's converter does, 0 for an
    // all-zero block, and no `.scale` tensors.
    let folded_path = dir.join("folded.gguf");
    let folded = convert_ok(&src, &folded_path, &["--fold-scale"]);
    let gf = Gguf::parse(&folded).unwrap();
    assert_eq!(gf.tensors.len(), 3 + LAYERS * 9);
    assert!(gf.tensors.iter().all(|t| !t.name.ends_with(".scale")));

    // Trits: the replica's, q/k rows in llama.cpp's NORM order.
    let mut zero_blocks = 0;
    for l in 0..LAYERS {
        for (k, (_, name, rows, cols)) in PROJ.iter().enumerate() {
            let (hf, a) = llama_trits(l, k, *rows, *cols);
            let want = match *name {
                "attn_q" | "attn_k" => norm_rope_order(&hf, *rows, *cols),
                _ => hf,
            };
            let t = g.tensor(&format!("blk.{l}.{name}.weight")).unwrap();
            assert_eq!(t.ty.name(), "TQ2_0", "blk.{l}.{name}");
            let (got, d) = decode_tq2_0(g.tensor_data(&bytes, t), rows * cols);
            assert!(got == want, "blk.{l}.{name}: trits differ");
            assert!(d.iter().all(|&d| d == 1.0));
            let s = g.tensor(&format!("blk.{l}.{name}.scale")).unwrap();
            assert_eq!(g.tensor_data(&bytes, s), a.to_le_bytes());

            let t = gf.tensor(&format!("blk.{l}.{name}.weight")).unwrap();
            let (got, d) = decode_tq2_0(gf.tensor_data(&folded, t), rows * cols);
            assert!(got == want, "blk.{l}.{name}: folded trits differ");
            for (b, &d) in d.iter().enumerate() {
                let nonzero = want[b * 256..(b + 1) * 256].iter().any(|&t| t != 0);
                // a = 2^-n is exact in f16.
                assert_eq!(d, if nonzero { a } else { 0.0 }, "blk.{l}.{name} block {b}");
                zero_blocks += usize::from(!nonzero);
            }
        }
    }
    assert_eq!(zero_blocks, LAYERS, "one all-zero block per o_proj");

    // Both forms compute the same model: a = 2^-n makes the folded d exact.
    let logits_of = |model: &Path, tag: &str| {
        let npy = dir.join(format!("{tag}.npy"));
        let o = bin()
            .arg("-m")
            .arg(model)
            .args([
                "--prompt-tokens",
                "261,259,260,111",
                "-n",
                "0",
                "--logits-out",
            ])
            .arg(&npy)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        bitnet::npy::read_f32(&std::fs::read(&npy).unwrap())
            .unwrap()
            .1
    };
    let (exact, fold) = (logits_of(&out, "exact"), logits_of(&folded_path, "fold"));
    let worst = exact
        .iter()
        .zip(&fold)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-4, "exact vs folded scale: {worst}");

    // The permutation is not the identity on these weights, so the check above has teeth.
    let (hf_q, _) = llama_trits(0, 0, HIDDEN, HIDDEN);
    assert!(norm_rope_order(&hf_q, HIDDEN, HIDDEN) != hf_q);

    let info = bin()
        .args(["info", "--json", "-m"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("\"rope_type\": \"norm\""), "{info}");

    for ty in ["tq1_0", "tq2_0"] {
        let o = dir.join(format!("{ty}.gguf"));
        convert_ok(&src, &o, &["--type", ty]);
        let run = bin()
            .arg("-m")
            .arg(&o)
            .args(["--prompt", "hello world", "-n", "4", "--temperature", "0"])
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "run {ty}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
    }

    // I2_S does not exist under llama: a clear error, nothing written.
    let bad = dir.join("i2s.gguf");
    let o = convert(&src, &bad, &["--type", "i2_s"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for w in ["--type i2_s", "llama", "tq2_0"] {
        assert!(err.contains(w), "{w:?} not in {err}");
    }
    assert!(!bad.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

type ConfigEdit = fn(&mut serde_json::Value);

/// Llama configs the engine cannot run faithfully: exit 1, config.json and the key named,
/// no output.
#[test]
fn llama_bad_configs_are_named_and_leave_no_output() {
    let dir = temp_dir("llama-bad");
    let cases: [(&str, ConfigEdit, &[&str]); 7] = [
        (
            "rope-scaling",
            |c| c["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0}),
            &["rope_scaling", "llama3"],
        ),
        (
            "attention-bias",
            |c| c["attention_bias"] = json!(true),
            &["attention_bias"],
        ),
        ("mlp-bias", |c| c["mlp_bias"] = json!(true), &["mlp_bias"]),
        (
            "use-rms-norm",
            |c| c["quantization_config"]["use_rms_norm"] = json!(true),
            &["quantization_config.use_rms_norm"],
        ),
        (
            "autobitlinear-online",
            |c| {
                c["quantization_config"]["linear_class"] = json!("autobitlinear");
                c["quantization_config"]["quantization_mode"] = json!("online");
            },
            &["quantization_config.linear_class", "autobitlinear"],
        ),
        (
            "not-quantized",
            |c| {
                c.as_object_mut().unwrap().remove("quantization_config");
            },
            &["quantization_config"],
        ),
        (
            "other-quant-method",
            |c| c["quantization_config"]["quant_method"] = json!("gptq"),
            &["quantization_config.quant_method", "gptq"],
        ),
    ];
    for (tag, edit, want) in cases {
        let src = dir.join(tag);
        std::fs::create_dir_all(&src).unwrap();
        replica(&src, Form::Llama, |_| {});
        let mut c = config_json(Form::Llama);
        edit(&mut c);
        std::fs::write(src.join("config.json"), c.to_string()).unwrap();
        let out = dir.join(format!("{tag}.gguf"));
        let o = convert(&src, &out, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{tag}: {err}");
        assert!(err.contains("config.json"), "{tag}: {err}");
        for w in want {
            assert!(err.contains(w), "{tag}: {w:?} not in {err}");
        }
        assert!(!out.exists() && !dir.join(format!("{tag}.gguf.tmp")).exists());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
