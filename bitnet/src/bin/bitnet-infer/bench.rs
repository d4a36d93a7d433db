//! `bitnet-infer bench`: llama-bench style figures. Prefill (`ppN`: N prompt tokens as one
//! batch) and decode (`tgN`: N tokens one at a time from an empty cache) in tok/s, mean and
//! standard deviation over repetitions; for decode also the effective read bandwidth (bytes
//! of weights per token x tok/s) next to the machine's own, measured on the same threads
//! between the decode tokens of each repetition: on a shared host what neighbours leave of
//! the bandwidth changes from second to second, and only a yardstick read in the same window
//! says what share of it decode used.
//! `-b B` adds `ppNxB` and `tgNxB`: B sequences in each forward pass, next to one.

use std::cell::RefCell;
use std::time::Instant;

use bitnet::gguf::GgufFile;
use bitnet::model::{tensor_type_summary, Batch, Config, KvTypes, Model, State};
use bitnet::parallel::Pool;
use bitnet::rng::Rng;

use crate::args::BenchArgs;
use crate::membw;
use crate::profile;
use crate::setup::{self, json_str};
use crate::stats::Stats;

struct Row {
    threads: usize,
    /// Tok/s of one sequence, then (`-b N`, N > 1) the aggregate of N sequences together.
    prefill: Vec<Stats>,
    decode: Vec<Stats>,
    /// Read bandwidth of each decode repetition (the mean of its samples), GB/s.
    bandwidth: Option<Stats>,
    /// Each decode repetition's effective GB/s over its own bandwidth.
    bw_share: Option<Stats>,
}

/// Decode tokens between two samples of the read bandwidth (one more before the first token
/// and after the last).
const BW_EVERY: usize = 8;

pub fn main(a: &BenchArgs) -> Result<(), String> {
    if a.reps == 0 || a.batch_size == 0 {
        return Err("--reps and --batch-size must be at least 1".into());
    }
    let threads = setup::thread_counts(a.threads.as_deref())?;
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
    // The N-sequence figures only mean something next to one sequence's, measured alike.
    let seqs: Vec<usize> = if a.batch_size > 1 {
        vec![1, a.batch_size]
    } else {
        vec![1]
    };

    let mut rows = Vec::new();
    for &t in &threads {
        let pool = setup::pool(t)?;
        let (m, pool) = (&model, &pool);
        let (p, g) = (&tokens[..a.n_prompt], &tokens[..a.n_gen]);
        let prefill = if a.n_prompt > 0 {
            let runs: Vec<_> = seqs
                .iter()
                .map(|&n| {
                    move |_warm_up: bool| {
                        let s = prefill_once(m, pool, p, n, ctx, kv, depth)?;
                        Ok((n * p.len()) as f64 / s)
                    }
                })
                .collect();
            measure(a.reps, &runs)?
        } else {
            Vec::new()
        };
        let yard = match a.n_gen {
            0 => None,
            _ => membw::Yardstick::new(pool, a.bw_mib),
        };
        // The bandwidth samples of each one-sequence decode repetition.
        let bw_reps: RefCell<Vec<Vec<f64>>> = RefCell::new(Vec::new());
        let decode = if a.n_gen > 0 {
            let (yard, bw_reps) = (&yard, &bw_reps);
            let runs: Vec<_> = seqs
                .iter()
                .map(|&n| {
                    move |warm_up: bool| {
                        let g = if warm_up { &g[..g.len().min(4)] } else { g };
                        let mut bw = Vec::new();
                        let probe = yard.as_ref().filter(|_| n == 1 && !warm_up);
                        let probe = probe.map(|y| (y, &mut bw));
                        let s = decode_once(m, pool, g, n, ctx, kv, depth, probe)?;
                        if !bw.is_empty() {
                            bw_reps.borrow_mut().push(bw);
                        }
                        Ok((n * g.len()) as f64 / s)
                    }
                })
                .collect();
            measure(a.reps, &runs)?
        } else {
            Vec::new()
        };
        let bw_reps = bw_reps.into_inner();
        let (bandwidth, bw_share) = match decode.first() {
            Some(d) if !bw_reps.is_empty() => {
                let bpt = model.bytes_per_token() as f64;
                let bw: Vec<f64> = bw_reps
                    .into_iter()
                    .map(|samples| Stats { samples }.mean())
                    .collect();
                let share = d.samples.iter().zip(&bw);
                let share = share.map(|(tok_s, bw)| tok_s * bpt / 1e9 / bw).collect();
                (Some(Stats { samples: bw }), Some(Stats { samples: share }))
            }
            _ => (None, None),
        };
        rows.push(Row {
            threads: t,
            prefill,
            decode,
            bandwidth,
            bw_share,
        });
    }
    report(a, &file, &model, kv, &rows);
    if a.profile {
        let kv_read = kv_read_per_step(a, &model, kv);
        for r in &rows {
            let pool = setup::pool(r.threads)?;
            let (p, g) = (&tokens[..a.n_prompt], &tokens[..a.n_gen]);
            let mem_gb_s = r.bandwidth.as_ref().map(Stats::mean);
            let mut run = profile::Run {
                test: test_name("pp", p.len(), 1),
                threads: r.threads,
                tokens: p.len(),
                kv_read: None,
                mem_gb_s,
                one_section_ns: None,
            };
            if !p.is_empty() {
                let (s, prof) =
                    profile::record(|| prefill_once(&model, &pool, p, 1, ctx, kv, depth));
                s?;
                profile::print(&model, &run, &prof);
            }
            if !g.is_empty() {
                let (s, prof) =
                    profile::record(|| decode_once(&model, &pool, g, 1, ctx, kv, depth, None));
                s?;
                run.test = test_name("tg", g.len(), 1);
                run.tokens = g.len();
                run.kv_read = Some(kv_read);
                run.one_section_ns = Some(profile::one_section(&model, &pool, g.len()));
                profile::print(&model, &run, &prof);
            }
        }
    }
    Ok(())
}

