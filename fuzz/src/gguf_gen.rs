//! Structure-aware inputs: GGUF files with a valid skeleton and hostile fields, tokenizer
//! vocabularies, chat templates. Random bytes almost never get past the GGUF magic, a
//! consistent tensor table or a vocabulary with all 256 byte tokens; these generators
//! start from something the loader accepts and then break one thing at a time, so the
//! fuzzer spends its time in the checks that matter.
//!
//! The file is serialised by hand (not by `GgufWriter`, which refuses what it cannot
//! read back), so counts, offsets, alignments, dims and type ids can be anything.

use arbitrary::{Arbitrary, Result, Unstructured};
use bitnet::gguf::{Array, Metadata, Value};
use bitnet::quants::GgmlType;

/// One metadata entry as it will be written.
enum Kv {
    Typed(String, Value),
    /// A key, a type id and whatever bytes follow: forged array headers, lengths, bools.
    Raw(String, u32, Vec<u8>),
}

struct Tensor {
    name: String,
    dims: Vec<u64>,
    type_id: u32,
    /// `None`: placed after the previous tensor at the alignment, as a writer would.
    offset: Option<u64>,
    /// Bytes reserved in the data section (a forged table may claim more or less).
    bytes: u64,
}

struct File {
    version: u32,
    kvs: Vec<Kv>,
    tensors: Vec<Tensor>,
    tensor_count: Option<u64>,
    kv_count: Option<u64>,
    alignment: u64,
    fill: Fill,
    truncate: Option<usize>,
    /// (position, byte) written over the finished file.
    pokes: Vec<(u32, u8)>,
}

#[derive(Arbitrary, Clone, Copy)]
enum Fill {
    Zero,
    Byte(u8),
    Cycle([u8; 16]),
}

const ARCHS: [&str; 4] = ["bitnet-b1.58", "bitnet", "bitnet-25", "llama"];
const TERNARY: [GgmlType; 3] = [GgmlType::I2_S, GgmlType::TQ2_0, GgmlType::TQ1_0];
const DENSE: [GgmlType; 5] = [
    GgmlType::F16,
    GgmlType::F32,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q6_K,
];
const NORM: [GgmlType; 3] = [GgmlType::F32, GgmlType::F16, GgmlType::BF16];

/// Values a header field is most likely to be wrong with.
fn hostile_u64(u: &mut Unstructured) -> Result<u64> {
    Ok(match u.int_in_range(0..=9)? {
        0 => 0,
        1 => 1,
        2 => u64::MAX,
        3 => u64::MAX / 2 + 1,
        4 => 1 << 20,
        5 => (1 << 20) + 1,
        6 => 1 << 32,
        7 => u32::MAX as u64,
        8 => u.int_in_range(0..=512)?,
        _ => u.arbitrary()?,
    })
}

fn hostile_value(u: &mut Unstructured) -> Result<Value> {
    Ok(match u.int_in_range(0..=8)? {
        0 => Value::U32(hostile_u64(u)? as u32),
        1 => Value::U64(hostile_u64(u)?),
        2 => Value::I32(u.arbitrary()?),
        3 => Value::F32(*u.choose(&[0.0, -1.0, f32::NAN, f32::INFINITY, 1e-30, 1e30])?),
        4 => Value::String(u.arbitrary()?),
        5 => Value::Bool(u.arbitrary()?),
        6 => Value::Array(Array::U32(u.arbitrary()?)),
        7 => Value::Array(Array::String(u.arbitrary()?)),
        _ => Value::U8(u.arbitrary()?),
    })
}

