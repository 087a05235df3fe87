//! Share links (spec §8): 128-bit random keys, stored only as their SHA-256
//! (like registration tokens and access keys) with the account that made
//! them, so they survive a restart but a copy of the database opens nothing;
//! a sliding lifetime; at most `share.max_per_user` live links per maker
//! (that maker's least recently used dropped first) and `share.max_links` in
//! all (the maker holding the most gives one up), so no account can push
//! out another's links by issuing many. A key dies with its file
//! (`ON DELETE CASCADE`).
//!
//! A link carries its maker's authority and no more: at every use the maker
//! must still be enabled, hold `browse` and `share`, and see the file — a
//! disabled account or a library taken away stops its links at once.
//! Disabling an account or resetting its password also deletes them, so
//! they do not come back. Every issue returns a fresh key (spec §8: clients
//! must not expect the same key twice), which is what lets the server keep
//! only digests.

use crate::accounts;
use crate::clock::Clock;
use crate::config::Config;
use crate::db::{files, libraries, shares, Db};
use crate::error::{Error, Result};
use crate::model::{FileId, FileRecord, PartStatus, UserId};
use crate::perms::{Perm, Session};
use rand::RngCore;
use std::path::Path;
use std::sync::Arc;

/// A fresh key: 32 lowercase hex characters from the OS CSPRNG.
pub(crate) fn new_key() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn lifetime_ms(cfg: &Config) -> i64 {
    i64::try_from(cfg.share.lifetime_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// `shareFileUrl.icc`: issues a key for an accessible, complete file whose
/// original is on disk.
pub(crate) async fn issue(
    db: &Db,
    cfg: &Arc<Config>,
    clock: &Clock,
    s: &Session,
    id: FileId,
) -> Result<String> {
    s.require(crate::perms::Perm::Share)?;
    let rec = crate::browse::readable_file(db, s, id).await?;
    if rec.status_origin == PartStatus::Uploading as i64 {
        return Err(Error::WaitingUpload(format!(
            "file {} is still being uploaded",
            id.0
        )));
    }
    let path = rec.path.clone();
    let exists = tokio::task::spawn_blocking(move || Path::new(&path).is_file()).await?;
    if !exists {
        return Err(Error::FileGone(format!(
            "the original of file {} is missing on disk",
            id.0
        )));
    }
    let key = new_key();
    let hash = accounts::digest(&key);
    let caps = shares::Caps {
        total: cfg.share.max_links,
        per_maker: cfg.share.max_per_user,
    };
    let (life, by, now) = (lifetime_ms(cfg), s.user_id, clock.unix_ms());
    db.write_async(move |tx| shares::insert(tx, &hash, id, by, now, life, caps))
        .await?;
    Ok(key)
}

/// Whether `user` may still share `rec`: enabled, holds `browse` and
/// `share`, and sees the file. Blocking.
fn sharer_may(
    c: &rusqlite::Connection,
    user: UserId,
    rec: &FileRecord,
) -> Result<bool, crate::db::DbError> {
    Ok(match crate::auth::revalidate(c, user, None)? {
        Some((perms, roots)) => {
            perms.has(Perm::Browse) && perms.has(Perm::Share) && roots.contains(&rec.root_id)
        }
        None => false,
    })
}

/// Whether a `shareFile.ic*` request gets the browser view of the file
/// (`crate::view`: a HEIC as a JPEG) rather than its original: when it
/// asks with `view=1`, or when a browser opens the link as a page (its
/// `Accept` names `text/html`) and `original=1` is not given. Apps and
/// downloaders (`Accept: */*` or none) get the original, as before.
pub(crate) fn wants_view(view: bool, original: bool, accept: Option<&str>) -> bool {
    view || (!original && accept.is_some_and(|a| a.to_ascii_lowercase().contains("text/html")))
}

/// `shareFile.ic*`: the record behind a live key (touching it), its age
/// judged by `clock`. Unknown, malformed or expired keys are all −10003,
/// saying nothing about files.
pub(crate) async fn resolve(
    db: &Db,
    cfg: &Arc<Config>,
    clock: &Clock,
    key: &str,
) -> Result<FileRecord> {
    let unknown = || Error::BadParam("unknown or expired share key".into());
    let valid = key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid {
        return Err(unknown());
    }
    let (hash, life) = (
        accounts::digest(&key.to_ascii_lowercase()),
        lifetime_ms(cfg),
    );
    let now = clock.unix_ms();
    let found = db
        .write_async(move |tx| {
            let Some(link) = shares::find(tx, &hash)? else {
                return Ok(None);
            };
            if now - link.used_ms >= life {
                shares::delete(tx, link.id)?;
                return Ok(None);
            }
            let Some(rec) = files::by_id(tx, link.file_id)? else {
                return Ok(None);
            };
            // A link made before isync recorded makers (migration 5) has
            // nobody to check: it is served until its lifetime runs out,
            // and never extended.
            if let Some(by) = link.user_id {
                // Refused without a trace: the link stays, and works again
                // only if its maker may share the file again.
                if !sharer_may(tx, by, &rec)? {
                    log::debug!(
                        "share link {} refused: its maker {by} may no longer share file {}",
                        link.id,
                        rec.id.0
                    );
                    return Ok(None);
                }
                shares::touch(tx, link.id, now)?;
            }
            let online = libraries::by_id(tx, rec.library_id)?.is_none_or(|l| l.online);
            Ok(Some((rec, online)))
        })
        .await?;
    let (rec, online) = found.ok_or_else(unknown)?;
    if !online {
        return Err(Error::Offline(
            "the shared file is in a library that is offline; try again later".into(),
        ));
    }
    if rec.status_origin == PartStatus::Uploading as i64 {
        return Err(Error::WaitingUpload(
            "the shared file is being uploaded again; try again later".into(),
        ));
    }
    Ok(rec)
}

/// `GET /api/v1/shares`: with the `shares` permission every live link
/// (`mine` = only the caller's), else the caller's own.
pub(crate) async fn list(db: &Db, s: &Session, mine: bool) -> Result<Vec<shares::ShareRow>> {
    let who = (mine || !s.can(Perm::Shares)).then_some(s.user_id);
    Ok(db.read_async(move |c| shares::list(c, who)).await?)
}

/// `POST /api/v1/shares/revoke`: revokes the link `id`, the link of the
/// whole `key`, and/or every link to `file` — any link with the `shares`
/// permission, else only the caller's own (others count as not found).
/// Returns how many went.
pub(crate) async fn revoke(
    db: &Db,
    s: &Session,
    id: Option<i64>,
    key: Option<&str>,
    file: Option<FileId>,
) -> Result<usize> {
    let hash = match key {
        Some(k) if k.len() == 32 && k.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some(accounts::digest(&k.to_ascii_lowercase()))
        }
        Some(_) => {
            return Err(Error::BadParam(
                "key must be a whole share key (32 hex characters; only its digest is stored, \
                 so a part of it names nothing); or give id (see GET /api/v1/shares) or fileId"
                    .into(),
            ))
        }
        None => None,
    };
    if id.is_none() && hash.is_none() && file.is_none() {
        return Err(Error::BadParam("give id, key or fileId".into()));
    }
    let owner = (!s.can(Perm::Shares)).then_some(s.user_id);
    let n = db
        .write_async(move |tx| {
            shares::revoke(
                tx,
                shares::Revoke {
                    owner,
                    id,
                    key_hash: hash.as_ref().map(|h| &h[..]),
                    file,
                },
            )
        })
        .await?;
    if n == 0 {
        return Err(Error::NotFound("no such share link".into()));
    }
    log::info!("{n} share links revoked by user {}", s.user_id);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::wants_view;

    #[test]
    fn a_browser_opening_a_link_gets_the_view_and_apps_the_original() {
        let page = Some("text/html,application/xhtml+xml,*/*;q=0.8");
        assert!(wants_view(false, false, page));
        assert!(!wants_view(false, true, page), "original=1 wins");
        assert!(wants_view(true, false, Some("*/*")), "view=1 asks for it");
        assert!(!wants_view(false, false, Some("*/*")));
        assert!(!wants_view(false, false, None));
        assert!(!wants_view(false, false, Some("image/avif,image/*,*/*")));
    }
}
