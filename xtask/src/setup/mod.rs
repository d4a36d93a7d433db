//! `cargo xtask setup` installs what the selected targets need and then proves it: for
//! each target a trivial program is linked and run under the target's emulator before the
//! target is called ready. `cargo xtask doctor` runs the same checks and changes nothing.
//!
//! Where things come from: apt (cross gcc, its libc6-dev-*-cross, qemu-user >= the
//! matrix's `qemu_min`, from bookworm-backports on Debian 12), rustup (targets,
//! components), and the harness's own Python venv (numpy, zig, cargo-zigbuild).

mod apt;
mod probe;

pub use apt::install_packages;
mod qemu;

use std::collections::BTreeSet;
use std::process::Command;

use crate::targets::{Builder, Matrix, Target};

/// rustup components every target needs: llvm-strip for the size report, rustfmt for
/// `cargo xtask test` (a minimal rustup profile has neither).
const HARNESS_COMPONENTS: [&str; 2] = ["llvm-tools", "rustfmt"];

/// One requirement of a target and whether this machine meets it; `fix` says how.
pub struct Check {
    pub what: String,
    pub ok: bool,
    pub fix: String,
}

pub(crate) fn stdout_of(program: &str, args: &[&str]) -> String {
    stdout(program, args)
}

fn stdout(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// The QEMU binaries `t` runs under: its own runner and its profiles' emulators (a
/// bare-metal target only its qemu-system: its profiles lend it their CPU models).
pub fn emulators(m: &Matrix, t: &Target) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if t.run.starts_with("qemu-") {
        out.insert(t.run.clone());
    }
    if t.is_bare_metal() {
        return out;
    }
    for p in t.profiles.iter().filter_map(|p| m.profiles.get(p)) {
        out.extend(p.qemu.clone());
    }
    out
}

/// The counting QEMU `t`'s gate runs under.
fn counting_kind(t: &Target) -> crate::counters::qemu::Kind {
    if t.is_bare_metal() {
        crate::counters::qemu::Kind::System
    } else {
        crate::counters::qemu::Kind::User
    }
}

fn needs_zig(t: &Target) -> bool {
    t.setup.zig || t.builder == Builder::Zigbuild
}

/// Everything `t` needs that can be checked without building: packages, rustup parts,
/// tools on PATH, QEMU's version.
pub fn checks(m: &Matrix, t: &Target) -> Vec<Check> {
    let mut out = build_checks(t);
    let qemus = emulators(m, t);
    for q in &qemus {
        out.push(qemu::check(q, &m.harness.qemu_min));
    }
    if !qemus.is_empty() {
        out.push(crate::counters::qemu::check(counting_kind(t)));
    }
    if let Some(prefix) = &t.ld_prefix {
        out.push(Check {
            what: format!("sysroot {prefix}"),
            ok: std::path::Path::new(prefix).join("lib").is_dir(),
            fix: "cargo xtask setup".into(),
        });
    }
    out
}

/// What building `t` needs (the size report builds and runs nothing): packages, rustup
/// parts, the linker, zig.
pub fn build_checks(t: &Target) -> Vec<Check> {
    let installed = stdout("rustup", &["target", "list", "--installed"]);
    let components = stdout("rustup", &["component", "list", "--installed"]);
    let mut out = Vec::new();
    if t.setup.rustup {
        out.push(Check {
            what: format!("rustup target {}", t.triple),
            ok: installed.lines().any(|l| l.trim() == t.triple),
            fix: format!("rustup target add {}", t.triple),
        });
    }
    for c in t
        .setup
        .components
        .iter()
        .map(String::as_str)
        .chain(HARNESS_COMPONENTS)
    {
        out.push(Check {
            what: format!("rustup component {c}"),
            ok: components.lines().any(|l| l.starts_with(c)),
            fix: format!("rustup component add {c}"),
        });
    }
    for pkg in &t.setup.apt {
        out.push(Check {
            what: format!("apt package {pkg}"),
            ok: apt::installed(pkg),
            fix: format!("apt-get install --no-install-recommends {pkg}"),
        });
    }
    if let Some(linker) = &t.linker {
        out.push(Check {
            what: format!("linker {linker}"),
            ok: on_path(linker),
            fix: "cargo xtask setup".into(),
        });
    }
    if needs_zig(t) {
        out.push(crate::venv::check_zig());
    }
    out
}

