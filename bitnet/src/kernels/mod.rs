//! BitLinear kernels: int8 activations times ternary weights, exact in i32.
//!
//! `scalar.rs` is the reference every other kernel is tested against; each ISA gets one
//! file with the same function names, ggml-style `<op>_<kernel>` (`bitmatmul_neon`,
//! `vec_dot_ternary_i8_avx2`, `head_q8_0_dotprod`).
//!
//! The function [`Kernel::bitmatmul`] calls in production for kernel `k` is named exactly
//! `bitmatmul_<k>` and is `#[inline(never)]`, so that symbol survives fat LTO and the size
//! report (which reads every identifier starting with `bitmatmul_` as a kernel name) can list
//! what a binary carries. Secondary entries put their qualifier first
//! (`canonical_bitmatmul_avx2`: the x86 kernels' path for matrices not repacked to Rows16)
//! so they are not mistaken for kernels.

pub mod act;
#[cfg(feature = "fault-injection")]
mod fault;
pub mod head;
pub mod scalar;
#[cfg(test)]
mod tally;
#[cfg(test)]
mod tests;

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
#[cfg(target_arch = "arm")]
pub mod armv7;
#[cfg(target_arch = "riscv64")]
pub mod riscv64;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

pub use act::{quantize_acts_ref, ActBatch};
pub use head::HeadActs;

use crate::ternary::{CodeLayout, TernaryMatrix};

/// A BitLinear implementation, chosen once at load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Portable reference, always available.
    Scalar,
    /// x86_64 AVX2 + FMA + F16C: `vpmaddubsw`.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// x86_64 AVX-VNNI: 256-bit `vpdpbusd` (Alder Lake and later, Zen 5).
    #[cfg(target_arch = "x86_64")]
    AvxVnni,
    /// x86_64 AVX-512 F/BW/VL + VNNI: 512-bit `vpdpbusd` (Ice Lake and later, Zen 4/5).
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
    /// NEON: on aarch64 without dotprod (Cortex-A53/A72), `smull`/`smlal` + `sadalp`; on
    /// armv7 `vmull.s8`/`vmlal.s8` + `vpadal` through `asm!`, gated on HWCAP.
    #[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
    Neon,
    /// aarch64 dotprod (Cortex-A55/A76, Neoverse-N1): `sdot`.
    #[cfg(target_arch = "aarch64")]
    Dotprod,
    /// aarch64 i8mm (Armv8.6+: Cortex-A710, Neoverse-N2/V1): `smmla` for 2+ tokens.
    #[cfg(target_arch = "aarch64")]
    I8mm,
    /// riscv64 Zbb (`cpop` on bit-sliced activations) for cores without V (SiFive U74).
    #[cfg(target_arch = "riscv64")]
    Zbb,
    /// riscv64 RVV 1.0 (any VLEN), run-time gated on HWCAP.
    #[cfg(target_arch = "riscv64")]
    Rvv,
}

/// Exact integer accumulators of one weight row against token `t` of an `ActBatch`, one per
/// scale group, added into the last argument (what the exactness tests compare).
pub type VecDotI32 = fn(&TernaryMatrix, usize, &ActBatch, usize, &mut [i32]);

