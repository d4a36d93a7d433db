//! `cargo xtask clean-room`: the README's two commands on a machine that has nothing but
//! Rust. A fresh Debian 12 root (debootstrap, minbase), rustup inside it, a clone of this
//! repository's HEAD, then `cargo xtask matrix` and `cargo xtask test` exactly as a new
//! user runs them; each step's wall time and result are written to
//! `target/clean-room/report.txt`. Needs root (chroot). Not part of `.ci/run`: it
//! downloads a distribution and builds everything cold.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::flags::CleanRoomArgs;

/// rustup's own installer, from the server `rustup` itself downloads toolchains from.
const RUSTUP_INIT: &str =
    "https://static.rust-lang.org/rustup/dist/x86_64-unknown-linux-gnu/rustup-init";

fn sh(cmd: &str) -> Result<(), String> {
    println!("+ {cmd}");
    let s = Command::new("sh")
        .args(["-c", cmd])
        .status()
        .map_err(|e| e.to_string())?;
    if s.success() {
        Ok(())
    } else {
        Err(format!("`{cmd}` failed ({s})"))
    }
}

/// The machine's network settings a fresh machine here would have too: where the CA
/// bundle is (this workplace's egress proxy signs TLS with a local CA). They are the
/// network's, not the project's, like /etc/resolv.conf.
const CA_ENV: [&str; 5] = [
    "SSL_CERT_FILE",
    "CURL_CA_BUNDLE",
    "PIP_CERT",
    "REQUESTS_CA_BUNDLE",
    "GIT_SSL_CAINFO",
];

/// Runs `script` inside the root as root with a login-like environment.
fn inside(root: &Path, script: &str) -> Command {
    let mut c = Command::new("chroot");
    c.arg(root).args(["/usr/bin/env", "-i"]).args([
        "HOME=/root",
        "PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG=C.UTF-8",
        "CI=1",
        "DEBIAN_FRONTEND=noninteractive",
    ]);
    for k in CA_ENV {
        if let Ok(v) = std::env::var(k) {
            c.arg(format!("{k}={v}"));
        }
    }
    c.args(["/bin/bash", "-euo", "pipefail", "-c", script]);
    c
}

struct Mounts<'a>(&'a Path);

impl Mounts<'_> {
    fn mount(root: &Path) -> Result<Mounts<'_>, String> {
        for (what, args) in [
            ("proc", "-t proc proc"),
            ("sys", "-t sysfs sys"),
            ("dev", "--bind /dev"),
            ("dev/pts", "--bind /dev/pts"),
        ] {
            sh(&format!("mount {args} {}/{what}", root.display()))?;
        }
        Ok(Mounts(root))
    }
}

impl Drop for Mounts<'_> {
    fn drop(&mut self) {
        for what in ["dev/pts", "dev", "sys", "proc"] {
            let _ = sh(&format!("umount -l {}/{what}", self.0.display()));
        }
    }
}

/// Unmounts what a run mounted and deletes the root, refusing while anything is still
/// mounted below it: /dev is bind-mounted there, and `rm -rf` through it would delete the
/// host's device nodes.
fn remove_root(root: &Path) -> Result<(), String> {
    for m in ["dev/pts", "dev", "sys", "proc"] {
        let _ = Command::new("umount").arg("-l").arg(root.join(m)).output();
    }
    let prefix = format!("{}/", root.display());
    let mounted: Vec<String> = std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| m.starts_with(&prefix))
        .map(String::from)
        .collect();
    if !mounted.is_empty() {
        return Err(format!(
            "{}: still mounted below it: {}; unmount them, then delete it",
            root.display(),
            mounted.join(", ")
        ));
    }
    sh(&format!("rm -rf --one-file-system {}", root.display()))
}

