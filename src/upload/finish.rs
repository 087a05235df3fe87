//! Moves of an upload's bytes between their staging file and their final
//! place, safe against a crash at any point (security issue #12, item 2).
//! Each move is written to `upload_moves` by the transaction that decides
//! it, before anything moves, and leaves with the transaction that records
//! the result. A crash in between leaves the row; `upload/recover.rs`
//! finishes the move at the next start, before the first scan: a moved original is never
//! taken for a new file (a duplicate record) and its record never reports 0
//! bytes stored (which made the app send the whole file again).
//!
//! - Completion: the original is linked (never over a file) from staging to
//!   a fresh name in its folder, client thumbnails are renamed into place,
//!   the record says complete (with the original's Live Photo content
//!   identifier, its folder paired: `library::live`), and only then the
//!   staging name goes.
//! - Reopen: a complete original becomes pending for a new upload to it. At
//!   its size (an append, spec §9.3) it moves back to staging. Below its
//!   size (a rewrite, spec §9.2) it is never cut in place: the stored
//!   version goes to the trash (restorable with `isync trash restore`) and
//!   staging starts with a copy of its first bytes.

use super::{internal, part_sizes, place, random_hex, Ctx, PartSizes, Role, PLACEHOLDER_PREFIX};
use crate::db::uploads::{self, Completion, MoveKind, UploadMove};
use crate::db::{self, files, trash};
use crate::error::{Error, Result};
use crate::failpoint::failpoint;
use crate::library::layout::{
    exists, folder_of, mtime_ns, numbered, remove_if_exists, safe_ext, staging_thumb_path,
    stamp_name, sync_dir, sync_parent, trash_dir, upload_stem, uploaded_thumb_path,
};
use crate::library::live;
use crate::media::container::{self, Container};
use crate::media::{heif, mp4, original, probe};
use crate::model::{FileRecord, FileType, PartStatus};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Copies the first `n` bytes of `from` into a new file `to`, synced (the
/// kernel copies: `copy_file_range`, a reflink where the file system can).
fn copy_prefix(from: &Path, to: &Path, n: u64) -> std::io::Result<()> {
    let src = File::open(from)?;
    let mut dst = OpenOptions::new().write(true).create_new(true).open(to)?;
    let copied = std::io::copy(&mut (&src).take(n), &mut dst)?;
    if copied != n {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("{} has {copied} bytes, {n} expected", from.display()),
        ));
    }
    dst.sync_all()
}

/// Makes the complete original of `ctx`'s file pending so a part can be
/// written at `offset` (checked against the stored size again, under the
/// library lock): an append moves it back to staging, a rewrite sends it to
/// the trash and copies its first `offset` bytes to staging. Blocking.
pub(super) fn reopen_origin(ctx: &Ctx, offset: i64) -> Result<()> {
    let lock = ctx.library_lock();
    let _moving = crate::library::scan::hold(&lock);
    // Read again under the lock: a scan may have renamed the file since.
    let rec = ctx.record()?;
    if origin_pending(&rec) {
        return Ok(());
    }
    let at = place(&rec, &ctx.library, &ctx.thumbs, Role::Origin);
    if offset > at.stored {
        return Err(Error::BadParam(format!(
            "origin offset {offset} is not usable: {} bytes are stored, resume at {}",
            at.stored, at.stored
        )));
    }
    let fin = at.final_path.clone();
    let old_name = file_name(&fin);
    if !exists(&fin).map_err(|e| reopen_io(&rec, "stat", e))? {
        return Err(Error::FileGone(format!(
            "the original of file {} is missing on the server's disk; it cannot be written to",
            rec.id.0
        )));
    }
    // A staging file beside a complete original is what a crash left (a
    // second link to the original, or part of a copy): never written
    // through, it goes.
    remove_if_exists(&at.staging).map_err(|e| reopen_io(&rec, "remove a stale staging file", e))?;
    let mut mv = UploadMove {
        file_id: rec.id,
        kind: MoveKind::Reopen,
        disk_name: Some(old_name.clone()),
        thumb: false,
        screen: false,
        trash_path: None,
    };
    let rewrite = offset < at.stored;
    let trash_id = record_reopen(ctx, &rec, &at, offset, &mut mv)?;
    failpoint("upload-reopen-recorded");
    let to = mv
        .trash_path
        .as_ref()
        .map(PathBuf::from)
        .unwrap_or_else(|| at.staging.clone());
    let moved = std::fs::rename(&fin, &to)
        .and_then(|()| sync_dir(&folder_of(&rec)))
        .and_then(|()| sync_parent(&to));
    if let Err(e) = moved {
        undo_failed_reopen(ctx, &rec, &at, &to, rewrite, trash_id);
        return Err(reopen_io(
            &rec,
            &format!("move {} to {}", fin.display(), to.display()),
            e,
        ));
    }
    ctx.db.write(|tx| uploads::delete_move(tx, rec.id))?;
    if rewrite {
        log::info!(
            "upload of file {}: rewritten from byte {offset}; the stored version is in the trash",
            rec.id.0
        );
    }
    Ok(())
}

