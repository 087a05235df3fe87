//! Deleting files and catalogs (spec §6.8, §6.17, §11) without losing
//! anything by mistake: originals and folders are moved (renamed, same disk)
//! to `<library>/.isync/trash/` and kept `trash.retention_days`; `isync
//! trash list|restore` brings them back. Also the housekeeping that purges
//! expired trash and stale partial uploads.

use crate::config::Config;
use crate::db::{self, catalogs, files, trash, uploads, Db, DbError};
use crate::error::{Error, Result};
use crate::library::layout::{
    move_no_clobber, move_no_clobber_where, numbered, safe_ext, safe_folder_name, split_name,
    staging_origin_path, stamp_name, sync_dir, trash_dir, upload_stem, uploaded_thumb_path,
    HIDDEN_DIR,
};
use crate::media::thumbcache::ThumbCache;
use crate::model::{CatalogId, FileId, FileRecord, PartStatus, ThumbLevel, UserId};
use crate::perms::Session;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub(crate) use crate::db::trash::TrashEntry;

/// How often housekeeping runs at most when triggered by uploads and
/// deletions; the server's timer runs it that often too.
const HOUSEKEEP_EVERY: Duration = Duration::from_secs(3600);

/// The library folder holding a catalog's folder. Blocking.
fn library_of_catalog(db: &Db, cat: CatalogId) -> Result<PathBuf> {
    db.read(|c| catalogs::library_path(c, cat))
        .map(PathBuf::from)
        .map_err(Error::from)
}

/// Runs `f` holding the scanner's lock of every library in `paths` (see
/// [`crate::library::scan::library_lock`]), so a scan never sees one half
/// of a move to or from the trash (a record gone but its file still there,
/// which it would list again; a folder gone under records it still has).
/// Sorted: a holder of several never deadlocks with another; scans and
/// uploads hold one at a time.
fn with_libraries_locked<T>(db: &Db, mut paths: Vec<String>, f: impl FnOnce() -> T) -> T {
    paths.sort();
    paths.dedup();
    let locks: Vec<_> = paths
        .iter()
        .map(|p| crate::library::scan::library_lock(db, p))
        .collect();
    let _held: Vec<_> = locks
        .iter()
        .map(|l| crate::library::scan::hold(l))
        .collect();
    f()
}

/// The library (its path as recorded) holding `path`, if any. Blocking.
fn library_holding(db: &Db, path: &Path) -> Result<Option<String>> {
    let libs = db.read(crate::db::libraries::list)?;
    Ok(libs
        .into_iter()
        .filter(|l| path.starts_with(&l.path))
        .max_by_key(|l| l.path.len())
        .map(|l| l.path))
}

/// Whether a record's original is still being uploaded (its bytes are in
/// the library's staging area).
fn origin_pending(rec: &FileRecord) -> bool {
    PartStatus::from_i64(rec.status_origin) == PartStatus::Uploading
}

/// Removes the client thumbnails (complete and pending) of a file, on its
/// library's disk (`library`, when known) and in the data dir's `thumb_dir`.
fn remove_uploaded_thumbs(thumb_dir: &Path, library: Option<&Path>, id: FileId) {
    let own = library.map(crate::library::layout::library_thumb_dir);
    for dir in own.iter().map(PathBuf::as_path).chain([thumb_dir]) {
        for level in [ThumbLevel::Small, ThumbLevel::Screen] {
            let fin = uploaded_thumb_path(dir, id, level);
            let _ = std::fs::remove_file(fin.with_extension("part"));
            let _ = std::fs::remove_file(fin);
        }
    }
}

