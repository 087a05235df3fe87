//! The cache's files: where a key's thumbnail lies (`<xx>/<id>_<level>_
//! <fingerprint>.<ext>`), finding it, writing it atomically, moving it
//! from the data dir's folder, and removing a file's thumbnails.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::{CachedThumb, Inner, ThumbKey};
use crate::media::thumbs::{Thumb, ThumbError, CONTENT_TYPE_JPEG, CONTENT_TYPE_PNG};
use crate::media::thumbstore::Store;

impl Inner {
    /// The cached thumbnail of `key` in `store`. One left in the data
    /// dir's folder (from before the library's disk kept them) is moved
    /// over first: a request during the move at start still gets it.
    pub(super) fn lookup(&self, store: &Store, key: ThumbKey) -> Option<CachedThumb> {
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

    /// Writes `thumb` as the cached file of `key` (temp name, then rename)
    /// and removes the thumbnails of older versions of the original.
    pub(super) fn store(
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
            super::super::thumbstore::make_dir(&dir)
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
    pub(super) fn remove_matching(
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

pub(super) fn shard_dir(base: &Path, file_id: i64) -> PathBuf {
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
pub(super) fn find_in(base: &Path, key: ThumbKey) -> Option<CachedThumb> {
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
        super::super::thumbstore::make_dir(dir)?;
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
