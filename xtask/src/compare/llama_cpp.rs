//! llama.cpp's `llama-bench`, from a registry: PyPI's `llama-cpp-python` sdist vendors
//! llama.cpp (`vendor/llama.cpp`). Downloaded with the harness venv's pip, checked against
//! the pinned sha256, unpacked and built under `target/compare/` once; a later run reuses
//! the binary. Nothing here is ever committed (target/ is git-ignored).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::setup::{install_packages, on_path, run};

/// The pinned sdist. Its llama.cpp is commit 0c1e570 (2026-10-01).
pub const VERSION: &str = "0.3.36";
pub const SHA256: &str = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e";

fn sdist_name() -> String {
    format!("llama_cpp_python-{VERSION}.tar.gz")
}

pub fn dir() -> PathBuf {
    crate::project_root().join("target/compare")
}

/// The built `llama-bench` (building it first when missing).
pub fn ensure_llama_bench() -> Result<PathBuf, String> {
    let dir = dir();
    let build = dir.join(format!("build-{VERSION}"));
    let bin = build.join("bin/llama-bench");
    if bin.is_file() {
        return Ok(bin);
    }
    ensure_build_tools()?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let sdist = dir.join(sdist_name());
    if !sdist.is_file() || sha256_of(&sdist)? != SHA256 {
        // pip keeps a file it finds already downloaded: a corrupt one must go first.
        if sdist.exists() {
            std::fs::remove_file(&sdist).map_err(|e| format!("{}: {e}", sdist.display()))?;
        }
        download(&dir)?;
    }
    let got = sha256_of(&sdist)?;
    if got != SHA256 {
        return Err(format!(
            "{}: sha256 {got}, expected {SHA256} (pinned in xtask/src/compare/llama_cpp.rs): \
             the download differs from what PyPI published; run again, and if it persists check the pip index in use",
            sdist.display()
        ));
    }
    let src = dir.join(format!("llama_cpp_python-{VERSION}"));
    let llama = src.join("vendor/llama.cpp");
    if !llama.join("tools/llama-bench").is_dir() {
        if src.exists() {
            std::fs::remove_dir_all(&src).map_err(|e| format!("{}: {e}", src.display()))?;
        }
        run(
            "tar",
            &[
                "-xzf",
                &sdist.to_string_lossy(),
                "-C",
                &dir.to_string_lossy(),
            ],
        )?;
        if !llama.join("tools/llama-bench").is_dir() {
            return Err(format!(
                "{} has no tools/llama-bench: the pinned sdist changed layout",
                llama.display()
            ));
        }
    }
    let (l, b) = (llama.to_string_lossy(), build.to_string_lossy());
    run(
        "cmake",
        &[
            "-S",
            &l,
            "-B",
            &b,
            "-DGGML_NATIVE=ON",
            "-DLLAMA_CURL=OFF",
            "-DCMAKE_BUILD_TYPE=Release",
            "-DBUILD_SHARED_LIBS=OFF",
            "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=OFF",
            "-DLLAMA_BUILD_SERVER=OFF",
        ],
    )
    .map_err(|e| format!("{e}\nconfiguring llama.cpp failed: see cmake's output above"))?;
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Niced: the build takes minutes and should not starve whatever else the host runs.
    let jobs = jobs.to_string();
    let mut args = vec!["--build", &b, "--target", "llama-bench", "-j", &jobs];
    let prog = if on_path("nice") {
        args.splice(0..0, ["-n", "19", "cmake"]);
        "nice"
    } else {
        "cmake"
    };
    run(prog, &args).map_err(|e| {
        format!("{e}\nbuilding llama-bench failed: see the compiler's output above")
    })?;
    if !bin.is_file() {
        return Err(format!(
            "the build finished but {} is missing",
            bin.display()
        ));
    }
    Ok(bin)
}

/// cmake, make and a C++ compiler: installed with apt when missing (as `cargo xtask setup`
/// installs its packages), or an error naming the packages.
fn ensure_build_tools() -> Result<(), String> {
    let mut want = BTreeSet::new();
    if !on_path("cmake") {
        want.insert("cmake".to_string());
    }
    if !on_path("make") {
        want.insert("make".to_string());
    }
    if !on_path("c++") && !on_path("g++") {
        want.insert("g++".to_string());
    }
    if want.is_empty() {
        return Ok(());
    }
    install_packages(&want).map_err(|e| {
        format!(
            "{e}\nbuilding llama-bench needs {}: install them (apt-get install --no-install-recommends {}) and run `cargo xtask compare` again",
            want.iter().cloned().collect::<Vec<_>>().join(", "),
            want.iter().cloned().collect::<Vec<_>>().join(" ")
        )
    })
}

/// `pip download` through the harness venv (created if needed; `cargo xtask setup` makes
/// the same one).
fn download(dir: &Path) -> Result<(), String> {
    crate::venv::ensure(&[])?;
    let py = crate::venv::python();
    let spec = format!("llama-cpp-python=={VERSION}");
    run(
        &py.to_string_lossy(),
        &[
            "-m",
            "pip",
            "download",
            "--disable-pip-version-check",
            "--no-deps",
            // The sdist itself; its build requirements (for pip's metadata step) as wheels.
            "--no-binary",
            "llama-cpp-python",
            "-d",
            &dir.to_string_lossy(),
            &spec,
        ],
    )
    .map_err(|e| {
        format!(
            "{e}\ndownloading {spec} failed: pip needs to reach PyPI (or its configured mirror)"
        )
    })
}

