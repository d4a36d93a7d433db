//! Whether the x86_64 decode and head loops issue software prefetches: one setting per
//! process, chosen by the CPU's vendor unless the user says otherwise.
//!
//! Why it depends on the vendor, measured with these loops on 2-vCPU hosts: on an Intel
//! Sapphire Rapids host the hardware prefetchers alone left a single-token stream at ~55% of
//! the read bandwidth, and prefetching 1 KiB ahead is what brought decode to 85-90% of it;
//! on an AMD EPYC Zen 4 host the same prefetches made the streams slower (the f16 head loop
//! 26-27 GB/s per core without them, 19-20 with; decode on 1 thread ~15% slower), as Zen's
//! own stream prefetchers already run far enough ahead and the extra instructions compete
//! with them for the core's miss buffers. Other ISAs' kernels do not prefetch.

use core::sync::atomic::{AtomicU8, Ordering};

/// The user's choice (`--prefetch`, `BITNET_PREFETCH`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefetch {
    /// On, except on AMD CPUs.
    Auto,
    On,
    Off,
}

impl Prefetch {
    pub const NAMES: [&'static str; 3] = ["auto", "on", "off"];

    pub fn from_name(name: &str) -> Option<Prefetch> {
        match name {
            "auto" => Some(Prefetch::Auto),
            "on" => Some(Prefetch::On),
            "off" => Some(Prefetch::Off),
            _ => None,
        }
    }
}

const AUTO: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;
static MODE: AtomicU8 = AtomicU8::new(AUTO);

/// Sets the process's choice; kernels read it at each call.
pub fn set(p: Prefetch) {
    let v = match p {
        Prefetch::Auto => AUTO,
        Prefetch::On => ON,
        Prefetch::Off => OFF,
    };
    MODE.store(v, Ordering::Relaxed);
}

/// Whether the loops prefetch now.
#[inline]
pub fn enabled() -> bool {
    match MODE.load(Ordering::Relaxed) {
        ON => true,
        OFF => false,
        _ => auto_enabled(),
    }
}

/// What `Auto` decides on this CPU.
pub fn auto_enabled() -> bool {
    !crate::cpu::is_amd()
}

/// For banners: "on", "off", "off (auto: AMD CPU)", "on (auto)".
pub fn describe() -> &'static str {
    match (MODE.load(Ordering::Relaxed), auto_enabled()) {
        (ON, _) => "on",
        (OFF, _) => "off",
        (_, true) => "on (auto)",
        (_, false) => "off (auto: AMD CPU)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Setting the choice is tested by `kernels::tests::decode_with_and_without_prefetch`,
    // the one test that changes it.
    #[test]
    fn names_parse_and_unknown_ones_do_not() {
        for n in Prefetch::NAMES {
            assert!(Prefetch::from_name(n).is_some(), "{n}");
        }
        assert_eq!(Prefetch::from_name("yes"), None);
    }
}
