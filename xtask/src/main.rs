//! `cargo xtask`: the project's cross-build, validation, fixture and test commands.
//!
//! One module per command (`matrix`, `validate`, `size_report`, `setup`, `test`, ...),
//! all thin, on top of one pipeline: `pipeline` (build -> run -> compare), `checks` (pure
//! judgements of logits, sizes, symbols and test counts), `report` (statuses, failure
//! kinds, tables, JSON). Dependencies point one way: commands -> pipeline -> checks ->
//! report. `fuzz` only drives the libFuzzer targets of `fuzz/`. `flags.rs` declares the
//! command line; `targets.toml` and `qemu/profiles.toml` say what to build and where it
//! runs.

mod bench_convert;
mod bench_model;
mod boot;
mod checks;
mod clean_room;
mod compare;
mod counters;
mod ctx;
mod disk;
mod fixtures;
mod flags;
mod fuzz;
mod matrix;
mod pipeline;
mod progress;
mod report;
mod setup;
mod size_report;
mod summary;
mod targets;
mod test;
mod validate;
mod venv;

use std::process::ExitCode;

use clap::Parser;

use flags::Command;

fn main() -> ExitCode {
    let x = flags::Xtask::parse();
    let result = match &x.command {
        Command::Fixtures(a) => fixtures::run(a),
        Command::BenchModel(a) => bench_model::run(a),
        Command::BenchConvert(a) => bench_convert::run(a),
        Command::CleanRoom(a) => clean_room::run(a),
        Command::Summary(a) => summary::run(a),
        Command::Fuzz(a) => fuzz::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Boot(a) => boot::run(a),
        command => ctx::Ctx::new(&x).and_then(|ctx| {
            let select = |s: &flags::Select| ctx.matrix.select(&s.target);
            match command {
                Command::Setup(s) => setup::setup(&ctx.matrix, &select(s)?),
                Command::Doctor(s) => setup::doctor(&ctx.matrix, &select(s)?),
                Command::Validate(a) => validate::run(&ctx, a),
                Command::SizeReport(a) => size_report::run(&ctx, a),
                Command::Matrix(a) => matrix::run(&ctx, a),
                Command::Test(a) => test::run(&ctx, a),
                Command::Counters(a) => counters::run(&ctx, a),
                Command::Fixtures(_)
                | Command::BenchModel(_)
                | Command::BenchConvert(_)
                | Command::CleanRoom(_)
                | Command::Summary(_)
                | Command::Fuzz(_)
                | Command::Compare(_)
                | Command::Boot(_) => {
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