/// Deletes one record; its original goes to the trash unless `keep_on_disk`
/// (it leaves with its folder). `live_photo_entry`: the trash entry of the
/// photo whose Live Photo video this is (the entries are linked, restored
/// together). Returns the trash entry made, if any. Blocking.
fn delete_one(
    db: &Db,
    cfg: &Config,
    user: Option<UserId>,
    rec: &FileRecord,
    keep_on_disk: bool,
    live_photo_entry: Option<i64>,
) -> Result<Option<i64>> {
    let mut entry = None;
    let library = library_of_catalog(db, rec.real_catalog_id)?;
    let now = db::now();
    let pending = origin_pending(rec);
    // A pending original has its bytes staged (maybe a whole earlier
    // version being re-uploaded): they go to the trash too, restorable
    // into the catalog folder under the name completion would have chosen.
    let (from, original) = if pending {
        let folder = Path::new(&rec.path).parent().unwrap_or(Path::new("/"));
        let name = numbered(&upload_stem(rec, now), &safe_ext(&rec.ext), 0);
        (
            staging_origin_path(&library, rec.id),
            folder.join(name).to_string_lossy().into_owned(),
        )
    } else {
        (PathBuf::from(&rec.path), rec.path.clone())
    };
    if keep_on_disk && !pending {
        db.write(|tx| files::delete(tx, rec.id))?;
    } else {
        let dir = trash_dir(&library);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Internal(format!("{}: {e}", dir.display())))?;
        let base = Path::new(&original)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let to = dir.join(stamp_name(now, &base));
        let moved = std::cell::Cell::new(false);
        let r = db.write(|tx| {
            files::delete(tx, rec.id)?;
            match std::fs::rename(&from, &to) {
                Ok(()) => moved.set(true),
                // Nothing on disk (gone, or no byte uploaded yet): only the
                // record remains to drop.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => {
                    return Err(DbError::Join(format!(
                        "move {} to trash: {e}",
                        from.display()
                    )))
                }
            }
            let id = trash::insert(
                tx,
                &TrashEntry {
                    id: 0,
                    kind: "file".into(),
                    trash_path: to.to_string_lossy().into_owned(),
                    original_path: original.clone(),
                    name: rec.name.clone(),
                    size: Some(rec.size),
                    deleted_by: user,
                    deleted_at: now,
                },
            )?;
            if let Some(photo) = live_photo_entry {
                trash::link_live(tx, id, photo)?;
            }
            entry = Some(id);
            Ok(())
        });
        if let Err(e) = r {
            if moved.get() {
                let _ = std::fs::rename(&to, &from);
            }
            return Err(e.into());
        }
        if moved.get() {
            let _ = sync_dir(&dir);
        }
    }
    remove_uploaded_thumbs(&cfg.thumb_dir(), Some(library.as_path()), rec.id);
    Ok(entry)
}

