//! SQL for `trash` (deleted originals and folders kept on the same disk) and
//! the lookups `deleteCatalog.icc` needs (spec §11).

use super::DbError;
use crate::model::{CatalogId, FileId, UserId};
use rusqlite::{params, Connection, OptionalExtension, Row};

/// One trashed original or folder.
#[derive(Debug, Clone, PartialEq)]
pub struct TrashEntry {
    pub id: i64,
    pub kind: String,
    pub trash_path: String,
    pub original_path: String,
    pub name: String,
    pub size: Option<i64>,
    pub deleted_by: Option<UserId>,
    pub deleted_at: i64,
}

const COLS: &str = "id, kind, trash_path, original_path, name, size, deleted_by, deleted_at";

fn from_row(r: &Row) -> rusqlite::Result<TrashEntry> {
    Ok(TrashEntry {
        id: r.get(0)?,
        kind: r.get(1)?,
        trash_path: r.get(2)?,
        original_path: r.get(3)?,
        name: r.get(4)?,
        size: r.get(5)?,
        deleted_by: r.get::<_, Option<i64>>(6)?.map(UserId),
        deleted_at: r.get(7)?,
    })
}

pub(crate) fn insert(c: &Connection, e: &TrashEntry) -> Result<i64, DbError> {
    c.prepare_cached(
        "INSERT INTO trash(kind, trash_path, original_path, name, size, deleted_by, deleted_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        e.kind,
        e.trash_path,
        e.original_path,
        e.name,
        e.size,
        e.deleted_by.map(|u| u.0),
        e.deleted_at
    ])?;
    Ok(c.last_insert_rowid())
}

/// Records that trash entry `video` holds the video of the Live Photo
/// whose picture is entry `photo`: they are restored together.
pub(crate) fn link_live(c: &Connection, video: i64, photo: i64) -> Result<(), DbError> {
    c.prepare_cached("UPDATE trash SET live_photo_entry = ?2 WHERE id = ?1")?
        .execute([video, photo])?;
    Ok(())
}

/// The Live Photo entry `id` belongs to, as (photo entry, video entry):
/// `id` is either; `(id, None)` when it is no half of one (or its other
/// half left the trash).
pub(crate) fn live_pair(c: &Connection, id: i64) -> Result<(i64, Option<i64>), DbError> {
    let photo: Option<i64> = c
        .prepare_cached(
            "SELECT p.id FROM trash v JOIN trash p ON p.id = v.live_photo_entry WHERE v.id = ?1",
        )?
        .query_row([id], |r| r.get(0))
        .optional()?;
    if let Some(p) = photo {
        return Ok((p, Some(id)));
    }
    let video: Option<i64> = c
        .prepare_cached("SELECT id FROM trash WHERE live_photo_entry = ?1 ORDER BY id LIMIT 1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    Ok((id, video))
}

pub(crate) fn list(c: &Connection) -> Result<Vec<TrashEntry>, DbError> {
    let mut st = c.prepare_cached(&format!("SELECT {COLS} FROM trash ORDER BY id"))?;
    let rows = st.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn by_id(c: &Connection, id: i64) -> Result<Option<TrashEntry>, DbError> {
    Ok(
        c.prepare_cached(&format!("SELECT {COLS} FROM trash WHERE id = ?1"))?
            .query_row([id], from_row)
            .optional()?,
    )
}

/// Entries deleted before `before` (unix seconds).
pub(crate) fn expired(c: &Connection, before: i64) -> Result<Vec<TrashEntry>, DbError> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {COLS} FROM trash WHERE deleted_at < ?1 ORDER BY id"
    ))?;
    let rows = st.query_map([before], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn delete(c: &Connection, id: i64) -> Result<(), DbError> {
    c.prepare_cached("DELETE FROM trash WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// `ids` and all their descendants by shown parent (the set D of spec §11).
pub(crate) fn with_descendants(
    c: &Connection,
    ids: &[CatalogId],
) -> Result<Vec<CatalogId>, DbError> {
    let mut st = c.prepare_cached(
        "WITH RECURSIVE d(id) AS (SELECT value FROM json_each(?1) \
         UNION SELECT c.id FROM catalogs c JOIN d ON c.parent_id = d.id) \
         SELECT id FROM d ORDER BY id",
    )?;
    let list = super::catalogs::id_list(ids.iter().map(|c| c.0));
    let rows = st.query_map([list], |r| Ok(CatalogId(r.get(0)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Files shown in one of `cats`.
pub(crate) fn files_shown_in(c: &Connection, cats: &[CatalogId]) -> Result<Vec<FileId>, DbError> {
    let mut st = c.prepare_cached(
        "SELECT id FROM files WHERE catalog_id IN (SELECT value FROM json_each(?1)) ORDER BY id",
    )?;
    let list = super::catalogs::id_list(cats.iter().map(|c| c.0));
    let rows = st.query_map([list], |r| Ok(FileId(r.get(0)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Files living in one of `cats` (real folder).
pub(crate) fn files_living_in(c: &Connection, cats: &[CatalogId]) -> Result<Vec<FileId>, DbError> {
    let mut st = c.prepare_cached(
        "SELECT id FROM files WHERE real_catalog_id IN (SELECT value FROM json_each(?1)) \
         ORDER BY id",
    )?;
    let list = super::catalogs::id_list(cats.iter().map(|c| c.0));
    let rows = st.query_map([list], |r| Ok(FileId(r.get(0)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Gives a file a new real folder and name (after moving it on disk).
pub(crate) fn set_real_location(
    c: &Connection,
    id: FileId,
    real: CatalogId,
    disk_name: &str,
) -> Result<(), DbError> {
    c.prepare_cached("UPDATE files SET real_catalog_id = ?2, disk_name = ?3 WHERE id = ?1")?
        .execute(params![id.0, real.0, disk_name])?;
    Ok(())
}

pub(crate) fn set_catalog_path(c: &Connection, id: CatalogId, path: &str) -> Result<(), DbError> {
    c.prepare_cached("UPDATE catalogs SET path = ?2 WHERE id = ?1")?
        .execute(params![id.0, path])?;
    Ok(())
}

/// Deletes catalog records; a library whose root goes loses its root (the
/// caller re-creates a configured library's at once; a user's root is
/// re-created at login).
pub(crate) fn delete_catalogs(c: &Connection, ids: &[CatalogId]) -> Result<(), DbError> {
    let list = super::catalogs::id_list(ids.iter().map(|c| c.0));
    c.prepare_cached(
        "UPDATE libraries SET root_id = NULL WHERE root_id IN (SELECT value FROM json_each(?1))",
    )?
    .execute([&list])?;
    c.prepare_cached("DELETE FROM catalogs WHERE id IN (SELECT value FROM json_each(?1))")?
        .execute([&list])?;
    Ok(())
}
