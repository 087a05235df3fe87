//! The disk side of an upload: the chunks hyper received, queued by the
//! request, appended to the staging file by a blocking thread.
//!
//! Direct I/O first (docs/performance.md, "Upload"). The chunks are copied
//! into a few aligned blocks, and each full block is written with
//! `O_DIRECT` by a second thread while the next one fills. The page cache
//! is bypassed, so:
//! - nothing is copied into it, and no writeback is left for the fsync
//!   before the reply;
//! - a 4 GB video does not push the database and the thumbnails out of
//!   the cache.
//!
//! The first bytes up to an aligned offset (a resume may start anywhere)
//! and the last partial block are written through the page cache. The
//! caller's fsync makes both durable, and flushes the disk's own cache.
//!
//! Where the file system refuses direct I/O (it says so through `statx`,
//! the writer thread cannot start, or a direct write fails with `EINVAL`),
//! the bytes go through the page cache instead: each batch in one
//! `pwritev`, and writeback started every [`WRITEBACK_BYTES`], so the fsync
//! before the reply only waits for the tail.

use super::space::Claim;
use super::HashThread;
use bytes::Bytes;
use std::fs::{File, OpenOptions};
use std::io::{Error, ErrorKind, Result};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Chunks on their way to the disk writer, each with its room in the queue.
pub(super) type Queue =
    tokio::sync::mpsc::UnboundedReceiver<(Bytes, tokio::sync::OwnedSemaphorePermit)>;

/// At most this much is taken from the queue at one wake-up (and handed
/// to the kernel in one `writev` on the page-cache path).
const WRITE_BATCH_BYTES: usize = 4 << 20;
/// Page-cache path: writeback starts every this many bytes.
const WRITEBACK_BYTES: u64 = 8 << 20;
/// Direct path: the size of one aligned block (one write), and how many
/// there are at most per upload. One fills while the others are written,
/// so the queue keeps draining while the disk works.
const BLOCK_BYTES: usize = 4 << 20;
const BLOCKS: usize = 4;

/// How [`write_stream`] wrote the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    Direct,
    PageCache,
}

/// Appends every chunk of `rx`, until its sender is gone, to `f` from
/// `start` on. `path` is `f`'s path (opened a second time for direct I/O).
/// Every batch taken from the queue is first given room on the disk by
/// `claim` (which refuses a batch that would cross the free-space reserve:
/// the stream stops there, with what came before written), then fed to
/// `digest`. On return, all that arrived has been handed to the kernel,
/// except after an error. The caller fsyncs.
pub(super) fn write_stream(
    rx: &mut Queue,
    f: &File,
    path: &Path,
    start: u64,
    digest: Option<&HashThread>,
    claim: &mut Claim,
) -> Result<Route> {
    match open_direct(path) {
        Some(direct) => {
            let route = direct_stream(rx, f, direct, start, digest, claim);
            // The blocks are freed; glibc would keep them resident.
            crate::heap::release_free_memory();
            route
        }
        None => {
            cached_stream(rx, f, start, digest, claim)?;
            Ok(Route::PageCache)
        }
    }
}

/// A file opened for direct I/O, with the alignment its writes need.
struct Direct {
    file: File,
    align: usize,
}

/// Opens `path` for direct writes, if its file system supports them.
fn open_direct(path: &Path) -> Option<Direct> {
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
        .open(path)
        .ok()?;
    let align = direct_alignment(&file)?;
    Some(Direct { file, align })
}

/// The alignment (of memory, file offset and length) used for direct
/// writes to `f`: `None` when `statx` (Linux 6.1 and later) says direct
/// I/O is not supported; else what it asks for, but never less than a
/// page. A device may take 512-byte offsets, but a direct write that
/// starts inside the page of the buffered head would make the kernel
/// flush that page and take its slow unaligned path for every block. When
/// the kernel cannot tell, 4096 (a wrong guess fails a write with
/// `EINVAL`, and the stream falls back to the page cache).
fn direct_alignment(f: &File) -> Option<usize> {
    use rustix::fs::{statx, AtFlags, StatxFlags};
    const PAGE: u32 = 4096;
    match statx(f, "", AtFlags::EMPTY_PATH, StatxFlags::DIOALIGN) {
        Ok(st) if st.stx_mask & StatxFlags::DIOALIGN.bits() != 0 => {
            if st.stx_dio_offset_align == 0 {
                return None;
            }
            let a = st.stx_dio_offset_align.max(st.stx_dio_mem_align).max(PAGE) as usize;
            (a.is_power_of_two() && a <= BLOCK_BYTES).then_some(a)
        }
        _ => Some(PAGE as usize),
    }
}

