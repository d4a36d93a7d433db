//! `targets.toml` and `qemu/profiles.toml`, read strictly: an unknown key or a bad value
//! is an error with its line and column.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetsFile {
    harness: Harness,
    target: Vec<Target>,
}

/// What the harness itself needs on every machine, whatever the targets.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Harness {
    /// apt packages of the harness itself (its Python venv).
    pub apt: Vec<String>,
    /// Pinned PyPI requirements installed into the harness's own venv (`target/venv`): a
    /// fresh Debian's system Python refuses `pip install` (PEP 668).
    pub python: Vec<String>,
    /// Oldest qemu-user accepted, `major.minor`.
    pub qemu_min: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub triple: String,
    pub stands_for: String,
    #[serde(default)]
    pub builder: Builder,
    /// Build std from source (`-Zbuild-std`): triples without a prebuilt std.
    #[serde(default)]
    pub build_std: bool,
    pub linker: Option<String>,
    #[serde(default)]
    pub rustflags: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `native`, `none` (build only), the qemu-user binary that runs it, or for a
    /// bare-metal image the qemu-system binary that boots it (`virt` machine, each
    /// profile's `cpu`).
    pub run: String,
    /// Sysroot for dynamically linked binaries under QEMU (`QEMU_LD_PREFIX`).
    pub ld_prefix: Option<String>,
    #[serde(default)]
    pub profiles: Vec<String>,
    /// Profiles on which the binary must refuse to start, naming the missing feature.
    #[serde(default)]
    pub refuse_profiles: Vec<Refusal>,
    /// Stripped size limit in bytes.
    pub size_budget: u64,
    /// Kernel names whose `bitmatmul_<name>` symbol the binary must carry.
    pub kernels: Vec<String>,
    /// Kernels no QEMU CPU model can run: proven only on a host that has them, reported
    /// as unproven elsewhere.
    #[serde(default)]
    pub native_only: Vec<String>,
    /// Kernels this target's rustflags enable at compile time (e.g. `zbb` with `+zbb`):
    /// expected available on every profile, on top of the profile's own list.
    #[serde(default)]
    pub compiled_kernels: Vec<String>,
    /// The binary must be statically linked.
    #[serde(default, rename = "static")]
    pub is_static: bool,
    #[serde(default)]
    pub setup: Setup,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Builder {
    #[default]
    Cargo,
    Zigbuild,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    pub profile: String,
    pub feature: String,
}

/// What `cargo xtask setup` installs for a target.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setup {
    /// `rustup target add <triple>` (false when std is built from source).
    #[serde(default = "yes")]
    pub rustup: bool,
    #[serde(default)]
    pub components: Vec<String>,
    #[serde(default)]
    pub apt: Vec<String>,
    /// zig and cargo-zigbuild (from PyPI).
    #[serde(default)]
    pub zig: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            rustup: true,
            components: Vec::new(),
            apt: Vec::new(),
            zig: false,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfilesFile {
    profile: BTreeMap<String, Profile>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub board: String,
    /// qemu-user binary; absent: runs natively.
    pub qemu: Option<String>,
    pub cpu: Option<String>,
    #[serde(default)]
    pub features: Vec<String>,
    /// Kernels the engine must report as available under this CPU (absent: see
    /// `cpuinfo_kernels`).
    pub kernels: Option<Vec<String>>,
    /// For the native profile: each kernel and the /proc/cpuinfo flags it needs; the
    /// expected kernels are those whose flags this host has.
    pub cpuinfo_kernels: Option<BTreeMap<String, Vec<String>>>,
    /// Thread counts every kernel is validated with (emulated runs stay single-threaded
    /// except on one profile per ISA).
    #[serde(default = "one_thread")]
    pub threads: Vec<usize>,
}

fn one_thread() -> Vec<usize> {
    vec![1]
}

