//! Which part of a token a guest function belongs to, from its demangled path: the parts
//! `bitnet-infer bench --profile` times, so emulated counts and host timings read alike.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// The ternary matmuls: `bitmatmul_*` and what it calls, and `linear` around them.
    Ternary,
    /// The output head's matmul (F16 or Q8_0 weights).
    Head,
    /// Attention scores and mixing, and the KV cache's reads and writes.
    Attention,
    /// RMS norms and the activations' int8 quantization.
    Norms,
    /// Everything else: rope, residuals, the thread pool, libc, `half`'s conversions.
    Rest,
}

pub const PARTS: [Part; 5] = [
    Part::Ternary,
    Part::Head,
    Part::Attention,
    Part::Norms,
    Part::Rest,
];

impl Part {
    pub fn name(self) -> &'static str {
        match self {
            Part::Ternary => "ternary",
            Part::Head => "head",
            Part::Attention => "attention",
            Part::Norms => "norms",
            Part::Rest => "rest",
        }
    }
}

/// The part a (mangled) symbol belongs to; `?` (no symbol) is the rest.
pub fn of(symbol: &str) -> Part {
    let path = format!("{:#}", rustc_demangle::demangle(symbol));
    let has = |s: &str| path.contains(s);
    // F16 rows are the head's (and one embedding row per token); `half`'s conversion
    // functions serve both the KV cache and the scalar head, so they stay in the rest.
    if has("::head") || has("quants::f16::") {
        Part::Head
    } else if has("model::attention") || has("kv_cache") || has("kernels::kv") {
        Part::Attention
    } else if has("ops::norm") || has("ops::rms") || has("ops::quantize") || has("kernels::act") {
        Part::Norms
    } else if has("bitnet::kernels::") || has("model::linear") {
        Part::Ternary
    } else {
        Part::Rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_and_model_code_fall_into_their_parts() {
        let cases = [
            (
                "_ZN6bitnet7kernels7aarch6416acc_rows_dotprod17hd59117c5ab51fdafE",
                Part::Ternary,
            ),
            (
                "_ZN6bitnet7kernels6scalar13epilogue_rows17h17d525a0baeb4748E",
                Part::Ternary,
            ),
            (
                "_ZN6bitnet7kernels7aarch6413head_f16_neon17hcfc817e9d9bd27baE",
                Part::Head,
            ),
            (
                "_ZN6bitnet5model8kv_cache4Rows10dequantize17h265cfbb2cc13fa25E",
                Part::Attention,
            ),
            (
                "_ZN6bitnet3ops13norm_quantize17h7a39ba282f12dc34E",
                Part::Norms,
            ),
            (
                "_ZN6bitnet5model6linear6linear28_$u7b$$u7b$closure$u7d$$u7d$17h3dd8da5b7dc58933E",
                Part::Ternary,
            ),
            ("_ZN4libm4math4sinf4sinf17h86efe222ed218a18E", Part::Rest),
            (
                "_ZN6bitnet6quants3f1618dequantize_row_f1617h39f3c0c18e442c93E",
                Part::Head,
            ),
            (
                "_ZN4half8binary164arch7aarch6419f16x4_to_f32x4_fp1617h4cc106499a4fdb76E",
                Part::Rest,
            ),
            ("?", Part::Rest),
            ("memcpy", Part::Rest),
        ];
        for (sym, part) in cases {
            assert_eq!(of(sym), part, "{sym}");
        }
    }
}