/// An IO error of reopening file `rec`.
fn reopen_io(rec: &FileRecord, what: &str, e: std::io::Error) -> Error {
    internal(&format!("reopen file {}: {what}", rec.id.0), e)
}

/// Records the reopening before anything moves: the original pending under
/// a placeholder name and the move journalled (`mv`). A rewrite below the
/// stored size first copies the kept bytes to staging and records the old
/// version's trash entry (its id is returned; `mv.trash_path` says where
/// the old version goes).
fn record_reopen(
    ctx: &Ctx,
    rec: &FileRecord,
    at: &super::PartPlace,
    offset: i64,
    mv: &mut UploadMove,
) -> Result<Option<i64>> {
    let now = db::now();
    let placeholder = format!("{PLACEHOLDER_PREFIX}{}", random_hex(16));
    if offset >= at.stored {
        ctx.db.write(|tx| {
            uploads::set_origin_pending(tx, rec.id, &placeholder, now)?;
            live::part_pending(tx, rec, true)?;
            uploads::put_move(tx, mv)
        })?;
        return Ok(None);
    }
    let staging_dir = at.staging.parent().unwrap_or(&ctx.library);
    super::space::check_free(staging_dir, offset as u64, ctx.reserve)?;
    copy_prefix(&at.final_path, &at.staging, offset as u64)
        .and_then(|()| sync_dir(staging_dir))
        .map_err(|e| {
            let _ = std::fs::remove_file(&at.staging);
            reopen_io(rec, "copy the kept bytes to staging", e)
        })?;
    let tdir = trash_dir(&ctx.library);
    std::fs::create_dir_all(&tdir).map_err(|e| reopen_io(rec, "create the trash folder", e))?;
    let old_name = file_name(&at.final_path);
    let to = tdir.join(stamp_name(now, &old_name));
    mv.trash_path = Some(to.to_string_lossy().into_owned());
    let entry = trash::TrashEntry {
        id: 0,
        kind: "file".into(),
        trash_path: to.to_string_lossy().into_owned(),
        original_path: rec.path.clone(),
        name: rec.name.clone(),
        size: Some(rec.size),
        deleted_by: Some(ctx.user),
        deleted_at: now,
    };
    let r = ctx.db.write(|tx| {
        let id = trash::insert(tx, &entry)?;
        uploads::set_origin_pending(tx, rec.id, &placeholder, now)?;
        live::part_pending(tx, rec, true)?;
        uploads::put_move(tx, mv)?;
        Ok(id)
    });
    match r {
        Ok(id) => Ok(Some(id)),
        Err(e) => {
            let _ = std::fs::remove_file(&at.staging);
            Err(e.into())
        }
    }
}

