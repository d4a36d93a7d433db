//! Debian/Ubuntu packages: what is installed, and installing what is missing, including
//! QEMU new enough to show the boards (bookworm-backports on Debian 12): qemu-user, and
//! qemu-system for the bare-metal targets.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use super::qemu::{parse_version, Version};
use super::{on_path, run, stdout};

pub fn installed(pkg: &str) -> bool {
    stdout("dpkg-query", &["-W", "-f=${Status}", pkg]).contains("install ok installed")
}

/// `VERSION_CODENAME` of /etc/os-release (`bookworm`, `noble`, ...).
fn codename() -> String {
    std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default()
}

/// The version apt would install for `pkg` (from `suite` when given).
fn candidate(pkg: &str, suite: Option<&str>) -> Option<Version> {
    let text = stdout("apt-cache", &["policy", pkg]);
    match suite {
        None => text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Candidate:"))
            .and_then(|v| parse_version(v.trim())),
        // In the version table a version line is followed by the lines of its sources.
        Some(suite) => {
            let mut last = None;
            for l in text.lines() {
                let t = l.trim().trim_start_matches("*** ");
                if t.chars().next().is_some_and(|c| c.is_ascii_digit())
                    && !t.contains("http")
                    && !t.contains('/')
                {
                    last = t.split_whitespace().next().and_then(parse_version);
                } else if t.contains(&format!(" {suite}/")) {
                    if let Some(v) = last {
                        return Some(v);
                    }
                }
            }
            None
        }
    }
}

/// The Debian mirror this machine already uses (for the backports entry).
fn debian_mirror() -> String {
    let mut texts = vec![std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in dir.flatten() {
            texts.push(std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    for text in &texts {
        for l in text.lines() {
            let uri = l.strip_prefix("URIs:").map(str::trim).or_else(|| {
                let mut w = l.strip_prefix("deb ")?.split_whitespace();
                let first = w.next()?;
                if first.starts_with('[') {
                    w.find(|x| x.starts_with("http"))
                } else {
                    Some(first)
                }
            });
            if let Some(u) = uri.filter(|u| u.ends_with("/debian") || u.ends_with("/debian/")) {
                return u.trim_end_matches('/').to_string();
            }
        }
    }
    "http://deb.debian.org/debian".to_string()
}

const BACKPORTS_FILE: &str = "/etc/apt/sources.list.d/bookworm-backports.sources";

fn add_backports(sudo: &[&str]) -> Result<(), String> {
    let text = format!(
        "# Added by `cargo xtask setup`: QEMU >= 8.1 for the board profiles.\n\
         Types: deb\nURIs: {}\nSuites: bookworm-backports\nComponents: main\n\
         Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
        debian_mirror()
    );
    println!("+ write {BACKPORTS_FILE}");
    if sudo.is_empty() {
        std::fs::write(BACKPORTS_FILE, text).map_err(|e| format!("{BACKPORTS_FILE}: {e}"))
    } else {
        let tmp = std::env::temp_dir().join("bookworm-backports.sources");
        std::fs::write(&tmp, text).map_err(|e| e.to_string())?;
        run("sudo", &["cp", &tmp.to_string_lossy(), BACKPORTS_FILE])
    }
}

/// `apt-get` as root, or through sudo; an error that says what to run otherwise.
fn apt_prefix(what: &BTreeSet<String>) -> Result<Vec<&'static str>, String> {
    if stdout("id", &["-u"]).trim() == "0" {
        return Ok(vec![]);
    }
    if on_path("sudo") {
        return Ok(vec!["sudo"]);
    }
    let list: Vec<&str> = what.iter().map(String::as_str).collect();
    Err(format!(
        "missing apt packages {0}: run as root `apt-get install --no-install-recommends {0}`, then `cargo xtask setup` again",
        list.join(" ")
    ))
}

fn apt_get(sudo: &[&str], args: &[&str]) -> Result<(), String> {
    let mut v: Vec<&str> = sudo.to_vec();
    v.push("apt-get");
    v.extend(args);
    let (prog, rest) = v.split_first().expect("non-empty");
    println!("+ {}", v.join(" "));
    let status = Command::new(prog)
        .args(rest)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("{prog}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", v.join(" ")))
    }
}