pub fn run(a: &CleanRoomArgs) -> Result<(), String> {
    if crate::setup::stdout_of("id", &["-u"]).trim() != "0" {
        return Err("clean-room needs root (debootstrap and chroot): run it as root".into());
    }
    let project = crate::project_root();
    let out_dir = project.join("target/clean-room");
    std::fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
    let toolchain = if a.toolchain == "host" {
        crate::setup::stdout_of("rustc", &["--version"])
            .split_whitespace()
            .nth(1)
            .ok_or("rustc --version printed nothing")?
            .to_string()
    } else {
        a.toolchain.clone()
    };
    let root: PathBuf = a.dir.clone();
    if root.exists() {
        remove_root(&root)?;
    }
    let commit = crate::setup::stdout_of(
        "git",
        &[
            "-C",
            &project.to_string_lossy(),
            "rev-parse",
            "--verify",
            &a.rev,
        ],
    )
    .trim()
    .to_string();
    if commit.is_empty() {
        return Err(format!("--rev {}: not a commit of this repository", a.rev));
    }
    let mut log = format!(
        "clean-room run of {commit} at {}\n",
        crate::setup::stdout_of("date", &["-u"]).trim()
    );
    let step = |name: &str, r: Result<(), String>, t: Instant, log: &mut String| {
        let line = format!(
            "{name:<40} {:>7.0} s  {}\n",
            t.elapsed().as_secs_f64(),
            match &r {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("FAILED: {e}"),
            }
        );
        print!("== {line}");
        log.push_str(&line);
        let _ = std::fs::write(out_dir.join("report.txt"), &*log);
        r
    };
    let t = Instant::now();
    let r = (|| {
        if !crate::setup::on_path("debootstrap") {
            sh("apt-get update -qq && apt-get install -y -qq --no-install-recommends debootstrap")?;
        }
        sh(&format!(
            "debootstrap --variant=minbase bookworm {} {}",
            root.display(),
            a.mirror
        ))
    })();
    step("debootstrap bookworm (minbase)", r, t, &mut log)?;
    let t = Instant::now();
    let r = sh(&format!(
        "cp /etc/resolv.conf {0}/etc/resolv.conf && mkdir -p {0}/usr/local/share/ca-certificates && \
         (cp /usr/local/share/ca-certificates/*.crt {0}/usr/local/share/ca-certificates/ 2>/dev/null || true) && \
         git clone --quiet --no-hardlinks {1} {0}/root/bitnet && git -C {0}/root/bitnet checkout --quiet --detach {2}",
        root.display(),
        project.display(),
        commit
    ));
    step(&format!("clone the repository ({})", a.rev), r, t, &mut log)?;
    let _mounts = Mounts::mount(&root)?;
    let run_inside = |script: &str, log_name: &str| -> Result<(), String> {
        let file = std::fs::File::create(out_dir.join(log_name)).map_err(|e| e.to_string())?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        let s = inside(&root, script)
            .stdout(file)
            .stderr(err)
            .status()
            .map_err(|e| e.to_string())?;
        if s.success() {
            Ok(())
        } else {
            Err(format!("{s}; see {}", out_dir.join(log_name).display()))
        }
    };
    // "Only Rust installed": rustup needs a download tool to get itself and a C linker
    // for cargo to link anything (the README says so).
    let t = Instant::now();
    let r = run_inside(
        &format!(
            "apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates curl gcc libc6-dev git && \
             update-ca-certificates >/dev/null && \
             curl -sSf -o /tmp/rustup-init {RUSTUP_INIT} && chmod +x /tmp/rustup-init && \
             /tmp/rustup-init -y --profile minimal --default-toolchain {} && rustc --version",
            toolchain
        ),
        "rust.log",
    );
    step("install Rust (rustup) and gcc", r, t, &mut log)?;
    let t = Instant::now();
    let matrix = run_inside(
        "cd /root/bitnet && cargo xtask matrix --json target/matrix.json",
        "matrix.log",
    );
    let matrix_ok = matrix.is_ok();
    let _ = step("README command 1: cargo xtask matrix", matrix, t, &mut log);
    let t = Instant::now();
    let test = run_inside("cd /root/bitnet && cargo xtask test", "test.log");
    let test_ok = test.is_ok();
    let _ = step("README command 2: cargo xtask test", test, t, &mut log);
    let _ = std::fs::copy(
        root.join("root/bitnet/target/matrix.json"),
        out_dir.join("matrix.json"),
    );
    drop(_mounts);
    if !a.keep {
        remove_root(&root)?;
    }
    println!("report: {}", out_dir.join("report.txt").display());
    if matrix_ok && test_ok {
        Ok(())
    } else {
        Err("the clean-room run failed (see the report)".into())
    }
}
