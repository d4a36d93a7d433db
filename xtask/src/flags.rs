//! Command-line flags of every xtask command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    about = "BitNet project tasks: cross-build, validate, measure"
)]
pub struct Xtask {
    /// The target matrix to read.
    #[arg(long, global = true, default_value = "targets.toml")]
    pub targets: PathBuf,
    /// The board profiles to read.
    #[arg(long, global = true, default_value = "qemu/profiles.toml")]
    pub profiles: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Install what the targets need: apt packages, rustup targets and components, zig.
    Setup(Select),
    /// Report per target what is installed and what is missing; changes nothing.
    Doctor(Select),
    /// Run a prompt on the host reference and on the target under every board profile,
    /// with every kernel forced in turn, and compare the logits.
    Validate(ValidateArgs),
    /// Binary size, sections, linkage and kernel symbols per target, against the budgets.
    SizeReport(SizeArgs),
    /// setup-check, build, size-report and validate every target; one table at the end.
    Matrix(MatrixArgs),
    /// Regenerate the tiny fixture models under fixtures/ (their goldens come from
    /// tools/reference/golden.py).
    Fixtures(FixturesArgs),
    /// Run the test suite: cargo tests, formatting, and the independent numpy reference.
    Test(TestArgs),
    /// Write the synthetic 2B4T-shape benchmark model under target/bench/.
    BenchModel(BenchModelArgs),
    /// Write a synthetic 2B4T-shape Hugging Face checkpoint under target/bench/ and time
    /// `bitnet-infer convert` on it (time and peak RSS).
    BenchConvert(BenchConvertArgs),
    /// The README's two commands in a fresh Debian 12 root (debootstrap + rustup): proves
    /// that the project's own files install everything. Needs root; takes a while.
    CleanRoom(CleanRoomArgs),
    /// Merge per-target `matrix --json` reports into one Markdown table (CI's last job).
    Summary(SummaryArgs),
    /// Run this engine and llama.cpp's llama-bench side by side on the same GGUF file in
    /// interleaved rounds (downloads and builds llama-bench under target/compare/ once).
    Compare(CompareArgs),
    /// Guest instructions and bytes per prefill and decode token, per target, board profile
    /// and kernel, counted by a QEMU plugin (QEMU with plugins is built under
    /// target/qemu-plugins/ once); a table, JSON, an SVG plot, and the matrix's baseline.
    Counters(CountersArgs),
    /// Run the libFuzzer targets of fuzz/ (needs nightly and cargo-fuzz), one after the
    /// other; prints executions and executions per second per target.
    Fuzz(FuzzArgs),
    /// Boot a bare-metal image under qemu-system with the given arguments as its command
    /// line (how the pipeline runs bare-metal boards); exits with the image's exit code.
    #[command(hide = true)]
    Boot(BootArgs),
}