/// `deleteFiles.icc`: unknown or foreign ids are skipped. The two halves of
/// a Live Photo go together, whichever was named, and their trash entries
/// are linked so `isync trash restore` brings both back. The generated
/// thumbnails of the files now gone are dropped from `thumbs`.
pub(crate) async fn delete_files(
    db: &Db,
    cfg: &Arc<Config>,
    thumbs: &Arc<ThumbCache>,
    s: &Session,
    ids: Vec<i64>,
) -> Result<()> {
    s.require(crate::perms::Perm::Upload)?;
    maybe_housekeep(db, cfg);
    let (db2, cfg2, roots, uid) = (db.clone(), cfg.clone(), s.roots.clone(), s.user_id);
    let (s, thumbs) = (s.clone(), thumbs.clone());
    tokio::task::spawn_blocking(move || {
        // Every file is checked before any is deleted: a refusal changes
        // nothing.
        let mut ids: Vec<FileId> = ids.into_iter().map(FileId).collect();
        let listed = db2.read(|c| files::by_ids(c, &ids))?;
        // The other half of each Live Photo listed.
        ids.extend(
            listed
                .iter()
                .filter_map(|r| r.live_video_id.or(r.live_photo_id))
                .collect::<Vec<_>>(),
        );
        ids.sort_unstable();
        ids.dedup();
        let recs: Vec<FileRecord> = db2
            .read(|c| files::by_ids(c, &ids))?
            .into_iter()
            .filter(|rec| roots.contains(&rec.root_id))
            .collect();
        for rec in &recs {
            crate::accounts::check_change_file(&s, rec.upload_user_id, rec.id)?;
        }
        // A Live Photo's video goes with its photo, just after it (so
        // their trash entries are linked); one whose photo went without it
        // (re-paired by a scan meanwhile) goes on its own, at the end.
        let mut order: Vec<&FileRecord> = recs.iter().collect();
        order.sort_by_key(|r| {
            r.live_photo_id
                .is_some_and(|p| recs.iter().any(|o| o.id == p))
        });
        for rec in order {
            let library = library_of_catalog(&db2, rec.real_catalog_id)?;
            with_libraries_locked(&db2, vec![library.to_string_lossy().into_owned()], || {
                // Read again under the lock: an upload may have completed
                // (its original moved out of staging) or a scan renamed it
                // since the check above.
                let Some(now) = db2.read(|c| files::by_id(c, rec.id))? else {
                    return Ok(());
                };
                let video = now.live_video_id;
                let entry = delete_one(&db2, &cfg2, Some(uid), &now, false, None)?;
                let video = match video {
                    Some(v) if recs.iter().any(|r| r.id == v) => {
                        db2.read(|c| files::by_id(c, v))?
                    }
                    _ => None,
                };
                if let Some(v) = video {
                    delete_one(&db2, &cfg2, Some(uid), &v, false, entry)?;
                }
                Ok::<_, Error>(())
            })?;
        }
        // Not of ids skipped as foreign: those files are still there.
        for id in ids {
            let gone = db2
                .read(|c| files::by_id(c, id))
                .map(|r| r.is_none())
                .unwrap_or(false);
            if gone {
                let _ = thumbs.remove_file(id.0);
            }
        }
        Ok(())
    })
    .await?
}

fn is_in(path: &str, folders: &[String]) -> bool {
    folders
        .iter()
        .any(|f| path == f || path.starts_with(&format!("{f}/")))
}

/// `deleteCatalog.icc` (spec §11). Unknown or foreign ids are skipped.
/// Returns whether a root catalog went (access changed).
pub(crate) async fn delete_catalogs(
    db: &Db,
    cfg: &Arc<Config>,
    s: &Session,
    ids: Vec<i64>,
) -> Result<bool> {
    s.require(crate::perms::Perm::Upload)?;
    maybe_housekeep(db, cfg);
    let (db2, cfg2, roots, uid) = (db.clone(), cfg.clone(), s.roots.clone(), s.user_id);
    let s = s.clone();
    tokio::task::spawn_blocking(move || {
        // All of it must be theirs (or they moderate): checked first, so a
        // refusal changes nothing.
        db2.read(|c| {
            for id in &ids {
                if catalogs::accessible(c, CatalogId(*id), &roots)?.is_some() {
                    if let Err(e) =
                        crate::accounts::check_change_catalog(c, &s, CatalogId(*id), true)
                    {
                        return Ok(Err(e));
                    }
                }
            }
            Ok(Ok(()))
        })??;
        // Shown trees may span libraries (moves across roots): every
        // library is held, for what is a rare and short operation.
        let all: Vec<String> = db2
            .read(crate::db::libraries::list)?
            .into_iter()
            .map(|l| l.path)
            .collect();
        with_libraries_locked(&db2, all, || {
            delete_catalogs_blocking(&db2, &cfg2, &roots, uid, &ids)
        })
        .map_err(|e| match e {
            Error::Internal(m) | Error::DeleteFailed(m) => {
                log::error!("deleteCatalog failed part-way: {m}");
                Error::DeleteFailed(
                    "the catalog could not be deleted completely; details are in the server log"
                        .into(),
                )
            }
            other => other,
        })
    })
    .await?
}

fn io_err(what: impl std::fmt::Display, e: std::io::Error) -> Error {
    Error::DeleteFailed(format!("{what}: {e}"))
}

