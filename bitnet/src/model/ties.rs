//! Debug records of the roundings where the f32 engine and an f64 computation of the same
//! model may disagree: what the float64 reference (`tools/reference`) reads so that it takes
//! the engine's choice there instead of guessing it.
//!
//! * `BITNET_DUMP_TIES=<path>`: the int8 code of every BitLinear input element whose `x * s`
//!   lies within [`WINDOW`] of a rounding tie `k + 0.5` (one code moves the logits by up to
//!   ~0.5).
//! * `BITNET_DUMP_KV_TIES=<path>`: the f16 stored for every key (after RoPE) or value of an
//!   f16 KV cache that lies within [`KV_WINDOW`] times the largest |element| of its row
//!   (the position's kv_dim keys, or values) of the midpoint of two f16 values.
//!
//! One line per element, in the order the engine computes them:
//! `<site> <pos> <elem> <x> <code>`. `pos` is the token's absolute position in its sequence
//! (prefill and decode alike) and `elem` the index in the row.
//! * Activations, e.g. `blk.0.ffn_sub_norm 4 270 10.500000000 10`: `site` is
//!   `blk.{layer}.{norm}`, the norm whose output is quantized (`attn_norm`, `attn_sub_norm`,
//!   `ffn_norm`, `ffn_sub_norm`), or for an input quantized without a norm (`llama` has no
//!   sub-norms) the projection that reads it (`attn_output`, `ffn_down`); `x` the engine's
//!   f32 `x * s`, printed `{:.9}`; `code` the int8 it stored.
//! * KV cache, e.g. `blk.0.cache_k 0 13 -7.990679e-1 -7.98828125e-1`: `site` is
//!   `blk.{layer}.cache_k` or `blk.{layer}.cache_v`, `elem` the index in the position's
//!   kv_dim row; `x` the f32 value and `code` the f16 stored, both in shortest round-trip
//!   `{:e}` (so `code` is exact).
//!
//! `x` is informative; `code` is what the reference takes.
//!
//! A file is created (truncated) at the first write of the process. With `--batch-size` > 1
//! the lines of every sequence go to the one file. std only; when a variable is unset the
//! cost per call is one load of an initialised `OnceLock`.

use super::ModelError;
use crate::kernels::ActBatch;

/// Half-width of the recorded band around `k + 0.5`: fifty times the f32 error of `x * s`
/// seen in the fixtures (~2e-5), and twice the band the reference acts on, so every value
/// the engine and an f64 computation may round apart is in the file.
#[cfg(feature = "std")]
const WINDOW: f64 = 1e-3;

/// The same for keys and values, relative to the row's largest |element|: their f32 error
/// is absolute, not relative to each element (RoPE mixes pairs in f32, with an f32 angle
/// `pos * freq`), up to ~5e-7 of the row's max in the fixtures. Twenty times that, twice the
/// reference's band. The error grows with the position (the angle's rounding).
#[cfg(feature = "std")]
const KV_WINDOW: f64 = 1e-5;

/// The activations `acts` were quantized from `rmsnorm(x) * w` (`norm = Some((w, eps))`) or
/// from `x` itself (`None`), one row of `x` per token, token `t` at `at[t] = (sequence,
/// position)`: appends their near-ties to the `BITNET_DUMP_TIES` file, if that variable is
/// set.
#[cfg(feature = "std")]
pub(crate) fn record(
    layer: usize,
    site: &str,
    x: &[f32],
    norm: Option<(&[f32], f32)>,
    acts: &ActBatch,
    at: &[(usize, usize)],
) -> Result<(), ModelError> {
    let Some(sink) = imp::ACTS.sink() else {
        return Ok(());
    };
    let lines = imp::act_lines(layer, site, x, norm, acts, at)?;
    imp::ACTS.append(sink?, &lines)
}

/// Key `k` (after RoPE) and value `v` of position `pos` were just stored in an f16 cache:
/// appends their near-ties to the `BITNET_DUMP_KV_TIES` file, if that variable is set.
#[cfg(feature = "std")]
pub(crate) fn record_kv(layer: usize, pos: usize, k: &[f32], v: &[f32]) -> Result<(), ModelError> {
    let Some(sink) = imp::KV.sink() else {
        return Ok(());
    };
    let mut lines = imp::kv_lines(layer, "cache_k", pos, k)?;
    lines += &imp::kv_lines(layer, "cache_v", pos, v)?;
    imp::KV.append(sink?, &lines)
}

/// Without `std` there is no environment and no file: nothing to record.
#[cfg(not(feature = "std"))]
#[inline(always)]
pub(crate) fn record(
    _layer: usize,
    _site: &str,
    _x: &[f32],
    _norm: Option<(&[f32], f32)>,
    _acts: &ActBatch,
    _at: &[(usize, usize)],
) -> Result<(), ModelError> {
    Ok(())
}

#[cfg(not(feature = "std"))]
#[inline(always)]
pub(crate) fn record_kv(
    _layer: usize,
    _pos: usize,
    _k: &[f32],
    _v: &[f32],
) -> Result<(), ModelError> {
    Ok(())
}

