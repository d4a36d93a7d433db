//! Command-line flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "bitnet-infer",
    version,
    about = "Run a BitNet b1.58 (ternary) GGUF model",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Describe a model file: architecture, hyper-parameters, tensor types, CPU and kernel.
    Info(InfoArgs),
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// GGUF model file.
    #[arg(long, short)]
    pub model: PathBuf,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// GGUF model file (I2_S, TQ1_0 or TQ2_0 weights).
    #[arg(long, short, required = true)]
    pub model: Option<PathBuf>,
    /// Prompt text, tokenized with the model's vocabulary.
    #[arg(long, short, conflicts_with = "prompt_tokens")]
    pub prompt: Option<String>,
    /// Prompt as raw token ids (comma-separated); bypasses the tokenizer.
    #[arg(long, value_delimiter = ',')]
    pub prompt_tokens: Option<Vec<u32>>,
    /// Tokens to generate after the prompt.
    #[arg(long, short = 'n', default_value_t = 64)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Sample among the k most likely tokens (0: all).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Sample among the most likely tokens whose probabilities sum to p.
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Random seed (default: from the clock; printed in the stats).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Worker threads (default: available CPUs).
    #[arg(long, short)]
    pub threads: Option<usize>,
    /// Context length, capped by the model's.
    #[arg(long)]
    pub ctx: Option<usize>,
    /// KV cache element type.
    #[arg(long, default_value = "f16", value_parser = ["f16", "f32"])]
    pub kv_type: String,
    /// Write the logits of every evaluated position as a float32 .npy of shape
    /// [n_positions, n_vocab].
    #[arg(long)]
    pub logits_out: Option<PathBuf>,
}
