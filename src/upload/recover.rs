//! Finishing what a crash interrupted (security issue #12, item 2): the
//! moves journaled in `upload_moves` by `upload/finish.rs` are carried
//! through — at start before serving and scanning, by the scanner before it
//! walks a library that was offline then, and by a request to the file —
//! and the staging files a crash left beside complete originals go.

use super::{internal, Ctx};
use crate::config::Config;
use crate::db::uploads::{self, Completion, MoveKind, UploadMove};
use crate::db::{self, files, libraries, Db};
use crate::error::{Error, Result};
use crate::library::layout::{
    exists, folder_of, move_no_clobber_where, mtime_ns, remove_if_exists, safe_ext, same_file,
    staging_dir, staging_origin_path, staging_thumb_path, sync_dir, sync_parent, upload_stem,
    uploaded_thumb_path,
};
use crate::library::live;
use crate::model::{FileRecord, Library, PartStatus, ThumbLevel};
use std::path::{Path, PathBuf};

/// Finishes the move a crash left for `ctx`'s file, if any (its library was
/// offline at start and no scan has run since). Blocking.
pub(super) fn settle_file(ctx: &Ctx) -> Result<()> {
    if ctx.db.read(|c| uploads::move_of(c, ctx.id))?.is_none() {
        return Ok(());
    }
    let lock = ctx.library_lock();
    let _held = crate::library::scan::hold(&lock);
    if let Some(mv) = ctx.db.read(|c| uploads::move_of(c, ctx.id))? {
        settle(&ctx.db, &ctx.thumbs, &ctx.library, &mv)?;
    }
    Ok(())
}

/// Finishes the unfinished move `mv` of a file living in `library`, whose
/// lock the caller holds: a completion is completed (the upload was
/// received in full), a reopen is carried through. Blocking.
fn settle(db: &Db, thumbs: &Path, library: &Path, mv: &UploadMove) -> Result<()> {
    let id = mv.file_id;
    let Some(rec) = db.read(|c| files::by_id(c, id))? else {
        db.write(|tx| uploads::delete_move(tx, id))?;
        return Ok(());
    };
    // The file's client thumbnails are on its library's disk or in the
    // data dir (`thumbs`), wherever they were written.
    let thumbs = &crate::library::layout::client_thumb_dir(library, thumbs, id);
    let s = Settling {
        db,
        thumbs,
        mv,
        folder: folder_of(&rec),
        staging: staging_origin_path(library, id),
        rec,
    };
    match mv.kind {
        MoveKind::Complete => s.complete(),
        MoveKind::Reopen => s.reopen(),
    }
}

/// One unfinished move being carried through by [`settle`].
struct Settling<'a> {
    db: &'a Db,
    thumbs: &'a Path,
    mv: &'a UploadMove,
    rec: FileRecord,
    /// The catalog folder of the file.
    folder: PathBuf,
    /// The staging name of its original.
    staging: PathBuf,
}

