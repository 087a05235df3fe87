//! SQL of online backups (`backup`): the size of the database, the
//! `VACUUM INTO` copy, and the checks of a copy. These run on connections
//! the backup opens itself (a read-only snapshot of the live database, or
//! the copy), so they take a plain `Connection` and return SQLite's error
//! for the caller to word. The run log is `accounts::backup_runs`.

use rusqlite::Connection;
use std::path::Path;

/// Bytes of the database file (pages × page size).
pub fn size_bytes(c: &Connection) -> rusqlite::Result<i64> {
    c.query_row(
        "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
        [],
        |r| r.get(0),
    )
}

/// Writes a compact copy of the database (one snapshot) into the empty
/// file `to`.
pub(crate) fn vacuum_into(c: &Connection, to: &Path) -> rusqlite::Result<()> {
    c.execute("VACUUM INTO ?1", [to.to_string_lossy()])
        .map(|_| ())
}

/// `PRAGMA integrity_check`: `"ok"` or what is wrong.
pub(crate) fn integrity_check(c: &Connection) -> rusqlite::Result<String> {
    c.query_row("PRAGMA integrity_check", [], |r| r.get(0))
}

/// The schema version of a database (`PRAGMA user_version`).
pub(crate) fn schema_version(c: &Connection) -> rusqlite::Result<i64> {
    c.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Rows in `users`, `catalogs` and `files` (an error when a table is
/// missing: not an isync database).
pub(crate) fn row_counts(c: &Connection) -> rusqlite::Result<(i64, i64, i64)> {
    let q = |sql: &str| c.query_row(sql, [], |r| r.get(0));
    Ok((
        q("SELECT count(*) FROM users")?,
        q("SELECT count(*) FROM catalogs")?,
        q("SELECT count(*) FROM files")?,
    ))
}
