//! RISC-V `virt` in machine mode (`-bios none`): hart 0 runs, the others park.
//!
//! Floating point (mstatus.FS) and, where the CPU has them, vectors (mstatus.VS) start
//! switched off: the first instruction using them would trap. Features: V from `misa`;
//! Zbb has no `misa` bit, so one Zbb instruction is tried with the trap handler armed to
//! skip it.

use alloc::vec::Vec;

core::arch::global_asm!(
    r#"
    .section .text.entry, "ax"
    .global _start
_start:
    csrr t0, mhartid
    bnez t0, 9f
    .option push
    .option norelax
    la sp, __stack_top
    .option pop
    la t0, trap_entry
    csrw mtvec, t0
    li t0, (1 << 13) | (1 << 9)     # mstatus.FS = VS = Initial
    csrs mstatus, t0
    csrwi fcsr, 0
    la t0, __bss_start
    la t1, __bss_end
1:  bgeu t0, t1, 2f
    sd zero, 0(t0)
    addi t0, t0, 8
    j 1b
2:  call bare_main
9:  wfi
    j 9b

    # Returns 1 in a0 if the CPU executes Zbb's andn, 0 if it traps (trap_entry skips the
    # instruction and clears a0).
    .text
    .balign 4
    .global probe_zbb
probe_zbb:
    li a0, 1
    .option push
    .option arch, +zbb
probe_zbb_insn:
    andn a1, a1, a1
    .option pop
    ret

    .balign 4
trap_entry:
    csrr t0, mepc
    la t1, probe_zbb_insn
    bne t0, t1, 3f
    li a0, 0
    addi t0, t0, 4
    csrw mepc, t0
    mret
3:  csrr a0, mcause
    csrr a1, mepc
    csrr a2, mtval
    tail bare_trap
"#
);

extern "C" {
    fn probe_zbb() -> usize;
}

/// 16550 UART of `virt`.
const UART: *mut u8 = 0x1000_0000 as *mut u8;

pub fn putc(b: u8) {
    // SAFETY: the 16550's transmit holding register and line status register, MMIO.
    unsafe {
        while UART.add(5).read_volatile() & 0x20 == 0 {}
        UART.write_volatile(b);
    }
}

pub fn features() -> Vec<&'static str> {
    let misa: usize;
    // SAFETY: reading a machine-mode CSR in machine mode.
    unsafe { core::arch::asm!("csrr {}, misa", out(reg) misa) };
    let mut found = Vec::new();
    if misa >> (b'V' - b'A') & 1 == 1 {
        found.push("v");
    }
    // SAFETY: trap_entry handles the one instruction that may trap in it.
    if unsafe { probe_zbb() } == 1 {
        found.push("zbb");
    }
    found
}

#[no_mangle]
extern "C" fn bare_trap(mcause: usize, mepc: usize, mtval: usize) -> ! {
    let illegal = mcause == 2;
    let what = match mcause {
        2 => "illegal instruction",
        0 | 4 | 6 => "misaligned access",
        1 | 5 | 7 => "access fault",
        _ => "exception",
    };
    super::fatal_trap(
        illegal,
        format_args!("{what} (mcause {mcause}) at pc {mepc:#x}, mtval {mtval:#x}"),
    )
}
