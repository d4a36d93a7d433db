//! Memory read bandwidth as a decode step sees it: a streaming sum over a buffer far larger
//! than any cache, split over the benchmark's own thread pool, with the widest loads the CPU
//! has. Decode reads every weight once per token, so this is its ceiling.

use std::time::Instant;

use bitnet::parallel::{Exec, Pool};

/// GB/s of each of `reps` passes over a `mib` MiB buffer.
pub fn measure(pool: &Pool, mib: usize, reps: usize) -> Vec<f64> {
    if mib == 0 {
        return Vec::new();
    }
    let len = mib * (1 << 20) / 4;
    // Written once so every page is really mapped (a zero page would read from cache).
    let mut buf: Vec<f32> = (0..len).map(|i| (i % 7) as f32).collect(); // (len,)
    let chunk = len.div_ceil(pool.threads());
    let sink = std::sync::atomic::AtomicU32::new(0);
    let exec: &dyn Exec = pool;
    let mut pass = || {
        let t = Instant::now();
        exec.for_each_chunk(&mut buf, chunk, &|_, part| {
            let s = sum(part);
            sink.fetch_add(s.to_bits() & 1, std::sync::atomic::Ordering::Relaxed);
        });
        (len * 4) as f64 / t.elapsed().as_secs_f64() / 1e9
    };
    pass(); // warm-up: threads awake, TLB entries made
    let out = (0..reps).map(|_| pass()).collect();
    std::hint::black_box(sink.into_inner());
    out
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
