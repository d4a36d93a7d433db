//! How the forward pass spreads independent work over threads. The core only sees the
//! `Exec` trait, so it stays `no_std`; the thread pool lives at the `std` edge.

/// Runs independent tasks, possibly in parallel. One object-safe primitive, so the core can
/// take `&dyn Exec`; the chunked form every caller uses is built on it once, for any
/// element type (`for_each_chunk` on `dyn Exec`).
///
/// # Safety
///
/// `run(n, f)` must call `f(i)` exactly once for each i in 0..n and return only after every
/// call has returned: `for_each_chunk` hands task i a `&mut` to chunk i on that promise.
pub unsafe trait Exec: Sync {
    fn threads(&self) -> usize;
    /// Runs `f(i)` for i in 0..n; returns when all are done.
    fn run(&self, n: usize, f: &(dyn Fn(usize) + Sync));

    /// Whether the calling thread is the one that called `run` (inside a task), rather
    /// than a helper: what that thread reads stays in the cache the serial work after the
    /// section runs on.
    fn on_caller(&self) -> bool {
        true
    }

    /// Returns once `ready()` holds, which an earlier task of the same section makes true
    /// (a task waits only for tasks of lower index: the pool hands them out in order, so
    /// the one waited for is running or done). Spins; a pool yields the core after a while,
    /// so a preempted partner gets to run.
    fn wait_until(&self, ready: &dyn Fn() -> bool) {
        while !ready() {
            core::hint::spin_loop();
        }
    }
}

impl dyn Exec + '_ {
    /// Runs `f(i, chunk)` for each `chunk_len`-sized chunk `i` of `out` (the last may be
    /// shorter), possibly in parallel.
    pub fn for_each_chunk<T: Send>(
        &self,
        out: &mut [T],
        chunk_len: usize,
        f: &(dyn Fn(usize, &mut [T]) + Sync),
    ) {
        let (len, chunk) = (out.len(), chunk_len.max(1));
        let base = SendPtr(out.as_mut_ptr());
        self.run(len.div_ceil(chunk), &|i| {
            let start = i * chunk;
            // SAFETY: `run` calls each i in 0..ceil(len / chunk) once and returns after the
            // last call (the trait's contract), so task i alone gets elements
            // start..start + chunk (clipped to len) of `out`, whose borrow outlives `run`.
            let part = unsafe {
                core::slice::from_raw_parts_mut(base.get().add(start), chunk.min(len - start))
            };
            f(i, part)
        });
    }
}

/// A pointer tasks write disjoint parts through.
struct SendPtr<T>(*mut T);

impl<T> SendPtr<T> {
    // A method, not the field: closures then capture the whole (Sync) wrapper.
    fn get(&self) -> *mut T {
        self.0
    }
}

// SAFETY: only used to hand disjoint sub-slices of one `&mut [T]` to the tasks of one
// `run`; sending those to other threads needs `T: Send`.
unsafe impl<T: Send> Sync for SendPtr<T> {}

/// Everything on the calling thread.
pub struct Serial;

// SAFETY: a plain loop over 0..n on the calling thread.
unsafe impl Exec for Serial {
    fn threads(&self) -> usize {
        1
    }

    fn run(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        (0..n).for_each(f);
    }
}

/// A fixed pool created once per model and reused for every token. Decode runs ~150
/// parallel sections per token, so handing out work must cost about a microsecond, not the
/// tens a sleeping-thread pool pays to wake up: workers spin on a generation counter for a
/// while after each section, then park.
#[cfg(feature = "std")]
pub struct Pool {
    shared: std::sync::Arc<pool::Shared>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

#[cfg(feature = "std")]
impl Pool {
    /// `threads` counts the calling thread, which works too: `threads - 1` are spawned.
    pub fn new(threads: usize) -> Result<Pool, std::io::Error> {
        let shared = std::sync::Arc::new(pool::Shared::default());
        let mut workers = Vec::new();
        for i in 1..threads.max(1) {
            let s = shared.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("bitnet-{i}"))
                    .spawn(move || s.worker())?,
            );
        }
        Ok(Pool { shared, workers })
    }
}

#[cfg(feature = "std")]
impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.stop();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

// SAFETY: `Shared::run` hands out each index once from an atomic counter and returns only
// after every worker has left the section.
#[cfg(feature = "std")]
unsafe impl Exec for Pool {
    fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    fn run(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        if self.workers.is_empty() || n <= 1 {
            pool::timed(|| (0..n).for_each(f));
            return;
        }
        self.shared.run(self.workers.len(), n, f);
    }

    fn on_caller(&self) -> bool {
        !pool::IN_WORKER.with(|w| w.get())
    }

