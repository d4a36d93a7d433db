//! Process figures for the stats block.

/// Peak resident set size in bytes (Linux `VmHWM`), if the platform reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU features relevant to the kernels, as (name, present): what run-time detection sees
/// (CPUID, HWCAP, `riscv_hwprobe`).
pub fn cpu_features() -> Vec<(&'static str, bool)> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        vec![
            ("avx2", has!("avx2")),
            ("fma", has!("fma")),
            ("f16c", has!("f16c")),
            ("avx512f", has!("avx512f")),
            ("avx512bw", has!("avx512bw")),
            ("avx512vl", has!("avx512vl")),
            ("avx512vnni", has!("avx512vnni")),
            ("avxvnni", has!("avxvnni")),
        ]
    }
    #[cfg(target_arch = "aarch64")]
    {
        use std::arch::is_aarch64_feature_detected as has;
        vec![
            ("neon", has!("neon")),
            ("dotprod", has!("dotprod")),
            ("i8mm", has!("i8mm")),
            ("sve", has!("sve")),
        ]
    }
    #[cfg(target_arch = "riscv64")]
    {
        let h = bitnet::cpu::hwcap().unwrap_or(0);
        vec![
            ("v", h & bitnet::cpu::HWCAP_RISCV_V != 0),
            ("zbb", bitnet::kernels::riscv64::zbb_detected()),
        ]
    }
    #[cfg(target_arch = "arm")]
    {
        vec![("neon", bitnet::kernels::armv7::has_neon())]
    }
    #[cfg(not(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64",
        target_arch = "arm"
    )))]
    {
        Vec::new()
    }
}
