//! What every fuzz target shares: a heap cap that turns an excessive
//! allocation into a crash libFuzzer reports (with the input that caused
//! it), and a scratch file for the parsers that read from a path.
//!
//! libFuzzer's own `-malloc_limit_mb` needs a sanitizer's allocator hooks,
//! which a `--sanitizer none` build on stable Rust doesn't have; this
//! allocator works with or without one, counts the Rust heap of every
//! thread (the parallel decoders allocate on several), and checks the
//! live total, not only single allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Live heap bytes allowed unless a target sets its own: generous for a
/// parser of a few kilobytes, far below the 1 GB of a Raspberry Pi.
pub const DEFAULT_HEAP_LIMIT: usize = 64 << 20;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_HEAP_LIMIT);
static TRIPPED: AtomicBool = AtomicBool::new(false);

/// The system allocator, counting.
pub struct CappedAlloc;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

impl CappedAlloc {
    fn grew(size: usize) {
        let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
        PEAK.fetch_max(live, Ordering::Relaxed);
        let limit = LIMIT.load(Ordering::Relaxed);
        // The report itself must not recurse into this check.
        if live > limit && !TRIPPED.swap(true, Ordering::Relaxed) {
            eprintln!(
                "==isync-fuzz== live heap {} MiB (this allocation {} bytes) is over the \
                 {} MiB limit: excessive allocation for this input",
                live >> 20,
                size,
                limit >> 20
            );
            std::process::abort();
        }
    }
}

// SAFETY: every call is forwarded to `System` with the same arguments; the
// counters are only arithmetic on the sizes.
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::grew(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::grew(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            Self::grew(new_size - layout.size());
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

/// Sets the live-heap cap for this target (call it in `init`).
pub fn set_heap_limit(bytes: usize) {
    LIMIT.store(bytes, Ordering::Relaxed);
}

/// The most live heap seen so far, in bytes.
pub fn peak_heap() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Writes `data` to this process's scratch file (in `/dev/shm` when there
/// is one: a memory file system, so an execution costs no disk I/O) and
/// returns its path. `ext` is the file name's extension.
pub fn scratch_file(data: &[u8], ext: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("isync-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        dir
    });
    let path = dir.join(format!("input.{ext}"));
    std::fs::write(&path, data).expect("write the scratch file");
    path
}

/// Splits the first `n` bytes off `data` as parameters of the run (zeros
/// when the input is shorter).
pub fn params<const N: usize>(data: &[u8]) -> ([u8; N], &[u8]) {
    let mut p = [0u8; N];
    let n = data.len().min(N);
    p[..n].copy_from_slice(&data[..n]);
    (p, &data[n..])
}
