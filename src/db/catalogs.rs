//! SQL for `catalogs` (folders). Access control is expressed by the caller's
//! root set: a catalog is visible when its `root_id` is in that set.

use super::DbError;
use crate::model::{Catalog, CatalogId, LibraryId};
use rusqlite::{params, Connection, OptionalExtension, Row};

/// `fileCount` counts a Live Photo once, as `files.icc` lists it: all the
/// catalog's files less its paired videos, two index-only counts
/// (`files_catalog`, `files_live_catalog`).
const COLS: &str = "c.id, c.root_id, c.parent_id, c.library_id, c.path, c.name, c.create_time, \
     c.last_modify, c.memo, c.help_int, c.help_text, \
     (SELECT count(*) FROM catalogs s WHERE s.parent_id = c.id), \
     (SELECT count(*) FROM files f WHERE f.catalog_id = c.id) - \
     (SELECT count(*) FROM files v WHERE v.catalog_id = c.id AND v.live_photo_id IS NOT NULL)";

fn from_row(r: &Row) -> rusqlite::Result<Catalog> {
    let parent: i64 = r.get(2)?;
    Ok(Catalog {
        id: CatalogId(r.get(0)?),
        root_id: CatalogId(r.get(1)?),
        parent_id: (parent >= 0).then_some(CatalogId(parent)),
        library_id: LibraryId(r.get(3)?),
        path: r.get(4)?,
        name: r.get(5)?,
        create_time: r.get(6)?,
        last_modify: r.get(7)?,
        memo: r.get(8)?,
        help_int: r.get(9)?,
        help_text: r.get(10)?,
        sub_catalog_count: r.get(11)?,
        file_count: r.get(12)?,
    })
}

/// A JSON array of ids, bound as one parameter and expanded with
/// `json_each` (keeps every query a single cached statement).
pub(crate) fn id_list(ids: impl IntoIterator<Item = i64>) -> String {
    let v: Vec<i64> = ids.into_iter().collect();
    serde_json::to_string(&v).unwrap_or_else(|_| "[]".into())
}

pub fn by_id(c: &Connection, id: CatalogId) -> Result<Option<Catalog>, DbError> {
    Ok(
        c.prepare_cached(&format!("SELECT {COLS} FROM catalogs c WHERE c.id = ?1"))?
            .query_row([id.0], from_row)
            .optional()?,
    )
}

/// The catalog if it belongs to one of `roots`.
pub(crate) fn accessible(
    c: &Connection,
    id: CatalogId,
    roots: &[CatalogId],
) -> Result<Option<Catalog>, DbError> {
    Ok(by_id(c, id)?.filter(|cat| roots.contains(&cat.root_id)))
}

/// Catalogs whose shown parent is one of `pids` (−1 = the roots themselves),
/// restricted to trees in `roots`, ordered by id.
pub(crate) fn children(
    c: &Connection,
    pids: &[i64],
    roots: &[CatalogId],
) -> Result<Vec<Catalog>, DbError> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {COLS} FROM catalogs c \
         WHERE c.parent_id IN (SELECT value FROM json_each(?1)) \
           AND c.root_id IN (SELECT value FROM json_each(?2)) \
         ORDER BY c.id"
    ))?;
    let rows = st.query_map(
        params![
            id_list(pids.iter().copied()),
            id_list(roots.iter().map(|r| r.0))
        ],
        from_row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn set_help(
    c: &Connection,
    id: CatalogId,
    help_int: Option<i64>,
    help_text: Option<&str>,
    now: i64,
) -> Result<bool, DbError> {
    let n = c.execute(
        "UPDATE catalogs SET help_int = coalesce(?1, help_int), help_text = coalesce(?2, help_text), \
         last_modify = ?3 WHERE id = ?4",
        params![help_int, help_text, now, id.0],
    )?;
    Ok(n > 0)
}

/// A folder row as the scanner creates it.
pub struct NewCatalog<'a> {
    pub root_id: Option<CatalogId>,
    pub parent_id: Option<CatalogId>,
    pub library_id: LibraryId,
    pub path: &'a str,
    pub name: &'a str,
    pub create_time: i64,
    pub now: i64,
}

