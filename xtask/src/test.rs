//! `cargo xtask test`: everything CI proves on the host. The workspace tests, formatting,
//! and the independent numpy reference against the engine's logits.

use xshell::{cmd, Shell};

use crate::flags::TestArgs;

/// What the harness tests build: the host, and the static +dotprod aarch64 binary whose
/// start-up check they exercise.
const TEST_TARGETS: [&str; 2] = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-musl"];

pub fn run(ctx: &crate::ctx::Ctx, a: &TestArgs) -> Result<(), String> {
    let sh = &ctx.sh;
    let targets = ctx.matrix.select(&TEST_TARGETS.map(String::from))?;
    crate::setup::setup(&targets)?;
    step("format", cmd!(sh, "cargo fmt --all --check"))
        .map_err(|_| "code is not formatted: run `cargo fmt --all`".to_string())?;
    step("tests", cmd!(sh, "cargo test --workspace --quiet"))?;
    if a.no_reference {
        return Ok(());
    }
    ensure_numpy(sh)?;
    step(
        "build",
        cmd!(sh, "cargo build --release --quiet -p bitnet-edge"),
    )?;
    let bin = crate::project_root().join("target/release/bitnet-infer");
    step(
        "numpy reference",
        cmd!(sh, "python3 tools/reference/check.py --bin {bin}"),
    )
}

fn step(name: &str, c: xshell::Cmd<'_>) -> Result<(), String> {
    eprintln!("== {name}: {c}");
    c.run().map_err(|e| format!("{name} failed: {e}"))
}

/// The reference check needs numpy; install it from PyPI when it is missing.
fn ensure_numpy(sh: &Shell) -> Result<(), String> {
    if cmd!(sh, "python3 -c 'import numpy'")
        .quiet()
        .ignore_stderr()
        .run()
        .is_ok()
    {
        return Ok(());
    }
    step(
        "install numpy",
        cmd!(sh, "python3 -m pip install --quiet numpy"),
    )
    .map_err(|e| {
        format!("{e}\nnumpy is needed for the reference check: run `python3 -m pip install numpy`")
    })
}
