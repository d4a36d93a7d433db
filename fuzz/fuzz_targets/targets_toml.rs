//! `targets_toml`: the harness's `targets.toml` + `qemu/profiles.toml` reader on arbitrary
//! text; see `fuzz_entry` in xtask/src/targets.rs (its tests replay the corpus).
#![no_main]

// The module as xtask compiles it; only `fuzz_entry` is called here.
#[allow(dead_code)]
#[path = "../../xtask/src/targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::fuzz_entry(data));
