//! What the running CPU and system offer: one snapshot of the CPU's features per process
//! ([`CpuFeatures`]: CPUID on x86_64, the Linux HWCAP words on ARM, HWCAP and
//! `riscv_hwprobe` on RISC-V), the check that a binary built with extra target features
//! runs on a CPU that has them, and the physical core count.
//!
//! The std detection macros are not used: they answer `true` for any feature enabled at
//! compile time (so they cannot tell a mis-built binary), RISC-V has none on stable, and
//! there is no std on bare metal.

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

/// Declares [`FEATURES`] for one architecture: each name with whether this build assumes it
/// (`-C target-feature`, `-C target-cpu`), which the compiler then may use anywhere.
macro_rules! feature_table {
    ($($f:literal),* $(,)?) => {
        /// Every CPU feature the engine asks about on this architecture, by its
        /// `target_feature` name, and whether this build assumes it.
        pub const FEATURES: &[(&str, bool)] = &[$(($f, cfg!(target_feature = $f))),*];
    };
}

#[cfg(target_arch = "x86_64")]
feature_table!(
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
#[cfg(target_arch = "aarch64")]
feature_table!("neon", "dotprod", "i8mm", "fp16", "sve", "sve2", "bf16");
#[cfg(target_arch = "arm")]
feature_table!("neon");
#[cfg(target_arch = "riscv64")]
feature_table!("v", "zbb");
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64"
)))]
feature_table!();

const _: () = assert!(
    FEATURES.len() <= 31,
    "one bit per feature, one for 'detected'"
);

/// What the running CPU reported about each of [`FEATURES`], detected once per process
/// ([`CpuFeatures::get`]): the kernels, the start-up check, `info` and the stats line all
/// read this one snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuFeatures {
    /// Bit i: the CPU could be asked about `FEATURES[i]` (CPUID always; HWCAP and
    /// `riscv_hwprobe` only with `std` on Linux, and `riscv_hwprobe` only from Linux 6.5).
    known: u32,
    /// Bit i: it said yes.
    present: u32,
}

impl CpuFeatures {
    /// The process's snapshot, detected on first use.
    pub fn get() -> CpuFeatures {
        use core::sync::atomic::{AtomicU32, Ordering};
        const READY: u32 = 1 << 31;
        // Two words because some targets have no 64-bit atomics; `PRESENT` is written
        // before `KNOWN` publishes it. Threads racing to detect store the same values.
        static KNOWN: AtomicU32 = AtomicU32::new(0);
        static PRESENT: AtomicU32 = AtomicU32::new(0);
        let known = KNOWN.load(Ordering::Acquire);
        if known & READY != 0 {
            return CpuFeatures {
                known: known & !READY,
                present: PRESENT.load(Ordering::Relaxed),
            };
        }
        let f = CpuFeatures::detect();
        PRESENT.store(f.present, Ordering::Relaxed);
        KNOWN.store(f.known | READY, Ordering::Release);
        f
    }

    /// Asks the CPU (and OS) now; on bare metal, reads what the start-up code found.
    pub fn detect() -> CpuFeatures {
        #[cfg(not(target_os = "none"))]
        let probe = arch::Probe::new();
        #[cfg(target_os = "none")]
        let probe = platform::Probe;
        let (mut known, mut present) = (0, 0);
        for (i, (name, _)) in FEATURES.iter().enumerate() {
            if let Some(yes) = probe.has(name) {
                known |= 1 << i;
                present |= u32::from(yes) << i;
            }
        }
        CpuFeatures { known, present }
    }

    fn index(name: &str) -> Option<usize> {
        FEATURES.iter().position(|(n, _)| *n == name)
    }

    /// Whether the CPU reported feature `name` (`false` if it could not be asked, or the name
    /// is not in [`FEATURES`]).
    pub fn detected(self, name: &str) -> bool {
        CpuFeatures::index(name).is_some_and(|i| self.present >> i & 1 == 1)
    }

    /// Whether code may use feature `name`: the CPU reported it, or the build assumes it
    /// (a per-board build, or a target without run-time detection).
    pub fn usable(self, name: &str) -> bool {
        CpuFeatures::index(name).is_some_and(|i| FEATURES[i].1 || self.present >> i & 1 == 1)
    }

    /// Every feature of [`FEATURES`] with whether the CPU reported it.
    pub fn list(self) -> impl Iterator<Item = (&'static str, bool)> {
        FEATURES
            .iter()
            .enumerate()
            .map(move |(i, (n, _))| (*n, self.present >> i & 1 == 1))
    }