/// The catalogs one `deleteCatalog.icc` removes (spec §11): D, the
/// accessible listed catalogs and all their shown descendants.
struct Doomed {
    ids: Vec<CatalogId>,
    cats: Vec<crate::model::Catalog>,
    paths: Vec<String>,
}

impl Doomed {
    /// S (the accessible listed catalogs) and D; `None` when S is empty.
    /// Blocking.
    fn find(db: &Db, roots: &[CatalogId], ids: &[i64]) -> Result<Option<Doomed>> {
        let listed: Vec<CatalogId> = ids.iter().map(|i| CatalogId(*i)).collect();
        let s: Vec<CatalogId> = db
            .read(|c| catalogs::by_ids(c, &listed))?
            .into_iter()
            .filter(|cat| roots.contains(&cat.root_id))
            .map(|cat| cat.id)
            .collect();
        if s.is_empty() {
            return Ok(None);
        }
        let ids = db.read(|c| trash::with_descendants(c, &s))?;
        let cats = db.read(|c| catalogs::by_ids(c, &ids))?;
        let paths = cats.iter().map(|c| c.path.clone()).collect();
        Ok(Some(Doomed { ids, cats, paths }))
    }

    fn contains(&self, id: CatalogId) -> bool {
        self.ids.contains(&id)
    }

    /// The catalogs of D whose folder is not inside another's: their
    /// folders go to the trash.
    fn tops(&self) -> impl Iterator<Item = &crate::model::Catalog> {
        self.cats.iter().filter(|c| {
            !self
                .cats
                .iter()
                .any(|o| o.id != c.id && c.path.starts_with(&format!("{}/", o.path)))
        })
    }
}

fn delete_catalogs_blocking(
    db: &Db,
    cfg: &Config,
    roots: &[CatalogId],
    uid: UserId,
    ids: &[i64],
) -> Result<bool> {
    let Some(d) = Doomed::find(db, roots, ids)? else {
        return Ok(false);
    };
    relocate_files_shown_outside(db, &d)?;
    rehome_nested_catalogs(db, &d)?;
    delete_files_shown_in(db, cfg, uid, &d)?;
    let root_gone = d.cats.iter().any(|c| c.parent_id.is_none());
    let moves = plan_folder_moves(db, uid, &d, db::now())?;
    db.write(|tx| {
        trash::delete_catalogs(tx, &d.ids)?;
        for m in &moves {
            trash::insert(tx, &m.entry)?;
        }
        Ok(())
    })?;
    for m in &moves {
        m.run()?;
    }
    if root_gone {
        // A configured library whose root catalog went gets a new one at
        // once (its folder stayed), with the configured users: otherwise it
        // would be invisible and unscannable until the next start.
        crate::library::sync_libraries(db, cfg)
            .map_err(|e| Error::DeleteFailed(format!("re-creating library roots: {e}")))?;
    }
    Ok(root_gone)
}

/// Step 2: files living in D but shown outside move to their shown
/// catalog's folder and live there from now on. Blocking.
fn relocate_files_shown_outside(db: &Db, d: &Doomed) -> Result<()> {
    let living = db.read(|c| {
        let ids = trash::files_living_in(c, &d.ids)?;
        files::by_ids(c, &ids)
    })?;
    for f in living.iter().filter(|f| !d.contains(f.catalog_id)) {
        relocate_file(db, f, f.catalog_id)?;
    }
    Ok(())
}

/// Step 3: catalogs outside D whose folders are inside a folder of D get a
/// folder of their own inside their shown parent's folder, parents first,
/// and take their files along. Blocking.
fn rehome_nested_catalogs(db: &Db, d: &Doomed) -> Result<()> {
    let mut pending: Vec<crate::model::Catalog> = db
        .read(catalogs::all)?
        .into_iter()
        .filter(|cat| !d.contains(cat.id) && is_in(&cat.path, &d.paths))
        .collect();
    while !pending.is_empty() {
        let ready = pending
            .iter()
            .position(|c| !pending.iter().any(|p| Some(p.id) == c.parent_id))
            .unwrap_or(0);
        let cat = pending.remove(ready);
        rehome_catalog(db, &cat)?;
    }
    Ok(())
}

