//! Perplexity as llama.cpp's `llama-perplexity` defines it, and the KL divergence between two
//! runs over the same text (how a KV-cache type or a head quantization is judged).
//!
//! The text is cut into chunks of `ctx` tokens; each chunk is evaluated from an empty cache,
//! its first token replaced by BOS where the vocabulary adds one, and only the second half is
//! scored (positions `ctx/2 .. ctx-1` predicting the next token), so every scored token sees
//! at least `ctx/2` tokens of context.

use alloc::vec::Vec;

use crate::model::{Model, ModelError, State};
use crate::parallel::Exec;

/// `log p(tok)` under `logits`, as llama.cpp computes it: the max in f32, the sum of
/// `expf(l - max)` in f64.
pub fn log_prob(logits: &[f32], tok: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(libm::expf(l - max))).sum();
    f64::from(logits[tok] - max) - libm::log(sum)
}

/// Every token's log-probability under `logits`, written to `out` (same summation as
/// [`log_prob`]).
pub fn log_softmax(logits: &[f32], out: &mut [f32]) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(libm::expf(l - max))).sum();
    let log_sum = libm::log(sum);
    for (o, &l) in out.iter_mut().zip(logits) {
        *o = (f64::from(l - max) - log_sum) as f32;
    }
}

/// Running sums of the scored tokens' negative log-likelihoods.
#[derive(Clone, Copy, Debug, Default)]
pub struct Nll {
    sum: f64,
    sum_sq: f64,
    count: usize,
}

impl Nll {
    pub fn add(&mut self, nll: f64) {
        self.sum += nll;
        self.sum_sq += nll * nll;
        self.count += 1;
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// `exp(mean nll)`.
    pub fn ppl(&self) -> f64 {
        libm::exp(self.sum / self.count.max(1) as f64)
    }

    /// The standard error of [`Nll::ppl`], as llama.cpp prints it: `ppl * sqrt(var / (n - 1))`
    /// with the variance of the per-token NLL (propagated through `exp`).
    pub fn ppl_stderr(&self) -> f64 {
        if self.count < 2 {
            return f64::NAN;
        }
        let n = self.count as f64;
        let mean = self.sum / n;
        let var = self.sum_sq / n - mean * mean;
        if var > 0.0 {
            self.ppl() * libm::sqrt(var / (n - 1.0))
        } else {
            0.0
        }
    }
}

/// Paired statistics of two runs over the same scored tokens: each token's NLL under a base
/// run and under this run. Pairing removes the variance the runs share (which text is hard),
/// so the standard error of the difference is far below that of either perplexity: what
/// judges a KV-cache type against f32, as llama.cpp's `--kl-divergence` prints it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Paired {
    n: usize,
    sum_b: f64,
    sum_r: f64,
    sum_bb: f64,
    sum_rr: f64,
    sum_br: f64,
}

impl Paired {
    pub fn add(&mut self, nll_base: f64, nll_run: f64) {
        self.n += 1;
        self.sum_b += nll_base;
        self.sum_r += nll_run;
        self.sum_bb += nll_base * nll_base;
        self.sum_rr += nll_run * nll_run;
        self.sum_br += nll_base * nll_run;
    }

    pub fn count(&self) -> usize {
        self.n
    }

    /// Means, variances and covariance of (base, run) NLL (population moments).
    fn moments(&self) -> (f64, f64, f64, f64, f64) {
        let n = self.n.max(1) as f64;
        let (mb, mr) = (self.sum_b / n, self.sum_r / n);
        let vb = (self.sum_bb / n - mb * mb).max(0.0);
        let vr = (self.sum_rr / n - mr * mr).max(0.0);
        (mb, mr, vb, vr, self.sum_br / n - mb * mr)
    }

    /// PPL of the base run over the paired tokens.
    pub fn ppl_base(&self) -> f64 {
        libm::exp(self.moments().0)
    }

    /// PPL of this run over the paired tokens.
    pub fn ppl_run(&self) -> f64 {
        libm::exp(self.moments().1)
    }

    /// `PPL(run) - PPL(base)` and its standard error: the delta method through `exp` with the
    /// covariance of the pairs, over `n - 1`.
    pub fn ppl_diff(&self) -> (f64, f64) {
        let (_, _, vb, vr, cov) = self.moments();
        let (pb, pr) = (self.ppl_base(), self.ppl_run());
        let var = (pr * pr * vr + pb * pb * vb - 2.0 * pr * pb * cov).max(0.0);
        (pr - pb, libm::sqrt(var / (self.n.max(2) - 1) as f64))
    }

