//! The library's errors as this command line tells them: the library's text, plus the flag
//! that changes the outcome.

use bitnet::model::ModelError;

pub fn model(e: ModelError) -> String {
    let hint = match &e {
        ModelError::ContextFull { .. } => "raise --ctx, up to the model's context",
        ModelError::KvCacheTooLarge { seqs: 1, .. } => "lower --ctx",
        ModelError::KvCacheTooLarge { .. } => "lower --ctx or --batch-size",
        ModelError::HeadNotQuantizable { .. } => "run without --head q8_0",
        _ => return e.to_string(),
    };
    format!("{e}; {hint}")
}