/// Inserts a catalog; a root (no `root_id`) becomes its own root.
pub fn insert(c: &Connection, n: &NewCatalog) -> Result<CatalogId, DbError> {
    c.prepare_cached(
        "INSERT INTO catalogs(root_id, parent_id, library_id, path, name, create_time, last_modify) \
         VALUES (coalesce(?1, 0), ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        n.root_id.map(|r| r.0),
        n.parent_id.map(|p| p.0).unwrap_or(-1),
        n.library_id.0,
        n.path,
        n.name,
        n.create_time,
        n.now
    ])?;
    let id = c.last_insert_rowid();
    if n.root_id.is_none() {
        c.execute("UPDATE catalogs SET root_id = id WHERE id = ?1", [id])?;
    }
    Ok(CatalogId(id))
}

/// Makes catalog `id` (path `path`), a sub-catalog of an enclosing library
/// until now, the root of library `lib`: it and every catalog below it take
/// it as root and `lib` as library, it loses its parent, and the files of
/// its tree take it as root.
pub(crate) fn make_root(
    c: &Connection,
    id: CatalogId,
    lib: LibraryId,
    path: &str,
) -> Result<(), DbError> {
    let like = format!("{}/%", path.replace('%', "\\%").replace('_', "\\_"));
    c.execute(
        "UPDATE catalogs SET root_id = ?1, library_id = ?2 WHERE path = ?3 OR path LIKE ?4 ESCAPE '\\'",
        params![id.0, lib.0, path, like],
    )?;
    c.execute("UPDATE catalogs SET parent_id = -1 WHERE id = ?1", [id.0])?;
    c.execute(
        "UPDATE files SET root_id = ?1 WHERE real_catalog_id IN \
         (SELECT id FROM catalogs WHERE root_id = ?1)",
        [id.0],
    )?;
    Ok(())
}

