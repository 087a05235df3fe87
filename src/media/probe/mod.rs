//! Probing one file: its type (spec §2.2, §12.1) and what the catalogue shows
//! about it — display dimensions, orientation (§2.4), duration, capture time.
//!
//! Images are probed in-process from one read of the file head (the scanner
//! needs tens of thousands per second); MP4-family files by the native box
//! walker in `mp4`; every other audio/video format, and MP4s the walker
//! rejects, by ffprobe under a timeout.

use crate::media::mp4;
use crate::media::process::ProcessError;
use crate::model::{FileType, MediaInfo};
use std::fs::File;
use std::io;
use std::path::Path;

pub(crate) use content::probe_by_content;
use ffprobe::ffprobe_file;

mod content;
mod ffprobe;
mod gifwalk;

/// The first read of an image: enough for the Exif segment (≤ 64 KiB) and the
/// frame header of nearly every camera JPEG.
const HEAD_BYTES: usize = 128 * 1024;
/// How far the head may grow when an Exif segment lies beyond the first read.
const MAX_HEAD_BYTES: usize = 2 * 1024 * 1024;

const IMAGE_EXTS: &[&str] = &[
    "jpg", "jpeg", "jpe", "jfif", "mpo", "png", "webp", "heic", "heif", "hif", "avif", "tif",
    "tiff", "bmp", "dng",
];
const VIDEO_EXTS: &[&str] = &[
    "mp4", "m4v", "mov", "qt", "3gp", "3g2", "mkv", "webm", "avi", "mts", "m2ts", "mpg", "mpeg",
    "wmv", "flv", "ogv",
];
const AUDIO_EXTS: &[&str] = &[
    "mp3", "m4a", "m4b", "aac", "wav", "flac", "ogg", "oga", "opus", "wma", "aif", "aiff", "alac",
];
/// Extensions the native ISO-BMFF walker handles before ffprobe is tried.
const ISOBMFF_EXTS: &[&str] = &["mp4", "m4v", "mov", "qt", "3gp", "3g2", "m4a", "m4b"];
/// ffprobe codecs that are pictures, not moving video (spec §12.1: "video
/// only → 4 unless it is a single-image format").
const STILL_CODECS: &[&str] = &["mjpeg", "png", "bmp", "gif", "tiff", "webp"];

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot probe {path} with ffprobe: {source}")]
    Ffprobe { path: String, source: ProcessError },
    #[error("cannot make sense of {path}: {reason} (damaged or unsupported file?)")]
    Unrecognized { path: String, reason: String },
}

