//! Configured libraries → `libraries` rows, root catalogs and user grants
//! (spec §12.1), plus online/offline checks of a library root.

use crate::config::{normalize, Config};
use crate::db::{self, catalogs, libraries, users, Db, DbError};
use crate::model::{CatalogId, Library, LibraryId, UserId};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What startup decided for each configured library.
#[derive(Debug, Clone)]
pub struct LibraryPlan {
    /// Libraries to scan, with sub-trees to leave to other (nested,
    /// `merge = false`) libraries.
    pub scan: Vec<(Library, Vec<PathBuf>)>,
}

/// Path as stored: absolute, normalised, as text.
pub(crate) fn path_key(p: &Path) -> String {
    normalize(p).to_string_lossy().into_owned()
}

/// Folder name shown for a root catalog.
pub(crate) fn display_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into())
}

fn is_inside(inner: &Path, outer: &Path) -> bool {
    inner != outer && inner.starts_with(outer)
}

/// Creates missing library rows and root catalogs, applies `merge`, and sets
/// who may see each configured library to exactly the config's `users`.
/// Blocking.
pub fn sync_libraries(db: &Db, cfg: &Config) -> Result<LibraryPlan, DbError> {
    let now = db::now();
    let paths: Vec<PathBuf> = cfg.libraries.iter().map(|l| normalize(&l.path)).collect();
    db.write(|tx| {
        let mut plan = LibraryPlan { scan: Vec::new() };
        for (i, lc) in cfg.libraries.iter().enumerate() {
            let path = &paths[i];
            let key = path_key(path);
            let outer = paths
                .iter()
                .enumerate()
                .filter(|(j, o)| *j != i && is_inside(path, o))
                .map(|(j, _)| j)
                .next();
            if let (Some(j), true) = (outer, lc.merge) {
                // Folded into the enclosing tree (spec §12.1): access comes
                // only from the enclosing library.
                let outer_users = &cfg.libraries[j].users;
                let losing: Vec<&String> = lc
                    .users
                    .iter()
                    .filter(|u| !outer_users.iter().any(|o| o.eq_ignore_ascii_case(u)))
                    .collect();
                if !losing.is_empty() {
                    log::warn!(
                        "library {key} is folded into {} (merge = true); users {losing:?} do not \
                         see it unless added to the enclosing library or merge = false is set",
                        paths[j].display()
                    );
                }
                continue;
            }
            let lib = match libraries::by_path(tx, &key)? {
                Some(l) => l,
                None => {
                    let id = libraries::insert(tx, &key, "config")?;
                    libraries::by_id(tx, id)?.expect("just inserted")
                }
            };
            let root = ensure_root(tx, &lib, path, now)?;
            let mut ids: Vec<UserId> = Vec::new();
            for name in &lc.users {
                match users::by_name(tx, name)? {
                    Some(u) => ids.push(u.id),
                    None => log::warn!(
                        "library {key}: user {name:?} does not exist yet; create it with \
                         `isync user add {name} --password-stdin`"
                    ),
                }
            }
            users::set_root_users(tx, root, &ids)?;
            let lib = libraries::by_id(tx, lib.id)?.expect("exists");
            // Nested libraries with merge = false are roots of their own; the
            // enclosing walk leaves them alone.
            let excluded: Vec<PathBuf> = cfg
                .libraries
                .iter()
                .enumerate()
                .filter(|(j, l)| *j != i && !l.merge && is_inside(&paths[*j], path))
                .map(|(j, _)| paths[j].clone())
                .collect();
            plan.scan.push((lib, excluded));
        }
        // Configured libraries that left the config: keep their records (the
        // files are untouched), but nobody sees or scans them any more.
        for lib in libraries::list(tx)? {
            if lib.kind == "config" && !plan.scan.iter().any(|(l, _)| l.id == lib.id) {
                if let Some(root) = lib.root_id {
                    users::clear_root(tx, root)?;
                }
            }
        }
        // User roots (spec §5) are scanned too.
        for lib in libraries::list(tx)? {
            if lib.kind == "user" {
                plan.scan.push((lib, Vec::new()));
            }
        }
        Ok(plan)
    })
}