/// Steps 1 and 4: the files shown in D are deleted; originals inside D's
/// folders leave with their folder, the others go to the trash. Blocking.
fn delete_files_shown_in(db: &Db, cfg: &Config, uid: UserId, d: &Doomed) -> Result<()> {
    let shown = db.read(|c| {
        let ids = trash::files_shown_in(c, &d.ids)?;
        files::by_ids(c, &ids)
    })?;
    for f in &shown {
        let real_path = Path::new(&f.path)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let with_folder = is_in(&real_path, &d.paths);
        delete_one(db, cfg, Some(uid), f, with_folder, None)?;
    }
    Ok(())
}

/// One top folder of D on its way to the trash.
struct FolderMove {
    folder: PathBuf,
    dest: PathBuf,
    entry: TrashEntry,
    /// A library root keeps its folder: its contents go.
    is_root: bool,
}

impl FolderMove {
    fn run(&self) -> Result<()> {
        let r = if self.is_root {
            move_contents(&self.folder, &self.dest)
        } else {
            std::fs::rename(&self.folder, &self.dest)
        };
        match r {
            Ok(()) => {
                if let Some(p) = self.folder.parent() {
                    let _ = sync_dir(p);
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(
                format!("move {} to trash", self.folder.display()),
                e,
            )),
        }
    }
}

/// Step 5, planned: where each top folder of D goes in its library's trash
/// (the trash folder is created), and the entry that records it. Blocking.
fn plan_folder_moves(db: &Db, uid: UserId, d: &Doomed, now: i64) -> Result<Vec<FolderMove>> {
    let mut moves = Vec::new();
    for top in d.tops() {
        let library = library_of_catalog(db, top.id)?;
        let tdir = trash_dir(&library);
        std::fs::create_dir_all(&tdir).map_err(|e| io_err(tdir.display(), e))?;
        let folder = PathBuf::from(&top.path);
        let base = folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "folder".into());
        let dest = tdir.join(stamp_name(now, &base));
        let entry = TrashEntry {
            id: 0,
            kind: "folder".into(),
            trash_path: dest.to_string_lossy().into_owned(),
            original_path: top.path.clone(),
            name: top.name.clone(),
            size: None,
            deleted_by: Some(uid),
            deleted_at: now,
        };
        moves.push(FolderMove {
            folder,
            dest,
            entry,
            is_root: top.parent_id.is_none(),
        });
    }
    Ok(moves)
}

/// Moves everything in `folder` but the hidden `.isync` into a new `dest`.
fn move_contents(folder: &Path, dest: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dest)?;
    for entry in std::fs::read_dir(folder)? {
        let entry = entry?;
        if entry.file_name() == HIDDEN_DIR {
            continue;
        }
        std::fs::rename(entry.path(), dest.join(entry.file_name()))?;
    }
    Ok(())
}

/// Moves everything in `from` into the existing folder `into`, each under
/// a numbered name when its own is taken (never replacing anything).
fn merge_into(from: &Path, into: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() {
            let free = (0..10_000)
                .map(|n| {
                    if n == 0 {
                        into.join(&name)
                    } else {
                        into.join(format!("{name}_{n}"))
                    }
                })
                .find(|p| !p.exists())
                .ok_or_else(|| std::io::Error::other(format!("no free name for {name}")))?;
            std::fs::rename(entry.path(), free)?;
        } else {
            let (stem, ext) = split_name(&name);
            move_no_clobber(&entry.path(), into, &stem, &ext)?;
        }
    }
    sync_dir(into)
}

