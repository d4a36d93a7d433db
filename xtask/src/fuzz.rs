//! `cargo xtask fuzz [--target NAME] [--seconds S]`: builds the libFuzzer targets of
//! `fuzz/` (cargo-fuzz, nightly) and runs each for S seconds, one after the other, then
//! prints executions, executions per second and what was found per target.
//!
//! Corpus: new inputs go to `target/fuzz/corpus/<name>/` (never committed); the committed
//! minimized corpus `fuzz/corpus/<name>/`, the regressions `fixtures/fuzz-regressions/<name>/`
//! and the seeds (the fixture models for the GGUF targets, the committed TOML files for
//! `targets_toml`, the hf-random checkpoints for the `convert_*` targets) are read as well. A crash stops that target, names the input and says
//! how to replay it; the run goes on with the next target and fails at the end.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::flags::FuzzArgs;

/// Every target of `fuzz/Cargo.toml`, with what it reads.
pub const TARGETS: [(&str, &str); 8] = [
    ("gguf_parse", "the GGUF container parser, raw bytes"),
    (
        "model_load",
        "GGUF bytes through Gguf::parse, Tokenizer::from_gguf, Model::load and one token",
    ),
    (
        "gguf_structured",
        "generated GGUF models (valid skeleton, hostile counts, offsets, alignments, dims, types) through model_load",
    ),
    (
        "tokenizer",
        "generated vocabularies; arbitrary text encoded, arbitrary ids stream-decoded",
    ),
    ("chat_template", "chat template recognition and rendering"),
    (
        "targets_toml",
        "targets.toml + qemu/profiles.toml (split at the first NUL byte)",
    ),
    (
        "convert_safetensors",
        "convert's safetensors reader: model.safetensors, or index.json + NUL + a shard",
    ),
    (
        "convert_tokenizer_json",
        "convert's tokenizer reader: tokenizer.json + NUL + tokenizer_config.json",
    ),
];

/// What one target's run produced.
struct Outcome {
    name: &'static str,
    seconds: f64,
    executions: Option<u64>,
    exec_per_sec: Option<u64>,
    corpus_files: usize,
    crash: Option<String>,
}

pub fn run(a: &FuzzArgs) -> Result<(), String> {
    if a.list {
        for (name, what) in TARGETS {
            println!("{name:16} {what}");
        }
        return Ok(());
    }
    let selected: Vec<(&'static str, &'static str)> = match &a.target {
        None => TARGETS.to_vec(),
        Some(name) => vec![*TARGETS.iter().find(|(n, _)| n == name).ok_or_else(|| {
            let names: Vec<&str> = TARGETS.iter().map(|t| t.0).collect();
            format!(
                "unknown fuzz target '{name}'; expected one of: {}",
                names.join(", ")
            )
        })?],
    };
    check_tools()?;
    let root = crate::project_root();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("fuzz");
    build(&root, &target_dir, &selected)?;

    let work = root.join("target").join("fuzz");
    let mut outcomes = Vec::new();
    for (name, what) in selected {
        println!("== {name}: {what}, {} s", a.seconds);
        outcomes.push(run_one(&root, &target_dir, &work, name, a.seconds)?);
    }
    println!();
    println!("| target | seconds | executions | exec/s | corpus files | result |");
    println!("|---|---|---|---|---|---|");
    let show = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
    for o in &outcomes {
        println!(
            "| {} | {:.0} | {} | {} | {} | {} |",
            o.name,
            o.seconds,
            show(o.executions),
            show(o.exec_per_sec),
            o.corpus_files,
            o.crash
                .as_deref()
                .map_or("no crash".into(), |c| format!("CRASH: {c}")),
        );
    }
    let crashed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.crash.is_some())
        .map(|o| o.name)
        .collect();
    if crashed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "fuzzing found crashes in {}: replay one with `target/fuzz/x86_64-unknown-linux-gnu/release/<target> <file>`; \
             once fixed, copy the file into fixtures/fuzz-regressions/<target>/ so `cargo test` keeps it",
            crashed.join(", ")
        ))
    }
}

/// Nightly and cargo-fuzz, each with the command that installs it.
fn check_tools() -> Result<(), String> {
    let toolchains = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .map_err(|e| {
            format!("cannot run rustup ({e}): install Rust through rustup (https://rustup.rs)")
        })?;
    if !String::from_utf8_lossy(&toolchains.stdout)
        .lines()
        .any(|l| l.starts_with("nightly"))
    {
        return Err("no nightly toolchain (libFuzzer needs -Z flags): run `rustup toolchain install nightly`".into());
    }
    let fuzz = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !fuzz.is_ok_and(|s| s.success()) {
        return Err("cargo-fuzz is not installed: run `cargo install cargo-fuzz --locked`".into());
    }
    Ok(())
}

