//! `cargo xtask fixtures`: writes `fixtures/<name>.gguf` for every synthetic fixture spec.
//! The files are a pure function of the specs in `bitnet::synth`; `--check` only compares.
//!
//! The golden logits next to them (`<name>.golden.npy`, `<name>.golden-kv-f16.npy`,
//! `<name>.golden.json`) are not written here: they come from the independent numpy
//! reference, `python3 tools/reference/golden.py --bin <bitnet-infer>` (see
//! tools/reference/README.md). Regenerate them after changing a fixture.

use std::fs;

use bitnet::synth;

use crate::flags::FixturesArgs;

pub fn run(a: &FixturesArgs) -> Result<(), String> {
    let dir = crate::project_root().join("fixtures");
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut stale = Vec::new();
    let mut wrote = false;
    for spec in synth::fixture_specs() {
        let bytes = synth::build(&spec)?;
        let file = format!("{}.gguf", spec.name);
        let path = dir.join(&file);
        if fs::read(&path).ok().as_deref() == Some(&bytes[..]) {
            continue;
        }
        if a.check {
            stale.push(file);
        } else {
            fs::write(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            println!("wrote {} ({} bytes)", path.display(), bytes.len());
            wrote = true;
        }
    }
    if !stale.is_empty() {
        return Err(format!(
            "fixtures differ from the generator: {}; run `cargo xtask fixtures`",
            stale.join(", ")
        ));
    }
    if wrote {
        println!(
            "the golden logits are now stale: run `python3 tools/reference/golden.py --bin <bitnet-infer>`"
        );
    }
    println!("fixtures up to date in {}", dir.display());
    Ok(())
}