/// Moves a file's original into the folder of catalog `to` (numbered name
/// on a clash) and records that as its real location. Blocking.
fn relocate_file(db: &Db, f: &FileRecord, to: CatalogId) -> Result<()> {
    let dir = db
        .read(|c| catalogs::by_id(c, to))?
        .map(|c| PathBuf::from(c.path))
        .ok_or_else(|| Error::DeleteFailed(format!("catalog {} vanished", to.0)))?;
    let disk_name = Path::new(&f.path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if origin_pending(f) {
        // Pending: the bytes are in the library's staging area, not here.
        return Ok(db.write(|tx| trash::set_real_location(tx, f.id, to, &disk_name))?);
    }
    let (stem, ext) = split_name(&disk_name);
    let name = match move_no_clobber(Path::new(&f.path), &dir, &stem, &ext) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => disk_name.clone(),
        Err(e) => return Err(io_err(format!("move {} to {}", f.path, dir.display()), e)),
    };
    let _ = sync_dir(&dir);
    db.write(|tx| trash::set_real_location(tx, f.id, to, &name))?;
    Ok(())
}

/// Gives a catalog that lived inside a deleted folder a new folder inside
/// its shown parent's folder and moves its files there. Blocking.
fn rehome_catalog(db: &Db, cat: &crate::model::Catalog) -> Result<()> {
    let parent = cat
        .parent_id
        .and_then(|p| db.read(|c| catalogs::by_id(c, p)).ok().flatten())
        .ok_or_else(|| Error::DeleteFailed(format!("parent of catalog {} vanished", cat.id.0)))?;
    let base = safe_folder_name(&cat.name);
    let mut made = None;
    for n in 0..10_000 {
        let p = Path::new(&parent.path).join(format!("{base}_{n}"));
        match std::fs::create_dir(&p) {
            Ok(()) => {
                made = Some(p);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(p.display(), e)),
        }
    }
    let dir = made.ok_or_else(|| Error::DeleteFailed("no free folder name".into()))?;
    let key = crate::library::roots::path_key(&dir);
    let files_here = db.read(|c| {
        let ids = trash::files_living_in(c, &[cat.id])?;
        files::by_ids(c, &ids)
    })?;
    db.write(|tx| trash::set_catalog_path(tx, cat.id, &key))?;
    for f in files_here {
        let disk_name = Path::new(&f.path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if origin_pending(&f) {
            continue;
        }
        match std::fs::rename(&f.path, dir.join(&disk_name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("move {}", f.path), e)),
        }
    }
    let _ = sync_dir(&dir);
    Ok(())
}

/// Whether housekeeping of `db`'s app is due (and, if so, marks it as run
/// now): see [`crate::locks::Locks::housekeep_due`].
fn housekeep_due(db: &Db, every: Duration) -> bool {
    db.locks().housekeep_due(every)
}

fn log_housekeeping(r: Result<HousekeepReport>) {
    match r {
        Ok(r) if r != HousekeepReport::default() => log::info!("housekeeping: {r:?}"),
        Ok(_) => {}
        Err(e) => log::warn!("housekeeping failed: {e}"),
    }
}

/// Housekeeping at most once an hour per database, in the background.
pub(crate) fn maybe_housekeep(db: &Db, cfg: &Arc<Config>) {
    if !housekeep_due(db, HOUSEKEEP_EVERY) {
        return;
    }
    let (db, cfg) = (db.clone(), cfg.clone());
    tokio::task::spawn_blocking(move || log_housekeeping(housekeep(&db, &cfg)));
}

/// How often the server's timer runs housekeeping, also when nobody uploads
/// or deletes (stale uploads and expired trash must not wait for activity).
pub(crate) const HOUSEKEEP_TIMER: Duration = HOUSEKEEP_EVERY;