impl Settling<'_> {
    fn io(&self, what: String, e: std::io::Error) -> Error {
        internal(
            &format!("finish the upload of file {}: {what}", self.mv.file_id.0),
            e,
        )
    }

    /// The client thumbnail levels the move carries.
    fn levels(&self) -> [(bool, ThumbLevel); 2] {
        [
            (self.mv.thumb, ThumbLevel::Small),
            (self.mv.screen, ThumbLevel::Screen),
        ]
    }

    /// A completion: the original is linked into its folder, the client
    /// thumbnails stored, the record completed and the move forgotten,
    /// then the staging name goes.
    fn complete(&self) -> Result<()> {
        let (db, id) = (self.db, self.mv.file_id);
        let mut c = Completion::default();
        if let Some(name) = &self.mv.disk_name {
            self.link_origin(name, &mut c)?;
        }
        self.store_thumbs(&mut c)?;
        // As `finish::complete` does: the original's identifier read, its
        // folder paired (a reopen may have parted a pair).
        let content_id = c
            .origin
            .as_ref()
            .map(|(n, ..)| super::finish::live_content_id(&self.rec, &self.folder.join(n)));
        let now = db::now();
        db.write(|tx| {
            uploads::complete(tx, id, &c, now)?;
            if let Some(cid) = &content_id {
                files::set_content_id(tx, id, cid)?;
            }
            live::pair_folders(tx, &[self.rec.real_catalog_id])?;
            uploads::delete_move(tx, id)
        })?;
        if c.origin.is_some() {
            remove_if_exists(&self.staging)
                .and_then(|()| sync_parent(&self.staging))
                .map_err(|e| self.io("remove the staging name".into(), e))?;
        }
        log::info!(
            "upload of file {}: finished its completion, which a crash interrupted",
            id.0
        );
        Ok(())
    }

    /// Puts the staged original in its folder under `name` (or the next
    /// free name) and records it in `c`; a staged original that is gone
    /// leaves the file pending.
    fn link_origin(&self, name: &str, c: &mut Completion) -> Result<()> {
        let folder = &self.folder;
        let on_disk = self
            .place_origin(name)
            .map_err(|e| self.io(format!("link into {}", folder.display()), e))?;
        match on_disk {
            Some(n) => {
                let m = std::fs::metadata(folder.join(&n))
                    .and_then(|m| sync_dir(folder).map(|()| m))
                    .map_err(|e| self.io(n.clone(), e))?;
                c.origin = Some((n, m.len() as i64, mtime_ns(&m)));
            }
            None => log::warn!(
                "upload of file {}: its staged original is gone; it stays pending",
                self.mv.file_id.0
            ),
        }
        Ok(())
    }

    /// The name the original has in its folder once linked there, `None`
    /// when neither the staged nor the final name exists.
    fn place_origin(&self, name: &str) -> std::io::Result<Option<String>> {
        let (db, rec, folder, staging) = (self.db, &self.rec, &self.folder, &self.staging);
        let fin = folder.join(name);
        Ok(match (exists(staging)?, exists(&fin)?) {
            (true, false) => {
                std::fs::hard_link(staging, &fin)?;
                Some(name.to_string())
            }
            (true, true) if same_file(staging, &fin)? => Some(name.to_string()),
            // Another file took the name before the link:
            // the staged bytes get the next free one.
            (true, true) => Some(move_no_clobber_where(
                staging,
                folder,
                &upload_stem(rec, db::now()),
                &safe_ext(&rec.ext),
                |n| {
                    db.read(|c| uploads::name_taken(c, rec.real_catalog_id, n))
                        .unwrap_or(true)
                },
            )?),
            (false, true) => Some(name.to_string()),
            (false, false) => None,
        })
    }

    /// Moves the wanted client thumbnails from staging to their final
    /// names and records in `c` those that are there.
    fn store_thumbs(&self, c: &mut Completion) -> Result<()> {
        let id = self.mv.file_id;
        for (wanted, level) in self.levels() {
            let (part, fin) = (
                staging_thumb_path(self.thumbs, id, level),
                uploaded_thumb_path(self.thumbs, id, level),
            );
            if !wanted {
                continue;
            }
            if exists(&part).map_err(|e| self.io("stat".into(), e))? {
                std::fs::rename(&part, &fin)
                    .and_then(|()| sync_parent(&fin))
                    .map_err(|e| self.io("store thumbnail".into(), e))?;
            }
            if exists(&fin).map_err(|e| self.io("stat".into(), e))? {
                if level == ThumbLevel::Small {
                    c.thumb = true;
                } else {
                    c.screen = true;
                }
            }
        }
        Ok(())
    }

    /// A reopen: the complete original goes to the trash (or back to
    /// staging), the client thumbnails back to staging, and the move is
    /// forgotten.
    fn reopen(&self) -> Result<()> {
        let (id, folder) = (self.mv.file_id, &self.folder);
        if let Some(name) = &self.mv.disk_name {
            let fin = folder.join(name);
            if exists(&fin).map_err(|e| self.io("stat".into(), e))? {
                let to = self
                    .mv
                    .trash_path
                    .as_ref()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| self.staging.clone());
                if let Some(d) = to.parent() {
                    std::fs::create_dir_all(d).map_err(|e| self.io(d.display().to_string(), e))?;
                }
                std::fs::rename(&fin, &to)
                    .and_then(|()| sync_dir(folder))
                    .and_then(|()| sync_parent(&to))
                    .map_err(|e| {
                        self.io(format!("move {} to {}", fin.display(), to.display()), e)
                    })?;
            }
        }
        for (wanted, level) in self.levels() {
            let (part, fin) = (
                staging_thumb_path(self.thumbs, id, level),
                uploaded_thumb_path(self.thumbs, id, level),
            );
            if wanted && exists(&fin).map_err(|e| self.io("stat".into(), e))? {
                std::fs::rename(&fin, &part).map_err(|e| self.io("move thumbnail".into(), e))?;
            }
        }
        self.db.write(|tx| uploads::delete_move(tx, id))?;
        log::info!(
            "upload of file {}: finished its reopening, which a crash interrupted",
            id.0
        );
        Ok(())
    }
}

