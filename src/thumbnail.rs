//! The thumbnail service behind `thumbnail.icc` (spec §6.10, §10, §2.6):
//! which file answers a request for one level of one file. The part's status
//! decides first (failed, still uploading, uploaded by the client, or made
//! here); a server-made thumbnail comes from the cache, which renders it
//! from the original on a miss; an offline library still serves what is
//! cached. The handler only sends the file it is given.
//!
//! May import: `db`, `media` (the cache), `library` (root checks), `browse`,
//! `perms`, `model`, `error`, `config`. Never `http`.

use crate::browse;
use crate::config::Config;
use crate::db::{files, libraries, Db};
use crate::error::{Error, Result};
use crate::media::thumbcache::{CachedThumb, ThumbCache, ThumbSource};
use crate::media::thumbs::ThumbError;
use crate::model::{FileId, FileRecord, FileType, PartStatus, ThumbLevel};
use crate::perms::Session;
use std::path::PathBuf;

/// The file that answers a thumbnail request.
#[derive(Debug)]
pub(crate) struct Found {
    pub path: PathBuf,
    pub content_type: &'static str,
    /// Uploaded by the client (stored as sent), not made by the server:
    /// when it is missing, that is "not found", not a cache that lost it.
    pub uploaded: bool,
}

impl From<CachedThumb> for Found {
    /// A thumbnail the server made, from its cache.
    fn from(t: CachedThumb) -> Found {
        Found {
            path: t.path,
            content_type: t.content_type,
            uploaded: false,
        }
    }
}

/// The thumbnail of `level` of file `id` for session `s`. Blocking work
/// (database, root checks, renders) runs off the async threads.
pub(crate) async fn find(
    db: &Db,
    cfg: &Config,
    thumbs: &ThumbCache,
    s: &Session,
    id: FileId,
    level: ThumbLevel,
) -> Result<Found> {
    let rec = match browse::readable_file(db, s, id).await {
        Ok(r) => r,
        // Offline library: a thumbnail already cached is still served.
        Err(Error::Offline(msg)) => {
            if let Some(found) = offline_uploaded(db, cfg, s, id, level).await {
                return Ok(found);
            }
            return offline_cached(db, thumbs, s, id, level)
                .await
                .ok_or(Error::Offline(msg));
        }
        Err(e) => return Err(e),
    };
    let kind = FileType::from_bits(rec.file_type).unwrap_or(FileType::Other);
    if !kind.has_thumbnail() {
        return Err(Error::WrongFileType(format!(
            "file {} is not an image, GIF or video: no thumbnail",
            id.0
        )));
    }
    if let Some(uploaded) = by_part_status(db, cfg, &rec, level).await? {
        return Ok(uploaded);
    }
    let src = source(db, &rec, kind).await?;
    let got = thumbs.get(id.0, level, src).await;
    if matches!(
        got,
        Err(ThumbError::SourceMissing(_) | ThumbError::Failed(_) | ThumbError::TooLarge(_))
    ) && !root_online(db, rec.library_id).await?
    {
        // The disk went away before the watcher noticed: the original is
        // not gone and its thumbnail not broken, the library is offline
        // (−10011, which a client retries; −10006 it may take as a
        // deletion, and a build error would stick). A cached thumbnail is
        // still served, as for a library already marked offline.
        return offline_cached(db, thumbs, s, id, level)
            .await
            .ok_or_else(|| browse::disk_not_there(id));
    }
    rendered(db, &rec, level, got).await
}

/// What the level's part status says before anything is rendered: an
/// error, the client's uploaded thumbnail, or `None` (the server makes it).
async fn by_part_status(
    db: &Db,
    cfg: &Config,
    rec: &FileRecord,
    level: ThumbLevel,
) -> Result<Option<Found>> {
    let id = rec.id;
    let status = match level {
        ThumbLevel::Small => rec.status_thumb,
        ThumbLevel::Screen => rec.status_screen,
        // Made by the server only (`crate::view`), never uploaded.
        ThumbLevel::View => return Ok(None),
    };
    match PartStatus::from_i64(status) {
        PartStatus::BuildError => Err(Error::ThumbFailed(format!(
            "the thumbnail of file {} could not be built",
            id.0
        ))),
        PartStatus::Uploading => Err(Error::WaitingUpload(format!(
            "the thumbnail of file {} has not been uploaded yet",
            id.0
        ))),
        PartStatus::Uploaded => {
            // On its library's disk, or in the data dir (older uploads).
            let lib = rec.library_id;
            let (root, data) = (
                db.read_async(move |c| libraries::by_id(c, lib)),
                cfg.thumb_dir(),
            );
            let root = root.await?.map(|l| PathBuf::from(l.path));
            let path = tokio::task::spawn_blocking(move || match root {
                Some(r) => crate::library::layout::find_uploaded_thumb(&r, &data, id, level),
                None => crate::library::layout::uploaded_thumb_path(&data, id, level),
            })
            .await?;
            Ok(Some(uploaded(path).await))
        }
        PartStatus::Local if rec.status_origin == PartStatus::Uploading as i64 => Err(
            Error::WaitingUpload(format!("file {} is still being uploaded", id.0)),
        ),
        PartStatus::Local => Ok(None),
    }
}

