//! Generation: load, prefill the prompt as one batch, then decode token by token.

use std::io::Write;
use std::time::Instant;

use bitnet::generate::{Event, Generator, Options};
use bitnet::gguf::GgufFile;
use bitnet::model::{Batch, KvTypes, Model, State};
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
    let threads = crate::setup::threads(a.threads)?;
    let pool = crate::setup::pool(threads)?;
    let model = crate::setup::load(&file, &shown.to_string(), &a.kernel, &pool)?;
    let c = &model.config;
    // The vocabulary is optional when raw ids are given: generated ids are printed instead.
    let tokenizer = Tokenizer::from_gguf(g).map_err(|e| format!("{shown}: {e}"));
    if let Ok(t) = &tokenizer {
        t.notes.iter().for_each(|n| eprintln!("{shown}: {n}"));
    }
    let load_ms = ms(t_load);

    let prompt: Vec<u32> = match (&a.prompt_tokens, &a.prompt) {
        (Some(ids), _) => ids.clone(),
        (None, Some(text)) if a.chat => tokenizer
            .as_ref()
            .map_err(Clone::clone)?
            .chat_prompt(a.system.as_deref(), text)
            .map_err(|e| format!("{shown}: {e}"))?,
        (None, None) if a.chat => {
            let tok = tokenizer.as_ref().map_err(Clone::clone)?;
            return crate::chat::interactive(a, &model, &pool, tok);
        }
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
    let kv_type = crate::setup::kv_types(&a.kv, c)?;
    crate::setup::check_kv_memory(kv_type, c, ctx, a.batch_size.max(1))?;
    let state = State::new(c, ctx, kv_type).map_err(crate::errors::model)?;
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    if a.batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    let forced = a.force_tokens.as_deref();
    if let Some(f) = forced {
        if a.batch_size > 1 {
            return Err("--force-tokens needs --batch-size 1".into());
        }
        if prompt.len() + f.len() > ctx {
            return Err(format!(
                "the prompt ({} tokens) and --force-tokens ({}) exceed the context of {ctx}",
                prompt.len(),
                f.len()
            ));
        }
    }
    if a.batch_size > 1 {
        if a.logits_out.is_some() {
            return Err("--logits-out needs --batch-size 1".into());
        }
        let t = tokenizer.as_ref().ok();
        return run_batch(a, &model, &pool, t, &prompt, ctx, kv_type, seed);
    }
    let sampler = Sampler::new(SamplerConfig {
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
                tok.token_bytes(id, a.show_special, &mut bytes);
                decoder.push(&bytes)
            }
            Err(_) => format!("[{id}]"),
        };
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    };
    // In chat mode only the reply is printed, not the formatted turn.
    if let Some(text) = a.prompt.as_ref().filter(|_| !a.chat) {
        let _ = write!(out, "{text}");
    }

    let is_end = |id| tokenizer.as_ref().is_ok_and(|t| t.is_end(id));
    let mut gen = Generator::new(&model, &pool, Batch::from(state), vec![sampler])
        .map_err(crate::errors::model)?;
    let t_prefill = Instant::now();
    bitnet::marks::bitnet_counters_phase_prefill();
    gen.prefill(&[&prompt], keep_logits, &mut |e| {
        if let (Event::Logits(logits), true) = (e, keep_logits) {
            all_logits.extend_from_slice(logits);
        }
    })
    .map_err(crate::errors::model)?;
    let prefill_ms = ms(t_prefill);

    let t_decode = Instant::now();
    bitnet::marks::bitnet_counters_phase_decode();
    let options = Options {
        max_tokens: a.max_tokens,
        is_end: &is_end,
        continues: false,
        forced,
    };
    let outcome = gen
        .generate(&options, &mut |e| match e {
            Event::Logits(logits) if keep_logits => all_logits.extend_from_slice(logits),
            Event::Logits(_) => {}
            Event::Token { id, .. } => emit(id, &mut out),
            Event::End { id, .. } if a.show_special => emit(id, &mut out),
            Event::End { .. } => {}
        })
        .map_err(crate::errors::model)?;
    bitnet::marks::bitnet_counters_phase_end();
    let (generated, decode_steps) = (outcome.tokens, outcome.steps.max(1));
    let decode_ms = ms(t_decode);
    let _ = out.write_all(decoder.finish().as_bytes());
    let _ = writeln!(out);
    drop(out);

    if let Some(p) = &a.logits_out {
        let n_pos = all_logits.len() / c.vocab;
        std::fs::write(p, npy::write_f32(&[n_pos, c.vocab], &all_logits))
            .map_err(|e| format!("{}: cannot write logits: {e}", p.display()))?;
    }

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
        "kernel       {} ({threads} threads, kv {kv_type}, ctx {ctx})",
        model.kernel
    );
    crate::stats::print_kv(&gen.state(0).kv, c, gen.state(0).pos);
    eprintln!(
        "sampling     temperature {} top-k {} top-p {} seed {seed}",
        a.temperature, a.top_k, a.top_p
    );
    Ok(())
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// `--batch-size N`: N sequences from the same prompt with seeds `seed..seed + N`, evaluated
/// together (one forward for all N prompts, then one per step for all of them); texts are
/// printed when all are done.
#[allow(clippy::too_many_arguments)]
fn run_batch(
    a: &RunArgs,
    model: &Model,
    pool: &Pool,
    tokenizer: Option<&Tokenizer>,
    prompt: &[u32],
    ctx: usize,
    kv_type: KvTypes,
    seed: u64,
) -> Result<(), String> {
    let c = &model.config;
    let n = a.batch_size;
    let batch = Batch::new(c, n, ctx, kv_type).map_err(crate::errors::model)?;
    let samplers: Vec<Sampler> = (0..n as u64)
        .map(|i| {
            Sampler::new(SamplerConfig {
                temperature: a.temperature,
                top_k: a.top_k,
                top_p: a.top_p,
                seed: seed.wrapping_add(i),
            })
        })
        .collect();
    let mut gen = Generator::new(model, pool, batch, samplers).map_err(crate::errors::model)?;
    let t_prefill = Instant::now();
    gen.prefill(&vec![prompt; n], false, &mut |_| {})
        .map_err(crate::errors::model)?;
    let prefill_ms = ms(t_prefill);
    let t_decode = Instant::now();
    let mut outputs: Vec<Vec<u32>> = vec![Vec::new(); n];
    let options = Options {
        max_tokens: a.max_tokens,
        is_end: &|id| tokenizer.is_some_and(|t| t.is_end(id)),
        continues: false,
        forced: None,
    };
    let steps = gen
        .generate(&options, &mut |e| {
            if let Event::Token { seq, id } = e {
                outputs[seq].push(id);
            }
        })
        .map_err(crate::errors::model)?
        .steps;
    let decode_ms = ms(t_decode);
    let out = std::io::stdout();
    let mut out = out.lock();
    for (i, ids) in outputs.iter().enumerate() {
        let _ = writeln!(
            out,
            "--- sequence {i} (seed {})",
            seed.wrapping_add(i as u64)
        );
        match tokenizer {
            Some(tok) => {
                let mut bytes = Vec::new();
                for &id in ids {
                    tok.token_bytes(id, a.show_special, &mut bytes);
                }
                let _ = writeln!(
                    out,
                    "{}{}",
                    a.prompt.as_deref().unwrap_or(""),
                    String::from_utf8_lossy(&bytes)
                );
            }
            None => {
                let ids: Vec<String> = ids.iter().map(|i| format!("[{i}]")).collect();
                let _ = writeln!(out, "{}", ids.join(""));
            }
        }
    }
    drop(out);
    let generated: usize = outputs.iter().map(Vec::len).sum();
    eprintln!();
    eprintln!(
        "model        {} ({}, {} layers)",
        a.model
            .as_ref()
            .map_or(String::new(), |p| p.display().to_string()),
        c.arch_name,
        c.n_layer
    );
    eprintln!(
        "prefill      {n} x {} tokens in {prefill_ms:.1} ms ({:.2} tok/s)",
        prompt.len(),
        (n * prompt.len()) as f64 / (prefill_ms / 1e3).max(1e-9)
    );
    eprintln!(
        "generate     {generated} tokens in {n} sequences, {steps} batched steps, {:.2} ms/step ({:.2} tok/s)",
        decode_ms / steps.max(1) as f64,
        (steps * n) as f64 / (decode_ms / 1e3).max(1e-9)
    );
    if let Some(rss) = peak_rss_bytes() {
        eprintln!("peak rss     {:.1} MB", rss as f64 / 1e6);
    }
    eprintln!(
        "kernel       {} ({} threads, kv {kv_type}, ctx {ctx}, batch {n})",
        model.kernel,
        pool_threads(pool),
    );
    let s0 = gen.state(0);
    crate::stats::print_kv(&s0.kv, c, s0.pos);
    Ok(())
}

fn pool_threads(pool: &Pool) -> usize {
    use bitnet::parallel::Exec;
    pool.threads()
}
