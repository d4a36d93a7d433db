//! Cross-building `bitnet-infer` (and the kernel test binary) for one target.

use std::path::PathBuf;

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

/// A failed cargo run of target `t`, with a hint when the disk is (nearly) full.
fn failed(t: &Target, what: &str, e: xshell::Error) -> String {
    format!("{}: {what}: {e}{}", t.triple, crate::disk::full_disk_hint())
}

/// The package and binary a target ships: `bitnet-infer`, or `bitnet-bare` for a
/// bare-metal image.
fn product(t: &Target) -> (&'static str, &'static str) {
    if t.is_bare_metal() {
        ("bitnet-bare", "bitnet-bare")
    } else {
        ("bitnet-edge", "bitnet-infer")
    }
}

/// Builds the harness-profile binary; returns its path. A fault-injection build (`fault`:
/// the kernel to corrupt; tests of the harness itself) goes to its own target directory so
/// it never replaces the real binary. A bare-metal image has no environment to read at run
/// time, so the kernel's name is compiled in.
pub fn binary(sh: &Shell, t: &Target, fault: Option<&str>) -> Result<PathBuf, String> {
    let (package, bin) = product(t);
    let mut target_dir = crate::project_root().join("target");
    let mut c = cargo(sh, t, "build")
        .args([
            "--quiet",
            "--profile",
            "harness",
            "-p",
            package,
            "--bin",
            bin,
        ])
        .quiet();
    if let Some(kernel) = fault {
        target_dir = target_dir.join("fault-injection");
        c = c
            .args(["--features", &format!("{package}/fault-injection")])
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("BITNET_INJECT_FAULT", kernel);
    }
    c.run().map_err(|e| failed(t, "build failed", e))?;
    let path = target_dir.join(&t.triple).join("harness").join(bin);
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
    if t.is_bare_metal() {
        return bare_kernel_tests(sh, t);
    }
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
        .map_err(|e| failed(t, "building the kernel tests failed", e))?;
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

/// Bare metal has no libtest: the image built with the `kernel-tests` feature runs the same
/// tests with `--kernel-tests` (in its own target directory: the size budget and the
/// symbols are the real image's).
fn bare_kernel_tests(sh: &Shell, t: &Target) -> Result<PathBuf, String> {
    let target_dir = crate::project_root().join("target/kernel-tests");
    cargo(sh, t, "build")
        .args(["--quiet", "--profile", "harness", "-p", "bitnet-bare"])
        .args([
            "--bin",
            "bitnet-bare",
            "--features",
            "bitnet-bare/kernel-tests",
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .quiet()
        .run()
        .map_err(|e| failed(t, "building the kernel tests failed", e))?;
    Ok(target_dir.join(&t.triple).join("harness/bitnet-bare"))
}
