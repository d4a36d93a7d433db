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
/// binary must check this before doing anything else.
#[cfg(feature = "std")]
pub fn missing_target_features() -> alloc::vec::Vec<&'static str> {
    let mut missing = alloc::vec::Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! x86 {
            ($($f:tt),*) => {$(
                if cfg!(target_feature = $f) && !std::arch::is_x86_feature_detected!($f) {
                    missing.push($f);
                }
            )*};
        }
        x86!(
            "sse4.2",
            "popcnt",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "bmi1",
            "bmi2",
            "lzcnt",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512dq",
            "avx512cd",
            "avx512vnni",
            "avx512vbmi",
            "avx512fp16",
            "avxvnni"
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        macro_rules! arm {
            ($($f:tt),*) => {$(
                if cfg!(target_feature = $f) && !std::arch::is_aarch64_feature_detected!($f) {
                    missing.push($f);
                }
            )*};
        }
        arm!("dotprod", "i8mm", "sve", "sve2", "fp16", "bf16");
    }
    #[cfg(target_arch = "riscv64")]
    {
        if cfg!(target_feature = "v") && hwcap().is_none_or(|h| h & HWCAP_RISCV_V == 0) {
            missing.push("v");
        }
    }
    missing
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

    #[cfg(feature = "std")]
    #[test]
    fn this_process_has_what_it_was_built_for() {
        assert!(missing_target_features().is_empty());
        assert!(physical_cores() >= 1);
    }
}
