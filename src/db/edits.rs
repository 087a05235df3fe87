//! SQL for catalog edits: `createCatalog.icc` extras and
//! `updateCatalog.icc` (rename, memo, help, virtual move across trees).

use super::DbError;
use crate::model::CatalogId;
use rusqlite::{params, Connection};

/// Memo and help info of a catalog just created.
pub(crate) fn set_catalog_extras(
    c: &Connection,
    id: CatalogId,
    memo: Option<&str>,
    help_int: Option<i64>,
    help_text: Option<&str>,
) -> Result<(), DbError> {
    c.prepare_cached("UPDATE catalogs SET memo = ?2, help_int = ?3, help_text = ?4 WHERE id = ?1")?
        .execute(params![id.0, memo, help_int, help_text])?;
    Ok(())
}

/// What `updateCatalog.icc` changes; `None` leaves a column alone.
#[derive(Debug, Clone, Default)]
pub(crate) struct CatalogEdit {
    pub parent: Option<CatalogId>,
    pub name: Option<String>,
    pub memo: Option<String>,
    pub help_int: Option<i64>,
    pub help_text: Option<String>,
}

pub(crate) fn update_catalog(
    c: &Connection,
    id: CatalogId,
    e: &CatalogEdit,
    now: i64,
) -> Result<(), DbError> {
    c.prepare_cached(
        "UPDATE catalogs SET parent_id = coalesce(?2, parent_id), name = coalesce(?3, name), \
         memo = coalesce(?4, memo), help_int = coalesce(?5, help_int), \
         help_text = coalesce(?6, help_text), last_modify = ?7 WHERE id = ?1",
    )?
    .execute(params![
        id.0,
        e.parent.map(|p| p.0),
        e.name,
        e.memo,
        e.help_int,
        e.help_text,
        now
    ])?;
    Ok(())
}

/// Moves catalogs (a subtree) and the files shown in them to tree `root`.
pub(crate) fn move_to_tree(
    c: &Connection,
    ids: &[CatalogId],
    root: CatalogId,
) -> Result<(), DbError> {
    let list = super::catalogs::id_list(ids.iter().map(|c| c.0));
    c.prepare_cached(
        "UPDATE catalogs SET root_id = ?2 WHERE id IN (SELECT value FROM json_each(?1))",
    )?
    .execute(params![list, root.0])?;
    c.prepare_cached(
        "UPDATE files SET root_id = ?2 WHERE catalog_id IN (SELECT value FROM json_each(?1))",
    )?
    .execute(params![list, root.0])?;
    Ok(())
}
