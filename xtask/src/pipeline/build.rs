//! Cross-building `bitnet-infer` (and the kernel test binary) for one target.

use std::path::{Path, PathBuf};

use xshell::{cmd, Shell};

use crate::targets::{Builder, Target};

/// Cargo invocation with the target's linker, rustflags and environment; never touches
/// the global RUSTFLAGS (it would silently replace every config rustflag). zigbuild finds
/// zig and cargo-zigbuild in the harness's venv.
pub fn cargo<'a>(sh: &'a Shell, t: &Target, sub: &str) -> xshell::Cmd<'a> {
    let triple = &t.triple;
    let mut c = match t.builder {
        Builder::Cargo => cmd!(sh, "cargo {sub} --target {triple}"),
        // `cargo zigbuild` only builds; `cargo-zigbuild test` runs cargo test with zig.
        Builder::Zigbuild => {
            let zb = crate::venv::dir().join("bin/cargo-zigbuild");
            let sub = if sub == "build" { "zigbuild" } else { sub };
            cmd!(sh, "{zb} {sub} --target {triple}")
        }
    }
    .env("PATH", crate::venv::path_env());
    if let Some(linker) = &t.linker {
        c = c.env(t.cargo_env("LINKER"), linker);
    }
    if !t.rustflags.is_empty() {
        c = c.env(t.cargo_env("RUSTFLAGS"), t.rustflags.join(" "));
    }
    if t.build_std {
        // Test binaries unwind (libtest reports a failed assertion and goes on).
        let crates = if sub == "test" {
            "std,panic_unwind,test"
        } else {
            "std,panic_abort"
        };
        c = c
            .env("RUSTC_BOOTSTRAP", "1")
            .arg(format!("-Zbuild-std={crates}"));
    }
    for (k, v) in &t.env {
        c = c.env(k, v);
    }
    c
}

/// Where the harness-profile binary of `t` lands.
fn binary_path(target_dir: &Path, t: &Target) -> PathBuf {
    target_dir
        .join(&t.triple)
        .join("harness")
        .join("bitnet-infer")
}

/// Builds the harness-profile binary; returns its path. A fault-injection build (tests
/// of the harness itself) goes to its own target directory so it never replaces the
/// real binary.
pub fn binary(sh: &Shell, t: &Target, fault_injection: bool) -> Result<PathBuf, String> {
    let mut target_dir = crate::project_root().join("target");
    let mut c = cargo(sh, t, "build")
        .args([
            "--quiet",
            "--profile",
            "harness",
            "-p",
            "bitnet-edge",
            "--bin",
            "bitnet-infer",
        ])
        .quiet();
    if fault_injection {
        target_dir = target_dir.join("fault-injection");
        c = c
            .args(["--features", "bitnet-edge/fault-injection"])
            .env("CARGO_TARGET_DIR", &target_dir);
    }
    c.run()
        .map_err(|e| format!("{}: build failed: {e}", t.triple))?;
    let path = binary_path(&target_dir, t);
    if !path.exists() {
        return Err(format!(
            "{}: build produced no {}",
            t.triple,
            path.display()
        ));
    }
    Ok(path)
}

/// Builds the library's unit-test binary (the kernel exactness tests) with the target's
/// own flags, so a `+zbb` build's kernels are tested as compiled (zigbuild: `cargo
/// zigbuild test`, std built from source with unwinding).
pub fn kernel_tests(sh: &Shell, t: &Target) -> Result<PathBuf, String> {
    let out = cargo(sh, t, "test")
        .args([
            "--no-run",
            "--message-format=json",
            "-p",
            "bitnet-edge",
            "--lib",
        ])
        .quiet()
        .ignore_stderr()
        .read()
        .map_err(|e| format!("{}: building the kernel tests failed: {e}", t.triple))?;
    for line in out.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] == "compiler-artifact" && v["profile"]["test"] == true {
            if let Some(exe) = v["executable"].as_str() {
                return Ok(PathBuf::from(exe));
            }
        }
    }
    Err(format!("{}: cargo reported no test executable", t.triple))
}
