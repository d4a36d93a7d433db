//! BitLinear kernels: int8 activations times ternary weights, exact in i32.
//!
//! `scalar.rs` is the reference every other kernel is tested against; each ISA gets one
//! file with the same function names, ggml-style `<op>_<kernel>` (`bitmatmul_neon`,
//! `vec_dot_ternary_i8_avx2`, `head_q8_0_dotprod`), and a table of its kernels
//! (`static KERNELS: &[KernelDesc]`) that is the only place the rest of the crate learns
//! about them: adding a kernel for an existing ISA touches that ISA's file and its tests.
//!
//! The function [`Kernel::bitmatmul`] calls for kernel `k` is named exactly `bitmatmul_<k>`
//! and is `#[inline(never)]`, so that symbol survives fat LTO and the size report (which
//! reads every identifier starting with `bitmatmul_` as a kernel name) can list what a binary
//! carries.

pub mod act;
/// The exactness tests as plain functions, for runners without libtest (bare metal).
#[cfg(feature = "kernel-tests")]
pub mod exactness;
#[cfg(feature = "fault-injection")]
mod fault;
pub mod head;
pub mod kv;
pub mod prefetch;
pub mod scalar;
#[cfg(any(test, feature = "kernel-tests"))]
mod tally;
#[cfg(any(test, feature = "kernel-tests"))]
mod tests;

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
// `armv7_neon`: 32-bit Arm except the bare-metal M profile (build.rs).
#[cfg(armv7_neon)]
pub mod armv7;
#[cfg(target_arch = "riscv64")]
pub mod riscv64;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

pub use act::{quantize_acts_ref, ActBatch};
pub use head::HeadActs;

use crate::cpu::CpuFeatures;
use crate::ternary::{CodeLayout, TernaryMatrix};

/// `W x` for rows `row0..row0 + out.len() / x.n_tokens`, written `out[(r - row0) * n + t]`.
pub type BitmatmulFn = unsafe fn(&TernaryMatrix, &ActBatch, usize, &mut [f32]);
/// Exact integer accumulators of one weight row against token `t` of an `ActBatch`, one per
/// scale group, added into the last argument (what the exactness tests compare).
pub type VecDotFn = unsafe fn(&TernaryMatrix, usize, &ActBatch, usize, &mut [i32]);
/// `out[r * n + t] = row r . x[t]` for F16 head rows (`rows`: whole rows of `cols`
/// little-endian halves; `x`: (n, cols)).
pub type HeadF16Fn = unsafe fn(&[u8], usize, &[f32], &mut [f32]);
/// Like [`HeadF16Fn`] for Q8_0 head rows against int8 activations.
pub type HeadQ8_0Fn = unsafe fn(&[u8], &HeadActs, &mut [f32]);

/// Exact integer sums of cached key rows against an int8 query, one per 32-element block:
/// `isums[j * nb + b]` for row `j` and block `b` (`rows`: whole rows of `q.len() / 32`
/// Q8_0 or Q4_0 blocks; see [`kv`]).
pub type KvDotFn = unsafe fn(&[u8], &[i8], &mut [i32]);

/// One kernel, as ggml's type traits describe a type: what it needs and where its code is.
/// Each ISA file exports `static KERNELS: &[KernelDesc]`, worst to best; adding a kernel is
/// adding an entry there. Every entry point is `unsafe` because it may execute instructions
/// of `requires`; [`Kernel`] calls them only after detection said they exist.
#[derive(Debug)]
pub struct KernelDesc {
    /// `--kernel` name, and `<k>` of the production entry `bitmatmul_<k>` (the size report
    /// reads that symbol).
    pub name: &'static str,
    /// CPU features it executes, as [`crate::cpu::FEATURES`] names them.
    pub requires: &'static [&'static str],
    /// The weight layout the model repacks into at load for this kernel; the only one
    /// `bitmatmul` and `vec_dot` read.
    pub layout: CodeLayout,
    /// Whether `bitmatmul` equals the scalar reference bit for bit (exact group sums, then
    /// the reference's float epilogue in its order); others would be held to 1e-6 relative.
    /// The exactness tests (`kernels::tests`) hold each kernel to what it declares.
    pub bit_exact: bool,
    /// Rows a prefill asks of `bitmatmul` per call, so that each call's (rows, tokens)
    /// output is turned into the tokens' layout while it is in cache; `None`: whole
    /// matrices. The x86 kernels read the activations as they are (64 rows, measured on a
    /// Zen 4 host; no other size tried); the RISC-V ones build bit planes of them and `i8mm` pairs of
    /// tokens on each call, which smaller calls would repeat.
    pub prefill_rows: Option<usize>,
    /// The production entry point, `#[inline(never)]` and named `bitmatmul_<name>` so the
    /// symbol survives LTO.
    pub bitmatmul: BitmatmulFn,
    /// The integer-level entry, if the kernel has one (for the exactness tests).
    pub vec_dot: Option<VecDotFn>,
    /// The kernel's own heads; `None` runs the portable `head::head_*_scalar`.
    pub head_f16: Option<HeadF16Fn>,
    pub head_q8_0: Option<HeadQ8_0Fn>,
    /// The kernel's own attention-score block sums against a Q8_0 / Q4_0 KV cache; `None`
    /// runs the portable `kv::kv_dot_*_ref`.
    pub kv_dot_q8_0: Option<KvDotFn>,
    pub kv_dot_q4_0: Option<KvDotFn>,
}

