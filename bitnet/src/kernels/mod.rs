//! BitLinear kernels: int8 activations times ternary weights, exact in i32.
//!
//! `scalar.rs` is the reference every other kernel is tested against; each ISA gets one
//! file with the same function names. A kernel entry point's symbol contains `bitmatmul`
//! so the size report can list what a binary carries.

pub mod act;
pub mod scalar;

pub use act::{quantize_acts_ref, ActBatch};

use crate::ternary::TernaryMatrix;

/// A BitLinear implementation, chosen once at load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Portable reference, always available.
    Scalar,
}

impl Kernel {
    pub const ALL: [Kernel; 1] = [Kernel::Scalar];

    pub const fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
        }
    }

    pub fn from_name(name: &str) -> Option<Kernel> {
        Kernel::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether the running CPU can execute this kernel.
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Scalar => true,
        }
    }

    /// The best kernel the running CPU supports.
    pub fn detect() -> Kernel {
        Kernel::ALL
            .into_iter()
            .rev()
            .find(|k| k.is_available())
            .unwrap_or(Kernel::Scalar)
    }

    /// Rows `row0..row0 + out.len() / x.n_tokens` of `W x` for every token, written
    /// row-major as `out[(r - row0) * n_tokens + t]` (rows outermost, so row chunks can be
    /// computed independently on separate threads).
    pub fn bitmatmul(self, w: &TernaryMatrix, x: &ActBatch, row0: usize, out: &mut [f32]) {
        match self {
            Kernel::Scalar => scalar::bitmatmul_scalar(w, x, row0, out),
        }
    }
}

impl core::fmt::Display for Kernel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}
