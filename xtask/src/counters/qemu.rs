//! The QEMU that counts: Debian's packages of QEMU 9 and later ship qemu-user statically
//! linked, and a static QEMU cannot load a TCG plugin (`-plugin` is not even an option).
//! So the linux-user emulators are built here, with plugins enabled, from Debian's QEMU
//! source (the `.orig` tarball of the bookworm-backports package the matrix runs, pinned
//! by sha256), under `target/qemu-plugins/` once; later runs reuse them. The system
//! emulators that boot the bare-metal images are a second build from the same source
//! (~5 minutes on two cores), made when a bare-metal target is set up. The plugin itself is the workspace crate `qemu/counters` (GPL-2.0-or-later, kept
//! apart from the engine).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::compare::llama_cpp::sha256_of;
use crate::setup::{install_packages, on_path, run, Check};

/// Debian's source of the qemu-user the matrix installs (1:10.0.2+ds-2+deb13u1~bpo12+1).
pub const VERSION: &str = "10.0.2";
const TARBALL: &str = "qemu_10.0.2+ds.orig.tar.xz";
const URL: &str = "http://deb.debian.org/debian/pool/main/q/qemu/qemu_10.0.2+ds.orig.tar.xz";
const SHA256: &str = "0901da33844a331bf8b3602b9c1fbd178e60b737c8e3ade678255bd090c9b9f1";
/// The Debian tarball drops QEMU's bundled meson wheel; QEMU 10.0 asks for at least 1.5.
const MESON: [&str; 2] = ["meson==1.5.0", "pycotap==1.3.1"];
/// Build dependencies of a linux-user-only QEMU (a C compiler aside).
const PACKAGES: [&str; 5] = [
    "ninja-build",
    "pkg-config",
    "libglib2.0-dev",
    "python3-venv",
    "xz-utils",
];
/// What the system emulators need besides: the `virt` boards build their device trees
/// with libfdt (QEMU's own copy is a git subproject, absent from the tarball).
const SYSTEM_PACKAGES: [&str; 1] = ["libfdt-dev"];

/// Which emulators a build makes.
#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    /// `qemu-<arch>`: every emulator the matrix's Linux profiles name.
    User,
    /// `qemu-system-<arch>`: the machines the bare-metal targets boot.
    System,
}

impl Kind {
    fn arches(self) -> &'static [&'static str] {
        match self {
            Kind::User => &["aarch64", "arm", "riscv64", "x86_64"],
            Kind::System => &["aarch64", "arm", "riscv64"],
        }
    }

    fn emulators(self) -> Vec<String> {
        let prefix = match self {
            Kind::User => "qemu-",
            Kind::System => "qemu-system-",
        };
        self.arches()
            .iter()
            .map(|a| format!("{prefix}{a}"))
            .collect()
    }

    fn built(self) -> bool {
        self.emulators().iter().all(|e| emulator(e).is_file())
    }

    /// `configure`'s target list and options: user mode as Debian builds it, plus plugins;
    /// system mode with TCG, plugins and libfdt and every optional feature off (no display,
    /// network or block backends: the images use a UART and semihosting).
    fn configure(self) -> (String, &'static [&'static str]) {
        let (suffix, options): (&str, &[&str]) = match self {
            Kind::User => ("linux-user", &["--disable-system", "--enable-linux-user"]),
            Kind::System => (
                "softmmu",
                &[
                    "--disable-user",
                    "--disable-linux-user",
                    "--without-default-features",
                    "--enable-tcg",
                    "--enable-fdt=system",
                ],
            ),
        };
        let list = self
            .arches()
            .iter()
            .map(|a| format!("{a}-{suffix}"))
            .collect::<Vec<_>>()
            .join(",");
        (list, options)
    }
}

pub fn dir() -> PathBuf {
    crate::project_root().join("target/qemu-plugins")
}

/// An emulator of the counting builds, by name (`qemu-aarch64`, `qemu-system-riscv64`).
pub fn emulator(name: &str) -> PathBuf {
    dir().join("bin").join(name)
}

/// The plugin library `cargo build --release -p qemu-counters` makes.
pub fn plugin() -> PathBuf {
    crate::project_root().join("target/release/libqemu_counters.so")
}

/// Whether the counting QEMU of `kind` and the plugin are built and load each other.
pub fn check(kind: Kind) -> Check {
    let what = match kind {
        Kind::User => "qemu-user",
        Kind::System => "qemu-system",
    };
    Check {
        what: format!(
            "{what} {VERSION} with TCG plugins and the counting plugin ({})",
            dir().display()
        ),
        ok: kind.built() && works(),
        fix: "cargo xtask setup (builds them under target/qemu-plugins/, ~3 minutes for \
              qemu-user, ~5 for qemu-system)"
            .into(),
    }
}

