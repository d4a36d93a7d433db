//! `bitnet-infer`: run a BitNet GGUF model from the command line.

mod args;
mod info;
mod run;
mod stats;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let result = match cli.command {
        Some(args::Command::Info(a)) => info::main(&a),
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
