//! `bitnet-bare`: the forward pass with no operating system, for QEMU's `virt` machines
//! (`riscv64gc-unknown-none-elf`, `aarch64-unknown-none`).
//!
//! * `rt`: start-up per architecture (stack, FP/vector state, MMU, traps), the heap, the
//!   console, exit; and the CPU features found by asking the hardware.
//! * `semihosting`: the one channel to the host: the command line, file reads and writes,
//!   the exit code.
//! * `infer`: what `bitnet-infer run` does for the harness: load a GGUF, prefill, decode
//!   (greedy or teacher-forced), write the logits as `.npy` on the host.
//! * `exactness`: `--kernel-tests` (images built with the `kernel-tests` feature): every
//!   kernel test of the architecture, with the `kernel-test:` lines libtest runs print.
//!
//! On an OS this binary only says what it is.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
#[macro_use]
mod console;
#[cfg(all(target_os = "none", feature = "kernel-tests"))]
mod exactness;
#[cfg(target_os = "none")]
mod infer;
#[cfg(target_os = "none")]
mod rt;
#[cfg(target_os = "none")]
mod semihosting;

/// The image's whole job, after start-up: its command line says which.
#[cfg(target_os = "none")]
fn run() -> Result<(), alloc::string::String> {
    let args = semihosting::args()?;
    #[cfg(feature = "kernel-tests")]
    if args.get(1).is_some_and(|a| a == "--kernel-tests") {
        return exactness::run();
    }
    if args.get(1).is_some_and(|a| a == "info") {
        return infer::info_json(&args);
    }
    infer::main(&args)
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "error: bitnet-bare is a bare-metal image: build it with --target \
         riscv64gc-unknown-none-elf or --target aarch64-unknown-none and boot it under \
         qemu-system (README.md, \"Bare metal\"); on an OS, \
         use bitnet-infer"
    );
    std::process::exit(2);
}
