//! One run for the harness, as `bitnet-infer run` does it on an OS: the model file and the
//! output are host files reached through semihosting; the arguments are a subset of
//! `bitnet-infer run`'s, with the same meaning:
//!
//! ```text
//! bitnet-bare --model F --prompt-tokens 1,2,3 [--force-tokens 4,5 | --max-tokens N]
//!             [--kernel K] [--kv-type T] [--logits-out F.npy]
//! bitnet-bare info --json --model F
//! ```
//!
//! One thread (the image starts one core), greedy sampling.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use bitnet::generate::{Event, Generator, Options};
use bitnet::gguf::Gguf;
use bitnet::kernels::Kernel;
use bitnet::model::{Batch, KvType, Model, State};
use bitnet::parallel::Serial;
use bitnet::sampler::{Sampler, SamplerConfig};
use bitnet::tokenizer::Tokenizer;

use crate::semihosting::File;

struct Args {
    model: String,
    prompt: Vec<u32>,
    forced: Option<Vec<u32>>,
    max_tokens: usize,
    kernel: Option<String>,
    kv: KvType,
    logits_out: Option<String>,
}

fn ids(flag: &str, v: &str) -> Result<Vec<u32>, String> {
    v.split(',')
        .map(|t| t.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("{flag}: expected comma-separated token ids, got '{v}'"))
}

fn parse(argv: &[String]) -> Result<Args, String> {
    let mut a = Args {
        model: String::new(),
        prompt: Vec::new(),
        forced: None,
        max_tokens: 16,
        kernel: None,
        kv: KvType::F16,
        logits_out: None,
    };
    // argv[0] is the image's name.
    let mut it = argv.iter().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag}: expected a value"))
        };
        match flag.as_str() {
            "--model" => a.model = value()?,
            "--prompt-tokens" => a.prompt = ids(flag, &value()?)?,
            "--force-tokens" => a.forced = Some(ids(flag, &value()?)?),
            "--max-tokens" => {
                let v = value()?;
                a.max_tokens = v
                    .parse()
                    .map_err(|_| format!("--max-tokens: expected a count, got '{v}'"))?;
            }
            "--kernel" => a.kernel = Some(value()?),
            "--kv-type" => {
                let v = value()?;
                a.kv = KvType::from_name(&v)
                    .ok_or_else(|| format!("--kv-type: unknown KV cache type '{v}'"))?;
            }
            "--logits-out" => a.logits_out = Some(value()?),
            // Accepted as the harness passes them to `bitnet-infer`, with the only values
            // an image with one core and greedy sampling can honour.
            "--threads" => {
                let v = value()?;
                if v != "1" {
                    return Err(format!(
                        "--threads {v}: a bare-metal image runs on one core"
                    ));
                }
            }
            "--temperature" => {
                let v = value()?;
                if v.parse::<f32>() != Ok(0.0) {
                    return Err(format!(
                        "--temperature {v}: a bare-metal image samples greedily (0 only)"
                    ));
                }
            }
            other => {
                return Err(format!(
                    "unknown argument '{other}'; bitnet-bare takes --model, --prompt-tokens, \
                     --force-tokens, --max-tokens, --kernel, --kv-type, --logits-out, \
                     --threads 1, --temperature 0"
                ))
            }
        }
    }
    if a.model.is_empty() {
        return Err("--model is required".into());
    }
    if a.prompt.is_empty() {
        return Err("--prompt-tokens is required".into());
    }
    Ok(a)
}

/// The whole file in one 64-byte aligned buffer: tensor data is read in place, as from an
/// mmap on an OS (kernels may read code rows in place only when aligned).
struct FileBytes {
    lines: Vec<[u64; 8]>,
    len: usize,
}

impl AsRef<[u8]> for FileBytes {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `lines` holds at least `len` initialised bytes; u8 has no alignment.
        unsafe { core::slice::from_raw_parts(self.lines.as_ptr().cast::<u8>(), self.len) }
    }
}

fn read_file(path: &str) -> Result<FileBytes, String> {
    let f = File::open_read(path)?;
    let len = f
        .len()
        .ok_or_else(|| format!("{path}: the host cannot tell its length"))?;
    let mut lines = Vec::new();
    lines
        .try_reserve_exact(len.div_ceil(64))
        .map_err(|_| format!("{path}: {len} bytes do not fit in this machine's heap"))?;
    lines.resize(len.div_ceil(64), [0u64; 8]);
    // SAFETY: the buffer has room for `len` bytes.
    let bytes = unsafe { core::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<u8>(), len) };
    f.read_exact(bytes)
        .map_err(|_| format!("{path}: short read from the host"))?;
    Ok(FileBytes { lines, len })
}

