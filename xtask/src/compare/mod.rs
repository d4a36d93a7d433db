//! `cargo xtask compare`: this engine and llama.cpp's `llama-bench` on the same GGUF file,
//! in interleaved rounds on one host. Each round runs, per thread count, one
//! `bitnet-infer bench --json -r 1` and one `llama-bench -r 1 -o json` (alternating which
//! goes first), so a load change on a shared machine hits both engines alike. The report:
//! per test and thread count, each engine's tok/s (mean ± standard deviation over rounds)
//! and their ratio (ratio of means, and the range of the per-round ratios), under a header
//! with the host's CPU model, core count and the read bandwidth `bench` measured. Before
//! the rounds, `bitnet-infer page-cache` re-reads the model into the page cache in 2 MiB
//! folios where Linux can, so both engines' maps of it find the same cache.
//!
//! Not part of `.ci/run`: the first run downloads and builds llama.cpp (minutes).

pub(crate) mod llama_cpp;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::flags::CompareArgs;

pub fn run(a: &CompareArgs) -> Result<(), String> {
    if a.reps == 0 || a.threads.is_empty() || a.threads.contains(&0) {
        return Err("--reps and every --threads value must be at least 1".into());
    }
    let llama_bench = llama_cpp::ensure_llama_bench()?;
    let ours = build_ours()?;
    let model = match &a.model {
        Some(m) if m.is_file() => m.clone(),
        Some(m) => {
            return Err(format!(
                "--model {}: no such file (omit --model to use `cargo xtask bench-model --arch bitnet`'s)",
                m.display()
            ))
        }
        None => crate::bench_model::ensure("bitnet", "tq2_0", "f16", false)?,
    };
    // The same page cache for both engines (llama.cpp reads its weights through the map):
    // the file re-read in 2 MiB folios where Linux can.
    let mut c = Command::new(&ours);
    c.arg("page-cache").arg(&model);
    let page_cache = output(c, "bitnet-infer page-cache", "")?.trim().to_string();
    eprintln!("{page_cache}");
    let host = Host::probe();
    let load_before = load_average();
    let mut samples: Vec<Samples> = a
        .threads
        .iter()
        .map(|&t| Samples {
            threads: t,
            ..Samples::default()
        })
        .collect();
    let mut llama_build = String::new();
    for round in 0..a.reps {
        for s in samples.iter_mut() {
            let t = s.threads;
            // Alternate which engine goes first: neither always runs on a warmer machine.
            let order = if round % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for ours_turn in order {
                let what = if ours_turn {
                    "bitnet-infer"
                } else {
                    "llama-bench"
                };
                eprintln!("round {}/{}, {t} thread(s): {what}", round + 1, a.reps);
                if ours_turn {
                    let r = run_ours(&ours, &model, a, t)?;
                    s.ours_pp.extend(r.prefill);
                    s.ours_tg.extend(r.decode);
                    s.read_gb_s.extend(r.read_gb_s);
                    s.decode_of_read.extend(r.decode_of_read);
                } else {
                    let r = run_llama(&llama_bench, &model, a, t)?;
                    s.theirs_pp.extend(r.prefill);
                    s.theirs_tg.extend(r.decode);
                    llama_build = r.build;
                }
            }
        }
    }
    let report = Report {
        date: utc_now(),
        cpu: host.cpu,
        cores: host.cores,
        load_average_before: load_before,
        load_average_after: load_average(),
        model: model.display().to_string(),
        page_cache,
        llama_cpp: format!("llama-cpp-python {} sdist, llama.cpp {llama_build}", llama_cpp::VERSION),
        command: format!(
            "bitnet-infer bench --json -p {p} -n {g}{d} -t T -r 1 / llama-bench -m F -p {p} -n {g}{d} -t T -r 1 -o json, {} interleaved round(s)",
            a.reps,
            p = a.n_prompt,
            g = a.n_gen,
            d = depth_args(a.depth).map(|d| format!(" -d {d}")).unwrap_or_default(),
        ),
        rows: rows(&samples, a.n_prompt, a.n_gen, a.depth),
        read_bandwidth: samples
            .iter()
            .filter(|s| !s.read_gb_s.is_empty())
            .map(|s| Bandwidth {
                threads: s.threads,
                gb_s: Stat::of(&s.read_gb_s),
            })
            .collect(),
        decode_of_read_bandwidth: samples
            .iter()
            .filter(|s| !s.decode_of_read.is_empty())
            .map(|s| Share {
                threads: s.threads,
                share: Stat::of(&s.decode_of_read),
            })
            .collect(),
    };
    println!("{}", markdown(&report));
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// tok/s of every round, per thread count.
#[derive(Default)]
struct Samples {
    threads: usize,
    ours_pp: Vec<f64>,
    ours_tg: Vec<f64>,
    theirs_pp: Vec<f64>,
    theirs_tg: Vec<f64>,
    read_gb_s: Vec<f64>,
    /// This engine's decode: bytes of weights per token x tok/s over the read bandwidth of
    /// the same run.
    decode_of_read: Vec<f64>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Stat {
    pub mean: f64,
    /// Sample standard deviation (0 for one sample).
    pub stddev: f64,
    pub min: f64,
    pub max: f64,
    /// The middle sample (the mean of the middle two for an even count): one round the
    /// host's neighbours disturbed moves it less than the mean.
    pub median: f64,
    pub samples: Vec<f64>,
}

fn median(x: &[f64]) -> f64 {
    let mut v = x.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

impl Stat {
    pub fn of(x: &[f64]) -> Stat {
        let n = x.len().max(1) as f64;
        let mean = x.iter().sum::<f64>() / n;
        let stddev = if x.len() < 2 {
            0.0
        } else {
            (x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0)).sqrt()
        };
        Stat {
            mean,
            stddev,
            min: x.iter().copied().fold(f64::INFINITY, f64::min),
            max: x.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            median: median(x),
            samples: x.to_vec(),
        }
    }
}

#[derive(Serialize, Debug, PartialEq)]
pub struct Row {
    /// `pp128` or `tg32`, as llama-bench names its tests.
    pub test: String,
    pub threads: usize,
    pub ours: Stat,
    pub llama_cpp: Stat,
    /// Ours over llama.cpp's, of the means.
    pub ratio: f64,
    /// The lowest and highest ratio of the two engines within one round.
    pub ratio_min: f64,
    pub ratio_max: f64,
}

#[derive(Serialize, Debug)]
struct Bandwidth {
    threads: usize,
    gb_s: Stat,
}

#[derive(Serialize, Debug)]
struct Share {
    threads: usize,
    share: Stat,
}

#[derive(Serialize, Debug)]
struct Report {
    date: String,
    cpu: String,
    cores: usize,
    load_average_before: String,
    load_average_after: String,
    model: String,
    /// `bitnet-infer page-cache`'s line, from before the rounds.
    page_cache: String,
    llama_cpp: String,
    command: String,
    read_bandwidth: Vec<Bandwidth>,
    decode_of_read_bandwidth: Vec<Share>,
    rows: Vec<Row>,
}

/// One row per test and thread count; a test either engine did not report is left out.
fn rows(samples: &[Samples], n_prompt: usize, n_gen: usize, depth: usize) -> Vec<Row> {
    let mut out = Vec::new();
    // llama-bench's names: "tg32 @ d1024" after 1024 cached positions.
    let at = depth_args(depth)
        .map(|d| format!(" @ d{d}"))
        .unwrap_or_default();
    for (test, pick) in [
        (
            format!("pp{n_prompt}{at}"),
            (|s: &Samples| (&s.ours_pp, &s.theirs_pp)) as fn(&Samples) -> (&Vec<f64>, &Vec<f64>),
        ),
        (format!("tg{n_gen}{at}"), |s: &Samples| {
            (&s.ours_tg, &s.theirs_tg)
        }),
    ] {
        for s in samples {
            let (ours, theirs) = pick(s);
            if let Some(r) = row(&test, s.threads, ours, theirs) {
                out.push(r);
            }
        }
    }
    out
}

/// Ratios are taken per round (sample i of each engine), so the range reflects what one
/// round saw side by side.
pub fn row(test: &str, threads: usize, ours: &[f64], theirs: &[f64]) -> Option<Row> {
    if ours.is_empty() || theirs.is_empty() {
        return None;
    }
    let per_round: Vec<f64> = ours.iter().zip(theirs).map(|(a, b)| a / b).collect();
    let (ours, theirs) = (Stat::of(ours), Stat::of(theirs));
    Some(Row {
        test: test.to_string(),
        threads,
        ratio: ours.mean / theirs.mean,
        ratio_min: per_round.iter().copied().fold(f64::INFINITY, f64::min),
        ratio_max: per_round.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        ours,
        llama_cpp: theirs,
    })
}

/// `12.3 ± 0.4` with a precision that suits the magnitude.
fn fmt_stat(s: &Stat) -> String {
    let digits = if s.mean >= 100.0 {
        1
    } else if s.mean >= 10.0 {
        2
    } else {
        3
    };
    format!("{:.*} ± {:.*}", digits, s.mean, digits, s.stddev)
}

fn markdown(r: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "## this engine vs llama.cpp, {}\n\n* host: {}, {} logical core(s); load average before {}, after {}\n",
        r.date, r.cpu, r.cores, r.load_average_before, r.load_average_after
    ));
    if !r.read_bandwidth.is_empty() {
        let bw: Vec<String> = r
            .read_bandwidth
            .iter()
            .map(|b| {
                let (md, lo, hi) = (b.gb_s.median, b.gb_s.min, b.gb_s.max);
                let stat = fmt_stat(&b.gb_s);
                format!(
                    "{} thread(s) {stat} (median {md:.1}, rounds {lo:.1}-{hi:.1})",
                    b.threads
                )
            })
            .collect();
        out.push_str(&format!(
            "* read bandwidth measured by `bitnet-infer bench`: {} GB/s\n",
            bw.join(", ")
        ));
    }
    if !r.decode_of_read_bandwidth.is_empty() {
        let shares: Vec<String> = r
            .decode_of_read_bandwidth
            .iter()
            .map(|s| {
                let (m, md, lo, hi) = (s.share.mean, s.share.median, s.share.min, s.share.max);
                format!(
                    "{} thread(s) {:.0}% (median {:.0}%, rounds {:.0}-{:.0}%)",
                    s.threads,
                    100.0 * m,
                    100.0 * md,
                    100.0 * lo,
                    100.0 * hi
                )
            })
            .collect();
        out.push_str(&format!(
            "* this engine's decode reads its weights at, of that bandwidth: {}\n",
            shares.join(", ")
        ));
    }
    out.push_str(&by_round(r));
    out.push_str(&format!(
        "* model: {}\n* page cache before the rounds: {}\n* llama.cpp: {}\n* {}\n\n",
        r.model, r.page_cache, r.llama_cpp, r.command
    ));
    out.push_str(&table(&r.rows));
    out
}

