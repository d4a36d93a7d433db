//! `cargo xtask size-report`: stripped size, sections, linkage and kernel entry points of
//! each target binary, against the budgets; JSON baselines to save and compare.

use crate::checks::size::{check, inspect, SizeInfo};

/// The `size-report` command.
pub fn run(ctx: &crate::ctx::Ctx, a: &crate::flags::SizeArgs) -> Result<(), String> {
    let targets = ctx.matrix.select(&a.select.target)?;
    let mut infos = Vec::new();
    let mut errors = Vec::new();
    for t in &targets {
        let missing: Vec<String> = crate::setup::build_checks(t)
            .into_iter()
            .filter(|c| !c.ok)
            .map(|c| c.what)
            .collect();
        if !missing.is_empty() {
            errors.push(format!(
                "{}: missing {}: run `cargo xtask setup`",
                t.triple,
                missing.join(", ")
            ));
            continue;
        }
        match crate::pipeline::build::binary(&ctx.sh, t, None)
            .and_then(|b| inspect(t, &b, &ctx.scratch.join("size")))
        {
            Ok(s) => {
                errors.extend(check(t, &s).into_iter().map(|f| f.message));
                infos.push((t.clone(), s));
            }
            Err(e) => errors.push(e),
        }
    }
    let baseline: Vec<SizeInfo> = match &a.compare {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            serde_json::from_str(&text)
                .map_err(|e| format!("{}: not a size baseline: {e}", p.display()))?
        }
        None => Vec::new(),
    };
    let (open, sep, close) = if a.markdown {
        ("| ", " | ", " |")
    } else {
        ("", "  ", "")
    };
    let head = [
        "target",
        "stripped",
        "budget",
        ".text",
        ".rodata",
        "linkage",
        "kernels",
        "vs baseline",
    ];
    if a.markdown {
        println!(
            "{open}{}{close}\n|{}",
            head.join(sep),
            "---|".repeat(head.len())
        );
    } else {
        println!(
            "{:<34}{sep}{:>10}{sep}{:>10}{sep}{:>9}{sep}{:>9}{sep}{:<8}{sep}{:<28}{sep}{}",
            head[0], head[1], head[2], head[3], head[4], head[5], head[6], head[7]
        );
    }
    for (t, s) in &infos {
        let linkage = if s.is_static {
            "static".to_string()
        } else {
            "dynamic".to_string()
        };
        let delta = baseline
            .iter()
            .find(|b| b.triple == s.triple)
            .map_or("-".to_string(), |b| {
                format!(
                    "{:+} bytes",
                    s.stripped_bytes as i64 - b.stripped_bytes as i64
                )
            });
        let kernels = s.kernels.join(" ");
        if a.markdown {
            println!(
                "{open}{}{sep}{}{sep}{}{sep}{}{sep}{}{sep}{linkage}{sep}{kernels}{sep}{delta}{close}",
                t.triple, s.stripped_bytes, t.size_budget, s.text_bytes, s.rodata_bytes
            );
        } else {
            println!(
                "{:<34}{sep}{:>10}{sep}{:>10}{sep}{:>9}{sep}{:>9}{sep}{linkage:<8}{sep}{kernels:<28}{sep}{delta}",
                t.triple, s.stripped_bytes, t.size_budget, s.text_bytes, s.rodata_bytes
            );
        }
        if let Some(interp) = &s.interpreter {
            if !a.markdown {
                println!("    interpreter {interp}; needs {}", s.needed.join(", "));
            }
        }
    }
    if let Some(p) = &a.save {
        let list: Vec<&SizeInfo> = infos.iter().map(|(_, s)| s).collect();
        std::fs::write(p, serde_json::to_string_pretty(&list).unwrap_or_default())
            .map_err(|e| format!("{}: {e}", p.display()))?;
        println!("saved baseline {}", p.display());
    }
    for e in &errors {
        println!("  - {e}");
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("size report: {} problem(s)", errors.len()))
    }
}