    /// `mean ln(PPL(run) / PPL(base))` (the mean NLL difference) and its standard error.
    pub fn ln_ratio(&self) -> (f64, f64) {
        let (mb, mr, vb, vr, cov) = self.moments();
        let var = (vr + vb - 2.0 * cov).max(0.0);
        (mr - mb, libm::sqrt(var / (self.n.max(2) - 1) as f64))
    }
}

/// Whole chunks of `ctx` tokens in `n_tokens`, at most `max_chunks` (0: no limit).
pub fn n_chunks(n_tokens: usize, ctx: usize, max_chunks: usize) -> usize {
    let whole = n_tokens / ctx.max(1);
    if max_chunks == 0 {
        whole
    } else {
        whole.min(max_chunks)
    }
}

/// Evaluates one chunk from an empty cache, `batch` tokens per forward pass, and calls
/// `scored(j, logits, next)` for each scored position `j` (`ctx/2 <= j < ctx - 1`) with its
/// logits and the token that follows it.
pub fn score_chunk(
    model: &Model,
    exec: &dyn Exec,
    state: &mut State,
    chunk: &[u32],
    bos: Option<u32>,
    batch: usize,
    scored: &mut dyn FnMut(usize, &[f32], u32),
) -> Result<(), ModelError> {
    let ctx = chunk.len();
    let vocab = model.config.vocab;
    let first = ctx / 2;
    // The cache is overwritten from position 0: nothing of the previous chunk is read.
    state.pos = 0;
    let mut tokens = chunk.to_vec();
    if let Some(b) = bos {
        tokens[0] = b;
    }
    let batch = batch.max(1);
    let mut start = 0;
    while start < ctx {
        let end = (start + batch).min(ctx);
        let logits = model.forward(exec, state, &tokens[start..end], true)?;
        for j in start.max(first)..end.min(ctx - 1) {
            let row = &logits[(j - start) * vocab..(j - start + 1) * vocab];
            scored(j, row, chunk[j + 1]);
        }
        start = end;
    }
    Ok(())
}

/// A KL-divergence base: the log-probabilities of every scored position of one run, with the
/// tokens they were scored against, so a later run over the same text can be compared.
///
/// File layout (little-endian): `b"BNKLD\0\0\x01"`, then u32 `vocab`, u32 `ctx`, u32 `rows`,
/// then `rows` records of u32 target token and `vocab` f32 log-probabilities.
#[derive(Debug)]
pub struct KlBase {
    pub vocab: usize,
    pub ctx: usize,
    /// (rows,)
    pub targets: Vec<u32>,
    /// (rows, vocab)
    pub log_probs: Vec<f32>,
}

const KL_MAGIC: &[u8; 8] = b"BNKLD\0\0\x01";

impl KlBase {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + self.log_probs.len() * 4 + self.targets.len() * 4);
        out.extend_from_slice(KL_MAGIC);
        for v in [self.vocab, self.ctx, self.targets.len()] {
            out.extend_from_slice(&(v as u32).to_le_bytes());
        }
        for (t, row) in self
            .targets
            .iter()
            .zip(self.log_probs.chunks_exact(self.vocab.max(1)))
        {
            out.extend_from_slice(&t.to_le_bytes());
            row.iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        }
        out
    }

    /// Parses a base file; the sizes come from the header and are checked against the
    /// file's length before anything is allocated.
    pub fn from_bytes(b: &[u8]) -> Result<KlBase, alloc::string::String> {
        use alloc::format;
        if b.len() < 20 || &b[..8] != KL_MAGIC {
            return Err("not a KL-divergence base (bitnet-infer perplexity --kl-divergence-base writes one)".into());
        }
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        let (vocab, ctx, rows) = (word(8), word(12), word(16));
        let record = vocab
            .checked_add(1)
            .and_then(|r| r.checked_mul(4))
            .ok_or("vocab size in the header overflows")?;
        let want = rows.checked_mul(record).and_then(|n| n.checked_add(20));
        if want != Some(b.len()) {
            return Err(format!(
                "header says {rows} rows of {vocab} log-probabilities, but the file has {} bytes",
                b.len()
            ));
        }
        let mut targets = Vec::with_capacity(rows);
        let mut log_probs = Vec::with_capacity(rows * vocab);
        for rec in b[20..].chunks_exact(record) {
            targets.push(u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]));
            log_probs.extend(
                rec[4..]
                    .chunks_exact(4)
                    .map(|x| f32::from_le_bytes([x[0], x[1], x[2], x[3]])),
            );
        }
        Ok(KlBase {
            vocab,
            ctx,
            targets,
            log_probs,
        })
    }
}