/// A consistent model: every tensor `Model::load` asks for, with the shapes and types it
/// expects, and (often) a vocabulary; then a few fields broken.
pub fn generate(u: &mut Unstructured) -> Result<Vec<u8>> {
    let arch = *u.choose(&ARCHS)?;
    let wty = *u.choose(&TERNARY)?;
    let ety = *u.choose(&DENSE)?;
    let nty = *u.choose(&NORM)?;
    let block = wty.block_elems();
    let n_layer = u.int_in_range(1..=2u64)?;
    let dim = block * u.int_in_range(1..=2u64)?;
    let n_ff = block * u.int_in_range(1..=3u64)?;
    let n_head = *u.choose(&[1u64, 2, 4])?;
    let n_kv = *u.choose(&[1u64, 2, 4])?.min(&n_head);
    let head_dim = dim / n_head;
    let vocab = u.int_in_range(1..=40u64)?;
    let key = |k: &str| format!("{arch}.{k}");

    let mut kvs = vec![
        Kv::Typed("general.architecture".into(), Value::String(arch.into())),
        Kv::Typed(key("block_count"), Value::U32(n_layer as u32)),
        Kv::Typed(key("embedding_length"), Value::U32(dim as u32)),
        Kv::Typed(key("feed_forward_length"), Value::U32(n_ff as u32)),
        Kv::Typed(key("attention.head_count"), Value::U32(n_head as u32)),
        Kv::Typed(key("attention.head_count_kv"), Value::U32(n_kv as u32)),
        Kv::Typed(key("context_length"), Value::U32(u.int_in_range(1..=64)?)),
    ];
    if u.arbitrary()? {
        kvs.push(Kv::Typed(
            key("rope.dimension_count"),
            Value::U32(head_dim as u32),
        ));
        kvs.push(Kv::Typed(key("rope.freq_base"), Value::F32(10000.0)));
        kvs.push(Kv::Typed(
            key("attention.layer_norm_rms_epsilon"),
            Value::F32(1e-5),
        ));
        kvs.push(Kv::Typed(key("hidden_act"), Value::String("relu2".into())));
    }
    // `!`: an exhausted input (false) still gets a vocabulary.
    if !u.arbitrary::<bool>()? {
        let v = vocab_entries(u)?;
        kvs.extend(v.entries.into_iter().map(|(k, v)| Kv::Typed(k, v)));
    }

    let mut tensors = Vec::new();
    let mut add = |name: String, dims: Vec<u64>, ty: GgmlType| {
        let n: u64 = dims.iter().product();
        tensors.push(Tensor {
            name,
            bytes: ty.tensor_bytes(n).unwrap_or(0),
            dims,
            type_id: ty.id(),
            offset: None,
        });
    };
    add("token_embd.weight".into(), vec![dim, vocab], ety);
    let (q, kv) = (n_head * head_dim, n_kv * head_dim);
    for i in 0..n_layer {
        let w = |n: &str| format!("blk.{i}.{n}.weight");
        add(w("attn_norm"), vec![dim], nty);
        add(w("attn_q"), vec![dim, q], wty);
        add(w("attn_k"), vec![dim, kv], wty);
        add(w("attn_v"), vec![dim, kv], wty);
        add(w("attn_sub_norm"), vec![q], nty);
        add(w("attn_output"), vec![q, dim], wty);
        add(w("ffn_norm"), vec![dim], nty);
        add(w("ffn_gate"), vec![dim, n_ff], wty);
        add(w("ffn_up"), vec![dim, n_ff], wty);
        add(w("ffn_sub_norm"), vec![n_ff], nty);
        add(w("ffn_down"), vec![n_ff, dim], wty);
        add(format!("blk.{i}.attn_q.scale"), vec![1], GgmlType::F32);
    }
    add("output_norm.weight".into(), vec![dim], nty);
    if u.arbitrary()? {
        add("output.weight".into(), vec![dim, vocab], ety);
    }

    let mut file = File {
        version: 3,
        kvs,
        tensors,
        tensor_count: None,
        kv_count: None,
        alignment: 32,
        fill: u.arbitrary()?,
        truncate: None,
        pokes: Vec::new(),
    };
    for _ in 0..u.int_in_range(0..=3)? {
        mutate(u, &mut file)?;
    }
    Ok(serialise(&file))
}

