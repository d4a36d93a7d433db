//! `bitnet-infer bench`: llama-bench style figures. Prefill (`ppN`: N prompt tokens as one
//! batch) and decode (`tgN`: N tokens one at a time from an empty cache) in tok/s, mean and
//! standard deviation over repetitions; for decode also the effective read bandwidth (bytes
//! of weights per token x tok/s) next to the machine's own, measured here on the same threads.

use std::time::Instant;

use bitnet::gguf::GgufFile;
use bitnet::model::{tensor_type_summary, Batch, Config, KvTypes, Model, State};
use bitnet::parallel::Pool;
use bitnet::rng::Rng;

use crate::args::BenchArgs;
use crate::membw;
use crate::setup::{self, json_str};

/// Mean and sample standard deviation.
struct Stats {
    samples: Vec<f64>,
}

impl Stats {
    fn mean(&self) -> f64 {
        self.samples.iter().sum::<f64>() / self.samples.len().max(1) as f64
    }

    fn stddev(&self) -> f64 {
        let n = self.samples.len();
        if n < 2 {
            return 0.0;
        }
        let m = self.mean();
        (self.samples.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1) as f64).sqrt()
    }

    fn json(&self) -> String {
        let s: Vec<String> = self.samples.iter().map(|x| format!("{x:.3}")).collect();
        format!(
            "{{\"mean\": {:.3}, \"stddev\": {:.3}, \"samples\": [{}]}}",
            self.mean(),
            self.stddev(),
            s.join(", ")
        )
    }
}

struct Row {
    threads: usize,
    prefill: Option<Stats>,
    decode: Option<Stats>,
    bandwidth: Option<Stats>,
}

pub fn main(a: &BenchArgs) -> Result<(), String> {
    if a.reps == 0 || a.batch_size == 0 {
        return Err("--reps and --batch-size must be at least 1".into());
    }
    let threads = match &a.threads {
        Some(t) if t.contains(&0) => return Err("-t: thread counts must be at least 1".into()),
        Some(t) if !t.is_empty() => t.clone(),
        _ => vec![setup::threads(None)?],
    };
    let shown = a.model.display().to_string();
    let file = GgufFile::open(&a.model).map_err(|e| e.to_string())?;
    let max_threads = threads.iter().copied().max().unwrap_or(1);
    let model = setup::load(&file, &shown, &a.kernel, &setup::pool(max_threads)?)?;
    let c = &model.config;
    let depth = a.ctx_depth;
    let ctx = a.n_prompt.max(a.n_gen).max(1).saturating_add(depth);
    if ctx > c.ctx_len {
        return Err(format!(
            "-d {depth} plus -p {} / -n {} exceed the model's context of {}",
            a.n_prompt, a.n_gen, c.ctx_len
        ));
    }
    let kv = setup::kv_types(&a.kv, c)?;
    setup::check_kv_memory(kv, c, ctx, a.batch_size)?;
    // Token ids do not change the work; fixed pseudo-random ones keep runs comparable.
    let mut rng = Rng::new(0xBE7C);
    let n_tokens = a.n_prompt.max(a.n_gen).max(1);
    let tokens: Vec<u32> = (0..n_tokens)
        .map(|_| rng.below(c.vocab as u64) as u32)
        .collect();

    let mut rows = Vec::new();
    for &t in &threads {
        let pool = setup::pool(t)?;
        let prefill = (a.n_prompt > 0)
            .then(|| {
                let p = &tokens[..a.n_prompt];
                prefill_once(&model, &pool, p, ctx, kv, depth)?; // warm-up
                let samples = (0..a.reps)
                    .map(|_| {
                        prefill_once(&model, &pool, p, ctx, kv, depth).map(|s| p.len() as f64 / s)
                    })
                    .collect::<Result<_, _>>()?;
                Ok::<_, String>(Stats { samples })
            })
            .transpose()?;
        let decode = (a.n_gen > 0)
            .then(|| {
                decode_once(
                    &model,
                    &pool,
                    &tokens[..a.n_gen.min(4)],
                    a.batch_size,
                    ctx,
                    kv,
                    depth,
                )?;
                let samples = (0..a.reps)
                    .map(|_| {
                        let g = &tokens[..a.n_gen];
                        let s = decode_once(&model, &pool, g, a.batch_size, ctx, kv, depth)?;
                        Ok::<_, String>((a.n_gen * a.batch_size) as f64 / s)
                    })
                    .collect::<Result<_, _>>()?;
                Ok::<_, String>(Stats { samples })
            })
            .transpose()?;
        let bandwidth = (a.n_gen > 0 && a.bw_mib > 0).then(|| Stats {
            samples: membw::measure(&pool, a.bw_mib, a.reps),
        });
        rows.push(Row {
            threads: t,
            prefill,
            decode,
            bandwidth,
        });
    }
    report(a, &file, &model, kv, &rows);
    Ok(())
}

