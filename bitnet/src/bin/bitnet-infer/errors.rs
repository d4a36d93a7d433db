//! The library's errors as this command line tells them: the same facts, plus the flag
//! that changes the outcome.

use bitnet::model::ModelError;

pub fn model(e: ModelError) -> String {
    match e {
        ModelError::ContextFull {
            pos,
            ctx,
            model_ctx,
        } => format!(
            "context full: position {pos} is past the context of {ctx} (raise --ctx, up to the model's {model_ctx})"
        ),
        ModelError::KvCacheTooLarge {
            seqs: 1,
            ctx,
            layers,
            kv_dim,
            limit,
        } => format!(
            "unsupported: a KV cache of {ctx} positions x {layers} layers x {kv_dim} would exceed {} GiB; lower --ctx",
            limit >> 30
        ),
        ModelError::KvCacheTooLarge {
            seqs, ctx, limit, ..
        } => format!(
            "unsupported: {seqs} KV caches of {ctx} positions would exceed {} GiB; lower --ctx or --batch-size",
            limit >> 30
        ),
        ModelError::HeadNotQuantizable { ty, cols } => format!(
            "unsupported: --head q8_0 needs an F32/F16/BF16 head with a multiple of 32 columns; this head is {ty} with {cols}"
        ),
        e => e.to_string(),
    }
}
