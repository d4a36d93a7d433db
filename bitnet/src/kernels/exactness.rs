//! Every kernel test of this architecture (`kernels::` in libtest's naming) as a plain
//! function, for a runner without libtest: the bare-metal image runs them all in order.
//! Each is the `#[test]` of the same name; a failed check panics, and the `kernel-test:`
//! lines go where [`set_output`] says. `every_kernel_test_is_listed` (a host test) keeps
//! this list complete.

pub use super::tally::set_output;

#[cfg(target_arch = "aarch64")]
use super::aarch64;
#[cfg(armv7_neon)]
use super::armv7;
#[cfg(target_arch = "riscv64")]
use super::riscv64;
use super::{act, tests};

/// A test's path under `kernels::` and its body.
pub struct Test {
    pub name: &'static str,
    pub run: fn(),
}

macro_rules! tests {
    ($($(#[$cfg:meta])* $path:path),* $(,)?) => {
        /// This architecture's kernel tests, in the order libtest would name them.
        pub const TESTS: &[Test] = &[$(
            $(#[$cfg])*
            Test { name: stringify!($path), run: $path },
        )*];
    };
}

tests![
    act::tests::absmax_maps_to_127_and_rounds_half_even,
    act::tests::zero_row_is_all_zero,
    act::tests::fused_equals_unfused,
    act::tests::quantize_row_matches_its_definition_on_special_values,
    #[cfg(target_arch = "aarch64")]
    aarch64::tests::accumulators_equal_reference,
    #[cfg(target_arch = "aarch64")]
    aarch64::tests::worst_case_activations_do_not_overflow,
    #[cfg(target_arch = "aarch64")]
    aarch64::tests::outputs_match_scalar,
    #[cfg(target_arch = "aarch64")]
    aarch64::tests::q8_0_block_sums_exact,
    #[cfg(target_arch = "aarch64")]
    aarch64::tests::f16_conversion_is_exact,
    #[cfg(armv7_neon)]
    armv7::tests::accumulators_equal_reference,
    #[cfg(armv7_neon)]
    armv7::tests::worst_case_activations_do_not_overflow,
    #[cfg(armv7_neon)]
    armv7::tests::outputs_match_scalar,
    #[cfg(target_arch = "riscv64")]
    riscv64::tests::planes_hold_fields,
    #[cfg(target_arch = "riscv64")]
    riscv64::tests::accumulators_equal_reference,
    #[cfg(target_arch = "riscv64")]
    riscv64::tests::long_rows_split_into_chunks,
    #[cfg(target_arch = "riscv64")]
    riscv64::tests::outputs_match_scalar,
    #[cfg(target_arch = "riscv64")]
    riscv64::tests::kv_dot_at_i8_extremes,
    #[cfg(target_arch = "riscv64")]
    riscv64::tests::transpose8_transposes,
    #[cfg(target_arch = "riscv64")]
    riscv64::tests::bit_planes_line_up_with_block_masks,
    #[cfg(target_arch = "riscv64")]
    riscv64::tests::zbb_accumulators_equal_reference,
    #[cfg(target_arch = "riscv64")]
    riscv64::tests::zbb_outputs_match_scalar,
    tests::bitmatmul_random_shapes,
    tests::bitmatmul_extremes,
    tests::head_f16_matches_reference,
    tests::head_f16_special_values,
    tests::decode_with_and_without_prefetch,
    tests::head_q8_0_matches_reference,
    tests::head_q8_0_extremes,
    #[cfg(target_arch = "x86_64")]
    tests::q8_0_block_sums_exact_x86,
    tests::kv_dot_q8_0_matches_reference,
    tests::kv_dot_q4_0_matches_reference,
    tests::kv_dot_references_equal_dequantized_codes,
];
