//! How the forward pass spreads independent work over threads. The core only sees the
//! `Exec` trait, so it stays `no_std`; the thread pool lives at the `std` edge.

/// Runs `f(i, chunk)` for each `chunk_len`-sized chunk `i` of `out` (the last may be
/// shorter), possibly in parallel.
pub trait Exec: Sync {
    fn threads(&self) -> usize;
    fn for_each_chunk(
        &self,
        out: &mut [f32],
        chunk_len: usize,
        f: &(dyn Fn(usize, &mut [f32]) + Sync),
    );

    /// [`Exec::for_each_chunk`] over bytes (load-time work such as quantizing the head).
    fn for_each_chunk_u8(
        &self,
        out: &mut [u8],
        chunk_len: usize,
        f: &(dyn Fn(usize, &mut [u8]) + Sync),
    ) {
        for (i, chunk) in out.chunks_mut(chunk_len.max(1)).enumerate() {
            f(i, chunk);
        }
    }
}

/// Everything on the calling thread.
pub struct Serial;

impl Exec for Serial {
    fn threads(&self) -> usize {
        1
    }

    fn for_each_chunk(
        &self,
        out: &mut [f32],
        chunk_len: usize,
        f: &(dyn Fn(usize, &mut [f32]) + Sync),
    ) {
        for (i, chunk) in out.chunks_mut(chunk_len.max(1)).enumerate() {
            f(i, chunk);
        }
    }
}

/// A fixed pool created once per model and reused for every token.
#[cfg(feature = "std")]
pub struct Pool(rayon::ThreadPool);

#[cfg(feature = "std")]
impl Pool {
    pub fn new(threads: usize) -> Result<Pool, rayon::ThreadPoolBuildError> {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build()
            .map(Pool)
    }
}

#[cfg(feature = "std")]
impl Exec for Pool {
    fn threads(&self) -> usize {
        self.0.current_num_threads()
    }

    fn for_each_chunk(
        &self,
        out: &mut [f32],
        chunk_len: usize,
        f: &(dyn Fn(usize, &mut [f32]) + Sync),
    ) {
        use rayon::prelude::*;
        if self.threads() == 1 {
            return Serial.for_each_chunk(out, chunk_len, f);
        }
        self.0.install(|| {
            out.par_chunks_mut(chunk_len.max(1))
                .enumerate()
                .for_each(|(i, chunk)| f(i, chunk))
        });
    }

    fn for_each_chunk_u8(
        &self,
        out: &mut [u8],
        chunk_len: usize,
        f: &(dyn Fn(usize, &mut [u8]) + Sync),
    ) {
        use rayon::prelude::*;
        self.0.install(|| {
            out.par_chunks_mut(chunk_len.max(1))
                .enumerate()
                .for_each(|(i, chunk)| f(i, chunk))
        });
    }
}