/// The root catalog of `lib`, created (or re-rooted out of an enclosing tree)
/// when missing.
fn ensure_root(
    tx: &rusqlite::Connection,
    lib: &Library,
    path: &Path,
    now: i64,
) -> Result<CatalogId, DbError> {
    if let Some(root) = lib.root_id {
        return Ok(root);
    }
    let key = path_key(path);
    let root = if let Some(existing) = catalogs::by_path(tx, &key)? {
        // The folder was a sub-catalog of an enclosing library: make it the
        // root of its own tree, taking its descendants and files along.
        catalogs::make_root(tx, existing.id, lib.id, &key)?;
        existing.id
    } else {
        let create_time = std::fs::metadata(path)
            .map(|m| earliest_time(&m))
            .unwrap_or(now);
        catalogs::insert(
            tx,
            &catalogs::NewCatalog {
                root_id: None,
                parent_id: None,
                library_id: lib.id,
                path: &key,
                name: &display_name(path),
                create_time,
                now,
            },
        )?
    };
    libraries::set_root(tx, lib.id, root)?;
    Ok(root)
}

/// Earliest of ctime/mtime/atime in seconds (spec §12.1 createTime).
pub(crate) fn earliest_time(m: &std::fs::Metadata) -> i64 {
    m.ctime().min(m.mtime()).min(m.atime())
}

/// Where isync writes a library's identity, relative to its root: inside the
/// hidden `.isync` folder that uploads and the trash already use (and that a
/// "delete everything" moves leave in place).
pub(crate) const MARKER_FILE: &str = ".isync/library-id";

/// Why a library root is not usable right now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Offline {
    Missing(String),
    NotADirectory,
    OtherDevice {
        recorded: i64,
        found: i64,
    },
    EmptyWhereItWasNot,
    /// The root has no identity marker although one was written: an empty
    /// mount point, or another disk mounted at the same path.
    MarkerMissing,
    /// The root carries another library's marker: a different disk.
    OtherLibrary {
        found: String,
    },
}

impl std::fmt::Display for Offline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const ADOPT: &str = "if this really is the library's disk, run \
                             `isync scan --confirm-deletions` once to adopt it";
        match self {
            Offline::Missing(e) => write!(f, "root folder is missing ({e})"),
            Offline::NotADirectory => write!(f, "root is not a folder"),
            Offline::OtherDevice { recorded, found } => write!(
                f,
                "root is on another device than recorded ({found:#x} instead of {recorded:#x}); \
                 is the disk mounted? ({ADOPT})"
            ),
            Offline::EmptyWhereItWasNot => {
                write!(
                    f,
                    "root folder is empty but the library had files; is the disk mounted?"
                )
            }
            Offline::MarkerMissing => write!(
                f,
                "root has no {MARKER_FILE}: the disk is not mounted, or a different disk is \
                 mounted there ({ADOPT})"
            ),
            Offline::OtherLibrary { found } => write!(
                f,
                "root belongs to another library (its {MARKER_FILE} says {found:?}): a different \
                 disk is mounted there ({ADOPT})"
            ),
        }
    }
}

/// Reads the identity marker at `root` (`None` when absent).
pub(crate) fn read_marker(root: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(root.join(MARKER_FILE)) {
        Ok(s) => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Makes sure `root` carries a marker and returns it: an existing one is
/// kept (the database may have been rebuilt), otherwise a random id is
/// written atomically. Fails on a read-only root.
pub(crate) fn ensure_marker(root: &Path) -> std::io::Result<String> {
    if let Some(m) = read_marker(root)? {
        return Ok(m);
    }
    write_marker(root, &new_marker())
}

fn new_marker() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Writes `id` as the marker of `root` (temp file + rename + fsync).
pub(crate) fn write_marker(root: &Path, id: &str) -> std::io::Result<String> {
    let file = root.join(MARKER_FILE);
    let dir = file.parent().unwrap_or(root);
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".library-id.{}", std::process::id()));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{id}")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &file)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(id.to_string())
}

