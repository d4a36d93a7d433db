//! `bitnet-infer`: run a BitNet GGUF model from the command line.

mod args;
mod bench;
mod chat;
mod convert;
mod cpu_check;
mod errors;
#[cfg(target_os = "linux")]
mod hugealloc;
mod info;
mod membw;
mod page_cache;
mod perplexity;
mod profile;
mod run;
mod setup;
mod stats;
mod tokenize;

use std::process::ExitCode;

use clap::Parser;

#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOC: hugealloc::HugePageAlloc = hugealloc::HugePageAlloc;

fn main() -> ExitCode {
    // Before anything else: the compiler may use any compiled-in target feature anywhere.
    cpu_check::ensure_target_features();
    let cli = args::Cli::parse();
    let result = match cli.command {
        Some(args::Command::Info(a)) => info::main(&a),
        Some(args::Command::Bench(a)) => bench::main(&a),
        Some(args::Command::Tokenize(a)) => tokenize::main(&a),
        Some(args::Command::Perplexity(a)) => perplexity::main(&a),
        Some(args::Command::Convert(a)) => convert::main(&a),
        Some(args::Command::Membw(a)) => membw::main(&a),
        Some(args::Command::PageCache(a)) => page_cache::main(&a),
        None => run::main(&cli.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
