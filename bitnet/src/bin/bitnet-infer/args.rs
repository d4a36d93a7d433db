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
    /// Measure prefill and decode speed (llama-bench style) and the memory read bandwidth.
    Bench(BenchArgs),
    /// Show the token ids and pieces of a text (works on vocabulary-only GGUF files).
    Tokenize(TokenizeArgs),
    /// Perplexity of a text as llama.cpp's llama-perplexity computes it, and the KL
    /// divergence against a saved base run.
    Perplexity(PerplexityArgs),
    /// Convert a Hugging Face BitNetForCausalLM checkpoint (packed or bf16 master weights)
    /// to GGUF.
    Convert(ConvertArgs),
    /// Check `bench`'s read-bandwidth probe against a plain streaming read, on 4 KiB and
    /// 2 MiB pages and through a file's mmap (the pages a model's tensors live in), and time
    /// a cache line's round trip between two cores (meaningful on an otherwise idle machine).
    Membw(MembwArgs),
    /// Re-read a file into the page cache in 2 MiB folios where Linux can (its cached pages
    /// dropped, then read through a 2 MiB-aligned map advised onto huge pages), and say how
    /// much is: what `cargo xtask compare` does before its rounds, so that every engine's map
    /// of the model finds the same cache.
    PageCache(PageCacheArgs),
}

#[derive(Args, Debug)]
pub struct PageCacheArgs {
    /// The file (a model).
    pub file: PathBuf,
}

