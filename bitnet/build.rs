//! `cfg(armv7_neon)`: 32-bit Arm where the NEON kernels (`kernels/armv7.rs`) are built, that
//! is A-profile cores under an OS, which detects NEON at run time. Bare-metal 32-bit Arm here
//! is the M profile (Cortex-M), which has no NEON, and `target_feature = "mclass"` is not a
//! stable cfg to tell the profiles apart.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(armv7_neon)");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("CARGO_CFG_TARGET_ARCH") == "arm" && var("CARGO_CFG_TARGET_OS") != "none" {
        println!("cargo::rustc-cfg=armv7_neon");
    }
}