impl Kernel {
    /// Every kernel compiled into this binary, worst to best: `detect` picks the last one
    /// available.
    pub const ALL: &'static [Kernel] = &[
        Kernel::Scalar,
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2,
        #[cfg(target_arch = "x86_64")]
        Kernel::AvxVnni,
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512Vnni,
        #[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
        Kernel::Neon,
        #[cfg(target_arch = "aarch64")]
        Kernel::Dotprod,
        #[cfg(target_arch = "aarch64")]
        Kernel::I8mm,
        #[cfg(target_arch = "riscv64")]
        Kernel::Zbb,
        #[cfg(target_arch = "riscv64")]
        Kernel::Rvv,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Kernel::AvxVnni => "avxvnni",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => "avx512vnni",
            #[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
            Kernel::Neon => "neon",
            #[cfg(target_arch = "aarch64")]
            Kernel::Dotprod => "dotprod",
            #[cfg(target_arch = "aarch64")]
            Kernel::I8mm => "i8mm",
            #[cfg(target_arch = "riscv64")]
            Kernel::Zbb => "zbb",
            #[cfg(target_arch = "riscv64")]
            Kernel::Rvv => "rvv",
        }
    }

    /// CPU features the kernel needs, for error messages.
    pub const fn requires(self) -> &'static str {
        match self {
            Kernel::Scalar => "nothing",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => "avx2, fma, f16c",
            #[cfg(target_arch = "x86_64")]
            Kernel::AvxVnni => "avx2, fma, f16c, avxvnni",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => "avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512vnni",
            #[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
            Kernel::Neon => "neon",
            #[cfg(target_arch = "aarch64")]
            Kernel::Dotprod => "dotprod",
            #[cfg(target_arch = "aarch64")]
            Kernel::I8mm => "i8mm, dotprod",
            #[cfg(target_arch = "riscv64")]
            Kernel::Zbb => "zbb (built with +zbb, or reported by riscv_hwprobe)",
            #[cfg(target_arch = "riscv64")]
            Kernel::Rvv => "v (RVV 1.0, reported in HWCAP)",
        }
    }

    pub fn from_name(name: &str) -> Option<Kernel> {
        Kernel::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// Whether the running CPU can execute this kernel.
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => x86_64::Variant::Avx2.is_available(),
            #[cfg(target_arch = "x86_64")]
            Kernel::AvxVnni => x86_64::Variant::AvxVnni.is_available(),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => x86_64::Variant::Avx512Vnni.is_available(),
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => aarch64::has_neon(),
            #[cfg(target_arch = "arm")]
            Kernel::Neon => armv7::has_neon(),
            #[cfg(target_arch = "aarch64")]
            Kernel::Dotprod => aarch64::has_dotprod(),
            #[cfg(target_arch = "aarch64")]
            Kernel::I8mm => aarch64::has_i8mm(),
            #[cfg(target_arch = "riscv64")]
            Kernel::Zbb => riscv64::has_zbb(),
            #[cfg(target_arch = "riscv64")]
            Kernel::Rvv => riscv64::has_rvv(),
        }
    }

    /// The kernels the running CPU can execute, worst to best.
    pub fn available() -> impl Iterator<Item = Kernel> {
        Kernel::ALL.iter().copied().filter(|k| k.is_available())
    }

    /// The best kernel the running CPU supports.
    pub fn detect() -> Kernel {
        Kernel::available().last().unwrap_or(Kernel::Scalar)
    }

    /// `detect()`, or the kernel named by `forced` (`--kernel`, `BITNET_KERNEL`); an unknown
    /// name or a kernel this CPU cannot run is an error saying why.
    pub fn select(forced: Option<&str>) -> Result<Kernel, alloc::string::String> {
        use alloc::format;
        use alloc::vec::Vec;
        let Some(name) = forced else {
            return Ok(Kernel::detect());
        };
        let available: Vec<&str> = Kernel::available().map(Kernel::name).collect();
        match Kernel::from_name(name) {
            Some(k) if k.is_available() => Ok(k),
            Some(k) => Err(format!(
                "kernel '{name}' needs CPU features {} that this CPU lacks; available here: {}",
                k.requires(),
                available.join(", ")
            )),
            None => {
                let known: Vec<&str> = Kernel::ALL.iter().map(|k| k.name()).collect();
                Err(format!(
                    "unknown kernel '{name}'; this build has {} (available here: {})",
                    known.join(", "),
                    available.join(", ")
                ))
            }
        }
    }

    /// The weight layout the model repacks into at load for this kernel.
    #[allow(unreachable_patterns)]
    pub fn code_layout(self) -> CodeLayout {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 | Kernel::AvxVnni | Kernel::Avx512Vnni => CodeLayout::Rows16,
            _ => CodeLayout::Canonical,
        }
    }

    /// Whether the kernel can read a matrix in `layout` (every kernel reads the canonical one).
    pub fn reads(self, layout: CodeLayout) -> bool {
        layout == CodeLayout::Canonical || layout == self.code_layout()
    }

    /// Whether `bitmatmul` equals the scalar reference bit for bit (exact group sums, then
    /// the reference's float epilogue in its order); others would be held to 1e-6 relative.
    /// Every kernel is: the x86 tiles add `acc * scale` per group in group order and divide
    /// by the token's scale last, like [`scalar::epilogue`]; the aarch64, armv7 and riscv64
    /// kernels compute integer accumulators only and finish with `scalar::epilogue` itself.
    /// The exactness tests (`kernels::tests`) hold each kernel to this.
    pub const fn bit_exact(self) -> bool {
        match self {
            Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 | Kernel::AvxVnni | Kernel::Avx512Vnni => true,
            #[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
            Kernel::Neon => true,
            #[cfg(target_arch = "aarch64")]
            Kernel::Dotprod | Kernel::I8mm => true,
            #[cfg(target_arch = "riscv64")]
            Kernel::Zbb | Kernel::Rvv => true,
        }
    }

    /// Whether a whole forward pass with this kernel is expected to give logits bit-identical
    /// to the scalar kernel's (what `info --json` reports as `kernels.logits_exact`). Needs all
    /// of: `bitmatmul` bit-exact ([`Kernel::bit_exact`]), and every other kernel-dependent step
    /// the scalar one. RMSNorm, the activation quantization, attention and the other float
    /// ops never depend on the kernel; the output head does ([`Kernel::head_f16`],
    /// [`Kernel::head_q8_0`]):
    ///
    /// * x86_64 avx2/avxvnni/avx512vnni: SIMD heads (F16 and Q8_0) accumulate with FMA in
    ///   vector lanes, another summation order than the sequential reference: not exact.
    /// * aarch64 neon/dotprod/i8mm: the Q8_0 head keeps the reference order, but the F16 head
    ///   (the usual one) sums with FMA in 16 lanes: not exact.
    /// * armv7 neon, riscv64 zbb/rvv: no head of their own, the scalar one runs: exact.
    pub const fn logits_exact(self) -> bool {
        self.bit_exact() && !self.has_simd_head()
    }

    /// Whether [`Kernel::head_f16`] or [`Kernel::head_q8_0`] run code of this kernel's own
    /// rather than the portable `head::head_*_scalar` (keep in step with those two).
    const fn has_simd_head(self) -> bool {
        match self {
            Kernel::Scalar => false,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 | Kernel::AvxVnni | Kernel::Avx512Vnni => true,
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon | Kernel::Dotprod | Kernel::I8mm => true,
            #[cfg(target_arch = "arm")]
            Kernel::Neon => false,
            #[cfg(target_arch = "riscv64")]
            Kernel::Zbb | Kernel::Rvv => false,
        }
    }

    /// The kernel's integer-level entry, if it has one (for the exactness tests).
    #[allow(unreachable_patterns)]
    pub fn vec_dot_i32(self) -> Option<VecDotI32> {
        assert!(
            self.is_available(),
            "kernel {self} is not available on this CPU"
        );
        // SAFETY (all arms): the assertion above checked the CPU features.
        match self {
            Kernel::Scalar => {
                Some(|w, row, x, t, acc| scalar::vec_dot_ternary_i8_ref(w, row, x.token(t), acc))
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => Some(|w, row, x, t, acc| unsafe {
                match w.layout {
                    CodeLayout::Canonical => {
                        x86_64::avx2::canonical_vec_dot_ternary_i8_avx2(w, row, x, t, acc)
                    }
                    CodeLayout::Rows16 => x86_64::avx2::vec_dot_ternary_i8_avx2(w, row, x, t, acc),
                }
            }),
            #[cfg(target_arch = "x86_64")]
            Kernel::AvxVnni => Some(|w, row, x, t, acc| unsafe {
                match w.layout {
                    CodeLayout::Canonical => {
                        x86_64::avxvnni::canonical_vec_dot_ternary_i8_avxvnni(w, row, x, t, acc)
                    }
                    CodeLayout::Rows16 => {
                        x86_64::avxvnni::vec_dot_ternary_i8_avxvnni(w, row, x, t, acc)
                    }
                }
            }),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => Some(|w, row, x, t, acc| unsafe {
                match w.layout {
                    CodeLayout::Canonical => {
                        x86_64::avx512vnni::canonical_vec_dot_ternary_i8_avx512vnni(
                            w, row, x, t, acc,
                        )
                    }
                    CodeLayout::Rows16 => {
                        x86_64::avx512vnni::vec_dot_ternary_i8_avx512vnni(w, row, x, t, acc)
                    }
                }
            }),
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => Some(|w, row, x, t, acc| unsafe {
                aarch64::vec_dot_ternary_i8_neon(w, row, x, t, acc)
            }),
            #[cfg(target_arch = "arm")]
            Kernel::Neon => Some(|w, row, x, t, acc| unsafe {
                armv7::vec_dot_ternary_i8_neon(w, row, x, t, acc)
            }),
            #[cfg(target_arch = "aarch64")]
            Kernel::Dotprod => Some(|w, row, x, t, acc| unsafe {
                aarch64::vec_dot_ternary_i8_dotprod(w, row, x, t, acc)
            }),
            #[cfg(target_arch = "riscv64")]
            Kernel::Zbb => Some(|w, row, x, t, acc| unsafe {
                riscv64::vec_dot_ternary_i8_zbb(w, row, x, t, acc)
            }),
            #[cfg(target_arch = "riscv64")]
            Kernel::Rvv => Some(|w, row, x, t, acc| unsafe {
                riscv64::vec_dot_ternary_i8_rvv(w, row, x, t, acc)
            }),
            _ => None,
        }
    }

    /// `out[r * n + t] = row r . x[t]` for F16 head rows (`rows`: whole rows of `cols`
    /// little-endian halves; `x`: (n, cols)). Kernels without their own head use the
    /// portable one.
    #[allow(unreachable_patterns)]
    pub fn head_f16(self, rows: &[u8], cols: usize, x: &[f32], out: &mut [f32]) {
        assert!(
            self.is_available(),
            "kernel {self} is not available on this CPU"
        );
        // SAFETY (all arms): the assertion above checked the CPU features.
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { x86_64::avx2::head_f16_avx2(rows, cols, x, out) },
            #[cfg(target_arch = "x86_64")]
            Kernel::AvxVnni => unsafe { x86_64::avxvnni::head_f16_avxvnni(rows, cols, x, out) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => unsafe {
                x86_64::avx512vnni::head_f16_avx512vnni(rows, cols, x, out)
            },
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon | Kernel::Dotprod | Kernel::I8mm => unsafe {
                aarch64::head_f16_neon(rows, cols, x, out)
            },
            _ => head::head_f16_scalar(rows, cols, x, out),
        }
    }

    /// Like [`Kernel::head_f16`] for Q8_0 head rows against int8 activations.
    #[allow(unreachable_patterns)]
    pub fn head_q8_0(self, rows: &[u8], a: &HeadActs, out: &mut [f32]) {
        assert!(
            self.is_available(),
            "kernel {self} is not available on this CPU"
        );
        // SAFETY (all arms): the assertion above checked the CPU features.
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { x86_64::avx2::head_q8_0_avx2(rows, a, out) },
            #[cfg(target_arch = "x86_64")]
            Kernel::AvxVnni => unsafe { x86_64::avxvnni::head_q8_0_avxvnni(rows, a, out) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => unsafe { x86_64::avx512vnni::head_q8_0_avx512vnni(rows, a, out) },
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => unsafe { aarch64::head_q8_0_neon(rows, a, out) },
            #[cfg(target_arch = "aarch64")]
            Kernel::Dotprod | Kernel::I8mm => unsafe { aarch64::head_q8_0_dotprod(rows, a, out) },
            _ => head::head_q8_0_scalar(rows, a, out),
        }
    }

    /// Rows `row0..row0 + out.len() / x.n_tokens` of `W x` for every token, written
    /// row-major as `out[(r - row0) * n_tokens + t]` (rows outermost, so row chunks can be
    /// computed independently on separate threads).
    pub fn bitmatmul(self, w: &TernaryMatrix, x: &ActBatch, row0: usize, out: &mut [f32]) {
        assert!(
            self.reads(w.layout),
            "kernel {self} cannot read a {:?} matrix: repack it with to_layout",
            w.layout
        );
        // Every arm below runs instructions only the kernel's CPU features provide.
        assert!(
            self.is_available(),
            "kernel {self} is not available on this CPU"
        );
        match self {
            Kernel::Scalar => scalar::bitmatmul_scalar(w, x, row0, out),
            // SAFETY (every unsafe arm): the CPU's features were checked just above.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe {
                match w.layout {
                    CodeLayout::Canonical => {
                        x86_64::avx2::canonical_bitmatmul_avx2(w, x, row0, out)
                    }
                    CodeLayout::Rows16 => x86_64::avx2::bitmatmul_avx2(w, x, row0, out),
                }
            },
            #[cfg(target_arch = "x86_64")]
            Kernel::AvxVnni => unsafe {
                match w.layout {
                    CodeLayout::Canonical => {
                        x86_64::avxvnni::canonical_bitmatmul_avxvnni(w, x, row0, out)
                    }
                    CodeLayout::Rows16 => x86_64::avxvnni::bitmatmul_avxvnni(w, x, row0, out),
                }
            },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => unsafe {
                match w.layout {
                    CodeLayout::Canonical => {
                        x86_64::avx512vnni::canonical_bitmatmul_avx512vnni(w, x, row0, out)
                    }
                    CodeLayout::Rows16 => x86_64::avx512vnni::bitmatmul_avx512vnni(w, x, row0, out),
                }
            },
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => unsafe { aarch64::bitmatmul_neon(w, x, row0, out) },
            #[cfg(target_arch = "arm")]
            Kernel::Neon => unsafe { armv7::bitmatmul_neon(w, x, row0, out) },
            #[cfg(target_arch = "aarch64")]
            Kernel::Dotprod => unsafe { aarch64::bitmatmul_dotprod(w, x, row0, out) },
            #[cfg(target_arch = "aarch64")]
            Kernel::I8mm => unsafe { aarch64::bitmatmul_i8mm(w, x, row0, out) },
            #[cfg(target_arch = "riscv64")]
            Kernel::Zbb => unsafe { riscv64::bitmatmul_zbb(w, x, row0, out) },
            #[cfg(target_arch = "riscv64")]
            Kernel::Rvv => unsafe { riscv64::bitmatmul_rvv(w, x, row0, out) },
        }
        #[cfg(feature = "fault-injection")]
        fault::inject(self, out);
    }
}