/// Runs housekeeping every `every` (the first run one period after start)
/// on the blocking pool, until `token` is cancelled; a run in progress is
/// waited for on shutdown (it is short: a few renames and deletes).
pub fn spawn_housekeeping(
    db: &Db,
    cfg: &Arc<Config>,
    every: Duration,
    token: tokio_util::sync::CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) {
    let (db, cfg) = (db.clone(), cfg.clone());
    tracker.spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = token.cancelled() => break,
            }
            // Activity-triggered runs count: they skip for an hour after this.
            housekeep_due(&db, Duration::ZERO);
            let (db, cfg) = (db.clone(), cfg.clone());
            match tokio::task::spawn_blocking(move || housekeep(&db, &cfg)).await {
                Ok(r) => log_housekeeping(r),
                Err(e) => log::warn!("housekeeping task failed: {e}"),
            }
        }
    });
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct HousekeepReport {
    pub trash_purged: usize,
    pub stale_uploads: usize,
    pub stale_thumbs: usize,
}

/// Purges trash older than the retention and partial uploads untouched for
/// `upload.stale_after_hours`. Blocking.
pub fn housekeep(db: &Db, cfg: &Config) -> Result<HousekeepReport> {
    let now = db::now();
    let mut r = HousekeepReport::default();
    let days = i64::try_from(cfg.trash.retention_days).unwrap_or(36_500);
    for e in db.read(|c| trash::expired(c, now - days * 86_400))? {
        let p = Path::new(&e.trash_path);
        let gone = if p.is_dir() {
            std::fs::remove_dir_all(p)
        } else {
            std::fs::remove_file(p)
        };
        match gone {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                log::warn!("trash: cannot remove {}: {err}", e.trash_path);
                continue;
            }
        }
        db.write(|tx| trash::delete(tx, e.id))?;
        r.trash_purged += 1;
    }
    let hours = i64::try_from(cfg.upload.stale_after_hours).unwrap_or(i64::MAX / 7200);
    let cutoff = now - hours * 3600;
    let old = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .map(|t| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map(|d| (d.as_secs() as i64) < cutoff)
                    .unwrap_or(true)
            })
            .unwrap_or(true)
    };
    for id in db.read(|c| uploads::stale_pending(c, cutoff))? {
        let Some(rec) = db.read(|c| files::by_id(c, id))? else {
            continue;
        };
        let library = library_of_catalog(db, rec.real_catalog_id)?;
        let removed =
            with_libraries_locked(db, vec![library.to_string_lossy().into_owned()], || {
                // Judged under the lock: the upload may have completed or be
                // still receiving bytes.
                let Some(now) = db.read(|c| files::by_id(c, id))? else {
                    return Ok(false);
                };
                if !origin_pending(&now) || !old(&staging_origin_path(&library, id)) {
                    return Ok(false);
                }
                delete_one(db, cfg, None, &now, false, None).map(|_| true)
            })?;
        if !removed {
            continue;
        }
        r.stale_uploads += 1;
    }
    for id in db.read(|c| uploads::stale_thumbs(c, cutoff))? {
        // The original is complete: let the server build the thumbnails.
        db.write(|tx| uploads::drop_pending_thumbs(tx, id))?;
        let library = match db.read(|c| files::by_id(c, id))? {
            Some(rec) => library_of_catalog(db, rec.real_catalog_id).ok(),
            None => None,
        };
        remove_uploaded_thumbs(&cfg.thumb_dir(), library.as_deref(), id);
        r.stale_thumbs += 1;
    }
    Ok(r)
}

/// `isync trash list`.
pub fn list(db: &Db) -> Result<Vec<TrashEntry>> {
    Ok(db.read(trash::list)?)
}