/// `info --json --model F`: the kernels this CPU runs, in `bitnet-infer info --json`'s
/// shape (the part the harness reads).
pub fn info_json(argv: &[String]) -> Result<(), String> {
    match argv.get(1..).unwrap_or_default() {
        [info, json, flag, model] if info == "info" && json == "--json" && flag == "--model" => {
            let bytes = read_file(model)?;
            Gguf::parse(bytes.as_ref()).map_err(|e| format!("{model}: {e}"))?;
        }
        _ => return Err("expected: info --json --model F".into()),
    }
    let list = |exact_only: bool| {
        let names: Vec<String> = Kernel::available()
            .filter(|k| !exact_only || k.logits_exact())
            .map(|k| format!("\"{}\"", k.name()))
            .collect();
        format!("[{}]", names.join(", "))
    };
    println!(
        "{{\"kernels\": {{\"available\": {}, \"selected\": \"{}\", \"logits_exact\": {}}}}}",
        list(false),
        Kernel::detect().name(),
        list(true)
    );
    Ok(())
}

pub fn main(argv: &[String]) -> Result<(), String> {
    let a = parse(argv)?;
    let bytes = Arc::new(read_file(&a.model)?);
    let g = Gguf::parse((*bytes).as_ref()).map_err(|e| format!("{}: {e}", a.model))?;
    let kernel = Kernel::select(a.kernel.as_deref()).map_err(|e| format!("--kernel: {e}"))?;
    let model = Model::load(&g, bytes.clone(), kernel).map_err(|e| format!("{}: {e}", a.model))?;
    let c = &model.config;
    let tokenizer = Tokenizer::from_gguf(&g).ok();
    let forced = a.forced.as_deref().unwrap_or(&[]);
    let positions = a.prompt.len() + forced.len().max(a.max_tokens);
    if positions > c.ctx_len {
        return Err(format!(
            "{positions} positions exceed the model's context of {}",
            c.ctx_len
        ));
    }
    println!(
        "bitnet-bare: {}, kernel {kernel}, kv {}, {} prompt tokens",
        a.model,
        a.kv,
        a.prompt.len()
    );
    let state = State::new(c, positions, a.kv).map_err(|e| e.to_string())?;
    let sampler = Sampler::new(SamplerConfig {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        seed: 0,
    });
    let mut gen = Generator::new(&model, &Serial, Batch::from(state), vec![sampler])
        .map_err(|e| e.to_string())?;
    let keep = a.logits_out.is_some();
    let mut logits: Vec<f32> = Vec::new(); // (positions evaluated, vocab)
    bitnet::marks::bitnet_counters_phase_prefill();
    gen.prefill(&[&a.prompt], keep, &mut |e| {
        if let (Event::Logits(l), true) = (e, keep) {
            logits.extend_from_slice(l);
        }
    })
    .map_err(|e| e.to_string())?;
    let is_end = |id| tokenizer.as_ref().is_some_and(|t| t.is_end(id));
    let options = Options {
        max_tokens: a.max_tokens,
        is_end: &is_end,
        continues: false,
        forced: a.forced.as_deref(),
    };
    let mut out: Vec<u32> = Vec::new();
    bitnet::marks::bitnet_counters_phase_decode();
    gen.generate(&options, &mut |e| match e {
        Event::Logits(l) if keep => logits.extend_from_slice(l),
        Event::Token { id, .. } => out.push(id),
        _ => {}
    })
    .map_err(|e| e.to_string())?;
    bitnet::marks::bitnet_counters_phase_end();
    let shown: Vec<String> = out.iter().map(u32::to_string).collect();
    println!("tokens: {}", shown.join(","));
    if let Some(t) = &tokenizer {
        let mut text = Vec::new();
        for &id in &out {
            t.token_bytes(id, false, &mut text);
        }
        println!("text: {}", String::from_utf8_lossy(&text));
    }
    if let Some(path) = &a.logits_out {
        let rows = logits.len() / c.vocab;
        let npy = bitnet::npy::write_f32(&[rows, c.vocab], &logits);
        File::create(path)?
            .write_all(&npy)
            .map_err(|_| format!("{path}: short write to the host"))?;
    }
    Ok(())
}
