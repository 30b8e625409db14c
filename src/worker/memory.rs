//! What a process measures of its own memory for the heartbeat answer.
//!
//! - `rss`: resident set size, from `/proc/<pid>/statm` (the master reads the same file for each
//!   worker, so it does not have to trust the worker's word).
//! - `heap_used`: bytes glibc's malloc has handed out and not taken back
//!   (`mallinfo2`: `uordblks` + `hblkhd`).
//! - `heap_total`: bytes malloc holds from the OS, in use or free in its arenas
//!   (`mallinfo2`: `arena` + `hblkhd`). `heap_total - heap_used` is fragmentation and free lists.

use std::fs;

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

/// `(heap_used, heap_total)` of this process, in bytes.
pub fn heap() -> (u64, u64) {
    // SAFETY: mallinfo2 only reads malloc's own statistics; it takes no arguments.
    let info = unsafe { libc::mallinfo2() };
    let mmapped = info.hblkhd as u64;
    (info.uordblks as u64 + mmapped, info.arena as u64 + mmapped)
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
    fn a_missing_process_has_no_rss() {
        assert_eq!(rss_of(u32::MAX), None);
    }
}