pub(crate) fn sha256_of(file: &Path) -> Result<String, String> {
    let o = Command::new("sha256sum")
        .arg(file)
        .output()
        .map_err(|e| format!("sha256sum: {e} (coreutils)"))?;
    parse_sha256sum(&String::from_utf8_lossy(&o.stdout))
        .ok_or_else(|| format!("sha256sum {}: no hash in its output", file.display()))
}

/// The hash of `sha256sum`'s first line (`<64 hex>  <path>`).
pub fn parse_sha256sum(out: &str) -> Option<String> {
    let h = out.split_whitespace().next()?;
    (h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit())).then(|| h.to_ascii_lowercase())
}

/// One test of `llama-bench -o json` (the fields this command reads).
#[derive(Deserialize, Debug)]
pub struct Test {
    #[serde(default)]
    pub build_commit: String,
    #[serde(default)]
    pub build_number: i64,
    pub n_prompt: u64,
    pub n_gen: u64,
    pub avg_ts: f64,
}

/// Prefill and decode tok/s of one `llama-bench` run (`-p P -n G -r 1 -o json`: one test
/// per kind), with llama.cpp's build for the report.
#[derive(Debug, PartialEq)]
pub struct Run {
    pub prefill: Option<f64>,
    pub decode: Option<f64>,
    pub build: String,
}

/// Reads llama-bench's JSON array: the `pp` test has n_gen 0, the `tg` test n_prompt 0.
pub fn parse(json: &str) -> Result<Run, String> {
    let start = json
        .find('[')
        .ok_or("llama-bench printed no JSON array (was it run with -o json?)")?;
    let tests: Vec<Test> =
        serde_json::from_str(&json[start..]).map_err(|e| format!("llama-bench's JSON: {e}"))?;
    if tests.is_empty() {
        return Err("llama-bench's JSON has no tests".into());
    }
    let find = |f: fn(&Test) -> bool| tests.iter().find(|t| f(t)).map(|t| t.avg_ts);
    let first = &tests[0];
    Ok(Run {
        prefill: find(|t| t.n_prompt > 0 && t.n_gen == 0),
        decode: find(|t| t.n_gen > 0 && t.n_prompt == 0),
        // The sdist's llama.cpp carries no history: its build number is 1, not upstream's.
        build: if first.build_number > 1 {
            format!("b{} ({})", first.build_number, first.build_commit)
        } else {
            format!("commit {}", first.build_commit)
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape of `llama-bench -o json` output (fields trimmed to a representative few).
    const SAMPLE: &str = r#"[
  {
    "build_commit": "0c1e570",
    "build_number": 1,
    "cpu_info": "Intel(R) Xeon(R) Processor",
    "model_type": "bitnet ?B TQ2_0 - 2.06 bpw ternary",
    "n_threads": 2,
    "n_prompt": 128,
    "n_gen": 0,
    "n_depth": 0,
    "avg_ns": 3806000000,
    "avg_ts": 33.631,
    "stddev_ts": 0.0,
    "samples_ns": [ 3806000000 ],
    "samples_ts": [ 33.631 ]
  },
  {
    "build_commit": "0c1e570",
    "build_number": 1,
    "n_threads": 2,
    "n_prompt": 0,
    "n_gen": 32,
    "avg_ts": 10.7,
    "samples_ts": [ 10.7 ]
  }
]
"#;

    #[test]
    fn parses_prefill_and_decode() {
        let r = parse(SAMPLE).unwrap();
        assert_eq!(r.prefill, Some(33.631));
        assert_eq!(r.decode, Some(10.7));
        assert_eq!(r.build, "commit 0c1e570");
        let numbered = SAMPLE.replace("\"build_number\": 1,", "\"build_number\": 10470,");
        assert_eq!(parse(&numbered).unwrap().build, "b10470 (0c1e570)");
    }

    #[test]
    fn skips_log_lines_before_the_array() {
        let r = parse(&format!("warming up\n{SAMPLE}")).unwrap();
        assert_eq!(r.decode, Some(10.7));
    }

    #[test]
    fn a_missing_test_is_none_and_garbage_is_an_error() {
        let only_pp = r#"[{"n_prompt": 128, "n_gen": 0, "n_threads": 1, "avg_ts": 5.0}]"#;
        let r = parse(only_pp).unwrap();
        assert_eq!((r.prefill, r.decode), (Some(5.0), None));
        assert!(parse("error: failed to load model").is_err());
        assert!(parse("[]").is_err());
        assert!(parse("[{\"n_prompt\": 1}]").is_err());
    }

    #[test]
    fn sha256sum_output() {
        let h = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e";
        assert_eq!(
            parse_sha256sum(&format!("{h}  /x/llama.tar.gz\n")).as_deref(),
            Some(h)
        );
        assert_eq!(parse_sha256sum("sha256sum: x: No such file"), None);
        assert_eq!(parse_sha256sum(""), None);
    }
}
