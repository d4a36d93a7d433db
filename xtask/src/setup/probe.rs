//! The proof that a target is ready: a trivial program, built exactly as the target's
//! binaries are (linker, rustflags, build-std, zig), linked and run under the target's
//! emulator on its first profile. A missing libc6-dev-*-cross shows up here, not in the
//! middle of a matrix run.

use std::path::PathBuf;

use xshell::Shell;

use super::Check;
use crate::targets::{Matrix, Target};

const MANIFEST: &str = "[package]\nname = \"probe\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n[workspace]\n\n[profile.release]\npanic = \"abort\"\n";
const MAIN: &str = "fn main() {\n    let v: Vec<u64> = (1..=10).collect();\n    println!(\"probe ok {}\", v.iter().sum::<u64>());\n}\n";

fn dir() -> PathBuf {
    crate::project_root().join("target/xtask/probe")
}

/// Debian's package holding the C start files (`crti.o`, `Scrt1.o`) for a gnu triple.
fn libc_dev_package(t: &Target) -> Option<&'static str> {
    if !t.triple.contains("-linux-gnu") {
        return None;
    }
    Some(match t.arch() {
        "x86_64" => "libc6-dev",
        "aarch64" => "libc6-dev-arm64-cross",
        "armv7" => "libc6-dev-armhf-cross",
        "riscv64" => "libc6-dev-riscv64-cross",
        _ => return None,
    })
}

fn build(t: &Target) -> Result<PathBuf, String> {
    let d = dir();
    std::fs::create_dir_all(d.join("src")).map_err(|e| format!("{}: {e}", d.display()))?;
    std::fs::write(d.join("Cargo.toml"), MANIFEST).map_err(|e| e.to_string())?;
    std::fs::write(d.join("src/main.rs"), MAIN).map_err(|e| e.to_string())?;
    let sh = Shell::new().map_err(|e| e.to_string())?;
    sh.change_dir(&d);
    let out = crate::pipeline::build::cargo(&sh, t, "build")
        .args(["--release", "--quiet"])
        .env("CARGO_TARGET_DIR", d.join("target"))
        .quiet()
        .ignore_status()
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = tail[tail.len().saturating_sub(6)..].join(" | ");
        let hint = match libc_dev_package(t) {
            Some(pkg) if err.contains("crt") || err.contains("cannot find -lc") => format!(
                "; the C start files are missing: apt package {pkg} (add it to the target's setup.apt in targets.toml)"
            ),
            _ => String::new(),
        };
        return Err(format!("linking a trivial program failed{hint}: {tail}"));
    }
    Ok(d.join("target")
        .join(&t.triple)
        .join("release")
        .join("probe"))
}

/// A bare-metal target has no trivial program (its start-up code is the runtime crate):
/// its proof is the image itself, booted to list its kernels on the fixture.
pub fn prove(m: &Matrix, t: &Target) -> Check {
    let bare = t.is_bare_metal();
    let what = if t.run == "none" {
        "probe: a trivial program links (build only)".to_string()
    } else if bare {
        format!(
            "probe: bitnet-bare builds, boots and lists its kernels ({})",
            t.run
        )
    } else {
        format!("probe: a trivial program links and runs ({})", t.run)
    };
    let fail = |why: String| Check {
        what: what.clone(),
        ok: false,
        fix: why,
    };
    let built = if bare {
        Shell::new()
            .map_err(|e| e.to_string())
            .and_then(|sh| crate::pipeline::build::binary(&sh, t, None))
    } else {
        build(t)
    };
    let bin = match built {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    if t.run == "none" {
        return Check {
            what,
            ok: true,
            fix: String::new(),
        };
    }
    let profile = t.profiles.first().and_then(|p| m.profiles.get(p));
    let mut c = match profile {
        Some(p) => crate::pipeline::emulate::command(&bin, t, p),
        None => crate::pipeline::emulate::plain(&bin, t),
    };
    let expected = if bare {
        let model = crate::project_root().join("fixtures/tiny-bitnet-tq2_0.gguf");
        c.args(["info", "--json", "--model"]).arg(model);
        "\"available\""
    } else {
        "probe ok 55"
    };
    let limit = std::time::Duration::from_secs(60);
    match crate::pipeline::emulate::run(c, limit) {
        Ok(o) if o.success() && o.stdout.contains(expected) => Check {
            what,
            ok: true,
            fix: String::new(),
        },
        Ok(o) => fail(o.describe("the probe", limit)),
        Err(e) => fail(e),
    }
}
