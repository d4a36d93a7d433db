//! The counters as a person reads them: a Markdown table per model and an SVG bar chart of
//! decode instructions per token by board and kernel, split into the parts of a token.

use std::fmt::Write as _;

use super::parts::{Part, PARTS};
use super::Row;

/// `1.213 G`, `3.35 M`, `812.0 k`.
pub fn si(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.3} G", v / 1e9),
        v if v >= 1e6 => format!("{:.2} M", v / 1e6),
        v if v >= 1e3 => format!("{:.1} k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

fn models(rows: &[Row]) -> Vec<&str> {
    let mut m: Vec<&str> = Vec::new();
    for r in rows {
        if !m.contains(&r.model.as_str()) {
            m.push(&r.model);
        }
    }
    m
}

/// The same model's run of `kernel` on `r`'s target and profile.
fn sibling<'a>(rows: &'a [Row], r: &Row, kernel: &str) -> Option<&'a Row> {
    rows.iter().find(|o| {
        o.model == r.model && o.triple == r.triple && o.profile == r.profile && o.kernel == kernel
    })
}

/// The host's AVX2 kernel on the same model (qemu-x86_64 runs no AVX-512).
fn x86_avx2<'a>(rows: &'a [Row], model: &str) -> Option<&'a Row> {
    rows.iter()
        .find(|o| o.model == model && o.triple.starts_with("x86_64") && o.kernel == "avx2")
}

pub fn markdown(rows: &[Row]) -> String {
    let mut s = String::new();
    for model in models(rows) {
        let _ = writeln!(
            s,
            "**{model}** (instructions per token; the decode columns split its instructions into the parts of a token)\n"
        );
        let _ = writeln!(
            s,
            "| target | board | kernel | prefill | decode | decode loads / stores (bytes) | ternary | head | attention | norms | rest | scalar ÷ kernel | ÷ x86 avx2 |"
        );
        let _ = writeln!(
            s,
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        let avx2 = x86_avx2(rows, model);
        for r in rows.iter().filter(|r| r.model == model) {
            let (p, d) = (r.prefill_per_token(), r.decode_per_token());
            let share = |part: Part| {
                let n = r.decode.parts.get(&part).copied().unwrap_or(0) as f64;
                format!("{:.0}%", 100.0 * n / r.decode.instructions.max(1) as f64)
            };
            let vs_scalar = sibling(rows, r, "scalar").map_or("-".into(), |sc| {
                format!(
                    "{:.2}x",
                    sc.decode_per_token().instructions / d.instructions
                )
            });
            let vs_avx2 = avx2.map_or("-".into(), |x| {
                format!("{:.2}", d.instructions / x.decode_per_token().instructions)
            });
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {}B / {}B | {} | {} | {} | {} | {} | {vs_scalar} | {vs_avx2} |",
                r.triple,
                r.profile,
                r.kernel,
                si(p.instructions),
                si(d.instructions),
                si(d.loaded_bytes),
                si(d.stored_bytes),
                share(Part::Ternary),
                share(Part::Head),
                share(Part::Attention),
                share(Part::Norms),
                share(Part::Rest),
            );
        }
        s.push('\n');
    }
    s
}

/// Where `--readme` puts the plot the README shows.
pub const README_PLOT: &str = "qemu/counters.svg";
const BEGIN: &str = "<!-- counters:begin (cargo xtask counters --readme writes this) -->";
const END: &str = "<!-- counters:end -->";

/// Replaces the README's text between the counters marks with `table`.
pub fn into_readme(readme: &std::path::Path, table: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(readme).map_err(|e| format!("{}: {e}", readme.display()))?;
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        return Err(format!(
            "{}: no `{BEGIN}` ... `{END}` section to write the table into",
            readme.display()
        ));
    };
    let rustc = crate::setup::stdout_of("rustc", &["--version"]);
    let new = format!(
        "{}{BEGIN}\n\nCounted {} with {} and QEMU {} (`cargo xtask counters --readme`).\n\n{table}{}",
        &text[..b],
        crate::setup::stdout_of("date", &["-u", "+%Y-%m-%d"]).trim(),
        rustc.trim(),
        super::qemu::VERSION,
        &text[e..]
    );
    std::fs::write(readme, new).map_err(|e| format!("{}: {e}", readme.display()))
}