impl Profile {
    /// The kernels the engine must detect here: the profile's list, or for the native
    /// profile those whose CPU flags this host reports.
    pub fn expected_kernels(&self) -> Option<Vec<String>> {
        if let Some(k) = &self.kernels {
            return Some(k.clone());
        }
        let table = self.cpuinfo_kernels.as_ref()?;
        let flags = host_cpu_flags();
        Some(
            table
                .iter()
                .filter(|(_, need)| need.iter().all(|f| flags.contains(f)))
                .map(|(k, _)| k.clone())
                .collect(),
        )
    }
}

/// The `flags` line of /proc/cpuinfo.
pub fn host_cpu_flags() -> std::collections::BTreeSet<String> {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, f)| f.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

#[derive(Debug)]
pub struct Matrix {
    pub harness: Harness,
    pub targets: Vec<Target>,
    pub profiles: BTreeMap<String, Profile>,
}

impl Target {
    /// `aarch64` for `aarch64-unknown-linux-gnu`, `riscv64` for `riscv64gc-...`.
    pub fn arch(&self) -> &str {
        let first = self.triple.split('-').next().unwrap_or("");
        first.strip_suffix("gc").unwrap_or(first)
    }

    /// A bare-metal image (`bitnet-bare`), booted by qemu-system rather than run by an OS.
    pub fn is_bare_metal(&self) -> bool {
        self.run.starts_with("qemu-system-")
    }

    /// Whether `t` runs under QEMU on profile `p`: every bare-metal profile does (booted by
    /// the target's qemu-system), a Linux one when it names a qemu-user.
    pub fn emulated_on(&self, p: &Profile) -> bool {
        self.is_bare_metal() || p.qemu.is_some()
    }

    pub fn is_host(&self) -> bool {
        self.triple == HOST
    }

    /// The environment variable prefix cargo uses for per-target settings.
    pub fn cargo_env(&self, what: &str) -> String {
        format!(
            "CARGO_TARGET_{}_{what}",
            self.triple.to_uppercase().replace(['-', '.'], "_")
        )
    }
}

/// The `targets_toml` fuzz target's entry point (fuzz/fuzz_targets/targets_toml.rs), also
/// replayed over the committed corpus by this file's tests. The bytes before the first NUL
/// are targets.toml, the rest qemu/profiles.toml (invalid UTF-8 replaced: a fuzzer's bytes
/// need not be text). Panics only if a property of an accepted matrix fails.
#[cfg_attr(not(test), allow(dead_code))]
pub fn fuzz_entry(data: &[u8]) {
    let cut = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let rest = data.get(cut + 1..).unwrap_or_default();
    let targets = String::from_utf8_lossy(&data[..cut]);
    let profiles = String::from_utf8_lossy(rest);
    let Ok(m) = Matrix::from_texts(&targets, &profiles) else {
        return;
    };
    // Every named profile resolves, `all` is the whole list and each triple selects itself.
    let all = m.select(&["all".into()]).expect("'all' always selects");
    assert_eq!(all.len(), m.targets.len());
    for t in &m.targets {
        assert!(t.profiles.iter().all(|p| m.profiles.contains_key(p)));
        let own = m
            .select(std::slice::from_ref(&t.triple))
            .expect("own triple");
        assert!(own.iter().any(|o| o.triple == t.triple));
    }
}

pub const HOST: &str = "x86_64-unknown-linux-gnu";

/// Parses TOML text; the error names line and column of the offending key or value.
fn parse_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|s| {
                let before = &text[..s.start];
                let line = before.matches('\n').count() + 1;
                let col = s.start - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("line {line}, column {col}: ")
            })
            .unwrap_or_default();
        format!("{at}{}", e.message())
    })
}

impl Matrix {
    pub fn load(targets: &Path, profiles: &Path) -> Result<Matrix, String> {
        let read =
            |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
        let (t, p) = (read(targets)?, read(profiles)?);
        Matrix::parse_texts(
            (&targets.display().to_string(), &t),
            (&profiles.display().to_string(), &p),
        )
    }

