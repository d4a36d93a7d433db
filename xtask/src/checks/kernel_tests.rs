//! What the exactness tests themselves report: `kernel-test: <test> <kernel> ran=N
//! passed=M` lines (libtest counts an early return as a pass, so its summary proves
//! nothing about a kernel), summed per kernel and judged against the profile's list.

use std::collections::BTreeMap;

use crate::report::{Failure, FailureKind, TestCount};

/// Per-kernel sums of the tally lines in a test run's stdout.
pub fn parse(stdout: &str) -> BTreeMap<String, TestCount> {
    let mut out: BTreeMap<String, TestCount> = BTreeMap::new();
    for line in stdout.lines() {
        // libtest may print `test <name> ... ` without a newline before the test's output.
        let Some(at) = line.find("kernel-test:") else {
            continue;
        };
        let rest = &line[at + "kernel-test:".len()..];
        let w: Vec<&str> = rest.split_whitespace().collect();
        let [_test, kernel, ran, passed] = w[..] else {
            continue;
        };
        let num = |s: &str, key: &str| s.strip_prefix(key).and_then(|v| v.parse::<u64>().ok());
        if let (Some(r), Some(p)) = (num(ran, "ran="), num(passed, "passed=")) {
            let c = out.entry(kernel.to_string()).or_default();
            c.ran += r;
            c.passed += p;
        }
    }
    out
}

/// Failures for `expected` kernels that ran no case or failed some; `where_` names the
/// target and profile.
pub fn judge(
    counts: &BTreeMap<String, TestCount>,
    expected: &[String],
    where_: &str,
) -> Vec<Failure> {
    let mut out = Vec::new();
    for k in expected {
        let c = counts.get(k).copied().unwrap_or_default();
        if c.ran == 0 {
            out.push(Failure::new(
                FailureKind::KernelUntested,
                format!("{where_}: kernel {k} is listed for this profile but ran no exactness test case"),
            ));
        } else if c.passed < c.ran {
            out.push(Failure::new(
                FailureKind::KernelTest,
                format!(
                    "{where_}: kernel {k}: {} of {} exactness test cases failed",
                    c.ran - c.passed,
                    c.ran
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_sum_per_kernel_and_zero_runs_fail() {
        let out = "running 3 tests\nkernel-test: a zbb ran=0 passed=0\nkernel-test: a scalar ran=4 passed=4\n\
                   noise\ntest b ... kernel-test: b scalar ran=2 passed=1\ntest a ... ok\n";
        let c = parse(out);
        assert_eq!(c["scalar"], TestCount { ran: 6, passed: 5 });
        assert_eq!(c["zbb"], TestCount { ran: 0, passed: 0 });
        let f = judge(&c, &["scalar".into(), "zbb".into(), "rvv".into()], "t on p");
        let kinds: Vec<FailureKind> = f.iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            [
                FailureKind::KernelTest,
                FailureKind::KernelUntested,
                FailureKind::KernelUntested
            ]
        );
        assert!(f[1].message.contains("kernel zbb"));
        assert!(judge(&c, &["scalar".into()], "x").len() == 1);
    }
}
