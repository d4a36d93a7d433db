//! What every harness command starts from: the project root, the target matrix, a shell,
//! and the evaluation inputs the flags ask for.

use std::path::PathBuf;
use std::time::Duration;

use xshell::Shell;

use crate::flags::{EvalArgs, Xtask};
use crate::pipeline::inputs::{self, Inputs};
use crate::targets::{Matrix, Target, HOST};

pub struct Ctx {
    pub sh: Shell,
    pub root: PathBuf,
    pub matrix: Matrix,
    /// Scratch space for logits, stripped copies, reports.
    pub scratch: PathBuf,
}

impl Ctx {
    pub fn new(x: &Xtask) -> Result<Ctx, String> {
        let root = crate::project_root();
        let matrix = Matrix::load(&root.join(&x.targets), &root.join(&x.profiles))?;
        let sh = Shell::new().map_err(|e| e.to_string())?;
        sh.change_dir(&root);
        let scratch = root.join("target/xtask");
        Ok(Ctx {
            sh,
            root,
            matrix,
            scratch,
        })
    }

    pub fn host(&self) -> Result<Target, String> {
        self.matrix
            .targets
            .iter()
            .find(|t| t.is_host())
            .cloned()
            .ok_or_else(|| format!("targets.toml has no entry for the host {HOST}"))
    }

    pub fn inputs(&self, e: &EvalArgs) -> Result<Inputs, String> {
        let models = if e.model.is_empty() {
            fixture_models(&self.root.join("fixtures"))?
        } else {
            e.model.iter().map(|m| self.root.join(m)).collect()
        };
        if models.is_empty() {
            return Err(
                "no models to validate: fixtures/ has no .gguf (run `cargo xtask fixtures`)".into(),
            );
        }
        let cases = models
            .iter()
            .map(|m| inputs::case(m, e.prompt_tokens.as_deref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Inputs {
            cases,
            decode_steps: e.decode_steps,
            tolerance: e.tolerance,
            timeout: Duration::from_secs(e.timeout),
            inject_fault: e.inject_fault.clone(),
            scratch: self.scratch.join("logits"),
            counters: None,
        })
    }
}

/// The models the matrix validates by default: every `fixtures/*.gguf` (tiny, random, with
/// numpy goldens), then every trained `fixtures/<dir>/model.gguf` (with transformers'
/// expected logits), each group sorted.
fn fixture_models(dir: &std::path::Path) -> Result<Vec<PathBuf>, String> {
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|err| format!("{}: {err}", dir.display()))?
        .filter_map(|d| d.ok().map(|d| d.path()))
        .collect();
    let mut tiny: Vec<PathBuf> = entries
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .cloned()
        .collect();
    let mut trained: Vec<PathBuf> = entries
        .iter()
        .map(|p| p.join("model.gguf"))
        .filter(|p| p.is_file())
        .collect();
    tiny.sort();
    trained.sort();
    tiny.extend(trained);
    Ok(tiny)
}