/// Breaks one thing.
fn mutate(u: &mut Unstructured, f: &mut File) -> Result<()> {
    let nt = f.tensors.len();
    let nk = f.kvs.len();
    match u.int_in_range(0..=13)? {
        0 if nk > 0 => {
            let i = u.choose_index(nk)?;
            let k = match &f.kvs[i] {
                Kv::Typed(k, _) | Kv::Raw(k, _, _) => k.clone(),
            };
            f.kvs[i] = Kv::Typed(k, hostile_value(u)?);
        }
        1 if nk > 0 => {
            f.kvs.remove(u.choose_index(nk)?);
        }
        2 if nk > 0 => {
            // Forged bytes after a real key: array headers with huge counts and the like.
            let i = u.choose_index(nk)?;
            let k = match &f.kvs[i] {
                Kv::Typed(k, _) | Kv::Raw(k, _, _) => k.clone(),
            };
            let mut raw = Vec::new();
            raw.extend_from_slice(&(u.int_in_range(0..=13u32)?).to_le_bytes());
            raw.extend_from_slice(&hostile_u64(u)?.to_le_bytes());
            raw.extend(u.arbitrary::<Vec<u8>>()?.into_iter().take(64));
            f.kvs[i] = Kv::Raw(k, *u.choose(&[8u32, 9])?, raw);
        }
        3 if nt > 0 => {
            let t = &mut f.tensors[u.choose_index(nt)?];
            if t.dims.is_empty() {
                t.dims.push(0);
            }
            let d = u.choose_index(t.dims.len())?;
            t.dims[d] = hostile_u64(u)?;
        }
        4 if nt > 0 => {
            let t = &mut f.tensors[u.choose_index(nt)?];
            if t.dims.is_empty() {
                t.dims.push(1);
            }
            match u.int_in_range(0..=2)? {
                0 => t.dims.push(hostile_u64(u)?),
                1 => {
                    t.dims.pop();
                }
                _ => {
                    let last = t.dims.len().saturating_sub(1);
                    t.dims.swap(0, last);
                }
            }
        }
        5 if nt > 0 => {
            let t = &mut f.tensors[u.choose_index(nt)?];
            t.type_id = match u.int_in_range(0..=2)? {
                0 => u.choose(&GgmlType::ALL)?.id(),
                1 => u.int_in_range(0..=40)?,
                _ => u.arbitrary()?,
            };
        }
        6 if nt > 0 => {
            let t = &mut f.tensors[u.choose_index(nt)?];
            t.offset = Some(match u.int_in_range(0..=1)? {
                0 => hostile_u64(u)?,
                _ => u.int_in_range(0..=64u64)? * 32,
            });
        }
        7 if nt > 0 => {
            f.tensors.remove(u.choose_index(nt)?);
        }
        8 if nt > 0 => {
            let i = u.choose_index(nt)?;
            let name = f.tensors[i].name.clone();
            let j = u.choose_index(nt)?;
            f.tensors[j].name = name;
        }
        9 => {
            f.alignment = *u.choose(&[0u64, 1, 3, 8, 64, 4096, 1 << 31, u32::MAX as u64])?;
            f.kvs.push(Kv::Typed(
                "general.alignment".into(),
                Value::U32(f.alignment as u32),
            ));
            f.alignment = f.alignment.clamp(1, 4096);
        }
        10 => {
            if u.arbitrary()? {
                f.tensor_count = Some(hostile_u64(u)?);
            } else {
                f.kv_count = Some(hostile_u64(u)?);
            }
        }
        11 => f.truncate = Some(u.arbitrary()?),
        12 => f.version = *u.choose(&[2u32, 1, 4, 3 << 24])?,
        _ => {
            for _ in 0..u.int_in_range(1..=8)? {
                f.pokes.push((u.arbitrary()?, u.arbitrary()?));
            }
        }
    }
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_str(out, s),
        Value::Array(a) => put_array(out, a),
    }
}