/// Finishes the moves a crash left in library `lib`, whose lock the caller
/// holds (the scanner, before it walks a library that is online), and with
/// `leftovers` removes the staging files a crash left beside complete
/// originals. Errors are logged per file: one stuck file does not keep the
/// others waiting. Blocking.
pub(crate) fn recover_library(
    db: &Db,
    thumbs: &Path,
    lib: &Library,
    leftovers: bool,
) -> Result<()> {
    let moves = db.read(|c| uploads::moves_in_library(c, lib.id))?;
    let mut done = 0;
    for mv in &moves {
        match settle(db, thumbs, Path::new(&lib.path), mv) {
            Ok(()) => done += 1,
            Err(e) => log::error!("upload of file {}: {e}", mv.file_id.0),
        }
    }
    let left = if leftovers {
        remove_leftovers(db, Path::new(&lib.path))?
    } else {
        0
    };
    if done + left > 0 {
        log::info!(
            "library {}: {done} uploads a crash interrupted finished, {left} leftover staging \
             files removed",
            lib.path
        );
    }
    Ok(())
}

/// Removes the staging files of complete originals: second links a crash
/// left between recording a completion and removing the staging name, or
/// copies of a rewrite whose recording never came. Only beside an
/// original that is in place. Blocking.
fn remove_leftovers(db: &Db, library: &Path) -> Result<usize> {
    let dir = staging_dir(library);
    let entries = match std::fs::read_dir(&dir) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(internal(&dir.display().to_string(), e)),
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name
            .strip_suffix(".origin")
            .and_then(|n| n.parse::<i64>().ok())
        else {
            continue;
        };
        let id = crate::model::FileId(id);
        let Some(rec) = db.read(|c| files::by_id(c, id))? else {
            continue;
        };
        let moving = db.read(|c| uploads::move_of(c, id))?.is_some();
        if PartStatus::from_i64(rec.status_origin) == PartStatus::Uploading
            || moving
            || !Path::new(&rec.path).is_file()
        {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) => log::warn!("upload of file {}: {}: {e}", id.0, entry.path().display()),
        }
    }
    if removed > 0 {
        let _ = sync_dir(&dir);
    }
    Ok(removed)
}

/// At start, before serving and before the first scan: finishes every move
/// a crash left, in each library that is online (an offline one's wait for
/// its disk: the scanner finishes them before it walks the library again).
/// Only libraries with such moves are looked at on disk (an absent
/// automounted disk would hold the start up). Blocking.
pub(crate) fn recover(db: &Db, cfg: &Config) -> Result<()> {
    let thumbs = cfg.thumb_dir();
    for lib in db.read(libraries::list)? {
        let moves = db.read(|c| uploads::moves_in_library(c, lib.id))?.len();
        if moves == 0 {
            continue;
        }
        if crate::library::roots::offline_holder(db, Path::new(&lib.path))?.is_some() {
            log::warn!(
                "library {}: {moves} uploads a crash interrupted are finished when it is back \
                 online",
                lib.path
            );
            continue;
        }
        let lock = crate::library::scan::library_lock(db, &lib.path);
        let _held = crate::library::scan::hold(&lock);
        recover_library(db, &thumbs, &lib, false)?;
    }
    Ok(())
}