/// Checks a library root before a scan may remove anything under it.
/// `marker` is the identity recorded for the library (when one could be
/// written): a root without it, or with another, is not this library.
/// Without a marker (read-only roots, or before the first scan wrote one)
/// the recorded device and "empty where it had files" decide.
/// Returns the root's device id when it is online.
pub(crate) fn check_root(
    lib: &Library,
    marker: Option<&str>,
    known_files: usize,
) -> Result<i64, Offline> {
    let path = Path::new(&lib.path);
    let meta = std::fs::metadata(path).map_err(|e| Offline::Missing(e.to_string()))?;
    if !meta.is_dir() {
        return Err(Offline::NotADirectory);
    }
    let dev = meta.dev() as i64;
    if let Some(want) = marker {
        return match read_marker(path) {
            Ok(Some(found)) if found == want => Ok(dev),
            Ok(Some(found)) => Err(Offline::OtherLibrary { found }),
            Ok(None) => Err(Offline::MarkerMissing),
            Err(e) => Err(Offline::Missing(format!("cannot read {MARKER_FILE}: {e}"))),
        };
    }
    if let Some(recorded) = lib.device {
        // With no records there is nothing a wrong disk could cost us.
        if recorded != dev && known_files > 0 {
            return Err(Offline::OtherDevice {
                recorded,
                found: dev,
            });
        }
    }
    if known_files > 0 {
        let empty = std::fs::read_dir(path)
            .map(|mut d| d.next().is_none())
            .unwrap_or(true);
        if empty {
            return Err(Offline::EmptyWhereItWasNot);
        }
    }
    Ok(dev)
}

/// The first library holding `path` (the deepest one, then each library
/// enclosing it) whose root is not usable right now, and why: a missing
/// root, or one that is not the recorded disk (an empty mount point on the
/// SD card). It is marked offline at once (logged once); one found usable
/// again is marked online (what a writer saw on the disk is the truth, not
/// a flag nobody may have cleared yet). A folder kept on a library's disk
/// (the users folder of the appliance) is thereby never written while that
/// disk is away. Blocking: a stat and a small read per library (on an
/// automounted disk that is absent, the read waits for the mount to give
/// up).
pub(crate) fn offline_holder(db: &Db, path: &Path) -> Result<Option<(Library, Offline)>, DbError> {
    let mut holders: Vec<Library> = db
        .read(libraries::list)?
        .into_iter()
        .filter(|l| path.starts_with(&l.path))
        .collect();
    holders.sort_by_key(|l| std::cmp::Reverse(l.path.len()));
    for lib in holders {
        let (marker, has_files) = db.read(|c| {
            Ok((
                libraries::marker(c, lib.id)?,
                crate::db::uploads::any_stored_in_library(c, lib.id)?,
            ))
        })?;
        match check_root(&lib, marker.as_deref(), has_files as usize) {
            Err(why) => {
                if lib.online {
                    set_online(db, &lib, &Err(why.clone()))?;
                }
                return Ok(Some((lib, why)));
            }
            Ok(dev) if !lib.online => set_online(db, &lib, &Ok(dev))?,
            Ok(_) => {}
        }
    }
    Ok(None)
}

/// Marks a library online/offline in the database, logging transitions once
/// (whoever notices first: the watcher, a scan or an upload; the database
/// says which). Offline is a warning: listings go on, nothing is removed,
/// and the library comes back by itself with its disk.
pub(crate) fn set_online(
    db: &Db,
    lib: &Library,
    state: &Result<i64, Offline>,
) -> Result<(), DbError> {
    let id: LibraryId = lib.id;
    match state {
        Ok(_) => {
            // The device is recorded after a scan that found files, so an
            // empty mount point seen first is never taken as "the" device.
            if db.write(|tx| libraries::set_online(tx, id, true, None))? {
                log::info!("library {} is back online", lib.path);
            }
        }
        Err(why) => {
            if db.write(|tx| libraries::set_online(tx, id, false, None))? {
                log::warn!(
                    "library {} is offline: {why}; its records are kept and nothing under it \
                     is removed until it is back",
                    lib.path
                );
            }
        }
    }
    Ok(())
}