    /// Features this build assumes that the CPU says it lacks. The compiler may use such
    /// instructions anywhere, so a binary must check this before doing anything else. (A
    /// feature the CPU could not be asked about is given the benefit of the doubt.)
    pub fn missing_built_in(self) -> alloc::vec::Vec<&'static str> {
        FEATURES
            .iter()
            .enumerate()
            .filter(|(i, (_, built_in))| {
                *built_in && self.known >> i & 1 == 1 && self.present >> i & 1 == 0
            })
            .map(|(_, (n, _))| *n)
            .collect()
    }
}

/// Whether the CPU is AMD's (or Hygon's, whose cores are AMD's Zen), from CPUID's vendor
/// string: the kernels' software prefetch defaults to off there ([`crate::kernels::prefetch`]).
/// `false` on other architectures.
///
/// Asked once per process: the kernels ask on every call, and under a hypervisor CPUID is a
/// trap to the host (asking per call cost ~10% of 1-thread decode on a KVM Zen 4 guest).
pub fn is_amd() -> bool {
    use core::sync::atomic::{AtomicU8, Ordering};
    const UNKNOWN: u8 = 0;
    static AMD: AtomicU8 = AtomicU8::new(UNKNOWN);
    match AMD.load(Ordering::Relaxed) {
        UNKNOWN => {
            let yes = ask_is_amd();
            AMD.store(1 + u8::from(yes), Ordering::Relaxed);
            yes
        }
        v => v == 2,
    }
}

fn ask_is_amd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: CPUID exists on every x86_64 CPU (a safe fn on newer compilers).
        #[allow(unused_unsafe)]
        let l0 = unsafe { core::arch::x86_64::__cpuid(0) };
        let mut vendor = [0u8; 12];
        vendor[..4].copy_from_slice(&l0.ebx.to_le_bytes());
        vendor[4..8].copy_from_slice(&l0.edx.to_le_bytes());
        vendor[8..].copy_from_slice(&l0.ecx.to_le_bytes());
        &vendor == b"AuthenticAMD" || &vendor == b"HygonGenuine"
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether the float loops that have a second, AVX2-compiled build (attention, the fused
/// norm + quantization, the FFN gating) may run it: an x86_64 CPU whose AVX2 the OS enables. `false` on
/// other architectures.
pub fn avx2_float_loops() -> bool {
    cfg!(target_arch = "x86_64") && CpuFeatures::get().usable("avx2")
}

/// For the tests that compare an AVX2 build with the baseline one: they must not pass by
/// running only the baseline, so a host without AVX2 fails them.
#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) fn assert_avx2_host() {
    assert!(
        avx2_float_loops(),
        "this test needs an AVX2 host to run the AVX2 build"
    );
}

/// [`CpuFeatures::missing_built_in`] of this process.
pub fn missing_target_features() -> alloc::vec::Vec<&'static str> {
    CpuFeatures::get().missing_built_in()
}

/// Bare metal: no OS reports features, and what can be asked is privileged (RISC-V `misa`,
/// AArch64's ID registers at EL1) or needs a trap handler (a RISC-V probe of Zbb), all of
/// which belong to the start-up code. It reports here, before the first
/// [`CpuFeatures::get`]; features it did not name are absent, and before it reports none is
/// known (so only the scalar kernel runs).
#[cfg(target_os = "none")]
pub fn set_found_by_platform(present: &[&str]) {
    use core::sync::atomic::Ordering;
    let bits = FEATURES
        .iter()
        .enumerate()
        .filter(|(_, (n, _))| present.contains(n))
        .fold(0u32, |b, (i, _)| b | 1 << i);
    platform::PRESENT.store(bits, Ordering::Relaxed);
    platform::SET.store(true, Ordering::Release);
}

#[cfg(target_os = "none")]
mod platform {
    use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    pub static PRESENT: AtomicU32 = AtomicU32::new(0);
    pub static SET: AtomicBool = AtomicBool::new(false);

    pub struct Probe;

    impl Probe {
        pub fn has(&self, f: &str) -> Option<bool> {
            if !SET.load(Ordering::Acquire) {
                return None;
            }
            let i = super::FEATURES.iter().position(|(n, _)| *n == f)?;
            Some(PRESENT.load(Ordering::Relaxed) >> i & 1 == 1)
        }
    }
}

