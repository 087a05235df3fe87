//! SQL for the write side of `files`: announced uploads, part statuses,
//! completion, and `updateFile.icc` edits. While the original is pending its
//! `disk_name` is a hidden placeholder (`.isync-upload-…`), so no scan can
//! confuse it with a real file and the real name is chosen at completion.

use super::DbError;
use crate::model::{CatalogId, FileId, LibraryId, PartStatus, ThumbLevel, UserId};
use rusqlite::{params, Connection};

/// A record announced by `uploadFileInfo.icc` (spec §6.14).
#[derive(Debug, Clone)]
pub(crate) struct NewUpload {
    pub catalog_id: CatalogId,
    pub root_id: CatalogId,
    pub placeholder: String,
    pub name: String,
    pub ext: String,
    pub size: i64,
    pub file_type: i64,
    pub status_thumb: i64,
    pub status_screen: i64,
    pub create_time: i64,
    pub import_time: i64,
    pub last_modify: i64,
    pub upload_time: i64,
    pub duration: Option<f64>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub orientation: Option<i64>,
    pub longitude: Option<f64>,
    pub latitude: Option<f64>,
    pub memo: Option<String>,
    pub help_int: Option<i64>,
    pub help_text: Option<String>,
    pub uploader: UserId,
}

pub(crate) fn insert(c: &Connection, u: &NewUpload) -> Result<FileId, DbError> {
    c.prepare_cached(
        "INSERT INTO files(catalog_id, real_catalog_id, root_id, disk_name, name, ext, \
         create_time, upload_time, import_time, last_modify, size, type, duration, width, height, \
         orientation, memo, help_int, help_text, upload_user_id, status_origin, status_thumb, \
         status_screen, longitude, latitude, charged_bytes) \
         VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
         ?18, ?19, 2, ?20, ?21, ?22, ?23, ?10)",
    )?
    .execute(params![
        u.catalog_id.0,
        u.root_id.0,
        u.placeholder,
        u.name,
        u.ext,
        u.create_time,
        u.upload_time,
        u.import_time,
        u.last_modify,
        u.size,
        u.file_type,
        u.duration,
        u.width,
        u.height,
        u.orientation,
        u.memo,
        u.help_int,
        u.help_text,
        u.uploader.0,
        u.status_thumb,
        u.status_screen,
        u.longitude,
        u.latitude,
    ])?;
    Ok(FileId(c.last_insert_rowid()))
}