#[derive(Args, Debug)]
pub struct BootArgs {
    /// qemu-system-riscv64, qemu-system-aarch64 or qemu-system-arm (a name on PATH or a path).
    #[arg(long)]
    pub qemu: String,
    /// The -cpu model.
    #[arg(long)]
    pub cpu: String,
    /// The image (an ELF built for a bare-metal target of targets.toml).
    #[arg(long)]
    pub image: PathBuf,
    /// The image's own arguments.
    #[arg(last = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct CountersArgs {
    #[command(flatten)]
    pub select: Select,
    /// Board profiles to count on (default: every profile of the target that runs under
    /// QEMU).
    #[arg(long, value_delimiter = ',')]
    pub cpu: Vec<String>,
    /// Models to count (default: the fixture model the matrix gates on, and one decode
    /// token of the 2B4T-shape model of `cargo xtask bench-model --arch bitnet`).
    #[arg(long)]
    pub model: Vec<PathBuf>,
    /// Write the rows as JSON here (default: target/counters/counters.json).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the plot here (default: target/counters/counters.svg).
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Put the table into README.md (between its `counters:begin`/`counters:end` marks)
    /// and the plot into qemu/counters.svg, which the README shows.
    #[arg(long)]
    pub readme: bool,
    /// Write the counted instructions per token into the baseline, the matrix's gate
    /// (commit it with the reason).
    #[arg(long, conflicts_with = "check")]
    pub save_baseline: bool,
    /// Fail when a count grew more than 3% over the baseline, as the matrix does.
    #[arg(long)]
    pub check: bool,
    /// The baseline file (default: qemu/counters-baseline.json).
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Count nothing: read the rows of an earlier run's JSON and write the table, plot,
    /// README, baseline or check from them.
    #[arg(long, conflicts_with_all = ["cpu", "model"])]
    pub from: Option<PathBuf>,
    /// Do not install missing requirements first.
    #[arg(long)]
    pub no_setup: bool,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// A GGUF file both engines load (arch `bitnet`, TQ2_0/TQ1_0 weights). Default: the
    /// synthetic 2B4T-shape model of `cargo xtask bench-model --arch bitnet`, written if
    /// missing.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Thread counts; each round runs every one.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub threads: Vec<usize>,
    /// Rounds: each runs both engines once per thread count, alternating which goes first.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Prompt tokens of the prefill test.
    #[arg(long, default_value_t = 128)]
    pub n_prompt: usize,
    /// Generated tokens of the decode test.
    #[arg(long, default_value_t = 32)]
    pub n_gen: usize,
    /// Run both tests after this many positions already in the KV cache (both engines'
    /// `-d`): attention then reads them for every token. llama-bench fills them with a
    /// prefill, this engine with pseudo-random keys and values; neither is timed.
    #[arg(long, default_value_t = 0)]
    pub depth: usize,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct FuzzArgs {
    /// Only this target (default: all; `cargo xtask fuzz --list` names them).
    #[arg(long)]
    pub target: Option<String>,
    /// Seconds per target.
    #[arg(long, default_value_t = 600)]
    pub seconds: u64,
    /// Print the targets and exit.
    #[arg(long)]
    pub list: bool,
}

#[derive(Args, Debug)]
pub struct CleanRoomArgs {
    /// Where the root is made (deleted first, and after unless --keep).
    #[arg(long, default_value = "/var/tmp/bitnet-clean-room")]
    pub dir: PathBuf,
    /// Debian mirror for debootstrap.
    #[arg(long, default_value = "http://deb.debian.org/debian")]
    pub mirror: String,
    /// Toolchain rustup installs inside; `host` is this machine's rustc version (the Rust a
    /// fresh machine of this kind comes with).
    #[arg(long, default_value = "host")]
    pub toolchain: String,
    /// Keep the root afterwards.
    #[arg(long)]
    pub keep: bool,
    /// The commit to check out (default: HEAD; uncommitted changes are never seen).
    #[arg(long, default_value = "HEAD")]
    pub rev: String,
}

#[derive(Args, Debug)]
pub struct SummaryArgs {
    /// JSON reports written by `cargo xtask matrix --json`.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Write the Markdown here (default: $GITHUB_STEP_SUMMARY, else stdout).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct Select {
    /// A triple, an architecture (x86_64, aarch64, armv7, riscv64, darwin) or `all`.
    #[arg(long, short, value_delimiter = ',', default_value = "all")]
    pub target: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// Models to evaluate (default: every fixtures/*.gguf, then every trained
    /// fixtures/<dir>/model.gguf).
    #[arg(long)]
    pub model: Vec<PathBuf>,
    /// Prompt token ids (default: the fixtures' prompt).
    #[arg(long, value_delimiter = ',')]
    pub prompt_tokens: Option<Vec<u32>>,
    /// Decode steps for models without a reference file (they are fed the host's greedy
    /// tokens); fixtures use the decode tokens of their reference.
    #[arg(long, default_value_t = 8)]
    pub decode_steps: usize,
    /// Largest allowed |logit difference| from the host scalar run and the independent
    /// reference (numpy for fixtures, transformers for trained models).
    #[arg(long, default_value_t = 1e-3)]
    pub tolerance: f32,
    /// Seconds before an emulated run is declared hung and killed.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Harness tests only: build with fault injection and perturb this kernel's output,
    /// to prove validation catches it.
    #[arg(long, hide = true)]
    pub inject_fault: Option<String>,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub select: Select,
    /// Only this board profile.
    #[arg(long)]
    pub cpu: Option<String>,
    #[command(flatten)]
    pub eval: EvalArgs,
}

#[derive(Args, Debug)]
pub struct SizeArgs {
    #[command(flatten)]
    pub select: Select,
    /// Save the report as a JSON baseline.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Print the change against a saved baseline.
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// Print a Markdown table.
    #[arg(long)]
    pub markdown: bool,
}

#[derive(Args, Debug)]
pub struct MatrixArgs {
    #[command(flatten)]
    pub select: Select,
    #[command(flatten)]
    pub eval: EvalArgs,
    /// Write the results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the results as Markdown (default when $GITHUB_STEP_SUMMARY is set: there).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Print the selected targets as JSON for a GitHub Actions strategy.matrix and exit.
    #[arg(long)]
    pub list_json: bool,
    /// Do not install missing requirements first.
    #[arg(long)]
    pub no_setup: bool,
    /// Skip the instruction-count gate (qemu/counters-baseline.json).
    #[arg(long)]
    pub no_counters: bool,
}

#[derive(Args, Debug)]
pub struct FixturesArgs {
    /// Only check that the committed files match what the generator produces.
    #[arg(long)]
    pub check: bool,
}

#[derive(Args, Debug)]
pub struct BenchModelArgs {
    /// Architecture written into the file: `bitnet-b1.58` (bitnet.cpp's name for 2B4T) or
    /// `bitnet` (upstream llama.cpp's, which it loads with TQ2_0/TQ1_0 weights).
    #[arg(long, default_value = "bitnet-b1.58", value_parser = ["bitnet-b1.58", "bitnet"])]
    pub arch: String,
    /// Ternary weight type.
    #[arg(long, default_value = "tq2_0", value_parser = ["i2_s", "tq2_0", "tq1_0"])]
    pub weights: String,
    /// Type of the tied embedding / head.
    #[arg(long, default_value = "f16", value_parser = ["f16", "q8_0"])]
    pub head: String,
    /// Rewrite the file even if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct BenchConvertArgs {
    /// Checkpoint format: bf16 master weights in two shards (as the -bf16 repository), or
    /// packed uint8 codes with weight_scale (as microsoft/bitnet-b1.58-2B-4T).
    #[arg(long, default_value = "bf16", value_parser = ["bf16", "packed"])]
    pub form: String,
    /// Ternary type of the converted file.
    #[arg(long, default_value = "i2_s", value_parser = ["i2_s", "tq2_0", "tq1_0"])]
    pub r#type: String,
    /// Rewrite the checkpoint even if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct TestArgs {
    /// Skip the numpy reference check (no Python needed).
    #[arg(long)]
    pub no_reference: bool,
}