/// The harness's own needs: its apt packages and its venv (numpy).
pub fn harness_checks(m: &Matrix) -> Vec<Check> {
    let mut out: Vec<Check> = m
        .harness
        .apt
        .iter()
        .map(|pkg| Check {
            what: format!("apt package {pkg}"),
            ok: apt::installed(pkg),
            fix: format!("apt-get install --no-install-recommends {pkg}"),
        })
        .collect();
    out.push(crate::venv::check(&m.harness.python));
    out
}

/// `doctor`: every check, then the link-and-run probe per target; names what is missing.
pub fn doctor(m: &Matrix, targets: &[Target]) -> Result<(), String> {
    let mut missing = 0;
    let report = |name: &str, cs: &[Check], missing: &mut usize| {
        let bad = cs.iter().filter(|c| !c.ok).count();
        *missing += bad;
        println!(
            "{name:<34} {}",
            if bad == 0 { "ready" } else { "NOT READY" }
        );
        for c in cs {
            let fix = if c.ok {
                String::new()
            } else {
                format!("  -> {}", c.fix)
            };
            println!("    [{}] {}{fix}", if c.ok { "x" } else { " " }, c.what);
        }
    };
    report("harness", &harness_checks(m), &mut missing);
    for t in targets {
        let mut cs = checks(m, t);
        if cs.iter().all(|c| c.ok) {
            cs.push(probe::prove(m, t));
        }
        report(&t.triple, &cs, &mut missing);
    }
    if missing > 0 {
        return Err(format!(
            "{missing} requirement(s) missing: run `cargo xtask setup`"
        ));
    }
    Ok(())
}

pub(crate) fn run(program: &str, args: &[&str]) -> Result<(), String> {
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

/// Installs what `targets` (and the harness) miss, then proves each target: a trivial
/// program links and runs under its emulator. Idempotent; quiet when all is present.
pub fn setup(m: &Matrix, targets: &[Target]) -> Result<(), String> {
    let mut packages: BTreeSet<String> = m.harness.apt.iter().cloned().collect();
    packages.extend(targets.iter().flat_map(|t| t.setup.apt.iter().cloned()));
    let qemus: BTreeSet<String> = targets.iter().flat_map(|t| emulators(m, t)).collect();
    apt::install(&packages, &qemus, &m.harness.qemu_min)?;
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
        .chain(HARNESS_COMPONENTS)
        .collect();
    for c in wanted {
        if !components.lines().any(|l| l.starts_with(c)) {
            run("rustup", &["component", "add", c])?;
        }
    }
    crate::venv::ensure(&m.harness.python)?;
    // Every emulated target is gated on counts, under the counting QEMU of its kind.
    let counted: Vec<_> = targets
        .iter()
        .filter(|t| !emulators(m, t).is_empty())
        .map(counting_kind)
        .collect();
    if !counted.is_empty() {
        crate::counters::qemu::ensure(counted.contains(&crate::counters::qemu::Kind::System))?;
    }
    let mut missing: Vec<String> = harness_checks(m)
        .into_iter()
        .filter(|c| !c.ok)
        .map(|c| format!("harness: {} ({})", c.what, c.fix))
        .collect();
    for t in targets {
        let mut bad: Vec<Check> = checks(m, t).into_iter().filter(|c| !c.ok).collect();
        if bad.is_empty() {
            let p = probe::prove(m, t);
            println!(
                "{:<34} {}",
                t.triple,
                if p.ok { "ready" } else { "probe FAILED" }
            );
            if !p.ok {
                bad.push(p);
            }
        }
        missing.extend(
            bad.into_iter()
                .map(|c| format!("{}: {} ({})", t.triple, c.what, c.fix)),
        );
    }
    if !missing.is_empty() {
        return Err(format!(
            "still missing after setup:\n  {}",
            missing.join("\n  ")
        ));
    }
    println!("setup: all {} target(s) ready", targets.len());
    Ok(())
}
