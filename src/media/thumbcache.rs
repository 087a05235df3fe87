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
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::{oneshot, watch};

use super::budget::{Allowance, Budget, Class};
use super::journal::{Interrupted, Journal};
use super::lanes::Lanes;
use super::original::Original;
use super::thumbs::{self, Thumb, ThumbError, CONTENT_TYPE_JPEG, CONTENT_TYPE_PNG};
use super::thumbstore::ThumbLocation;
use super::thumbstore::{Bounds, Store, Stores};
use crate::model::{FileType, ThumbLevel};

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
    /// Each render's decode-bands setting ([`Allowance::decode_bands`]).
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

/// A render to do: the original as opened for the lookup.
struct Render {
    orig: Original,
    src: ThumbSource,
    /// Where its library's thumbnails go.
    store: Arc<Store>,
}

/// Removes the in-flight entry when the render ends, even by panic, so the
/// next request retries instead of waiting forever.
struct FlightGuard {
    inner: Arc<Inner>,
    key: ThumbKey,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut flights = self.inner.flights.lock().unwrap_or_else(|p| p.into_inner());
        flights.remove(&self.key);
    }
}

impl Inner {
    async fn fly(self: Arc<Self>, key: ThumbKey, job: Render, tx: watch::Sender<Option<Outcome>>) {
        let _guard = FlightGuard {
            inner: Arc::clone(&self),
            key,
        };
        let outcome = self.build(key, job).await.map_err(Arc::new);
        // Publish before the guard drops the entry: a request arriving in
        // between joins this flight and reads the result at once.
        tx.send_replace(Some(outcome));
    }

    async fn build(
        self: &Arc<Self>,
        key: ThumbKey,
        job: Render,
    ) -> Result<CachedThumb, ThumbError> {
        let (tx, rx) = oneshot::channel();
        let inner = Arc::clone(self);
        self.lanes.submit(key.level, move || {
            let _ = tx.send(inner.render_into_cache(key, &job));
        });
        rx.await
            .map_err(|_| ThumbError::Failed("thumbnail render task died".into()))?
    }

