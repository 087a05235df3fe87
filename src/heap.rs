//! Giving freed heap memory back to the system. glibc's malloc keeps what a
//! thread frees in that thread's arena and shrinks an arena only from its
//! top, so a burst of large short-lived buffers (thumbnail decodes, probe
//! reads) stays resident long after the work ended. The server is idle most
//! of its life on a 1 GB Pi, so after such a burst it asks glibc to give back
//! what is free (docs/performance.md, "Memory").
//!
//! The crate's one exception to "no `unsafe`" (`unsafe_code` is `deny`, not
//! `forbid`, for this module alone): two calls into glibc that take no
//! pointer.
#![allow(unsafe_code)]

/// Buffers this large or larger get their own mapping, returned to the
/// system the moment they are freed.
const OWN_MAPPING_BYTES: i32 = 4 << 20;

/// Makes every allocation of [`OWN_MAPPING_BYTES`] or more a mapping of its
/// own (`mallopt(M_MMAP_THRESHOLD)`), for the whole process; call it once,
/// before any thread starts. glibc's default raises that threshold to the
/// size of each large block freed (up to 32 MiB), after which such blocks
/// come from the thread's arena; a thread arena's top is given back only
/// when it grows past twice the threshold, and `malloc_trim` does not
/// shrink it (it trims the main arena's top and madvises free chunks only).
/// One password check's 7 MiB Argon2 buffer stayed resident that way after
/// a login, for as long as the server idled (docs/performance.md,
/// "Memory"). Setting the threshold also fixes the trim threshold at
/// glibc's 128 KiB. Does nothing where the allocator is not glibc's.
pub(crate) fn give_large_buffers_their_own_mappings() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes two integers and only sets malloc's parameters,
    // under malloc's lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, OWN_MAPPING_BYTES);
    }
}

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