/// KV bytes attention reads per decode step, averaged over the test's positions
/// depth + 1 ..= depth + n_gen (every cached key and value of every layer, once).
fn kv_read_per_step(a: &BenchArgs, model: &Model, kv: KvTypes) -> f64 {
    let c = &model.config;
    let kv_per_pos = kv.bytes_per_token(c.n_layer, c.kv_dim()).unwrap_or(0);
    kv_per_pos as f64 * (a.ctx_depth as f64 + (a.n_gen as f64 + 1.0) / 2.0)
}

/// Tok/s of each of `runs` over `reps` rounds after a warm-up round (`run(true)`). A round
/// takes every run once, in turn, so that whatever else loads the machine weighs on all of
/// them alike and their ratio holds up better than their absolute figures.
fn measure<F>(reps: usize, runs: &[F]) -> Result<Vec<Stats>, String>
where
    F: Fn(bool) -> Result<f64, String>,
{
    for run in runs {
        run(true)?;
    }
    let mut stats: Vec<Stats> = runs.iter().map(|_| Stats { samples: vec![] }).collect();
    for _ in 0..reps {
        for (run, s) in runs.iter().zip(&mut stats) {
            s.samples.push(run(false)?);
        }
    }
    Ok(stats)
}

/// Sequence `s`'s variant of `tokens`: different ids per sequence (the work is the same),
/// sequence 0 the tokens themselves.
fn seq_tokens(tokens: &[u32], s: usize, vocab: usize) -> Vec<u32> {
    let shift = |(i, &t): (usize, &u32)| ((t as usize + i * s) % vocab) as u32;
    tokens.iter().enumerate().map(shift).collect()
}

/// Seconds to evaluate `prompt` (a variant of it per sequence) into `seqs` fresh caches in
/// one forward pass (logits of each sequence's last token).
fn prefill_once(
    model: &Model,
    pool: &Pool,
    prompt: &[u32],
    seqs: usize,
    ctx: usize,
    kv: KvTypes,
    depth: usize,
) -> Result<f64, String> {
    let c = &model.config;
    if seqs == 1 {
        let mut state = State::new(c, ctx, kv).map_err(crate::errors::model)?;
        fill_depth(c, &mut state, depth);
        let t = Instant::now();
        model
            .forward(pool, &mut state, prompt, false)
            .map_err(crate::errors::model)?;
        return Ok(t.elapsed().as_secs_f64());
    }
    let mut b = Batch::new(c, seqs, ctx, kv).map_err(crate::errors::model)?;
    for s in &mut b.seqs {
        fill_depth(c, s, depth);
    }
    let prompts: Vec<Vec<u32>> = (0..seqs).map(|s| seq_tokens(prompt, s, c.vocab)).collect();
    let prompts: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
    let t = Instant::now();
    model
        .forward_seqs(pool, &mut b, &prompts, false)
        .map_err(crate::errors::model)?;
    Ok(t.elapsed().as_secs_f64())
}

