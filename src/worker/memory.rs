//! What a process measures of its own memory for the heartbeat answer.
//!
//! - `rss`: resident set size, from `/proc/<pid>/statm` (the master reads the same file for each
//!   worker, so it does not have to trust the worker's word).
//! - `heap_used`: bytes the allocator (jemalloc, the crate's global allocator) has handed out and
//!   not taken back (`stats.allocated`).
//! - `heap_total`: bytes the allocator holds mapped for its data, in use or free in its pages
//!   (`stats.mapped`). `heap_total - heap_used` is fragmentation and free lists.
//!
//! An allocator keeps what was freed: after 10k clients leave, heap_used falls to a few MB while
//! the RSS stays at hundreds, and an RSS limit would then recycle a worker that holds nothing.
//! jemalloc returns unused pages by itself only as it allocates again; [`trim_if_idle_heap`]
//! gives them back when they are many (`arena.<all>.purge`).

use std::fs;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Resident memory beyond the heap in use worth giving back: above this and above heap_used.
/// (Measured on the RSS, what the memory limits watch: it shows whether a purge gave pages back
/// and so whether a second one is due.)
const TRIM_ABOVE: u64 = 32 << 20;
/// At most one trim in this long (a purge walks the arenas on the event loop's thread).
const TRIM_EVERY: Duration = Duration::from_secs(10);

static LAST_TRIM: Mutex<Option<Instant>> = Mutex::new(None);

/// Resident set size in bytes of process `pid`, or `None` if it cannot be read (process gone).
pub fn rss_of(pid: u32) -> Option<u64> {
    let statm = fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(resident_pages * page_size())
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 on error, handled below.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

/// `(heap_used, heap_total)` of this process, in bytes; zeros if jemalloc cannot tell (it
/// always can when it is the global allocator, as in this crate).
pub fn heap() -> (u64, u64) {
    use tikv_jemalloc_ctl::{epoch, stats};
    // The statistics are a snapshot taken when the epoch advances.
    if epoch::advance().is_err() {
        return (0, 0);
    }
    let used = stats::allocated::read().unwrap_or(0) as u64;
    let total = stats::mapped::read().unwrap_or(0) as u64;
    (used, total.max(used))
}

/// Purges every arena's unused dirty pages (`arena.4096.purge`, 4096 being
/// `MALLCTL_ARENAS_ALL`): they go back to the OS.
fn purge_all_arenas() {
    const PURGE_ALL: &[u8] = b"arena.4096.purge\0";
    // SAFETY: the name is NUL-terminated; `purge` reads and writes nothing (all pointers null,
    // length 0), as jemalloc's mallctl documents for void operations.
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            PURGE_ALL.as_ptr().cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 {
        tracing::debug!(errno = rc, "jemalloc arena purge failed");
    }
}

/// Returns free heap pages to the OS (an arena purge) when the RSS exceeds the heap in use by
/// more than [`TRIM_ABOVE`] and more than the heap in use, at most every [`TRIM_EVERY`].
/// `Some(rss)`: it trimmed, and this is the RSS after.
pub fn trim_if_idle_heap(rss: u64, used: u64) -> Option<u64> {
    let free = rss.saturating_sub(used);
    if free <= TRIM_ABOVE || free <= used {
        return None;
    }
    let mut last = LAST_TRIM.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    if last.is_some_and(|at| now.duration_since(at) < TRIM_EVERY) {
        return None;
    }
    *last = Some(now);
    purge_all_arenas();
    let rss_after = rss_of(std::process::id()).unwrap_or(rss);
    let took_us = now.elapsed().as_micros() as u64;
    if rss.saturating_sub(rss_after) >= 1 << 20 {
        tracing::info!(
            rss_before = rss,
            rss_after,
            took_us,
            "gave free heap back to the OS"
        );
    } else {
        // Fragmentation, not free pages: nothing came back (tried again TRIM_EVERY later).
        tracing::debug!(
            rss_before = rss,
            rss_after,
            took_us,
            "heap trim returned nothing"
        );
    }
    Some(rss_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_memory_is_measured() {
        let rss = rss_of(std::process::id()).unwrap();
        assert!(rss > 0);
        let keep = vec![1u8; 4 << 20];
        let (used, total) = heap();
        assert!(used >= keep.len() as u64, "{used}");
        assert!(total >= used);
    }

    #[test]
    fn a_small_or_busy_heap_is_not_trimmed() {
        assert_eq!(trim_if_idle_heap(TRIM_ABOVE, 0), None);
        assert_eq!(trim_if_idle_heap(TRIM_ABOVE * 7, TRIM_ABOVE * 4), None);
    }

    #[test]
    fn a_missing_process_has_no_rss() {
        assert_eq!(rss_of(u32::MAX), None);
    }
}
