//! `bitnet-infer perplexity`: llama.cpp's perplexity over a text file, and the KL divergence
//! against a saved base run (`--kl-divergence-base` writes it, `--kl-divergence` compares).

use std::io::IsTerminal;
use std::time::Instant;

use bitnet::gguf::GgufFile;
use bitnet::model::State;
use bitnet::perplexity::{self, KlBase, Nll, Paired};
use bitnet::tokenizer::Tokenizer;

use crate::args::PerplexityArgs;
use crate::setup::json_str;

pub fn main(a: &PerplexityArgs) -> Result<(), String> {
    let shown = a.model.display().to_string();
    let file = GgufFile::open(&a.model).map_err(|e| e.to_string())?;
    let threads = crate::setup::threads(a.threads)?;
    let pool = crate::setup::pool(threads)?;
    let model = crate::setup::load(&file, &shown, &a.kernel, &pool)?;
    let c = &model.config;
    let tok = Tokenizer::from_gguf(file.gguf()).map_err(|e| format!("{shown}: {e}"))?;
    tok.notes.iter().for_each(|n| eprintln!("{shown}: {n}"));
    let text = std::fs::read_to_string(&a.file)
        .map_err(|e| format!("{}: cannot read the text: {e}", a.file.display()))?;
    // As llama.cpp: the whole text at once, BOS first where the vocabulary adds one.
    let tokens = tok.encode_with(&text, tok.add_bos, false);

    let ctx = a.ctx.min(c.ctx_len);
    if ctx < 4 {
        return Err(format!("--ctx {ctx}: a chunk needs at least 4 tokens"));
    }
    let chunks = perplexity::n_chunks(tokens.len(), ctx, a.chunks);
    if chunks == 0 {
        return Err(format!(
            "{}: {} tokens are not one chunk of --ctx {ctx}; give a longer text or a smaller --ctx",
            a.file.display(),
            tokens.len()
        ));
    }
    let kv_type = crate::setup::kv_types(&a.kv, c)?;
    crate::setup::check_kv_memory(kv_type, c, ctx, 1)?;
    let mut state = State::new(c, ctx, kv_type).map_err(crate::errors::model)?;
    let bos = tok.add_bos.then_some(tok.bos).flatten();

    let base = match &a.kl_divergence {
        Some(p) => {
            let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let b = KlBase::from_bytes(&bytes).map_err(|e| format!("{}: {e}", p.display()))?;
            if b.vocab != c.vocab || b.ctx != ctx {
                return Err(format!(
                    "{}: the base was saved with vocab {} and ctx {}; this run has vocab {} and ctx {ctx}",
                    p.display(),
                    b.vocab,
                    b.ctx,
                    c.vocab
                ));
            }
            Some(b)
        }
        None => None,
    };
    let mut saved = a.kl_divergence_base.as_ref().map(|_| KlBase {
        vocab: c.vocab,
        ctx,
        targets: Vec::new(),
        log_probs: Vec::new(),
    });

    let progress = std::io::stderr().is_terminal() && !a.json;
    let t0 = Instant::now();
    let mut nll = Nll::default();
    // KL divergence against the base: (sum, sum of squares) of per-position KLD, top-1 hits.
    let (mut kld, mut kld_sq, mut top1, mut row) = (0.0f64, 0.0f64, 0usize, 0usize);
    // Each scored token's NLL under the base and under this run.
    let mut paired = Paired::default();
    let mut lp = vec![0.0f32; c.vocab];
    let mut mismatch = None;
    for i in 0..chunks {
        let chunk = &tokens[i * ctx..(i + 1) * ctx];
        perplexity::score_chunk(
            &model,
            &pool,
            &mut state,
            chunk,
            bos,
            a.batch_size,
            &mut |_, logits, next| {
                nll.add(-perplexity::log_prob(logits, next as usize));
                if saved.is_none() && base.is_none() {
                    return;
                }
                perplexity::log_softmax(logits, &mut lp);
                if let Some(s) = saved.as_mut() {
                    s.targets.push(next);
                    s.log_probs.extend_from_slice(&lp);
                }
                if let Some(b) = &base {
                    if b.targets.get(row) != Some(&next) {
                        mismatch.get_or_insert(row);
                    } else {
                        let brow = &b.log_probs[row * c.vocab..(row + 1) * c.vocab];
                        let d = perplexity::kl_divergence(brow, &lp);
                        kld += d;
                        kld_sq += d * d;
                        top1 += usize::from(perplexity::argmax(brow) == perplexity::argmax(&lp));
                        let t = next as usize;
                        paired.add(-f64::from(brow[t]), -f64::from(lp[t]));
                    }
                }
                row += 1;
            },
        )
        .map_err(crate::errors::model)?;
        if progress {
            eprint!(
                "\r[{}/{chunks}] ppl {:.4} ({:.1} s)",
                i + 1,
                nll.ppl(),
                t0.elapsed().as_secs_f64()
            );
        }
    }
    if progress {
        eprintln!();
    }
    if let Some(b) = &base {
        if let Some(r) = mismatch.or((b.targets.len() != row).then_some(row.min(b.targets.len()))) {
            return Err(format!(
                "{}: the base run scored other tokens (first difference at scored position {r}; \
                 it has {} positions, this run {row}): use the same text, model vocabulary, \
                 --ctx and --chunks",
                a.kl_divergence
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                b.targets.len()
            ));
        }
    }
    if let (Some(s), Some(p)) = (&saved, &a.kl_divergence_base) {
        std::fs::write(p, s.to_bytes()).map_err(|e| format!("{}: {e}", p.display()))?;
    }

    let secs = t0.elapsed().as_secs_f64();
    let kl = base.as_ref().map(|_| {
        let n = row.max(1) as f64;
        let mean = kld / n;
        let se = (((kld_sq / n) - mean * mean).max(0.0) / (n - 1.0).max(1.0)).sqrt();
        (mean, se, top1 as f64 / n)
    });
    if a.json {
        let mut fields = vec![
            format!("\"ppl\": {}", nll.ppl()),
            format!("\"ppl_stderr\": {}", nll.ppl_stderr()),
            format!("\"nll_sum\": {}", nll.sum()),
            format!("\"n_scored\": {}", nll.count()),
            format!("\"ctx\": {ctx}"),
            format!("\"chunks\": {chunks}"),
            format!("\"n_tokens\": {}", tokens.len()),
            format!("\"kernel\": {}", json_str(model.kernel.name())),
            format!("\"seconds\": {secs:.3}"),
        ];
        if let Some((mean, se, top)) = kl {
            fields.push(format!("\"kld_mean\": {mean}"));
            fields.push(format!("\"kld_stderr\": {se}"));
            fields.push(format!("\"top1_agreement\": {top}"));
            let ((diff, diff_se), (lr, lr_se)) = (paired.ppl_diff(), paired.ln_ratio());
            fields.push(format!("\"ppl_base\": {}", paired.ppl_base()));
            fields.push(format!("\"ppl_diff\": {diff}"));
            fields.push(format!("\"ppl_diff_stderr\": {diff_se}"));
            fields.push(format!("\"ln_ppl_ratio\": {lr}"));
            fields.push(format!("\"ln_ppl_ratio_stderr\": {lr_se}"));
        }
        println!("{{{}}}", fields.join(", "));
    } else {
        println!(
            "perplexity   {:.4} +/- {:.4} ({} tokens scored in {chunks} chunks of {ctx}; {} tokens in the file)",
            nll.ppl(),
            nll.ppl_stderr(),
            nll.count(),
            tokens.len()
        );
        if let Some((mean, se, top)) = kl {
            println!("kl div       {mean:.6} +/- {se:.6} (mean over {row} positions)");
            println!("same top-1   {:.2}%", 100.0 * top);
            let ((diff, diff_se), (lr, lr_se)) = (paired.ppl_diff(), paired.ln_ratio());
            println!(
                "vs base      PPL {:.4} - base {:.4} = {diff:+.4} +/- {diff_se:.4} \
                 ({:+.3}% +/- {:.3}%; mean ln ratio {lr:+.6} +/- {lr_se:.6}, paired over {} tokens)",
                paired.ppl_run(),
                paired.ppl_base(),
                100.0 * diff / paired.ppl_base(),
                100.0 * diff_se / paired.ppl_base(),
                paired.count()
            );
        }
        println!(
            "kernel       {} ({threads} threads, kv {}, batch {}), {secs:.1} s",
            model.kernel, kv_type, a.batch_size
        );
    }
    Ok(())
}