/// Where the original is and what the cache keys it on.
pub(crate) async fn source(db: &Db, rec: &FileRecord, kind: FileType) -> Result<ThumbSource> {
    // The original is opened from its library's folder, refusing symlinks,
    // and must be the recorded inode (a listed file swapped for a link to
    // another user's photo gives no thumbnail of it); the cache is keyed on
    // it as it is on disk now, so an edited original never serves a stale
    // thumbnail.
    let (lib, file) = (rec.library_id, rec.id);
    let (library, inode) = db
        .read_async(move |c| Ok((libraries::by_id(c, lib)?, files::inode_of(c, file)?)))
        .await?;
    let Some(library) = library else {
        return Err(Error::NotFound(format!("file {} has no library", rec.id.0)));
    };
    Ok(ThumbSource {
        root: PathBuf::from(&library.path),
        path: PathBuf::from(&rec.path),
        inode,
        kind,
        orientation: rec.orientation,
    })
}

/// The cache's answer as a file or an error; a failed render is recorded,
/// so it is not tried again until the file changes.
async fn rendered(
    db: &Db,
    rec: &FileRecord,
    level: ThumbLevel,
    got: std::result::Result<CachedThumb, ThumbError>,
) -> Result<Found> {
    let id = rec.id;
    match got {
        Ok(t) => Ok(t.into()),
        Err(ThumbError::SourceMissing(_)) => Err(Error::FileGone(format!(
            "the original of file {} is missing on disk",
            id.0
        ))),
        Err(ThumbError::Unsupported) => Err(Error::WrongFileType(format!(
            "file {} has no thumbnail",
            id.0
        ))),
        Err(ThumbError::Busy(why)) => Err(Error::Busy(format!(
            "the thumbnail of file {} cannot be made now ({why})",
            id.0
        ))),
        Err(ThumbError::Failed(why) | ThumbError::TooLarge(why)) => {
            log::warn!("thumbnail of file {} ({}) failed: {why}", id.0, rec.path);
            let _ = db
                .write_async(move |tx| {
                    files::set_thumb_status(tx, id, level, PartStatus::BuildError, None)
                })
                .await;
            Err(Error::ThumbFailed(format!(
                "the thumbnail of file {} could not be built",
                id.0
            )))
        }
        Err(e) => Err(Error::Internal(format!("thumbnail of file {}: {e}", id.0))),
    }
}

/// Whether the library's root is there and is the library's disk, checked
/// now (not the watcher's last word).
async fn root_online(db: &Db, lib: crate::model::LibraryId) -> Result<bool> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || crate::library::watcher::root_online(&db, lib))
        .await
        .map_err(|e| Error::Internal(format!("root check: {e}")))?
        .map_err(Error::from)
}

/// The newest cached thumbnail of an accessible file whose library is
/// offline (its original cannot be checked, so any cached version will do).
async fn offline_cached(
    db: &Db,
    thumbs: &ThumbCache,
    s: &Session,
    id: FileId,
    level: ThumbLevel,
) -> Option<Found> {
    let roots = s.roots.clone();
    db.read_async(move |c| files::accessible(c, id, &roots))
        .await
        .ok()??;
    let thumbs = thumbs.clone();
    tokio::task::spawn_blocking(move || thumbs.cached_any(id.0, level))
        .await
        .ok()?
        .map(Found::from)
}

/// The client thumbnail of an accessible file whose library is offline,
/// when it is in the data dir (uploaded before client thumbnails went to
/// the library's disk, and not moved yet: `crate::thumbmove`).
async fn offline_uploaded(
    db: &Db,
    cfg: &Config,
    s: &Session,
    id: FileId,
    level: ThumbLevel,
) -> Option<Found> {
    let roots = s.roots.clone();
    let rec = db
        .read_async(move |c| files::accessible(c, id, &roots))
        .await
        .ok()??;
    let status = match level {
        ThumbLevel::Small => rec.status_thumb,
        ThumbLevel::Screen => rec.status_screen,
        ThumbLevel::View => return None,
    };
    if PartStatus::from_i64(status) != PartStatus::Uploaded {
        return None;
    }
    let path = crate::library::layout::uploaded_thumb_path(&cfg.thumb_dir(), id, level);
    let there = tokio::fs::try_exists(&path).await.unwrap_or(false);
    if there {
        Some(uploaded(path).await)
    } else {
        None
    }
}

/// A client thumbnail at `path`, as it is served.
async fn uploaded(path: PathBuf) -> Found {
    let content_type = sniff_image_type(&path).await;
    Found {
        path,
        content_type,
        uploaded: true,
    }
}

/// `image/png` for a PNG, else `image/jpeg` (clients upload either).
async fn sniff_image_type(path: &std::path::Path) -> &'static str {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 8];
    let Ok(mut f) = tokio::fs::File::open(path).await else {
        return "image/jpeg";
    };
    if f.read_exact(&mut head).await.is_ok() && head == *b"\x89PNG\r\n\x1a\n" {
        "image/png"
    } else {
        "image/jpeg"
    }
}
