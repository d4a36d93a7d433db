//! The decode loop, once (llama2.c's `generate`): prompt tokens in, sampled tokens out, for
//! one sequence or several evaluated together. What happens to each token (streamed text,
//! collected ids, dumped logits) is the caller's, through one callback.

use alloc::vec;
use alloc::vec::Vec;

use crate::model::{Batch, Model, ModelError, State};
use crate::parallel::Exec;
use crate::sampler::Sampler;

/// What the loop reports, in order.
pub enum Event<'a> {
    /// Logits (n, vocab) of the positions a forward call just evaluated: every prompt
    /// position of every sequence (a prefill asked for all), the last one of each sequence, or
    /// one per sequence (a batched step).
    Logits(&'a [f32]),
    /// Token `id` of sequence `seq`'s output.
    Token { seq: usize, id: u32 },
    /// Sequence `seq` stopped at the end-of-text token `id`, which is not part of its output.
    End { seq: usize, id: u32 },
}

/// When [`Generator::generate`] stops and what it evaluates.
pub struct Options<'a> {
    /// Tokens each sequence takes at most, its end token included.
    pub max_tokens: usize,
    pub is_end: &'a dyn Fn(u32) -> bool,
    /// The text goes on after this call (a chat turn): every emitted token and the end token
    /// join the cache, so one position stays free for the end token. Otherwise only what
    /// sampling needs is evaluated: not the last token, not the end token.
    pub continues: bool,
    /// Teacher forcing (one sequence): decode step i evaluates `forced[i]`, then reports it;
    /// nothing is sampled and neither an end token nor `max_tokens` stops the loop.
    pub forced: Option<&'a [u32]>,
}

/// How a [`Generator::generate`] call went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Tokens taken by the loop, an end token included (the longest sequence's count).
    pub tokens: usize,
    /// Decode steps: forward calls that evaluate one token of every sequence (not counting
    /// the end token a continuing text adds).
    pub steps: usize,
}

/// Sequences, their samplers and the token each sampled last.
pub struct Generator<'m> {
    model: &'m Model,
    exec: &'m dyn Exec,
    batch: Batch,
    samplers: Vec<Sampler>,
    next: Vec<u32>, // (n_seqs,) sampled, not yet evaluated
}

