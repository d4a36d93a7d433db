//! The harness's own Python: a venv under `target/venv` with the pinned requirements of
//! targets.toml (numpy for the reference, zig and cargo-zigbuild for the zigbuild
//! targets). A fresh Debian's system Python refuses `pip install` (PEP 668), and a venv
//! leaves the system alone.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use crate::setup::{run, Check};

pub fn dir() -> PathBuf {
    crate::project_root().join("target/venv")
}

pub fn python() -> PathBuf {
    dir().join("bin/python")
}

/// PATH with the venv's bin first: `cargo zigbuild` and zig's `python3 -m ziglang` are
/// found there.
pub fn path_env() -> OsString {
    let mut dirs = vec![dir().join("bin")];
    if let Some(p) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

/// name -> version of what the venv has.
fn frozen() -> BTreeMap<String, String> {
    let Ok(o) = Command::new(python())
        .args(["-m", "pip", "freeze", "--all"])
        .output()
    else {
        return BTreeMap::new();
    };
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_once("=="))
        .map(|(n, v)| (normalize(n), v.trim().to_string()))
        .collect()
}

fn normalize(name: &str) -> String {
    name.trim().to_lowercase().replace('_', "-")
}

fn missing(reqs: &[String]) -> Vec<String> {
    let have = frozen();
    reqs.iter()
        .filter(|r| {
            let (n, v) = r.split_once("==").unwrap_or((r, ""));
            have.get(&normalize(n))
                .is_none_or(|got| !v.is_empty() && got != v)
        })
        .cloned()
        .collect()
}

pub fn check(reqs: &[String]) -> Check {
    let miss = if python().exists() {
        missing(reqs)
    } else {
        reqs.to_vec()
    };
    Check {
        what: format!("python venv {} with {}", dir().display(), reqs.join(", ")),
        ok: miss.is_empty(),
        fix: if python().exists() {
            format!("cargo xtask setup (installs {})", miss.join(" "))
        } else {
            "cargo xtask setup (creates the venv; needs apt package python3-venv)".into()
        },
    }
}

pub fn check_zig() -> Check {
    let ok = dir().join("bin/cargo-zigbuild").is_file()
        && Command::new(python())
            .args(["-m", "ziglang", "version"])
            .output()
            .is_ok_and(|o| o.status.success());
    Check {
        what: "zig + cargo-zigbuild (harness venv)".into(),
        ok,
        fix: "cargo xtask setup".into(),
    }
}

/// Creates the venv if needed and installs the missing pinned requirements.
pub fn ensure(reqs: &[String]) -> Result<(), String> {
    if !python().exists() {
        let d = dir();
        run("python3", &["-m", "venv", &d.to_string_lossy()]).map_err(|e| {
            format!("{e}\nthe harness's venv needs Python's venv module: run `apt-get install python3-venv`, then `cargo xtask setup`")
        })?;
    }
    let miss = missing(reqs);
    if miss.is_empty() {
        return Ok(());
    }
    let py = python();
    let mut args = vec![
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ];
    args.extend(miss.iter().map(String::as_str));
    run(&py.to_string_lossy(), &args)
}