/// Takes the next batch from the queue: waits for one chunk, then takes
/// whatever else is queued, up to [`WRITE_BATCH_BYTES`]. `None` once the
/// sender is gone and the queue is empty. The permits hold the batch's
/// room in the queue until the caller drops them.
fn next_batch(
    rx: &mut Queue,
    batch: &mut Vec<Bytes>,
    permits: &mut Vec<tokio::sync::OwnedSemaphorePermit>,
) -> Option<usize> {
    let (b, p) = rx.blocking_recv()?;
    let mut n = b.len();
    batch.push(b);
    permits.push(p);
    while n < WRITE_BATCH_BYTES {
        match rx.try_recv() {
            Ok((b, p)) => {
                n += b.len();
                batch.push(b);
                permits.push(p);
            }
            Err(_) => break,
        }
    }
    Some(n)
}

/// An aligned buffer of up to [`BLOCK_BYTES`]: the bytes from `at` in a
/// vector whose capacity never changes (so it never moves), filled by
/// appending (nothing is zeroed first, and a small part touches only the
/// pages it fills).
struct Block {
    raw: Vec<u8>,
    at: usize,
}

impl Block {
    fn new(align: usize) -> Block {
        let mut raw = Vec::with_capacity(BLOCK_BYTES + align);
        let addr = raw.as_ptr() as usize;
        let at = (align - addr % align) % align;
        raw.resize(at, 0);
        Block { raw, at }
    }

    fn len(&self) -> usize {
        self.raw.len() - self.at
    }

    /// Appends as much of `s` as fits; returns how much.
    fn push(&mut self, s: &[u8]) -> usize {
        let k = s.len().min(BLOCK_BYTES - self.len());
        self.raw.extend_from_slice(&s[..k]);
        k
    }

    fn filled(&self) -> &[u8] {
        &self.raw[self.at..]
    }

    fn clear(&mut self) {
        self.raw.truncate(self.at);
    }
}

/// The direct path. Returns [`Route::PageCache`] when it fell back.
fn direct_stream(
    rx: &mut Queue,
    f: &File,
    direct: Direct,
    start: u64,
    digest: Option<&HashThread>,
    claim: &mut Claim,
) -> Result<Route> {
    let align = direct.align;
    // Full blocks go to the writer thread with their file offset, and come
    // back empty.
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<(Block, u64)>(BLOCKS);
    let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<Block>(BLOCKS);
    // Set by the writer thread when it stops on an error, so the stream
    // stops taking bytes it could not store.
    let failed = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let failed = &failed;
        let writer = std::thread::Builder::new()
            .name("isync-upload-disk".into())
            .spawn_scoped(scope, move || -> Result<Route> {
                let mut direct = Some(direct);
                while let Ok((mut block, pos)) = full_rx.recv() {
                    if let Err(e) = write_block(&mut direct, f, block.filled(), pos) {
                        failed.store(true, Ordering::Release);
                        return Err(e);
                    }
                    block.clear();
                    let _ = empty_tx.send(block);
                }
                Ok(match direct {
                    Some(_) => Route::Direct,
                    None => Route::PageCache,
                })
            });
        let writer = match writer {
            Ok(w) => w,
            Err(e) => {
                log::warn!("upload: no disk writer thread ({e}); writing through the page cache");
                cached_stream(rx, f, start, digest, claim)?;
                return Ok(Route::PageCache);
            }
        };
        // A batch refused by the claim ends the stream like its end would
        // (the bytes before it are all written), then fails it.
        let mut refused = None;
        let gone = || Error::other("the upload's disk writer stopped");
        let mut made = 1;
        let mut cur = Block::new(align);
        // The file offset of `cur`'s first byte.
        let mut pos = start;
        let mut batch = Vec::new();
        let mut permits = Vec::new();
        let fed = (|| -> Result<()> {
            while let Some(n) = next_batch(rx, &mut batch, &mut permits) {
                if let Err(e) = claim.take(f, n as u64) {
                    batch.clear();
                    permits.clear();
                    refused = Some(e);
                    break;
                }
                if let Some(d) = digest {
                    d.feed(batch.clone());
                }
                for chunk in batch.drain(..) {
                    let mut s = &chunk[..];
                    // Up to the first aligned offset through the page cache.
                    let head = (align as u64 - pos % align as u64) % align as u64;
                    if cur.len() == 0 && head > 0 {
                        let k = s.len().min(head as usize);
                        f.write_all_at(&s[..k], pos)?;
                        pos += k as u64;
                        s = &s[k..];
                    }
                    while !s.is_empty() {
                        let k = cur.push(s);
                        s = &s[k..];
                        if cur.len() == BLOCK_BYTES {
                            let next = match empty_rx.try_recv() {
                                Ok(b) => b,
                                Err(_) if made < BLOCKS => {
                                    made += 1;
                                    Block::new(align)
                                }
                                Err(_) => empty_rx.recv().map_err(|_| gone())?,
                            };
                            let full = std::mem::replace(&mut cur, next);
                            full_tx.send((full, pos)).map_err(|_| gone())?;
                            pos += BLOCK_BYTES as u64;
                        }
                    }
                }
                // The batch is copied: its room in the queue is free again.
                permits.clear();
                if failed.load(Ordering::Acquire) {
                    return Err(gone());
                }
            }
            Ok(())
        })();
        drop(full_tx);
        // The writer's own error says more than "it stopped".
        let route = writer.join().map_err(|_| gone())??;
        fed?;
        // The last partial block through the page cache.
        f.write_all_at(cur.filled(), pos)?;
        match refused {
            Some(e) => Err(e),
            None => Ok(route),
        }
    })
}

