//! `bench --profile`: one more prefill and one more decode run with the library's per-part
//! timers on (`bitnet::profile`), reported per token next to what each part must read (decode)
//! or compute (prefill), so each part can be held against its own bound.

use bitnet::model::Model;
use bitnet::profile::{self, Part, Profile};

/// What one run of a test did, for the per-token figures.
pub struct Run {
    /// "pp128", "tg32".
    pub test: String,
    pub threads: usize,
    /// Tokens the run evaluated.
    pub tokens: usize,
    /// Decode: bytes each step reads (weights, and the mean of the cache); None for prefill.
    pub kv_read: Option<f64>,
    /// The read bandwidth `bench` measured on these threads, GB/s.
    pub mem_gb_s: Option<f64>,
    /// Decode: ns per pass of [`Model::ternary_one_section`] on the same threads.
    pub one_section_ns: Option<f64>,
}

/// Mean ns per pass of [`Model::ternary_one_section`] over `passes` passes (after one
/// untimed pass).
pub fn one_section(model: &Model, exec: &dyn bitnet::parallel::Exec, passes: usize) -> f64 {
    model.ternary_one_section(exec);
    let t = std::time::Instant::now();
    for _ in 0..passes.max(1) {
        model.ternary_one_section(exec);
    }
    t.elapsed().as_nanos() as f64 / passes.max(1) as f64
}

/// Runs `f` (one forward-pass test) with profiling on and returns what it recorded.
pub fn record<T>(f: impl FnOnce() -> T) -> (T, Profile) {
    profile::reset();
    profile::enable(true);
    let out = f();
    profile::enable(false);
    (out, profile::snapshot())
}

pub fn print(model: &Model, run: &Run, p: &Profile) {
    let per_tok = |ns: u64| ns as f64 / 1e6 / run.tokens as f64; // ms per token
    let total: u64 = p.wall_ns.iter().sum();
    let decode = run.kv_read.is_some();
    let bytes = |part: Part| -> Option<f64> {
        match part {
            Part::Ternary => Some(model.ternary_bytes() as f64),
            Part::Head => Some(model.head().byte_len() as f64),
            Part::Attention => run.kv_read,
            _ => None,
        }
    };
    println!(
        "\nprofile {}, {} thread{}: {:.2} ms per token in the forward pass",
        run.test,
        run.threads,
        if run.threads == 1 { "" } else { "s" },
        per_tok(total)
    );
    if decode {
        println!("| part | ms/token | share | MB read/token | GB/s | of mem read | threads busy |");
        println!("| :--- | -------: | ----: | ------------: | ---: | ----------: | -----------: |");
    } else {
        println!("| part | ms/token | share | threads busy |");
        println!("| :--- | -------: | ----: | -----------: |");
    }
    for part in Part::ALL {
        let (wall, busy) = (p.wall_ns[part as usize], p.busy_ns[part as usize]);
        let share = format!("{:.1}%", 100.0 * wall as f64 / total.max(1) as f64);
        // Of the thread time the part's wall time offered, the share spent inside tasks;
        // the rest went to waking, waiting and imbalance.
        let busy = if busy > 0 {
            format!(
                "{:.0}%",
                100.0 * busy as f64 / (wall as f64 * run.threads as f64)
            )
        } else {
            "-".into()
        };
        let ms = format!("{:.3}", per_tok(wall));
        if !decode {
            println!("| {} | {ms} | {share} | {busy} |", part.name());
            continue;
        }
        let (mb, gb_s, of_mem) = match bytes(part) {
            Some(b) if wall > 0 => {
                let gb_s = b / (wall as f64 / run.tokens as f64);
                let of_mem = run
                    .mem_gb_s
                    .map(|m| format!("{:.0}%", 100.0 * gb_s / m))
                    .unwrap_or_default();
                (format!("{:.1}", b / 1e6), format!("{gb_s:.1}"), of_mem)
            }
            _ => Default::default(),
        };
        println!(
            "| {} | {ms} | {share} | {mb} | {gb_s} | {of_mem} | {busy} |",
            part.name()
        );
        if let (Part::Ternary, Some(ns)) = (part, run.one_section_ns) {
            let b = model.ternary_bytes() as f64;
            let gb_s = b / ns;
            let of_mem = run
                .mem_gb_s
                .map(|m| format!("{:.0}%", 100.0 * gb_s / m))
                .unwrap_or_default();
            println!(
                "| (the same in one section) | {:.3} |  | {:.1} | {gb_s:.1} | {of_mem} | - |",
                ns / 1e6,
                b / 1e6
            );
        }
    }
    if !decode {
        // Every ternary weight meets every token once: one int8 multiply-add each.
        let macs = model.ternary_weights() as f64 * run.tokens as f64;
        let secs = p.wall_ns[Part::Ternary as usize] as f64 / 1e9;
        println!(
            "ternary layers: {:.1} G int8 multiply-adds per second ({:.2} G weights x {} tokens)",
            macs / secs / 1e9,
            model.ternary_weights() as f64 / 1e9,
            run.tokens
        );
    }
}
