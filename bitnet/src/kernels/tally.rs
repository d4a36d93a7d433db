//! Per-kernel case counts of the exactness tests (test builds only).
//!
//! libtest counts a test that returns early as passed, so "N tests passed" cannot prove that
//! a kernel was ever checked on a CPU. Every exactness test therefore counts, per kernel, the
//! cases it ran (`ran`: one shape / token-count / fill combination checked against the scalar
//! reference) and the cases that then passed all their assertions (`passed`), and prints one
//! line per kernel on stdout when its [`Tally`] is dropped, also when an assertion panics
//! (tests unwind):
//!
//! ```text
//! kernel-test: <test name> <kernel> ran=<N> passed=<M>
//! ```
//!
//! The harness runs the test binary with `--test-threads 1 --nocapture` and sums the lines per
//! kernel: a kernel a CPU profile lists with zero cases, or fewer passed than ran, fails it.
//! The block starts with a newline, so each line begins with `kernel-test:` even right after
//! libtest's unterminated `test <name> ... `.
//! A kernel the CPU lacks is printed with `ran=0 passed=0` and a `note:` line; a case is
//! counted as passed only after its checks returned.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// One exactness test's counts: (kernel, ran, passed) in the order first seen.
pub(crate) struct Tally {
    test: String,
    rows: Vec<(&'static str, usize, usize)>,
}

impl Tally {
    /// Counts for the running test. libtest names each test's thread after the test
    /// (`kernels::tests::bitmatmul_extremes`); `test` is the fallback.
    pub fn new(test: &str) -> Tally {
        #[cfg(feature = "std")]
        let thread = std::thread::current();
        #[cfg(feature = "std")]
        let name = match thread.name() {
            Some(n) if n != "main" && n.ends_with(test) => n,
            _ => test,
        };
        #[cfg(not(feature = "std"))]
        let name = test;
        Tally {
            test: name.to_string(),
            rows: Vec::new(),
        }
    }

    /// Counts for a test covering every kernel compiled in: each gets a line, those the CPU
    /// cannot run with `ran=0` and a note.
    pub fn all_kernels(test: &str) -> Tally {
        let mut t = Tally::new(test);
        for k in super::compiled() {
            if k.is_available() {
                t.row(k.name);
            } else {
                let why = alloc::format!("needs {}, not all on this CPU", k.requires_text());
                t.absent(k.name, &why);
            }
        }
        t
    }

    fn row(&mut self, kernel: &'static str) -> usize {
        match self.rows.iter().position(|r| r.0 == kernel) {
            Some(i) => i,
            None => {
                self.rows.push((kernel, 0, 0));
                self.rows.len() - 1
            }
        }
    }

    /// Records that `kernel` is not checked by this test on this CPU (its line says
    /// `ran=0 passed=0`), and why.
    pub fn absent(&mut self, kernel: &'static str, why: &str) {
        self.row(kernel);
        emit(&alloc::format!(
            "note: {}: {kernel} not checked: {why}\n",
            self.test
        ));
    }

    /// One case of `kernel`: counted as run before `check` starts, as passed only once it
    /// returned (a failed assertion panics out of it).
    pub fn case<R>(&mut self, kernel: &'static str, check: impl FnOnce() -> R) -> R {
        let i = self.row(kernel);
        self.rows[i].1 += 1;
        let r = check();
        self.rows[i].2 += 1;
        r
    }

    /// (ran, passed) of `kernel` so far.
    #[cfg(test)]
    pub fn counts(&self, kernel: &str) -> (usize, usize) {
        self.rows
            .iter()
            .find(|r| r.0 == kernel)
            .map_or((0, 0), |r| (r.1, r.2))
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        use core::fmt::Write;
        if self.rows.is_empty() {
            return;
        }
        // libtest with `--nocapture` has printed `test <name> ... ` without a newline: start
        // on a fresh line so every tally line begins with `kernel-test:`.
        let mut text = String::from("\n");
        for (kernel, ran, passed) in &self.rows {
            let _ = writeln!(
                text,
                "kernel-test: {} {kernel} ran={ran} passed={passed}",
                self.test
            );
        }
        emit(&text);
    }
}

/// Where the lines go without std: the runner's console ([`set_output`]); with std, stdout.
static OUTPUT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Sends every tally line to `f` (a runner without stdout: bare metal).
#[cfg(feature = "kernel-tests")]
pub fn set_output(f: fn(&str)) {
    OUTPUT.store(f as usize, core::sync::atomic::Ordering::Release);
}

fn emit(text: &str) {
    match OUTPUT.load(core::sync::atomic::Ordering::Acquire) {
        0 => {
            #[cfg(feature = "std")]
            std::print!("{text}");
        }
        f => {
            // SAFETY: only `set_output` stores a non-zero value, a `fn(&str)`.
            let f: fn(&str) = unsafe { core::mem::transmute::<usize, fn(&str)>(f) };
            f(text)
        }
    }
}

#[test]
fn counts_cases_per_kernel() {
    let mut t = Tally::new("counts_cases_per_kernel");
    t.case("scalar", || ());
    let x = t.case("scalar", || 7);
    t.row("nope");
    assert_eq!(x, 7);
    assert_eq!(t.counts("scalar"), (2, 2));
    assert_eq!(t.counts("nope"), (0, 0));
    // Not a kernel exactness test: keep its lines out of the harness's sums.
    t.rows.clear();
}
