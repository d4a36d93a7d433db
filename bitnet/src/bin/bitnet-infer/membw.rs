//! Memory read bandwidth as a decode step sees it: a streaming sum over a buffer far larger
//! than any cache, split over the benchmark's own thread pool. Decode reads every weight once
//! per token, so this is its ceiling.
//!
//! `bitnet-infer membw` checks that probe before anyone trusts it: against a plain streaming
//! read (a `u64` sum as the compiler vectorises it), on 4 KiB and on 2 MiB pages, and through
//! a file's mmap, where a model's mmapped tensors live.

use std::sync::atomic::{
    AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use std::time::{Duration, Instant};

use bitnet::parallel::{Exec, Pool};
use memmap2::{Mmap, MmapMut};

use crate::args::MembwArgs;
use crate::setup;
use crate::stats::Stats;

/// `bench`'s yardstick: a fresh buffer on 2 MiB pages, each sample read by the probe and by
/// the plain read, the faster one counting. `membw` found both 4 KiB pages (-18% at 2
/// threads) and either method alone (-6%, depending on the thread count) to understate what
/// the machine can read, and a yardstick must not flatter decode.
pub struct Yardstick {
    buf: MmapMut,
}

impl Yardstick {
    /// A `mib` MiB buffer, read once by each method (threads awake, TLB entries made); `None`
    /// if `mib` is 0 or the memory cannot be had.
    pub fn new(pool: &Pool, mib: usize) -> Option<Yardstick> {
        if mib == 0 {
            return None;
        }
        let buf = anon(mib << 20, true).ok()?;
        pass(pool, &buf, probe);
        pass(pool, &buf, plain);
        Some(Yardstick { buf })
    }

    /// The read bandwidth now, in GB/s.
    pub fn sample(&self, pool: &Pool) -> f64 {
        pass(pool, &self.buf, probe).max(pass(pool, &self.buf, plain))
    }
}

pub fn main(a: &MembwArgs) -> Result<(), String> {
    if a.mib == 0 || a.reps == 0 {
        return Err("--mib and --reps must be at least 1".into());
    }
    let threads = setup::thread_counts(a.threads.as_deref())?;
    let bytes = a.mib << 20;
    let small = anon(bytes, false).map_err(|e| format!("cannot map {} MiB: {e}", a.mib))?;
    let huge = anon(bytes, true).map_err(|e| format!("cannot map {} MiB: {e}", a.mib))?;
    let huge_mib = anon_huge_kib().unwrap_or(0) / 1024;
    let file = match &a.file {
        Some(path) => {
            let f = std::fs::File::open(path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            // SAFETY: read-only map; a file changed under us gives odd sums, not unsafety of
            // our own making (the same contract as the model loader's map).
            let m = unsafe { Mmap::map(&f) }
                .map_err(|e| format!("cannot mmap {}: {e}", path.display()))?;
            Some((path.display().to_string(), m))
        }
        None => None,
    };
    let mut buffers: Vec<(String, &[u8])> = vec![
        ("4 KiB pages (anonymous)".into(), &small[..]),
        (
            format!("2 MiB pages (anonymous, madvise; {huge_mib} MiB huge)"),
            &huge[..],
        ),
    ];
    if let Some((name, m)) = &file {
        // Whole 4 KiB pages only: the passes split at page boundaries.
        buffers.push((format!("mmap of {name}"), &m[..m.len() / 4096 * 4096]));
    }
    let methods: [(&str, Read); 2] = [
        ("probe (bench: widest loads, 4 accumulators)", probe),
        ("plain read (u64 sum, compiler-vectorised)", plain),
    ];
    println!(
        "{} MiB per buffer (file: its own size), {} passes after a warm-up, GB/s mean ± sd",
        a.mib, a.reps
    );
    let before = round_trip_ns();
    let cols: Vec<String> = threads.iter().map(|t| format!("{t} thr GB/s")).collect();
    println!("| method | buffer | {} |", cols.join(" | "));
    println!("| :--- | :--- |{}", " ---: |".repeat(threads.len()));
    let pools = threads
        .iter()
        .map(|&t| setup::pool(t))
        .collect::<Result<Vec<_>, _>>()?;
    for (buf_name, buf) in &buffers {
        for (method, read) in methods {
            let cells: Vec<String> = pools
                .iter()
                .map(|pool| {
                    let s = Stats {
                        samples: passes(pool, buf, a.reps, read),
                    };
                    format!("{:.2} ± {:.2}", s.mean(), s.stddev())
                })
                .collect();
            println!("| {method} | {buf_name} | {} |", cells.join(" | "));
        }
    }
    if let (Some(before), Some(after)) = (before, round_trip_ns()) {
        println!(
            "core-to-core round trip (two threads passing a cache line back and forth, median \
             of {RT_REPS} samples of up to {RT_TRIPS}): {before:.0} ns before the passes, \
             {after:.0} ns after"
        );
    }
    Ok(())
}

/// Round trips per sample, and the time a sample may take: on a loaded machine the other
/// thread is often descheduled, and a fixed count could then take minutes.
const RT_TRIPS: u64 = 20_000;
const RT_BUDGET: Duration = Duration::from_millis(20);
const RT_REPS: usize = 5;

/// Nanoseconds for a cache line to go from one thread's core to another's and back: the
/// price of every hand-over between a decode section's threads (the caller's activations,
/// the other half of the outputs, the section's start and end). On a shared host it moves
/// with where the hypervisor puts the two vCPUs: ~100 ns on one AMD Zen 4 host in its
/// slow-bandwidth moments, ~500 in its fast ones, as if the two then sat on different core
/// complexes, each with its own path to memory. The median of [`RT_REPS`] samples; `None`
/// with fewer than two CPUs, where two spinning threads would only take turns.
fn round_trip_ns() -> Option<f64> {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return None;
    }
    #[repr(align(128))]
    struct Line(AtomicU64);
    const STOP: u64 = u64::MAX;
    let (ping, pong) = (Line(AtomicU64::new(0)), Line(AtomicU64::new(0)));
    // Spins until `line` holds something other than `old` and returns it; yields now and
    // then, so a descheduled partner gets a core back on a busy machine.
    let changed = |line: &Line, old: u64| {
        let mut spins = 0u32;
        loop {
            let v = line.0.load(Acquire);
            if v != old {
                return v;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1 << 14) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    };
    let mut ns: Vec<f64> = std::thread::scope(|s| {
        s.spawn(|| {
            let mut seen = 0;
            while seen != STOP {
                seen = changed(&ping, seen);
                pong.0.store(seen, Release);
            }
        });
        let mut i = 0;
        let samples = (0..RT_REPS)
            .map(|_| {
                let (t, mut trips) = (Instant::now(), 0u64);
                while trips < RT_TRIPS && (trips % 64 != 0 || t.elapsed() < RT_BUDGET) {
                    i += 1;
                    ping.0.store(i, Release);
                    changed(&pong, i - 1);
                    trips += 1;
                }
                t.elapsed().as_nanos() as f64 / trips as f64
            })
            .collect();
        ping.0.store(STOP, Release);
        samples
    });
    ns.sort_by(f64::total_cmp);
    Some(ns[ns.len() / 2])
}

/// A streaming read of one part of a buffer, returning something the caller keeps.
type Read = fn(&[u8]) -> u64;

/// GB/s of each of `reps` passes of `read` over `data`, after a warm-up pass (threads awake,
/// TLB entries made, a file's pages in the page cache).
fn passes(pool: &Pool, data: &[u8], reps: usize, read: Read) -> Vec<f64> {
    pass(pool, data, read);
    (0..reps).map(|_| pass(pool, data, read)).collect()
}

/// GB/s of one pass of `read` over `data` split into one part per thread.
fn pass(pool: &Pool, data: &[u8], read: Read) -> f64 {
    let chunk = data.len().div_ceil(pool.threads()).next_multiple_of(4096);
    let n = data.len().div_ceil(chunk);
    let sink = AtomicU64::new(0);
    let exec: &dyn Exec = pool;
    let t = Instant::now();
    exec.run(n, &|i| {
        let part = &data[i * chunk..((i + 1) * chunk).min(data.len())];
        sink.fetch_add(read(part), Relaxed);
    });
    let gb_s = data.len() as f64 / t.elapsed().as_secs_f64() / 1e9;
    std::hint::black_box(sink.into_inner());
    gb_s
}

/// `bytes` of anonymous memory, every page written (a never-written page reads as the shared
/// zero page, from cache); on 2 MiB pages if `huge` and the kernel agrees.
fn anon(bytes: usize, huge: bool) -> std::io::Result<MmapMut> {
    let mut m = MmapMut::map_anon(bytes)?;
    #[cfg(target_os = "linux")]
    if huge {
        m.advise(memmap2::Advice::HugePage)?;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = huge;
    for (i, w) in m.chunks_exact_mut(4).enumerate() {
        w.copy_from_slice(&((i % 7) as f32).to_bits().to_le_bytes());
    }
    Ok(m)
}

/// KiB of this process's anonymous memory on huge pages (Linux), to say whether the 2 MiB
/// buffer got them.
fn anon_huge_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    let line = s.lines().find(|l| l.starts_with("AnonHugePages:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The probe: f32 sums with the widest loads the CPU has. `x` starts page-aligned.
fn probe(x: &[u8]) -> u64 {
    // SAFETY: any bit pattern is an f32; align_to puts only whole, aligned f32 in the middle.
    let (_, f, _) = unsafe { x.align_to::<f32>() };
    u64::from(sum(f).to_bits())
}

/// What a plain loop over the words compiles to (baseline SIMD of the target).
fn plain(x: &[u8]) -> u64 {
    // SAFETY: any bit pattern is a u64.
    let (a, w, b) = unsafe { x.align_to::<u64>() };
    let s = w.iter().fold(0u64, |s, &v| s.wrapping_add(v));
    a.iter()
        .chain(b)
        .fold(s, |s, &v| s.wrapping_add(u64::from(v)))
}

fn sum(x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: feature checked on the line above.
            return unsafe { x86::sum_avx512(x) };
        }
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: as above.
            return unsafe { x86::sum_avx(x) };
        }
    }
    sum_portable(x)
}

/// Sixteen independent lanes: the compiler vectorises this with the baseline SIMD.
fn sum_portable(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let mut blocks = x.chunks_exact(16);
    for b in blocks.by_ref() {
        for (a, v) in acc.iter_mut().zip(b) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + blocks.remainder().iter().sum::<f32>()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Four accumulators of 64-byte loads: enough loads in flight to saturate memory.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn sum_avx512(x: &[f32]) -> f32 {
        let p = x.as_ptr();
        let n = x.len() / 64 * 64;
        let mut a = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i < n {
            for (k, a) in a.iter_mut().enumerate() {
                *a = _mm512_add_ps(*a, _mm512_loadu_ps(p.add(i + 16 * k)));
            }
            i += 64;
        }
        let v = _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3]));
        _mm512_reduce_add_ps(v) + super::sum_portable(&x[n..])
    }

    #[target_feature(enable = "avx")]
    pub unsafe fn sum_avx(x: &[f32]) -> f32 {
        let p = x.as_ptr();
        let n = x.len() / 32 * 32;
        let mut a = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i < n {
            for (k, a) in a.iter_mut().enumerate() {
                *a = _mm256_add_ps(*a, _mm256_loadu_ps(p.add(i + 8 * k)));
            }
            i += 32;
        }
        let v = _mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3]));
        let mut lanes = [0.0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), v);
        lanes.iter().sum::<f32>() + super::sum_portable(&x[n..])
    }
}
