//! On-disk thumbnail cache, `dir/<xx>/<file_id>_<level>_<fingerprint>.<jpg|png>`
//! (`xx` = file id mod 256 in hex, so no directory grows huge). A lookup
//! opens the original (safely, `original.rs`) for its size and mtime, then
//! costs a `stat`; a miss renders on a thread of the render lanes (level 0
//! first, `lanes.rs`), once per key however many requests ask at the same
//! time, and the file appears atomically (temp name in the same directory,
//! then rename). The
//! pre-render worker (`prerender`) fills the same cache ahead of requests
//! through [`ThumbCache::prerender_blocking`]. The worker uses the cache,
//! never the reverse: the app starts the worker with the cache and hands
//! the worker's handle to whoever asks for renders (`AppState::prerender`).
//!
//! Which folder holds a library's thumbnails, and how big it may grow, is
//! `thumbstore`'s: each library's own disk by default, the data dir as
//! the fallback, each bounded with least-recently-used eviction. A
//! thumbnail still in the data dir's folder from before (an older
//! installation, or while the library's disk could not take it) is moved
//! to its library's folder when first looked up; `thumbmove` moves the
//! rest at start.
//!
//! Every render, request or pre-render, reserves its memory in the cache's
//! one [`Budget`] and is recorded in the [`Journal`] while it runs, so a
//! render the process does not survive is known at the next start.

use std::collections::HashMap;
#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::watch;

use super::budget::{Budget, Class};
use super::journal::{Interrupted, Journal};
use super::lanes::Lanes;
use super::original::Original;
use super::thumbs::{self, Thumb, ThumbError, CONTENT_TYPE_JPEG, CONTENT_TYPE_PNG};
use super::thumbstore::ThumbLocation;
use super::thumbstore::{Bounds, Stores};
use crate::model::{FileType, ThumbLevel};
use files::{find_in, shard_dir};
use render::Render;

pub(crate) use files::move_thumb;

mod files;
mod render;
#[cfg(test)]
mod tests;

/// Identifies one cached thumbnail. `fingerprint` comes from the original's
/// size and mtime ([`fingerprint`]), so a changed original misses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ThumbKey {
    pub file_id: i64,
    pub level: ThumbLevel,
    pub fingerprint: u64,
}

/// The original a thumbnail is built from, as its record describes it.
#[derive(Debug, Clone)]
pub struct ThumbSource {
    /// The library folder it lies in: it is opened from there, refusing
    /// symlinks below (`safeopen`).
    pub root: PathBuf,
    pub path: PathBuf,
    /// The recorded inode, checked against the file opened (`None`: not
    /// recorded, e.g. a pending upload's).
    pub inode: Option<i64>,
    pub kind: FileType,
    /// Stored EXIF orientation (§2.4); ignored for videos.
    pub orientation: Option<i64>,
}

/// A thumbnail file ready to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedThumb {
    pub path: PathBuf,
    pub content_type: &'static str,
}

