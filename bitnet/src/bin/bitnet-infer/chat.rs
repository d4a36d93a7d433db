//! `--chat` without `--prompt`: a conversation on stdin, one user turn per line. The KV
//! cache keeps the whole conversation, so each turn only evaluates its new tokens.

use std::io::{BufRead, Write};

use bitnet::model::{KvType, Model, State};
use bitnet::parallel::Pool;
use bitnet::sampler::{Sampler, SamplerConfig};
use bitnet::tokenizer::{Role, StreamDecoder, Tokenizer};

use crate::args::RunArgs;

pub fn interactive(a: &RunArgs, model: &Model, pool: &Pool, tok: &Tokenizer) -> Result<(), String> {
    let format = tok.chat_format()?;
    let c = &model.config;
    let ctx = a.ctx.map_or(c.ctx_len, |n| n.min(c.ctx_len));
    let kv_type = KvType::from_name(&a.kv_type).ok_or("--kv-type must be f16 or f32")?;
    let mut state = State::new(c, ctx, kv_type).map_err(|e| e.to_string())?;
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
        if state.pos + ids.len() + 1 >= ctx {
            return Err(format!(
                "the conversation no longer fits the context of {ctx} tokens"
            ));
        }
        let logits = model
            .forward(pool, &mut state, &ids, false)
            .map_err(|e| e.to_string())?;
        let mut next = sampler.sample(&logits[logits.len() - c.vocab..]);
        let mut decoder = StreamDecoder::default();
        let mut closed = false;
        for _ in 0..a.max_tokens {
            if tok.is_end(next) {
                // The end token joins the cache, so the next turn follows a closed one.
                model
                    .forward(pool, &mut state, &[next], false)
                    .map_err(|e| e.to_string())?;
                closed = true;
                break;
            }
            let mut bytes = Vec::new();
            tok.token_bytes(next, a.show_special, &mut bytes);
            let _ = out.write_all(decoder.push(&bytes).as_bytes());
            let _ = out.flush();
            if state.pos + 1 >= ctx {
                break;
            }
            let logits = model
                .forward(pool, &mut state, &[next], false)
                .map_err(|e| e.to_string())?;
            next = sampler.sample(logits);
        }
        let _ = writeln!(out, "{}", decoder.finish());
        // Whatever of the end-of-turn text the model did not write itself.
        let rest = if closed {
            let eog = tok.piece(next).unwrap_or("");
            end_of_turn.strip_prefix(eog).unwrap_or(end_of_turn)
        } else {
            end_of_turn
        };
        if !rest.is_empty() {
            let ids = tok.encode_with(rest, false, true);
            if state.pos + ids.len() >= ctx {
                return Err(format!(
                    "the conversation no longer fits the context of {ctx} tokens"
                ));
            }
            model
                .forward(pool, &mut state, &ids, false)
                .map_err(|e| e.to_string())?;
        }
        eprint!("> ");
    }
    eprintln!();
    Ok(())
}