/// x86_64: CPUID (and XCR0 for the register state the OS saves); needs no OS.
#[cfg(all(target_arch = "x86_64", not(target_os = "none")))]
mod arch {
    use core::arch::x86_64::{__cpuid, __cpuid_count, _xgetbv, CpuidResult};

    pub struct Probe {
        l1: CpuidResult,
        l7: CpuidResult,
        l7_1_eax: u32,
        ext_ecx: u32,
        xcr0: u64,
    }

    impl Probe {
        pub fn new() -> Probe {
            // SAFETY: CPUID exists on every x86_64 CPU (the intrinsics are safe fns on newer
            // compilers, hence the allow).
            #[allow(unused_unsafe)]
            let (l1, l7, l7_1_eax, ext_ecx) = unsafe {
                let max = __cpuid(0).eax;
                let l7 = if max >= 7 {
                    __cpuid_count(7, 0)
                } else {
                    __cpuid_count(0, 0)
                };
                let l7_1 = if max >= 7 { __cpuid_count(7, 1).eax } else { 0 };
                (__cpuid(1), l7, l7_1, __cpuid(0x8000_0001).ecx)
            };
            let xcr0 = if l1.ecx >> 27 & 1 == 1 {
                // SAFETY: OSXSAVE (CPUID.1:ECX bit 27) says XGETBV is enabled.
                unsafe { xgetbv0() }
            } else {
                0
            };
            Probe {
                l1,
                l7,
                l7_1_eax,
                ext_ecx,
                xcr0,
            }
        }

        pub fn has(&self, f: &str) -> Option<bool> {
            let bit = |r: u32, b: u32| r >> b & 1 == 1;
            let (l1, l7) = (&self.l1, &self.l7);
            let avx_os = self.xcr0 & 0b110 == 0b110; // SSE and AVX state
            let avx512_os = avx_os && self.xcr0 & 0b1110_0000 == 0b1110_0000; // opmask, ZMM
            Some(match f {
                "sse4.2" => bit(l1.ecx, 20),
                "popcnt" => bit(l1.ecx, 23),
                "lzcnt" => bit(self.ext_ecx, 5),
                "bmi1" => bit(l7.ebx, 3),
                "bmi2" => bit(l7.ebx, 8),
                "avx" => avx_os && bit(l1.ecx, 28),
                "fma" => avx_os && bit(l1.ecx, 12),
                "f16c" => avx_os && bit(l1.ecx, 29),
                "avx2" => avx_os && bit(l7.ebx, 5),
                "avxvnni" => avx_os && bit(self.l7_1_eax, 4),
                "avx512f" => avx512_os && bit(l7.ebx, 16),
                "avx512dq" => avx512_os && bit(l7.ebx, 17),
                "avx512cd" => avx512_os && bit(l7.ebx, 28),
                "avx512bw" => avx512_os && bit(l7.ebx, 30),
                "avx512vl" => avx512_os && bit(l7.ebx, 31),
                "avx512vbmi" => avx512_os && bit(l7.ecx, 1),
                "avx512vnni" => avx512_os && bit(l7.ecx, 11),
                "avx512fp16" => avx512_os && bit(l7.edx, 23),
                _ => return None,
            })
        }
    }

    /// # Safety
    /// The CPU must report OSXSAVE.
    #[target_feature(enable = "xsave")]
    unsafe fn xgetbv0() -> u64 {
        // SAFETY: the caller checked OSXSAVE.
        unsafe { _xgetbv(0) }
    }
}

/// aarch64 and 32-bit ARM: the Linux HWCAP words (the bits differ per architecture).
#[cfg(all(
    any(target_arch = "aarch64", target_arch = "arm"),
    not(target_os = "none")
))]
mod arch {
    pub struct Probe {
        hwcap: Option<(u64, u64)>,
    }

    impl Probe {
        pub fn new() -> Probe {
            #[cfg(feature = "std")]
            let hwcap = super::hwcap().map(|h| (h, super::hwcap2().unwrap_or(0)));
            #[cfg(not(feature = "std"))]
            let hwcap = None;
            Probe { hwcap }
        }

        pub fn has(&self, f: &str) -> Option<bool> {
            let (h, h2) = self.hwcap?;
            let bit = |w: u64, b: u32| w >> b & 1 == 1;
            #[cfg(target_arch = "aarch64")]
            let known = match f {
                "neon" => bit(h, 1),               // ASIMD
                "fp16" => bit(h, 9) && bit(h, 10), // FPHP, ASIMDHP
                "dotprod" => bit(h, 20),           // ASIMDDP
                "sve" => bit(h, 22),
                "sve2" => bit(h2, 1),
                "i8mm" => bit(h2, 13),
                "bf16" => bit(h2, 14),
                _ => return None,
            };
            #[cfg(target_arch = "arm")]
            let known = match f {
                "neon" => bit(h, 12),
                _ => return None,
            };
            let _ = h2; // armv7 has no feature the kernels need in HWCAP2
            Some(known)
        }
    }
}