/// Each round's read bandwidth next to decode's share of it, per thread count (empty without
/// both): on a shared host the bandwidth moves from round to round, and a share means most
/// next to the bandwidth it was taken against.
fn by_round(r: &Report) -> String {
    let parts: Vec<String> = r
        .read_bandwidth
        .iter()
        .filter_map(|b| {
            let s = r
                .decode_of_read_bandwidth
                .iter()
                .find(|s| s.threads == b.threads)?;
            let (gb_s, shares) = (&b.gb_s.samples, &s.share.samples);
            if gb_s.len() != shares.len() {
                return None;
            }
            let rounds: Vec<String> = gb_s
                .iter()
                .zip(shares)
                .map(|(g, s)| format!("{g:.1} GB/s {:.0}%", 100.0 * s))
                .collect();
            Some(format!("{} thread(s) {}", b.threads, rounds.join(", ")))
        })
        .collect();
    if parts.is_empty() {
        return String::new();
    }
    format!(
        "* each round's bandwidth and decode's share of it: {}\n",
        parts.join("; ")
    )
}

/// The Markdown table: tok/s mean ± stddev over rounds per engine, and the ratio of the means
/// with the range of the per-round ratios.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| test | threads | this engine tok/s | llama.cpp tok/s | ratio (per-round range) |\n|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.2}x ({:.2}-{:.2}) |\n",
            r.test,
            r.threads,
            fmt_stat(&r.ours),
            fmt_stat(&r.llama_cpp),
            r.ratio,
            r.ratio_min,
            r.ratio_max
        ));
    }
    out
}