/// Panics unless `out` holds whole rows `row0..` of `W x` for the tokens of `x` (a caller
/// bug, not bad input: shapes were checked at load). SIMD kernels call it once per entry
/// and index without bounds checks afterwards.
pub(crate) fn check_bitmatmul_args(w: &TernaryMatrix, x: &ActBatch, row0: usize, out: &[f32]) {
    assert_eq!(x.cols, w.cols, "activation width");
    assert!(
        w.cols.is_multiple_of(128)
            && w.group_len.is_multiple_of(128)
            && w.cols.is_multiple_of(w.group_len)
    );
    let padded_rows = match w.layout {
        CodeLayout::Canonical => w.rows,
        CodeLayout::Rows16 => w.row_groups16() * crate::ternary::ROWS16,
    };
    assert_eq!(w.codes.len(), padded_rows * w.cols / 4, "codes");
    assert_eq!(
        w.scales.len(),
        padded_rows * (w.cols / w.group_len),
        "scales"
    );
    assert!(x.q.len() == x.n_tokens * x.cols && x.scale.len() == x.n_tokens);
    assert_eq!(x.bsums.len(), x.n_tokens * (x.cols / 128), "block sums");
    let rows = out.len().checked_div(x.n_tokens).unwrap_or(0);
    assert!(
        rows * x.n_tokens == out.len() && row0 + rows <= w.rows,
        "output rows"
    );
}

impl core::fmt::Display for Kernel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}