fn put_array(out: &mut Vec<u8>, a: &Array) {
    out.extend_from_slice(&a.elem_type().id().to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! each {
        ($v:expr, $wrap:path) => {
            for x in $v {
                put_value(out, &$wrap(x.clone()));
            }
        };
    }
    match a {
        Array::U8(v) => out.extend_from_slice(v),
        Array::I8(v) => each!(v, Value::I8),
        Array::U16(v) => each!(v, Value::U16),
        Array::I16(v) => each!(v, Value::I16),
        Array::U32(v) => each!(v, Value::U32),
        Array::I32(v) => each!(v, Value::I32),
        Array::U64(v) => each!(v, Value::U64),
        Array::I64(v) => each!(v, Value::I64),
        Array::F32(v) => each!(v, Value::F32),
        Array::F64(v) => each!(v, Value::F64),
        Array::Bool(v) => each!(v, Value::Bool),
        Array::String(v) => {
            for s in v {
                put_str(out, s);
            }
        }
        Array::Array(v) => {
            for inner in v {
                put_array(out, inner);
            }
        }
    }
}

/// Largest data section the generator writes: keeps one execution fast; a tensor table
/// that claims more is exactly the forged case the parser must reject.
const MAX_DATA: u64 = 1 << 20;

fn serialise(f: &File) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&f.version.to_le_bytes());
    let tc = f.tensor_count.unwrap_or(f.tensors.len() as u64);
    let kc = f.kv_count.unwrap_or(f.kvs.len() as u64);
    out.extend_from_slice(&tc.to_le_bytes());
    out.extend_from_slice(&kc.to_le_bytes());
    for kv in &f.kvs {
        match kv {
            Kv::Typed(k, v) => {
                put_str(&mut out, k);
                out.extend_from_slice(&v.value_type().id().to_le_bytes());
                put_value(&mut out, v);
            }
            Kv::Raw(k, ty, bytes) => {
                put_str(&mut out, k);
                out.extend_from_slice(&ty.to_le_bytes());
                out.extend_from_slice(bytes);
            }
        }
    }
    let mut next = 0u64;
    let mut data_len = 0u64;
    for t in &f.tensors {
        put_str(&mut out, &t.name);
        out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&t.type_id.to_le_bytes());
        let offset = t.offset.unwrap_or(next);
        out.extend_from_slice(&offset.to_le_bytes());
        let end = offset.saturating_add(t.bytes.min(MAX_DATA));
        // A forged offset near u64::MAX has no next aligned place: the next tensor then
        // claims the largest offset, which the parser must reject like any other.
        next = end
            .checked_next_multiple_of(f.alignment)
            .unwrap_or(u64::MAX);
        data_len = data_len.max(end);
    }
    let start = (out.len() as u64).next_multiple_of(f.alignment);
    let total = (start + data_len.min(MAX_DATA)) as usize;
    out.resize(start as usize, 0);
    out.extend((0..total - start as usize).map(|i| match f.fill {
        Fill::Zero => 0,
        Fill::Byte(b) => b,
        Fill::Cycle(c) => c[i % 16],
    }));
    if let Some(n) = f.truncate {
        out.truncate(n % (out.len() + 1));
    }
    let len = out.len();
    if len > 0 {
        for &(pos, byte) in &f.pokes {
            out[pos as usize % len] = byte;
        }
    }
    out
}

/// A vocabulary's metadata and what a test may assume about it.
pub struct Vocab {
    pub metadata: Metadata,
    /// gpt2 model with every byte token, only normal tokens, no user-defined ones:
    /// encode/decode must round-trip any text.
    pub byte_level_plain: bool,
}

struct VocabEntries {
    entries: Vec<(String, Value)>,
    byte_level_plain: bool,
}

/// GPT-2's byte-to-character map (what a byte-level BPE vocabulary spells bytes with).
fn byte_char(b: u8) -> char {
    bitnet::tokenizer::byte_to_char(b)
}

const SPECIALS: [&str; 8] = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|eot_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|im_start|>",
    "<|im_end|>",
    "<unk>",
];

