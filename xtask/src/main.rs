//! `cargo xtask`: the project's cross-build, validation, fixture and test commands.
//! One module per command; `flags.rs` declares the command line; `targets.toml` and
//! `qemu/profiles.toml` say what to build and where it runs.

mod bench_model;
mod build;
mod ctx;
mod emulate;
mod fixtures;
mod flags;
mod matrix;
mod setup;
mod size;
mod targets;
mod test;
mod validate;

use std::process::ExitCode;

use clap::Parser;

use flags::Command;

fn main() -> ExitCode {
    let x = flags::Xtask::parse();
    let result = match &x.command {
        Command::Fixtures(a) => fixtures::run(a),
        Command::BenchModel(a) => bench_model::run(a),
        command => ctx::Ctx::new(&x).and_then(|ctx| {
            let select = |s: &flags::Select| ctx.matrix.select(&s.target);
            match command {
                Command::Setup(s) => setup::setup(&select(s)?),
                Command::Doctor(s) => setup::doctor(&select(s)?),
                Command::Validate(a) => validate::run(&ctx, a),
                Command::SizeReport(a) => size::run(&ctx, a),
                Command::Matrix(a) => matrix::run(&ctx, a),
                Command::Test(a) => test::run(&ctx, a),
                Command::Fixtures(_) | Command::BenchModel(_) => {
                    unreachable!("handled above")
                }
            }
        }),
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