/// What one run of an engine measured.
#[derive(Debug, PartialEq)]
struct Measured {
    prefill: Option<f64>,
    decode: Option<f64>,
    read_gb_s: Option<f64>,
    decode_of_read: Option<f64>,
    build: String,
}

#[derive(Deserialize)]
struct OurStat {
    mean: f64,
}

#[derive(Deserialize)]
struct OurResult {
    prefill_tok_s: Option<OurStat>,
    decode_tok_s: Option<OurStat>,
    mem_read_gb_s: Option<OurStat>,
    decode_bw_ratio: Option<f64>,
}

#[derive(Deserialize)]
struct OurReport {
    results: Vec<OurResult>,
}

/// `bitnet-infer bench --json`'s object (one thread count).
fn parse_ours(json: &str) -> Result<Measured, String> {
    let start = json
        .find('{')
        .ok_or("bitnet-infer bench printed no JSON object")?;
    let r: OurReport = serde_json::from_str(json[start..].trim_end())
        .map_err(|e| format!("bitnet-infer bench's JSON: {e}"))?;
    let first = r
        .results
        .into_iter()
        .next()
        .ok_or("bitnet-infer bench's JSON has no results")?;
    Ok(Measured {
        prefill: first.prefill_tok_s.map(|s| s.mean),
        decode: first.decode_tok_s.map(|s| s.mean),
        read_gb_s: first.mem_read_gb_s.map(|s| s.mean),
        decode_of_read: first.decode_bw_ratio,
        build: String::new(),
    })
}

