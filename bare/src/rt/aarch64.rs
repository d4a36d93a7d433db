//! AArch64 `virt` at EL1 (`-kernel` without `virtualization=on`): core 0 runs, the others
//! park.
//!
//! FP/SIMD is trapped until CPACR_EL1.FPEN allows it, and with the MMU off every data access
//! is Device memory, where an unaligned access faults (the NEON kernels load unaligned): the
//! start-up code enables both, with an identity map of the first 4 GiB, the first GiB
//! (devices) as Device-nGnRnE and the rest (RAM) as Normal write-back. Features come from
//! the ID registers, which EL1 may read.

use alloc::vec::Vec;

core::arch::global_asm!(
    r#"
    .section .text.entry, "ax"
    .global _start
_start:
    mrs x0, mpidr_el1
    and x0, x0, #0xff
    cbnz x0, 9f
    mrs x0, CurrentEL
    cmp x0, #(1 << 2)
    b.ne 9f                         // only EL1 is set up here
    adrp x0, __stack_top
    add x0, x0, :lo12:__stack_top
    mov sp, x0
    mov x0, #(3 << 20)              // CPACR_EL1.FPEN: FP/SIMD at EL1 and EL0
    msr cpacr_el1, x0
    isb
    adrp x0, vectors
    add x0, x0, :lo12:vectors
    msr vbar_el1, x0
    adrp x0, __bss_start
    add x0, x0, :lo12:__bss_start
    adrp x1, __bss_end
    add x1, x1, :lo12:__bss_end
1:  cmp x0, x1
    b.hs 2f
    str xzr, [x0], #8
    b 1b
2:  bl mmu_on
    bl bare_main
9:  wfe
    b 9b

    // 16 entries of 0x80 bytes: (current EL with SP0, with SPx, lower EL 64, 32) x (sync,
    // IRQ, FIQ, SError). Each passes its index and the syndrome to bare_trap.
    .macro entry idx
    .balign 0x80
    mov x0, #\idx
    mrs x1, esr_el1
    mrs x2, elr_el1
    mrs x3, far_el1
    b bare_trap
    .endm
    .text
    .balign 0x800
vectors:
    entry 0
    entry 1
    entry 2
    entry 3
    entry 4
    entry 5
    entry 6
    entry 7
    entry 8
    entry 9
    entry 10
    entry 11
    entry 12
    entry 13
    entry 14
    entry 15
"#
);

/// Level-1 table (1 GiB blocks), 4 KiB aligned.
#[repr(C, align(4096))]
struct Table([u64; 512]);

static mut L1: Table = Table([0; 512]);

