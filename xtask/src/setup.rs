//! `cargo xtask setup` installs what the selected targets need (apt packages, rustup
//! targets and components, zig); `cargo xtask doctor` only reports what is missing.
//! Both read the needs from `targets.toml`.

use std::collections::BTreeSet;
use std::process::Command;

use crate::targets::{Builder, Target};

/// One requirement of a target and whether this machine meets it.
pub struct Check {
    pub what: String,
    pub ok: bool,
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn stdout(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

fn apt_installed(pkg: &str) -> bool {
    stdout("dpkg-query", &["-W", "-f=${Status}", pkg]).contains("install ok installed")
}

fn zig_ready() -> bool {
    on_path("cargo-zigbuild")
        && (on_path("zig") || succeeds("python3", &["-m", "ziglang", "version"]))
}

/// Everything `t` needs, checked without changing anything.
pub fn checks(t: &Target) -> Vec<Check> {
    let installed = stdout("rustup", &["target", "list", "--installed"]);
    let components = stdout("rustup", &["component", "list", "--installed"]);
    let mut out = Vec::new();
    if t.setup.rustup {
        out.push(Check {
            what: format!("rustup target {}", t.triple),
            ok: installed.lines().any(|l| l.trim() == t.triple),
        });
    }
    for c in t
        .setup
        .components
        .iter()
        .map(String::as_str)
        .chain(["llvm-tools"])
    {
        out.push(Check {
            what: format!("rustup component {c}"),
            ok: components.lines().any(|l| l.starts_with(c)),
        });
    }
    for pkg in &t.setup.apt {
        out.push(Check {
            what: format!("apt package {pkg}"),
            ok: apt_installed(pkg),
        });
    }
    if let Some(linker) = &t.linker {
        out.push(Check {
            what: format!("linker {linker}"),
            ok: on_path(linker),
        });
    }
    if t.run.starts_with("qemu-") {
        out.push(Check {
            what: format!("emulator {}", t.run),
            ok: on_path(&t.run),
        });
    }
    if let Some(prefix) = &t.ld_prefix {
        out.push(Check {
            what: format!("sysroot {prefix}"),
            ok: std::path::Path::new(prefix).join("lib").is_dir(),
        });
    }
    if t.setup.zig || t.builder == Builder::Zigbuild {
        out.push(Check {
            what: "zig + cargo-zigbuild".into(),
            ok: zig_ready(),
        });
    }
    out
}

pub fn doctor(targets: &[Target]) -> Result<(), String> {
    let mut missing = 0;
    for t in targets {
        let cs = checks(t);
        let bad: Vec<&Check> = cs.iter().filter(|c| !c.ok).collect();
        missing += bad.len();
        let verdict = if bad.is_empty() { "ready" } else { "NOT READY" };
        println!("{:<34} {verdict}", t.triple);
        for c in &cs {
            println!("    [{}] {}", if c.ok { "x" } else { " " }, c.what);
        }
    }
    if missing > 0 {
        return Err(format!(
            "{missing} requirement(s) missing: run `cargo xtask setup`"
        ));
    }
    Ok(())
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    println!("+ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .status()
        .map_err(|e| format!("{program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed ({status})", args.join(" ")))
    }
}

/// Installs what `targets` miss; prints each step, and nothing when all is present.
pub fn setup(targets: &[Target]) -> Result<(), String> {
    let apt: BTreeSet<&str> = targets
        .iter()
        .flat_map(|t| &t.setup.apt)
        .map(String::as_str)
        .filter(|p| !apt_installed(p))
        .collect();
    if !apt.is_empty() {
        let root = stdout("id", &["-u"]).trim() == "0";
        let (prog, mut pre): (&str, Vec<&str>) = if root {
            ("apt-get", vec![])
        } else {
            ("sudo", vec!["apt-get"])
        };
        if !root && !on_path("sudo") {
            return Err(format!(
                "missing apt packages {}: run as root `apt-get install {}`",
                apt.iter().copied().collect::<Vec<_>>().join(" "),
                apt.iter().copied().collect::<Vec<_>>().join(" ")
            ));
        }
        let mut update = pre.clone();
        update.extend(["update", "-qq"]);
        run(prog, &update)?;
        pre.extend(["install", "-y", "-qq", "--no-install-recommends"]);
        pre.extend(apt.iter().copied());
        run(prog, &pre)?;
    }
    let installed = stdout("rustup", &["target", "list", "--installed"]);
    for t in targets.iter().filter(|t| t.setup.rustup) {
        if !installed.lines().any(|l| l.trim() == t.triple) {
            run("rustup", &["target", "add", &t.triple])?;
        }
    }
    let components = stdout("rustup", &["component", "list", "--installed"]);
    let wanted: BTreeSet<&str> = targets
        .iter()
        .flat_map(|t| &t.setup.components)
        .map(String::as_str)
        .chain(["llvm-tools"])
        .collect();
    for c in wanted {
        if !components.lines().any(|l| l.starts_with(c)) {
            run("rustup", &["component", "add", c])?;
        }
    }
    if targets
        .iter()
        .any(|t| t.setup.zig || t.builder == Builder::Zigbuild)
        && !zig_ready()
    {
        run(
            "python3",
            &[
                "-m",
                "pip",
                "install",
                "--quiet",
                "ziglang",
                "cargo-zigbuild",
            ],
        )?;
        if !zig_ready() {
            return Err(
                "cargo-zigbuild installed but not on PATH: add pip's script directory to PATH"
                    .into(),
            );
        }
    }
    let missing: Vec<String> = targets
        .iter()
        .flat_map(|t| {
            checks(t)
                .into_iter()
                .filter(|c| !c.ok)
                .map(|c| format!("{}: {}", t.triple, c.what))
        })
        .collect();
    if !missing.is_empty() {
        return Err(format!("still missing after setup: {}", missing.join("; ")));
    }
    println!("setup: all {} target(s) ready", targets.len());
    Ok(())
}