/// Output of a finished child, or an error with its stderr's tail and the hint.
fn output(mut c: Command, what: &str, hint: &str) -> Result<String, String> {
    let o = c.output().map_err(|e| format!("{what}: {e}"))?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let tail: Vec<&str> = err.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "{what} failed ({}):\n{}\n{hint}",
            o.status,
            tail.join("\n")
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The depth both engines are given (`-d`), if any.
fn depth_args(depth: usize) -> Option<String> {
    (depth > 0).then(|| depth.to_string())
}

fn run_ours(bin: &Path, model: &Path, a: &CompareArgs, threads: usize) -> Result<Measured, String> {
    let mut c = Command::new(bin);
    c.arg("bench")
        .arg("--json")
        .arg("--model")
        .arg(model)
        .args(["-p", &a.n_prompt.to_string(), "-n", &a.n_gen.to_string()])
        .args(["-t", &threads.to_string(), "-r", "1"]);
    if let Some(d) = depth_args(a.depth) {
        c.args(["-d", &d]);
    }
    let out = output(
        c,
        "bitnet-infer bench",
        "the model must be a BitNet GGUF this engine reads (`bitnet-infer info --model F` says why not)",
    )?;
    parse_ours(&out)
}

fn run_llama(
    bin: &Path,
    model: &Path,
    a: &CompareArgs,
    threads: usize,
) -> Result<Measured, String> {
    let mut c = Command::new(bin);
    c.arg("-m")
        .arg(model)
        .args(["-p", &a.n_prompt.to_string(), "-n", &a.n_gen.to_string()])
        .args(["-t", &threads.to_string(), "-r", "1", "-o", "json"]);
    if let Some(d) = depth_args(a.depth) {
        c.args(["-d", &d]);
    }
    let out = output(
        c,
        "llama-bench",
        "llama.cpp loads BitNet files of architecture `bitnet` with TQ2_0/TQ1_0 weights (not `bitnet-b1.58`, not I2_S): \
         `cargo xtask bench-model --arch bitnet` writes one; a broken build is rebuilt after `rm -r target/compare`",
    )?;
    let r = llama_cpp::parse(&out)?;
    Ok(Measured {
        prefill: r.prefill,
        decode: r.decode,
        read_gb_s: None,
        decode_of_read: None,
        build: r.build,
    })
}

/// Builds this engine's release binary (as `cargo xtask bench-convert` does).
fn build_ours() -> Result<PathBuf, String> {
    let root = crate::project_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "-p",
            "bitnet-edge",
            "--bin",
            "bitnet-infer",
        ])
        .status()
        .map_err(|e| format!("{cargo}: {e}"))?;
    if !status.success() {
        return Err(format!("building bitnet-infer failed ({status})"));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join("release/bitnet-infer"))
}

struct Host {
    cpu: String,
    cores: usize,
}

impl Host {
    fn probe() -> Host {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Host {
            cpu: cpu_model(&info).unwrap_or_else(|| "unknown CPU".into()),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// The first `model name` of /proc/cpuinfo.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "model name").then(|| v.trim().to_string())
    })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn stat_mean_stddev_range() {
        let s = Stat::of(&[10.0, 12.0, 14.0]);
        assert_relative_eq!(s.mean, 12.0);
        assert_relative_eq!(s.stddev, 2.0);
        assert_eq!((s.min, s.max), (10.0, 14.0));
        assert_eq!(Stat::of(&[5.0]).stddev, 0.0);
        assert_eq!(Stat::of(&[3.0, 1.0, 2.0]).median, 2.0);
        assert_eq!(Stat::of(&[4.0, 1.0, 3.0, 100.0]).median, 3.5);
    }

    #[test]
    fn ratio_of_means_and_per_round_range() {
        let r = row("pp128", 2, &[60.0, 40.0], &[30.0, 40.0]).unwrap();
        assert_relative_eq!(r.ratio, 50.0 / 35.0);
        assert_relative_eq!(r.ratio_min, 1.0);
        assert_relative_eq!(r.ratio_max, 2.0);
        assert!(row("tg32", 1, &[1.0], &[]).is_none());
    }