    fn wait_until(&self, ready: &dyn Fn() -> bool) {
        let t = std::time::Instant::now();
        while !ready() {
            if t.elapsed() < pool::SPIN {
                core::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

#[cfg(feature = "std")]
mod pool {
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
    use std::sync::{Condvar, Mutex};
    use std::time::{Duration, Instant};

    /// The section being run; the borrow is erased, `run` outlives every use of it.
    type Job = *const (dyn Fn(usize) + Sync);

    /// How long a thread spins before yielding its core: long enough to cover the serial
    /// work between the sections of a token, short enough not to starve a preempted partner
    /// on a busy machine.
    pub const SPIN: Duration = Duration::from_micros(50);
    /// How long an idle worker keeps yielding before it parks.
    const YIELD: Duration = Duration::from_millis(2);

    std::thread_local! {
        /// Set on a pool's worker threads ([`super::Exec::on_caller`]).
        pub static IN_WORKER: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
    }

    #[derive(Default)]
    pub struct Shared {
        /// Bumped once per section (and on stop).
        generation: AtomicU64,
        job: Mutex<Option<JobSlot>>,
        next: AtomicUsize,
        n_tasks: AtomicUsize,
        /// Workers still inside the current section.
        busy: AtomicUsize,
        panicked: AtomicBool,
        stopping: AtomicBool,
        sleepers: AtomicUsize,
        lock: Mutex<()>,
        wake: Condvar,
    }

    struct JobSlot(Job);

    // SAFETY: the job is `Sync` and only called while `run` keeps it alive.
    unsafe impl Send for JobSlot {}

    /// Runs `f`, adding its duration to the profile's busy time when profiling is on.
    pub fn timed(f: impl FnOnce()) {
        if !crate::profile::enabled() {
            return f();
        }
        let t = Instant::now();
        f();
        crate::profile::add_busy(t.elapsed().as_nanos() as u64);
    }

    impl Shared {
        pub fn run(&self, workers: usize, n: usize, f: &(dyn Fn(usize) + Sync)) {
            // SAFETY: erases the borrow's lifetime; `run` waits below until no worker
            // holds or calls the job any more.
            let job: Job = unsafe { core::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(f) };
            *self.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(JobSlot(job));
            self.next.store(0, Relaxed);
            self.n_tasks.store(n, Relaxed);
            self.busy.store(workers, Relaxed);
            self.generation.fetch_add(1, SeqCst);
            if self.sleepers.load(SeqCst) > 0 {
                let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
                self.wake.notify_all();
            }
            // Even if a task panics here, the workers must be out of the job before it dies.
            let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.work(f)));
            let t = Instant::now();
            while self.busy.load(Acquire) > 0 {
                if t.elapsed() < SPIN {
                    core::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
            *self.job.lock().unwrap_or_else(|e| e.into_inner()) = None;
            if let Err(e) = mine {
                self.panicked.store(false, Relaxed);
                std::panic::resume_unwind(e);
            }
            if self.panicked.swap(false, Relaxed) {
                panic!("a worker thread panicked");
            }
        }

        fn work(&self, f: &(dyn Fn(usize) + Sync)) {
            timed(|| self.work_untimed(f))
        }

        fn work_untimed(&self, f: &(dyn Fn(usize) + Sync)) {
            let n = self.n_tasks.load(Relaxed);
            loop {
                let i = self.next.fetch_add(1, Relaxed);
                if i >= n {
                    break;
                }
                f(i);
            }
        }

        pub fn worker(&self) {
            IN_WORKER.with(|w| w.set(true));
            // Sections start after `Pool::new` returns: a worker that starts late must still
            // take part in the first one.
            let mut seen = 0;
            loop {
                let t = Instant::now();
                while self.generation.load(Acquire) == seen {
                    let waited = t.elapsed();
                    if waited < SPIN {
                        core::hint::spin_loop();
                        continue;
                    }
                    if waited < YIELD {
                        std::thread::yield_now();
                        continue;
                    }
                    let g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
                    self.sleepers.fetch_add(1, SeqCst);
                    if self.generation.load(SeqCst) == seen {
                        let _ = self.wake.wait_timeout(g, Duration::from_millis(10));
                    }
                    self.sleepers.fetch_sub(1, SeqCst);
                }
                seen = self.generation.load(Acquire);
                if self.stopping.load(Acquire) {
                    return;
                }
                let job = self
                    .job
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .map(|j| j.0);
                if let Some(job) = job {
                    // SAFETY: `run` keeps the job alive until `busy` reaches zero.
                    let f = unsafe { &*job };
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.work(f)));
                    if r.is_err() {
                        self.panicked.store(true, Relaxed);
                    }
                }
                self.busy.fetch_sub(1, Release);
            }
        }

        pub fn stop(&self) {
            self.stopping.store(true, SeqCst);
            self.generation.fetch_add(1, SeqCst);
            let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.wake.notify_all();
        }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn pool_covers_every_chunk_once() {
        for threads in [1, 2, 3] {
            let pool = Pool::new(threads).unwrap();
            assert_eq!(pool.threads(), threads);
            for len in [0, 1, 7, 1000] {
                let mut out = vec![0.0f32; len];
                let exec: &dyn Exec = &pool;
                for _ in 0..50 {
                    exec.for_each_chunk(&mut out, 3, &|i, c| {
                        for (k, v) in c.iter_mut().enumerate() {
                            *v += (i * 3 + k) as f32;
                        }
                    });
                }
                assert!(out.iter().enumerate().all(|(k, &v)| v == 50.0 * k as f32));
            }
        }
    }

    #[test]
    fn on_caller_is_true_on_the_calling_thread_only() {
        let pool = Pool::new(2).unwrap();
        let caller = std::thread::current().id();
        let seen = std::sync::Mutex::new(Vec::new());
        for _ in 0..200 {
            pool.run(64, &|_| {
                let t = std::thread::current().id();
                seen.lock().unwrap().push((t == caller, pool.on_caller()));
            });
        }
        let seen = seen.into_inner().unwrap();
        assert!(seen.iter().all(|&(is_caller, says)| is_caller == says));
        assert!(seen.iter().any(|&(c, _)| c), "the caller ran no task");
        assert!(Serial.on_caller());
    }

    #[test]
    fn a_panicking_task_panics_the_caller() {
        let pool = Pool::new(2).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.run(8, &|i| assert!(i != 5, "task 5"));
        }));
        assert!(r.is_err());
        // The pool still works afterwards.
        let mut out = vec![0.0f32; 4];
        (&pool as &dyn Exec).for_each_chunk(&mut out, 1, &|i, c| c[0] = i as f32);
        assert_eq!(out, [0.0, 1.0, 2.0, 3.0]);
    }
}
