//! Where cached thumbnails live, and how much room they take (issue 15,
//! "Where generated data lives"):
//!
//! - [`Stores`] picks one folder per library: `<library>/.isync/thumbs` on
//!   the library's own disk (`thumbnails.location = "library"`, the
//!   default), or `<data_dir>/thumbs` when configured so, or when the
//!   library's disk cannot take them (read-only, or already at its
//!   free-space reserve). The choice is made once per library and run, the
//!   first time a thumbnail of it is looked up — always with the original
//!   just opened, so its disk is there (a folder is never made on an empty
//!   mount point).
//! - Each [`Store`] is bounded: `thumbnails.cache_mb`, or a tenth of its
//!   file system, and never takes that file system below the reserve
//!   (`upload.min_free_bytes`). Past either, the least recently used
//!   thumbnails are deleted; they are rendered again when asked for.
//!
//! Recency is kept in memory only: a walk of the folder when the store
//! opens seeds it in modification-time order (write time: nothing touches
//! the files on a hit, so no atime or extra write on a USB disk per
//! request), and every hit and write moves an entry to the young end.
//! A restart forgets which old thumbnails were viewed lately, which costs
//! at most re-renders of thumbnails evicted a little early.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where thumbnails are cached (`thumbnails.location`): on each library's
/// own disk, or all in the data dir.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ThumbLocation {
    Library,
    DataDir,
}

use crate::model::HIDDEN_DIR;

/// A tenth of a file system, when no limit is configured.
const DEFAULT_SHARE_DIVISOR: u64 = 10;

/// What bounds every store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// Bytes a store may hold; 0 = a tenth of its file system.
    pub limit_bytes: u64,
    /// Free bytes a store leaves on its file system.
    pub reserve_bytes: u64,
}

/// `<library>/.isync/thumbs`.
/// Makes the folder `dir` if it is not there; its parent must be (unlike
/// `create_dir_all`, which would make again a library root that is gone).
pub(crate) fn make_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        r => r,
    }
}

pub(crate) fn library_dir(root: &Path) -> PathBuf {
    root.join(HIDDEN_DIR).join("thumbs")
}

/// Recency order of the files of one store.
#[derive(Default)]
struct Lru {
    tick: u64,
    /// Path → (tick of last use, bytes).
    entries: HashMap<PathBuf, (u64, u64)>,
    by_age: BTreeMap<u64, PathBuf>,
    total: u64,
}

impl Lru {
    fn touch(&mut self, path: &Path, size: Option<u64>) {
        self.tick += 1;
        let tick = self.tick;
        match self.entries.get_mut(path) {
            Some((old, bytes)) => {
                self.by_age.remove(old);
                *old = tick;
                if let Some(size) = size {
                    self.total = self.total - *bytes + size;
                    *bytes = size;
                }
            }
            None => {
                let Some(size) = size else { return };
                self.entries.insert(path.to_path_buf(), (tick, size));
                self.total += size;
            }
        }
        self.by_age.insert(tick, path.to_path_buf());
    }

    fn forget(&mut self, path: &Path) {
        if let Some((tick, bytes)) = self.entries.remove(path) {
            self.by_age.remove(&tick);
            self.total -= bytes;
        }
    }

    /// The least recently used path other than `keep`.
    fn oldest_but(&self, keep: &Path) -> Option<PathBuf> {
        self.by_age.values().find(|p| *p != keep).cloned()
    }
}

/// One cache folder with its size limit and recency order.
pub(crate) struct Store {
    dir: PathBuf,
    limit_bytes: u64,
    reserve_bytes: u64,
    lru: Mutex<Lru>,
    /// The data dir's store (a library's store falls back to it).
    pub is_fallback: bool,
    /// Device and inode of `dir` when opened: another disk mounted over
    /// the library later shows another folder (or none) at the same path.
    id: Option<(u64, u64)>,
}

