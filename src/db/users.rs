//! SQL for `users` and `user_roots`.

use super::DbError;
use crate::model::{CatalogId, User, UserId};
use rusqlite::{params, Connection, OptionalExtension, Row};

const COLS: &str = "id, name, password_hash, create_time, last_login, last_modify, help_int, \
                    help_text, account_type_id, disabled";

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
        account_type_id: r.get(8)?,
        disabled: r.get(9)?,
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

/// Creates a user of account type `type_id`; `None` when the name is taken.
pub(crate) fn insert_typed(
    c: &Connection,
    name: &str,
    password_hash: &str,
    type_id: i64,
    now: i64,
) -> Result<Option<UserId>, DbError> {
    if by_name(c, name)?.is_some() {
        return Ok(None);
    }
    c.execute(
        "INSERT INTO users(name, password_hash, create_time, last_modify, account_type_id) \
         VALUES (?1, ?2, ?3, ?3, ?4)",
        params![name, password_hash, now, type_id],
    )?;
    Ok(Some(UserId(c.last_insert_rowid())))
}

/// Replaces the password hash of `id` (`last_modify`, which the iSync API
/// shows, is about the record's help info and stays).
pub(crate) fn set_password(
    c: &Connection,
    id: UserId,
    password_hash: &str,
) -> Result<bool, DbError> {
    let n = c.execute(
        "UPDATE users SET password_hash = ?1 WHERE id = ?2",
        params![password_hash, id.0],
    )?;
    Ok(n > 0)
}

pub fn set_type(c: &Connection, id: UserId, type_id: i64, now: i64) -> Result<bool, DbError> {
    let n = c.execute(
        "UPDATE users SET account_type_id = ?1, last_modify = ?3 WHERE id = ?2",
        params![type_id, id.0, now],
    )?;
    Ok(n > 0)
}

pub(crate) fn set_disabled(
    c: &Connection,
    id: UserId,
    disabled: bool,
    now: i64,
) -> Result<bool, DbError> {
    let n = c.execute(
        "UPDATE users SET disabled = ?1, last_modify = ?3 WHERE id = ?2",
        params![disabled, id.0, now],
    )?;
    Ok(n > 0)
}

pub fn set_last_login(c: &Connection, id: UserId, now: i64) -> Result<(), DbError> {
    c.prepare_cached("UPDATE users SET last_login = ?1 WHERE id = ?2")?
        .execute(params![now, id.0])?;
    Ok(())
}

pub(crate) fn set_help(
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
pub(crate) fn roots(c: &Connection, id: UserId) -> Result<Vec<CatalogId>, DbError> {
    let mut st = c.prepare_cached(
        "SELECT ur.root_id FROM user_roots ur JOIN catalogs c ON c.id = ur.root_id \
         WHERE ur.user_id = ?1 AND c.parent_id = -1 ORDER BY ur.root_id",
    )?;
    let rows = st.query_map([id.0], |r| Ok(CatalogId(r.get(0)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn grant_root(c: &Connection, user: UserId, root: CatalogId) -> Result<bool, DbError> {
    let n = c.execute(
        "INSERT OR IGNORE INTO user_roots(user_id, root_id) VALUES (?1, ?2)",
        params![user.0, root.0],
    )?;
    Ok(n > 0)
}

/// A grant made by an admin or a registration token: kept when the config's
/// `users` lists are applied again.
pub(crate) fn grant_root_admin(
    c: &Connection,
    user: UserId,
    root: CatalogId,
) -> Result<bool, DbError> {
    let n = c.execute(
        "INSERT INTO user_roots(user_id, root_id, source) VALUES (?1, ?2, 'admin') \
         ON CONFLICT(user_id, root_id) DO NOTHING",
        params![user.0, root.0],
    )?;
    Ok(n > 0)
}

/// Removes an admin grant. `Err(())`-like `Some(false)`: the grant comes
/// from the config file and stays; `None`: there was none.
pub(crate) fn revoke_root_admin(
    c: &Connection,
    user: UserId,
    root: CatalogId,
) -> Result<Option<bool>, DbError> {
    let source: Option<String> = c
        .query_row(
            "SELECT source FROM user_roots WHERE user_id = ?1 AND root_id = ?2",
            params![user.0, root.0],
            |r| r.get(0),
        )
        .optional()?;
    match source.as_deref() {
        None => Ok(None),
        Some("admin") => {
            c.execute(
                "DELETE FROM user_roots WHERE user_id = ?1 AND root_id = ?2",
                params![user.0, root.0],
            )?;
            Ok(Some(true))
        }
        Some(_) => Ok(Some(false)),
    }
}

/// Who may see `root`: (user id, name, source), by name.
pub(crate) fn root_users(
    c: &Connection,
    root: CatalogId,
) -> Result<Vec<(UserId, String, String)>, DbError> {
    let mut st = c.prepare_cached(
        "SELECT u.id, u.name, ur.source FROM user_roots ur JOIN users u ON u.id = ur.user_id \
         WHERE ur.root_id = ?1 ORDER BY u.name",
    )?;
    let rows = st.query_map([root.0], |r| Ok((UserId(r.get(0)?), r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Replaces the config-file grants of `root` with `users`; grants made by an
/// admin or a registration token are kept.
pub(crate) fn set_root_users(
    c: &Connection,
    root: CatalogId,
    users: &[UserId],
) -> Result<(), DbError> {
    c.execute(
        "DELETE FROM user_roots WHERE root_id = ?1 AND source = 'config'",
        [root.0],
    )?;
    for u in users {
        grant_root(c, *u, root)?;
    }
    Ok(())
}

/// Nobody may see `root` any more (its library left the config).
pub(crate) fn clear_root(c: &Connection, root: CatalogId) -> Result<(), DbError> {
    c.execute("DELETE FROM user_roots WHERE root_id = ?1", [root.0])?;
    Ok(())
}