/// Writes one full block at `pos`: directly while `direct` is there; if
/// the file system refuses (`EINVAL`: direct I/O or this alignment not
/// supported after all, or a write cut short by a file size limit),
/// through the page cache from then on, with its writeback started at
/// once.
fn write_block(direct: &mut Option<Direct>, f: &File, buf: &[u8], pos: u64) -> Result<()> {
    if let Some(d) = direct {
        match d.file.write_all_at(buf, pos) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                log::warn!("upload: direct I/O refused ({e}); writing through the page cache");
                *direct = None;
            }
            Err(e) => return Err(e),
        }
    }
    // Rewriting what a partial direct write stored is harmless: same bytes,
    // same place.
    f.write_all_at(buf, pos)?;
    start_writeback(f, pos, buf.len() as u64);
    Ok(())
}

/// Starts writeback of `len` bytes from `pos` without waiting for it
/// (`posix_fadvise(DONTNEED)`; it also keeps finished uploads from
/// crowding the page cache), so the fsync before the reply only waits for
/// what came after.
fn start_writeback(f: &File, pos: u64, len: u64) {
    let _ = rustix::fs::fadvise(
        f,
        pos,
        std::num::NonZeroU64::new(len),
        rustix::fs::Advice::DontNeed,
    );
}

/// The page-cache path: each batch in one `pwritev` (no copy on this side),
/// writeback started every [`WRITEBACK_BYTES`].
fn cached_stream(
    rx: &mut Queue,
    f: &File,
    start: u64,
    digest: Option<&HashThread>,
    claim: &mut Claim,
) -> Result<()> {
    let mut pos = start;
    let mut started = start;
    let mut batch = Vec::new();
    let mut permits = Vec::new();
    while let Some(n) = next_batch(rx, &mut batch, &mut permits) {
        claim.take(f, n as u64)?;
        if let Some(d) = digest {
            d.feed(batch.clone());
        }
        write_all_vectored(f, pos, &mut batch)?;
        // The room the batch took in the queue is free again.
        permits.clear();
        pos += n as u64;
        if pos - started >= WRITEBACK_BYTES {
            start_writeback(f, started, pos - started);
            started = pos;
        }
    }
    Ok(())
}

