//! Cortex-M55 on QEMU's `mps3-an547`, Secure state from reset (`-kernel`).
//!
//! The vector table gives the initial stack and `reset`; `reset` turns on the FPU
//! (CPACR CP10/CP11), zeroes `.bss` and calls `bare_main`. The data is initialised where QEMU
//! loaded it (the ELF's load and run addresses are the same). No kernel is reported: the
//! Cortex-M55's Helium (MVE) has no kernel here, so the scalar one runs.

use alloc::vec::Vec;

core::arch::global_asm!(
    r#"
    .section .vectors, "a"
    .balign 128
    .word __stack_top
    .word reset
    .rept 14
    .word fault
    .endr

    .text
    .thumb_func
    .global reset
reset:
    ldr r0, =0xE000ED88            @ CPACR: full access to CP10 and CP11 (the FPU)
    ldr r1, [r0]
    orr r1, r1, #(0xF << 20)
    str r1, [r0]
    dsb
    isb
    ldr r0, =__bss_start
    ldr r1, =__bss_end
    movs r2, #0
1:  cmp r0, r1
    bhs 2f
    str r2, [r0], #4
    b 1b
2:  bl bare_main
3:  b 3b

    .thumb_func
fault:
    mrs r0, ipsr
    ldr r1, =0xE000ED28            @ CFSR
    ldr r1, [r1]
    ldr r2, =0xE000ED2C            @ HFSR
    ldr r2, [r2]
    ldr r3, [sp, #24]              @ the stacked pc
    b bare_trap
"#
);

/// The board has no UART this image sets up: text goes through semihosting's console.
pub fn putc(b: u8) {
    crate::semihosting::write_char(b);
}

pub fn features() -> Vec<&'static str> {
    Vec::new()
}

#[no_mangle]
extern "C" fn bare_trap(exception: u32, cfsr: u32, hfsr: u32, pc: u32) -> ! {
    // UFSR (CFSR bits 16..): UNDEFINSTR (bit 16), NOCP (bit 19: FPU off).
    let illegal = cfsr >> 16 & 1 == 1;
    super::fatal_trap(
        illegal,
        format_args!("exception {exception} (CFSR {cfsr:#x}, HFSR {hfsr:#x}) at pc {pc:#x}"),
    )
}