impl Store {
    /// Opens (creating) the store at `dir`: checks it can be written and
    /// has room above the reserve, works out its limit and walks it for
    /// what is there. Blocking (a directory walk).
    pub(crate) fn open(dir: &Path, bounds: Bounds, is_fallback: bool) -> std::io::Result<Store> {
        if is_fallback {
            std::fs::create_dir_all(dir)?;
        } else {
            // `<root>/.isync/thumbs`: only the two folders below the root
            // are made. A root that is gone (deleted, or its disk unmounted
            // from under the mount point) is never made again by the cache.
            if let Some(hidden) = dir.parent() {
                make_dir(hidden)?;
            }
            make_dir(dir)?;
        }
        // A read-only file system (or folder) fails here, not at the
        // first render.
        let probe = dir.join(format!(".probe.{}", std::process::id()));
        std::fs::write(&probe, b"")?;
        let _ = std::fs::remove_file(&probe);
        let fs = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
        let free = crate::freespace::free_bytes(dir)?;
        if !is_fallback && free < bounds.reserve_bytes {
            return Err(std::io::Error::other(format!(
                "{free} bytes free, below the reserve of {}",
                bounds.reserve_bytes
            )));
        }
        let limit_bytes = match bounds.limit_bytes {
            0 => fs.f_blocks.saturating_mul(fs.f_frsize) / DEFAULT_SHARE_DIVISOR,
            n => n,
        };
        let store = Store {
            dir: dir.to_path_buf(),
            limit_bytes,
            reserve_bytes: bounds.reserve_bytes,
            lru: Mutex::new(Lru::default()),
            is_fallback,
            id: dir_id(dir),
        };
        store.seed();
        log::info!(
            "thumbnail cache {}: {} MiB in use, limit {} MiB",
            dir.display(),
            store.used_bytes() >> 20,
            limit_bytes >> 20
        );
        Ok(store)
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether its folder is still the one opened (not another disk
    /// mounted over the library since, nor gone): checked before every
    /// write, so nothing is ever written on a disk that is not the
    /// library's. Blocking (a stat).
    pub(crate) fn still_there(&self) -> bool {
        self.id.is_none() || dir_id(&self.dir) == self.id
    }

    /// Bytes of the thumbnails it holds.
    pub(crate) fn used_bytes(&self) -> u64 {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fills the recency order from the folder, oldest written first.
    fn seed(&self) {
        let mut found: Vec<(std::time::SystemTime, PathBuf, u64)> = Vec::new();
        let Ok(shards) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for shard in shards.filter_map(Result::ok) {
            // Thumbnails live in the two-hex-digit shards only (not the
            // journal, nor the client thumbnails in `uploaded/`).
            let name = shard.file_name();
            if name.len() != 2 || !shard.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(files) = std::fs::read_dir(shard.path()) else {
                continue;
            };
            for f in files.filter_map(Result::ok) {
                if f.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                if let Ok(meta) = f.metadata() {
                    let when = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                    found.push((when, f.path(), meta.len()));
                }
            }
        }
        found.sort();
        let mut lru = self.lock();
        for (_, path, size) in found {
            lru.touch(&path, Some(size));
        }
    }

    /// A hit on `path`: it becomes the most recently used.
    pub(crate) fn used(&self, path: &Path) {
        self.lock().touch(path, None);
    }

    /// `path` was written with `size` bytes: it is the most recently used,
    /// and the least recently used others go while the store is past its
    /// limit or its file system below the reserve. Blocking.
    pub(crate) fn added(&self, path: &Path, size: u64) {
        self.lock().touch(path, Some(size));
        loop {
            let victim = {
                let lru = self.lock();
                let over = lru.total > self.limit_bytes;
                let short = !over
                    && crate::freespace::free_bytes(&self.dir)
                        .is_ok_and(|free| free < self.reserve_bytes);
                if !over && !short {
                    return;
                }
                match lru.oldest_but(path) {
                    Some(v) => v,
                    None => return,
                }
            };
            match std::fs::remove_file(&victim) {
                Ok(()) => log::debug!("thumbnail cache: evicted {}", victim.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    log::warn!("thumbnail cache: cannot evict {}: {e}", victim.display());
                }
            }
            self.lock().forget(&victim);
        }
    }

    /// `path` was deleted by someone else (a newer version, a deleted file).
    pub(crate) fn removed(&self, path: &Path) {
        self.lock().forget(path);
    }
}

fn dir_id(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

/// The store of every library, chosen on first use.
pub(crate) struct Stores {
    location: ThumbLocation,
    bounds: Bounds,
    fallback_dir: PathBuf,
    fallback: Mutex<Option<Arc<Store>>>,
    /// Library root → its store (possibly the fallback).
    by_root: Mutex<HashMap<PathBuf, Arc<Store>>>,
    /// Library root → when its disk last refused a cache (see
    /// [`FALLBACK_RETRY`]).
    refused: Mutex<HashMap<PathBuf, std::time::Instant>>,
}

/// How long a library whose disk refused its cache folder (not writable
/// yet, at its reserve) uses the data dir's before its disk is tried
/// again: on the appliance `isync-disk.service` makes `.isync` writable
/// just after the disk is mounted, which can be after isync's first look.
pub(crate) const FALLBACK_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

impl Stores {
    pub(crate) fn new(location: ThumbLocation, fallback_dir: PathBuf, bounds: Bounds) -> Stores {
        Stores {
            location,
            bounds,
            fallback_dir,
            fallback: Mutex::new(None),
            by_root: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
        }
    }

    /// `<data_dir>/thumbs`.
    pub(crate) fn fallback_dir(&self) -> &Path {
        &self.fallback_dir
    }

    /// The data dir's store. Blocking (the first call walks it).
    pub(crate) fn fallback(&self) -> Arc<Store> {
        let mut slot = self.fallback.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = &*slot {
            return Arc::clone(s);
        }
        let store = match Store::open(&self.fallback_dir, self.bounds, true) {
            Ok(s) => s,
            Err(e) => {
                // Unwritable data dir: renders fail at the write and say so.
                log::error!(
                    "thumbnail cache {}: {e}; thumbnails cannot be cached",
                    self.fallback_dir.display()
                );
                Store {
                    dir: self.fallback_dir.clone(),
                    limit_bytes: 0,
                    reserve_bytes: self.bounds.reserve_bytes,
                    lru: Mutex::new(Lru::default()),
                    is_fallback: true,
                    id: None,
                }
            }
        };
        let store = Arc::new(store);
        *slot = Some(Arc::clone(&store));
        store
    }

    /// The store of the library at `root`. Call with its disk there (an
    /// original of it just opened from device `dev`; `None`: nothing
    /// opened). Blocking (the first call per library checks the disk and
    /// walks the folder).
    ///
    /// A store whose folder is gone or another since it was opened (the
    /// disk was unplugged and came back, its cache folder was deleted) is
    /// opened again, creating the folder — but only when the root is on
    /// the device the original was just read from: another disk mounted
    /// over the library after that read never gets a cache folder.
    pub(crate) fn for_root(&self, root: &Path, dev: Option<u64>) -> Arc<Store> {
        if self.location == ThumbLocation::DataDir {
            return self.fallback();
        }
        let lock = || self.by_root.lock().unwrap_or_else(|p| p.into_inner());
        let known = lock().get(root).cloned();
        if let Some(s) = known {
            let root_dev = || {
                std::fs::metadata(root)
                    .ok()
                    .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
            };
            let refused = || self.refused.lock().unwrap_or_else(|p| p.into_inner());
            let retry = s.is_fallback
                && dev.is_some()
                && refused()
                    .get(root)
                    .is_some_and(|t| t.elapsed() >= FALLBACK_RETRY);
            let stale = !s.is_fallback && !s.still_there() && dev.is_some() && root_dev() == dev;
            if !retry && !stale {
                return s;
            }
            lock().remove(root);
        }
        // Opened without the lock: the walk of one library's folder does
        // not hold up the lookups of the others. Two first lookups of one
        // library may both walk it; the first to finish is kept.
        let dir = library_dir(root);
        let refused = |now: Option<std::time::Instant>| {
            let mut r = self.refused.lock().unwrap_or_else(|p| p.into_inner());
            match now {
                Some(t) => r.insert(root.to_path_buf(), t).is_none(),
                None => r.remove(root).is_some(),
            }
        };
        let store = match Store::open(&dir, self.bounds, false) {
            Ok(s) => {
                if refused(None) {
                    log::info!(
                        "library {}: thumbnails now cached on its disk",
                        root.display()
                    );
                }
                Arc::new(s)
            }
            Err(e) => {
                let first = refused(Some(std::time::Instant::now()));
                let level = if first {
                    log::Level::Warn
                } else {
                    log::Level::Debug
                };
                log::log!(
                    level,
                    "library {}: thumbnails cannot be cached on its disk ({}: {e}); they are \
                     cached in the data dir instead, within its limit (tried again every {} s)",
                    root.display(),
                    dir.display(),
                    FALLBACK_RETRY.as_secs()
                );
                self.fallback()
            }
        };
        Arc::clone(lock().entry(root.to_path_buf()).or_insert(store))
    }

    /// The folders of the stores opened so far, the data dir's first (for
    /// lookups that do not know the library).
    pub(crate) fn opened_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.fallback_dir.clone()];
        let by_root = self.by_root.lock().unwrap_or_else(|p| p.into_inner());
        dirs.extend(
            by_root
                .values()
                .map(|s| s.dir.clone())
                .filter(|d| *d != self.fallback_dir),
        );
        dirs
    }

    /// The opened store whose folder holds `path`, if any.
    pub(crate) fn holding(&self, path: &Path) -> Option<Arc<Store>> {
        let by_root = self.by_root.lock().unwrap_or_else(|p| p.into_inner());
        let fallback = self.fallback.lock().unwrap_or_else(|p| p.into_inner());
        by_root
            .values()
            .chain(fallback.iter())
            .find(|s| path.starts_with(&s.dir))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_library_store_never_makes_its_root_again() {
        let media = tempfile::tempdir().unwrap();
        let root = media.path().join("photos");
        let bounds = Bounds {
            limit_bytes: 1 << 20,
            reserve_bytes: 0,
        };
        // The root deleted (or its disk unmounted): refused, nothing made.
        let e = Store::open(&library_dir(&root), bounds, false)
            .err()
            .unwrap();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
        assert!(!root.exists(), "the cache made the library root again");
        // A root that is there gets its `.isync/thumbs`.
        std::fs::create_dir(&root).unwrap();
        let store = Store::open(&library_dir(&root), bounds, false).unwrap();
        assert!(store.dir().is_dir());
        // The data dir's store is made whole, as before.
        let fallback = media.path().join("data/thumbs");
        Store::open(&fallback, bounds, true).unwrap();
        assert!(fallback.is_dir());
    }

    #[test]
    fn lru_evicts_the_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let bounds = Bounds {
            limit_bytes: 300,
            reserve_bytes: 0,
        };
        let store = Store::open(dir.path(), bounds, false).unwrap();
        let shard = dir.path().join("01");
        std::fs::create_dir_all(&shard).unwrap();
        let put = |name: &str| {
            let p = shard.join(name);
            std::fs::write(&p, [0u8; 100]).unwrap();
            store.added(&p, 100);
            p
        };
        let (a, b, c) = (put("a"), put("b"), put("c"));
        store.used(&a);
        let d = put("d");
        assert!(!b.exists(), "least recently used goes");
        assert!(a.exists() && c.exists() && d.exists());
        assert_eq!(store.used_bytes(), 300);
        // A store opened again finds what is there.
        let again = Store::open(dir.path(), bounds, false).unwrap();
        assert_eq!(again.used_bytes(), 300);
    }
}
