//! Where a forward pass spends its time, part by part (`bitnet-infer bench --profile`).
//!
//! The forward pass opens a [`Span`] around each part; the thread pool adds the time every
//! thread spends inside the tasks of the part's parallel sections. Wall time on the calling
//! thread times the thread count, minus that busy time, is what the part lost to thread
//! synchronisation and imbalance. Off unless [`enable`]d: a span then costs one relaxed
//! atomic load. Global, so profile one forward pass at a time.
//!
//! A section that does several parts' work in each task (a decode's q, k, v projections,
//! RoPE and attention) times the later parts as [`Phase`]s: each task's phase time moves
//! from the section's part to the phase's, and the calling thread's phases move its wall
//! time too. The section's waits stay with its own part.

/// A part of a token's work, as the profile reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The token's embedding row.
    Embed,
    /// RMS norms and the int8 quantization of BitLinear inputs.
    Norms,
    /// The ternary matrices (q, k, v, o, gate, up, down): kernel, output transpose, and
    /// what the tasks do to their own rows (act * up, residual add).
    Ternary,
    /// RoPE on q and k, and the write of k and v into the cache.
    RopeKv,
    /// Scores, softmax and the weighted sum of values over the cache.
    Attention,
    /// The final norm and the output head.
    Head,
}

/// How many parts there are.
pub const PARTS: usize = 6;

impl Part {
    pub const ALL: [Part; PARTS] = [
        Part::Embed,
        Part::Norms,
        Part::Ternary,
        Part::RopeKv,
        Part::Attention,
        Part::Head,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Part::Embed => "embedding",
            Part::Norms => "norms + act quant",
            Part::Ternary => "ternary layers",
            Part::RopeKv => "rope + kv write",
            Part::Attention => "attention",
            Part::Head => "head (+ final norm)",
        }
    }
}

/// Nanoseconds per part accumulated since the last [`reset`].
#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// Wall time on the thread that called the forward pass.
    pub wall_ns: [u64; PARTS],
    /// Time summed over all threads inside the part's parallel tasks (0 for a part that
    /// runs on the calling thread alone).
    pub busy_ns: [u64; PARTS],
}

#[cfg(feature = "std")]
pub(crate) use imp::{add_busy, enabled};
pub use imp::{enable, phase, reset, snapshot, span, Phase, Span};

#[cfg(feature = "std")]
mod imp {
    use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
    use std::time::Instant;

    use super::{Part, Profile, PARTS};

    static ON: AtomicBool = AtomicBool::new(false);
    static CURRENT: AtomicUsize = AtomicUsize::new(0);
    static WALL: [AtomicU64; PARTS] = [const { AtomicU64::new(0) }; PARTS];
    static BUSY: [AtomicU64; PARTS] = [const { AtomicU64::new(0) }; PARTS];

    pub fn enable(on: bool) {
        ON.store(on, Relaxed);
    }

    pub(crate) fn enabled() -> bool {
        ON.load(Relaxed)
    }

    pub fn reset() {
        for a in WALL.iter().chain(&BUSY).chain([&MOVED_WALL, &MOVED_BUSY]) {
            a.store(0, Relaxed);
        }
    }

    pub fn snapshot() -> Profile {
        let mut p = Profile::default();
        for i in 0..PARTS {
            p.wall_ns[i] = WALL[i].load(Relaxed);
            p.busy_ns[i] = BUSY[i].load(Relaxed);
        }
        p
    }

    /// Wall time of one part on the calling thread, until dropped. Spans do not nest.
    pub struct Span(Option<(usize, Instant)>);

    pub fn span(part: Part) -> Span {
        if !enabled() {
            return Span(None);
        }
        let i = part as usize;
        CURRENT.store(i, Relaxed);
        Span(Some((i, Instant::now())))
    }

    impl Drop for Span {
        fn drop(&mut self) {
            if let Some((i, t)) = self.0 {
                let ns = t.elapsed().as_nanos() as u64;
                WALL[i].fetch_add(ns.saturating_sub(MOVED_WALL.swap(0, Relaxed)), Relaxed);
                let moved = MOVED_BUSY.swap(0, Relaxed);
                let _ = BUSY[i].fetch_update(Relaxed, Relaxed, |b| Some(b.saturating_sub(moved)));
            }
        }
    }

    /// Time moved by [`Phase`]s out of the current span's part, taken off it when it ends.
    static MOVED_WALL: AtomicU64 = AtomicU64::new(0);
    static MOVED_BUSY: AtomicU64 = AtomicU64::new(0);

    /// Part of one task of a section, counted as `part` rather than the section's part,
    /// until dropped (see the module's comment).
    pub struct Phase(Option<(usize, bool, Instant)>);

    /// `on_caller`: the task runs on the thread that called the section
    /// ([`crate::parallel::Exec::on_caller`]), whose time is the section's wall time.
    pub fn phase(part: Part, on_caller: bool) -> Phase {
        if !enabled() {
            return Phase(None);
        }
        Phase(Some((part as usize, on_caller, Instant::now())))
    }

    impl Drop for Phase {
        fn drop(&mut self) {
            if let Some((i, on_caller, t)) = self.0 {
                let ns = t.elapsed().as_nanos() as u64;
                BUSY[i].fetch_add(ns, Relaxed);
                MOVED_BUSY.fetch_add(ns, Relaxed);
                if on_caller {
                    WALL[i].fetch_add(ns, Relaxed);
                    MOVED_WALL.fetch_add(ns, Relaxed);
                }
            }
        }
    }

    /// Called by the pool: `ns` one thread spent inside tasks of the current part.
    pub(crate) fn add_busy(ns: u64) {
        BUSY[CURRENT.load(Relaxed)].fetch_add(ns, Relaxed);
    }
}

/// Without `std` there is no clock: profiling is never on.
#[cfg(not(feature = "std"))]
mod imp {
    use super::{Part, Profile};

    pub fn enable(_: bool) {}

    pub fn reset() {}

    pub fn snapshot() -> Profile {
        Profile::default()
    }

    pub struct Span;

    // Callers end a part with `drop(span)` as with `std`, where a span is a timer.
    impl Drop for Span {
        fn drop(&mut self) {}
    }

    pub fn span(_: Part) -> Span {
        Span
    }

    pub struct Phase;

    impl Drop for Phase {
        fn drop(&mut self) {}
    }

    pub fn phase(_: Part, _: bool) -> Phase {
        Phase
    }
}
