//! Start-up check: a binary built with extra target features (`-C target-feature=+avx2`,
//! `+dotprod`, `-C target-cpu=native`, ...) may use them anywhere, so it must refuse to run
//! on a CPU without them before doing anything else, instead of dying with SIGILL.

/// Exits with code 2 and says what to rebuild if this CPU lacks a compiled-in feature.
pub fn ensure_target_features() {
    let missing = bitnet::cpu::missing_target_features();
    if missing.is_empty() {
        return;
    }
    let flags: Vec<String> = missing.iter().map(|f| format!("+{f}")).collect();
    eprintln!(
        "error: this bitnet-infer was built for CPU features this {} CPU lacks: {}",
        std::env::consts::ARCH,
        missing.join(", ")
    );
    eprintln!(
        "  it was compiled with `-C target-feature={}` (or a `-C target-cpu` implying it);",
        flags.join(",")
    );
    eprintln!(
        "  rebuild without that target feature (drop it from RUSTFLAGS, .cargo/config.toml or \
         the target's rustflags): the kernels pick the best instructions at run time anyway"
    );
    std::process::exit(2);
}