/// Release with debug assertions (integer overflow is a finding) and no sanitizer: the
/// code under test is safe Rust except the kernels, and without ASan it runs 3-5x faster.
fn build(root: &Path, target_dir: &Path, targets: &[(&str, &str)]) -> Result<(), String> {
    for (name, _) in targets {
        let status = Command::new("cargo")
            .current_dir(root.join("fuzz"))
            .args(["+nightly", "fuzz", "build", "-O", "-a", "-s", "none"])
            .arg("--target-dir")
            .arg(target_dir)
            .arg(name)
            .status()
            .map_err(|e| format!("cannot run cargo fuzz: {e}"))?;
        if !status.success() {
            return Err(format!(
                "cargo +nightly fuzz build {name} failed ({status})"
            ));
        }
    }
    Ok(())
}

/// The read-only seed directory of `name` (written fresh each run), if it has seeds.
fn seeds(root: &Path, work: &Path, name: &str) -> Result<Option<PathBuf>, String> {
    let dir = work.join("seeds").join(name);
    let io = |e: std::io::Error| format!("{}: {e}", dir.display());
    match name {
        "gguf_parse" | "model_load" => {
            fs::create_dir_all(&dir).map_err(io)?;
            for e in fs::read_dir(root.join("fixtures")).map_err(io)? {
                let p = e.map_err(io)?.path();
                if p.extension().is_some_and(|x| x == "gguf") {
                    fs::copy(&p, dir.join(p.file_name().unwrap())).map_err(io)?;
                }
            }
        }
        "convert_safetensors" | "convert_tokenizer_json" => {
            fs::create_dir_all(&dir).map_err(io)?;
            for form in ["bf16", "packed"] {
                let hf = root.join("fixtures/hf-random").join(form);
                let seed = if name == "convert_safetensors" {
                    fs::read(hf.join("model.safetensors")).map_err(io)?
                } else {
                    let mut pair = fs::read(hf.join("tokenizer.json")).map_err(io)?;
                    pair.push(0);
                    pair.extend(fs::read(hf.join("tokenizer_config.json")).map_err(io)?);
                    pair
                };
                fs::write(dir.join(form), seed).map_err(io)?;
            }
        }
        "targets_toml" => {
            fs::create_dir_all(&dir).map_err(io)?;
            let mut pair = fs::read(root.join("targets.toml")).map_err(io)?;
            pair.push(0);
            pair.extend(fs::read(root.join("qemu/profiles.toml")).map_err(io)?);
            fs::write(dir.join("committed"), pair).map_err(io)?;
        }
        _ => return Ok(None),
    }
    Ok(Some(dir))
}

fn run_one(
    root: &Path,
    target_dir: &Path,
    work: &Path,
    name: &'static str,
    seconds: u64,
) -> Result<Outcome, String> {
    let corpus = work.join("corpus").join(name);
    let artifacts = work.join("artifacts").join(name);
    for d in [&corpus, &artifacts] {
        fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let bin = target_dir
        .join("x86_64-unknown-linux-gnu/release")
        .join(name);
    let mut cmd = Command::new(&bin);
    cmd.arg(&corpus);
    for d in [
        root.join("fuzz/corpus").join(name),
        root.join("fixtures/fuzz-regressions").join(name),
    ] {
        if d.is_dir() {
            cmd.arg(d);
        }
    }
    if let Some(s) = seeds(root, work, name)? {
        cmd.arg(s);
    }
    cmd.arg(format!("-max_total_time={seconds}"))
        // One input taking 10 s is a hang; 1 GB of RSS is far beyond any bounded load of
        // inputs this size (the counting allocator asserts the precise bound).
        .arg("-timeout=10")
        .arg("-rss_limit_mb=1024")
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = std::time::Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let log_path = work.join(format!("{name}.log"));
    let mut log = String::new();
    let (mut executions, mut exec_per_sec, mut crash) = (None, None, None);
    for line in BufReader::new(child.stderr.take().expect("piped")).lines() {
        let line = line.map_err(|e| format!("reading {name}'s output: {e}"))?;
        let num = |key: &str| {
            line.strip_prefix(key)
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let Some(v) = num("stat::number_of_executed_units:") {
            executions = Some(v);
        }
        if let Some(v) = num("stat::average_exec_per_sec:") {
            exec_per_sec = Some(v);
        }
        if let Some(path) = line.split("Test unit written to ").nth(1) {
            crash = Some(path.trim().to_string());
        }
        if line.starts_with("#") && line.contains("pulse") || line.contains("DONE") {
            println!("  {line}");
        }
        log.push_str(&line);
        log.push('\n');
    }
    let status = child.wait().map_err(|e| format!("{name}: {e}"))?;
    fs::write(&log_path, &log).map_err(|e| format!("{}: {e}", log_path.display()))?;
    if !status.success() && crash.is_none() {
        crash = Some(format!(
            "exit {status}, no artifact; see {}",
            log_path.display()
        ));
    }
    let corpus_files = fs::read_dir(&corpus).map(|d| d.count()).unwrap_or(0);
    Ok(Outcome {
        name,
        seconds: start.elapsed().as_secs_f64(),
        executions,
        exec_per_sec,
        corpus_files,
        crash,
    })
}
