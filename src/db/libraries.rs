//! SQL for `libraries`: one row per media tree (configured or a user root).

use super::DbError;
use crate::model::{CatalogId, Library, LibraryId};
use rusqlite::{params, Connection, OptionalExtension, Row};

const COLS: &str = "id, path, kind, root_id, device, online";

fn from_row(r: &Row) -> rusqlite::Result<Library> {
    Ok(Library {
        id: LibraryId(r.get(0)?),
        path: r.get(1)?,
        kind: r.get(2)?,
        root_id: r.get::<_, Option<i64>>(3)?.map(CatalogId),
        device: r.get(4)?,
        online: r.get::<_, i64>(5)? != 0,
    })
}

pub fn list(c: &Connection) -> Result<Vec<Library>, DbError> {
    let mut st = c.prepare_cached(&format!("SELECT {COLS} FROM libraries ORDER BY id"))?;
    let rows = st.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn by_id(c: &Connection, id: LibraryId) -> Result<Option<Library>, DbError> {
    Ok(
        c.prepare_cached(&format!("SELECT {COLS} FROM libraries WHERE id = ?1"))?
            .query_row([id.0], from_row)
            .optional()?,
    )
}

pub fn by_path(c: &Connection, path: &str) -> Result<Option<Library>, DbError> {
    Ok(
        c.prepare_cached(&format!("SELECT {COLS} FROM libraries WHERE path = ?1"))?
            .query_row([path], from_row)
            .optional()?,
    )
}

pub(crate) fn insert(c: &Connection, path: &str, kind: &str) -> Result<LibraryId, DbError> {
    c.execute(
        "INSERT INTO libraries(path, kind) VALUES (?1, ?2)",
        params![path, kind],
    )?;
    Ok(LibraryId(c.last_insert_rowid()))
}

pub(crate) fn set_root(c: &Connection, id: LibraryId, root: CatalogId) -> Result<(), DbError> {
    c.execute(
        "UPDATE libraries SET root_id = ?1 WHERE id = ?2",
        params![root.0, id.0],
    )?;
    Ok(())
}

/// Sets a library's online state (and device, when given). Returns whether
/// the state changed, read in the same transaction: of several callers
/// noticing the same change (the watcher, a scan, an upload), exactly one
/// sees `true` and reports it.
pub(crate) fn set_online(
    c: &Connection,
    id: LibraryId,
    online: bool,
    device: Option<i64>,
) -> Result<bool, DbError> {
    let was: Option<bool> = c
        .prepare_cached("SELECT online FROM libraries WHERE id = ?1")?
        .query_row([id.0], |r| Ok(r.get::<_, i64>(0)? != 0))
        .optional()?;
    c.execute(
        "UPDATE libraries SET online = ?1, device = coalesce(?2, device) WHERE id = ?3",
        params![online as i64, device, id.0],
    )?;
    Ok(was.is_some_and(|w| w != online))
}

pub(crate) fn set_scanned(c: &Connection, id: LibraryId, now: i64) -> Result<(), DbError> {
    c.execute(
        "UPDATE libraries SET last_scan = ?1 WHERE id = ?2",
        params![now, id.0],
    )?;
    Ok(())
}

/// The identity marker recorded for a library (see `library::roots`).
pub(crate) fn marker(c: &Connection, id: LibraryId) -> Result<Option<String>, DbError> {
    Ok(
        c.prepare_cached("SELECT marker FROM libraries WHERE id = ?1")?
            .query_row([id.0], |r| r.get::<_, Option<String>>(0))
            .optional()?
            .flatten(),
    )
}

pub(crate) fn set_marker(c: &Connection, id: LibraryId, marker: &str) -> Result<(), DbError> {
    c.execute(
        "UPDATE libraries SET marker = ?1 WHERE id = ?2",
        params![marker, id.0],
    )?;
    Ok(())
}

/// Records how many removals the mass-deletion guard held back (0 = none).
pub(crate) fn set_held_deletions(c: &Connection, id: LibraryId, n: usize) -> Result<(), DbError> {
    c.execute(
        "UPDATE libraries SET held_deletions = ?1 WHERE id = ?2",
        params![n as i64, id.0],
    )?;
    Ok(())
}

/// `(path, held removals)` of every library whose last scan held some back.
pub fn held_deletions(c: &Connection) -> Result<Vec<(String, i64)>, DbError> {
    let mut st = c.prepare_cached(
        "SELECT path, held_deletions FROM libraries WHERE held_deletions > 0 ORDER BY id",
    )?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
