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
//! The client thumbnails older uploads left in the data dir
//! (`<data_dir>/thumbs/uploaded/<id>_<level>.jpg`) move the same way, once,
//! to `<library>/.isync/thumbs/uploaded` ([`move_client_thumbs`]): each is
//! copied under a temporary name, synced, linked to its own name (never
//! over one already there), and only then removed from the data dir. A
//! request meanwhile finds one copy or the other
//! (`layout::find_uploaded_thumb`); a crash leaves at most both copies (the
//! next start removes the old one) or a temporary one (the next start
//! removes it).
//!
//! Reads the database (which library a file is in), like `prerender`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::db::{files, libraries, uploads, Db};
use crate::error::{Error, Result};
use crate::failpoint::failpoint;
use crate::library::layout::{exists, remove_if_exists, sync_parent, uploaded_thumb_path};
use crate::media::thumbcache::{move_thumb, ThumbCache};
use crate::media::thumbstore::ThumbLocation;
use crate::model::{FileId, LibraryId, ThumbLevel};
use crate::upload::space::{check_free, library_takes_client_thumbs, Reserve};

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

/// The name a client thumbnail is copied under before it gets its own:
/// `.<id>_<level>.moving`, beside it.
fn moving_name(to: &Path) -> PathBuf {
    let stem = to.file_stem().unwrap_or_default().to_string_lossy();
    to.with_file_name(format!(".{stem}.moving"))
}

/// `(file id, level, complete)` of a client thumbnail's name
/// (`<id>_<level>.jpg`, or `.part` while pending).
fn client_thumb_of(name: &str) -> Option<(i64, ThumbLevel, bool)> {
    let (stem, ext) = name.rsplit_once('.')?;
    let (id, level) = stem.split_once('_')?;
    let level = match level {
        "0" => ThumbLevel::Small,
        "1" => ThumbLevel::Screen,
        _ => return None,
    };
    let complete = match ext {
        "jpg" => true,
        "part" => false,
        _ => return None,
    };
    Some((id.parse().ok()?, level, complete))
}

/// Where one library's client thumbnails go, and the reserve its disk keeps.
struct Target {
    /// `<library>/.isync/thumbs`.
    own: PathBuf,
    reserve: Reserve,
}

/// Moves the client thumbnails older uploads left in the data dir to their
/// libraries' disks (see the module header), stopping early at `stop`.
/// Left where they are: those of a library offline, read-only or at its
/// reserve, of a file an upload is writing (a pending part, a completion a
/// crash interrupted, a request holding the file), and any whose copy
/// failed; all are tried again at the next start. Those of files the
/// database no longer has go. Blocking.
pub(crate) fn move_client_thumbs(db: &Db, cfg: &Config, stop: &CancellationToken) -> Moved {
    let mut done = Moved::default();
    // Kept in the data dir by configuration: nothing moves.
    if cfg.thumbnails.location != ThumbLocation::Library {
        return done;
    }
    let data = cfg.thumb_dir();
    let Ok(entries) = std::fs::read_dir(data.join("uploaded")) else {
        return done;
    };
    // File id → its complete levels here, and whether a part is pending.
    let mut found: BTreeMap<i64, (Vec<ThumbLevel>, bool)> = BTreeMap::new();
    for entry in entries.filter_map(Result::ok) {
        if let Some((id, level, complete)) = client_thumb_of(&entry.file_name().to_string_lossy()) {
            let f = found.entry(id).or_default();
            match complete {
                true => f.0.push(level),
                false => f.1 = true,
            }
        }
    }
    let mut targets: HashMap<LibraryId, Option<Target>> = HashMap::new();
    for (id, (levels, pending)) in found {
        if stop.is_cancelled() {
            break;
        }
        let (id, n) = (FileId(id), levels.len() as u64);
        let known = db.read(|c| Ok((files::by_id(c, id)?, uploads::move_of(c, id)?)));
        let rec = match known {
            Ok((Some(rec), None)) if !pending => rec,
            Ok((None, None)) if !pending => {
                for level in levels {
                    let from = uploaded_thumb_path(&data, id, level);
                    if remove_if_exists(&from).is_ok() {
                        done.dropped += 1;
                    }
                }
                continue;
            }
            // Being uploaded, or its completion unfinished: its parts
            // stay together where the upload writes them.
            Ok(_) => {
                done.left += n;
                continue;
            }
            Err(e) => {
                log::warn!("client thumbnail move: file {}: {e}", id.0);
                done.left += n;
                continue;
            }
        };
        let lib = rec.library_id;
        let target = targets
            .entry(lib)
            .or_insert_with(|| client_target(db, cfg, lib));
        let Some(t) = target else {
            done.left += n;
            continue;
        };
        // No upload request writes the file's thumbnails meanwhile (one
        // that holds it now: moved at the next start).
        let lock = db.locks().upload_file(id.0);
        let Ok(_held) = lock.try_lock() else {
            done.left += n;
            continue;
        };
        for (i, &level) in levels.iter().enumerate() {
            match move_one(db, &data, t, id, level) {
                Ok(true) => done.moved += 1,
                Ok(false) => done.dropped += 1,
                Err(e) => {
                    // The disk went, filled up or refused: the rest of its
                    // library waits for the next start.
                    log::warn!("client thumbnail move: file {}: {e}", id.0);
                    done.left += n - i as u64;
                    *target = None;
                    break;
                }
            }
        }
    }
    done
}