/// The reference: portable, always available.
pub static SCALAR: KernelDesc = KernelDesc {
    name: "scalar",
    requires: &[],
    layout: CodeLayout::Canonical,
    bit_exact: true,
    prefill_rows: None,
    bitmatmul: scalar::bitmatmul_scalar,
    vec_dot: Some(scalar::vec_dot_ternary_i8_scalar),
    head_f16: None,
    head_q8_0: None,
    kv_dot_q8_0: None,
    kv_dot_q4_0: None,
};

#[cfg(target_arch = "aarch64")]
use aarch64 as isa;
#[cfg(armv7_neon)]
use armv7 as isa;
#[cfg(target_arch = "riscv64")]
use riscv64 as isa;
#[cfg(target_arch = "x86_64")]
use x86_64 as isa;
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    armv7_neon,
    target_arch = "riscv64"
)))]
mod isa {
    pub static KERNELS: &[super::KernelDesc] = &[];
}

impl KernelDesc {
    /// Whether the running CPU can execute this kernel.
    pub fn is_available(&self) -> bool {
        let cpu = CpuFeatures::get();
        self.requires.iter().all(|f| cpu.usable(f))
    }

    /// `requires` for messages: "avx2, fma, f16c".
    pub fn requires_text(&self) -> alloc::string::String {
        if self.requires.is_empty() {
            return "nothing".into();
        }
        self.requires.join(", ")
    }
}

/// Every kernel compiled into this binary, worst to best, available here or not.
pub fn compiled() -> impl Iterator<Item = &'static KernelDesc> {
    core::iter::once(&SCALAR).chain(isa::KERNELS.iter())
}