fn vocab_entries(u: &mut Unstructured) -> Result<VocabEntries> {
    // Rare branches sit at the top of each range: an exhausted `Unstructured` returns
    // the bottom, which must be the common, valid case.
    let model: String = match u.int_in_range(0..=8)? {
        0..=3 => "gpt2".into(),
        8 => u.arbitrary()?,
        _ => "llama".into(),
    };
    let gpt2 = model == "gpt2";
    let mut tokens: Vec<String> = Vec::new();
    let all_bytes = u.int_in_range(0..=7)? != 7;
    if all_bytes {
        for b in 0..=255u8 {
            tokens.push(if gpt2 {
                byte_char(b).to_string()
            } else {
                format!("<0x{b:02X}>")
            });
        }
    }
    // Merged tokens: concatenations of existing ones, with their merge rule.
    let mut merges = Vec::new();
    for _ in 0..u.int_in_range(0..=24)? {
        if tokens.is_empty() {
            break;
        }
        let a = tokens[u.choose_index(tokens.len())?].clone();
        let b = tokens[u.choose_index(tokens.len())?].clone();
        let ab = format!("{a}{b}");
        if !tokens.contains(&ab) {
            tokens.push(ab);
        }
        merges.push(format!("{a} {b}"));
    }
    let mut extra = 0;
    for _ in 0..u.int_in_range(0..=8)? {
        let t: String = if u.arbitrary()? {
            u.choose(&SPECIALS)?.to_string()
        } else {
            u.arbitrary()?
        };
        if !tokens.contains(&t) {
            tokens.push(t);
            extra += 1;
        }
    }
    if u.int_in_range(0..=15)? == 15 {
        merges.push(u.arbitrary()?);
    }
    if u.int_in_range(0..=15)? == 15 && !tokens.is_empty() {
        // A duplicate token (must be refused).
        let t = tokens[u.choose_index(tokens.len())?].clone();
        tokens.push(t);
    }
    let n = tokens.len();
    let mut entries = vec![("tokenizer.ggml.model".into(), Value::String(model))];
    let mut types_given = false;
    if u.arbitrary()? {
        let mut types: Vec<i32> = (0..n).map(|_| 1).collect();
        if !gpt2 && all_bytes {
            types[..256].iter_mut().for_each(|t| *t = 6);
        }
        for _ in 0..u.int_in_range(0..=4)? {
            if n > 0 {
                let i = u.choose_index(n)?;
                types[i] = u.int_in_range(-1..=7)?;
            }
        }
        if u.int_in_range(0..=15)? == 15 {
            types.pop();
        }
        types_given = true;
        entries.push((
            "tokenizer.ggml.token_type".into(),
            Value::Array(Array::I32(types)),
        ));
    }
    entries.push((
        "tokenizer.ggml.tokens".into(),
        Value::Array(Array::String(tokens)),
    ));
    if gpt2 || u.arbitrary()? {
        entries.push((
            "tokenizer.ggml.merges".into(),
            Value::Array(Array::String(merges)),
        ));
    }
    if !gpt2 || u.arbitrary()? {
        let mut scores: Vec<f32> = Vec::with_capacity(n);
        for _ in 0..n {
            scores.push(*u.choose(&[0.0, -1.0, -2.5, 1.0, f32::NAN, f32::NEG_INFINITY])?);
        }
        entries.push((
            "tokenizer.ggml.scores".into(),
            Value::Array(Array::F32(scores)),
        ));
    }
    if u.arbitrary()? {
        let pre: String = match u.int_in_range(0..=5)? {
            5 => u.arbitrary()?,
            1 => "gpt-2".into(),
            2 => "default".into(),
            3 => "dbrx".into(),
            _ => "llama-bpe".into(),
        };
        entries.push(("tokenizer.ggml.pre".into(), Value::String(pre)));
    }
    for key in [
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.padding_token_id",
    ] {
        if u.arbitrary()? {
            let id = if u.arbitrary()? {
                u.int_in_range(0..=n as u32)?
            } else {
                u.arbitrary()?
            };
            entries.push((key.into(), Value::U32(id)));
        }
    }
    for key in [
        "tokenizer.ggml.add_bos_token",
        "tokenizer.ggml.add_eos_token",
        "tokenizer.ggml.add_space_prefix",
    ] {
        if u.arbitrary()? {
            entries.push((key.into(), Value::Bool(u.arbitrary()?)));
        }
    }
    if u.arbitrary()? {
        entries.push((
            "tokenizer.chat_template".into(),
            Value::String(template(u)?),
        ));
    }
    Ok(VocabEntries {
        entries,
        byte_level_plain: gpt2 && all_bytes && !types_given && extra == 0,
    })
}

/// A vocabulary for the `tokenizer` target.
pub fn vocab(u: &mut Unstructured) -> Result<Vocab> {
    let v = vocab_entries(u)?;
    let mut metadata = Metadata::new();
    for (k, val) in v.entries {
        // A duplicated key cannot be built in memory; the GGUF targets cover it.
        if metadata.insert(k, val).is_err() {
            return Err(arbitrary::Error::IncorrectFormat);
        }
    }
    Ok(Vocab {
        metadata,
        byte_level_plain: v.byte_level_plain,
    })
}

/// Pieces real templates are recognised by, so concatenations reach every branch.
const TEMPLATE_PIECES: [&str; 14] = [
    "bitnet",
    "llama3",
    "chatml",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|im_start|>",
    "<|eot_id|>",
    "Assistant: ",
    "'User: '",
    "\"User: \"",
    "capitalize",
    "': '",
    "{% for message in messages %}",
    " ",
];

/// A chat template: known pieces and arbitrary text, concatenated.
pub fn template(u: &mut Unstructured) -> Result<String> {
    let mut s = String::new();
    for _ in 0..u.int_in_range(0..=6)? {
        if u.arbitrary()? {
            s.push_str(u.choose(&TEMPLATE_PIECES)?);
        } else {
            s.push_str(&String::arbitrary(u)?);
        }
    }
    Ok(s)
}
