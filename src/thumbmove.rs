//! The one-time move of an older installation's thumbnail cache
//! (`<data_dir>/thumbs/<xx>/…`, every library's) to each library's own
//! disk (`thumbstore`). It runs at start on a blocking thread beside the
//! requests: a request for a thumbnail not moved yet moves that one itself
//! (`ThumbCache`'s lookup), so it is served, never rendered again. A
//! thumbnail of a file no longer known goes; one of a library that is
//! offline, or whose disk cannot take it, stays where it is (and is moved
//! at a later start, or when asked for). Later starts find the folder
//! empty: a read of its shards.
//!
//! Reads the database (which library a file is in), like `prerender`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use crate::db::{files, libraries, Db};
use crate::media::thumbcache::{move_thumb, ThumbCache};
use crate::model::{FileId, LibraryId};

/// What the move did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Moved {
    /// Thumbnails now on their library's disk.
    pub moved: u64,
    /// Thumbnails of files the database no longer has, deleted.
    pub dropped: u64,
    /// Thumbnails left in the data dir (library offline or not writable).
    pub left: u64,
}

/// The file id a cached thumbnail's name starts with (`<id>_<level>_…`).
fn file_id_of(name: &str) -> Option<i64> {
    if name.starts_with('.') {
        return None;
    }
    name.split_once('_')?.0.parse().ok()
}

/// Moves what is in the data dir's cache folder to the libraries' disks,
/// stopping early at `stop`. Blocking.
pub(crate) fn move_old_cache(db: &Db, cache: &ThumbCache, stop: &CancellationToken) -> Moved {
    let base = cache.stores().fallback_dir().to_path_buf();
    let mut done = Moved::default();
    let Ok(shards) = std::fs::read_dir(&base) else {
        return done;
    };
    // Library → its store's folder (None: leave its thumbnails here).
    let mut targets: HashMap<LibraryId, Option<PathBuf>> = HashMap::new();
    for shard in shards.filter_map(Result::ok) {
        let shard_name = shard.file_name();
        if shard_name.len() != 2 || !shard.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(shard.path()) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            if stop.is_cancelled() {
                return done;
            }
            let name = entry.file_name();
            let Some(id) = file_id_of(&name.to_string_lossy()) else {
                continue;
            };
            let from = entry.path();
            let lib = match db.read(|c| files::by_id(c, FileId(id))) {
                Ok(Some(rec)) => rec.library_id,
                Ok(None) => {
                    if std::fs::remove_file(&from).is_ok() {
                        done.dropped += 1;
                    }
                    continue;
                }
                Err(e) => {
                    log::warn!("thumbnail move: file {id}: {e}");
                    done.left += 1;
                    continue;
                }
            };
            let target = targets
                .entry(lib)
                .or_insert_with(|| target_of(db, cache, lib));
            let Some(target) = target else {
                done.left += 1;
                continue;
            };
            let to = target.join(&shard_name).join(&name);
            // The library's disk swapped for another since: leave it.
            if !cache.stores().holding(&to).is_some_and(|s| s.still_there()) {
                done.left += 1;
                continue;
            }
            match move_thumb(&from, &to) {
                Ok(size) => {
                    if let Some(store) = cache.stores().holding(&to) {
                        store.added(&to, size);
                    }
                    if let Some(store) = cache.stores().holding(&from) {
                        store.removed(&from);
                    }
                    done.moved += 1;
                }
                Err(e) => {
                    log::warn!("thumbnail move: {}: {e}", from.display());
                    done.left += 1;
                }
            }
        }
    }
    done
}

/// The folder library `lib`'s thumbnails go to, when it is online and its
/// disk takes them.
fn target_of(db: &Db, cache: &ThumbCache, lib: LibraryId) -> Option<PathBuf> {
    if !crate::library::watcher::root_online(db, lib).unwrap_or(false) {
        return None;
    }
    let root = db.read(|c| libraries::by_id(c, lib)).ok()??.path;
    let store = cache.stores().for_root(Path::new(&root), None);
    (!store.is_fallback && store.still_there()).then(|| store.dir().to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_their_file_id() {
        assert_eq!(file_id_of("42_1_00000000deadbeef.jpg"), Some(42));
        assert_eq!(file_id_of(".42.7.3.tmp"), None);
        assert_eq!(file_id_of(".journal"), None);
        assert_eq!(file_id_of("uploaded"), None);
    }
}
