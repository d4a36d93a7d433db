//! What the running CPU and system offer, beyond `is_*_feature_detected!`: the Linux
//! auxiliary vector (RISC-V V has no stable detection macro), physical cores, and the
//! check that a binary built with extra target features runs on a CPU that has them.

/// `AT_HWCAP` / `AT_HWCAP2` keys of the auxiliary vector.
pub const AT_HWCAP: u64 = 16;
pub const AT_HWCAP2: u64 = 26;

/// RISC-V: HWCAP bit of a single-letter extension is `letter - 'A'`; V is bit 21.
pub const HWCAP_RISCV_V: u64 = 1 << (b'V' - b'A');

/// The value of `key` in an auxiliary vector image (native-endian pairs of machine words,
/// ended by `AT_NULL`).
pub fn auxv_lookup(auxv: &[u8], key: u64) -> Option<u64> {
    const WORD: usize = core::mem::size_of::<usize>();
    let word = |b: &[u8]| -> u64 {
        let mut w = [0u8; WORD];
        w.copy_from_slice(b);
        usize::from_ne_bytes(w) as u64
    };
    for pair in auxv.chunks_exact(2 * WORD) {
        let (k, v) = (word(&pair[..WORD]), word(&pair[WORD..]));
        if k == 0 {
            break;
        }
        if k == key {
            return Some(v);
        }
    }
    None
}

/// `AT_HWCAP` of this process, read from `/proc/self/auxv`; `None` where there is none.
#[cfg(feature = "std")]
pub fn hwcap() -> Option<u64> {
    auxv_lookup(&std::fs::read("/proc/self/auxv").ok()?, AT_HWCAP)
}

/// `AT_HWCAP2` of this process.
#[cfg(feature = "std")]
pub fn hwcap2() -> Option<u64> {
    auxv_lookup(&std::fs::read("/proc/self/auxv").ok()?, AT_HWCAP2)
}

/// Physical cores: unique (physical id, core id) pairs of `/proc/cpuinfo` on Linux (SMT
/// siblings share a core's execution units and only slow a memory-bound decode down), else
/// the available parallelism.
#[cfg(feature = "std")]
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    match std::fs::read_to_string("/proc/cpuinfo") {
        Ok(text) => count_physical_cores(&text).map_or(logical, |n| n.min(logical)),
        Err(_) => logical,
    }
}

/// Unique (physical id, core id) pairs in a `/proc/cpuinfo` text; `None` if it has none
/// (many ARM and RISC-V kernels omit both fields).
pub fn count_physical_cores(cpuinfo: &str) -> Option<usize> {
    let mut pairs = alloc::collections::BTreeSet::new();
    for block in cpuinfo.split("\n\n") {
        let field = |name: &str| {
            block.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == name).then(|| alloc::string::String::from(v.trim()))
            })
        };
        if let (Some(p), Some(c)) = (field("physical id"), field("core id")) {
            pairs.insert((p, c));
        }
    }
    (!pairs.is_empty()).then_some(pairs.len())
}

/// Target features this binary was compiled to assume (`-C target-feature`, `target-cpu`)
/// that the running CPU lacks. The compiler may use such instructions anywhere, so a
/// binary must check this before doing anything else. The std detection macros answer
/// `true` for any feature enabled at compile time, so the CPU is asked directly (CPUID,
/// the auxiliary vector).
#[cfg(feature = "std")]
pub fn missing_target_features() -> alloc::vec::Vec<&'static str> {
    #[allow(unused_mut)]
    let mut missing = alloc::vec::Vec::new();
    #[allow(unused_macros)] // targets with no feature to check (armv7)
    macro_rules! check {
        ($has:path; $($f:tt),*) => {$(
            if cfg!(target_feature = $f) && !$has($f) {
                missing.push($f);
            }
        )*};
    }
    #[cfg(target_arch = "x86_64")]
    check!(x86::has;
        "sse4.2", "popcnt", "avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "lzcnt", "avx512f",
        "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx512vnni", "avx512vbmi",
        "avx512fp16", "avxvnni"
    );
    #[cfg(target_arch = "aarch64")]
    check!(aarch64::has; "dotprod", "i8mm", "sve", "sve2", "fp16", "bf16");
    #[cfg(target_arch = "riscv64")]
    check!(riscv64_has; "v");
    missing
}

#[cfg(all(feature = "std", target_arch = "riscv64"))]
fn riscv64_has(f: &str) -> bool {
    match f {
        "v" => hwcap().is_some_and(|h| h & HWCAP_RISCV_V != 0),
        _ => false,
    }
}

/// x86_64 features straight from CPUID (and XCR0 for the register state the OS saves).
#[cfg(all(feature = "std", target_arch = "x86_64"))]
pub mod x86 {
    use core::arch::x86_64::{__cpuid, __cpuid_count, _xgetbv};

