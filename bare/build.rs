//! Bare-metal images are linked with the memory map of the QEMU machine they boot on
//! (`qemu/machines/`); host builds need nothing.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os != "none" {
        return;
    }
    // The QEMU machine each architecture boots on: `virt`, and for 32-bit Arm (Cortex-M)
    // the MPS3 AN547 board.
    let machine = if arch == "arm" { "mps3-an547" } else { "virt" };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu/machines");
    let script = dir.join(format!("{arch}-{machine}.ld"));
    if !script.exists() {
        panic!(
            "no memory map for bare-metal {arch}: {} is missing",
            script.display()
        );
    }
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rustc-link-arg-bins=-T{}", script.display());
}