/// Catalogs `ids`, in the order given (missing ids are skipped): one
/// statement, not one per id.
pub(crate) fn by_ids(c: &Connection, ids: &[CatalogId]) -> Result<Vec<Catalog>, DbError> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {COLS} FROM json_each(?1) j JOIN catalogs c ON c.id = j.value ORDER BY j.key"
    ))?;
    let rows = st.query_map([id_list(ids.iter().map(|i| i.0))], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every catalog, ordered by id.
pub(crate) fn all(c: &Connection) -> Result<Vec<Catalog>, DbError> {
    let mut st = c.prepare_cached(&format!("SELECT {COLS} FROM catalogs c ORDER BY c.id"))?;
    let rows = st.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The path of the library holding catalog `id`'s folder (an error when
/// the catalog is unknown).
pub(crate) fn library_path(c: &Connection, id: CatalogId) -> Result<String, DbError> {
    Ok(c.prepare_cached(
        "SELECT l.path FROM catalogs c JOIN libraries l ON l.id = c.library_id WHERE c.id = ?1",
    )?
    .query_row([id.0], |r| r.get(0))?)
}

pub(crate) fn by_path(c: &Connection, path: &str) -> Result<Option<Catalog>, DbError> {
    Ok(
        c.prepare_cached(&format!("SELECT {COLS} FROM catalogs c WHERE c.path = ?1"))?
            .query_row([path], from_row)
            .optional()?,
    )
}

/// Deletes a catalog record whose folder is gone. Its files must already be
/// gone; shown children elsewhere keep their rows.
pub(crate) fn delete(c: &Connection, id: CatalogId) -> Result<(), DbError> {
    c.prepare_cached("DELETE FROM catalogs WHERE id = ?1")?
        .execute([id.0])?;
    Ok(())
}

/// Removes the catalog of a folder gone from disk, with the files living in
/// it: files shown here but living elsewhere go back to their real folder's
/// catalog, and catalogs shown below it go under `root`. Called deepest
/// first, so children go before their parents.
pub(crate) fn delete_gone(c: &Connection, id: CatalogId, root: CatalogId) -> Result<(), DbError> {
    c.prepare_cached("UPDATE files SET catalog_id = real_catalog_id WHERE catalog_id = ?1")?
        .execute([id.0])?;
    c.prepare_cached("DELETE FROM files WHERE real_catalog_id = ?1")?
        .execute([id.0])?;
    c.prepare_cached("UPDATE catalogs SET parent_id = ?2 WHERE parent_id = ?1")?
        .execute(params![id.0, root.0])?;
    delete(c, id)
}

/// What the scanner knows about a folder of a library.
#[derive(Debug, Clone)]
pub(crate) struct KnownFolder {
    pub id: CatalogId,
    pub path: String,
    pub inode: Option<i64>,
    pub name: String,
}

/// Every catalog of a library, with its folder inode.
pub(crate) fn folders_of_library(
    c: &Connection,
    lib: LibraryId,
) -> Result<Vec<KnownFolder>, DbError> {
    let mut st =
        c.prepare_cached("SELECT id, path, inode, name FROM catalogs WHERE library_id = ?1")?;
    let rows = st.query_map([lib.0], |r| {
        Ok(KnownFolder {
            id: CatalogId(r.get(0)?),
            path: r.get(1)?,
            inode: r.get(2)?,
            name: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn set_inode(c: &Connection, id: CatalogId, inode: i64) -> Result<(), DbError> {
    c.prepare_cached("UPDATE catalogs SET inode = ?1 WHERE id = ?2")?
        .execute(params![inode, id.0])?;
    Ok(())
}

/// Rewrites the path of catalog `id` and of every catalog below it from
/// `old` to `new` (a folder renamed or moved on disk). Ids, memos, help info
/// and every file below stay; only paths change. Two steps through a
/// temporary prefix, so swapped or nested renames never collide on the
/// unique `path`. Returns the number of catalogs rewritten.
pub(crate) fn move_tree(
    c: &Connection,
    id: CatalogId,
    old: &str,
    new: &str,
) -> Result<usize, DbError> {
    let tmp = format!("\u{1}moving/{}", id.0);
    let old_slash = format!("{old}/");
    let n = c.execute(
        "UPDATE catalogs SET path = ?1 || substr(path, length(?2) + 1) \
         WHERE path = ?2 OR substr(path, 1, length(?3)) = ?3",
        params![tmp, old, old_slash],
    )?;
    let tmp_slash = format!("{tmp}/");
    c.execute(
        "UPDATE catalogs SET path = ?1 || substr(path, length(?2) + 1) \
         WHERE path = ?2 OR substr(path, 1, length(?3)) = ?3",
        params![new, tmp, tmp_slash],
    )?;
    Ok(n)
}

/// Sets the real parent (and, when given, the display name) of a moved
/// folder's catalog.
pub(crate) fn set_parent_and_name(
    c: &Connection,
    id: CatalogId,
    parent: CatalogId,
    name: Option<&str>,
    now: i64,
) -> Result<(), DbError> {
    c.execute(
        "UPDATE catalogs SET parent_id = ?2, name = coalesce(?3, name), last_modify = ?4 \
         WHERE id = ?1",
        params![id.0, parent.0, name, now],
    )?;
    Ok(())
}

/// Records who created a catalog through the API (an uploader may then
/// change it).
pub(crate) fn set_created_by(
    c: &Connection,
    id: CatalogId,
    user: crate::model::UserId,
) -> Result<(), DbError> {
    c.execute(
        "UPDATE catalogs SET created_by = ?2 WHERE id = ?1",
        rusqlite::params![id.0, user.0],
    )?;
    Ok(())
}