impl<'m> Generator<'m> {
    /// One sampler per sequence of `batch`.
    pub fn new(
        model: &'m Model,
        exec: &'m dyn Exec,
        batch: Batch,
        samplers: Vec<Sampler>,
    ) -> Result<Generator<'m>, ModelError> {
        if samplers.len() != batch.seqs.len() || samplers.is_empty() {
            return Err(ModelError::Input(alloc::format!(
                "{} samplers for {} sequences",
                samplers.len(),
                batch.seqs.len()
            )));
        }
        let next = vec![0; samplers.len()];
        Ok(Generator {
            model,
            exec,
            batch,
            samplers,
            next,
        })
    }

    /// Sequence `seq`'s state (cache and position).
    pub fn state(&self, seq: usize) -> &State {
        &self.batch.seqs[seq]
    }

    /// Evaluates `prompts[i]` into sequence `i`, every sequence's tokens in one forward pass,
    /// and samples each one's first token. `all_logits`: report the logits of every prompt
    /// position (sequence by sequence), not just each sequence's last.
    pub fn prefill(
        &mut self,
        prompts: &[&[u32]],
        all_logits: bool,
        on: &mut dyn FnMut(Event),
    ) -> Result<(), ModelError> {
        let vocab = self.model.config.vocab;
        let logits = if let ([_], [p]) = (&self.batch.seqs[..], prompts) {
            // One sequence keeps to its own buffers, as its decode steps do.
            let s = &mut self.batch.seqs[0];
            self.model.forward(self.exec, s, p, all_logits)?
        } else {
            self.model
                .forward_seqs(self.exec, &mut self.batch, prompts, all_logits)?
        };
        on(Event::Logits(logits));
        let mut end = 0; // past sequence i's rows of `logits`
        for (i, p) in prompts.iter().enumerate() {
            end += if all_logits { p.len() } else { 1 };
            self.next[i] = self.samplers[i].sample(&logits[(end - 1) * vocab..end * vocab]);
        }
        Ok(())
    }

    /// Evaluates `tokens` into sequence `seq` and samples nothing (text the model did not
    /// write, such as the rest of a chat turn's closing).
    pub fn feed(&mut self, seq: usize, tokens: &[u32]) -> Result<(), ModelError> {
        let s = &mut self.batch.seqs[seq];
        self.model.forward(self.exec, s, tokens, false)?;
        Ok(())
    }

    /// Decodes from the tokens the last prefill or step sampled until every sequence has
    /// ended or taken `max_tokens`, or the cache is full. Finished sequences of a batch keep
    /// stepping (their tokens are not reported): the batch keeps its shape.
    pub fn generate(
        &mut self,
        o: &Options,
        on: &mut dyn FnMut(Event),
    ) -> Result<Outcome, ModelError> {
        if let Some(forced) = o.forced {
            for &id in forced {
                let logits =
                    self.model
                        .forward(self.exec, &mut self.batch.seqs[0], &[id], false)?;
                on(Event::Logits(logits));
                on(Event::Token { seq: 0, id });
            }
            let n = forced.len();
            return Ok(Outcome {
                tokens: n,
                steps: n,
            });
        }
        let (vocab, n) = (self.model.config.vocab, self.next.len());
        // Positions the loop may fill: all but the one kept for a continuing text's end.
        let room = self.batch.seqs[0]
            .kv
            .ctx
            .saturating_sub(usize::from(o.continues));
        // Prompts of different lengths leave the sequences at different positions; the batch
        // steps together, so the furthest one decides when the context is full.
        let furthest = |b: &Batch| b.seqs.iter().map(|s| s.pos).max().unwrap_or(0);
        let mut done = vec![false; n];
        let (mut tokens, mut steps) = (0, 0);
        while tokens < o.max_tokens {
            tokens += 1;
            for (seq, &id) in self.next.iter().enumerate() {
                if done[seq] {
                    continue;
                }
                if (o.is_end)(id) {
                    done[seq] = true;
                    on(Event::End { seq, id });
                    if o.continues {
                        let s = &mut self.batch.seqs[seq];
                        on(Event::Logits(self.model.forward(
                            self.exec,
                            s,
                            &[id],
                            false,
                        )?));
                    }
                } else {
                    on(Event::Token { seq, id });
                    // A continuing text evaluates its last token too.
                    done[seq] = tokens == o.max_tokens && !o.continues;
                }
            }
            if done.iter().all(|&d| d) || furthest(&self.batch) >= room {
                break;
            }
            let logits = if n == 1 {
                let s = &mut self.batch.seqs[0];
                self.model.forward(self.exec, s, &self.next, false)?
            } else {
                self.model
                    .forward_batch(self.exec, &mut self.batch, &self.next)?
            };
            steps += 1;
            on(Event::Logits(logits));
            for (i, (next, sampler)) in self.next.iter_mut().zip(&mut self.samplers).enumerate() {
                *next = sampler.sample(&logits[i * vocab..(i + 1) * vocab]);
            }
        }
        Ok(Outcome { tokens, steps })
    }
}

#[cfg(test)]
mod tests {
    use alloc::sync::Arc;

    use super::*;
    use crate::gguf::Gguf;
    use crate::kernels::Kernel;
    use crate::model::KvType;
    use crate::parallel::Serial;
    use crate::sampler::SamplerConfig;
    use crate::synth;

    fn model() -> Model {
        let bytes = synth::build(&synth::fixture_specs()[0]).unwrap();
        let g = Gguf::parse(&bytes).unwrap();
        Model::load(&g, Arc::new(bytes), Kernel::SCALAR).unwrap()
    }

    fn sampler(seed: u64) -> Sampler {
        Sampler::new(SamplerConfig {
            temperature: 1.5,
            top_k: 0,
            top_p: 1.0,
            seed,
        })
    }

    /// Runs `o` on one sequence per prompt, seeded `seed..`: each one's (tokens, end).
    /// `all_logits` asks the prefill for every position's logits (sampling takes the last).
    #[allow(clippy::type_complexity)]
    fn decode(
        m: &Model,
        seed: u64,
        prompts: &[&[u32]],
        all_logits: bool,
        o: &Options,
    ) -> (Vec<(Vec<u32>, Option<u32>)>, Outcome, usize) {
        let n = prompts.len();
        let batch = if n == 1 {
            Batch::from(State::new(&m.config, 32, KvType::F32).unwrap())
        } else {
            Batch::new(&m.config, n, 32, KvType::F32).unwrap()
        };
        let samplers = (0..n as u64).map(|i| sampler(seed + i)).collect();
        let mut g = Generator::new(m, &Serial, batch, samplers).unwrap();
        g.prefill(prompts, all_logits, &mut |_| {}).unwrap();
        let mut out = vec![(Vec::new(), None); n];
        let outcome = g
            .generate(o, &mut |e| match e {
                Event::Token { seq, id } => out[seq].0.push(id),
                Event::End { seq, id } => out[seq].1 = Some(id),
                Event::Logits(_) => {}
            })
            .unwrap();
        (out, outcome, g.state(0).pos)
    }