/// Installs those of `packages` that are missing (as root or through sudo); an error that
/// names the `apt-get install` to run when neither is possible.
pub fn install_packages(packages: &BTreeSet<String>) -> Result<(), String> {
    let missing: BTreeSet<String> = packages.iter().filter(|p| !installed(p)).cloned().collect();
    if missing.is_empty() {
        return Ok(());
    }
    let sudo = apt_prefix(&missing)?;
    apt_get(&sudo, &["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(missing.iter().map(String::as_str));
    apt_get(&sudo, &install)
}

/// The Debian package of a QEMU binary: the user-mode emulators are all in `qemu-user`,
/// the system emulators in `qemu-system-arm` (aarch64) and `qemu-system-misc` (riscv64).
pub fn qemu_package(emulator: &str) -> &'static str {
    match emulator {
        "qemu-system-aarch64" | "qemu-system-arm" => "qemu-system-arm",
        e if e.starts_with("qemu-system-") => "qemu-system-misc",
        _ => "qemu-user",
    }
}

/// Installs the missing `packages` and, for the `emulators` wanted, QEMU packages of at
/// least `qemu_min`: the distribution's when new enough, else bookworm-backports' on
/// Debian 12 (where plain `qemu-system-misc` also conflicts with the backports qemu-utils).
pub fn install(
    packages: &BTreeSet<String>,
    emulators: &BTreeSet<String>,
    qemu_min: &str,
) -> Result<(), String> {
    let min = parse_version(qemu_min)
        .ok_or_else(|| format!("targets.toml: qemu_min = '{qemu_min}'; expected major.minor"))?;
    let missing: BTreeSet<String> = packages.iter().filter(|p| !installed(p)).cloned().collect();
    let new_enough = |pkg: &str| {
        installed(pkg)
            && stdout("dpkg-query", &["-W", "-f=${Version}", pkg])
                .split_whitespace()
                .next()
                .and_then(parse_version)
                .is_some_and(|v| v >= min)
    };
    let qemu: BTreeSet<&str> = emulators
        .iter()
        .map(|e| qemu_package(e))
        .filter(|p| !new_enough(p))
        .collect();
    if missing.is_empty() && qemu.is_empty() {
        return Ok(());
    }
    let mut wanted = missing.clone();
    wanted.extend(qemu.iter().map(|p| p.to_string()));
    let sudo = apt_prefix(&wanted)?;
    apt_get(&sudo, &["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(missing.iter().map(String::as_str));
    if !missing.is_empty() {
        apt_get(&sudo, &install)?;
    }
    if qemu.is_empty() {
        return Ok(());
    }
    let from_distribution = qemu
        .iter()
        .all(|p| candidate(p, None).is_some_and(|v| v >= min));
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    if from_distribution && codename() != "bookworm" {
        install.extend(qemu.iter().copied());
        return apt_get(&sudo, &install);
    }
    if codename() != "bookworm" {
        return Err(format!(
            "this distribution offers qemu-user {}, older than {qemu_min} (needed for riscv_hwprobe); install QEMU >= {qemu_min} and run `cargo xtask setup` again",
            candidate("qemu-user", None).map_or("none".into(), |v| v.to_string())
        ));
    }
    if candidate("qemu-user", Some("bookworm-backports")).is_none() {
        if !Path::new(BACKPORTS_FILE).exists() {
            add_backports(&sudo)?;
        }
        apt_get(&sudo, &["update", "-qq"])?;
    }
    install.extend(["-t", "bookworm-backports"]);
    install.extend(qemu.iter().copied());
    apt_get(&sudo, &install)
}
