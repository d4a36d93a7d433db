//! Pure checks: they read results (logits, binaries, test output) and return failures;
//! they build and run nothing.

pub mod kernel_tests;
pub mod logits;
pub mod size;
