//! The committed instruction counts the matrix holds every kernel to
//! (`qemu/counters-baseline.json`): guest instructions per prefill and per decode token,
//! per model, target, board profile and kernel. Counts under QEMU are exact and
//! deterministic, so the gate is exact: more than 3% over the baseline fails.
//! `cargo xtask counters --save-baseline` rewrites it; commit it with the reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Row;

/// How much a kernel's instructions per token may grow before the matrix fails.
pub const GROWTH_LIMIT: f64 = 0.03;

pub fn path() -> PathBuf {
    crate::project_root().join("qemu/counters-baseline.json")
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Baseline {
    /// The compiler the counts came from: another rustc moves them a little.
    pub rustc: String,
    /// `<model> <triple> <profile> <kernel>` -> instructions per token.
    pub entries: BTreeMap<String, Entry>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub prefill: f64,
    pub decode: f64,
}

pub fn key(model: &str, triple: &str, profile: &str, kernel: &str) -> String {
    format!("{model} {triple} {profile} {kernel}")
}

pub fn load(p: &Path) -> Result<Baseline, String> {
    let text = std::fs::read_to_string(p).map_err(|e| {
        format!(
            "{}: {e}: run `cargo xtask counters --save-baseline`",
            p.display()
        )
    })?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
}

/// Writes `rows` over the entries they name; others stay.
pub fn save(p: &Path, rows: &[Row]) -> Result<(), String> {
    let mut b = load(p).unwrap_or_default();
    b.rustc = crate::setup::stdout_of("rustc", &["--version"])
        .trim()
        .to_string();
    for r in rows {
        b.entries.insert(r.key(), r.entry());
    }
    let text = serde_json::to_string_pretty(&b).map_err(|e| e.to_string())?;
    std::fs::write(p, text + "\n").map_err(|e| format!("{}: {e}", p.display()))
}

/// Why `got` does not pass against `b` (None: it passes).
pub fn judge(b: &Baseline, key: &str, got: Entry) -> Option<String> {
    let Some(base) = b.entries.get(key) else {
        return Some(format!(
            "{key}: no baseline in qemu/counters-baseline.json: run `cargo xtask counters --save-baseline` and commit it with the reason"
        ));
    };
    let grew = |what: &str, now: f64, was: f64| {
        (now > was * (1.0 + GROWTH_LIMIT)).then(|| {
            format!(
                "{what} {now:.0} instructions per token, {:+.1}% over the baseline's {was:.0} (limit +{:.0}%)",
                (now / was - 1.0) * 100.0,
                GROWTH_LIMIT * 100.0
            )
        })
    };
    let problems: Vec<String> = [
        grew("prefill", got.prefill, base.prefill),
        grew("decode", got.decode, base.decode),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!problems.is_empty()).then(|| {
        format!(
            "{key}: {}; if the growth is intended, run `cargo xtask counters --save-baseline` and say why in the commit",
            problems.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_past_three_percent_fails_and_names_the_phase() {
        let mut b = Baseline::default();
        let k = key("m", "t", "p", "k");
        let base = Entry {
            prefill: 1000.0,
            decode: 2000.0,
        };
        b.entries.insert(k.clone(), base);
        assert_eq!(judge(&b, &k, base), None);
        let within = Entry {
            prefill: 1030.0,
            decode: 1500.0,
        };
        assert_eq!(judge(&b, &k, within), None);
        let e = judge(
            &b,
            &k,
            Entry {
                prefill: 1000.0,
                decode: 2061.0,
            },
        )
        .unwrap();
        assert!(e.contains("decode 2061") && e.contains("+3.0%"), "{e}");
        assert!(!e.contains("prefill"), "{e}");
        let e = judge(&b, &key("m", "t", "p", "other"), base).unwrap();
        assert!(e.contains("no baseline"), "{e}");
    }
}
