//! The matrix as a table: one row per (target, profile), plain text or Markdown, then
//! the unproven kernels and every failure.

use super::{MatrixReport, ProfileReport, TargetReport};

const HEAD: [&str; 9] = [
    "target",
    "profile",
    "size / budget",
    "kernels: exactness cases passed/ran",
    "positions (prefill+decode)",
    "max |diff| host",
    "max |diff| reference",
    "logits bit-identical",
    "verdict",
];

fn sci(v: Option<f32>) -> String {
    v.map_or("-".into(), |d| format!("{d:.1e}"))
}

fn kernels_cell(t: &TargetReport, p: &ProfileReport) -> String {
    if p.refusal {
        return "refuses to start (exit 2)".into();
    }
    let names: Vec<&String> = p.kernels.keys().collect();
    match &p.kernel_tests {
        Some(tests) => {
            let mut all: Vec<&String> = names.clone();
            all.extend(tests.keys().filter(|k| !names.contains(k)));
            all.iter()
                .map(|k| {
                    tests.get(*k).map_or(format!("{k} 0/0"), |c| {
                        format!("{k} {}/{}", c.passed, c.ran)
                    })
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
        None if names.is_empty() => t.symbols.join(" "),
        None => format!(
            "{} (logits only: no test binary)",
            names
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn row(t: &TargetReport, p: Option<&ProfileReport>) -> [String; 9] {
    let size = t.size_bytes.map_or("build FAILED".into(), |s| {
        format!(
            "{:.0} / {:.0} KiB",
            s as f64 / 1024.0,
            t.budget_bytes as f64 / 1024.0
        )
    });
    let Some(p) = p else {
        return [
            t.triple.clone(),
            "-".into(),
            size,
            t.symbols.join(" "),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            t.status.word().into(),
        ];
    };
    let positions = p.kernels.values().next().map_or("-".into(), |k| {
        format!("{}+{}", k.prefill_positions, k.decode_positions)
    });
    let identical = match (p.logits_bit_identical, p.refusal) {
        (_, true) => "-".to_string(),
        (None, _) => "-".into(),
        (Some(all), _) => {
            let exact: Vec<&str> = p
                .kernels
                .iter()
                .filter(|(_, k)| k.logits_bit_identical)
                .map(|(n, _)| n.as_str())
                .collect();
            if all {
                "all".into()
            } else if exact.is_empty() {
                "none".into()
            } else {
                exact.join(" ")
            }
        }
    };
    [
        t.triple.clone(),
        p.name.clone(),
        size,
        kernels_cell(t, p),
        positions,
        sci(p.max_abs_vs_host),
        sci(p.max_abs_vs_oracle),
        identical,
        p.status.word().into(),
    ]
}

pub fn render(m: &MatrixReport, markdown: bool) -> String {
    let mut rows: Vec<[String; 9]> = Vec::new();
    for t in &m.targets {
        if t.profiles.is_empty() {
            rows.push(row(t, None));
        }
        for p in &t.profiles {
            rows.push(row(t, Some(p)));
        }
    }
    let mut out = String::new();
    if markdown {
        out += &format!("| {} |\n|{}\n", HEAD.join(" | "), "---|".repeat(HEAD.len()));
        for r in &rows {
            out += &format!("| {} |\n", r.join(" | "));
        }
    } else {
        let mut w = HEAD.map(str::len);
        for r in &rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.len());
            }
        }
        let line = |cells: Vec<&str>| {
            cells
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<width$}", width = w[i]))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
                + "\n"
        };
        out += &line(HEAD.to_vec());
        for r in &rows {
            out += &line(r.iter().map(String::as_str).collect());
        }
    }
    let bullet = if markdown { "- " } else { "  - " };
    for t in &m.targets {
        for u in &t.unproven {
            out += &format!(
                "{bullet}unproven: {} {}: {}\n",
                t.triple,
                u.kernels.join(", "),
                u.why
            );
        }
    }
    for f in m.targets.iter().flat_map(TargetReport::all_failures) {
        out += &format!("{bullet}{:?}: {}\n", f.kind, f.message);
    }
    out
}