/// `KL(base || run)` of one position, from two log-probability rows.
pub fn kl_divergence(base: &[f32], run: &[f32]) -> f64 {
    base.iter()
        .zip(run)
        .map(|(&b, &r)| libm::exp(f64::from(b)) * (f64::from(b) - f64::from(r)))
        .sum()
}

/// Index of the largest entry (the first of equal ones).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_prob_is_normalised() {
        let logits = [1.0f32, 2.0, 3.0, -1.0];
        let total: f64 = (0..4).map(|t| libm::exp(log_prob(&logits, t))).sum();
        // The exponentials are f32 (as llama.cpp): normalised to f32 precision.
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        let mut lp = [0.0f32; 4];
        log_softmax(&logits, &mut lp);
        assert!((f64::from(lp[2]) - log_prob(&logits, 2)).abs() < 1e-6);
        assert!(kl_divergence(&lp, &lp).abs() < 1e-12);
        assert_eq!(argmax(&logits), 2);
    }

    #[test]
    fn nll_statistics() {
        let mut n = Nll::default();
        for x in [1.0, 2.0, 3.0] {
            n.add(x);
        }
        assert_eq!(n.count(), 3);
        assert!((n.ppl() - libm::exp(2.0)).abs() < 1e-12);
        // Population variance 2/3, over n - 1 = 2: sqrt(1/3).
        assert!((n.ppl_stderr() - libm::exp(2.0) * libm::sqrt(1.0 / 3.0)).abs() < 1e-12);
        assert_eq!(n_chunks(1000, 128, 0), 7);
        assert_eq!(n_chunks(1000, 128, 3), 3);
    }

    #[test]
    fn paired_difference_and_its_standard_error() {
        // Identical runs: no difference, no error.
        let mut p = Paired::default();
        for x in [1.0, 2.0, 4.0] {
            p.add(x, x);
        }
        assert_eq!(p.ppl_diff(), (0.0, 0.0));
        assert_eq!(p.ln_ratio(), (0.0, 0.0));
        // The run worse by exactly 0.1 nats everywhere: ratio e^0.1 with zero error, however
        // much the NLL itself varies.
        let mut p = Paired::default();
        for x in [1.0, 2.0, 4.0] {
            p.add(x, x + 0.1);
        }
        let (d, se) = p.ln_ratio();
        assert!((d - 0.1).abs() < 1e-12 && se < 1e-6, "{d} {se}");
        let (diff, _) = p.ppl_diff();
        assert!((diff - (libm::exp(7.0 / 3.0 + 0.1) - libm::exp(7.0 / 3.0))).abs() < 1e-9);
        // Unrelated noise: differences (0.5, -0.5, 0.5, -0.5) have mean 0 and population
        // variance 0.25: standard error sqrt(0.25 / 3).
        let mut p = Paired::default();
        for (b, r) in [(1.0, 1.5), (1.0, 0.5), (2.0, 2.5), (2.0, 1.5)] {
            p.add(b, r);
        }
        let (d, se) = p.ln_ratio();
        assert!(
            d.abs() < 1e-12 && (se - libm::sqrt(0.25 / 3.0)).abs() < 1e-12,
            "{d} {se}"
        );
        assert_eq!(p.count(), 4);
    }

    #[test]
    fn kl_base_round_trips_and_refuses_bad_sizes() {
        let base = KlBase {
            vocab: 3,
            ctx: 8,
            targets: alloc::vec![2, 0],
            log_probs: alloc::vec![-1.0, -2.0, -0.5, -0.1, -3.0, -4.0],
        };
        let bytes = base.to_bytes();
        let back = KlBase::from_bytes(&bytes).unwrap();
        assert_eq!((back.vocab, back.ctx), (3, 8));
        assert_eq!(back.targets, base.targets);
        assert_eq!(back.log_probs, base.log_probs);
        assert!(KlBase::from_bytes(&bytes[..bytes.len() - 1])
            .unwrap_err()
            .contains("2 rows"));
        let mut huge = bytes.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(KlBase::from_bytes(&huge).is_err());
        assert!(KlBase::from_bytes(b"GGUF").is_err());
    }
}