/// Ids of this user's uploads that still have a part pending (status 2).
pub(crate) fn pending_of_user(c: &Connection, user: UserId) -> Result<Vec<FileId>, DbError> {
    let mut st = c.prepare_cached(
        "SELECT id FROM files WHERE upload_user_id = ?1 \
         AND (status_origin = 2 OR status_thumb = 2 OR status_screen = 2) ORDER BY id",
    )?;
    let rows = st.query_map([user.0], |r| Ok(FileId(r.get(0)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Files whose original is still pending and that were announced before
/// `before` (the caller also checks the staged bytes' mtime). Not by
/// `last_modify`: the client may set that to any time.
pub(crate) fn stale_pending(c: &Connection, before: i64) -> Result<Vec<FileId>, DbError> {
    let mut st = c.prepare_cached(
        "SELECT id FROM files WHERE status_origin = 2 AND coalesce(upload_time, 0) < ?1 \
         ORDER BY id",
    )?;
    let rows = st.query_map([before], |r| Ok(FileId(r.get(0)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Files with a complete original but a client thumbnail that never came.
pub(crate) fn stale_thumbs(c: &Connection, before: i64) -> Result<Vec<FileId>, DbError> {
    let mut st = c.prepare_cached(
        "SELECT id FROM files WHERE status_origin <> 2 AND (status_thumb = 2 OR \
         status_screen = 2) AND coalesce(upload_time, 0) < ?1 ORDER BY id",
    )?;
    let rows = st.query_map([before], |r| Ok(FileId(r.get(0)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Makes a complete original pending again (a new upload to it began):
/// it leaves its folder for the staging area under `placeholder`.
pub(crate) fn set_origin_pending(
    c: &Connection,
    id: FileId,
    placeholder: &str,
    now: i64,
) -> Result<(), DbError> {
    c.prepare_cached(
        "UPDATE files SET status_origin = 2, disk_name = ?2, last_modify = ?3 WHERE id = ?1",
    )?
    .execute(params![id.0, placeholder, now])?;
    Ok(())
}

/// Sets the status of a client thumbnail level (pending or complete) and
/// the record's `last_modify`.
pub(crate) fn set_thumb_status(
    c: &Connection,
    id: FileId,
    level: ThumbLevel,
    status: PartStatus,
    now: i64,
) -> Result<(), DbError> {
    super::files::set_thumb_status(c, id, level, status, None)?;
    touch(c, id, now)
}

/// Sets a record's `last_modify`.
fn touch(c: &Connection, id: FileId, now: i64) -> Result<(), DbError> {
    c.prepare_cached("UPDATE files SET last_modify = ?2 WHERE id = ?1")?
        .execute(params![id.0, now])?;
    Ok(())
}

/// Gives up the client thumbnails still pending (status 2 → 0) of a file
/// whose original is complete: the server builds them instead.
pub(crate) fn drop_pending_thumbs(c: &Connection, id: FileId) -> Result<(), DbError> {
    for level in [ThumbLevel::Small, ThumbLevel::Screen] {
        let (to, from) = (PartStatus::Local, Some(PartStatus::Uploading));
        super::files::set_thumb_status(c, id, level, to, from)?;
    }
    Ok(())
}

/// What one successful `uploadFile.icc` request completed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Completion {
    /// The original's final name in its folder, size and mtime.
    pub origin: Option<(String, i64, i64)>,
    pub thumb: bool,
    pub screen: bool,
}

pub(crate) fn complete(
    c: &Connection,
    id: FileId,
    done: &Completion,
    now: i64,
) -> Result<(), DbError> {
    if let Some((name, size, mtime_ns)) = &done.origin {
        c.prepare_cached(
            "UPDATE files SET status_origin = 3, disk_name = ?2, size = ?3, mtime_ns = ?4, \
             charged_bytes = ?3 WHERE id = ?1",
        )?
        .execute(params![id.0, name, size, mtime_ns])?;
    }
    for (done, level) in [
        (done.thumb, ThumbLevel::Small),
        (done.screen, ThumbLevel::Screen),
    ] {
        if done {
            super::files::set_thumb_status(c, id, level, PartStatus::Uploaded, None)?;
        }
    }
    touch(c, id, now)
}

/// The fields `updateFile.icc` may change; `None` leaves a column alone.
#[derive(Debug, Clone, Default)]
pub(crate) struct FileEdit {
    /// A virtual move: the catalog and its root, looked up by `edit` from
    /// the catalog a client asked for (`None` from the handler).
    pub catalog: Option<(CatalogId, CatalogId)>,
    pub name: Option<String>,
    pub ext: Option<String>,
    pub size: Option<i64>,
    pub file_type: Option<i64>,
    pub status_thumb: Option<i64>,
    pub status_screen: Option<i64>,
    pub create_time: Option<i64>,
    pub import_time: Option<i64>,
    pub last_modify: Option<i64>,
    pub duration: Option<f64>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub orientation: Option<i64>,
    pub longitude: Option<f64>,
    pub latitude: Option<f64>,
    pub memo: Option<String>,
    pub help_int: Option<i64>,
    pub help_text: Option<String>,
}

impl FileEdit {
    /// True when no field was given (→ −10010).
    pub(crate) fn is_empty(&self) -> bool {
        let FileEdit {
            catalog,
            name,
            ext,
            size,
            file_type,
            status_thumb,
            status_screen,
            create_time,
            import_time,
            last_modify,
            duration,
            width,
            height,
            orientation,
            longitude,
            latitude,
            memo,
            help_int,
            help_text,
        } = self;
        catalog.is_none()
            && name.is_none()
            && ext.is_none()
            && size.is_none()
            && file_type.is_none()
            && status_thumb.is_none()
            && status_screen.is_none()
            && create_time.is_none()
            && import_time.is_none()
            && last_modify.is_none()
            && duration.is_none()
            && width.is_none()
            && height.is_none()
            && orientation.is_none()
            && longitude.is_none()
            && latitude.is_none()
            && memo.is_none()
            && help_int.is_none()
            && help_text.is_none()
    }
}

/// Applies an edit; `last_modify` becomes `now` unless the edit sets it.
pub(crate) fn update(c: &Connection, id: FileId, e: &FileEdit, now: i64) -> Result<(), DbError> {
    let (cat, root) = match e.catalog {
        Some((c, r)) => (Some(c.0), Some(r.0)),
        None => (None, None),
    };
    c.prepare_cached(
        "UPDATE files SET catalog_id = coalesce(?2, catalog_id), root_id = coalesce(?3, root_id), \
         name = coalesce(?4, name), ext = coalesce(?5, ext), size = coalesce(?6, size), \
         type = coalesce(?7, type), status_thumb = coalesce(?8, status_thumb), \
         status_screen = coalesce(?9, status_screen), \
         create_time = coalesce(?10, create_time), import_time = coalesce(?11, import_time), \
         last_modify = coalesce(?12, ?20), duration = coalesce(?13, duration), \
         width = coalesce(?14, width), height = coalesce(?15, height), \
         orientation = coalesce(?16, orientation), longitude = coalesce(?17, longitude), \
         latitude = coalesce(?18, latitude), memo = coalesce(?19, memo), \
         help_int = coalesce(?21, help_int), help_text = coalesce(?22, help_text) WHERE id = ?1",
    )?
    .execute(params![
        id.0,
        cat,
        root,
        e.name,
        e.ext,
        e.size,
        e.file_type,
        e.status_thumb,
        e.status_screen,
        e.create_time,
        e.import_time,
        e.last_modify,
        e.duration,
        e.width,
        e.height,
        e.orientation,
        e.longitude,
        e.latitude,
        e.memo,
        now,
        e.help_int,
        e.help_text,
    ])?;
    Ok(())
}

/// The path of the library a file lives in (its staging area is under it).
pub(crate) fn library_path_of(c: &Connection, id: FileId) -> Result<Option<String>, DbError> {
    use rusqlite::OptionalExtension;
    Ok(c.prepare_cached(
        "SELECT l.path FROM files f JOIN catalogs c ON c.id = f.real_catalog_id \
             JOIN libraries l ON l.id = c.library_id WHERE f.id = ?1",
    )?
    .query_row([id.0], |r| r.get(0))
    .optional()?)
}

/// Whether a record already uses `name` in folder `cat`, or an unfinished
/// completion chose it (see [`UploadMove`]).
pub(crate) fn name_taken(c: &Connection, cat: CatalogId, name: &str) -> Result<bool, DbError> {
    Ok(c.prepare_cached(
        "SELECT EXISTS(SELECT 1 FROM files WHERE real_catalog_id = ?1 AND disk_name = ?2) \
         OR EXISTS(SELECT 1 FROM upload_moves m JOIN files f ON f.id = m.file_id \
         WHERE m.kind = 'complete' AND f.real_catalog_id = ?1 AND m.disk_name = ?2)",
    )?
    .query_row(rusqlite::params![cat.0, name], |r| r.get(0))?)
}

/// Bytes charged to `user`'s quota (announced sizes of pending uploads,
/// stored sizes of complete ones), leaving out file `except`.
pub(crate) fn charged_to(
    c: &Connection,
    user: UserId,
    except: Option<FileId>,
) -> Result<i64, DbError> {
    Ok(c.prepare_cached(
        "SELECT coalesce(sum(charged_bytes), 0) FROM files WHERE upload_user_id = ?1 \
         AND id IS NOT ?2",
    )?
    .query_row(params![user.0, except.map(|f| f.0)], |r| r.get(0))?)
}

/// What an [`UploadMove`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MoveKind {
    /// Parts of one request become complete.
    Complete,
    /// A complete original becomes pending again.
    Reopen,
}

/// A move of an upload's bytes in progress (table `upload_moves`, see
/// `migrations/0006_upload_moves.sql`): written before the move, deleted with the record
/// of its result, finished at start after a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UploadMove {
    pub file_id: FileId,
    pub kind: MoveKind,
    /// Complete: the original's chosen name in its folder (None: the
    /// original is not part of it). Reopen: the name it leaves.
    pub disk_name: Option<String>,
    pub thumb: bool,
    pub screen: bool,
    /// Reopen below the stored size: where the old original goes.
    pub trash_path: Option<String>,
}

fn move_from_row(r: &rusqlite::Row) -> rusqlite::Result<UploadMove> {
    let kind: String = r.get(1)?;
    Ok(UploadMove {
        file_id: FileId(r.get(0)?),
        kind: if kind == "reopen" {
            MoveKind::Reopen
        } else {
            MoveKind::Complete
        },
        disk_name: r.get(2)?,
        thumb: r.get(3)?,
        screen: r.get(4)?,
        trash_path: r.get(5)?,
    })
}

const MOVE_COLS: &str = "m.file_id, m.kind, m.disk_name, m.thumb, m.screen, m.trash_path";

/// Writes (or replaces) the move of a file.
pub(crate) fn put_move(c: &Connection, m: &UploadMove) -> Result<(), DbError> {
    let kind = match m.kind {
        MoveKind::Complete => "complete",
        MoveKind::Reopen => "reopen",
    };
    c.prepare_cached(
        "INSERT OR REPLACE INTO upload_moves(file_id, kind, disk_name, thumb, screen, trash_path) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        m.file_id.0,
        kind,
        m.disk_name,
        m.thumb,
        m.screen,
        m.trash_path
    ])?;
    Ok(())
}

pub(crate) fn delete_move(c: &Connection, id: FileId) -> Result<(), DbError> {
    c.prepare_cached("DELETE FROM upload_moves WHERE file_id = ?1")?
        .execute([id.0])?;
    Ok(())
}

pub(crate) fn move_of(c: &Connection, id: FileId) -> Result<Option<UploadMove>, DbError> {
    use rusqlite::OptionalExtension;
    Ok(c.prepare_cached(&format!(
        "SELECT {MOVE_COLS} FROM upload_moves m WHERE m.file_id = ?1"
    ))?
    .query_row([id.0], move_from_row)
    .optional()?)
}

/// Unfinished moves of files living in library `lib`.
pub(crate) fn moves_in_library(c: &Connection, lib: LibraryId) -> Result<Vec<UploadMove>, DbError> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {MOVE_COLS} FROM upload_moves m JOIN files f ON f.id = m.file_id \
         JOIN catalogs c ON c.id = f.real_catalog_id WHERE c.library_id = ?1 ORDER BY m.file_id"
    ))?;
    let rows = st.query_map([lib.0], move_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Puts a reopened original back as it was: complete, under `disk_name`,
/// with its size and mtime (the reopen failed before anything moved).
pub(crate) fn undo_reopen(
    c: &Connection,
    id: FileId,
    disk_name: &str,
    size: i64,
    mtime_ns: Option<i64>,
    last_modify: i64,
) -> Result<(), DbError> {
    c.prepare_cached(
        "UPDATE files SET status_origin = 3, disk_name = ?2, size = ?3, mtime_ns = ?4, \
         last_modify = ?5 WHERE id = ?1",
    )?
    .execute(params![id.0, disk_name, size, mtime_ns, last_modify])?;
    Ok(())
}

/// Whether any record of library `lib` has its original in a folder of the
/// library (pending uploads have theirs in the hidden staging folder, so
/// they say nothing about whether the root should be empty).
pub(crate) fn any_stored_in_library(c: &Connection, lib: LibraryId) -> Result<bool, DbError> {
    Ok(c.prepare_cached(
        "SELECT EXISTS(SELECT 1 FROM files f JOIN catalogs c ON c.id = f.real_catalog_id \
         WHERE c.library_id = ?1 AND f.status_origin <> 2)",
    )?
    .query_row([lib.0], |r| r.get(0))?)
}