const COLORS: [&str; 5] = ["#3b6ea8", "#e0a030", "#5aa05a", "#b05a8c", "#9a9a9a"];

/// Horizontal stacked bars of decode instructions per token, one per counted run of the
/// largest model counted (the 2B4T shape when present).
pub fn svg(rows: &[Row]) -> String {
    let model = models(rows)
        .into_iter()
        .max_by_key(|m| {
            rows.iter()
                .filter(|r| r.model == *m)
                .map(|r| r.decode.instructions / r.decode_tokens.max(1) as u64)
                .max()
                .unwrap_or(0)
        })
        .unwrap_or_default();
    let rows: Vec<&Row> = rows.iter().filter(|r| r.model == model).collect();
    let (label_w, bar_h, gap, top, width) = (330.0, 16.0, 6.0, 60.0, 1000.0);
    let plot_w = width - label_w - 110.0;
    // The scalar fallbacks do several times the SIMD kernels' work: the axis ends a little
    // past the largest SIMD kernel, and longer bars are cut there, their totals written out.
    let total = |r: &&Row| r.decode_per_token().instructions;
    let simd_max = rows
        .iter()
        .filter(|r| r.kernel != "scalar")
        .map(total)
        .fold(0.0, f64::max);
    let all_max = rows.iter().map(total).fold(1.0, f64::max);
    let max = if simd_max > 0.0 {
        (simd_max * 1.15).min(all_max)
    } else {
        all_max
    };
    let step = nice_step(max / 5.0);
    let height = top + rows.len() as f64 * (bar_h + gap) + 50.0;
    let x = |v: f64| label_w + plot_w * v / max;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="20" font-size="15">Guest instructions per decode token, {model} (QEMU plugin counts)</text>"#
    );
    for (i, part) in PARTS.iter().enumerate() {
        let lx = label_w + i as f64 * 110.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="32" width="12" height="12" fill="{}"/><text x="{}" y="43">{}</text>"#,
            COLORS[i],
            lx + 16.0,
            part.name()
        );
    }
    let mut t = 0.0;
    while t <= max * 1.0001 {
        let tx = x(t);
        let _ = writeln!(
            s,
            r##"<line x1="{tx:.1}" y1="{top}" x2="{tx:.1}" y2="{:.1}" stroke="#ddd"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            height - 40.0,
            height - 25.0,
            si(t)
        );
        t += step;
    }
    for (i, r) in rows.iter().enumerate() {
        let y = top + i as f64 * (bar_h + gap);
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{} · {} · {}</text>"#,
            label_w - 8.0,
            y + bar_h - 4.0,
            short(&r.triple),
            r.profile,
            r.kernel
        );
        let mut at = 0.0;
        for (j, part) in PARTS.iter().enumerate() {
            let n = r.decode.parts.get(part).copied().unwrap_or(0) as f64
                / r.decode_tokens.max(1) as f64;
            let w = plot_w * (at + n).min(max) / max - plot_w * at.min(max) / max;
            let _ = writeln!(
                s,
                r#"<rect x="{:.1}" y="{y:.1}" width="{w:.1}" height="{bar_h}" fill="{}"/>"#,
                x(at.min(max)),
                COLORS[j]
            );
            at += n;
        }
        let cut = if at > max { " (cut)" } else { "" };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{}{cut}</text>"#,
            x(at.min(max)) + 4.0,
            y + bar_h - 4.0,
            si(at)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{label_w}" y="{:.1}">instructions per token</text></svg>"#,
        height - 8.0
    );
    s
}

/// `aarch64-musl` for `aarch64-unknown-linux-musl`.
fn short(triple: &str) -> String {
    triple.replace("-unknown-linux", "")
}

/// 1, 2 or 5 times a power of ten, at least `v`.
fn nice_step(v: f64) -> f64 {
    let p = 10f64.powf(v.max(1.0).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= v)
        .unwrap_or(10.0 * p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round_and_numbers_short() {
        assert_eq!(nice_step(1.7e9), 2e9);
        assert_eq!(nice_step(3e8), 5e8);
        assert_eq!(nice_step(1e6), 1e6);
        assert_eq!(si(1_213_249_626.0), "1.213 G");
        assert_eq!(si(3_350_000.0), "3.35 M");
        assert_eq!(si(812.0), "812");
    }
}