/// The counting qemu-user runs the host's `true` under the plugin (a system emulator has
/// no program to run without an image: the counted runs themselves say when it fails). The output file is this
/// process's own: harness commands run side by side (the harness's tests do) and one
/// check must not delete another's probe.
fn works() -> bool {
    let q = emulator("qemu-x86_64");
    let out = dir().join(format!("probe-{}.tsv", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let ok = q.is_file()
        && plugin().is_file()
        && Command::new(&q)
            .arg("-plugin")
            .arg(format!("{},out={}", plugin().display(), out.display()))
            .arg("/bin/true")
            .output()
            .is_ok_and(|o| o.status.success())
        && std::fs::read_to_string(&out).is_ok_and(|s| s.starts_with("# qemu-counters"));
    let _ = std::fs::remove_file(&out);
    ok
}

/// Builds what is missing: the plugin (always: cargo knows when it is current), the user
/// emulators (once) and, when `system`, the system emulators (once).
pub fn ensure(system: bool) -> Result<(), String> {
    build_plugin()?;
    if system && !Kind::System.built() {
        build_emulators(Kind::System)?;
    }
    if Kind::User.built() && works() {
        return Ok(());
    }
    build_emulators(Kind::User)?;
    if works() {
        Ok(())
    } else {
        Err(format!(
            "{} was built but does not load {} (try `rm -r {}` and `cargo xtask setup` again)",
            emulator("qemu-x86_64").display(),
            plugin().display(),
            dir().display()
        ))
    }
}

fn build_plugin() -> Result<(), String> {
    let status = Command::new("cargo")
        .args(["build", "--quiet", "--release", "-p", "qemu-counters"])
        .current_dir(crate::project_root())
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err("building the counting plugin (qemu/counters) failed: see cargo's output above".into())
    }
}

fn build_emulators(kind: Kind) -> Result<(), String> {
    let mut want: BTreeSet<String> = PACKAGES.iter().map(|p| p.to_string()).collect();
    if kind == Kind::System {
        want.extend(SYSTEM_PACKAGES.map(String::from));
    }
    if !on_path("cc") {
        want.insert("gcc".into());
    }
    install_packages(&want).map_err(|e| {
        format!(
            "{e}\nbuilding QEMU with plugins needs {}",
            want.into_iter().collect::<Vec<_>>().join(" ")
        )
    })?;
    let dir = dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tarball = dir.join(TARBALL);
    if !tarball.is_file() || sha256_of(&tarball)? != SHA256 {
        download(&tarball)?;
    }
    let got = sha256_of(&tarball)?;
    if got != SHA256 {
        return Err(format!(
            "{}: sha256 {got}, expected {SHA256} (pinned in xtask/src/counters/qemu.rs): the download differs from Debian's archive; delete it and run again",
            tarball.display()
        ));
    }
    let src = dir.join(format!("qemu-{VERSION}"));
    if src.exists() {
        std::fs::remove_dir_all(&src).map_err(|e| format!("{}: {e}", src.display()))?;
    }
    run(
        "tar",
        &[
            "-xJf",
            &tarball.to_string_lossy(),
            "-C",
            &dir.to_string_lossy(),
        ],
    )?;
    if kind == Kind::System {
        // The tarball has no firmware (+ds), yet meson still lists the edk2 images to
        // unpack when bzip2 is on PATH; nothing here needs them.
        let meson = src.join("meson.build");
        let text =
            std::fs::read_to_string(&meson).map_err(|e| format!("{}: {e}", meson.display()))?;
        let patched = text.replace(
            "unpack_edk2_blobs = bzip2.found()",
            "unpack_edk2_blobs = false",
        );
        if patched == text {
            return Err(format!(
                "{}: no `unpack_edk2_blobs = bzip2.found()` to turn off (another QEMU version?)",
                meson.display()
            ));
        }
        std::fs::write(&meson, patched).map_err(|e| format!("{}: {e}", meson.display()))?;
    }
    // Meson comes from PyPI into the harness venv; QEMU's configure makes its own venv on
    // top of that Python and finds it there.
    crate::venv::ensure(&MESON.map(String::from))?;
    let build = src.join("build");
    std::fs::create_dir_all(&build).map_err(|e| format!("{}: {e}", build.display()))?;
    let (targets, options) = kind.configure();
    let status = Command::new(src.join("configure"))
        .current_dir(&build)
        .arg(format!("--python={}", crate::venv::python().display()))
        .arg(format!("--target-list={targets}"))
        .args(options)
        .args([
            "--enable-plugins",
            "--disable-docs",
            "--disable-tools",
            "--disable-werror",
            // The +ds tarball has no firmware blobs, and the images need none.
            "--disable-install-blobs",
        ])
        .status()
        .map_err(|e| format!("{}/configure: {e}", src.display()))?;
    if !status.success() {
        return Err(format!(
            "configuring QEMU {VERSION} failed: see {}/meson-logs/meson-log.txt",
            build.display()
        ));
    }
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut ninja = Command::new("ninja");
    ninja
        .current_dir(&build)
        .arg(format!("-j{jobs}"))
        .args(kind.emulators());
    let status = ninja
        .status()
        .map_err(|e| format!("ninja: {e} (apt package ninja-build)"))?;
    if !status.success() {
        return Err(format!(
            "building QEMU {VERSION} failed: see the compiler's output above ({})",
            build.display()
        ));
    }
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    for name in kind.emulators() {
        std::fs::copy(build.join(&name), bin.join(&name))
            .map_err(|e| format!("{}: {e}", build.join(&name).display()))?;
    }
    // The sources and objects are 600 MB: only the emulators stay.
    std::fs::remove_dir_all(&src).map_err(|e| format!("{}: {e}", src.display()))?;
    Ok(())
}

/// Fetched with the harness venv's Python (a fresh machine may have no curl or wget).
fn download(to: &Path) -> Result<(), String> {
    crate::venv::ensure(&[])?;
    let script = "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])";
    run(
        &crate::venv::python().to_string_lossy(),
        &["-c", script, URL, &to.to_string_lossy()],
    )
    .map_err(|e| format!("{e}\ndownloading {URL} failed"))
}
