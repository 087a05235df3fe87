//! Share links (spec §8): 128-bit random keys stored in the database (they
//! survive a restart), a sliding lifetime, at most `share.max_links` live
//! keys with the least recently used dropped. A key dies with its file
//! (`ON DELETE CASCADE`).

use crate::auth::Session;
use crate::config::Config;
use crate::db::{files, libraries, shares, Db};
use crate::error::{Error, Result};
use crate::model::{FileId, FileRecord, PartStatus};
use rand::RngCore;
use std::path::Path;
use std::sync::Arc;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A fresh key: 32 lowercase hex characters from the OS CSPRNG.
pub fn new_key() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn lifetime_ms(cfg: &Config) -> i64 {
    i64::try_from(cfg.share.lifetime_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// `shareFileUrl.icc`: issues a key for an accessible, complete file whose
/// original is on disk.
pub async fn issue(db: &Db, cfg: &Arc<Config>, s: &Session, id: FileId) -> Result<String> {
    s.require(crate::accounts::Perm::Share)?;
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
    let (k, life, max) = (key.clone(), lifetime_ms(cfg), cfg.share.max_links);
    db.write_async(move |tx| shares::insert(tx, &k, id, now_ms(), life, max))
        .await?;
    Ok(key)
}

/// `shareFile.ic*`: the record behind a live key (touching it). Unknown,
/// malformed or expired keys are all −10003, saying nothing about files.
pub async fn resolve(db: &Db, cfg: &Arc<Config>, key: &str) -> Result<FileRecord> {
    let unknown = || Error::BadParam("unknown or expired share key".into());
    let valid = key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid {
        return Err(unknown());
    }
    let (k, life) = (key.to_ascii_lowercase(), lifetime_ms(cfg));
    let found = db
        .write_async(move |tx| {
            let Some(id) = shares::use_key(tx, &k, now_ms(), life)? else {
                return Ok(None);
            };
            let Some(rec) = files::by_id(tx, id)? else {
                return Ok(None);
            };
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