/// Stable hash of an original's size and modification time (FNV-1a, so the
/// value survives compiler upgrades, unlike `DefaultHasher`).
pub(crate) fn fingerprint(len: u64, modified: SystemTime) -> u64 {
    let since = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = len
        .to_le_bytes()
        .into_iter()
        .chain(since.as_secs().to_le_bytes())
        .chain(since.subsec_nanos().to_le_bytes());
    for b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Handle to the cache; clones share the semaphore and in-flight renders.
#[derive(Clone)]
pub struct ThumbCache {
    inner: Arc<Inner>,
}

/// What every waiter of one render receives.
type Outcome = Result<CachedThumb, Arc<ThumbError>>;

struct Inner {
    /// The data dir's cache folder: the journal's home, and the fallback.
    dir: PathBuf,
    stores: Stores,
    lanes: Arc<Lanes>,
    /// Memory of every render, requests' and the pre-render worker's.
    budget: Budget,
    /// Each render's decode-bands setting
    /// ([`Allowance::decode_bands`](super::budget::Allowance::decode_bands)).
    decode_bands: AtomicUsize,
    journal: Journal,
    /// Renders in progress. A std mutex: held for a map operation only,
    /// never across an await.
    flights: Mutex<HashMap<ThumbKey, watch::Receiver<Option<Outcome>>>>,
    renders: AtomicU64,
    /// Thumbnails written by the pre-render worker (each level counts).
    prerendered: AtomicU64,
    temp_seq: AtomicU64,
}

impl ThumbCache {
    /// A cache rooted at `dir` (created on first write) rendering up to
    /// `per_level` thumbnails of each level at once (at least one; the
    /// cores), all of them within `memory_bytes`.
    /// Every thumbnail goes to `dir`, bounded by a tenth of its file system.
    pub fn new(dir: PathBuf, per_level: usize, memory_bytes: u64) -> ThumbCache {
        let bounds = Bounds {
            limit_bytes: 0,
            reserve_bytes: 0,
        };
        let stores = Stores::new(ThumbLocation::DataDir, dir, bounds);
        ThumbCache::with_stores(stores, per_level, memory_bytes)
    }

    /// A cache keeping thumbnails where `stores` says (the journal goes in
    /// its data dir folder).
    pub(crate) fn with_stores(stores: Stores, per_level: usize, memory_bytes: u64) -> ThumbCache {
        let dir = stores.fallback_dir().to_path_buf();
        ThumbCache {
            inner: Arc::new(Inner {
                journal: Journal::new(dir.join(".journal")),
                dir,
                stores,
                lanes: Lanes::new(per_level),
                budget: Budget::new(memory_bytes),
                decode_bands: AtomicUsize::new(0),
                flights: Mutex::new(HashMap::new()),
                renders: AtomicU64::new(0),
                prerendered: AtomicU64::new(0),
                temp_seq: AtomicU64::new(0),
            }),
        }
    }

    /// The memory budget of the renders.
    #[cfg(test)]
    pub(crate) fn budget(&self) -> &Budget {
        &self.inner.budget
    }

    /// The lanes the renders of requests run in (their scheduling can be
    /// set per cache, for the burst bench's baseline).
    pub fn lanes(&self) -> &Lanes {
        &self.inner.lanes
    }

    /// How many bands (threads) one JPEG decode of this cache's renders may
    /// use from now on: 0 for one per core, up to 4 (the default), 1 to
    /// decode every file in one piece (the thumbs bench's baseline).
    #[cfg(test)]
    pub(crate) fn set_decode_bands(&self, bands: usize) {
        self.inner.decode_bands.store(bands, Ordering::Relaxed);
    }

    /// The setting [`ThumbCache::set_decode_bands`] made (0 unless set).
    #[cfg(test)]
    pub(crate) fn decode_bands(&self) -> usize {
        self.inner.decode_bands.load(Ordering::Relaxed)
    }

    /// Where the thumbnails are kept.
    pub(crate) fn stores(&self) -> &Stores {
        &self.inner.stores
    }

    /// The renders the last run began and did not finish (it died during
    /// them), leaving out those whose thumbnails were written after all;
    /// the journal is cleared. Call once at start, before any render.
    /// Blocking.
    pub(crate) fn take_interrupted(&self) -> std::io::Result<Vec<Interrupted>> {
        let mut found = self.inner.journal.take_interrupted()?;
        found.retain(|i| {
            i.levels.iter().any(|&level| {
                let key = ThumbKey {
                    file_id: i.file_id,
                    level,
                    fingerprint: i.fingerprint,
                };
                // At start only the data dir's folder is known; a render
                // finished on a library disk just before the end counts
                // as cut short (a window of microseconds).
                self.inner
                    .stores
                    .opened_dirs()
                    .iter()
                    .all(|dir| find_in(dir, key).is_none())
            })
        });
        Ok(found)
    }

    /// The server stops on purpose: renders it leaves running are not
    /// crashes. Blocking.
    pub(crate) fn end_of_run(&self) {
        self.inner.journal.clear_all();
    }

    /// How many thumbnails this cache has rendered (hits excluded).
    pub fn renders(&self) -> u64 {
        self.inner.renders.load(Ordering::Relaxed)
    }

    /// How many thumbnails the pre-render worker has written.
    #[cfg(test)]
    pub(crate) fn prerendered(&self) -> u64 {
        self.inner.prerendered.load(Ordering::Relaxed)
    }

    /// Whether the thumbnail for `key` of a file of the library at `root`
    /// is cached. Blocking (a stat or two).
    #[cfg(test)]
    pub(crate) fn contains(&self, root: &Path, key: ThumbKey) -> bool {
        let store = self.inner.stores.for_root(root, None);
        self.inner.lookup(&store, key).is_some()
    }

    /// Makes sure the `levels` of `file_id` are cached for the original as
    /// it is on disk now, rendering the missing ones — both from one decode
    /// when both are missing. A level a request is rendering right now is
    /// left to it. Returns how many thumbnails were written; an error only
    /// when nothing could be. Blocking: for the pre-render worker's
    /// threads, which take no render slot from requests (they run at the
    /// lowest CPU priority) and ask for memory as [`Class::Background`].
    pub(crate) fn prerender_blocking(
        &self,
        file_id: i64,
        src: &ThumbSource,
        levels: &[ThumbLevel],
    ) -> Result<usize, ThumbError> {
        if !src.kind.has_thumbnail() {
            return Err(ThumbError::Unsupported);
        }
        let orig = Original::open(&src.root, &src.path, src.inode)?;
        let store = self.inner.stores.for_root(&src.root, Some(orig.dev));
        let fingerprint = fingerprint(orig.len, orig.modified);
        let key = |level| ThumbKey {
            file_id,
            level,
            fingerprint,
        };
        let in_flight = |k: &ThumbKey| {
            let flights = self.inner.flights.lock().unwrap_or_else(|p| p.into_inner());
            flights.contains_key(k)
        };
        let missing: Vec<ThumbKey> = levels
            .iter()
            .map(|l| key(*l))
            .filter(|k| self.inner.lookup(&store, *k).is_none() && !in_flight(k))
            .collect();
        if missing.is_empty() {
            return Ok(0);
        }
        let allow = self.inner.allowance(Class::Background);
        let marked: Vec<ThumbLevel> = missing.iter().map(|k| k.level).collect();
        let _mark = self
            .inner
            .journal
            .begin(file_id, fingerprint, &marked)
            .map_err(|e| ThumbError::io(&self.inner.dir, e))?;
        log::debug!(file_id, levels = marked.len(); "thumbnail pre-render started");
        let rendered: Vec<(ThumbKey, Result<Thumb, ThumbError>)> = match missing.as_slice() {
            [one] => vec![(
                *one,
                thumbs::render_original(&orig, src.kind, src.orientation, one.level, allow),
            )],
            _ => {
                let [small, screen] =
                    thumbs::render_both_original(&orig, src.kind, src.orientation, allow);
                vec![
                    (key(ThumbLevel::Small), small),
                    (key(ThumbLevel::Screen), screen),
                ]
            }
        };
        let (mut written, mut first_error) = (0, None);
        for (k, thumb) in rendered {
            match thumb.and_then(|t| self.inner.store(&store, k, &t)) {
                Ok(_) => written += 1,
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        self.inner
            .prerendered
            .fetch_add(written as u64, Ordering::Relaxed);
        match first_error {
            Some(e) if written == 0 => Err(e),
            _ => Ok(written),
        }
    }

    /// The cached thumbnail of `file_id` at `level` for its original as it
    /// is on disk now, rendering it on a miss. Failures are not cached:
    /// the caller records the sticky build error.
    pub async fn get(
        &self,
        file_id: i64,
        level: ThumbLevel,
        src: ThumbSource,
    ) -> Result<CachedThumb, ThumbError> {
        if !src.kind.has_thumbnail() {
            return Err(ThumbError::Unsupported);
        }
        let inner = Arc::clone(&self.inner);
        // Opening the original and a stat can block for seconds on a
        // sleeping USB disk: never on the async workers.
        let looked = tokio::task::spawn_blocking(move || {
            let orig = Original::open(&src.root, &src.path, src.inode)?;
            let store = inner.stores.for_root(&src.root, Some(orig.dev));
            let key = ThumbKey {
                file_id,
                level,
                fingerprint: fingerprint(orig.len, orig.modified),
            };
            Ok::<_, ThumbError>(match inner.lookup(&store, key) {
                Some(hit) => Err(hit),
                None => Ok((key, Render { orig, src, store })),
            })
        })
        .await
        .map_err(|e| ThumbError::Failed(format!("thumbnail lookup task: {e}")))??;
        let (key, job) = match looked {
            Err(hit) => return Ok(hit),
            Ok(miss) => miss,
        };
        let mut rx = {
            let mut flights = self.inner.flights.lock().unwrap_or_else(|p| p.into_inner());
            match flights.get(&key) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    flights.insert(key, rx.clone());
                    // Detached: a client that hangs up doesn't waste the work
                    // or strand the other waiters.
                    tokio::spawn(Arc::clone(&self.inner).fly(key, job, tx));
                    rx
                }
            }
        };
        let outcome = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| ThumbError::Failed("thumbnail render task died".into()))?
            .clone();
        match outcome {
            Some(Ok(thumb)) => Ok(thumb),
            Some(Err(e)) => Err(e.duplicate()),
            None => Err(ThumbError::Failed("thumbnail render gave no result".into())),
        }
    }

    /// Deletes every cached thumbnail (all levels and fingerprints) of
    /// `file_id`; returns how many files went. Blocking (one directory read):
    /// call it where the rest of a file's deletion runs.
    pub(crate) fn remove_file(&self, file_id: i64) -> Result<usize, ThumbError> {
        let mut removed = 0;
        for dir in self.inner.stores.opened_dirs() {
            removed += self.inner.remove_matching(&dir, file_id, |_| true)?;
        }
        Ok(removed)
    }

    /// The newest cached thumbnail of `file_id` at `level`, whatever the
    /// original's version: for serving while the original can't be checked
    /// (its disk is offline). Blocking (one directory read).
    /// A disk that is gone holds none: its thumbnails went with it.
    pub(crate) fn cached_any(&self, file_id: i64, level: ThumbLevel) -> Option<CachedThumb> {
        let prefix = format!("{file_id}_{}_", level.as_u8());
        let dirs = self.inner.stores.opened_dirs();
        dirs.iter()
            .filter_map(|dir| std::fs::read_dir(shard_dir(dir, file_id)).ok())
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let content_type = match name.strip_prefix(&prefix)?.rsplit_once('.')?.1 {
                    "jpg" => CONTENT_TYPE_JPEG,
                    "png" => CONTENT_TYPE_PNG,
                    _ => return None,
                };
                let modified = entry.metadata().ok()?.modified().ok()?;
                Some((modified, entry.path(), content_type))
            })
            .max_by_key(|(modified, _, _)| *modified)
            .map(|(_, path, content_type)| CachedThumb { path, content_type })
    }
}