    #[test]
    fn a_batch_decodes_what_its_sequences_decode_alone() {
        let m = model();
        let end = |id| id % 7 == 0; // ends often enough to cover it
        let o = Options {
            max_tokens: 12,
            is_end: &end,
            continues: false,
            forced: None,
        };
        // Prompts of unequal lengths, one of a single token, prefilled together.
        let prompts: [&[u32]; 3] = [&[256, 72], &[256], &[256, 72, 101, 108, 108]];
        for all_logits in [false, true] {
            let (batched, outcome, _) = decode(&m, 40, &prompts, all_logits, &o);
            for (i, seq) in batched.iter().enumerate() {
                let (alone, _, _) = decode(&m, 40 + i as u64, &prompts[i..=i], false, &o);
                assert_eq!(&alone[0], seq, "sequence {i}, all_logits {all_logits}");
            }
            let longest = batched
                .iter()
                .map(|(t, e)| t.len() + usize::from(e.is_some()));
            assert_eq!(outcome.tokens, longest.max().unwrap());
        }
    }

    #[test]
    fn the_longest_prompt_decides_when_the_context_is_full() {
        let m = model();
        let never = |_| false;
        let o = Options {
            max_tokens: 100,
            is_end: &never,
            continues: false,
            forced: None,
        };
        // Sequence 1 is 3 positions ahead: it fills the context (32) first, and the batch
        // stops there instead of stepping it past its cache.
        let prompts: [&[u32]; 2] = [&[256], &[256, 72, 101, 108]];
        let (out, _, pos0) = decode(&m, 1, &prompts, false, &o);
        assert_eq!(pos0, 32 - 3);
        assert_eq!(out[1].0.len(), 32 - 4 + 1);
    }

    #[test]
    fn limits_and_what_gets_evaluated() {
        let m = model();
        let never = |_| false;
        let mut o = Options {
            max_tokens: 5,
            is_end: &never,
            continues: false,
            forced: None,
        };
        // One-shot: the last token is sampled, not evaluated.
        let (out, outcome, pos) = decode(&m, 1, &[&[256, 72]], false, &o);
        assert_eq!((out[0].0.len(), outcome.steps, pos), (5, 4, 2 + 4));
        // Continuing text: every emitted token joins the cache.
        o.continues = true;
        let (out, outcome, pos) = decode(&m, 1, &[&[256, 72]], false, &o);
        assert_eq!((out[0].0.len(), outcome.steps, pos), (5, 5, 2 + 5));
        // The context (32) ends it, keeping one position for a continuing text's end.
        o.max_tokens = 100;
        let (_, _, pos) = decode(&m, 1, &[&[256, 72]], false, &o);
        assert_eq!(pos, 31);
        o.continues = false;
        let (_, _, pos) = decode(&m, 1, &[&[256, 72]], false, &o);
        assert_eq!(pos, 32);
        // The end token stops it; a continuing text evaluates it.
        let first = decode(&m, 1, &[&[256, 72]], false, &o).0[0].0[0];
        let end = move |id| id == first;
        for (continues, pos) in [(false, 2), (true, 3)] {
            o.is_end = &end;
            o.continues = continues;
            let (out, outcome, p) = decode(&m, 1, &[&[256, 72]], false, &o);
            assert_eq!(out[0], (vec![], Some(first)));
            assert_eq!((outcome.tokens, outcome.steps, p), (1, 0, pos));
        }
    }

    #[test]
    fn teacher_forcing_evaluates_and_reports_the_given_tokens() {
        let m = model();
        let end = |_| true;
        let o = Options {
            max_tokens: 0,
            is_end: &end,
            continues: false,
            forced: Some(&[72, 101, 108]),
        };
        let (out, outcome, pos) = decode(&m, 1, &[&[256]], false, &o);
        assert_eq!(out[0], (vec![72, 101, 108], None));
        assert_eq!((outcome.tokens, outcome.steps, pos), (3, 3, 4));
    }
}