/// Writes all of `bufs` (emptying it) at `pos` with as few `pwritev` calls
/// as the kernel allows.
fn write_all_vectored(f: &File, mut pos: u64, bufs: &mut Vec<Bytes>) -> Result<()> {
    use bytes::Buf;
    // IOV_MAX on Linux.
    const MAX_SLICES: usize = 1024;
    let mut first = 0;
    while first < bufs.len() {
        let slices: Vec<std::io::IoSlice> = bufs[first..]
            .iter()
            .take(MAX_SLICES)
            .map(|b| std::io::IoSlice::new(b))
            .collect();
        let mut n = match rustix::io::pwritev(f, &slices, pos) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        drop(slices);
        pos += n as u64;
        while n > 0 {
            let b = &mut bufs[first];
            if n >= b.len() {
                n -= b.len();
                first += 1;
            } else {
                b.advance(n);
                n = 0;
            }
        }
        while first < bufs.len() && bufs[first].is_empty() {
            first += 1;
        }
    }
    bufs.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::space::Reserve;
    use crate::upload::{Checksum, Hasher};
    use std::sync::Arc;

    /// A queue holding `chunks`, its sender gone (the stream ends after
    /// them, as when a request completes or breaks off).
    fn queue(chunks: Vec<Bytes>) -> Queue {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let room = Arc::new(tokio::sync::Semaphore::new(1 << 20));
        for c in chunks {
            tx.send((c, room.clone().try_acquire_owned().unwrap()))
                .unwrap();
        }
        rx
    }

    /// `n` bytes of a varied pattern, cut into chunks of 1 B to ~600 kB.
    fn chunks(n: usize, seed: u64) -> (Vec<u8>, Vec<Bytes>) {
        let mut x = seed | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let all: Vec<u8> = (0..n).map(|_| next() as u8).collect();
        let mut out = Vec::new();
        let mut at = 0;
        while at < n {
            let k = match next() % 4 {
                0 => 1 + (next() % 7) as usize,
                1 => 1 + (next() % 5000) as usize,
                _ => 1 + (next() % 600_000) as usize,
            }
            .min(n - at);
            out.push(Bytes::copy_from_slice(&all[at..at + k]));
            at += k;
        }
        (all, out)
    }

    fn sha1(b: &[u8]) -> String {
        let mut h = Hasher::new(Checksum::Sha1);
        h.update(b);
        h.hex()
    }

    /// Streams `n` bytes to a file already holding `start` bytes, by the
    /// route `write_stream` picks or, with `page_cache`, by the page-cache
    /// path; checks every byte of the file and the digest of what was
    /// streamed, and returns the route taken.
    fn round_trip(start: usize, n: usize, page_cache: bool) -> Route {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part");
        let (prefix, _) = chunks(start, 99);
        std::fs::write(&path, &prefix).unwrap();
        let (all, parts) = chunks(n, start as u64 + n as u64);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let digest = HashThread::start(Hasher::new(Checksum::Sha1)).unwrap();
        let mut rx = queue(parts);
        let took = if page_cache {
            cached_stream(
                &mut rx,
                &f,
                start as u64,
                Some(&digest),
                &mut Claim::new(start as u64, Reserve::none()),
            )
            .unwrap();
            Route::PageCache
        } else {
            write_stream(
                &mut rx,
                &f,
                &path,
                start as u64,
                Some(&digest),
                &mut Claim::new(start as u64, Reserve::none()),
            )
            .unwrap()
        };
        assert_eq!(digest.finish().unwrap(), sha1(&all), "start {start}, {n} B");
        let got = from_disk(&f, &path);
        assert_eq!(got.len(), start + n, "start {start}, {n} B");
        assert!(got[..start] == prefix[..], "prefix kept (start {start})");
        assert!(got[start..] == all[..], "every byte (start {start}, {n} B)");
        took
    }

    /// The file's bytes as the disk has them: synced, then dropped from
    /// the page cache before the read.
    fn from_disk(f: &File, path: &Path) -> Vec<u8> {
        f.sync_all().unwrap();
        rustix::fs::fadvise(f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        std::fs::read(path).unwrap()
    }

    fn direct_supported() -> bool {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("probe");
        std::fs::write(&p, b"").unwrap();
        open_direct(&p).is_some()
    }

    #[test]
    fn direct_writes_store_every_byte_from_any_offset() {
        if !direct_supported() {
            eprintln!("no direct I/O in the temp dir; this test checks the page cache path");
        }
        // More than all the blocks (blocks are reused), from aligned and
        // odd offsets, so heads, full blocks and tails all occur.
        let big = BLOCK_BYTES * (BLOCKS + 1) + 12_345;
        for (start, n) in [
            (0, big),
            (5_000_001, big),
            (4096, BLOCK_BYTES),
            (4095, 2),
            (1, 4095),
            (511, 3 * BLOCK_BYTES - 7),
            (0, 0),
            (12, 1),
        ] {
            let route = round_trip(start, n, false);
            assert_eq!(route == Route::Direct, direct_supported(), "start {start}");
        }
    }

    #[test]
    fn page_cache_writes_store_every_byte_from_any_offset() {
        let big = BLOCK_BYTES * 3 + 777;
        for (start, n) in [(0, big), (5_000_001, big), (1, 4095), (0, 0)] {
            assert_eq!(round_trip(start, n, true), Route::PageCache);
        }
    }

    /// A file in a new temp dir holding `prefix`, opened for direct I/O;
    /// `None` (said on stderr) where the temp dir has no direct I/O.
    fn direct_file(prefix: &[u8]) -> Option<(tempfile::TempDir, std::path::PathBuf, Direct)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part");
        std::fs::write(&path, prefix).unwrap();
        let Some(d) = open_direct(&path) else {
            eprintln!("no direct I/O in the temp dir; this test has nothing to check");
            return None;
        };
        Some((dir, path, d))
    }

    /// A direct write the file system refuses (here: a misaligned offset)
    /// is written through the page cache, and so is every later block.
    #[test]
    fn a_refused_direct_write_falls_back_to_the_page_cache() {
        let Some((_dir, path, d)) = direct_file(&[7u8; 100]) else {
            return;
        };
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        let mut block = Block::new(d.align);
        let (data, _) = chunks(BLOCK_BYTES, 5);
        assert_eq!(block.push(&data), BLOCK_BYTES);
        // What the file system says its direct writes need (0: it cannot
        // tell, as on kernels before 6.1).
        let need = rustix::fs::statx(
            &d.file,
            "",
            rustix::fs::AtFlags::EMPTY_PATH,
            rustix::fs::StatxFlags::DIOALIGN,
        )
        .map(|st| st.stx_dio_offset_align)
        .unwrap_or(0);
        let mut direct = Some(d);
        // Offset 100 is aligned for no block device.
        write_block(&mut direct, &f, block.filled(), 100).unwrap();
        if need > 1 {
            assert!(direct.is_none(), "the refusal switched to the page cache");
        }
        write_block(&mut direct, &f, block.filled(), 100 + BLOCK_BYTES as u64).unwrap();
        let got = from_disk(&f, &path);
        assert_eq!(got.len(), 100 + 2 * BLOCK_BYTES);
        assert!(got[..100].iter().all(|&b| b == 7));
        assert!(got[100..100 + BLOCK_BYTES] == data[..]);
        assert!(got[100 + BLOCK_BYTES..] == data[..]);
    }

    /// A block the disk cannot take (here: a descriptor that cannot
    /// write) ends the stream with the error at once: nothing is written
    /// past the failure, and nothing leaves a hole.
    #[test]
    fn a_failing_disk_write_stops_the_stream() {
        let Some((_dir, path, real)) = direct_file(&[1u8; 1001]) else {
            return;
        };
        let broken = Direct {
            file: File::open(&path).unwrap(),
            align: real.align,
        };
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        let (all, parts) = chunks(3 * BLOCK_BYTES, 8);
        let mut rx = queue(parts);
        let t = std::time::Instant::now();
        let r = direct_stream(
            &mut rx,
            &f,
            broken,
            1001,
            None,
            &mut Claim::new(1001, Reserve::none()),
        );
        let e = r.expect_err("a write failed");
        assert_eq!(
            e.raw_os_error(),
            Some(rustix::io::Errno::BADF.raw_os_error()),
            "{e}"
        );
        assert!(t.elapsed() < std::time::Duration::from_secs(10));
        // The prefix and the buffered head up to the first aligned offset,
        // nothing more.
        let got = from_disk(&f, &path);
        assert_eq!(got.len(), real.align, "{}", got.len());
        assert!(got[..1001].iter().all(|&b| b == 1));
        assert!(got[1001..] == all[..real.align - 1001]);
    }
}
