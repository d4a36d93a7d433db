//! `cargo xtask`: the project's build, fixture and validation commands. One module per
//! command; `flags.rs` declares the command line.

mod fixtures;
mod flags;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let result = match flags::Xtask::parse().command {
        flags::Command::Fixtures(a) => fixtures::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask lives one level below it).
pub fn project_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_path_buf()
}
