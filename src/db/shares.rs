//! SQL for `share_links` (spec §8): issue, look up with a sliding lifetime,
//! and bound the number of live links, per maker and in all (least recently
//! used dropped first, and only the busiest maker's).
//! Only the SHA-256 of a key is stored, with the account that made the link
//! (migration 5, [`migrate_hash_keys`]): a copy of the database does not
//! hand out the family's photos.

use super::DbError;
use crate::model::{FileId, UserId};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use sha2::{Digest, Sha256};

/// Bounds on live links (`share.max_links`, `share.max_per_user`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    /// Live links in all.
    pub total: u32,
    /// Live links of one maker.
    pub per_maker: u32,
}

/// Stores a fresh link (`key_hash` = SHA-256 of its key) to `file` made by
/// `user`, after making room: expired links go; past `caps.per_maker`
/// links of `user`, its least recently used; past `caps.total` in all, the
/// least recently used link of the maker holding the most (of those tied,
/// the one whose oldest link is oldest; links from before makers were
/// recorded count as one maker). So issuing link after link evicts only the
/// issuer's own links, never those of an account holding fewer.
pub(crate) fn insert(
    c: &Connection,
    key_hash: &[u8],
    file: FileId,
    user: UserId,
    now_ms: i64,
    lifetime_ms: i64,
    caps: Caps,
) -> Result<(), DbError> {
    c.prepare_cached("DELETE FROM share_links WHERE used_ms <= ?1")?
        .execute([now_ms - lifetime_ms])?;
    let keep = i64::from(caps.per_maker.max(1)) - 1;
    c.prepare_cached(
        "DELETE FROM share_links WHERE id IN (SELECT id FROM share_links WHERE user_id = ?1 \
         ORDER BY used_ms DESC, id DESC LIMIT -1 OFFSET ?2)",
    )?
    .execute(params![user.0, keep])?;
    let over = count(c)? - (i64::from(caps.total.max(1)) - 1);
    let mut evict = c.prepare_cached(
        "DELETE FROM share_links WHERE id = (SELECT id FROM share_links WHERE user_id IS \
         (SELECT user_id FROM share_links GROUP BY user_id ORDER BY count(*) DESC, \
          min(used_ms), user_id LIMIT 1) \
         ORDER BY used_ms, id LIMIT 1)",
    )?;
    for _ in 0..over.max(0) {
        evict.execute([])?;
    }
    c.prepare_cached(
        "INSERT INTO share_links(key_hash, file_id, user_id, created_ms, used_ms) \
         VALUES (?1, ?2, ?3, ?4, ?4)",
    )?
    .execute(params![key_hash, file.0, user.0, now_ms])?;
    Ok(())
}

/// A stored link.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Link {
    pub id: i64,
    pub file_id: FileId,
    /// Who made it; `None` for links made before isync recorded it.
    pub user_id: Option<UserId>,
    pub used_ms: i64,
}

