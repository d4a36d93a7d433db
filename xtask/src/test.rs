//! `cargo xtask test`: everything CI proves on the host. Formatting, the workspace tests,
//! the malformed-file tests against the release binary (panic = "abort"), and the
//! independent numpy reference against the engine's logits and the committed goldens.

use xshell::cmd;

use crate::flags::TestArgs;

/// What the harness tests build: the host, the static +dotprod aarch64 binary whose
/// start-up check they exercise and whose dotprod kernel they corrupt under QEMU, and the
/// bare-metal RISC-V image whose rvv kernel they corrupt under qemu-system.
const TEST_TARGETS: [&str; 3] = [
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-musl",
    "riscv64gc-unknown-none-elf",
];

pub fn run(ctx: &crate::ctx::Ctx, a: &TestArgs) -> Result<(), String> {
    let sh = &ctx.sh;
    let targets = ctx.matrix.select(&TEST_TARGETS.map(String::from))?;
    crate::setup::setup(&ctx.matrix, &targets)?;
    step("format", cmd!(sh, "cargo fmt --all --check"))
        .map_err(|_| "code is not formatted: run `cargo fmt --all`".to_string())?;
    step("tests", cmd!(sh, "cargo test --workspace --quiet"))?;
    step(
        "build (release)",
        cmd!(sh, "cargo build --release --quiet -p bitnet-edge"),
    )?;
    let bin = ctx.root.join("target/release/bitnet-infer");
    step(
        "malformed files, release binary (panic = abort)",
        cmd!(sh, "cargo test --quiet -p bitnet-edge --test cli malformed")
            .env("BITNET_INFER_BIN", &bin),
    )?;
    if a.no_reference {
        return Ok(());
    }
    let py = crate::venv::python();
    step(
        "numpy reference vs the engine",
        cmd!(sh, "{py} tools/reference/check.py --bin {bin}"),
    )?;
    step(
        "numpy goldens reproduce",
        cmd!(sh, "{py} tools/reference/golden.py --bin {bin} --check"),
    )
}

fn step(name: &str, c: xshell::Cmd<'_>) -> Result<(), String> {
    eprintln!("== {name}: {c}");
    c.run().map_err(|e| format!("{name} failed: {e}"))
}
