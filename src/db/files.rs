//! SQL for `files`.

use super::DbError;
use crate::model::{
    CatalogId, FileId, FileRecord, LibraryId, MediaInfo, PartStatus, ThumbLevel, UserId,
};
use rusqlite::{params, Connection, OptionalExtension, Row};

const COLS: &str = "f.id, f.catalog_id, f.real_catalog_id, f.root_id, c.library_id, \
     c.path || '/' || f.disk_name, f.name, f.ext, f.create_time, f.upload_time, f.import_time, \
     f.last_modify, f.size, f.mtime_ns, f.type, f.duration, f.width, f.height, f.orientation, \
     f.memo, f.help_int, f.help_text, f.upload_user_id, f.status_origin, f.status_thumb, \
     f.status_screen, f.inode, \
     (SELECT v.id FROM files v WHERE v.live_photo_id = f.id ORDER BY v.id LIMIT 1), \
     f.live_photo_id";

fn from_row(r: &Row) -> rusqlite::Result<FileRecord> {
    Ok(FileRecord {
        id: FileId(r.get(0)?),
        catalog_id: CatalogId(r.get(1)?),
        real_catalog_id: CatalogId(r.get(2)?),
        root_id: CatalogId(r.get(3)?),
        library_id: LibraryId(r.get(4)?),
        path: r.get(5)?,
        name: r.get(6)?,
        ext: r.get(7)?,
        create_time: r.get(8)?,
        upload_time: r.get(9)?,
        import_time: r.get(10)?,
        last_modify: r.get(11)?,
        size: r.get(12)?,
        mtime_ns: r.get(13)?,
        file_type: r.get(14)?,
        duration: r.get(15)?,
        width: r.get(16)?,
        height: r.get(17)?,
        orientation: r.get(18)?,
        memo: r.get(19)?,
        help_int: r.get(20)?,
        help_text: r.get(21)?,
        upload_user_id: r.get::<_, Option<i64>>(22)?.map(UserId),
        status_origin: r.get(23)?,
        status_thumb: r.get(24)?,
        status_screen: r.get(25)?,
        inode: r.get(26)?,
        live_video_id: r.get::<_, Option<i64>>(27)?.map(FileId),
        live_photo_id: r.get::<_, Option<i64>>(28)?.map(FileId),
    })
}

pub fn by_id(c: &Connection, id: FileId) -> Result<Option<FileRecord>, DbError> {
    Ok(c.prepare_cached(&format!(
        "SELECT {COLS} FROM files f JOIN catalogs c ON c.id = f.real_catalog_id WHERE f.id = ?1"
    ))?
    .query_row([id.0], from_row)
    .optional()?)
}

/// The file if it belongs to one of `roots`.
pub(crate) fn accessible(
    c: &Connection,
    id: FileId,
    roots: &[CatalogId],
) -> Result<Option<FileRecord>, DbError> {
    Ok(by_id(c, id)?.filter(|f| roots.contains(&f.root_id)))
}