#[derive(Args, Debug)]
pub struct MembwArgs {
    /// MiB per buffer.
    #[arg(long, default_value_t = 1024)]
    pub mib: usize,
    /// Thread counts, comma-separated (default: physical cores).
    #[arg(short = 't', long, value_delimiter = ',')]
    pub threads: Option<Vec<usize>>,
    /// Passes per measurement (after a warm-up pass).
    #[arg(short = 'r', long, default_value_t = 5)]
    pub reps: usize,
    /// Also read this file through mmap (after a first pass has brought it into the page
    /// cache), e.g. the model.
    #[arg(long)]
    pub file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Hugging Face model directory: config.json, model.safetensors (or sharded with
    /// model.safetensors.index.json), tokenizer.json, tokenizer_config.json.
    pub dir: PathBuf,
    /// Output GGUF file (written as OUT.tmp, renamed when complete).
    #[arg(long, short)]
    pub output: PathBuf,
    /// Ternary weight type (default: i2_s for BitNetForCausalLM, tq2_0 for LlamaForCausalLM).
    #[arg(long = "type", value_parser = ["i2_s", "tq2_0", "tq1_0"])]
    pub r#type: Option<String>,
    /// Type of the embedding (and untied head).
    #[arg(long, default_value = "f16", value_parser = ["f16", "q8_0", "f32"])]
    pub head: String,
    /// TQ types: fold each tensor's scale into the blocks' f16 `d` (0 for an all-zero block),
    /// as llama.cpp's converter does, instead of an exact F32 `blk.N.<w>.scale` tensor. The
    /// f16 rounding of the scale moves the logits (~1e-2 on tools/reference's check).
    #[arg(long)]
    pub fold_scale: bool,
}

#[derive(Args, Debug)]
pub struct PerplexityArgs {
    /// GGUF model file.
    #[arg(long, short)]
    pub model: PathBuf,
    /// Text file to score (UTF-8).
    #[arg(long, short)]
    pub file: PathBuf,
    /// Tokens per chunk (capped by the model's context); the second half of each is scored.
    #[arg(long, default_value_t = 512)]
    pub ctx: usize,
    /// Score at most this many chunks (0: every whole chunk of the text).
    #[arg(long, default_value_t = 0)]
    pub chunks: usize,
    /// Tokens evaluated per forward pass.
    #[arg(long, short, default_value_t = 512)]
    pub batch_size: usize,
    /// Worker threads (default: physical cores).
    #[arg(long, short)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub kv: KvArgs,
    /// Save every scored position's log-probabilities here, as the base of a later
    /// --kl-divergence run.
    #[arg(long, conflicts_with = "kl_divergence")]
    pub kl_divergence_base: Option<PathBuf>,
    /// Compare with a base saved by --kl-divergence-base (same text, vocabulary, --ctx and
    /// --chunks): mean KL divergence and top-1 agreement.
    #[arg(long)]
    pub kl_divergence: Option<PathBuf>,
    /// Print one JSON object: ppl, ppl_stderr, nll_sum, n_scored, ctx, chunks (and the KL
    /// figures when comparing).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

#[derive(Args, Debug)]
pub struct TokenizeArgs {
    /// GGUF file with `tokenizer.*` metadata (a model or a vocabulary-only file).
    #[arg(long, short)]
    pub model: PathBuf,
    /// Text to tokenize.
    #[arg(long, short, required_unless_present = "bench")]
    pub text: Option<String>,
    /// Print one JSON object {"ids": [...], "pieces": [...]}.
    #[arg(long)]
    pub json: bool,
    /// Tokenize the text as a user turn in the model's chat format.
    #[arg(long)]
    pub chat: bool,
    /// System message of the chat turn.
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    /// Add no BOS/EOS and read special-token text (`<|eot_id|>`) as plain text.
    #[arg(long, conflicts_with = "chat")]
    pub no_special: bool,
    /// Measure encode and decode throughput on 1 MiB of mixed text instead.
    #[arg(long)]
    pub bench: bool,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// GGUF model file.
    #[arg(long, short)]
    pub model: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

/// How the model is executed: shared by run, info and bench.
#[derive(Args, Debug, Clone)]
pub struct KernelArgs {
    /// Force a kernel (scalar, avx2, avxvnni, avx512vnni, ...; see `info`) instead of the best
    /// one this CPU supports. Also read from BITNET_KERNEL.
    #[arg(long)]
    pub kernel: Option<String>,
    /// Head (output matrix) type: `f16` keeps the file's; `q8_0` quantizes an F16 head to
    /// Q8_0 at load (about half the bytes read per token).
    #[arg(long, default_value = "f16", value_parser = ["f16", "q8_0"])]
    pub head: String,
    /// Read an f16 head in place from the file's map instead of copying it to memory on
    /// 2 MiB pages at load: saves its size in memory (656 MB on the 2B4T shape), slower
    /// decode where the page cache holds the file in small pages.
    #[arg(long)]
    pub head_in_file: bool,
    /// Software prefetch in the x86_64 decode and head loops: `auto` is on except on AMD
    /// CPUs, whose hardware prefetchers stream faster without it. Also read from
    /// BITNET_PREFETCH.
    #[arg(long, value_parser = bitnet::kernels::prefetch::Prefetch::NAMES)]
    pub prefetch: Option<String>,
}

/// The KV cache types. Keys and values can differ: `--kv-type-k` / `--kv-type-v` override
/// `--kv-type`, which overrides `--kv-bits`; f16 when none is given.
#[derive(Args, Debug, Clone)]
pub struct KvArgs {
    /// KV cache element type of keys and values: f32, f16 (default), q8_0 or q4_0 (llama.cpp's
    /// blocks of 32 along the head, one f16 scale each: 8.5 and 4.5 bits per element).
    #[arg(long, value_parser = KV_TYPES)]
    pub kv_type: Option<String>,
    /// KV cache type of the keys (overrides --kv-type).
    #[arg(long, value_parser = KV_TYPES)]
    pub kv_type_k: Option<String>,
    /// KV cache type of the values (overrides --kv-type).
    #[arg(long, value_parser = KV_TYPES)]
    pub kv_type_v: Option<String>,
    /// KV cache bits per element as the BitNet guide writes it: 16 = f16, 8 = q8_0,
    /// 4 = q4_0 (overridden by --kv-type).
    #[arg(long, value_parser = ["16", "8", "4"])]
    pub kv_bits: Option<String>,
}

/// The `--kv-type*` values.
pub const KV_TYPES: [&str; 4] = ["f32", "f16", "q8_0", "q4_0"];

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// GGUF model file (e.g. from `cargo xtask bench-model`).
    #[arg(long, short)]
    pub model: PathBuf,
    /// Prompt tokens evaluated as one batch (prefill test); 0 skips it.
    #[arg(short = 'p', long, default_value_t = 128)]
    pub n_prompt: usize,
    /// Tokens generated one at a time (decode test); 0 skips it.
    #[arg(short = 'n', long, default_value_t = 32)]
    pub n_gen: usize,
    /// Thread counts to measure, comma-separated (default: physical cores).
    #[arg(short = 't', long, value_delimiter = ',')]
    pub threads: Option<Vec<usize>>,
    /// Repetitions of each test.
    #[arg(short = 'r', long, default_value_t = 3)]
    pub reps: usize,
    /// Also measure this many sequences evaluated together (their prompts in one forward
    /// pass, then one token of each per step), next to one sequence: aggregate tok/s and the
    /// ratio. Not llama-bench's `-b` (its prompt-processing batch size).
    #[arg(short = 'b', long, default_value_t = 1)]
    pub batch_size: usize,
    /// Run both tests after a context of this many tokens already in the cache (llama-bench's
    /// `-d`): attention then reads that many cached keys and values per token, which is where
    /// the KV cache type matters. The cache is filled with pseudo-random keys and values
    /// (attention costs the same whatever they are), not by a prefill.
    #[arg(short = 'd', long, default_value_t = 0)]
    pub ctx_depth: usize,
    /// MiB streamed by each sample of the memory read bandwidth, taken between the decode
    /// tokens of every repetition (one per 8 tokens, one more at the end) so that decode's
    /// share of it compares the same moments (0 skips it).
    #[arg(long, default_value_t = 1024)]
    pub bw_mib: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// After the tests, time each part of a token (ternary layers, head, attention, norms,
    /// ...) over one more prefill and decode run per thread count, against the bytes each
    /// part reads and the measured read bandwidth. Not with --json.
    #[arg(long, conflicts_with = "json")]
    pub profile: bool,
    #[command(flatten)]
    pub kernel: KernelArgs,
    #[command(flatten)]
    pub kv: KvArgs,
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
    /// Chat: the prompt is a user turn in the model's chat format (tokenizer.chat_template);
    /// without --prompt, read one user turn per line from stdin.
    #[arg(long, conflicts_with = "prompt_tokens")]
    pub chat: bool,
    /// System message for --chat.
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    /// Print special tokens (<|eot_id|>, ...) in the output instead of hiding them.
    #[arg(long)]
    pub show_special: bool,
    /// Tokens to generate after the prompt.
    #[arg(long, short = 'n', default_value_t = 64)]
    pub max_tokens: usize,
    /// Teacher forcing (comma-separated ids): after the prompt, decode step i is fed id i
    /// instead of the sampled token, end-of-text or not. Exactly that many decode steps run,
    /// then generation stops; --max-tokens is ignored. With --logits-out the array has
    /// prompt + forced rows: row i holds the logits after position i.
    #[arg(long, value_delimiter = ',', conflicts_with = "chat")]
    pub force_tokens: Option<Vec<u32>>,
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
    /// Worker threads (default: physical cores).
    #[arg(long, short)]
    pub threads: Option<usize>,
    /// Generate this many independent sequences of the prompt together (each with its own
    /// cache and sampler seed): their prompts in one forward pass, then one token of each per
    /// step, sharing every weight read; outputs are printed at the end.
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Context length, capped by the model's.
    #[arg(long)]
    pub ctx: Option<usize>,
    #[command(flatten)]
    pub kv: KvArgs,
    /// Write the logits of every evaluated position as a float32 .npy of shape
    /// [n_positions, n_vocab].
    #[arg(long)]
    pub logits_out: Option<PathBuf>,
}