/// Seconds to decode `tokens.len()` steps one token at a time from an empty cache, for
/// `batch` sequences at once.
#[allow(clippy::too_many_arguments)]
fn decode_once(
    model: &Model,
    pool: &Pool,
    tokens: &[u32],
    batch: usize,
    ctx: usize,
    kv: KvTypes,
    depth: usize,
    mut bw: Option<(&membw::Yardstick, &mut Vec<f64>)>,
) -> Result<f64, String> {
    let c = &model.config;
    if batch == 1 {
        let mut state = State::new(c, ctx, kv).map_err(crate::errors::model)?;
        fill_depth(c, &mut state, depth);
        let mut probe = || {
            if let Some((y, samples)) = &mut bw {
                samples.push(y.sample(pool));
            }
        };
        // Only the forward passes are timed, not the bandwidth samples between them.
        let mut secs = 0.0;
        for (i, &tok) in tokens.iter().enumerate() {
            if i % BW_EVERY == 0 {
                probe();
            }
            let t = Instant::now();
            model
                .forward(pool, &mut state, &[tok], false)
                .map_err(crate::errors::model)?;
            secs += t.elapsed().as_secs_f64();
        }
        probe();
        return Ok(secs);
    }
    let mut b = Batch::new(c, batch, ctx, kv).map_err(crate::errors::model)?;
    for s in &mut b.seqs {
        fill_depth(c, s, depth);
    }
    let per_seq: Vec<Vec<u32>> = (0..batch).map(|s| seq_tokens(tokens, s, c.vocab)).collect();
    let t = Instant::now();
    for i in 0..tokens.len() {
        let step: Vec<u32> = per_seq.iter().map(|s| s[i]).collect();
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
    let kv_read = kv_read_per_step(a, model, kv);
    let b = a.batch_size;
    // Decode GB/s: every weight is read once per step; a step serves `seqs` tokens.
    let gb_s = |d: &Stats, seqs: usize| d.mean() / seqs as f64 * bpt as f64 / 1e9;
    // The N-sequence figure over the one-sequence figure.
    let vs_1 = |v: &[Stats]| v[1].mean() / v[0].mean();
    if a.json {
        let results: Vec<String> = rows
            .iter()
            .map(|r| {
                let mut f = vec![format!("\"threads\": {}", r.threads)];
                if let Some(p) = r.prefill.first() {
                    f.push(format!("\"prefill_tok_s\": {}", p.json()));
                }
                if let Some(d) = r.decode.first() {
                    f.push(format!("\"decode_tok_s\": {}", d.json()));
                    f.push(format!("\"decode_gb_s\": {:.3}", gb_s(d, 1)));
                }
                if let (Some(bw), Some(share)) = (&r.bandwidth, &r.bw_share) {
                    f.push(format!("\"mem_read_gb_s\": {}", bw.json()));
                    f.push(format!("\"decode_bw_ratio\": {:.4}", share.mean()));
                }
                if let Some(p) = r.prefill.get(1) {
                    f.push(format!("\"batch_prefill_tok_s\": {}", p.json()));
                    f.push(format!("\"batch_prefill_vs_1\": {:.4}", vs_1(&r.prefill)));
                }
                if let Some(d) = r.decode.get(1) {
                    f.push(format!("\"batch_decode_tok_s\": {}", d.json()));
                    f.push(format!("\"batch_decode_gb_s\": {:.3}", gb_s(d, b)));
                    f.push(format!("\"batch_decode_vs_1\": {:.4}", vs_1(&r.decode)));
                }
                format!("{{{}}}", f.join(", "))
            })
            .collect();
        println!(
            "{{\"model\": {}, \"weights\": {}, \"head\": {}, \"kernel\": {}, \"prefetch\": {}, \"kv_type\": {}, \"bytes_per_token\": {bpt}, \"ctx_depth\": {}, \"kv_bytes_per_token_read\": {kv_read:.0}, \
             \"n_prompt\": {}, \"n_gen\": {}, \"batch_size\": {}, \"reps\": {}, \"results\": [{}]}}",
            json_str(&a.model.display().to_string()),
            json_str(&weights),
            json_str(head),
            json_str(model.kernel.name()),
            json_str(bitnet::kernels::prefetch::describe()),
            json_str(&kv.to_string()),
            a.ctx_depth,
            a.n_prompt,
            a.n_gen,
            b,
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
        "kernel  {}, software prefetch {}, kv {kv}, {} reps{}",
        model.kernel,
        bitnet::kernels::prefetch::describe(),
        a.reps,
        if b > 1 {
            format!(
                ", {b} sequences against 1 (x{b}: all {b} together, aggregate t/s; \
                 rounds alternate the two)"
            )
        } else {
            String::new()
        }
    );
    // (test, threads, stats, eff. GB/s, mem read, eff/mem, vs 1 sequence)
    let mut lines: Vec<[String; 7]> = Vec::new();
    for r in rows {
        for (i, p) in r.prefill.iter().enumerate() {
            let vs = if i > 0 {
                format!("{:.2}x", vs_1(&r.prefill))
            } else {
                String::new()
            };
            let name = test_name("pp", a.n_prompt, [1, b][i]);
            let t_s = format!("{:>7.2} ± {:<4.2}", p.mean(), p.stddev());
            let blank = String::new;
            lines.push([
                name,
                r.threads.to_string(),
                t_s,
                blank(),
                blank(),
                blank(),
                vs,
            ]);
        }
        for (i, d) in r.decode.iter().enumerate() {
            let seqs = [1, b][i];
            let (bw, ratio) = match (&r.bandwidth, &r.bw_share) {
                (Some(bw), Some(share)) => (
                    format!("{:.1} ± {:.1}", bw.mean(), bw.stddev()),
                    // One sequence: each repetition against its own bandwidth.
                    match i {
                        0 => format!("{:.0}%", 100.0 * share.mean()),
                        _ => format!("{:.0}%", 100.0 * gb_s(d, seqs) / bw.mean()),
                    },
                ),
                _ => (String::new(), String::new()),
            };
            let vs = if i > 0 {
                format!("{:.2}x", vs_1(&r.decode))
            } else {
                String::new()
            };
            lines.push([
                test_name("tg", a.n_gen, seqs),
                r.threads.to_string(),
                format!("{:>7.2} ± {:<4.2}", d.mean(), d.stddev()),
                format!("{:.1}", gb_s(d, seqs)),
                bw,
                ratio,
                vs,
            ]);
        }
    }
    let w = lines.iter().map(|l| l[0].len()).fold(5, usize::max);
    let (vs_head, vs_rule) = if b > 1 {
        (" vs 1 seq |", " -------: |")
    } else {
        ("", "")
    };
    println!(
        "| threads | {:<w$} |            t/s | eff. GB/s | mem read GB/s | eff/mem |{vs_head}",
        "test"
    );
    println!(
        "| ------: | :{:-<w2$} | -------------: | --------: | ------------: | ------: |{vs_rule}",
        "",
        w2 = w - 1
    );
    for [name, threads, t_s, eff, bw, ratio, vs] in lines {
        let vs = if b > 1 {
            format!(" {vs:>8} |")
        } else {
            String::new()
        };
        println!(
            "| {threads:>7} | {name:<w$} | {t_s:>14} | {eff:>9} | {bw:>13} | {ratio:>7} |{vs}"
        );
    }
}

/// llama-bench's test names (`pp128`, `tg32`), with `xN` for N sequences together.
fn test_name(kind: &str, tokens: usize, seqs: usize) -> String {
    if seqs == 1 {
        format!("{kind}{tokens}")
    } else {
        format!("{kind}{tokens}x{seqs}")
    }
}
