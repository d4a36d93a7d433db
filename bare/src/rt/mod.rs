//! Start-up shared by every machine. Each architecture's file (identical function names)
//! enters at its reset entry (`_start`; Cortex-M: the vector table's `reset`), sets up the
//! stack and whatever the kernels need (FP and vector state, on AArch64 the MMU), installs
//! a trap handler, and calls [`bare_main`].
//!
//! * `putc`: one byte of text (the UART; Cortex-M: semihosting's console).
//! * `features`: the CPU features the hardware reports, by `target_feature` name.

#[cfg_attr(target_arch = "riscv64", path = "riscv64.rs")]
#[cfg_attr(target_arch = "aarch64", path = "aarch64.rs")]
#[cfg_attr(target_arch = "arm", path = "arm.rs")]
mod arch;

pub use arch::putc;

use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

extern "C" {
    static mut __heap_start: u8;
    static __heap_end: u8;
}

/// Called once by `_start` with a stack and FP/vector state: the heap, the features, the
/// run, the exit code.
#[no_mangle]
extern "C" fn bare_main() -> ! {
    // SAFETY: the linker script reserves [__heap_start, __heap_end) for the heap and nothing
    // else touches it; this is the only init, before the first allocation.
    unsafe {
        let start = &raw mut __heap_start;
        let end = &raw const __heap_end;
        HEAP.lock().init(start, end as usize - start as usize);
    }
    let found = arch::features();
    bitnet::cpu::set_found_by_platform(&found);
    let code = match crate::run() {
        Ok(()) => 0,
        Err(e) => {
            println!("error: {e}");
            1
        }
    };
    crate::semihosting::exit(code)
}

/// A trap the start-up code did not expect. `illegal`: the CPU refused an instruction, which
/// ends the run with 132 (128 + SIGILL, as the harness reads a Linux run); anything else
/// with 134.
fn fatal_trap(illegal: bool, what: core::fmt::Arguments) -> ! {
    println!("fatal trap: {what}");
    crate::semihosting::exit(if illegal { 132 } else { 134 })
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("panic: {info}");
    crate::semihosting::exit(101)
}