/// Puts everything back as it was after the original could not be moved
/// to `to`: the original in its folder, the record complete, no trash
/// entry, no journalled move.
fn undo_failed_reopen(
    ctx: &Ctx,
    rec: &FileRecord,
    at: &super::PartPlace,
    to: &Path,
    rewrite: bool,
    trash_id: Option<i64>,
) {
    let fin = &at.final_path;
    if exists(to).unwrap_or(false) && !exists(fin).unwrap_or(true) {
        let _ = std::fs::rename(to, fin);
    }
    if rewrite {
        let _ = std::fs::remove_file(&at.staging);
    }
    let old_name = file_name(fin);
    let undone = ctx.db.write(|tx| {
        uploads::undo_reopen(
            tx,
            rec.id,
            &old_name,
            rec.size,
            rec.mtime_ns,
            rec.last_modify,
        )?;
        if let Some(t) = trash_id {
            trash::delete(tx, t)?;
        }
        // The pair parted by the reopen holds again.
        live::pair_folders(tx, &[rec.real_catalog_id])?;
        uploads::delete_move(tx, rec.id)
    });
    if let Err(u) = undone {
        log::error!(
            "upload of file {}: cannot undo a failed reopen: {u}",
            rec.id.0
        );
    }
}

fn origin_pending(rec: &FileRecord) -> bool {
    Role::Origin.status(rec) == PartStatus::Uploading
}

/// Makes a client thumbnail pending: a complete one moves back to its
/// staging name (journaled like the original's moves). Blocking.
pub(super) fn reopen_thumb(ctx: &Ctx, rec: &FileRecord, role: Role) -> Result<()> {
    let screen = role == Role::Screen;
    let level = role.level();
    let now = db::now();
    let complete = role.status(rec) == PartStatus::Uploaded;
    let mv = UploadMove {
        file_id: rec.id,
        kind: MoveKind::Reopen,
        disk_name: None,
        thumb: !screen,
        screen,
        trash_path: None,
    };
    ctx.db.write(|tx| {
        uploads::set_thumb_status(tx, rec.id, level, PartStatus::Uploading, now)?;
        live::part_pending(tx, rec, false)?;
        if complete {
            uploads::put_move(tx, &mv)?;
        }
        Ok(())
    })?;
    if complete {
        let fin = uploaded_thumb_path(&ctx.thumbs, rec.id, level);
        let staging = staging_thumb_path(&ctx.thumbs, rec.id, level);
        if let Err(e) = std::fs::rename(&fin, &staging) {
            let _ = ctx.db.write(|tx| {
                uploads::set_thumb_status(tx, rec.id, level, PartStatus::Uploaded, now)?;
                live::pair_folders(tx, &[rec.real_catalog_id])?;
                uploads::delete_move(tx, rec.id)
            });
            return Err(internal("move thumbnail to staging", e));
        }
        ctx.db.write(|tx| uploads::delete_move(tx, rec.id))?;
    }
    Ok(())
}

/// Links the staged original to the first numbered name free in its folder
/// (on disk and in the database), journaling each name before it is tried.
/// Returns the name.
fn link_into_folder(
    ctx: &Ctx,
    rec: &FileRecord,
    staging: &Path,
    mv: &mut UploadMove,
) -> Result<String> {
    let dir = folder_of(rec);
    let (stem, ext) = (upload_stem(rec, db::now()), safe_ext(&rec.ext));
    let io = |e: std::io::Error| {
        internal(
            &format!("link {} into {}", staging.display(), dir.display()),
            e,
        )
    };
    for n in 0..10_000 {
        let name = numbered(&stem, &ext, n);
        // A record whose file vanished a moment ago (no scan dropped it
        // yet) keeps its name too.
        if exists(&dir.join(&name)).map_err(io)?
            || ctx
                .db
                .read(|c| uploads::name_taken(c, rec.real_catalog_id, &name))?
        {
            continue;
        }
        mv.disk_name = Some(name.clone());
        ctx.db.write(|tx| uploads::put_move(tx, mv))?;
        // `link` never replaces a file: one that appeared meanwhile under
        // this name makes it try the next.
        match std::fs::hard_link(staging, dir.join(&name)) {
            Ok(()) => return Ok(name),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(e)),
        }
    }
    Err(internal(
        "complete",
        format!("no free name for {stem}.{ext} in {}", dir.display()),
    ))
}

