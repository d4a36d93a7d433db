//! What every command does before running a model: pick the kernel and the threads, load,
//! and apply the head option.

use bitnet::gguf::GgufFile;
use bitnet::kernels::Kernel;
use bitnet::model::Model;
use bitnet::parallel::Pool;

use crate::args::KernelArgs;

/// `--kernel`, else `BITNET_KERNEL`, else the best kernel this CPU runs.
pub fn kernel(a: &KernelArgs) -> Result<Kernel, String> {
    if let Some(name) = &a.kernel {
        return Kernel::select(Some(name)).map_err(|e| format!("--kernel: {e}"));
    }
    match std::env::var("BITNET_KERNEL") {
        Ok(name) if !name.is_empty() => {
            Kernel::select(Some(&name)).map_err(|e| format!("BITNET_KERNEL: {e}"))
        }
        _ => Ok(Kernel::detect()),
    }
}

/// `--threads`, else the physical cores.
pub fn threads(n: Option<usize>) -> Result<usize, String> {
    match n {
        Some(0) => Err("--threads must be at least 1".into()),
        Some(n) => Ok(n),
        None => Ok(bitnet::cpu::physical_cores()),
    }
}

pub fn pool(threads: usize) -> Result<Pool, String> {
    Pool::new(threads).map_err(|e| format!("cannot start {threads} threads: {e}"))
}

/// Loads the model with the selected kernel and applies `--head`.
pub fn load(file: &GgufFile, shown: &str, a: &KernelArgs, pool: &Pool) -> Result<Model, String> {
    let kernel = kernel(a)?;
    let mut model =
        Model::load(file.gguf(), file.source(), kernel).map_err(|e| format!("{shown}: {e}"))?;
    if a.head == "q8_0" {
        model
            .quantize_head_q8_0(pool)
            .map_err(|e| format!("{shown}: {}", crate::errors::model(e)))?;
    }
    Ok(model)
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