impl ProbeError {
    fn io(path: &Path, source: io::Error) -> ProbeError {
        ProbeError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Classifies a file by its extension alone (no I/O). Used by the scanner to
/// decide whether a file needs probing at all.
pub(crate) fn classify_by_name(path: &Path) -> FileType {
    let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
        return FileType::Other;
    };
    let is = |list: &[&str]| list.iter().any(|e| e.eq_ignore_ascii_case(ext));
    if is(IMAGE_EXTS) {
        FileType::Image
    } else if ext.eq_ignore_ascii_case("gif") {
        FileType::Gif
    } else if is(VIDEO_EXTS) {
        FileType::Video
    } else if is(AUDIO_EXTS) {
        FileType::Audio
    } else {
        FileType::Other
    }
}

/// Probes `path` (a regular file). Returns the final type (a container may turn
/// out to be audio-only) and what could be learnt. Never spawns a process for a
/// file that is not audio/video. Blocking.
///
/// Errors: `Io` when the file cannot be read; `Ffprobe`/`Unrecognized` when an
/// audio/video file could not be understood (the caller may still record it
/// under `guess`). Images whose content is not recognised come back as
/// `FileType::Other`, not as errors.
pub fn probe(path: &Path, guess: FileType) -> Result<(FileType, MediaInfo), ProbeError> {
    probe_expecting(path, guess, None)
}

/// [`probe`] of the file a directory walk saw: `expect` is its (device,
/// inode). The file is opened without following a symlink in its place
/// and must be a regular file with that identity, or the probe fails with
/// `Io` (the scanner skips it until the next look): a listed file or a
/// folder on its path swapped for a symlink, or a FIFO, between the walk
/// and the probe is never read, so no record gets another file's
/// dimensions, capture time or duration, and no scan thread blocks.
pub(crate) fn probe_expecting(
    path: &Path,
    guess: FileType,
    expect: Option<(u64, u64)>,
) -> Result<(FileType, MediaInfo), ProbeError> {
    let file = open_checked(path, expect)?;
    match guess {
        FileType::Video | FileType::Audio => probe_av(file, path),
        // Type by content: a `.jpg` that is really a PNG or a GIF is still
        // shown correctly, and nothing here ever starts a process.
        FileType::Image | FileType::Gif | FileType::Other => probe_by_content(file, path),
    }
}

/// Opens `path` for probing: the last component not followed if it is a
/// symlink, not blocking on a FIFO, a regular file only, and (when given)
/// the expected (device, inode). `Io` errors otherwise.
pub(crate) fn open_checked(path: &Path, expect: Option<(u64, u64)>) -> Result<File, ProbeError> {
    use rustix::fs::{Mode, OFlags};
    use std::os::unix::fs::MetadataExt;
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK;
    let file = File::from(
        rustix::fs::open(path, flags, Mode::empty()).map_err(|e| ProbeError::io(path, e.into()))?,
    );
    let meta = file.metadata().map_err(|e| ProbeError::io(path, e))?;
    if !meta.is_file() {
        return Err(ProbeError::io(
            path,
            io::Error::other("not a regular file any more"),
        ));
    }
    if let Some((dev, ino)) = expect {
        if (meta.dev(), meta.ino()) != (dev, ino) {
            return Err(ProbeError::io(
                path,
                io::Error::other("replaced since the folder was read"),
            ));
        }
    }
    Ok(file)
}

/// `file`: opened by the caller (a missing or unreadable file is a plain
/// `Io` error, not an ffprobe failure), and the one ffprobe reads.
fn probe_av(file: File, path: &Path) -> Result<(FileType, MediaInfo), ProbeError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ISOBMFF_EXTS.iter().any(|e| e.eq_ignore_ascii_case(ext)) {
        match mp4::read_info(&file) {
            Ok(info) => return Ok(media_from_mp4(&info)),
            Err(e) => {
                log::debug!(path:% = path.display(), error:% = e; "native mp4 probe failed, trying ffprobe");
            }
        }
    }
    ffprobe_file(file, path)
}

fn media_from_mp4(info: &mp4::Mp4Info) -> (FileType, MediaInfo) {
    let mut media = MediaInfo {
        duration: info.duration_secs,
        capture_time: info.creation_time,
        content_id: info.content_id.clone(),
        ..MediaInfo::default()
    };
    if let Some(video) = info.video {
        media.orientation = video
            .rotation_cw
            .and_then(|r| orientation_for_rotation(i64::from(r)));
        if video.width > 0 && video.height > 0 {
            (media.width, media.height) = display_dims(
                i64::from(video.width),
                i64::from(video.height),
                media.orientation,
            );
        }
    }
    (info.file_type(), media)
}

/// Display size: stored size, swapped for orientations 5–8 (spec §2.4).
fn display_dims(w: i64, h: i64, orientation: Option<i64>) -> (Option<i64>, Option<i64>) {
    if matches!(orientation, Some(5..=8)) {
        (Some(h), Some(w))
    } else {
        (Some(w), Some(h))
    }
}

/// Orientation for a clockwise display rotation (spec §2.4); upright and odd
/// angles give `None`.
fn orientation_for_rotation(cw_degrees: i64) -> Option<i64> {
    match cw_degrees.rem_euclid(360) {
        90 => Some(6),
        180 => Some(3),
        270 => Some(8),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
