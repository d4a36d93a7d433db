//! Generation: load, prefill the prompt as one batch, then decode token by token.

use std::io::Write;
use std::time::Instant;

use bitnet::gguf::GgufFile;
use bitnet::kernels::Kernel;
use bitnet::model::{KvType, Model, State};
use bitnet::npy;
use bitnet::parallel::Pool;
use bitnet::sampler::{Sampler, SamplerConfig};
use bitnet::tokenizer::{StreamDecoder, Tokenizer};

use crate::args::RunArgs;
use crate::stats::peak_rss_bytes;

pub fn main(a: &RunArgs) -> Result<(), String> {
    let path = a.model.as_ref().ok_or("--model is required")?;
    let shown = path.display();
    let t_load = Instant::now();
    let file = GgufFile::open(path).map_err(|e| e.to_string())?;
    let g = file.gguf();
    let kernel = Kernel::detect();
    let model = Model::load(g, file.source(), kernel).map_err(|e| format!("{shown}: {e}"))?;
    let c = &model.config;
    // The vocabulary is optional when raw ids are given: generated ids are printed instead.
    let tokenizer = Tokenizer::from_gguf(g).map_err(|e| format!("{shown}: {e}"));
    let load_ms = ms(t_load);

    let prompt: Vec<u32> = match (&a.prompt_tokens, &a.prompt) {
        (Some(ids), _) => ids.clone(),
        (None, Some(text)) => tokenizer.as_ref().map_err(Clone::clone)?.encode(text),
        (None, None) => return Err("give a prompt: --prompt TEXT or --prompt-tokens 1,2,3".into()),
    };
    if prompt.is_empty() {
        return Err("the prompt is empty".into());
    }
    let ctx = a.ctx.map_or(c.ctx_len, |n| n.min(c.ctx_len));
    if prompt.len() > ctx {
        return Err(format!(
            "the prompt has {} tokens, more than the context of {ctx}",
            prompt.len()
        ));
    }
    let kv_type = KvType::from_name(&a.kv_type).ok_or("--kv-type must be f16 or f32")?;
    let mut state = State::new(c, ctx, kv_type).map_err(|e| e.to_string())?;
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = Pool::new(threads).map_err(|e| format!("cannot start {threads} threads: {e}"))?;
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let mut sampler = Sampler::new(SamplerConfig {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        seed,
    });
    let keep_logits = a.logits_out.is_some();
    let mut all_logits: Vec<f32> = Vec::new(); // (n_positions, vocab)

    let out = std::io::stdout();
    let mut out = out.lock();
    let mut decoder = StreamDecoder::default();
    let mut emit = |id: u32, out: &mut std::io::StdoutLock| {
        let text = match &tokenizer {
            Ok(tok) => {
                let mut bytes = Vec::new();
                tok.token_bytes(id, false, &mut bytes);
                decoder.push(&bytes)
            }
            Err(_) => format!("[{id}]"),
        };
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    };
    if let Some(text) = &a.prompt {
        let _ = write!(out, "{text}");
    }

    let t_prefill = Instant::now();
    let logits = model
        .forward(&pool, &mut state, &prompt, keep_logits)
        .map_err(|e| e.to_string())?;
    if keep_logits {
        all_logits.extend_from_slice(logits);
    }
    let mut next = sampler.sample(&logits[logits.len() - c.vocab..]);
    let prefill_ms = ms(t_prefill);

    let t_decode = Instant::now();
    let mut generated = 0usize;
    while generated < a.max_tokens {
        generated += 1;
        if tokenizer.as_ref().is_ok_and(|t| t.is_end(next)) {
            break;
        }
        emit(next, &mut out);
        if generated == a.max_tokens || state.pos >= ctx {
            break;
        }
        let logits = model
            .forward(&pool, &mut state, &[next], false)
            .map_err(|e| e.to_string())?;
        if keep_logits {
            all_logits.extend_from_slice(logits);
        }
        next = sampler.sample(logits);
    }
    let decode_ms = ms(t_decode);
    let _ = out.write_all(decoder.finish().as_bytes());
    let _ = writeln!(out);
    drop(out);

    if let Some(p) = &a.logits_out {
        let n_pos = all_logits.len() / c.vocab;
        std::fs::write(p, npy::write_f32(&[n_pos, c.vocab], &all_logits))
            .map_err(|e| format!("{}: cannot write logits: {e}", p.display()))?;
    }

    let decode_steps = generated.saturating_sub(1).max(1);
    eprintln!();
    eprintln!(
        "model        {shown} ({}, {} layers)",
        c.arch_name, c.n_layer
    );
    eprintln!("load         {load_ms:.1} ms");
    eprintln!(
        "prefill      {} tokens in {prefill_ms:.1} ms ({:.2} tok/s)",
        prompt.len(),
        prompt.len() as f64 / (prefill_ms / 1e3)
    );
    eprintln!(
        "generate     {generated} tokens, {:.2} ms/token ({:.2} tok/s)",
        decode_ms / decode_steps as f64,
        decode_steps as f64 / (decode_ms / 1e3)
    );
    if let Some(rss) = peak_rss_bytes() {
        eprintln!("peak rss     {:.1} MB", rss as f64 / 1e6);
    }
    eprintln!(
        "kernel       {} ({threads} threads, kv {}, ctx {ctx})",
        model.kernel, a.kv_type
    );
    eprintln!(
        "sampling     temperature {} top-k {} top-p {} seed {seed}",
        a.temperature, a.top_k, a.top_p
    );
    Ok(())
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}