    /// What a render of `class` may use: this cache's budget and
    /// decode-bands setting.
    fn allowance(&self, class: Class) -> Allowance<'_> {
        Allowance::new(&self.budget, class)
            .with_decode_bands(self.decode_bands.load(Ordering::Relaxed))
    }

    /// The cached thumbnail of `key` in `store`. One left in the data
    /// dir's folder (from before the library's disk kept them) is moved
    /// over first: a request during the move at start still gets it.
    fn lookup(&self, store: &Store, key: ThumbKey) -> Option<CachedThumb> {
        if let Some(hit) = find_in(store.dir(), key) {
            store.used(&hit.path);
            return Some(hit);
        }
        if store.is_fallback {
            return None;
        }
        let old = find_in(&self.dir, key)?;
        if !store.still_there() {
            return None;
        }
        let to = store.dir().join(old.path.strip_prefix(&self.dir).ok()?);
        match move_thumb(&old.path, &to) {
            Ok(size) => {
                if let Some(fallback) = self.stores.holding(&old.path) {
                    fallback.removed(&old.path);
                }
                store.added(&to, size);
                Some(CachedThumb {
                    path: to,
                    content_type: old.content_type,
                })
            }
            Err(e) => {
                log::warn!("cannot move thumbnail {}: {e}", old.path.display());
                None
            }
        }
    }

    fn render_into_cache(&self, key: ThumbKey, job: &Render) -> Result<CachedThumb, ThumbError> {
        // A flight that finished between our miss and our start left its file.
        if let Some(hit) = self.lookup(&job.store, key) {
            return Ok(hit);
        }
        self.renders.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let _mark = self
            .journal
            .begin(key.file_id, key.fingerprint, &[key.level])
            .map_err(|e| ThumbError::io(&self.dir, e))?;
        log::debug!(file_id = key.file_id, level = key.level.as_u8(); "thumbnail render started");
        let allow = self.allowance(Class::Request(key.level));
        let (src, orig) = (&job.src, &job.orig);
        let thumb = thumbs::render_original(orig, src.kind, src.orientation, key.level, allow)?;
        let stored = self.store(&job.store, key, &thumb)?;
        log::debug!(
            file_id = key.file_id, level = key.level.as_u8(), bytes = thumb.bytes.len(),
            ms = started.elapsed().as_millis() as u64;
            "thumbnail rendered"
        );
        Ok(stored)
    }

    /// Writes `thumb` as the cached file of `key` (temp name, then rename)
    /// and removes the thumbnails of older versions of the original.
    fn store(
        &self,
        store: &Store,
        key: ThumbKey,
        thumb: &Thumb,
    ) -> Result<CachedThumb, ThumbError> {
        let ext = if thumb.content_type == CONTENT_TYPE_PNG {
            "png"
        } else {
            "jpg"
        };
        if !store.still_there() {
            // Another disk was mounted over the library (or it went) since
            // the original was opened: its thumbnail is not written there.
            return Err(ThumbError::SourceMissing(store.dir().to_path_buf()));
        }
        let path = path_for(store.dir(), key, ext);
        let dir = shard_dir(store.dir(), key.file_id);
        // The shard only: a library's store folder that went (its root
        // deleted meanwhile) is not made again.
        let made = if store.is_fallback {
            std::fs::create_dir_all(&dir)
        } else {
            super::thumbstore::make_dir(&dir)
        };
        made.map_err(|e| ThumbError::io(&dir, e))?;
        let seq = self.temp_seq.fetch_add(1, Ordering::Relaxed);
        // Dot-prefixed so removal by file id never matches a half-written file.
        let temp = dir.join(format!(".{}.{}.{seq}.tmp", key.file_id, std::process::id()));
        if let Err(e) =
            std::fs::write(&temp, &thumb.bytes).and_then(|()| std::fs::rename(&temp, &path))
        {
            let _ = std::fs::remove_file(&temp);
            return Err(ThumbError::io(&path, e));
        }
        // Thumbnails of an older version of the original are dead weight now.
        let current = path.file_name().map(|n| n.to_owned());
        let prefix = format!("{}_{}_", key.file_id, key.level.as_u8());
        if let Err(e) = self.remove_matching(store.dir(), key.file_id, |name| {
            name.starts_with(&prefix) && Some(name.as_ref()) != current.as_deref()
        }) {
            log::warn!(
                "cannot remove stale thumbnails of file {}: {e}",
                key.file_id
            );
        }
        // Counted in, and the least recently used others go if it is full.
        store.added(&path, thumb.bytes.len() as u64);
        Ok(CachedThumb {
            path,
            content_type: thumb.content_type,
        })
    }

    /// Deletes the files of `file_id` in its shard of the cache folder
    /// `base` whose names pass `also`.
    fn remove_matching(
        &self,
        base: &Path,
        file_id: i64,
        also: impl Fn(&str) -> bool,
    ) -> Result<usize, ThumbError> {
        let dir = shard_dir(base, file_id);
        let store = self.stores.holding(&dir);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(ThumbError::io(&dir, e)),
        };
        let prefix = format!("{file_id}_");
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(|e| ThumbError::io(&dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(&prefix) && also(name) {
                remove_if_present(&entry.path())?;
                if let Some(store) = &store {
                    store.removed(&entry.path());
                }
                removed += 1;
            } else if name.starts_with('.') && name.ends_with(".tmp") && is_abandoned(&entry) {
                // Left by a crash mid-write; any live one is seconds old.
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(removed)
    }
}

fn shard_dir(base: &Path, file_id: i64) -> PathBuf {
    base.join(format!("{:02x}", file_id.rem_euclid(256)))
}

fn path_for(base: &Path, key: ThumbKey, ext: &str) -> PathBuf {
    shard_dir(base, key.file_id).join(format!(
        "{}_{}_{:016x}.{ext}",
        key.file_id,
        key.level.as_u8(),
        key.fingerprint
    ))
}

/// The thumbnail of `key` in the cache folder `base`, if there.
fn find_in(base: &Path, key: ThumbKey) -> Option<CachedThumb> {
    [("jpg", CONTENT_TYPE_JPEG), ("png", CONTENT_TYPE_PNG)]
        .into_iter()
        .map(|(ext, content_type)| (path_for(base, key, ext), content_type))
        .find(|(path, _)| path.is_file())
        .map(|(path, content_type)| CachedThumb { path, content_type })
}

/// Moves the cached file `from` to `to` (another cache folder, perhaps on
/// another disk: then copied to a temp name beside `to`, renamed, and the
/// original removed). Whoever moves it first wins; the other finds it
/// there. Returns its size. Blocking.
pub(crate) fn move_thumb(from: &Path, to: &Path) -> std::io::Result<u64> {
    // The shard only (its store folder is there): a library root deleted
    // meanwhile is not made again.
    if let Some(dir) = to.parent() {
        super::thumbstore::make_dir(dir)?;
    }
    match std::fs::rename(from, to) {
        Ok(()) => {}
        // EXDEV (`ErrorKind::CrossesDevices` needs a newer Rust than our MSRV).
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
            let temp = to.with_extension(format!("{}.tmp", std::process::id()));
            let temp = temp.with_file_name(format!(
                ".{}",
                temp.file_name().unwrap_or_default().to_string_lossy()
            ));
            if let Err(e) = std::fs::copy(from, &temp).and_then(|_| std::fs::rename(&temp, to)) {
                let _ = std::fs::remove_file(&temp);
                if !to.is_file() {
                    return Err(e);
                }
            }
            let _ = std::fs::remove_file(from);
        }
        // Moved by someone else meanwhile.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && to.is_file() => {}
        Err(e) => return Err(e),
    }
    Ok(std::fs::metadata(to)?.len())
}

