//! `bitnet-infer page-cache FILE`: the file back in the page cache in 2 MiB folios.
//!
//! Why: an engine that reads its weights through the model's mmap (llama.cpp; this one for
//! the embedding rows, or the head with `--head-in-file`) gets a 2 MiB TLB entry only where
//! the page cache holds the file in 2 MiB folios, and which it does depends on how the file
//! was last read or written: 0.4 to 1.17 GB of the 1.21 GB 2B4T-shape model in checks on
//! one host, which moved llama.cpp's decode by 5-10%. A read that misses the cache through
//! a map advised onto huge pages fills it with 2 MiB folios where the file system has them
//! (ext4 does from Linux 6.16), so dropping the file's pages and reading it so gives every
//! engine after it the same cache.

use crate::args::PageCacheArgs;

pub fn main(a: &PageCacheArgs) -> Result<(), String> {
    let path = a.file.display();
    let (cached, huge, len) = imp::recache(&a.file).map_err(|e| format!("{path}: {e}"))?;
    let mb = |b: u64| b as f64 / 1e6;
    println!(
        "{path}: {:.1} of {:.1} MB in the page cache, {:.1} MB of it in 2 MiB folios",
        mb(cached),
        mb(len),
        mb(huge)
    );
    Ok(())
}

#[cfg(target_os = "linux")]
mod imp {
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;
    use std::path::Path;

    /// A huge page's size (one PMD entry) on x86_64 and AArch64 with 4 KiB pages.
    const PMD: usize = 2 << 20;

    /// Drops `path`'s clean, unmapped pages from the page cache, reads it back through a
    /// 2 MiB-aligned map advised onto huge pages, and returns (bytes resident in that map,
    /// bytes of it mapped with 2 MiB entries, file length).
    pub fn recache(path: &Path) -> io::Result<(u64, u64, u64)> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let len = usize::try_from(len).map_err(|_| io::Error::other("too large to map"))?;
        if len == 0 {
            return Ok((0, 0, 0));
        }
        // SAFETY: advice about this file's cached pages; no memory of ours is involved.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        let reserve = len
            .checked_add(PMD)
            .ok_or_else(|| io::Error::other("too large to map"))?;
        // SAFETY: a new inaccessible reservation, touching no existing memory.
        let r = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                reserve,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if r == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let start = (r as usize).next_multiple_of(PMD);
        // SAFETY: [start, start + len) lies inside the reservation, which MAP_FIXED replaces.
        let m = unsafe {
            libc::mmap(
                start as *mut libc::c_void,
                len,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_FIXED,
                file.as_raw_fd(),
                0,
            )
        };
        let result = if m == libc::MAP_FAILED {
            Err(io::Error::last_os_error())
        } else {
            // Advice only: without THP or large folios the read fills 4 KiB pages.
            // SAFETY: the map just made.
            unsafe { libc::madvise(m, len, libc::MADV_HUGEPAGE) };
            // SAFETY: `len` readable bytes at `m`, the file's map, unchanged while we read
            // (the same contract as the model loader's map).
            let bytes = unsafe { core::slice::from_raw_parts(m as *const u8, len) };
            let sum = bytes
                .iter()
                .step_by(4096)
                .fold(0u8, |s, &b| s.wrapping_add(b));
            std::hint::black_box(sum);
            resident(start).map(|(rss, pmd)| (rss, pmd, len as u64))
        };
        // SAFETY: the whole reservation (the file's map replaced part of it) is ours.
        unsafe { libc::munmap(r, reserve) };
        result
    }

    /// `Rss` and `FilePmdMapped` (bytes) of the mapping starting at `start`.
    fn resident(start: usize) -> io::Result<(u64, u64)> {
        let smaps = std::fs::read_to_string("/proc/self/smaps")?;
        let head = format!("{start:x}-");
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&head));
        lines
            .next()
            .ok_or_else(|| io::Error::other("the map is not in /proc/self/smaps"))?;
        let (mut rss, mut pmd) = (0, 0);
        // Field lines (`Rss:`, ..., `VmFlags:`) until the next mapping's `start-end` line.
        let field = |l: &&str| {
            l.split_whitespace()
                .next()
                .is_some_and(|t| t.ends_with(':'))
        };
        for l in lines.take_while(field) {
            let kib = |l: &str| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    * 1024
            };
            if l.starts_with("Rss:") {
                rss = kib(l);
            } else if l.starts_with("FilePmdMapped:") {
                pmd = kib(l);
            }
        }
        Ok((rss, pmd))
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub fn recache(_: &std::path::Path) -> std::io::Result<(u64, u64, u64)> {
        Err(std::io::Error::other(
            "page-cache folios are a Linux matter; nothing to do here",
        ))
    }
}
