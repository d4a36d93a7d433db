//! `cargo xtask summary FILE...`: merges the per-target JSON reports of a fanned-out CI
//! run into one table (Markdown), for `$GITHUB_STEP_SUMMARY`; fails if any target failed.

use crate::flags::SummaryArgs;
use crate::report::{table, MatrixReport, Status};

pub fn run(a: &SummaryArgs) -> Result<(), String> {
    let mut merged = MatrixReport {
        ok: true,
        host: String::new(),
        targets: Vec::new(),
    };
    for path in &a.files {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let r: MatrixReport = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a matrix report: {e}", path.display()))?;
        merged.ok &= r.ok;
        if merged.host.is_empty() {
            merged.host = r.host;
        }
        merged.targets.extend(r.targets);
    }
    merged.ok &= merged.targets.iter().all(|t| t.status != Status::Fail);
    let md = format!(
        "## Target matrix ({} reports, host {})\n\n{}",
        a.files.len(),
        merged.host,
        table::render(&merged, true)
    );
    let out = a
        .markdown
        .clone()
        .or_else(|| std::env::var_os("GITHUB_STEP_SUMMARY").map(Into::into));
    match out {
        Some(p) => std::fs::write(&p, &md).map_err(|e| format!("{}: {e}", p.display()))?,
        None => print!("{md}"),
    }
    if merged.ok {
        Ok(())
    } else {
        Err("the merged matrix has failures".into())
    }
}