    /// Both files from their text, errors prefixed with the usual names. The entry point
    /// of the `targets_toml` fuzz target and of its corpus replay (not of xtask itself).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn from_texts(targets: &str, profiles: &str) -> Result<Matrix, String> {
        Matrix::parse_texts(("targets.toml", targets), ("qemu/profiles.toml", profiles))
    }

    /// `(name, text)` of each file; every error starts with the file's name.
    fn parse_texts(targets: (&str, &str), profiles: (&str, &str)) -> Result<Matrix, String> {
        let targets: TargetsFile =
            parse_str(targets.1).map_err(|e| format!("{}: {e}", targets.0))?;
        let profiles: ProfilesFile =
            parse_str(profiles.1).map_err(|e| format!("{}: {e}", profiles.0))?;
        Matrix::check(targets.harness, targets.target, profiles.profile)
    }

    fn check(
        harness: Harness,
        targets: Vec<Target>,
        profiles: BTreeMap<String, Profile>,
    ) -> Result<Matrix, String> {
        for t in &targets {
            let refused = t.refuse_profiles.iter().map(|r| &r.profile);
            for p in t.profiles.iter().chain(refused) {
                if !profiles.contains_key(p) {
                    return Err(format!(
                        "targets.toml: target {} names profile '{p}', which qemu/profiles.toml does not define (known: {})",
                        t.triple,
                        profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
            }
            let runs = matches!(t.run.as_str(), "native" | "none") || t.run.starts_with("qemu-");
            if !runs {
                return Err(format!(
                    "targets.toml: target {}: run = '{}'; expected native, none, a qemu-user or a qemu-system binary",
                    t.triple, t.run
                ));
            }
            if t.is_bare_metal() && !t.triple.contains("-none") {
                return Err(format!(
                    "targets.toml: target {}: run = '{}' boots a bare-metal image, but the triple has an OS",
                    t.triple, t.run
                ));
            }
            // qemu-system is told the CPU model: a bare-metal profile must name one.
            let no_cpu: Vec<&String> = t
                .profiles
                .iter()
                .filter(|p| t.is_bare_metal() && profiles[*p].cpu.is_none())
                .collect();
            if t.is_bare_metal() && (t.profiles.is_empty() || !no_cpu.is_empty()) {
                return Err(format!(
                    "targets.toml: bare-metal target {} needs profiles with a `cpu` (missing in: {})",
                    t.triple,
                    if t.profiles.is_empty() { "no profile named".to_string() } else { no_cpu.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ") }
                ));
            }
        }
        Ok(Matrix {
            harness,
            targets,
            profiles,
        })
    }

    /// Targets named by `sel`: a triple, an architecture (`aarch64` = all its triples),
    /// `darwin`/`macos` for Apple, or `all`.
    pub fn select(&self, sel: &[String]) -> Result<Vec<Target>, String> {
        if sel.is_empty() || sel.iter().any(|s| s == "all") {
            return Ok(self.targets.clone());
        }
        let mut out: Vec<Target> = Vec::new();
        for s in sel {
            let hits: Vec<&Target> = self
                .targets
                .iter()
                .filter(|t| {
                    t.triple == *s
                        || (t.arch() == s && !t.triple.contains("apple"))
                        || (matches!(s.as_str(), "darwin" | "macos") && t.triple.contains("apple"))
                })
                .collect();
            if hits.is_empty() {
                let names: Vec<&str> = self.targets.iter().map(|t| t.triple.as_str()).collect();
                return Err(format!(
                    "unknown target '{s}'; expected one of: all, x86_64, aarch64, armv7, riscv64, darwin, {}",
                    names.join(", ")
                ));
            }
            for t in hits {
                if !out.iter().any(|o| o.triple == t.triple) {
                    out.push(t.clone());
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed() -> Matrix {
        let root = crate::project_root();
        Matrix::load(&root.join("targets.toml"), &root.join("qemu/profiles.toml")).unwrap()
    }

    #[test]
    fn committed_matrix_loads_and_selects() {
        let m = committed();
        assert!(m.targets.len() >= 7);
        let arm = m.select(&["aarch64".into()]).unwrap();
        assert_eq!(arm.len(), 3);
        assert!(arm.iter().all(|t| t.triple.starts_with("aarch64-unknown-")));
        assert_eq!(m.select(&["riscv64".into()]).unwrap().len(), 3);
        assert_eq!(m.targets.iter().filter(|t| t.is_bare_metal()).count(), 3);
        assert_eq!(m.select(&["darwin".into()]).unwrap().len(), 1);
        let e = m.select(&["sparc".into()]).unwrap_err();
        assert!(e.contains("unknown target 'sparc'"), "{e}");
    }

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let text = "[harness]\napt = []\npython = []\nqemu_min = \"8.1\"\n[[target]]\ntriple = \"x\"\nstands_for = \"y\"\nrun = \"native\"\nsize_budget = 1\nkernels = []\nsize_budjet = 2\n";
        let e = parse_str::<TargetsFile>(text).unwrap_err();
        assert!(e.contains("line 11"), "{e}");
        assert!(e.contains("size_budjet"), "{e}");
    }

    #[test]
    fn bad_value_is_an_error_with_its_line() {
        let text = "[harness]\napt = []\npython = []\nqemu_min = \"8.1\"\n[[target]]\ntriple = \"x\"\nstands_for = \"y\"\nrun = \"native\"\nsize_budget = \"big\"\nkernels = []\n";
        let e = parse_str::<TargetsFile>(text).unwrap_err();
        assert!(e.contains("line 9"), "{e}");
    }

    #[test]
    fn bare_metal_rows_need_a_bare_triple_and_cpu_models() {
        let on_linux = |m: &mut Matrix| {
            let t = m.targets.iter_mut().find(|t| t.is_host()).unwrap();
            t.run = "qemu-system-riscv64".into();
        };
        let mut m = committed();
        on_linux(&mut m);
        let e = Matrix::check(m.harness, m.targets, m.profiles).unwrap_err();
        assert!(e.contains("the triple has an OS"), "{e}");
        let mut m = committed();
        let t = m.targets.iter().position(|t| t.is_bare_metal()).unwrap();
        let p = m.targets[t].profiles[0].clone();
        m.profiles.get_mut(&p).unwrap().cpu = None;
        let e = Matrix::check(m.harness, m.targets, m.profiles).unwrap_err();
        assert!(
            e.contains("needs profiles with a `cpu`") && e.contains(&p),
            "{e}"
        );
    }

    #[test]
    fn unknown_profile_is_named() {
        let mut m = committed();
        m.targets[0].profiles.push("pdp11".into());
        let e = Matrix::check(m.harness, m.targets, m.profiles).unwrap_err();
        assert!(e.contains("'pdp11'"), "{e}");
    }

    /// The fuzz corpus and regressions of `targets_toml`, replayed through the fuzz
    /// target's entry point without libFuzzer.
    #[test]
    fn fuzz_corpus_replays() {
        let root = crate::project_root();
        let mut n = 0;
        for dir in [
            "fuzz/corpus/targets_toml",
            "fixtures/fuzz-regressions/targets_toml",
        ] {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
                continue;
            };
            for e in entries {
                let path = e.unwrap().path();
                eprintln!("targets_toml: {}", path.display());
                fuzz_entry(&std::fs::read(&path).unwrap());
                n += 1;
            }
        }
        assert!(n > 0, "no targets_toml corpus files");
    }

    #[test]
    fn from_texts_reads_the_committed_files() {
        let root = crate::project_root();
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
        let m = Matrix::from_texts(&read("targets.toml"), &read("qemu/profiles.toml")).unwrap();
        assert_eq!(m.targets.len(), committed().targets.len());
        let e = Matrix::from_texts("[harness]\nbogus = 1\n", "").unwrap_err();
        assert!(e.starts_with("targets.toml: line 2, column 1: "), "{e}");
    }
}