/// Seconds to evaluate `prompt` as one batch into a fresh cache (logits of the last token).
fn prefill_once(
    model: &Model,
    pool: &Pool,
    prompt: &[u32],
    ctx: usize,
    kv: KvTypes,
    depth: usize,
) -> Result<f64, String> {
    let mut state = State::new(&model.config, ctx, kv).map_err(crate::errors::model)?;
    fill_depth(&model.config, &mut state, depth);
    let t = Instant::now();
    model
        .forward(pool, &mut state, prompt, false)
        .map_err(crate::errors::model)?;
    Ok(t.elapsed().as_secs_f64())
}

/// Seconds to decode `tokens.len()` steps one token at a time from an empty cache, for
/// `batch` sequences at once.
fn decode_once(
    model: &Model,
    pool: &Pool,
    tokens: &[u32],
    batch: usize,
    ctx: usize,
    kv: KvTypes,
    depth: usize,
) -> Result<f64, String> {
    let c = &model.config;
    if batch == 1 {
        let mut state = State::new(c, ctx, kv).map_err(crate::errors::model)?;
        fill_depth(c, &mut state, depth);
        let t = Instant::now();
        for &tok in tokens {
            model
                .forward(pool, &mut state, &[tok], false)
                .map_err(crate::errors::model)?;
        }
        return Ok(t.elapsed().as_secs_f64());
    }
    let mut b = Batch::new(c, batch, ctx, kv).map_err(crate::errors::model)?;
    for s in &mut b.seqs {
        fill_depth(c, s, depth);
    }
    let t = Instant::now();
    for (i, &tok) in tokens.iter().enumerate() {
        let step: Vec<u32> = (0..batch)
            .map(|s| (tok + (i * s) as u32) % c.vocab as u32)
            .collect();
        model
            .forward_batch(pool, &mut b, &step)
            .map_err(crate::errors::model)?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Puts `depth` positions of pseudo-random keys and values (of the magnitude RoPE'd keys
/// have) into every layer of the cache, as if a context of `depth` tokens had been evaluated.
fn fill_depth(c: &Config, state: &mut State, depth: usize) {
    let mut rng = Rng::new(0xDE97);
    let mut k = vec![0.0f32; c.kv_dim()];
    let mut v = vec![0.0f32; c.kv_dim()];
    for layer in 0..c.n_layer {
        for pos in 0..depth {
            k.iter_mut()
                .chain(v.iter_mut())
                .for_each(|x| *x = 4.0 * rng.f32() - 2.0);
            state.kv.write(layer, pos, &k, &v);
        }
    }
    state.pos = depth;
}

fn report(a: &BenchArgs, file: &GgufFile, model: &Model, kv: KvTypes, rows: &[Row]) {
    let weights: Vec<&str> = tensor_type_summary(file.gguf())
        .iter()
        .filter(|(ty, _, _)| ty.is_ternary())
        .map(|(ty, _, _)| ty.name())
        .collect();
    let weights = weights.join("+");
    let head = model.head().ty.name();
    let bpt = model.bytes_per_token();
    // KV bytes attention reads per decode token, averaged over the test's positions
    // depth + 1 ..= depth + n_gen (every cached key and value of every layer, once).
    let c = &model.config;
    let kv_per_pos = kv.bytes_per_token(c.n_layer, c.kv_dim()).unwrap_or(0);
    let kv_read = kv_per_pos as f64 * (a.ctx_depth as f64 + (a.n_gen as f64 + 1.0) / 2.0);
    // Decode GB/s: every weight is read once per step; a step serves `batch_size` tokens.
    let gb_s = |d: &Stats| d.mean() / a.batch_size as f64 * bpt as f64 / 1e9;
    let (pp, tg) = (format!("pp{}", a.n_prompt), format!("tg{}", a.n_gen));
    if a.json {
        let results: Vec<String> = rows
            .iter()
            .map(|r| {
                let mut f = vec![format!("\"threads\": {}", r.threads)];
                if let Some(p) = &r.prefill {
                    f.push(format!("\"prefill_tok_s\": {}", p.json()));
                }
                if let Some(d) = &r.decode {
                    f.push(format!("\"decode_tok_s\": {}", d.json()));
                    f.push(format!("\"decode_gb_s\": {:.3}", gb_s(d)));
                }
                if let Some(bw) = &r.bandwidth {
                    f.push(format!("\"mem_read_gb_s\": {}", bw.json()));
                    if let Some(d) = &r.decode {
                        f.push(format!("\"decode_bw_ratio\": {:.4}", gb_s(d) / bw.mean()));
                    }
                }
                format!("{{{}}}", f.join(", "))
            })
            .collect();
        println!(
            "{{\"model\": {}, \"weights\": {}, \"head\": {}, \"kernel\": {}, \"kv_type\": {}, \"bytes_per_token\": {bpt}, \"ctx_depth\": {}, \"kv_bytes_per_token_read\": {kv_read:.0}, \
             \"n_prompt\": {}, \"n_gen\": {}, \"batch_size\": {}, \"reps\": {}, \"results\": [{}]}}",
            json_str(&a.model.display().to_string()),
            json_str(&weights),
            json_str(head),
            json_str(model.kernel.name()),
            json_str(&kv.to_string()),
            a.ctx_depth,
            a.n_prompt,
            a.n_gen,
            a.batch_size,
            a.reps,
            results.join(", ")
        );
        return;
    }
    println!(
        "model   {} ({weights} weights, {head} head, {:.3} GB read per token)",
        a.model.display(),
        bpt as f64 / 1e9
    );
    println!(
        "kv      {kv}, depth {}: {:.4} GB of keys and values read per decode token (mean), \
         next to {:.4} GB of weights",
        a.ctx_depth,
        kv_read / 1e9,
        bpt as f64 / 1e9
    );
    println!(
        "kernel  {}, kv {kv}, {} reps{}",
        model.kernel,
        a.reps,
        if a.batch_size > 1 {
            format!(", decode batch {}", a.batch_size)
        } else {
            String::new()
        }
    );
    println!("| threads | test  |            t/s | eff. GB/s | mem read GB/s | eff/mem |");
    println!("| ------: | :---- | -------------: | --------: | ------------: | ------: |");
    for r in rows {
        if let Some(p) = &r.prefill {
            println!(
                "| {:>7} | {pp:<5} | {:>7.2} ± {:<4.2} | {:>9} | {:>13} | {:>7} |",
                r.threads,
                p.mean(),
                p.stddev(),
                "",
                "",
                ""
            );
        }
        if let Some(d) = &r.decode {
            let (bw, ratio) = match &r.bandwidth {
                Some(bw) => (
                    format!("{:.1} ± {:.1}", bw.mean(), bw.stddev()),
                    format!("{:.0}%", 100.0 * gb_s(d) / bw.mean()),
                ),
                None => (String::new(), String::new()),
            };
            println!(
                "| {:>7} | {tg:<5} | {:>7.2} ± {:<4.2} | {:>9.1} | {bw:>13} | {ratio:>7} |",
                r.threads,
                d.mean(),
                d.stddev(),
                gb_s(d)
            );
        }
    }
}