#[cfg(feature = "std")]
mod imp {
    use std::fmt::Write as _;
    use std::fs::File;
    use std::io::Write as _;
    use std::string::String;
    use std::sync::{Mutex, OnceLock};

    use half::f16;

    use super::{ActBatch, ModelError, KV_WINDOW, WINDOW};

    /// The file named by environment variable `var`, opened on first use.
    pub struct Dump {
        var: &'static str,
        /// `None`: the variable is unset. `Err`: why the file could not be created (reported
        /// by every forward call, so a run asked to dump never silently does not).
        file: OnceLock<Option<Result<Mutex<File>, String>>>,
    }

    pub static ACTS: Dump = Dump::new("BITNET_DUMP_TIES");
    pub static KV: Dump = Dump::new("BITNET_DUMP_KV_TIES");

    impl Dump {
        const fn new(var: &'static str) -> Dump {
            Dump {
                var,
                file: OnceLock::new(),
            }
        }

        pub fn sink(&self) -> Option<Result<&Mutex<File>, ModelError>> {
            let file = self.file.get_or_init(|| {
                let path = std::env::var_os(self.var)?;
                Some(File::create(&path).map(Mutex::new).map_err(|e| {
                    alloc::format!("{}={}: cannot create: {e}", self.var, path.display())
                }))
            });
            let file = file.as_ref()?;
            Some(file.as_ref().map_err(|e| ModelError::Input(e.clone())))
        }

        /// Unbuffered: the file is complete whenever the process ends.
        pub fn append(&self, file: &Mutex<File>, lines: &str) -> Result<(), ModelError> {
            if lines.is_empty() {
                return Ok(());
            }
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            f.write_all(lines.as_bytes())
                .map_err(|e| ModelError::Input(alloc::format!("{}: cannot write: {e}", self.var)))
        }
    }

    fn near_tie(x: f64, window: f64) -> bool {
        (x - x.floor() - 0.5).abs() <= window
    }

    /// A recomputed rounding that differs from the stored one means this file and the code
    /// it mirrors have drifted apart: the dump would mislead, so it is an error.
    fn out_of_step(what: String) -> ModelError {
        ModelError::Input(alloc::format!(
            "tie dump: {what} (model/ties.rs is out of step)"
        ))
    }

    pub fn act_lines(
        layer: usize,
        norm: &str,
        x: &[f32],
        norm_w: Option<(&[f32], f32)>,
        acts: &ActBatch,
        at: &[(usize, usize)],
    ) -> Result<String, ModelError> {
        let cols = acts.cols;
        let mut lines = String::new();
        for (t, &(_, pos)) in at.iter().enumerate() {
            let row = &x[t * cols..(t + 1) * cols];
            // The quantizer's own arithmetic (kernels/act.rs, `quantize_row_i8_ref`, with the
            // fused RMSNorm when there is one): `((x * inv) * w) * s` or `x * s` in f32, so
            // the value printed is the one the engine rounded, bit for bit.
            let normed = norm_w.map(|(w, eps)| (w, crate::ops::rms_inv(row, eps)));
            let s = acts.scale[t];
            for (i, (&v, &code)) in row.iter().zip(acts.token(t)).enumerate() {
                let xs = match normed {
                    Some((w, inv)) => v * inv * w[i] * s,
                    None => v * s,
                };
                if !near_tie(f64::from(xs), WINDOW) {
                    continue;
                }
                let expect = libm::rintf(xs).clamp(-128.0, 127.0) as i8;
                if expect != code {
                    return Err(out_of_step(alloc::format!(
                        "blk.{layer}.{norm} pos {pos} elem {i}: recomputed x*s = {xs:.9} \
                         rounds to {expect}, the quantizer stored {code}"
                    )));
                }
                let _ = writeln!(lines, "blk.{layer}.{norm} {pos} {i} {xs:.9} {code}");
            }
        }
        Ok(lines)
    }

    pub fn kv_lines(layer: usize, name: &str, pos: usize, x: &[f32]) -> Result<String, ModelError> {
        let mut lines = String::new();
        let band = KV_WINDOW * f64::from(x.iter().fold(0.0f32, |m, v| m.max(v.abs())));
        for (i, &v) in x.iter().enumerate() {
            // Binade exponent from the f32 bits (f32 subnormals are far below f16's normal
            // range: they share its subnormal ulp 2^-24).
            let e = ((v.to_bits() >> 23) & 0xff) as i32 - 127;
            let ulp = libm::exp2(f64::from(e.max(-14) - 10));
            let xs = f64::from(v) / ulp;
            // The same conversion as the cache (kv_cache.rs): round to nearest, ties to even.
            let stored = f16::from_f32(v);
            if !stored.is_finite() || !near_tie(xs, band / ulp) {
                continue;
            }
            let code = stored.to_f64();
            if code / ulp != xs.floor() && code / ulp != xs.floor() + 1.0 {
                return Err(out_of_step(alloc::format!(
                    "blk.{layer}.{name} pos {pos} elem {i}: {v:e} is {xs:.9} f16 ulps, \
                     stored as {code:e}"
                )));
            }
            let _ = writeln!(lines, "blk.{layer}.{name} {pos} {i} {v:e} {code:e}");
        }
        Ok(lines)
    }
}
