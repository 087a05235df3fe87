//! SQL for `share_links` (spec §8): issue, look up with a sliding lifetime,
//! and bound the number of live keys (least recently used dropped first).

use super::DbError;
use crate::model::FileId;
use rusqlite::{params, Connection, OptionalExtension};

/// Stores a fresh key for `file`, drops expired keys and, beyond `max`, the
/// least recently used ones.
pub fn insert(
    c: &Connection,
    key: &str,
    file: FileId,
    now_ms: i64,
    lifetime_ms: i64,
    max: u32,
) -> Result<(), DbError> {
    c.prepare_cached("DELETE FROM share_links WHERE used_ms <= ?1")?
        .execute([now_ms - lifetime_ms])?;
    c.prepare_cached(
        "INSERT INTO share_links(key, file_id, created_ms, used_ms) VALUES (?1, ?2, ?3, ?3)",
    )?
    .execute(params![key, file.0, now_ms])?;
    c.prepare_cached(
        "DELETE FROM share_links WHERE key NOT IN \
         (SELECT key FROM share_links ORDER BY used_ms DESC, created_ms DESC LIMIT ?1)",
    )?
    .execute([i64::from(max)])?;
    Ok(())
}

/// The file a live key points to, touching the key (sliding lifetime). An
/// expired key is removed and reported as unknown.
pub fn use_key(
    c: &Connection,
    key: &str,
    now_ms: i64,
    lifetime_ms: i64,
) -> Result<Option<FileId>, DbError> {
    let row: Option<(i64, i64)> = c
        .prepare_cached("SELECT file_id, used_ms FROM share_links WHERE key = ?1")?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((file, used)) = row else {
        return Ok(None);
    };
    if now_ms - used >= lifetime_ms {
        c.prepare_cached("DELETE FROM share_links WHERE key = ?1")?
            .execute([key])?;
        return Ok(None);
    }
    c.prepare_cached("UPDATE share_links SET used_ms = ?2 WHERE key = ?1")?
        .execute(params![key, now_ms])?;
    Ok(Some(FileId(file)))
}

pub fn count(c: &Connection) -> Result<i64, DbError> {
    Ok(c.query_row("SELECT count(*) FROM share_links", [], |r| r.get(0))?)
}

/// A live share link as admins see it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShareRow {
    /// The first 8 characters of the key (enough to tell links apart; the
    /// key itself is the credential and is not shown again).
    pub key_prefix: String,
    pub file_id: i64,
    pub file_name: String,
    pub created_ms: i64,
    pub used_ms: i64,
}

pub fn list(c: &Connection) -> Result<Vec<ShareRow>, DbError> {
    let mut st = c.prepare_cached(
        "SELECT s.key, s.file_id, f.name, s.created_ms, s.used_ms FROM share_links s \
         JOIN files f ON f.id = s.file_id ORDER BY s.used_ms DESC",
    )?;
    let rows = st.query_map([], |r| {
        let key: String = r.get(0)?;
        Ok(ShareRow {
            key_prefix: key.chars().take(8).collect(),
            file_id: r.get(1)?,
            file_name: r.get(2)?,
            created_ms: r.get(3)?,
            used_ms: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Revokes the links whose key starts with `prefix` (at least 8 chars) or
/// that point to `file`; returns how many went.
pub fn revoke(
    c: &Connection,
    prefix: Option<&str>,
    file: Option<FileId>,
) -> Result<usize, DbError> {
    let mut n = 0;
    if let Some(p) = prefix.filter(|p| p.len() >= 8) {
        n += c.execute(
            "DELETE FROM share_links WHERE substr(key, 1, length(?1)) = ?1",
            [p],
        )?;
    }
    if let Some(f) = file {
        n += c.execute("DELETE FROM share_links WHERE file_id = ?1", [f.0])?;
    }
    Ok(n)
}