/// What kind of Live Photo half an original's first bytes say it can be,
/// whatever its name (an iOS client may send `IMG_1234`, no extension, and
/// the name on disk then has none): a still (JPEG, HEIF; other stills are
/// read as images too) or a QuickTime/MP4 video; `None` for anything else.
fn live_kind(head: &[u8]) -> Option<FileType> {
    match container::sniff(head)? {
        Container::IsoBmff if heif::is_heif(head) => Some(FileType::Image),
        Container::IsoBmff => Some(FileType::Video),
        Container::Jpeg | Container::Png | Container::Tiff | Container::Webp => {
            Some(FileType::Image)
        }
        _ => None,
    }
}

/// The Live Photo content identifier of `rec`'s original, now at `path`
/// ('' when it names none). The kind comes from the content (never the
/// name): a still is read as the probe reads images, a video with the
/// native QuickTime reader (no process). A record whose declared `type`
/// is not the kind its bytes are gets none: it is no half of a pair.
/// Read with the probe's bounded readers; a file they cannot read is
/// recorded with none, as a scan would.
fn content_id_by_content(rec: &FileRecord, path: &Path) -> Result<Option<String>> {
    let io = |e| internal(&format!("read {}", path.display()), e);
    let file = probe::open_checked(path, None).map_err(|e| internal("probe", e))?;
    let mut head = [0u8; container::SNIFF_BYTES];
    let n = original::read_at_most(&file, &mut head, 0).map_err(io)?;
    let Some(kind) = live_kind(&head[..n]) else {
        return Ok(None);
    };
    if rec.file_type != kind.bits() {
        return Ok(None);
    }
    Ok(match kind {
        FileType::Video => mp4::read_info(&file).ok().and_then(|i| i.content_id),
        // The file opened above, not its path again.
        _ => match probe::probe_by_content(file, path) {
            Ok((FileType::Image, info)) => info.content_id,
            Ok(_) => None,
            Err(e) => return Err(internal("probe", e)),
        },
    })
}

/// [`content_id_by_content`], '' when none or unreadable (logged).
pub(super) fn live_content_id(rec: &FileRecord, path: &Path) -> String {
    content_id_by_content(rec, path)
        .unwrap_or_else(|e| {
            log::warn!(
                "upload of file {}: no content identifier read: {e}",
                rec.id.0
            );
            None
        })
        .unwrap_or_default()
}