    #[test]
    fn table_rows() {
        let rows = vec![
            row("pp128", 1, &[27.2, 32.4], &[17.5, 17.4]).unwrap(),
            row("tg32", 1, &[5.55, 5.56], &[5.64, 5.94]).unwrap(),
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[2],
            "| pp128 | 1 | 29.80 ± 3.68 | 17.45 ± 0.07 | 1.71x (1.55-1.86) |"
        );
        assert_eq!(
            lines[3],
            "| tg32 | 1 | 5.555 ± 0.007 | 5.790 ± 0.212 | 0.96x (0.94-0.98) |"
        );
    }

    #[test]
    fn rows_per_test_then_threads() {
        let s = |t: usize, k: f64| Samples {
            threads: t,
            ours_pp: vec![2.0 * k],
            ours_tg: vec![k],
            theirs_pp: vec![k],
            theirs_tg: vec![k],
            read_gb_s: vec![],
            decode_of_read: vec![],
        };
        let r = rows(&[s(1, 1.0), s(2, 2.0)], 128, 32, 0);
        let names: Vec<(String, usize)> = r.iter().map(|r| (r.test.clone(), r.threads)).collect();
        assert_eq!(
            names,
            [
                ("pp128".into(), 1),
                ("pp128".into(), 2),
                ("tg32".into(), 1),
                ("tg32".into(), 2)
            ]
        );
        assert_relative_eq!(r[0].ratio, 2.0);
        // After cached positions the tests carry llama-bench's names.
        let r = rows(&[s(1, 1.0)], 128, 32, 1024);
        let names: Vec<&str> = r.iter().map(|r| r.test.as_str()).collect();
        assert_eq!(names, ["pp128 @ d1024", "tg32 @ d1024"]);
    }

    #[test]
    fn parses_our_bench_json() {
        let j = r#"{"model": "m.gguf", "weights": "TQ2_0", "results": [{"threads": 2,
            "prefill_tok_s": {"mean": 53.5, "stddev": 0.0, "samples": [53.5]},
            "decode_tok_s": {"mean": 9.6, "stddev": 0.0, "samples": [9.6]},
            "decode_gb_s": 11.6,
            "mem_read_gb_s": {"mean": 17.0, "stddev": 0.0, "samples": [17.0]},
            "decode_bw_ratio": 0.68}]}"#;
        let m = parse_ours(j).unwrap();
        assert_eq!(
            (m.prefill, m.decode, m.read_gb_s, m.decode_of_read),
            (Some(53.5), Some(9.6), Some(17.0), Some(0.68))
        );
        assert!(parse_ours("{\"results\": []}").is_err());
        assert!(parse_ours("error").is_err());
    }

    #[test]
    fn each_rounds_bandwidth_next_to_its_share() {
        let bw = |t, x: &[f64]| Bandwidth {
            threads: t,
            gb_s: Stat::of(x),
        };
        let share = |t, x: &[f64]| Share {
            threads: t,
            share: Stat::of(x),
        };
        let mut r = Report {
            date: String::new(),
            cpu: String::new(),
            cores: 2,
            load_average_before: String::new(),
            load_average_after: String::new(),
            model: String::new(),
            page_cache: String::new(),
            llama_cpp: String::new(),
            command: String::new(),
            read_bandwidth: vec![bw(1, &[33.04, 34.0]), bw(2, &[64.2, 36.6])],
            decode_of_read_bandwidth: vec![share(1, &[0.921, 0.93]), share(2, &[0.846, 0.97])],
            rows: vec![],
        };
        assert_eq!(
            by_round(&r),
            "* each round's bandwidth and decode's share of it: 1 thread(s) 33.0 GB/s 92%, \
             34.0 GB/s 93%; 2 thread(s) 64.2 GB/s 85%, 36.6 GB/s 97%\n"
        );
        // Samples that do not pair up round by round are left out, not misaligned.
        r.decode_of_read_bandwidth[1] = share(2, &[0.846]);
        assert!(!by_round(&r).contains("2 thread(s)"));
        r.read_bandwidth.clear();
        assert_eq!(by_round(&r), "");
    }

    #[test]
    fn cpu_model_of_cpuinfo() {
        let info = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor @ 2.10GHz\n";
        assert_eq!(
            cpu_model(info).as_deref(),
            Some("Intel(R) Xeon(R) Processor @ 2.10GHz")
        );
        assert_eq!(cpu_model("processor : 0\n"), None);
    }
}
