//! SQL for `users` and `user_roots`.

use super::DbError;
use crate::model::{CatalogId, User, UserId};
use rusqlite::{params, Connection, OptionalExtension, Row};

const COLS: &str =
    "id, name, password_hash, create_time, last_login, last_modify, help_int, help_text";

fn from_row(r: &Row) -> rusqlite::Result<User> {
    Ok(User {
        id: UserId(r.get(0)?),
        name: r.get(1)?,
        password_hash: r.get(2)?,
        create_time: r.get(3)?,
        last_login: r.get(4)?,
        last_modify: r.get(5)?,
        help_int: r.get(6)?,
        help_text: r.get(7)?,
    })
}

pub fn by_name(c: &Connection, name: &str) -> Result<Option<User>, DbError> {
    Ok(
        c.prepare_cached(&format!("SELECT {COLS} FROM users WHERE name = ?1"))?
            .query_row([name], from_row)
            .optional()?,
    )
}

pub fn by_id(c: &Connection, id: UserId) -> Result<Option<User>, DbError> {
    Ok(
        c.prepare_cached(&format!("SELECT {COLS} FROM users WHERE id = ?1"))?
            .query_row([id.0], from_row)
            .optional()?,
    )
}

pub fn list(c: &Connection) -> Result<Vec<User>, DbError> {
    let mut st = c.prepare_cached(&format!("SELECT {COLS} FROM users ORDER BY id"))?;
    let rows = st.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Creates the user, or replaces the password of an existing one (names
/// match case-insensitively). Returns the id and whether it was created.
pub fn upsert(
    c: &Connection,
    name: &str,
    password_hash: &str,
    now: i64,
) -> Result<(UserId, bool), DbError> {
    if let Some(u) = by_name(c, name)? {
        c.execute(
            "UPDATE users SET password_hash = ?1 WHERE id = ?2",
            params![password_hash, u.id.0],
        )?;
        return Ok((u.id, false));
    }
    c.execute(
        "INSERT INTO users(name, password_hash, create_time, last_modify) VALUES (?1, ?2, ?3, ?3)",
        params![name, password_hash, now],
    )?;
    Ok((UserId(c.last_insert_rowid()), true))
}

pub fn set_last_login(c: &Connection, id: UserId, now: i64) -> Result<(), DbError> {
    c.prepare_cached("UPDATE users SET last_login = ?1 WHERE id = ?2")?
        .execute(params![now, id.0])?;
    Ok(())
}

pub fn set_help(
    c: &Connection,
    id: UserId,
    help_int: Option<i64>,
    help_text: Option<&str>,
    now: i64,
) -> Result<bool, DbError> {
    let n = c.execute(
        "UPDATE users SET help_int = coalesce(?1, help_int), help_text = coalesce(?2, help_text), \
         last_modify = ?3 WHERE id = ?4",
        params![help_int, help_text, now, id.0],
    )?;
    Ok(n > 0)
}

/// Root catalogs this user may access, ascending.
pub fn roots(c: &Connection, id: UserId) -> Result<Vec<CatalogId>, DbError> {
    let mut st = c.prepare_cached(
        "SELECT ur.root_id FROM user_roots ur JOIN catalogs c ON c.id = ur.root_id \
         WHERE ur.user_id = ?1 AND c.parent_id = -1 ORDER BY ur.root_id",
    )?;
    let rows = st.query_map([id.0], |r| Ok(CatalogId(r.get(0)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn grant_root(c: &Connection, user: UserId, root: CatalogId) -> Result<bool, DbError> {
    let n = c.execute(
        "INSERT OR IGNORE INTO user_roots(user_id, root_id) VALUES (?1, ?2)",
        params![user.0, root.0],
    )?;
    Ok(n > 0)
}

/// Replaces the set of users who may see `root` with `users`.
pub fn set_root_users(c: &Connection, root: CatalogId, users: &[UserId]) -> Result<(), DbError> {
    c.execute("DELETE FROM user_roots WHERE root_id = ?1", [root.0])?;
    for u in users {
        grant_root(c, *u, root)?;
    }
    Ok(())
}
