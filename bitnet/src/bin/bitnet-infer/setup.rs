//! What every command does before running a model: pick the kernel and the threads, load,
//! and apply the head option.

use bitnet::gguf::GgufFile;
use bitnet::kernels::prefetch::{self, Prefetch};
use bitnet::kernels::Kernel;
use bitnet::model::{Config, KvCache, KvType, KvTypes, Model};
use bitnet::parallel::Pool;

use crate::args::{KernelArgs, KvArgs};

/// `--kernel`, else `BITNET_KERNEL`, else the best kernel this CPU runs; also applies
/// `--prefetch` (else `BITNET_PREFETCH`, else auto).
pub fn kernel(a: &KernelArgs) -> Result<Kernel, String> {
    prefetch::set(prefetch_choice(a)?);
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

fn prefetch_choice(a: &KernelArgs) -> Result<Prefetch, String> {
    let (source, name) = match &a.prefetch {
        Some(name) => ("--prefetch", name.clone()),
        None => match std::env::var("BITNET_PREFETCH") {
            Ok(name) if !name.is_empty() => ("BITNET_PREFETCH", name),
            _ => return Ok(Prefetch::Auto),
        },
    };
    Prefetch::from_name(&name).ok_or_else(|| {
        format!(
            "{source}: unknown value '{name}' (expected one of: {})",
            Prefetch::NAMES.join(", ")
        )
    })
}

/// `-t 1,2`: the thread counts to measure, else the physical cores alone.
pub fn thread_counts(t: Option<&[usize]>) -> Result<Vec<usize>, String> {
    match t {
        Some(t) if t.contains(&0) => Err("-t: thread counts must be at least 1".into()),
        Some(t) if !t.is_empty() => Ok(t.to_vec()),
        _ => Ok(vec![threads(None)?]),
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

/// `Model::load`, its weights on huge pages where the allocator can (`hugealloc`).
pub fn load_model(file: &GgufFile, kernel: Kernel) -> Result<Model, bitnet::model::ModelError> {
    let load = || Model::load(file.gguf(), file.source(), kernel);
    #[cfg(target_os = "linux")]
    return crate::hugealloc::packed(load);
    #[cfg(not(target_os = "linux"))]
    load()
}

/// Loads the model with the selected kernel and applies `--head` and `--head-in-file`.
pub fn load(file: &GgufFile, shown: &str, a: &KernelArgs, pool: &Pool) -> Result<Model, String> {
    let kernel = kernel(a)?;
    let mut model = load_model(file, kernel).map_err(|e| format!("{shown}: {e}"))?;
    if a.head == "q8_0" {
        model
            .quantize_head_q8_0(pool)
            .map_err(|e| format!("{shown}: {}", crate::errors::model(e)))?;
    } else if !a.head_in_file {
        model.copy_head_to_memory();
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

/// The KV cache types the flags choose: `--kv-type-k` / `--kv-type-v` over `--kv-type` over
/// `--kv-bits`, f16 by default. A block type (q8_0, q4_0) on a model whose head size is not
/// a multiple of its 32-element block is refused naming the flag that chose it.
pub fn kv_types(a: &KvArgs, c: &Config) -> Result<KvTypes, String> {
    let parse = |flag: &str, name: &str| {
        KvType::from_name(name).ok_or_else(|| format!("{flag}: unknown KV cache type '{name}'"))
    };
    let mut both = (KvType::F16, String::new());
    if let Some(bits) = &a.kv_bits {
        let t = bits.parse().ok().and_then(KvType::from_bits);
        let t = t.ok_or_else(|| format!("--kv-bits {bits}: expected 16, 8 or 4"))?;
        both = (t, format!("--kv-bits {bits}"));
    }
    if let Some(name) = &a.kv_type {
        both = (parse("--kv-type", name)?, format!("--kv-type {name}"));
    }
    let pick = |flag: &str, over: &Option<String>| match over {
        Some(name) => Ok((parse(flag, name)?, format!("{flag} {name}"))),
        None => Ok::<_, String>(both.clone()),
    };
    let (k, v) = (
        pick("--kv-type-k", &a.kv_type_k)?,
        pick("--kv-type-v", &a.kv_type_v)?,
    );
    for (t, flag) in [&k, &v] {
        if !c.head_dim.is_multiple_of(t.block_elems()) {
            return Err(format!(
                "{flag}: a {t} KV cache stores blocks of {} elements along each head, and this \
                 model's head size is {}; use f16 or f32",
                t.block_elems(),
                c.head_dim
            ));
        }
    }
    Ok(KvTypes { k: k.0, v: v.0 })
}

/// Refuses, before anything is allocated, `seqs` KV caches of `ctx` positions that would not
/// fit in the memory the system reports available (Linux `MemAvailable`), with the bytes
/// they would need. Elsewhere only the library's fixed cap applies.
pub fn check_kv_memory(types: KvTypes, c: &Config, ctx: usize, seqs: usize) -> Result<(), String> {
    let need =
        KvCache::bytes_needed(types, c.n_layer, ctx, c.kv_dim()).and_then(|b| b.checked_mul(seqs));
    kv_fits(need, crate::stats::mem_available_bytes(), types, ctx, seqs)
}

fn kv_fits(
    need: Option<usize>,
    available: Option<u64>,
    types: KvTypes,
    ctx: usize,
    seqs: usize,
) -> Result<(), String> {
    let what = if seqs == 1 {
        format!("a {types} KV cache of {ctx} positions")
    } else {
        format!("{seqs} {types} KV caches of {ctx} positions")
    };
    let Some(need) = need else {
        return Err(format!(
            "{what} would need more bytes than this machine can address"
        ));
    };
    match available {
        Some(avail) if need as u64 > avail => Err(format!(
            "{what} would need {need} bytes ({:.2} GiB), more than the {avail} bytes ({:.2} GiB) \
             this machine has available (MemAvailable); lower --ctx{} or choose a smaller \
             --kv-type (q8_0, q4_0)",
            need as f64 / (1u64 << 30) as f64,
            avail as f64 / (1u64 << 30) as f64,
            if seqs > 1 { " or --batch-size" } else { "" }
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_cache_larger_than_available_memory_is_refused_with_its_bytes() {
        let t = KvTypes::from(KvType::Q8_0);
        let e = kv_fits(Some(5 << 30), Some(4 << 30), t, 4096, 1).unwrap_err();
        assert!(e.contains("5368709120 bytes"), "{e}");
        assert!(e.contains("a q8_0 KV cache of 4096 positions"), "{e}");
        assert!(e.contains("lower --ctx"), "{e}");
        let e = kv_fits(Some(5 << 30), Some(4 << 30), t, 64, 3).unwrap_err();
        assert!(
            e.contains("3 q8_0 KV caches") && e.contains("--batch-size"),
            "{e}"
        );
        assert!(kv_fits(Some(4 << 30), Some(4 << 30), t, 4096, 1).is_ok());
        assert!(kv_fits(Some(5 << 30), None, t, 4096, 1).is_ok());
        assert!(kv_fits(None, Some(1), t, usize::MAX, 1).is_err());
    }
}