/// A BitLinear implementation the running CPU can execute: obtained only from detection
/// ([`Kernel::detect`], [`Kernel::available`]) or a checked choice ([`Kernel::select`]), so
/// calling its entry points needs no further check.
#[derive(Clone, Copy)]
pub struct Kernel(&'static KernelDesc);

impl Kernel {
    /// The scalar reference, which every CPU runs.
    pub const SCALAR: Kernel = Kernel(&SCALAR);

    /// `desc` if the running CPU can execute it.
    pub fn new(desc: &'static KernelDesc) -> Option<Kernel> {
        desc.is_available().then_some(Kernel(desc))
    }

    pub fn desc(self) -> &'static KernelDesc {
        self.0
    }

    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// The kernels the running CPU can execute, worst to best.
    pub fn available() -> impl Iterator<Item = Kernel> {
        compiled().filter_map(Kernel::new)
    }

    /// The available kernel called `name`, if any.
    pub fn by_name(name: &str) -> Option<Kernel> {
        Kernel::available().find(|k| k.name() == name)
    }

    /// The best kernel the running CPU supports.
    pub fn detect() -> Kernel {
        Kernel::available().last().unwrap_or(Kernel::SCALAR)
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
        match compiled().find(|d| d.name == name) {
            Some(d) => Kernel::new(d).ok_or_else(|| {
                format!(
                    "kernel '{name}' needs CPU features {} that this CPU lacks; available here: {}",
                    d.requires_text(),
                    available.join(", ")
                )
            }),
            None => {
                let known: Vec<&str> = compiled().map(|d| d.name).collect();
                Err(format!(
                    "unknown kernel '{name}'; this build has {} (available here: {})",
                    known.join(", "),
                    available.join(", ")
                ))
            }
        }
    }

    /// The weight layout the model repacks into at load for this kernel.
    pub fn code_layout(self) -> CodeLayout {
        self.0.layout
    }

    /// See [`KernelDesc::prefill_rows`].
    pub fn prefill_rows(self) -> Option<usize> {
        self.0.prefill_rows
    }

    /// See [`KernelDesc::bit_exact`].
    pub fn bit_exact(self) -> bool {
        self.0.bit_exact
    }

    /// Whether a whole forward pass with this kernel is expected to give logits bit-identical
    /// to the scalar kernel's (what `info --json` reports as `kernels.logits_exact`). Needs
    /// `bitmatmul` bit-exact and the scalar heads: RMSNorm, the activation quantization,
    /// attention and the other float ops never depend on the kernel, the output head does.
    /// (Attention over a Q8_0/Q4_0 cache calls the kernel's `kv_dot_*`, but those return
    /// exact integer block sums and the float part is shared.)
    /// The SIMD heads (x86_64 F16 and Q8_0, aarch64 F16) sum with FMA in vector lanes, another
    /// order than the sequential reference.
    pub fn logits_exact(self) -> bool {
        self.0.bit_exact && !self.has_simd_head()
    }

    /// Whether either head runs code of this kernel's own.
    pub fn has_simd_head(self) -> bool {
        self.0.head_f16.is_some() || self.0.head_q8_0.is_some()
    }

    /// The kernel's integer-level entry, if it has one (for the exactness tests). It reads
    /// matrices in [`Kernel::code_layout`].
    pub fn vec_dot_i32(
        self,
    ) -> Option<impl Fn(&TernaryMatrix, usize, &ActBatch, usize, &mut [i32])> {
        let f = self.0.vec_dot?;
        Some(
            move |w: &TernaryMatrix, row, x: &ActBatch, t, acc: &mut [i32]| {
                assert_eq!(w.layout, self.0.layout, "kernel {self}: matrix layout");
                // SAFETY: a `Kernel` exists only for a descriptor the CPU can execute.
                unsafe { f(w, row, x, t, acc) }
            },
        )
    }

    /// `out[r * n + t] = row r . x[t]` for F16 head rows; see [`HeadF16Fn`].
    pub fn head_f16(self, rows: &[u8], cols: usize, x: &[f32], out: &mut [f32]) {
        match self.0.head_f16 {
            // SAFETY: a `Kernel` exists only for a descriptor the CPU can execute.
            Some(f) => unsafe { f(rows, cols, x, out) },
            None => head::head_f16_scalar(rows, cols, x, out),
        }
    }

    /// Like [`Kernel::head_f16`] for Q8_0 head rows against int8 activations.
    pub fn head_q8_0(self, rows: &[u8], a: &HeadActs, out: &mut [f32]) {
        match self.0.head_q8_0 {
            // SAFETY: a `Kernel` exists only for a descriptor the CPU can execute.
            Some(f) => unsafe { f(rows, a, out) },
            None => head::head_q8_0_scalar(rows, a, out),
        }
    }

    /// Block sums of Q8_0 key rows against an int8 query; see [`KvDotFn`].
    pub fn kv_dot_q8_0(self, rows: &[u8], q: &[i8], isums: &mut [i32]) {
        match self.0.kv_dot_q8_0 {
            // SAFETY: a `Kernel` exists only for a descriptor the CPU can execute; the
            // entry checks the shapes itself.
            Some(f) => unsafe { f(rows, q, isums) },
            None => kv::kv_dot_q8_0_ref(rows, q, isums),
        }
    }

    /// Block sums of Q4_0 key rows against an int8 query; see [`KvDotFn`].
    pub fn kv_dot_q4_0(self, rows: &[u8], q: &[i8], isums: &mut [i32]) {
        match self.0.kv_dot_q4_0 {
            // SAFETY: as for `kv_dot_q8_0`.
            Some(f) => unsafe { f(rows, q, isums) },
            None => kv::kv_dot_q4_0_ref(rows, q, isums),
        }
    }

    /// Rows `row0..row0 + out.len() / x.n_tokens` of `W x` for every token, written
    /// row-major as `out[(r - row0) * n_tokens + t]` (rows outermost, so row chunks can be
    /// computed independently on separate threads). `w` must be in [`Kernel::code_layout`].
    pub fn bitmatmul(self, w: &TernaryMatrix, x: &ActBatch, row0: usize, out: &mut [f32]) {
        assert_eq!(
            w.layout, self.0.layout,
            "kernel {self} reads {:?} matrices: repack with to_layout",
            self.0.layout
        );
        // SAFETY: a `Kernel` exists only for a descriptor the CPU can execute; the entry
        // checks the shapes itself.
        unsafe { (self.0.bitmatmul)(w, x, row0, out) };
        #[cfg(feature = "fault-injection")]
        fault::inject(self, out);
    }
}

impl PartialEq for Kernel {
    fn eq(&self, other: &Kernel) -> bool {
        core::ptr::eq(self.0, other.0)
    }
}

impl Eq for Kernel {}

impl core::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Kernel({})", self.name())
    }
}

/// Panics unless `out` holds whole rows `row0..` of `W x` for the tokens of `x` (a caller
/// bug, not bad input: shapes were checked at load). SIMD kernels call it once per entry
/// and index without bounds checks afterwards. (Cortex-M builds have no SIMD kernel.)
#[cfg_attr(all(target_arch = "arm", not(armv7_neon)), allow(dead_code))]
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
