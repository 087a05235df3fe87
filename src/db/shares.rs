//! SQL for `share_links` (spec §8): issue, look up with a sliding lifetime,
//! and bound the number of live links (least recently used dropped first).
//! Only the SHA-256 of a key is stored, with the account that made the link
//! (migration 5, [`migrate_hash_keys`]): a copy of the database does not
//! hand out the family's photos.

use super::DbError;
use crate::model::{FileId, UserId};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use sha2::{Digest, Sha256};

/// Stores a fresh link (`key_hash` = SHA-256 of its key) to `file` made by
/// `user`, drops expired links and, beyond `max`, the least recently used.
pub fn insert(
    c: &Connection,
    key_hash: &[u8],
    file: FileId,
    user: UserId,
    now_ms: i64,
    lifetime_ms: i64,
    max: u32,
) -> Result<(), DbError> {
    c.prepare_cached("DELETE FROM share_links WHERE used_ms <= ?1")?
        .execute([now_ms - lifetime_ms])?;
    c.prepare_cached(
        "INSERT INTO share_links(key_hash, file_id, user_id, created_ms, used_ms) \
         VALUES (?1, ?2, ?3, ?4, ?4)",
    )?
    .execute(params![key_hash, file.0, user.0, now_ms])?;
    c.prepare_cached(
        "DELETE FROM share_links WHERE id NOT IN \
         (SELECT id FROM share_links ORDER BY used_ms DESC, created_ms DESC LIMIT ?1)",
    )?
    .execute([i64::from(max)])?;
    Ok(())
}

/// A stored link.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub id: i64,
    pub file_id: FileId,
    /// Who made it; `None` for links made before isync recorded it.
    pub user_id: Option<UserId>,
    pub used_ms: i64,
}

/// The link whose key has this digest.
pub fn find(c: &Connection, key_hash: &[u8]) -> Result<Option<Link>, DbError> {
    Ok(c.prepare_cached(
        "SELECT id, file_id, user_id, used_ms FROM share_links WHERE key_hash = ?1",
    )?
    .query_row([key_hash], |r| {
        Ok(Link {
            id: r.get(0)?,
            file_id: FileId(r.get(1)?),
            user_id: r.get::<_, Option<i64>>(2)?.map(UserId),
            used_ms: r.get(3)?,
        })
    })
    .optional()?)
}

/// Restarts a link's sliding lifetime.
pub fn touch(c: &Connection, id: i64, now_ms: i64) -> Result<(), DbError> {
    c.prepare_cached("UPDATE share_links SET used_ms = ?2 WHERE id = ?1")?
        .execute(params![id, now_ms])?;
    Ok(())
}

pub fn delete(c: &Connection, id: i64) -> Result<(), DbError> {
    c.prepare_cached("DELETE FROM share_links WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Revokes every link `user` made; returns how many there were.
pub fn delete_of_user(c: &Connection, user: UserId) -> Result<usize, DbError> {
    Ok(c.execute("DELETE FROM share_links WHERE user_id = ?1", [user.0])?)
}

pub fn count(c: &Connection) -> Result<i64, DbError> {
    Ok(c.query_row("SELECT count(*) FROM share_links", [], |r| r.get(0))?)
}

/// A live share link as listed (never its key: it is not stored).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShareRow {
    pub id: i64,
    pub file_id: i64,
    pub file_name: String,
    /// The account that made it (None: made before isync recorded it).
    pub user: Option<String>,
    pub created_ms: i64,
    pub used_ms: i64,
}

/// Links made by `user`, or every link (`None`), most recently used first.
pub fn list(c: &Connection, user: Option<UserId>) -> Result<Vec<ShareRow>, DbError> {
    let mut st = c.prepare_cached(
        "SELECT s.id, s.file_id, f.name, u.name, s.created_ms, s.used_ms FROM share_links s \
         JOIN files f ON f.id = s.file_id LEFT JOIN users u ON u.id = s.user_id \
         WHERE ?1 IS NULL OR s.user_id = ?1 ORDER BY s.used_ms DESC, s.id DESC",
    )?;
    let rows = st.query_map([user.map(|u| u.0)], |r| {
        Ok(ShareRow {
            id: r.get(0)?,
            file_id: r.get(1)?,
            file_name: r.get(2)?,
            user: r.get(3)?,
            created_ms: r.get(4)?,
            used_ms: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What to revoke: the link `id`, the link whose key has digest `key_hash`,
/// and/or every link to `file` — only those made by `owner` when given.
#[derive(Debug, Clone, Copy, Default)]
pub struct Revoke<'a> {
    pub owner: Option<UserId>,
    pub id: Option<i64>,
    pub key_hash: Option<&'a [u8]>,
    pub file: Option<FileId>,
}

/// Deletes the links `r` names; returns how many went.
pub fn revoke(c: &Connection, r: Revoke<'_>) -> Result<usize, DbError> {
    Ok(c.execute(
        "DELETE FROM share_links WHERE (?1 IS NULL OR user_id = ?1) \
         AND (id = ?2 OR key_hash = ?3 OR file_id = ?4)",
        params![r.owner.map(|u| u.0), r.id, r.key_hash, r.file.map(|f| f.0)],
    )?)
}

/// Migration 5: keys were stored in clear (a copy of the database was a
/// list of working links). Each becomes its SHA-256; the clear table is
/// dropped with `secure_delete` on, so its pages are zeroed rather than left
/// readable in the free list. Links from before have no recorded sharer.
pub(super) fn migrate_hash_keys(tx: &Transaction) -> rusqlite::Result<()> {
    tx.execute_batch(include_str!("schema_shares.sql"))?;
    {
        let mut read = tx.prepare("SELECT key, file_id, created_ms, used_ms FROM share_links")?;
        let mut write = tx.prepare(
            "INSERT INTO share_links_v5(key_hash, file_id, user_id, created_ms, used_ms) \
             VALUES (?1, ?2, NULL, ?3, ?4)",
        )?;
        let rows = read.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (key, file, created, used) = row?;
            let hash: [u8; 32] = Sha256::digest(key.to_ascii_lowercase().as_bytes()).into();
            write.execute(params![&hash[..], file, created, used])?;
        }
    }
    let secure: i64 = tx.query_row("PRAGMA secure_delete", [], |r| r.get(0))?;
    tx.pragma_update(None, "secure_delete", 1)?;
    tx.execute_batch(
        "DROP TABLE share_links; \
         ALTER TABLE share_links_v5 RENAME TO share_links; \
         CREATE INDEX share_links_file ON share_links(file_id); \
         CREATE INDEX share_links_used ON share_links(used_ms); \
         CREATE INDEX share_links_user ON share_links(user_id);",
    )?;
    tx.pragma_update(None, "secure_delete", secure)?;
    Ok(())
}
