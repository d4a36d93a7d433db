//! Picking the next token from logits: greedy, or temperature with top-k / top-p.

use alloc::vec::Vec;

use crate::rng::Rng;

#[derive(Clone, Debug)]
pub struct SamplerConfig {
    /// 0 means greedy.
    pub temperature: f32,
    /// Keep the k most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1.0: all).
    pub top_p: f32,
    pub seed: u64,
}

pub struct Sampler {
    cfg: SamplerConfig,
    rng: Rng,
    probs: Vec<(f32, u32)>, // (vocab,) candidates, sorted by probability
}

/// Index of the largest logit (lowest index on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Sampler {
        let rng = Rng::new(cfg.seed);
        Sampler {
            cfg,
            rng,
            probs: Vec::new(),
        }
    }

    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.cfg.temperature <= 0.0 {
            return argmax(logits);
        }
        let inv_t = 1.0 / self.cfg.temperature;
        self.probs.clear();
        self.probs.extend(
            logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (l * inv_t, i as u32)),
        );
        // Descending by logit; ties by id so runs are reproducible.
        self.probs
            .sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        if self.cfg.top_k > 0 {
            self.probs.truncate(self.cfg.top_k);
        }
        let max = self.probs[0].0;
        let mut sum = 0.0f32;
        for p in self.probs.iter_mut() {
            p.0 = libm::expf(p.0 - max);
            sum += p.0;
        }
        let mut keep = self.probs.len();
        if self.cfg.top_p < 1.0 {
            let mut cum = 0.0;
            for (i, p) in self.probs.iter().enumerate() {
                cum += p.0 / sum;
                if cum >= self.cfg.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        let kept = &self.probs[..keep];
        let total: f32 = kept.iter().map(|p| p.0).sum();
        let mut r = self.rng.f32() * total;
        for p in kept {
            r -= p.0;
            if r < 0.0 {
                return p.1;
            }
        }
        kept[keep - 1].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(temperature: f32, top_k: usize, top_p: f32) -> SamplerConfig {
        SamplerConfig {
            temperature,
            top_k,
            top_p,
            seed: 42,
        }
    }

    #[test]
    fn greedy_is_argmax() {
        let mut s = Sampler::new(cfg(0.0, 0, 1.0));
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 3.0]), 1);
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut s = Sampler::new(cfg(1.5, 1, 1.0));
        for _ in 0..20 {
            assert_eq!(s.sample(&[0.1, 0.2, 5.0, 0.3]), 2);
        }
    }

    #[test]
    fn top_p_drops_the_tail() {
        // probabilities ~ [0.97, 0.018, 0.006, ...]: top_p 0.9 keeps only the first.
        let mut s = Sampler::new(cfg(1.0, 0, 0.9));
        for _ in 0..50 {
            assert_eq!(s.sample(&[6.0, 2.0, 1.0, 0.0]), 0);
        }
    }

    #[test]
    fn same_seed_same_draws_and_all_tokens_reachable() {
        let logits = [1.0f32, 1.0, 1.0, 1.0];
        let draw = |seed| {
            let mut s = Sampler::new(SamplerConfig {
                seed,
                ..cfg(1.0, 0, 1.0)
            });
            (0..64).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        let d = draw(7);
        assert!((0..4).all(|t| d.contains(&t)));
    }
}