fn is_abandoned(entry: &std::fs::DirEntry) -> bool {
    let age = entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok());
    age.is_some_and(|age| age > std::time::Duration::from_secs(3600))
}

fn remove_if_present(path: &Path) -> Result<(), ThumbError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ThumbError::io(path, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::budget::DEFAULT_BUDGET_BYTES;
    use super::super::testkit::*;
    use super::*;

    fn source(path: &Path) -> ThumbSource {
        ThumbSource {
            root: path.parent().unwrap().to_owned(),
            path: path.to_owned(),
            inode: None,
            kind: FileType::Image,
            orientation: None,
        }
    }

    fn key(file_id: i64, level: ThumbLevel, fingerprint: u64) -> ThumbKey {
        ThumbKey {
            file_id,
            level,
            fingerprint,
        }
    }

    /// The fingerprint of the file at `path` as it is now.
    fn fp(path: &Path) -> u64 {
        let meta = std::fs::metadata(path).unwrap();
        fingerprint(meta.len(), meta.modified().unwrap())
    }

    fn cache(dir: &Path, parallel: usize) -> ThumbCache {
        ThumbCache::new(dir.join("thumbs"), parallel, DEFAULT_BUDGET_BYTES)
    }

    /// Two caches in one process (two servers in one test binary) each
    /// keep their own setting, and every render of a cache, a request's or
    /// the pre-render worker's, is allowed that cache's.
    #[test]
    fn the_decode_bands_setting_belongs_to_one_cache() {
        let dir = tempfile::tempdir().unwrap();
        let a = cache(dir.path(), 1);
        let b = ThumbCache::new(dir.path().join("b"), 1, DEFAULT_BUDGET_BYTES);
        a.set_decode_bands(1);
        assert_eq!((a.decode_bands(), b.decode_bands()), (1, 0));
        for class in [Class::Request(ThumbLevel::Small), Class::Background] {
            assert_eq!(a.inner.allowance(class).decode_bands, 1);
            assert_eq!(b.inner.allowance(class).decode_bands, 0);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn identical_concurrent_requests_render_once() {
        let dir = tempfile::tempdir().unwrap();
        let photo = write(dir.path(), "p.jpg", &jpeg_bytes(&quadrants(2400, 1600), 90));
        let cache = cache(dir.path(), 2);
        let gets = (0..40).map(|_| {
            let cache = cache.clone();
            let src = source(&photo);
            tokio::spawn(async move { cache.get(4242, ThumbLevel::Screen, src).await })
        });
        let results = futures_util::future::join_all(gets).await;
        assert_eq!(cache.renders(), 1, "one render for 40 identical requests");
        let expected = dir
            .path()
            .join(format!("thumbs/92/4242_1_{:016x}.jpg", fp(&photo)));
        for r in results {
            let thumb = r.unwrap().unwrap();
            assert_eq!(thumb.path, expected);
            assert_eq!(thumb.content_type, CONTENT_TYPE_JPEG);
        }
        let img = decode(&std::fs::read(&expected).unwrap());
        assert_eq!(img.dimensions(), (800, 533));
        // No temp files left behind.
        assert_eq!(
            std::fs::read_dir(expected.parent().unwrap())
                .unwrap()
                .count(),
            1
        );
        // Every render gave its memory back, and left no journal record.
        assert_eq!(cache.budget().used(), 0);
        assert!(cache.budget().peak() > 0);
        assert!(cache.take_interrupted().unwrap().is_empty());

        // A hit is an open and a stat: no render (counted, not timed: a
        // 50 ms bound fails whenever a loaded machine pauses the thread),
        // no memory taken from the budget.
        let hit = cache
            .get(4242, ThumbLevel::Screen, source(&photo))
            .await
            .unwrap();
        assert_eq!((hit.path, cache.renders()), (expected, 1));
        assert_eq!(cache.budget().used(), 0);
    }

    #[tokio::test]
    async fn changed_original_misses_and_replaces_the_old_thumbnail() {
        let dir = tempfile::tempdir().unwrap();
        let photo = write(dir.path(), "p.jpg", &jpeg_bytes(&solid(400, 300, RED), 90));
        let cache = cache(dir.path(), 1);
        let fp1 = fp(&photo);
        let old = cache
            .get(1, ThumbLevel::Small, source(&photo))
            .await
            .unwrap();
        let other_level = cache
            .get(1, ThumbLevel::Screen, source(&photo))
            .await
            .unwrap();

        write(dir.path(), "p.jpg", &jpeg_bytes(&solid(400, 200, BLUE), 90));
        assert_ne!(fp1, fp(&photo));
        let new = cache
            .get(1, ThumbLevel::Small, source(&photo))
            .await
            .unwrap();
        assert_eq!(cache.renders(), 3);
        assert_ne!(new.path, old.path);
        assert!(!old.path.exists(), "stale thumbnail removed");
        assert!(
            other_level.path.exists(),
            "other level untouched until rebuilt"
        );
        let img = decode(&std::fs::read(&new.path).unwrap());
        assert_eq!(img.dimensions(), (160, 80));
        assert!(near(&img, 80, 40, BLUE, 40));
    }

    #[tokio::test]
    async fn remove_file_deletes_every_level_of_that_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let photo = write(
            dir.path(),
            "p.jpg",
            &jpeg_bytes(&solid(300, 300, GREEN), 90),
        );
        let cache = cache(dir.path(), 1);
        // 5 and 261 share shard 05.
        let a0 = cache
            .get(5, ThumbLevel::Small, source(&photo))
            .await
            .unwrap();
        let a1 = cache
            .get(5, ThumbLevel::Screen, source(&photo))
            .await
            .unwrap();
        let b = cache
            .get(261, ThumbLevel::Small, source(&photo))
            .await
            .unwrap();
        assert_eq!(a0.path.parent(), b.path.parent());
        assert_eq!(cache.cached_any(5, ThumbLevel::Screen), Some(a1.clone()));
        assert_eq!(cache.remove_file(5).unwrap(), 2);
        assert!(!a0.path.exists() && !a1.path.exists() && b.path.exists());
        assert_eq!(cache.cached_any(5, ThumbLevel::Screen), None);
        assert_eq!(cache.remove_file(5).unwrap(), 0);
        assert_eq!(cache.remove_file(77).unwrap(), 0, "shard never created");
        assert_eq!(cache.cached_any(77, ThumbLevel::Small), None);
    }

    #[tokio::test]
    async fn failures_are_reported_and_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path(), 1);
        let gone = dir.path().join("gone.jpg");
        for _ in 0..2 {
            let err = cache
                .get(9, ThumbLevel::Small, source(&gone))
                .await
                .unwrap_err();
            assert!(matches!(err, ThumbError::SourceMissing(_)), "{err}");
        }
        assert_eq!(cache.renders(), 0, "nothing to render");
        let bad = write(dir.path(), "bad.jpg", b"\xFF\xD8\xFF\xE0 junk");
        let err = cache
            .get(9, ThumbLevel::Small, source(&bad))
            .await
            .unwrap_err();
        assert!(matches!(err, ThumbError::Failed(_)), "{err}");
        let audio = ThumbSource {
            kind: FileType::Audio,
            ..source(&bad)
        };
        assert!(matches!(
            cache.get(9, ThumbLevel::Small, audio).await,
            Err(ThumbError::Unsupported)
        ));

        // Then the original appears: rendered and cached.
        write(dir.path(), "gone.jpg", &jpeg_bytes(&solid(20, 20, RED), 90));
        let got = cache.get(9, ThumbLevel::Small, source(&gone)).await;
        assert!(got.unwrap().path.exists());
    }

    #[tokio::test]
    async fn a_symlink_or_another_inode_gives_no_thumbnail() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("lib");
        std::fs::create_dir(&lib).unwrap();
        let secret = write(
            dir.path(),
            "secret.jpg",
            &jpeg_bytes(&solid(64, 64, RED), 90),
        );
        let photo = write(&lib, "p.jpg", &jpeg_bytes(&solid(64, 64, BLUE), 90));
        let inode = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(&photo).unwrap().ino() as i64
        };
        let cache = cache(dir.path(), 1);
        let recorded = ThumbSource {
            inode: Some(inode),
            ..source(&photo)
        };
        // The same name, now a link out of the library; then another file.
        // (The recorded file stays alive aside, so its inode number is not
        // reused by the newcomers.)
        std::fs::rename(&photo, lib.join("aside.jpg")).unwrap();
        std::os::unix::fs::symlink(&secret, &photo).unwrap();
        for _ in 0..2 {
            let err = cache
                .get(1, ThumbLevel::Small, recorded.clone())
                .await
                .unwrap_err();
            assert!(matches!(err, ThumbError::SourceMissing(_)), "{err}");
            std::fs::remove_file(&photo).unwrap();
            std::fs::copy(&secret, &photo).unwrap();
        }
        assert_eq!(cache.renders(), 0);
        assert!(!dir.path().join("thumbs").exists(), "nothing cached");
    }

    #[tokio::test]
    async fn transparent_sources_are_cached_as_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        image::RgbaImage::from_pixel(30, 30, image::Rgba([0, 0, 0, 10]))
            .save(&path)
            .unwrap();
        let cache = cache(dir.path(), 1);
        let thumb = cache
            .get(3, ThumbLevel::Small, source(&path))
            .await
            .unwrap();
        assert_eq!(thumb.content_type, CONTENT_TYPE_PNG);
        assert!(thumb
            .path
            .ends_with(format!("03/3_0_{:016x}.png", fp(&path))));
        assert_eq!(
            cache
                .get(3, ThumbLevel::Small, source(&path))
                .await
                .unwrap(),
            thumb
        );
        assert_eq!(cache.renders(), 1);
    }

    #[tokio::test]
    async fn prerender_fills_missing_levels_and_skips_cached_ones() {
        let dir = tempfile::tempdir().unwrap();
        let photo = write(dir.path(), "p.jpg", &jpeg_bytes(&quadrants(2000, 1000), 90));
        let cache = cache(dir.path(), 1);
        let both = [ThumbLevel::Small, ThumbLevel::Screen];
        let c = cache.clone();
        let src = source(&photo);
        let written = tokio::task::spawn_blocking(move || c.prerender_blocking(7, &src, &both))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((written, cache.prerendered()), (2, 2));
        let fp3 = fp(&photo);
        assert!(cache.contains(dir.path(), key(7, ThumbLevel::Small, fp3)));
        assert!(cache.contains(dir.path(), key(7, ThumbLevel::Screen, fp3)));
        // A request now is a hit: nothing rendered at request time.
        let hit = cache
            .get(7, ThumbLevel::Screen, source(&photo))
            .await
            .unwrap();
        assert_eq!(
            decode(&std::fs::read(&hit.path).unwrap()).dimensions(),
            (800, 400)
        );
        let small = cache
            .get(7, ThumbLevel::Small, source(&photo))
            .await
            .unwrap();
        assert_eq!(
            decode(&std::fs::read(&small.path).unwrap()).dimensions(),
            (160, 80)
        );
        assert_eq!(cache.renders(), 0);
        // Cached: nothing to do. A new version of the original: again, and
        // the old version's files go.
        assert_eq!(
            cache.prerender_blocking(7, &source(&photo), &both).unwrap(),
            0
        );
        let f = std::fs::File::options().write(true).open(&photo).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000))
            .unwrap();
        assert_eq!(
            cache
                .prerender_blocking(7, &source(&photo), &both[1..])
                .unwrap(),
            1
        );
        assert!(!hit.path.exists(), "stale level 1 removed");
        assert!(
            small.path.exists(),
            "level 0 of the old version stays until rebuilt"
        );
        // Failures are reported, nothing is written.
        let bad = write(dir.path(), "bad.jpg", b"\xFF\xD8\xFF\xE0 junk");
        let err = cache
            .prerender_blocking(8, &source(&bad), &both)
            .unwrap_err();
        assert!(matches!(err, ThumbError::Failed(_)), "{err}");
        assert!(!cache.contains(dir.path(), key(8, ThumbLevel::Small, fp(&bad))));
        assert_eq!(cache.prerendered(), 3);
        assert_eq!(cache.budget().used(), 0);
    }

    #[tokio::test]
    async fn a_render_too_large_for_the_budget_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        // A 16 MiB budget, and a 5000x4000 GIF whose decode needs ~240 MB.
        let cache = ThumbCache::new(dir.path().join("thumbs"), 1, 16 << 20);
        let mut gif = Vec::new();
        {
            let mut enc = image::codecs::gif::GifEncoder::new(&mut gif);
            let px = image::RgbaImage::from_pixel(5000, 4000, image::Rgba([9, 9, 9, 255]));
            enc.encode_frame(image::Frame::new(px)).unwrap();
        }
        let path = write(dir.path(), "big.gif", &gif);
        let src = ThumbSource {
            kind: FileType::Gif,
            ..source(&path)
        };
        let err = cache.get(1, ThumbLevel::Small, src).await.unwrap_err();
        assert!(
            matches!(&err, ThumbError::TooLarge(m) if m.contains("more than the 16 MiB")),
            "{err}"
        );
        assert_eq!((cache.budget().used(), cache.budget().peak()), (0, 0));
    }

    #[test]
    fn fingerprint_depends_on_size_and_mtime() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        let base = fingerprint(100, t);
        assert_eq!(base, fingerprint(100, t), "stable");
        assert_ne!(base, fingerprint(101, t));
        assert_ne!(base, fingerprint(100, t + Duration::from_nanos(1)));
        assert_ne!(base, fingerprint(100, t + Duration::from_secs(1)));
    }
}