/// `isync trash restore ID`: moves the original (or folder) back where it
/// was, under a numbered name if that is taken. The next scan lists it
/// again. Returns where it went. Blocking.
///
/// Either half of a Live Photo brings the other back too: the photo under
/// a name whose video name is free as well, the video under the photo's
/// name, so the scan pairs them again.
pub fn restore(db: &Db, id: i64) -> Result<PathBuf> {
    let e = db
        .read(|c| trash::by_id(c, id))?
        .ok_or_else(|| Error::NotFound(format!("no trash entry {id}; see `isync trash list`")))?;
    let library = library_holding(db, Path::new(&e.original_path))?;
    with_libraries_locked(db, library.into_iter().collect(), || {
        let (photo, video) = db.read(|c| trash::live_pair(c, id))?;
        let video_entry = match video {
            Some(v) => db.read(|c| trash::by_id(c, v))?,
            None => None,
        };
        let video_ext = video_entry
            .as_ref()
            .map(|v| split_name(&base_name(&v.original_path)).1);
        let photo_dest = restore_locked(db, photo, PairName::Photo(video_ext.as_deref()))?;
        let Some(v) = video else {
            return Ok(photo_dest);
        };
        let stem = split_name(&base_name(&photo_dest.to_string_lossy())).0;
        let video_dest = restore_locked(db, v, PairName::Video(&stem))?;
        Ok(if id == v { video_dest } else { photo_dest })
    })
}

/// The last component of `path`.
fn base_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// How a restored file is named when it is half of a Live Photo.
enum PairName<'a> {
    /// The photo (or a lone entry): a name whose counterpart with the
    /// video's extension, if any, is free too.
    Photo(Option<&'a str>),
    /// The video: the photo's name, with its own extension.
    Video(&'a str),
}

fn restore_locked(db: &Db, id: i64, pair: PairName<'_>) -> Result<PathBuf> {
    let e = db
        .read(|c| trash::by_id(c, id))?
        .ok_or_else(|| Error::NotFound(format!("no trash entry {id}; see `isync trash list`")))?;
    let orig = PathBuf::from(&e.original_path);
    let dir = orig
        .parent()
        .ok_or_else(|| Error::BadParam(format!("{} has no parent folder", e.original_path)))?
        .to_path_buf();
    std::fs::create_dir_all(&dir)
        .map_err(|err| Error::Internal(format!("{}: {err}", dir.display())))?;
    let from = Path::new(&e.trash_path);
    // The contents of a library root (its folder stays when its catalog is
    // deleted) go back into the root.
    let into_root = e.kind == "folder"
        && orig.is_dir()
        && db
            .read(|c| crate::db::libraries::by_path(c, &e.original_path))?
            .is_some();
    let dest = if into_root {
        merge_into(from, &orig)
            .and_then(|_| std::fs::remove_dir(from))
            .map_err(|err| Error::Internal(format!("restore {}: {err}", e.trash_path)))?;
        orig.clone()
    } else if e.kind == "folder" {
        let mut chosen = None;
        for n in 0..10_000 {
            let cand = if n == 0 {
                orig.clone()
            } else {
                PathBuf::from(format!("{}_{n}", e.original_path))
            };
            if !cand.exists() {
                chosen = Some(cand);
                break;
            }
        }
        let dest = chosen.ok_or_else(|| Error::Internal("no free name".into()))?;
        if dest.exists() {
            move_contents(from, &dest)
        } else {
            std::fs::rename(from, &dest)
        }
        .map_err(|err| Error::Internal(format!("restore {}: {err}", e.trash_path)))?;
        dest
    } else {
        let name = orig
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (mut stem, ext) = split_name(&name);
        let mut video_ext = None;
        match pair {
            PairName::Photo(v) => video_ext = v.filter(|v| !v.is_empty()),
            PairName::Video(photo_stem) => stem = photo_stem.to_owned(),
        }
        // A photo name is taken when the video's name beside it is.
        let counterpart_taken = |candidate: &str| {
            video_ext.is_some_and(|v| dir.join(numbered(&split_name(candidate).0, v, 0)).exists())
        };
        let n = move_no_clobber_where(from, &dir, &stem, &ext, counterpart_taken)
            .map_err(|err| Error::Internal(format!("restore {}: {err}", e.trash_path)))?;
        dir.join(n)
    };
    let _ = sync_dir(&dir);
    db.write(|tx| trash::delete(tx, id))?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_contain_their_subfolders() {
        assert!(is_in("/a/b/c", &["/a/b".into()]));
        assert!(!is_in("/a/bc", &["/a/b".into()]));
    }
}