/// Where library `lib`'s client thumbnails go, when it is online and its
/// disk takes them; stray temporary copies a crash left there are
/// removed.
fn client_target(db: &Db, cfg: &Config, lib: LibraryId) -> Option<Target> {
    if !crate::library::watcher::root_online(db, lib).unwrap_or(false) {
        return None;
    }
    let root = db.read(|c| libraries::by_id(c, lib)).ok()??.path;
    let own = library_takes_client_thumbs(cfg, Path::new(&root))?;
    if let Ok(entries) = std::fs::read_dir(own.join("uploaded")) {
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".moving") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let reserve = Reserve::for_dir(cfg, &own);
    Some(Target { own, reserve })
}

/// Moves file `id`'s client thumbnail at `level` from the data dir's
/// `data` folder to `t`: copied, synced, linked to its name (one already
/// there, from an earlier start a crash cut short or a newer upload, is
/// kept), then the old one removed. `false`: the file was deleted
/// meanwhile, and its copy went too. Blocking.
fn move_one(db: &Db, data: &Path, t: &Target, id: FileId, level: ThumbLevel) -> Result<bool> {
    let io = |what: &str, p: &Path| {
        let what = format!("{what} {}", p.display());
        move |e: std::io::Error| Error::Internal(format!("{what}: {e}"))
    };
    let from = uploaded_thumb_path(data, id, level);
    let to = uploaded_thumb_path(&t.own, id, level);
    if !exists(&to).map_err(io("cannot stat", &to))? {
        let size = std::fs::metadata(&from)
            .map_err(io("cannot stat", &from))?
            .len();
        check_free(&t.own, size, t.reserve)?;
        let temp = moving_name(&to);
        copy_synced(&from, &temp).map_err(io("cannot copy to", &temp))?;
        failpoint("thumbmove-copied");
        let linked = match std::fs::hard_link(&temp, &to) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        };
        let _ = std::fs::remove_file(&temp);
        linked
            .and_then(|()| sync_parent(&to))
            .map_err(io("cannot link", &to))?;
        failpoint("thumbmove-linked");
        // Deleted meanwhile: deletion removes the record, then the
        // thumbnails; the copy made after that goes here.
        if db.read(|c| files::by_id(c, id))?.is_none() {
            let _ = remove_if_exists(&to);
            let _ = remove_if_exists(&from);
            return Ok(false);
        }
    }
    remove_if_exists(&from)
        .and_then(|()| sync_parent(&from))
        .map_err(io("cannot remove", &from))?;
    Ok(true)
}

/// Copies `from` into a new file `to` (one left by a crash is replaced)
/// and syncs it.
fn copy_synced(from: &Path, to: &Path) -> std::io::Result<()> {
    remove_if_exists(to)?;
    let mut src = std::fs::File::open(from)?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)?;
    std::io::copy(&mut src, &mut dst)?;
    dst.sync_all()
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

    #[test]
    fn client_thumbnail_names_give_id_level_and_state() {
        assert_eq!(
            client_thumb_of("42_0.jpg"),
            Some((42, ThumbLevel::Small, true))
        );
        assert_eq!(
            client_thumb_of("7_1.part"),
            Some((7, ThumbLevel::Screen, false))
        );
        assert_eq!(client_thumb_of(".42_0.moving"), None);
        assert_eq!(client_thumb_of("42_2.jpg"), None);
        assert_eq!(client_thumb_of("x_0.jpg"), None);
        assert_eq!(
            moving_name(Path::new("/l/uploaded/42_1.jpg")),
            Path::new("/l/uploaded/.42_1.moving")
        );
    }
}
