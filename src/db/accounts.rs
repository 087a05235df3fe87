//! SQL for account types, registration tokens, access keys and the backup
//! log (migration 4). Secrets are stored only as SHA-256 digests.

use super::DbError;
use crate::model::{CatalogId, UserId};
use rusqlite::{params, Connection, OptionalExtension, Row};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TypeRow {
    pub id: i64,
    pub name: String,
    pub perms: String,
    pub builtin: bool,
}

fn type_row(r: &Row) -> rusqlite::Result<TypeRow> {
    Ok(TypeRow {
        id: r.get(0)?,
        name: r.get(1)?,
        perms: r.get(2)?,
        builtin: r.get(3)?,
    })
}

pub(crate) fn types(c: &Connection) -> Result<Vec<TypeRow>, DbError> {
    let mut st =
        c.prepare_cached("SELECT id, name, perms, builtin FROM account_types ORDER BY id")?;
    let rows = st.query_map([], type_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn type_by_id(c: &Connection, id: i64) -> Result<Option<TypeRow>, DbError> {
    Ok(
        c.prepare_cached("SELECT id, name, perms, builtin FROM account_types WHERE id = ?1")?
            .query_row([id], type_row)
            .optional()?,
    )
}

pub(crate) fn type_by_name(c: &Connection, name: &str) -> Result<Option<TypeRow>, DbError> {
    Ok(
        c.prepare_cached("SELECT id, name, perms, builtin FROM account_types WHERE name = ?1")?
            .query_row([name], type_row)
            .optional()?,
    )
}

/// The stored permission names of type `id` (`None` when the type is gone).
pub(crate) fn type_perms(c: &Connection, id: i64) -> Result<Option<String>, DbError> {
    Ok(
        c.prepare_cached("SELECT perms FROM account_types WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?,
    )
}

/// Creates a type, or replaces the permissions of an existing custom one.
pub(crate) fn upsert_type(c: &Connection, name: &str, perms: &str) -> Result<i64, DbError> {
    if let Some(t) = type_by_name(c, name)? {
        c.execute(
            "UPDATE account_types SET perms = ?1 WHERE id = ?2",
            params![perms, t.id],
        )?;
        return Ok(t.id);
    }
    c.execute(
        "INSERT INTO account_types(name, perms) VALUES (?1, ?2)",
        params![name, perms],
    )?;
    Ok(c.last_insert_rowid())
}

/// How many users and pending tokens use type `id`.
pub(crate) fn type_uses(c: &Connection, id: i64) -> Result<i64, DbError> {
    Ok(c.query_row(
        "SELECT (SELECT count(*) FROM users WHERE account_type_id = ?1) + \
                (SELECT count(*) FROM registration_tokens WHERE account_type_id = ?1)",
        [id],
        |r| r.get(0),
    )?)
}

pub(crate) fn delete_type(c: &Connection, id: i64) -> Result<bool, DbError> {
    Ok(c.execute(
        "DELETE FROM account_types WHERE id = ?1 AND builtin = 0",
        [id],
    )? > 0)
}

/// Enabled users whose type carries `perm` (a permission name).
pub(crate) fn count_enabled_with_perm(c: &Connection, perm: &str) -> Result<i64, DbError> {
    Ok(c.query_row(
        "SELECT count(*) FROM users u JOIN account_types t ON t.id = u.account_type_id \
         WHERE u.disabled = 0 AND (' ' || t.perms || ' ') LIKE ('% ' || ?1 || ' %')",
        [perm],
        |r| r.get(0),
    )?)
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TokenRow {
    pub id: i64,
    pub account_type_id: i64,
    pub roots: Vec<CatalogId>,
    pub created: i64,
    pub expires: Option<i64>,
    pub created_by: Option<UserId>,
    pub note: Option<String>,
}

fn token_row(r: &Row) -> rusqlite::Result<TokenRow> {
    let roots: String = r.get(2)?;
    Ok(TokenRow {
        id: r.get(0)?,
        account_type_id: r.get(1)?,
        roots: serde_json::from_str::<Vec<i64>>(&roots)
            .unwrap_or_default()
            .into_iter()
            .map(CatalogId)
            .collect(),
        created: r.get(3)?,
        expires: r.get(4)?,
        created_by: r.get::<_, Option<i64>>(5)?.map(UserId),
        note: r.get(6)?,
    })
}

const TOKEN_COLS: &str = "id, account_type_id, roots, created, expires, created_by, note";

#[allow(clippy::too_many_arguments)]
pub fn insert_token(
    c: &Connection,
    hash: &[u8],
    type_id: i64,
    roots: &[CatalogId],
    now: i64,
    expires: Option<i64>,
    created_by: Option<UserId>,
    note: Option<&str>,
) -> Result<i64, DbError> {
    let roots = serde_json::to_string(&roots.iter().map(|r| r.0).collect::<Vec<_>>())
        .expect("ids serialise");
    c.execute(
        &format!(
            "INSERT INTO registration_tokens(token_hash, {}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            "account_type_id, roots, created, expires, created_by, note"
        ),
        params![
            hash,
            type_id,
            roots,
            now,
            expires,
            created_by.map(|u| u.0),
            note
        ],
    )?;
    Ok(c.last_insert_rowid())
}

pub(crate) fn token_by_hash(c: &Connection, hash: &[u8]) -> Result<Option<TokenRow>, DbError> {
    Ok(c.prepare_cached(&format!(
        "SELECT {TOKEN_COLS} FROM registration_tokens WHERE token_hash = ?1"
    ))?
    .query_row([hash], token_row)
    .optional()?)
}

pub(crate) fn tokens(c: &Connection) -> Result<Vec<TokenRow>, DbError> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {TOKEN_COLS} FROM registration_tokens ORDER BY id"
    ))?;
    let rows = st.query_map([], token_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn delete_token(c: &Connection, id: i64) -> Result<bool, DbError> {
    Ok(c.execute("DELETE FROM registration_tokens WHERE id = ?1", [id])? > 0)
}

pub(crate) fn delete_token_hash(c: &Connection, hash: &[u8]) -> Result<bool, DbError> {
    Ok(c.execute(
        "DELETE FROM registration_tokens WHERE token_hash = ?1",
        [hash],
    )? > 0)
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeyRow {
    pub id: i64,
    pub user_id: UserId,
    pub user_name: String,
    pub label: String,
    pub created: i64,
    pub last_used: Option<i64>,
}

pub(crate) fn insert_key(
    c: &Connection,
    user: UserId,
    hash: &[u8],
    label: &str,
    now: i64,
) -> Result<i64, DbError> {
    c.execute(
        "INSERT INTO access_keys(user_id, key_hash, label, created) VALUES (?1, ?2, ?3, ?4)",
        params![user.0, hash, label, now],
    )?;
    Ok(c.last_insert_rowid())
}

/// (key id, user id) of the key with this digest.
pub(crate) fn key_by_hash(c: &Connection, hash: &[u8]) -> Result<Option<(i64, UserId)>, DbError> {
    Ok(
        c.prepare_cached("SELECT id, user_id FROM access_keys WHERE key_hash = ?1")?
            .query_row([hash], |r| Ok((r.get(0)?, UserId(r.get(1)?))))
            .optional()?,
    )
}

pub(crate) fn key_exists(c: &Connection, id: i64) -> Result<bool, DbError> {
    Ok(c.prepare_cached("SELECT 1 FROM access_keys WHERE id = ?1")?
        .query_row([id], |_| Ok(()))
        .optional()?
        .is_some())
}

pub(crate) fn keys(c: &Connection, user: Option<UserId>) -> Result<Vec<KeyRow>, DbError> {
    let mut st = c.prepare_cached(
        "SELECT k.id, k.user_id, u.name, k.label, k.created, k.last_used \
         FROM access_keys k JOIN users u ON u.id = k.user_id \
         WHERE ?1 IS NULL OR k.user_id = ?1 ORDER BY k.id",
    )?;
    let rows = st.query_map([user.map(|u| u.0)], |r| {
        Ok(KeyRow {
            id: r.get(0)?,
            user_id: UserId(r.get(1)?),
            user_name: r.get(2)?,
            label: r.get(3)?,
            created: r.get(4)?,
            last_used: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Revokes every access key of `user`; returns how many there were.
pub(crate) fn delete_keys_of(c: &Connection, user: UserId) -> Result<usize, DbError> {
    Ok(c.execute("DELETE FROM access_keys WHERE user_id = ?1", [user.0])?)
}

pub(crate) fn delete_key(c: &Connection, id: i64) -> Result<bool, DbError> {
    Ok(c.execute("DELETE FROM access_keys WHERE id = ?1", [id])? > 0)
}

pub(crate) fn touch_key(c: &Connection, id: i64, now: i64) -> Result<(), DbError> {
    c.prepare_cached("UPDATE access_keys SET last_used = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupRun {
    pub id: i64,
    pub started: i64,
    pub finished: i64,
    pub ok: bool,
    pub path: Option<String>,
    pub bytes: Option<i64>,
    pub message: String,
}

pub(crate) fn insert_backup_run(c: &Connection, r: &BackupRun) -> Result<i64, DbError> {
    c.execute(
        "INSERT INTO backup_runs(started, finished, ok, path, bytes, message) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![r.started, r.finished, r.ok, r.path, r.bytes, r.message],
    )?;
    // The log is bounded: the last 100 runs are plenty.
    c.execute(
        "DELETE FROM backup_runs WHERE id NOT IN (SELECT id FROM backup_runs ORDER BY id DESC LIMIT 100)",
        [],
    )?;
    Ok(c.last_insert_rowid())
}

pub(crate) fn backup_runs(c: &Connection, limit: i64) -> Result<Vec<BackupRun>, DbError> {
    let mut st = c.prepare_cached(
        "SELECT id, started, finished, ok, path, bytes, message FROM backup_runs \
         ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = st.query_map([limit], |r| {
        Ok(BackupRun {
            id: r.get(0)?,
            started: r.get(1)?,
            finished: r.get(2)?,
            ok: r.get(3)?,
            path: r.get(4)?,
            bytes: r.get(5)?,
            message: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many of the catalogs `ids` were not created by `user` (ownership
/// checks of a change without `moderate`).
pub(crate) fn count_catalogs_not_by(
    c: &Connection,
    ids: &[CatalogId],
    user: UserId,
) -> Result<i64, DbError> {
    let list = super::catalogs::id_list(ids.iter().map(|c| c.0));
    Ok(c.prepare_cached(
        "SELECT count(*) FROM catalogs WHERE id IN (SELECT value FROM json_each(?1)) \
             AND created_by IS NOT ?2",
    )?
    .query_row(params![list, user.0], |r| r.get(0))?)
}

/// How many files shown or stored in the catalogs `ids` were not uploaded
/// by `user`.
pub(crate) fn count_files_not_by(
    c: &Connection,
    ids: &[CatalogId],
    user: UserId,
) -> Result<i64, DbError> {
    let list = super::catalogs::id_list(ids.iter().map(|c| c.0));
    Ok(c.prepare_cached(
        "SELECT count(*) FROM files WHERE (catalog_id IN (SELECT value FROM json_each(?1)) \
             OR real_catalog_id IN (SELECT value FROM json_each(?1))) AND upload_user_id IS NOT ?2",
    )?
    .query_row(params![list, user.0], |r| r.get(0))?)
}