/// The link whose key has this digest.
pub(crate) fn find(c: &Connection, key_hash: &[u8]) -> Result<Option<Link>, DbError> {
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
pub(crate) fn touch(c: &Connection, id: i64, now_ms: i64) -> Result<(), DbError> {
    c.prepare_cached("UPDATE share_links SET used_ms = ?2 WHERE id = ?1")?
        .execute(params![id, now_ms])?;
    Ok(())
}

pub(crate) fn delete(c: &Connection, id: i64) -> Result<(), DbError> {
    c.prepare_cached("DELETE FROM share_links WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Revokes every link `user` made; returns how many there were.
pub(crate) fn delete_of_user(c: &Connection, user: UserId) -> Result<usize, DbError> {
    Ok(c.execute("DELETE FROM share_links WHERE user_id = ?1", [user.0])?)
}

pub(crate) fn count(c: &Connection) -> Result<i64, DbError> {
    Ok(c.query_row("SELECT count(*) FROM share_links", [], |r| r.get(0))?)
}

/// A live share link as listed (never its key: it is not stored).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ShareRow {
    pub id: i64,
    pub file_id: i64,
    pub file_name: String,
    /// The account that made it (None: made before isync recorded it).
    pub user: Option<String>,
    pub created_ms: i64,
    pub used_ms: i64,
}

/// Links made by `user`, or every link (`None`), most recently used first.
pub(crate) fn list(c: &Connection, user: Option<UserId>) -> Result<Vec<ShareRow>, DbError> {
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
pub(crate) struct Revoke<'a> {
    pub owner: Option<UserId>,
    pub id: Option<i64>,
    pub key_hash: Option<&'a [u8]>,
    pub file: Option<FileId>,
}

/// Deletes the links `r` names; returns how many went.
pub(crate) fn revoke(c: &Connection, r: Revoke<'_>) -> Result<usize, DbError> {
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
    tx.execute_batch(include_str!("migrations/0005_share_key_hashes.sql"))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{users, Db};

    /// A database with one file and the users `a`, `b`, `c`.
    fn fixture() -> (tempfile::TempDir, Db, [UserId; 3]) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let ids = db
            .write(|tx| {
                tx.execute_batch(
                    "INSERT INTO libraries(id, path) VALUES (1, '/lib'); \
                     INSERT INTO catalogs(id, root_id, parent_id, library_id, path, name, \
                     create_time, last_modify) VALUES (1, 1, -1, 1, '/lib', 'lib', 0, 0); \
                     INSERT INTO files(id, catalog_id, real_catalog_id, root_id, disk_name, name, \
                     ext, import_time, last_modify, size, type) \
                     VALUES (1, 1, 1, 1, 'a.jpg', 'a.jpg', 'jpg', 0, 0, 1, 1);",
                )?;
                let mut ids = [UserId(0); 3];
                for (i, n) in ["a", "b", "c"].into_iter().enumerate() {
                    ids[i] = users::upsert(tx, n, "x", 0)?.0;
                }
                Ok(ids)
            })
            .unwrap();
        (dir, db, ids)
    }

    /// Issues a link by `user` at `now` (lifetime long enough for all).
    fn issue(db: &Db, n: u8, user: UserId, now: i64, caps: Caps) {
        db.write(|tx| insert(tx, &[n; 32], FileId(1), user, now, 1_000_000, caps))
            .unwrap();
    }

    /// The key bytes of every live link of `user`, oldest first.
    fn links_of(db: &Db, user: UserId) -> Vec<u8> {
        db.read(|c| {
            let mut st = c.prepare(
                "SELECT key_hash FROM share_links WHERE user_id = ?1 ORDER BY used_ms, id",
            )?;
            let rows = st.query_map([user.0], |r| r.get::<_, Vec<u8>>(0))?;
            Ok(rows.map(|r| r.map(|k| k[0])).collect::<Result<_, _>>()?)
        })
        .unwrap()
    }

    #[test]
    fn a_maker_past_its_cap_loses_only_its_own_least_recently_used() {
        let (_dir, db, [a, b, _]) = fixture();
        let caps = Caps {
            total: 100,
            per_maker: 3,
        };
        issue(&db, 1, b, 1, caps);
        for n in 10..20 {
            issue(&db, n, a, i64::from(n), caps);
        }
        assert_eq!(links_of(&db, a), vec![17, 18, 19]);
        assert_eq!(links_of(&db, b), vec![1], "b's older link stays");
        // A use moves a link to the back of its maker's queue.
        let l17 = db.read(|c| find(c, &[17; 32])).unwrap().unwrap();
        db.write(|tx| touch(tx, l17.id, 50)).unwrap();
        issue(&db, 20, a, 51, caps);
        assert_eq!(links_of(&db, a), vec![19, 17, 20]);
    }

    #[test]
    fn past_the_total_the_busiest_maker_gives_one_up() {
        let (_dir, db, [a, b, c]) = fixture();
        let caps = Caps {
            total: 5,
            per_maker: 5,
        };
        issue(&db, 1, b, 1, caps);
        issue(&db, 2, c, 2, caps);
        for n in 10..13 {
            issue(&db, n, a, i64::from(n), caps);
        }
        // Full (5): a holds the most, so a's new links cost a's old ones.
        issue(&db, 13, a, 13, caps);
        issue(&db, 14, a, 14, caps);
        assert_eq!(links_of(&db, a), vec![12, 13, 14]);
        assert_eq!((links_of(&db, b), links_of(&db, c)), (vec![1], vec![2]));
        // b's new link also comes out of a's share, the busiest.
        issue(&db, 3, b, 15, caps);
        assert_eq!(links_of(&db, a), vec![13, 14]);
        assert_eq!(links_of(&db, b), vec![1, 3]);
        // Tied (a and b hold two each): the one whose oldest link is
        // oldest gives it up (b's, from time 1).
        issue(&db, 4, c, 16, caps);
        assert_eq!(links_of(&db, b), vec![3]);
        assert_eq!(links_of(&db, a), vec![13, 14]);
        assert_eq!(db.read(count).unwrap(), 5);
    }
}
