//! Giving freed heap memory back to the system. glibc's malloc keeps what a
//! thread frees in that thread's arena and shrinks an arena only from its
//! top, so a burst of large short-lived buffers (thumbnail decodes, probe
//! reads) stays resident long after the work ended. The server is idle most
//! of its life on a 1 GB Pi, so after such a burst it asks glibc to give back
//! what is free (docs/performance.md, "Memory").
//!
//! The crate's one exception to "no `unsafe`" (`unsafe_code` is `deny`, not
//! `forbid`, for this module alone): a call into glibc that takes no pointer.
#![allow(unsafe_code)]

/// Returns the free memory of every malloc arena to the system
/// (`malloc_trim(0)`: the tops of the heaps, and whole free pages inside
/// them). It walks the free lists under each arena's lock, well under a
/// millisecond for this server, so call it after a burst of work, not per
/// allocation. Does nothing where the allocator is not glibc's.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes a size and only touches malloc's own state,
    // under malloc's locks; any thread may call it at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
