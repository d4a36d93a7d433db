//! `--chat` without `--prompt`: a conversation on stdin, one user turn per line. The KV
//! cache keeps the whole conversation, so each turn only evaluates its new tokens.

use std::io::{BufRead, Write};

use bitnet::generate::{Event, Generator, Options};
use bitnet::model::{Batch, Model, State};
use bitnet::parallel::Pool;
use bitnet::sampler::{Sampler, SamplerConfig};
use bitnet::tokenizer::{Role, StreamDecoder, Tokenizer};

use crate::args::RunArgs;

pub fn interactive(a: &RunArgs, model: &Model, pool: &Pool, tok: &Tokenizer) -> Result<(), String> {
    let format = tok.chat_format()?;
    let c = &model.config;
    let ctx = a.ctx.map_or(c.ctx_len, |n| n.min(c.ctx_len));
    let kv_type = crate::setup::kv_types(&a.kv, c)?;
    crate::setup::check_kv_memory(kv_type, c, ctx, 1)?;
    let state = State::new(c, ctx, kv_type).map_err(crate::errors::model)?;
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let sampler = Sampler::new(SamplerConfig {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        seed,
    });
    let mut gen = Generator::new(model, pool, Batch::from(state), vec![sampler])
        .map_err(crate::errors::model)?;
    // A turn's reply and its end token join the cache: the next turn follows a closed one.
    let is_end = |id| tok.is_end(id);
    let options = Options {
        max_tokens: a.max_tokens,
        is_end: &is_end,
        continues: true,
        forced: None,
    };
    let end_of_turn = format.end_of_turn();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut first = true;
    eprint!("> ");
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("stdin: {e}"))?;
        if line.trim().is_empty() {
            eprint!("> ");
            continue;
        }
        let mut text = String::new();
        if first {
            if let Some(s) = &a.system {
                format.message(Role::System, s, &mut text);
            }
        }
        format.message(Role::User, &line, &mut text);
        format.assistant_prefix(&mut text);
        // BOS once, at the start of the conversation.
        let ids = tok.encode_with(&text, first, true);
        first = false;
        if gen.state(0).pos + ids.len() + 1 >= ctx {
            return Err(format!(
                "the conversation no longer fits the context of {ctx} tokens"
            ));
        }
        gen.prefill(&[&ids], false, &mut |_| {})
            .map_err(crate::errors::model)?;
        let mut decoder = StreamDecoder::default();
        // The end token the model closed its turn with, if it did.
        let mut closed = None;
        gen.generate(&options, &mut |e| match e {
            Event::Token { id, .. } => {
                let mut bytes = Vec::new();
                tok.token_bytes(id, a.show_special, &mut bytes);
                let _ = out.write_all(decoder.push(&bytes).as_bytes());
                let _ = out.flush();
            }
            Event::End { id, .. } => closed = Some(id),
            Event::Logits(_) => {}
        })
        .map_err(crate::errors::model)?;
        let _ = writeln!(out, "{}", decoder.finish());
        // Whatever of the end-of-turn text the model did not write itself.
        let rest = match closed {
            Some(eog) => {
                let eog = tok.piece(eog).unwrap_or("");
                end_of_turn.strip_prefix(eog).unwrap_or(end_of_turn)
            }
            None => end_of_turn,
        };
        if !rest.is_empty() {
            let ids = tok.encode_with(rest, false, true);
            if gen.state(0).pos + ids.len() >= ctx {
                return Err(format!(
                    "the conversation no longer fits the context of {ctx} tokens"
                ));
            }
            gen.feed(0, &ids).map_err(crate::errors::model)?;
        }
        eprint!("> ");
    }
    eprintln!();
    Ok(())
}
