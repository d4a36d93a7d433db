//! Free disk space under `target/`: a fresh matrix run writes about 5.4 GB there (every
//! triple's builds, the bare-metal kernel tests, the zig venv, QEMU plugins), and a full
//! disk otherwise shows up as unrelated-looking build failures half-way through.

use std::path::Path;
use std::process::Command;

/// What a matrix run on a fresh checkout leaves under `target/` (measured: 5.4 GB).
pub const MATRIX_BYTES: u64 = 6_000_000_000;

/// Bytes free for an unprivileged writer on the file system holding `path` (POSIX `df
/// -Pk`: one header line, then "fs blocks used available ..."), or None if `df` can't say.
pub fn free_bytes(path: &Path) -> Option<u64> {
    let out = Command::new("df").arg("-Pk").arg(path).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let kib: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn gb(bytes: u64) -> f64 {
    bytes as f64 / 1e9
}

/// The project's `target/` (created if missing, so `df` has something to look at).
fn target_dir() -> std::path::PathBuf {
    let dir = crate::project_root().join("target");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// A warning before a matrix run if the disk holds less than a fresh run needs (a run
/// that reuses earlier builds needs less, so this does not stop it).
pub fn warn_if_short() {
    let dir = target_dir();
    if let Some(free) = free_bytes(&dir) {
        if free < MATRIX_BYTES {
            eprintln!(
                "warning: {:.1} GB free on the disk of {}; a matrix run on a fresh checkout \
                 writes about {:.1} GB there (builds it already has need less)",
                gb(free),
                dir.display(),
                gb(MATRIX_BYTES)
            );
        }
    }
}

/// Appended to a build failure when the disk is (nearly) full, which is then the likely
/// cause: cargo's own message sits far above in the log.
pub fn full_disk_hint() -> String {
    let dir = target_dir();
    free_bytes(&dir).map_or_else(String::new, |free| hint(free, &dir))
}

fn hint(free: u64, dir: &Path) -> String {
    if free >= 1 << 30 {
        return String::new();
    }
    format!(
        " (only {:.2} GB free on the disk of {}: free space and run again; a fresh matrix \
         run needs about {:.1} GB)",
        gb(free),
        dir.display(),
        gb(MATRIX_BYTES)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_reports_the_free_space_of_a_directory() {
        let free = free_bytes(Path::new(env!("CARGO_MANIFEST_DIR")));
        assert!(free.is_some_and(|b| b > 0), "{free:?}");
        assert_eq!(free_bytes(Path::new("/no/such/dir")), None);
    }

    #[test]
    fn a_build_failure_on_a_full_disk_says_so() {
        let dir = Path::new("/w/target");
        let h = hint(287 << 20, dir);
        assert!(
            h.contains("only 0.30 GB free on the disk of /w/target"),
            "{h}"
        );
        assert!(h.contains("about 6.0 GB"), "{h}");
        assert_eq!(hint(5 << 30, dir), "");
    }
}
