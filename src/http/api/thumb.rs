//! `thumbnail.icc` (spec §6.10, §10).

use crate::browse;
use crate::db::{files, libraries};
use crate::error::Error;
use crate::http::error::BinaryError;
use crate::http::state::{AppState, Authed};
use crate::http::stream::{send_file, OpenError};
use crate::media::thumbcache::ThumbSource;
use crate::media::thumbs::ThumbError;
use crate::model::{FileId, FileType, PartStatus, ThumbLevel};
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use std::path::PathBuf;

pub async fn thumbnail(
    State(st): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Authed { s, p, .. }: Authed<BinaryError>,
) -> Result<Response, BinaryError> {
    let id = FileId(p.req_int("id")?);
    let level = ThumbLevel::from_param(p.opt_int("level").unwrap_or(0));
    let rec = match browse::readable_file(&st.db, &s, id).await {
        Ok(r) => r,
        Err(Error::Offline(msg)) => {
            // Offline library: a thumbnail already cached is still served.
            return match offline_cached(&st, &s, id, level).await {
                Some((path, ctype)) => serve(&path, ctype, &method, &headers).await,
                None => Err(Error::Offline(msg).into()),
            };
        }
        Err(e) => return Err(e.into()),
    };
    let kind = FileType::from_bits(rec.file_type).unwrap_or(FileType::Other);
    if !kind.has_thumbnail() {
        return Err(Error::WrongFileType(format!(
            "file {} is not an image, GIF or video: no thumbnail",
            id.0
        ))
        .into());
    }
    let status = match level {
        ThumbLevel::Small => rec.status_thumb,
        ThumbLevel::Screen => rec.status_screen,
    };
    match PartStatus::from_i64(status) {
        PartStatus::BuildError => {
            return Err(Error::ThumbFailed(format!(
                "the thumbnail of file {} could not be built",
                id.0
            ))
            .into())
        }
        PartStatus::Uploading => {
            return Err(Error::WaitingUpload(format!(
                "the thumbnail of file {} has not been uploaded yet",
                id.0
            ))
            .into())
        }
        PartStatus::Uploaded => {
            let path = crate::library::layout::uploaded_thumb_path(&st.cfg.thumb_dir(), id, level);
            let ctype = sniff_image_type(&path).await;
            return serve(&path, ctype, &method, &headers).await.map_err(|_| {
                Error::NotFound(format!(
                    "the uploaded thumbnail of file {} is missing",
                    id.0
                ))
                .into()
            });
        }
        PartStatus::Local => {}
    }
    if rec.status_origin == PartStatus::Uploading as i64 {
        return Err(Error::WaitingUpload(format!("file {} is still being uploaded", id.0)).into());
    }
    // The original is opened from its library's folder, refusing symlinks,
    // and must be the recorded inode (a listed file swapped for a link to
    // another user's photo gives no thumbnail of it); the cache is keyed on
    // it as it is on disk now, so an edited original never serves a stale
    // thumbnail.
    let (library, inode) = {
        let (lib, file) = (rec.library_id, id);
        st.db
            .read_async(move |c| Ok((libraries::by_id(c, lib)?, files::inode_of(c, file)?)))
            .await
            .map_err(Error::from)?
    };
    let Some(library) = library else {
        return Err(Error::NotFound(format!("file {} has no library", id.0)).into());
    };
    let src = ThumbSource {
        root: PathBuf::from(&library.path),
        path: PathBuf::from(&rec.path),
        inode,
        kind,
        orientation: rec.orientation,
    };
    let got = st.thumbs.get(id.0, level, src).await;
    if matches!(
        got,
        Err(ThumbError::SourceMissing(_) | ThumbError::Failed(_))
    ) && !root_online(&st, rec.library_id).await?
    {
        // The disk went away before the watcher noticed: the original is
        // not gone and its thumbnail not broken, the library is offline
        // (−10011, which a client retries; −10006 it may take as a
        // deletion, and a build error would stick). A cached thumbnail is
        // still served, as for a library already marked offline.
        return match offline_cached(&st, &s, id, level).await {
            Some((path, ctype)) => serve(&path, ctype, &method, &headers).await,
            None => Err(Error::Offline(format!(
                "file {} is in a library whose disk is not there right now (unplugged or \
                 unmounted?); try again when it is back",
                id.0
            ))
            .into()),
        };
    }
    match got {
        Ok(t) => serve(&t.path, t.content_type, &method, &headers).await,
        Err(ThumbError::SourceMissing(_)) => {
            Err(Error::FileGone(format!("the original of file {} is missing on disk", id.0)).into())
        }
        Err(ThumbError::Unsupported) => {
            Err(Error::WrongFileType(format!("file {} has no thumbnail", id.0)).into())
        }
        Err(ThumbError::Busy(why)) => Err(Error::Busy(format!(
            "the thumbnail of file {} cannot be made now ({why})",
            id.0
        ))
        .into()),
        Err(ThumbError::Failed(why)) => {
            log::warn!("thumbnail of file {} ({}) failed: {why}", id.0, rec.path);
            let db = st.db.clone();
            let _ = db
                .write_async(move |tx| {
                    files::set_thumb_status(tx, id, level, PartStatus::BuildError, None)
                })
                .await;
            Err(
                Error::ThumbFailed(format!("the thumbnail of file {} could not be built", id.0))
                    .into(),
            )
        }
        Err(e) => Err(Error::Internal(format!("thumbnail of file {}: {e}", id.0)).into()),
    }
}

/// Whether the library's root is there and is the library's disk, checked
/// now (not the watcher's last word).
async fn root_online(st: &AppState, lib: crate::model::LibraryId) -> Result<bool, BinaryError> {
    let db = st.db.clone();
    tokio::task::spawn_blocking(move || crate::library::watcher::root_online(&db, lib))
        .await
        .map_err(|e| Error::Internal(format!("root check: {e}")))?
        .map_err(|e| Error::from(e).into())
}

/// The newest cached thumbnail of an accessible file whose library is
/// offline (its original cannot be checked, so any cached version will do).
async fn offline_cached(
    st: &AppState,
    s: &crate::perms::Session,
    id: FileId,
    level: ThumbLevel,
) -> Option<(PathBuf, &'static str)> {
    let roots = s.roots.clone();
    st.db
        .read_async(move |c| files::accessible(c, id, &roots))
        .await
        .ok()??;
    let thumbs = st.thumbs.clone();
    tokio::task::spawn_blocking(move || thumbs.cached_any(id.0, level))
        .await
        .ok()?
        .map(|t| (t.path, t.content_type))
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

async fn serve(
    path: &std::path::Path,
    ctype: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, BinaryError> {
    send_file(path, Some(ctype), method, headers)
        .await
        .map_err(|e| match e {
            OpenError::Missing => {
                Error::ThumbFailed("thumbnail vanished from the cache".into()).into()
            }
            OpenError::Io(e) => Error::Internal(format!("thumbnail: {e}")).into(),
        })
}
