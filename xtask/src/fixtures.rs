//! `cargo xtask fixtures`: writes `fixtures/<name>.gguf` and `<name>.golden.npy` for every
//! synthetic fixture spec. The files are a pure function of the specs in `bitnet::synth`.

use std::fs;

use bitnet::{npy, synth};

use crate::flags::FixturesArgs;

pub fn run(a: &FixturesArgs) -> Result<(), String> {
    let dir = crate::project_root().join("fixtures");
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut stale = Vec::new();
    for spec in synth::fixture_specs() {
        let model = synth::build(&spec)?;
        let logits = synth::golden_logits(model.clone())?;
        let n_pos = synth::fixture_prompt_tokens().len();
        let golden = npy::write_f32(&[n_pos, logits.len() / n_pos], &logits);
        for (file, bytes) in [
            (format!("{}.gguf", spec.name), model),
            (format!("{}.golden.npy", spec.name), golden),
        ] {
            let path = dir.join(&file);
            if fs::read(&path).ok().as_deref() == Some(&bytes[..]) {
                continue;
            }
            if a.check {
                stale.push(file);
            } else {
                fs::write(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
                println!("wrote {} ({} bytes)", path.display(), bytes.len());
            }
        }
    }
    if !stale.is_empty() {
        return Err(format!(
            "fixtures differ from the generator: {}; run `cargo xtask fixtures`",
            stale.join(", ")
        ));
    }
    println!("fixtures up to date in {}", dir.display());
    Ok(())
}