    /// Whether the CPU (and OS) supports target feature `f`; `false` for names not listed.
    pub fn has(f: &str) -> bool {
        // SAFETY: CPUID exists on every x86_64 CPU (the intrinsics are safe fns on newer
        // compilers, hence the allow).
        #[allow(unused_unsafe)]
        let (l1, l7, l7_1, ext) = unsafe {
            let max = __cpuid(0).eax;
            let l7 = if max >= 7 {
                __cpuid_count(7, 0)
            } else {
                __cpuid_count(0, 0)
            };
            let l7_1 = if max >= 7 { __cpuid_count(7, 1).eax } else { 0 };
            (__cpuid(1), l7, l7_1, __cpuid(0x8000_0001).ecx)
        };
        let bit = |r: u32, b: u32| r >> b & 1 == 1;
        let xcr0 = if bit(l1.ecx, 27) {
            // SAFETY: OSXSAVE (CPUID.1:ECX bit 27) says XGETBV is enabled.
            unsafe { xgetbv0() }
        } else {
            0
        };
        let avx_os = xcr0 & 0b110 == 0b110; // SSE and AVX state
        let avx512_os = avx_os && xcr0 & 0b1110_0000 == 0b1110_0000; // opmask, ZMM state
        match f {
            "sse4.2" => bit(l1.ecx, 20),
            "popcnt" => bit(l1.ecx, 23),
            "lzcnt" => bit(ext, 5),
            "bmi1" => bit(l7.ebx, 3),
            "bmi2" => bit(l7.ebx, 8),
            "avx" => avx_os && bit(l1.ecx, 28),
            "fma" => avx_os && bit(l1.ecx, 12),
            "f16c" => avx_os && bit(l1.ecx, 29),
            "avx2" => avx_os && bit(l7.ebx, 5),
            "avxvnni" => avx_os && bit(l7_1, 4),
            "avx512f" => avx512_os && bit(l7.ebx, 16),
            "avx512dq" => avx512_os && bit(l7.ebx, 17),
            "avx512cd" => avx512_os && bit(l7.ebx, 28),
            "avx512bw" => avx512_os && bit(l7.ebx, 30),
            "avx512vl" => avx512_os && bit(l7.ebx, 31),
            "avx512vbmi" => avx512_os && bit(l7.ecx, 1),
            "avx512vnni" => avx512_os && bit(l7.ecx, 11),
            "avx512fp16" => avx512_os && bit(l7.edx, 23),
            _ => false,
        }
    }

    #[target_feature(enable = "xsave")]
    unsafe fn xgetbv0() -> u64 {
        _xgetbv(0)
    }
}

/// aarch64 features from the Linux HWCAP words (`AT_HWCAP`, `AT_HWCAP2`).
#[cfg(all(feature = "std", target_arch = "aarch64"))]
pub mod aarch64 {
    /// Whether the CPU supports target feature `f`; `false` for names not listed or when
    /// the auxiliary vector cannot be read.
    pub fn has(f: &str) -> bool {
        let (h, h2) = (super::hwcap().unwrap_or(0), super::hwcap2().unwrap_or(0));
        let bit = |w: u64, b: u32| w >> b & 1 == 1;
        match f {
            "fp16" => bit(h, 9) && bit(h, 10), // FPHP, ASIMDHP
            "dotprod" => bit(h, 20),           // ASIMDDP
            "sve" => bit(h, 22),
            "sve2" => bit(h2, 1),
            "i8mm" => bit(h2, 13),
            "bf16" => bit(h2, 14),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auxv_pairs() {
        let mut img = alloc::vec::Vec::new();
        for (k, v) in [
            (6usize, 4096usize),
            (16, 0x20_0000 | 1),
            (26, 7),
            (0, 0),
            (16, 9),
        ] {
            img.extend_from_slice(&k.to_ne_bytes());
            img.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(auxv_lookup(&img, AT_HWCAP), Some(0x20_0001));
        assert_eq!(auxv_lookup(&img, AT_HWCAP2), Some(7));
        assert_eq!(auxv_lookup(&img, 33), None);
        assert_ne!(auxv_lookup(&img, AT_HWCAP).unwrap() & HWCAP_RISCV_V, 0);
    }

    #[test]
    fn cpuinfo_cores() {
        let two_smt = "processor\t: 0\nphysical id\t: 0\ncore id\t: 0\n\n\
                       processor\t: 1\nphysical id\t: 0\ncore id\t: 0\n\n\
                       processor\t: 2\nphysical id\t: 0\ncore id\t: 1\n";
        assert_eq!(count_physical_cores(two_smt), Some(2));
        assert_eq!(
            count_physical_cores("processor\t: 0\nBogoMIPS : 50\n"),
            None
        );
    }

    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    #[test]
    fn cpuid_agrees_with_std_detection() {
        use std::arch::is_x86_feature_detected as std_has;
        let pairs = [
            ("avx2", std_has!("avx2")),
            ("fma", std_has!("fma")),
            ("f16c", std_has!("f16c")),
            ("avx512f", std_has!("avx512f")),
            ("avx512bw", std_has!("avx512bw")),
            ("avx512vl", std_has!("avx512vl")),
            ("avx512vnni", std_has!("avx512vnni")),
            ("avx512fp16", std_has!("avx512fp16")),
            ("avxvnni", std_has!("avxvnni")),
            ("bmi2", std_has!("bmi2")),
            ("lzcnt", std_has!("lzcnt")),
        ];
        for (f, want) in pairs {
            assert_eq!(x86::has(f), want, "{f}");
        }
    }

    #[cfg(feature = "std")]
    #[test]
    fn this_process_has_what_it_was_built_for() {
        assert!(missing_target_features().is_empty());
        assert!(physical_cores() >= 1);
    }
}
