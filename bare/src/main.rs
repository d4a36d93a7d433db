//! `bitnet-bare`: the forward pass with no operating system, for QEMU's `virt` machines
//! (`riscv64gc-unknown-none-elf`, `aarch64-unknown-none`).
//!
//! * `rt`: start-up per architecture (stack, FP/vector state, MMU, traps), the heap, the
//!   console, exit; and the CPU features found by asking the hardware.
//! * `semihosting`: the one channel to the host: the command line, file reads and writes,
//!   the exit code.
//! * `infer`: what `bitnet-infer run` does for the harness: load a GGUF, prefill, decode
//!   (greedy or teacher-forced), write the logits as `.npy` on the host.
//!
//! On an OS this binary only says what it is.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
#[macro_use]
mod console;
#[cfg(target_os = "none")]
mod infer;
#[cfg(target_os = "none")]
mod rt;
#[cfg(target_os = "none")]
mod semihosting;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "error: bitnet-bare is a bare-metal image: build it with --target \
         riscv64gc-unknown-none-elf or --target aarch64-unknown-none and boot it under \
         qemu-system (`cargo xtask validate --target riscv64gc-unknown-none-elf`); on an OS, \
         use bitnet-infer"
    );
    std::process::exit(2);
}