/// Marks the received parts complete (spec §9.2): the original gets a
/// fresh numbered name in its catalog folder (never over an existing
/// file), thumbnails their final path, and only then does the database say
/// status 3. Blocking.
pub(super) fn complete(ctx: &Ctx, done: &[(Role, PathBuf)]) -> Result<(FileRecord, PartSizes)> {
    let origin = done
        .iter()
        .find(|(r, _)| *r == Role::Origin)
        .map(|(_, p)| p.as_path());
    if origin.is_some() {
        // Its folder must be on the library's disk, not the mount point
        // left behind when the disk went.
        ctx.check_online()?;
    }
    let lock = ctx.library_lock();
    let moving = crate::library::scan::hold(&lock);
    let rec = ctx.record()?;
    let mut mv = UploadMove {
        file_id: rec.id,
        kind: MoveKind::Complete,
        disk_name: None,
        thumb: done.iter().any(|(r, _)| *r == Role::Thumb),
        screen: done.iter().any(|(r, _)| *r == Role::Screen),
        trash_path: None,
    };
    let folder = folder_of(&rec);
    let mut linked: Option<PathBuf> = None;
    let mut renamed: Vec<(PathBuf, PathBuf)> = Vec::new();
    let result = (|| -> Result<()> {
        let mut c = Completion::default();
        // Of a completed original: its Live Photo content identifier ('':
        // none), recorded with the completion.
        let mut content_id: Option<String> = None;
        match origin {
            Some(staging) => {
                let name = link_into_folder(ctx, &rec, staging, &mut mv)?;
                let path = folder.join(&name);
                linked = Some(path.clone());
                let m = std::fs::metadata(&path)
                    .and_then(|m| sync_dir(&folder).map(|()| m))
                    .map_err(|e| internal(&format!("store {}", path.display()), e))?;
                c.origin = Some((name, m.len() as i64, mtime_ns(&m)));
                content_id = Some(live_content_id(&rec, &path));
            }
            None => ctx.db.write(|tx| uploads::put_move(tx, &mv))?,
        }
        for (role, staging) in done.iter().filter(|(r, _)| *r != Role::Origin) {
            let fin = uploaded_thumb_path(&ctx.thumbs, rec.id, role.level());
            std::fs::rename(staging, &fin)
                .and_then(|()| sync_parent(&fin))
                .map_err(|e| internal("store thumbnail", e))?;
            renamed.push((fin, staging.clone()));
            if *role == Role::Thumb {
                c.thumb = true;
            } else {
                c.screen = true;
            }
        }
        failpoint("upload-complete-moved");
        let now = db::now();
        // One transaction: the record complete, its identifier, and its
        // folder paired (the other half may have come first, by upload or
        // scan; a reopen parted a pair until now, `live::part_pending`,
        // also for a thumbnail alone). A crash before it is finished by
        // `upload::recover`, which does the same.
        ctx.db.write(|tx| {
            uploads::complete(tx, rec.id, &c, now)?;
            if let Some(cid) = &content_id {
                files::set_content_id(tx, rec.id, cid)?;
            }
            live::pair_folders(tx, &[rec.real_catalog_id])?;
            uploads::delete_move(tx, rec.id)
        })?;
        Ok(())
    })();
    if let Err(e) = result {
        // Every part back where a pending part lives: the staged original
        // never left staging (only a second name was made), thumbnails go
        // back to their staging names.
        if let Some(l) = &linked {
            if let Err(e) = std::fs::remove_file(l) {
                log::error!(
                    "upload of file {}: cannot remove {}: {e}",
                    rec.id.0,
                    l.display()
                );
            }
        }
        for (fin, staging) in renamed {
            if let Err(e) = std::fs::rename(&fin, &staging) {
                log::error!(
                    "upload of file {}: cannot move {} back to {}: {e}",
                    rec.id.0,
                    fin.display(),
                    staging.display()
                );
            }
        }
        if let Err(e) = ctx.db.write(|tx| uploads::delete_move(tx, rec.id)) {
            log::error!("upload of file {}: {e}", rec.id.0);
        }
        return Err(e);
    }
    failpoint("upload-complete-recorded");
    // The staging name goes last: until the record said where the bytes
    // are, it was the name the record counted. A crash before this leaves
    // a second link to the original, removed at the next start.
    if let Some(staging) = origin {
        if let Err(e) = std::fs::remove_file(staging).and_then(|()| sync_parent(staging)) {
            log::warn!("upload of file {}: {}: {e}", rec.id.0, staging.display());
        }
    }
    drop(moving);
    let rec = ctx.record()?;
    let sizes = part_sizes(&rec, &ctx.library, &ctx.thumbs);
    Ok((rec, sizes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_of_a_live_photo_half_comes_from_its_first_bytes() {
        let ftyp = |brand: &[u8]| {
            let mut b = b"\0\0\0\x18ftyp".to_vec();
            b.extend_from_slice(brand);
            b.extend_from_slice(b"\0\0\0\0mif1heic");
            b
        };
        assert_eq!(live_kind(&[0xFF, 0xD8, 0xFF, 0xE1]), Some(FileType::Image));
        assert_eq!(live_kind(&ftyp(b"heic")), Some(FileType::Image));
        let mut mov = b"\0\0\0\x14ftypqt  \0\0\0\0qt  ".to_vec();
        mov.extend_from_slice(b"\0\0\0\x08wide");
        assert_eq!(live_kind(&mov), Some(FileType::Video));
        // Neither, cut short, or nothing at all.
        assert_eq!(live_kind(b"GIF89a\x01\0\x01\0"), None);
        assert_eq!(live_kind(b"IMG_1234 is not a picture"), None);
        assert_eq!(live_kind(&[0xFF, 0xD8]), None);
        assert_eq!(live_kind(b""), None);
    }
}