/// Records for `ids`, in the order given (missing ids are skipped).
pub fn by_ids(c: &Connection, ids: &[FileId]) -> Result<Vec<FileRecord>, DbError> {
    // One statement for the whole page (a listing page is up to 10,000
    // ids): json_each keeps the order given.
    let mut st = c.prepare_cached(&format!(
        "SELECT {COLS} FROM json_each(?1) j JOIN files f ON f.id = j.value \
         JOIN catalogs c ON c.id = f.real_catalog_id ORDER BY j.key"
    ))?;
    let list = super::catalogs::id_list(ids.iter().map(|i| i.0));
    let rows = st.query_map([list], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn set_help(
    c: &Connection,
    id: FileId,
    help_int: Option<i64>,
    help_text: Option<&str>,
    now: i64,
) -> Result<bool, DbError> {
    let n = c.execute(
        "UPDATE files SET help_int = coalesce(?1, help_int), help_text = coalesce(?2, help_text), \
         last_modify = ?3 WHERE id = ?4",
        params![help_int, help_text, now, id.0],
    )?;
    Ok(n > 0)
}

/// The one writer of a thumbnail level's status on its own
/// (`status_thumb` for the small level, `status_screen` for the screen
/// one; spec §10): sets it to `to`, only where it is `only_from` when that
/// is given. Returns whether the row changed. (The scanner's
/// `update_scanned` and `updateFile.icc`'s `uploads::update` also set it,
/// with the rest of a record.)
pub(crate) fn set_thumb_status(
    c: &Connection,
    id: FileId,
    level: ThumbLevel,
    to: PartStatus,
    only_from: Option<PartStatus>,
) -> Result<bool, DbError> {
    let sql = match level {
        ThumbLevel::Small => {
            "UPDATE files SET status_thumb = ?2 WHERE id = ?1 AND (?3 IS NULL OR status_thumb = ?3)"
        }
        ThumbLevel::Screen => {
            "UPDATE files SET status_screen = ?2 WHERE id = ?1 AND (?3 IS NULL OR status_screen = ?3)"
        }
        // The browser view has no status column: nothing is recorded.
        ThumbLevel::View => return Ok(false),
    };
    let n =
        c.prepare_cached(sql)?
            .execute(params![id.0, to as i64, only_from.map(|s| s as i64)])?;
    Ok(n > 0)
}

/// Records that the server could not build the thumbnail `levels` it makes
/// of file `id` (status 0 → 1, sticky until the original changes: the
/// scanner's `update_scanned` resets it). Client-uploaded levels keep
/// their status.
pub(crate) fn mark_thumbs_failed(
    c: &Connection,
    id: FileId,
    levels: &[ThumbLevel],
) -> Result<(), DbError> {
    for level in [ThumbLevel::Small, ThumbLevel::Screen] {
        if levels.contains(&level) {
            set_thumb_status(
                c,
                id,
                level,
                PartStatus::BuildError,
                Some(PartStatus::Local),
            )?;
        }
    }
    Ok(())
}

/// The recorded inode of file `id` (`None` when the file is unknown or its
/// inode was never recorded).
pub(crate) fn inode_of(c: &Connection, id: FileId) -> Result<Option<i64>, DbError> {
    Ok(c.prepare_cached("SELECT inode FROM files WHERE id = ?1")?
        .query_row([id.0], |r| r.get(0))
        .optional()?
        .flatten())
}

/// What the scanner needs to know about a known file to decide whether it
/// changed.
#[derive(Debug, Clone)]
pub(crate) struct KnownFile {
    pub id: FileId,
    pub real_catalog_id: CatalogId,
    pub disk_name: String,
    pub size: i64,
    pub mtime_ns: Option<i64>,
    pub inode: Option<i64>,
    /// Shown in its real folder (not virtually moved elsewhere).
    pub shown_in_real: bool,
    /// Display name equals the name on disk (an imported file).
    pub name_is_disk_name: bool,
    /// A file that may be half of a Live Photo, not probed for its content
    /// identifier yet (recorded before migration 7; an upload completed
    /// before uploads were read for it, or by `upload::recover` after a
    /// crash): the scan probes it again although it did not change.
    pub needs_content_id: bool,
}

/// Records the content identifier (empty: none) of a file recorded before
/// migration 7, nothing else: its `last_modify` and thumbnails stay.
pub(crate) fn set_content_id(c: &Connection, id: FileId, content_id: &str) -> Result<(), DbError> {
    c.prepare_cached("UPDATE files SET content_id = ?2 WHERE id = ?1")?
        .execute(params![id.0, content_id])?;
    Ok(())
}

/// Every file record living in a folder of `lib`. Pending uploads are left
/// out: their bytes are staged under a hidden name a scan never sees, and a
/// scan must not take them for deleted files.
pub(crate) fn known_in_library(c: &Connection, lib: LibraryId) -> Result<Vec<KnownFile>, DbError> {
    let mut st = c.prepare_cached(
        "SELECT f.id, f.real_catalog_id, f.disk_name, f.size, f.mtime_ns, f.inode, \
         f.catalog_id = f.real_catalog_id, f.name = f.disk_name, \
         f.content_id IS NULL AND f.ext IN ('heic', 'heif', 'jpg', 'jpeg', 'mov') FROM files f \
         JOIN catalogs c ON c.id = f.real_catalog_id WHERE c.library_id = ?1 \
         AND f.status_origin <> 2",
    )?;
    let rows = st.query_map([lib.0], |r| {
        Ok(KnownFile {
            id: FileId(r.get(0)?),
            real_catalog_id: CatalogId(r.get(1)?),
            disk_name: r.get(2)?,
            size: r.get(3)?,
            mtime_ns: r.get(4)?,
            inode: r.get(5)?,
            shown_in_real: r.get(6)?,
            name_is_disk_name: r.get(7)?,
            needs_content_id: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Whether any file record lives in a folder of `lib`.
pub(crate) fn any_in_library(c: &Connection, lib: LibraryId) -> Result<bool, DbError> {
    Ok(c.prepare_cached(
        "SELECT EXISTS(SELECT 1 FROM files f JOIN catalogs c ON c.id = f.real_catalog_id \
         WHERE c.library_id = ?1)",
    )?
    .query_row([lib.0], |r| r.get(0))?)
}

/// A scanned file, ready to be written.
#[derive(Debug, Clone)]
pub struct ScannedFile {
    pub catalog_id: CatalogId,
    pub root_id: CatalogId,
    pub disk_name: String,
    pub ext: String,
    pub size: i64,
    pub mtime_ns: i64,
    pub inode: i64,
    pub create_time: i64,
    pub file_type: i64,
    pub info: MediaInfo,
}

pub fn insert_scanned(c: &Connection, f: &ScannedFile, now: i64) -> Result<FileId, DbError> {
    c.prepare_cached(
        "INSERT INTO files(catalog_id, real_catalog_id, root_id, disk_name, name, ext, create_time, \
         import_time, last_modify, size, mtime_ns, inode, type, duration, width, height, orientation, \
         content_id) \
         VALUES (?1, ?1, ?2, ?3, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        f.catalog_id.0,
        f.root_id.0,
        f.disk_name,
        f.ext,
        f.create_time,
        now,
        f.size,
        f.mtime_ns,
        f.inode,
        f.file_type,
        f.info.duration,
        f.info.width,
        f.info.height,
        f.info.orientation,
        f.info.content_id.as_deref().unwrap_or(""),
    ])?;
    Ok(FileId(c.last_insert_rowid()))
}

/// Refreshes the media fields of a file whose content changed on disk; the
/// id, display name, memo and help info stay. Generated-thumbnail statuses
/// reset so thumbnails are rebuilt.
pub(crate) fn update_scanned(
    c: &Connection,
    id: FileId,
    f: &ScannedFile,
    now: i64,
) -> Result<(), DbError> {
    c.prepare_cached(
        "UPDATE files SET size = ?2, mtime_ns = ?3, inode = ?4, type = ?5, duration = ?6, \
         width = ?7, height = ?8, orientation = ?9, last_modify = ?10, content_id = ?11, \
         status_thumb = CASE status_thumb WHEN 1 THEN 0 ELSE status_thumb END, \
         status_screen = CASE status_screen WHEN 1 THEN 0 ELSE status_screen END \
         WHERE id = ?1",
    )?
    .execute(params![
        id.0,
        f.size,
        f.mtime_ns,
        f.inode,
        f.file_type,
        f.info.duration,
        f.info.width,
        f.info.height,
        f.info.orientation,
        now,
        f.info.content_id.as_deref().unwrap_or(""),
    ])?;
    Ok(())
}

/// Records that a known file was renamed or moved on disk: same id, memo,
/// help info and share links; new folder and name.
pub(crate) fn moved(
    c: &Connection,
    k: &KnownFile,
    to_catalog: CatalogId,
    root_id: CatalogId,
    disk_name: &str,
    now: i64,
) -> Result<(), DbError> {
    c.prepare_cached(
        "UPDATE files SET real_catalog_id = ?2, disk_name = ?3, root_id = ?4, last_modify = ?5, \
         catalog_id = CASE WHEN ?6 THEN ?2 ELSE catalog_id END, \
         name = CASE WHEN ?7 THEN ?3 ELSE name END, \
         ext = CASE WHEN ?7 THEN ?8 ELSE ext END \
         WHERE id = ?1",
    )?
    .execute(params![
        k.id.0,
        to_catalog.0,
        disk_name,
        root_id.0,
        now,
        k.shown_in_real,
        k.name_is_disk_name,
        std::path::Path::new(disk_name)
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default(),
    ])?;
    Ok(())
}

/// Like [`insert_scanned`], but a row already recorded for the same folder
/// and name (an upload or edit that committed while the scan ran) wins:
/// returns `None` and changes nothing.
pub(crate) fn insert_scanned_if_new(
    c: &Connection,
    f: &ScannedFile,
    now: i64,
) -> Result<Option<FileId>, DbError> {
    let taken: bool = c
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM files WHERE real_catalog_id = ?1 AND disk_name = ?2)",
        )?
        .query_row(params![f.catalog_id.0, f.disk_name], |r| r.get(0))?;
    if taken {
        return Ok(None);
    }
    insert_scanned(c, f, now).map(Some)
}

/// How many files are recorded.
pub(crate) fn count(c: &Connection) -> Result<i64, DbError> {
    Ok(c.prepare_cached("SELECT count(*) FROM files")?
        .query_row([], |r| r.get(0))?)
}

/// The ids of every recorded file.
pub(crate) fn all_ids(c: &Connection) -> Result<std::collections::HashSet<i64>, DbError> {
    let mut st = c.prepare_cached("SELECT id FROM files")?;
    let rows = st.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn delete(c: &Connection, id: FileId) -> Result<(), DbError> {
    // A Live Photo's video left behind is listed again. Cleared here, not
    // only by the foreign key's SET NULL: the listing learns of changed
    // rows from the update hook, which a foreign-key action may not call.
    c.prepare_cached("UPDATE files SET live_photo_id = NULL WHERE live_photo_id = ?1")?
        .execute([id.0])?;
    c.prepare_cached("DELETE FROM files WHERE id = ?1")?
        .execute([id.0])?;
    Ok(())
}

/// A file that may be half of a Live Photo (see `library::live`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LiveCandidate {
    pub id: FileId,
    pub real_catalog_id: CatalogId,
    /// The name pairs are made by: the name on disk of a file the scan
    /// found; of an upload, the client's name (`IMG_1234.HEIC`), as its
    /// name on disk is the server's (`2026-12-03_17.heic`).
    pub pair_name: String,
    pub file_type: i64,
    /// '' when it has none.
    pub content_id: String,
    /// Of a video: the photo it is linked to now.
    pub live_photo_id: Option<FileId>,
}

/// The files of `folders` (real folders) that have a content identifier
/// or are linked to a photo: complete files only. A file with any part
/// pending (a client thumbnail sent again, too) is hidden from `files.icc`
/// as `listing` hides it, so a scan meanwhile must not pair it again:
/// `library::live::part_pending` parted it so its other half stays listed.
pub(crate) fn live_candidates(
    c: &Connection,
    folders: &[CatalogId],
) -> Result<Vec<LiveCandidate>, DbError> {
    let mut st = c.prepare_cached(
        "SELECT id, real_catalog_id, \
         CASE WHEN upload_user_id IS NULL THEN disk_name ELSE name END, \
         type, coalesce(content_id, ''), live_photo_id \
         FROM files WHERE real_catalog_id IN (SELECT value FROM json_each(?1)) \
         AND status_origin <> 2 AND status_thumb <> 2 AND status_screen <> 2 AND (content_id <> '' OR live_photo_id IS NOT NULL) ORDER BY id",
    )?;
    let list = super::catalogs::id_list(folders.iter().map(|c| c.0));
    let rows = st.query_map([list], |r| {
        Ok(LiveCandidate {
            id: FileId(r.get(0)?),
            real_catalog_id: CatalogId(r.get(1)?),
            pair_name: r.get(2)?,
            file_type: r.get(3)?,
            content_id: r.get(4)?,
            live_photo_id: r.get::<_, Option<i64>>(5)?.map(FileId),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Links video `video` to its photo (`None`: unlinks it).
pub(crate) fn set_live_photo(
    c: &Connection,
    video: FileId,
    photo: Option<FileId>,
) -> Result<(), DbError> {
    c.prepare_cached("UPDATE files SET live_photo_id = ?2 WHERE id = ?1")?
        .execute(params![video.0, photo.map(|p| p.0)])?;
    Ok(())
}

/// Shows file `id` in catalog `cat` of tree `root` (a virtual move, as
/// `updateFile.icc`'s `catalogId` makes): for the video of a Live Photo
/// whose photo moved.
pub(crate) fn set_shown_catalog(
    c: &Connection,
    id: FileId,
    cat: CatalogId,
    root: CatalogId,
    now: i64,
) -> Result<(), DbError> {
    c.prepare_cached(
        "UPDATE files SET catalog_id = ?2, root_id = ?3, last_modify = ?4 WHERE id = ?1",
    )?
    .execute(params![id.0, cat.0, root.0, now])?;
    Ok(())
}