/// Identity map, then MMU and caches on. Runs before any Rust code that touches memory
/// through unaligned or NEON accesses.
#[no_mangle]
extern "C" fn mmu_on() {
    const VALID_BLOCK: u64 = 0b01;
    const AF: u64 = 1 << 10;
    const INNER_SHAREABLE: u64 = 0b11 << 8;
    const XN: u64 = (1 << 54) | (1 << 53);
    const DEVICE: u64 = 0 << 2; // MAIR attr 0
    const NORMAL: u64 = 1 << 2; // MAIR attr 1
    let mut entries = [0u64; 512];
    entries[0] = VALID_BLOCK | AF | DEVICE | XN;
    for gib in 1..4u64 {
        entries[gib as usize] = (gib << 30) | VALID_BLOCK | AF | NORMAL | INNER_SHAREABLE;
    }
    // SAFETY: single core, MMU off: nothing else reads the table yet.
    unsafe { (&raw mut L1).write(Table(entries)) };
    let mmfr0: u64;
    // SAFETY: EL1 reads its own ID register.
    unsafe { core::arch::asm!("mrs {}, id_aa64mmfr0_el1", out(reg) mmfr0) };
    let ips = (mmfr0 & 0xf).min(0b101);
    let mair: u64 = 0xff << 8; // attr 0: Device-nGnRnE, attr 1: Normal WB RW-allocate
    let tcr: u64 = 25 // T0SZ: 39-bit addresses, walks start at level 1
        | 0b01 << 8 // IRGN0: write-back
        | 0b01 << 10 // ORGN0: write-back
        | 0b11 << 12 // SH0: inner shareable
        | 1 << 23 // EPD1: no TTBR1 walks
        | ips << 32;
    let ttbr0 = &raw const L1 as u64;
    // SAFETY: the table maps the image, stack, heap and UART to themselves, so execution
    // continues at the same addresses with the MMU on.
    unsafe {
        core::arch::asm!(
            "msr mair_el1, {mair}",
            "msr tcr_el1, {tcr}",
            "msr ttbr0_el1, {ttbr0}",
            "dsb ish",
            "isb",
            "tlbi vmalle1",
            "dsb ish",
            "isb",
            "mrs {s}, sctlr_el1",
            "orr {s}, {s}, #(1 << 0)",   // M: MMU
            "orr {s}, {s}, #(1 << 2)",   // C: data cache
            "orr {s}, {s}, #(1 << 12)",  // I: instruction cache
            "bic {s}, {s}, #(1 << 1)",   // A: no alignment faults on Normal memory
            "bic {s}, {s}, #(1 << 19)",  // WXN
            "msr sctlr_el1, {s}",
            "isb",
            mair = in(reg) mair,
            tcr = in(reg) tcr,
            ttbr0 = in(reg) ttbr0,
            s = out(reg) _,
        );
    }
}

/// PL011 UART of `virt`.
const UART: *mut u32 = 0x0900_0000 as *mut u32;

pub fn putc(b: u8) {
    // SAFETY: the PL011's data register and flag register (TXFF, bit 5), MMIO.
    unsafe {
        while UART.add(0x18 / 4).read_volatile() & (1 << 5) != 0 {}
        UART.write_volatile(u32::from(b));
    }
}

pub fn features() -> Vec<&'static str> {
    let (isar0, isar1, pfr0): (u64, u64, u64);
    // SAFETY: EL1 reads its own ID registers.
    unsafe {
        core::arch::asm!(
            "mrs {}, id_aa64isar0_el1",
            "mrs {}, id_aa64isar1_el1",
            "mrs {}, id_aa64pfr0_el1",
            out(reg) isar0, out(reg) isar1, out(reg) pfr0
        );
    }
    let field = |r: u64, lsb: u32| r >> lsb & 0xf;
    let mut found = Vec::new();
    // AdvSIMD 0: present, 1: present with half precision, 0xf: absent; FP the same.
    let (fp, simd) = (field(pfr0, 16), field(pfr0, 20));
    if simd <= 1 {
        found.push("neon");
    }
    if fp == 1 && simd == 1 {
        found.push("fp16");
    }
    if field(isar0, 44) >= 1 {
        found.push("dotprod");
    }
    if field(isar1, 52) >= 1 {
        found.push("i8mm");
    }
    if field(isar1, 44) >= 1 {
        found.push("bf16");
    }
    if field(pfr0, 32) >= 1 {
        found.push("sve");
    }
    found
}

#[no_mangle]
extern "C" fn bare_trap(kind: u64, esr: u64, elr: u64, far: u64) -> ! {
    let ec = esr >> 26 & 0x3f;
    let illegal = ec == 0; // unknown reason: an undefined instruction
    let what = match ec {
        0x00 => "undefined instruction",
        0x07 => "FP/SIMD access trapped",
        0x21 | 0x20 => "instruction abort",
        0x25 | 0x24 => "data abort",
        0x22 => "misaligned pc",
        0x26 => "misaligned sp",
        _ => "exception",
    };
    super::fatal_trap(
        illegal,
        format_args!("{what} (vector {kind}, ESR {esr:#x}) at pc {elr:#x}, address {far:#x}"),
    )
}
