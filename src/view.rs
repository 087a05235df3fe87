//! Browser-viewable originals (issue 15; isync's `viewFile.icc`, and share
//! links opened by a browser): which file shows a photo in a browser. A
//! photo a browser displays as it is (JPEG, PNG, GIF, WebP, BMP) is its
//! original; one it cannot (HEIC/HEIF, AVIF, TIFF, anything else the
//! server decodes) is rendered once as a JPEG ([`ThumbLevel::View`]: full
//! size, upright; a PNG when it has transparency) and cached beside its
//! thumbnails — the same store, least-recently-used bound and free-space
//! reserve, one render for any number of concurrent requests, within the
//! render budget. A photo whose full-size render needs more than the whole
//! budget comes at the largest size that fits (`thumbs::render_view`): the
//! answer says the size it has and whether that is smaller.
//!
//! May import: `browse`, `thumbnail` (the original's source), `db`,
//! `media`, `perms`, `model`, `error`. Never `http`.

use crate::browse;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::media::thumbcache::ThumbCache;
use crate::media::thumbs::ThumbError;
use crate::model::{FileId, FileRecord, FileType, PartStatus, ThumbLevel};
use crate::perms::Session;
use std::path::{Path, PathBuf};

/// Content types a browser shows in an `<img>` or as a page of its own.
const BROWSER_TYPES: [&str; 6] = [
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/bmp",
    "image/x-ms-bmp",
];

/// What shows file `id` in a browser.
#[derive(Debug)]
pub(crate) enum View {
    /// The original itself (the browser shows its type): sent as
    /// `downFile.icc` sends it.
    Original(Box<FileRecord>),
    /// A rendering from the thumbnail cache.
    Rendered(Rendered),
}

/// A cached rendering of a photo.
#[derive(Debug)]
pub(crate) struct Rendered {
    pub path: PathBuf,
    pub content_type: &'static str,
    /// The rendering's size, upright.
    pub width: u32,
    pub height: u32,
    /// Smaller than the photo (its full size did not fit the budget).
    pub reduced: bool,
    /// The name a browser saves it under: the original's, with the
    /// rendering's extension.
    pub name: String,
}

/// `viewFile.icc`: the view of file `id` for session `s`, with the checks
/// of `downFile.icc` (browse permission, access, library online, original
/// complete).
pub(crate) async fn find(db: &Db, thumbs: &ThumbCache, s: &Session, id: FileId) -> Result<View> {
    let rec = browse::readable_file(db, s, id).await?;
    if rec.status_origin == PartStatus::Uploading as i64 {
        return Err(Error::WaitingUpload(format!(
            "file {} is still being uploaded",
            id.0
        )));
    }
    of_record(db, thumbs, rec).await
}

/// The view of a file already found readable (a share link's).
pub(crate) async fn of_record(db: &Db, thumbs: &ThumbCache, rec: FileRecord) -> Result<View> {
    let kind = FileType::from_bits(rec.file_type).unwrap_or(FileType::Other);
    if !matches!(kind, FileType::Image | FileType::Gif) {
        return Err(Error::WrongFileType(format!(
            "file {} is not a photo: download it with downFile.icc",
            rec.id.0
        )));
    }
    if shown_as_is(Path::new(&rec.path)) {
        return Ok(View::Original(Box::new(rec)));
    }
    let src = crate::thumbnail::source(db, &rec, kind).await?;
    let id = rec.id;
    let cached = thumbs
        .get(id.0, ThumbLevel::View, src)
        .await
        .map_err(|e| render_error(id, e))?;
    let path = cached.path.clone();
    let size = tokio::task::spawn_blocking(move || imagesize::size(&path)).await?;
    let size = size.map_err(|e| Error::Internal(format!("view of file {}: {e}", id.0)))?;
    let (width, height) = (size.width as u32, size.height as u32);
    let full = rec.width.max(rec.height).unwrap_or(0);
    let ext = if cached.content_type == crate::media::thumbs::CONTENT_TYPE_PNG {
        "png"
    } else {
        "jpg"
    };
    Ok(View::Rendered(Rendered {
        path: cached.path,
        content_type: cached.content_type,
        width,
        height,
        reduced: i64::from(width.max(height)) < full,
        name: renamed(&rec.name, ext),
    }))
}

/// What a share link shows a browser: the view of a photo, the original
/// of anything else (a video plays as it is).
pub(crate) async fn shared(db: &Db, thumbs: &ThumbCache, rec: FileRecord) -> Result<View> {
    let kind = FileType::from_bits(rec.file_type).unwrap_or(FileType::Other);
    if matches!(kind, FileType::Image | FileType::Gif) {
        of_record(db, thumbs, rec).await
    } else {
        Ok(View::Original(Box::new(rec)))
    }
}

/// Whether a browser shows the original as it is, judged as `downFile.icc`
/// labels it: by its extension.
pub(crate) fn shown_as_is(path: &Path) -> bool {
    let ctype = mime_guess::from_path(path).first_raw().unwrap_or("");
    BROWSER_TYPES.contains(&ctype)
}

/// `IMG_0001.HEIC` → `IMG_0001.jpg`.
fn renamed(name: &str, ext: &str) -> String {
    let stem = Path::new(name)
        .file_stem()
        .map_or(name.into(), |s| s.to_string_lossy());
    format!("{stem}.{ext}")
}

/// The render's failure as the service's error. Nothing is recorded: the
/// view has no part status, and a photo whose thumbnails failed has them
/// marked by `thumbnail.icc`.
fn render_error(id: FileId, e: ThumbError) -> Error {
    match e {
        ThumbError::SourceMissing(_) => {
            Error::FileGone(format!("the original of file {} is missing on disk", id.0))
        }
        ThumbError::Unsupported => {
            Error::WrongFileType(format!("file {} cannot be shown as a picture", id.0))
        }
        ThumbError::Busy(why) => Error::Busy(format!(
            "file {} cannot be rendered now ({why}); try again",
            id.0
        )),
        ThumbError::Failed(why) | ThumbError::TooLarge(why) => {
            log::info!("view of file {} failed: {why}", id.0);
            Error::ThumbFailed(format!("file {} cannot be rendered for a browser", id.0))
        }
        e @ ThumbError::Io { .. } => Error::Internal(format!("view of file {}: {e}", id.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_are_sent_what_they_show_and_a_rendering_of_the_rest() {
        for name in ["a.jpg", "b.JPEG", "c.png", "d.gif", "e.webp", "f.bmp"] {
            assert!(shown_as_is(Path::new(name)), "{name}");
        }
        for name in [
            "a.heic", "b.HEIF", "c.avif", "d.tif", "e.tiff", "f.dng", "g",
        ] {
            assert!(!shown_as_is(Path::new(name)), "{name}");
        }
    }

    #[test]
    fn a_rendering_keeps_the_name_with_its_own_extension() {
        assert_eq!(renamed("IMG_0001.HEIC", "jpg"), "IMG_0001.jpg");
        assert_eq!(renamed("scan.page.tif", "png"), "scan.page.png");
        assert_eq!(renamed("noext", "jpg"), "noext.jpg");
    }
}