/// riscv64: V from HWCAP (Linux reports it only for ratified RVV 1.0 and when it saves the
/// vector state); Z* extensions have no HWCAP bits, so Zbb comes from `riscv_hwprobe`.
#[cfg(all(target_arch = "riscv64", not(target_os = "none")))]
mod arch {
    pub struct Probe {
        hwcap: Option<u64>,
        ima_ext_0: Option<u64>,
    }

    impl Probe {
        pub fn new() -> Probe {
            #[cfg(all(feature = "std", target_os = "linux"))]
            let p = Probe {
                hwcap: super::hwcap(),
                ima_ext_0: hwprobe_ima_ext_0(),
            };
            #[cfg(not(all(feature = "std", target_os = "linux")))]
            let p = Probe {
                hwcap: None,
                ima_ext_0: None,
            };
            p
        }

        pub fn has(&self, f: &str) -> Option<bool> {
            match f {
                "v" => Some(self.hwcap? & super::HWCAP_RISCV_V != 0),
                "zbb" => Some(self.ima_ext_0? & HWPROBE_EXT_ZBB != 0),
                _ => None,
            }
        }
    }

    /// `riscv_hwprobe(2)` key of the base and extension bits, and its Zbb bit (Linux 6.5+).
    const HWPROBE_KEY_IMA_EXT_0: i64 = 4;
    const HWPROBE_EXT_ZBB: u64 = 1 << 4;

    /// `RISCV_HWPROBE_KEY_IMA_EXT_0` for all online CPUs, or `None` where the kernel (or
    /// QEMU before 8.1) has no `riscv_hwprobe`.
    #[cfg(all(feature = "std", target_os = "linux"))]
    fn hwprobe_ima_ext_0() -> Option<u64> {
        use core::ffi::{c_long, c_uint};
        extern "C" {
            // glibc and musl both provide it; std links libc already.
            fn syscall(number: c_long, ...) -> c_long;
        }
        const SYS_RISCV_HWPROBE: c_long = 258;
        #[repr(C)]
        struct Pair {
            key: i64,
            value: u64,
        }
        let mut pair = Pair {
            key: HWPROBE_KEY_IMA_EXT_0,
            value: 0,
        };
        // SAFETY: one valid pair; cpusetsize 0 with a null set means all online CPUs; no
        // flags.
        let ret = unsafe {
            syscall(
                SYS_RISCV_HWPROBE,
                &mut pair as *mut Pair,
                1usize,
                0usize,
                core::ptr::null_mut::<u8>(),
                0 as c_uint,
            )
        };
        // An unknown key comes back as -1.
        (ret == 0 && pair.key == HWPROBE_KEY_IMA_EXT_0).then_some(pair.value)
    }
}

/// Other architectures: nothing to ask.
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64",
    target_os = "none"
)))]
mod arch {
    pub struct Probe;

    impl Probe {
        pub fn new() -> Probe {
            Probe
        }

        pub fn has(&self, _: &str) -> Option<bool> {
            None
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
        let cpu = CpuFeatures::get();
        for (f, want) in pairs {
            assert_eq!(cpu.detected(f), want, "{f}");
        }
    }

    #[cfg(all(feature = "std", target_arch = "x86_64", target_os = "linux"))]
    #[test]
    fn vendor_agrees_with_the_kernels_cpuinfo() {
        let info = std::fs::read_to_string("/proc/cpuinfo").expect("/proc/cpuinfo");
        let vendor = info
            .lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == "vendor_id"))
            .map(|(_, v)| v.trim().to_string())
            .expect("a vendor_id line");
        let amd = vendor == "AuthenticAMD" || vendor == "HygonGenuine";
        assert_eq!(is_amd(), amd, "vendor_id {vendor}");
    }

    #[cfg(feature = "std")]
    #[test]
    fn this_process_has_what_it_was_built_for() {
        assert!(missing_target_features().is_empty());
        assert!(physical_cores() >= 1);
        assert_eq!(CpuFeatures::get(), CpuFeatures::detect());
    }
}
