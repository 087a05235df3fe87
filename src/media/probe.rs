//! Probing one file: its type (spec §2.2, §12.1) and what the catalogue shows
//! about it — display dimensions, orientation (§2.4), duration, capture time.
//!
//! Images are probed in-process from one read of the file head (the scanner
//! needs tens of thousands per second); MP4-family files by the native box
//! walker in `mp4`; every other audio/video format, and MP4s the walker
//! rejects, by ffprobe under a timeout.

use crate::media::container;
use crate::media::exifmeta::{self, JpegExif};
use crate::media::heif;
use crate::media::jpegwalk;
use crate::media::mp4;
use crate::media::process::{self, ProcessError, FFPROBE_TIMEOUT};
use crate::media::stillmeta;
use crate::model::{FileType, MediaInfo};
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Command;

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

thread_local! {
    /// One reusable head buffer per probing thread: allocating and faulting in
    /// 128 KiB per file would cost more than the probe itself.
    static HEAD_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The first bytes of a file, read once, extendable when a format needs more.
struct Head<'a> {
    file: &'a mut File,
    buf: &'a mut Vec<u8>,
    len: usize,
    /// A read came back short: `len` is the whole file.
    at_end: bool,
}

impl Head<'_> {
    fn data(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The file's length: known without a system call when the head holds
    /// all of it.
    fn file_len(&self) -> io::Result<u64> {
        if self.at_end {
            return Ok(self.len as u64);
        }
        Ok(self.file.metadata()?.len())
    }

    /// Reads on until `want` bytes are held (capped at `MAX_HEAD_BYTES`);
    /// `false` at end of file. The file position stays at `len`.
    fn extend_to(&mut self, want: usize) -> io::Result<bool> {
        if want > MAX_HEAD_BYTES {
            return Ok(false);
        }
        if self.buf.len() < want {
            self.buf
                .resize(want.max(self.buf.len() * 2).min(MAX_HEAD_BYTES), 0);
        }
        while self.len < want {
            match self.file.read(&mut self.buf[self.len..]) {
                Ok(0) => {
                    self.at_end = true;
                    return Ok(false);
                }
                Ok(n) => self.len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

pub(crate) fn probe_by_content(
    mut file: File,
    path: &Path,
) -> Result<(FileType, MediaInfo), ProbeError> {
    HEAD_BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < HEAD_BYTES {
            buf.resize(HEAD_BYTES, 0);
        }
        // One read. A short read from a regular file means end of file; if a
        // parser wants more anyway, `extend_to` simply asks again.
        let len = loop {
            match file.read(&mut buf[..HEAD_BYTES]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other.map_err(|e| ProbeError::io(path, e))?,
            }
        };
        let mut head = Head {
            file: &mut file,
            buf: &mut buf,
            len,
            at_end: len < HEAD_BYTES,
        };
        let result = probe_head(path, &mut head);
        if buf.len() > HEAD_BYTES {
            buf.truncate(HEAD_BYTES);
            buf.shrink_to(HEAD_BYTES);
        }
        result
    })
}

fn probe_head(path: &Path, head: &mut Head<'_>) -> Result<(FileType, MediaInfo), ProbeError> {
    use imagesize::ImageType;
    if heif::is_heif(head.data()) {
        return Ok(probe_heif(path, head));
    }
    if stillmeta::is_bigtiff(head.data()) {
        return Ok(probe_bigtiff(path, head));
    }
    let kind = imagesize::image_type(head.data()).ok();
    let exif = match kind {
        Some(ImageType::Gif) => return probe_gif(path, head),
        Some(ImageType::Jpeg) => jpeg_exif(path, head)?,
        Some(ImageType::Png) => png_exif(path, head)?,
        Some(ImageType::Webp) => webp_exif(path, head)?,
        Some(ImageType::Tiff) => exifmeta::from_container(head.data()),
        // HEIF/AVIF without a still brand we know (`probe_heif` takes the
        // rest): imagesize's size, no orientation.
        Some(ImageType::Heif(_) | ImageType::Bmp | ImageType::Jxl) => None,
        _ if head.data().get(4..8) == Some(b"ftyp") => return probe_isobmff_head(path, head),
        _ => {
            log::debug!(path:% = path.display(); "not a recognised image");
            return Ok((FileType::Other, MediaInfo::default()));
        }
    };
    let exif = exif.unwrap_or_default();
    let orientation = exif.orientation.map(i64::from);
    let dims = match kind {
        // imagesize reads a top-down BMP's negative height unsigned and an
        // OS/2 1.x header's 16-bit sizes as 32-bit ones.
        Some(ImageType::Bmp) => stillmeta::bmp_dims(head.data()),
        // Our own walk first: it steps over stray bytes between segments.
        Some(ImageType::Jpeg) => jpeg_dims(path, head)?.or_else(|| image_dims(head)),
        _ => image_dims(head),
    };
    let (width, height) = match dims {
        Some((w, h)) => display_dims(w, h, orientation),
        None => {
            log::debug!(path:% = path.display(); "image dimensions not found");
            (None, None)
        }
    };
    let info = MediaInfo {
        width,
        height,
        orientation,
        duration: None,
        capture_time: exif.capture_time,
        content_id: exif.content_id,
    };
    Ok((FileType::Image, info))
}

/// Exif of a JPEG from the head, reading further only when the segment
/// lies (partly) beyond the first read.
fn jpeg_exif(path: &Path, head: &mut Head<'_>) -> Result<Option<exifmeta::ExifMeta>, ProbeError> {
    loop {
        match exifmeta::find_jpeg_exif(head.data()) {
            JpegExif::Found(range) => {
                let meta = exifmeta::parse_tiff(&head.data()[range]);
                if meta.is_none() {
                    log::debug!(path:% = path.display(); "unreadable exif segment");
                }
                return Ok(meta);
            }
            JpegExif::Absent => return Ok(None),
            JpegExif::NeedMore(want) => {
                // Only a request for bytes not held yet makes progress.
                if want <= head.len || !head.extend_to(want).map_err(|e| ProbeError::io(path, e))? {
                    return Ok(None);
                }
            }
        }
    }
}

/// A BigTIFF (scanners, microscopes, GIS tools) is a photo like any TIFF;
/// its size and orientation from its first directory.
fn probe_bigtiff(path: &Path, head: &mut Head<'_>) -> (FileType, MediaInfo) {
    let found = stillmeta::bigtiff_info(&mut BufReader::with_capacity(4096, &mut *head.file));
    let (width, height, orientation) = match found {
        Ok(Some((w, h, o))) => {
            let o = o.map(i64::from);
            let (w, h) = display_dims(w, h, o);
            (w, h, o)
        }
        other => {
            log::debug!(path:% = path.display(), found:? = other.err(); "bigtiff size not found");
            (None, None, None)
        }
    };
    let info = MediaInfo {
        width,
        height,
        orientation,
        ..MediaInfo::default()
    };
    (FileType::Image, info)
}

/// EXIF of a PNG (its `eXIf` chunk), with the orientation of its XMP
/// packet when EXIF gives none: from the head, or wherever they lie past
/// it (`stillmeta::png_meta` seeks past the pixels). A file unreadable past
/// the head has what the head holds, not an error.
fn png_exif(path: &Path, head: &mut Head<'_>) -> Result<Option<exifmeta::ExifMeta>, ProbeError> {
    let found = stillmeta::png_meta(
        head.buf.get(..head.len).unwrap_or_default(),
        &mut *head.file,
    );
    // Back where the head ends, as `Head::extend_to` expects.
    head.file
        .seek(SeekFrom::Start(head.len as u64))
        .map_err(|e| ProbeError::io(path, e))?;
    let (exif, xmp) = found.unwrap_or_else(|e| {
        log::debug!(path:% = path.display(), error:% = e; "png metadata unreadable");
        (None, None)
    });
    let meta = exif
        .as_deref()
        .and_then(exifmeta::parse_tiff)
        .or_else(|| exifmeta::from_container(head.data()));
    let xmp = xmp.as_deref().and_then(stillmeta::xmp_orientation);
    Ok(with_xmp_orientation(meta, xmp))
}

/// EXIF of a WebP, from its `EXIF` chunk wherever it lies (after the
/// pixels, as most writers put it, is past the head), with the orientation
/// of its XMP chunk when EXIF gives none. A file cut short or unreadable
/// past the head has no metadata, not an error: its pixels may still show.
fn webp_exif(path: &Path, head: &mut Head<'_>) -> Result<Option<exifmeta::ExifMeta>, ProbeError> {
    let found = stillmeta::webp_meta(&mut BufReader::with_capacity(4096, &mut *head.file));
    // Back where the head ends, as `Head::extend_to` expects.
    head.file
        .seek(SeekFrom::Start(head.len as u64))
        .map_err(|e| ProbeError::io(path, e))?;
    let (exif, xmp) = found.unwrap_or_else(|e| {
        log::debug!(path:% = path.display(), error:% = e; "webp metadata unreadable");
        (None, None)
    });
    let meta = exif.as_deref().and_then(exifmeta::parse_tiff);
    let xmp = xmp.as_deref().and_then(stillmeta::xmp_orientation);
    Ok(with_xmp_orientation(meta, xmp))
}

/// `meta` with XMP's orientation when EXIF has none (EXIF wins, as in
/// browsers, when both are there).
fn with_xmp_orientation(
    meta: Option<exifmeta::ExifMeta>,
    xmp: Option<u16>,
) -> Option<exifmeta::ExifMeta> {
    match (meta, xmp) {
        (Some(m), _) if m.orientation.is_some() => Some(m),
        (m, Some(o)) => Some(exifmeta::ExifMeta {
            orientation: Some(o),
            ..m.unwrap_or_default()
        }),
        (m, None) => m,
    }
}

/// A JPEG's stored size from its first frame header, reading further when
/// the header lies beyond the first read (up to `MAX_HEAD_BYTES`).
fn jpeg_dims(path: &Path, head: &mut Head<'_>) -> Result<Option<(i64, i64)>, ProbeError> {
    loop {
        match jpegwalk::frame_size(head.data()) {
            Ok(size) => {
                let positive = |v: u32| Some(i64::from(v)).filter(|&v| v > 0);
                return Ok(size.and_then(|(w, h)| Some((positive(w)?, positive(h)?))));
            }
            Err(want) => {
                if want <= head.len || !head.extend_to(want).map_err(|e| ProbeError::io(path, e))? {
                    return Ok(None);
                }
            }
        }
    }
}

/// Stored pixel size from the head; when the header continues past it (huge
/// APPn segments, a TIFF directory at the end) imagesize seeks the file.
fn image_dims(head: &mut Head<'_>) -> Option<(i64, i64)> {
    let size = match imagesize::blob_size(head.data()) {
        Ok(size) => size,
        Err(imagesize::ImageError::IoError(_)) => {
            head.file.seek(SeekFrom::Start(0)).ok()?;
            imagesize::reader_size(BufReader::new(&mut *head.file)).ok()?
        }
        Err(_) => return None,
    };
    let w = i64::try_from(size.width).ok().filter(|&w| w > 0)?;
    let h = i64::try_from(size.height).ok().filter(|&h| h > 0)?;
    Some((w, h))
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

/// A GIF is type 2 whether or not it is animated (type by format, §2.2);
/// its duration is the sum of its frame delays.
fn probe_gif(path: &Path, head: &mut Head<'_>) -> Result<(FileType, MediaInfo), ProbeError> {
    // The head is followed by the rest of the file, read where we left off.
    let rest = Cursor::new(&head.buf[..head.len]).chain(&mut *head.file);
    let walk = walk_gif(BufReader::new(rest));
    if let Some(e) = &walk.error {
        log::debug!(path:% = path.display(), error:% = e; "gif walk stopped early");
    }
    // Both sides or neither: a zero side makes the size unknown, not half
    // known (found by fuzz/fuzz_targets/probe.rs).
    let info = match walk.screen {
        Some((w, h)) => MediaInfo {
            width: Some(i64::from(w)).filter(|_| w > 0 && h > 0),
            height: Some(i64::from(h)).filter(|_| w > 0 && h > 0),
            duration: Some(f64::from(walk.delay_cs) / 100.0),
            ..MediaInfo::default()
        },
        None => MediaInfo::default(),
    };
    Ok((FileType::Gif, info))
}

#[derive(Debug, Default)]
struct GifWalk {
    /// Logical screen size.
    screen: Option<(u16, u16)>,
    frames: u32,
    /// Sum of frame delays in hundredths of a second.
    delay_cs: u32,
    /// Why the walk stopped before the trailer, if it did.
    error: Option<io::Error>,
}

/// Walks GIF blocks without decoding any image data. A truncated file keeps
/// what was counted so far (viewers show such files too).
fn walk_gif<R: BufRead>(mut r: R) -> GifWalk {
    let mut walk = GifWalk::default();
    if let Err(e) = walk_gif_blocks(&mut r, &mut walk) {
        walk.error = Some(e);
    }
    walk
}

fn walk_gif_blocks<R: BufRead>(r: &mut R, walk: &mut GifWalk) -> io::Result<()> {
    let mut header = [0u8; 13];
    r.read_exact(&mut header)?;
    if !header.starts_with(b"GIF8") {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a gif"));
    }
    walk.screen = Some((
        u16::from_le_bytes([header[6], header[7]]),
        u16::from_le_bytes([header[8], header[9]]),
    ));
    skip_color_table(r, header[10])?;
    let mut pending_delay = 0u32;
    loop {
        match read_u8(r)? {
            // Trailer.
            0x3B => return Ok(()),
            // Extension: a graphic control extension carries the delay of
            // the image that follows it.
            0x21 => {
                let label = read_u8(r)?;
                if label == 0xF9 {
                    let len = read_u8(r)?;
                    let mut gce = [0u8; 4];
                    if len >= 4 {
                        r.read_exact(&mut gce)?;
                        skip(r, u64::from(len - 4))?;
                        pending_delay = u32::from(u16::from_le_bytes([gce[1], gce[2]]));
                    } else {
                        skip(r, u64::from(len))?;
                    }
                }
                skip_sub_blocks(r)?;
            }
            // Image descriptor, optional local palette, LZW data.
            0x2C => {
                let mut desc = [0u8; 9];
                r.read_exact(&mut desc)?;
                skip_color_table(r, desc[8])?;
                read_u8(r)?; // LZW minimum code size
                skip_sub_blocks(r)?;
                walk.frames += 1;
                walk.delay_cs = walk.delay_cs.saturating_add(pending_delay);
                pending_delay = 0;
            }
            // Junk after the last frame is common; stop counting there.
            _ => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "unknown block"));
            }
        }
    }
}

fn skip_color_table<R: BufRead>(r: &mut R, flags: u8) -> io::Result<()> {
    if flags & 0x80 != 0 {
        skip(r, 3u64 << ((flags & 7) + 1))?;
    }
    Ok(())
}

fn skip_sub_blocks<R: BufRead>(r: &mut R) -> io::Result<()> {
    loop {
        match read_u8(r)? {
            0 => return Ok(()),
            n => skip(r, u64::from(n))?,
        }
    }
}

fn read_u8<R: Read>(r: &mut R) -> io::Result<u8> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b)?;
    Ok(b[0])
}

fn skip<R: BufRead>(r: &mut R, n: u64) -> io::Result<()> {
    let skipped = io::copy(&mut r.take(n), &mut io::sink())?;
    if skipped < n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// A HEIF/AVIF still (`heif`): the primary item's displayed size (after
/// `clap` and `irot`), `irot`/`imir` as the equivalent EXIF orientation
/// (what the stored pixels need to be upright, §2.4; the Exif item's own
/// orientation is ignored, as iOS and libheif ignore it) and the capture
/// time from the Exif item. A file whose boxes don't parse is still a
/// photo, listed without its size. Reads only the boxes before the media
/// data and the Exif item; decodes nothing.
fn probe_heif(path: &Path, head: &mut Head<'_>) -> (FileType, MediaInfo) {
    let file_len = match head.file_len() {
        Ok(n) => n,
        Err(e) => {
            log::debug!(path:% = path.display(), error:% = e; "HEIF length unknown");
            return (FileType::Image, MediaInfo::default());
        }
    };
    // `meta` and the Exif item from the bytes already read when they lie
    // there (an iPhone's do: both sit in the first few KiB).
    let mut file = heif::HeadFile::new(&head.buf[..head.len], &mut *head.file, file_len);
    let parsed = heif::read(&mut file);
    let h = match parsed {
        Ok(h) => h,
        Err(e) => {
            log::debug!(path:% = path.display(), error:% = e; "HEIF not readable");
            return (FileType::Image, MediaInfo::default());
        }
    };
    let (w, h_px) = h.primary.display_size();
    let orientation = match h.primary.orientation() {
        1 => None,
        o => Some(i64::from(o)),
    };
    let exif = h
        .exif(&mut file)
        .and_then(|tiff| exifmeta::parse_tiff(&tiff));
    let (capture_time, content_id) = exif.map_or((None, None), |e| (e.capture_time, e.content_id));
    let info = MediaInfo {
        width: Some(i64::from(w)),
        height: Some(i64::from(h_px)),
        orientation,
        duration: None,
        capture_time,
        content_id,
    };
    (FileType::Image, info)
}

/// An ISO-BMFF file under an image name: the native walker may read it, but
/// no process is started for it.
fn probe_isobmff_head(
    path: &Path,
    head: &mut Head<'_>,
) -> Result<(FileType, MediaInfo), ProbeError> {
    match mp4::read_info(&mut *head.file) {
        Ok(info) => Ok(media_from_mp4(&info)),
        Err(e) => {
            log::debug!(path:% = path.display(), error:% = e; "ftyp file not readable as mp4");
            Ok((FileType::Other, MediaInfo::default()))
        }
    }
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

/// Runs ffprobe on `path` and reads its JSON report. Blocking.
///
/// ffprobe reads the file we opened (its standard input; the last component
/// must not be a symlink) with the demuxer our sniffing of its first bytes
/// chose, never one it guesses: a playlist or `concat` script named `.mp4`
/// would otherwise make it open the files listed (`container.rs`).
#[cfg(test)]
pub(crate) fn probe_with_ffprobe(path: &Path) -> Result<(FileType, MediaInfo), ProbeError> {
    // O_NONBLOCK: a FIFO in its place must not hang the probe thread.
    ffprobe_file(open_checked(path, None)?, path)
}

/// [`probe_with_ffprobe`] of a regular file already opened.
fn ffprobe_file(file: File, path: &Path) -> Result<(FileType, MediaInfo), ProbeError> {
    let unrecognized = |reason: String| ProbeError::Unrecognized {
        path: path.display().to_string(),
        reason,
    };
    (&file).rewind().map_err(|e| ProbeError::io(path, e))?;
    let mut head = [0u8; container::SNIFF_BYTES];
    let n = crate::media::original::read_at_most(&file, &mut head, 0)
        .map_err(|e| ProbeError::io(path, e))?;
    let Some((c, demuxer)) = container::sniff(&head[..n]).and_then(|c| Some((c, c.demuxer()?)))
    else {
        return Err(unrecognized(
            "not an audio or video format isync reads".into(),
        ));
    };
    let mut cmd = Command::new(process::ffprobe_path());
    cmd.args(["-v", "error", "-print_format", "json"])
        .args(["-show_format", "-show_streams"])
        .args(process::input_args(demuxer, c.demuxer_options()));
    let json =
        process::run_on_file(cmd, file, FFPROBE_TIMEOUT).map_err(|source| ProbeError::Ffprobe {
            path: path.display().to_string(),
            source,
        })?;
    parse_ffprobe_json(&json).map_err(unrecognized)
}

#[derive(Debug, Deserialize)]
struct FfReport {
    #[serde(default)]
    streams: Vec<FfStream>,
    #[serde(default)]
    format: FfFormat,
}

#[derive(Debug, Default, Deserialize)]
struct FfFormat {
    duration: Option<String>,
    #[serde(default)]
    tags: HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct FfStream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<i64>,
    height: Option<i64>,
    /// Pixel aspect ratio, `"4:3"` (`"0:1"` or absent: unknown, square).
    sample_aspect_ratio: Option<String>,
    duration: Option<String>,
    nb_frames: Option<String>,
    #[serde(default)]
    disposition: HashMap<String, i64>,
    #[serde(default)]
    tags: HashMap<String, String>,
    #[serde(default)]
    side_data_list: Vec<FfSideData>,
}

#[derive(Debug, Deserialize)]
struct FfSideData {
    side_data_type: Option<String>,
    rotation: Option<f64>,
}

impl FfStream {
    fn is(&self, kind: &str) -> bool {
        self.codec_type.as_deref() == Some(kind)
    }

    /// A video stream that moves: not cover art, not a lone picture.
    fn is_moving_video(&self) -> bool {
        if !self.is("video") || self.disposition.get("attached_pic") == Some(&1) {
            return false;
        }
        let still_codec = self
            .codec_name
            .as_deref()
            .is_some_and(|c| STILL_CODECS.contains(&c));
        let frames = self
            .nb_frames
            .as_deref()
            .and_then(|n| n.parse::<u64>().ok());
        // Motion-JPEG AVIs from old cameras are real videos with many frames.
        !(still_codec && frames.is_none_or(|n| n <= 1))
    }

    /// Width as displayed before rotation: anamorphic video (pixel aspect
    /// ratio ≠ 1) is shown `width·sar` wide, as the MP4 `tkhd` says it.
    fn display_width(&self, width: i64) -> i64 {
        let sar = self.sample_aspect_ratio.as_deref().and_then(|r| {
            let (n, d) = r.split_once(':')?;
            let (n, d) = (n.parse::<i64>().ok()?, d.parse::<i64>().ok()?);
            (n > 0 && d > 0 && n != d).then_some((n, d))
        });
        match sar {
            Some((n, d)) => {
                let w = (i128::from(width) * i128::from(n) + i128::from(d) / 2) / i128::from(d);
                i64::try_from(w).unwrap_or(width).max(1)
            }
            None => width,
        }
    }

    /// Clockwise display rotation. ffmpeg's display matrix angle is
    /// counter-clockwise (a phone held upright reports -90); the old
    /// `rotate` tag is already clockwise.
    fn rotation_cw(&self) -> Option<i64> {
        let matrix = self
            .side_data_list
            .iter()
            .filter(|s| s.side_data_type.as_deref() == Some("Display Matrix"))
            .find_map(|s| s.rotation)
            .filter(|r| r.is_finite())
            .map(|r| -(r.round() as i64));
        matrix.or_else(|| self.tags.get("rotate")?.trim().parse::<i64>().ok())
    }
}

/// Maps ffprobe's `-show_format -show_streams` JSON to our type and info.
fn parse_ffprobe_json(json: &[u8]) -> Result<(FileType, MediaInfo), String> {
    let report: FfReport =
        serde_json::from_slice(json).map_err(|e| format!("unexpected ffprobe output: {e}"))?;
    let video = report.streams.iter().find(|s| s.is_moving_video());
    let has_audio = report.streams.iter().any(|s| s.is("audio"));
    let kind = match (video, has_audio) {
        (Some(_), _) => FileType::Video,
        (None, true) => FileType::Audio,
        (None, false) => FileType::Other,
    };
    let seconds = |s: &Option<String>| {
        s.as_deref()
            .and_then(|d| d.trim().parse::<f64>().ok())
            .filter(|d| d.is_finite() && *d > 0.0)
    };
    let duration = seconds(&report.format.duration).or_else(|| {
        report
            .streams
            .iter()
            .filter_map(|s| seconds(&s.duration))
            .max_by(|a, b| a.total_cmp(b))
    });
    let capture_time = report
        .format
        .tags
        .get("creation_time")
        .or_else(|| video.and_then(|v| v.tags.get("creation_time")))
        .and_then(|t| parse_utc_timestamp(t));
    // ffmpeg reports QuickTime `mdta` keys as format tags by name.
    let content_id = report
        .format
        .tags
        .get("com.apple.quicktime.content.identifier")
        .and_then(|t| exifmeta::content_id_text(t.as_bytes()));
    let mut info = MediaInfo {
        duration,
        capture_time,
        content_id,
        ..MediaInfo::default()
    };
    if let Some(v) = video {
        info.orientation = v.rotation_cw().and_then(orientation_for_rotation);
        if let (Some(w), Some(h)) = (v.width, v.height) {
            if w > 0 && h > 0 {
                (info.width, info.height) = display_dims(v.display_width(w), h, info.orientation);
            }
        }
    }
    Ok((kind, info))
}

/// Parses ffmpeg's `creation_time` (`2020-05-17T10:20:30.000000Z`); the epoch
/// of an unset MP4 field (1904/1970) counts as unknown.
fn parse_utc_timestamp(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<u32>().ok();
    let t = exifmeta::unix_from_civil(
        i64::from(num(0..4)?),
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    )?;
    (t > 0).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Instant;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Security issue #12, finding 5 (the scanner's side): what the walk
    /// saw is what gets probed. A listed file swapped for a symlink to an
    /// outside photo, a folder on its path swapped for a symlink to an
    /// outside folder, another file renamed over it, or a FIFO in its
    /// place: an `Io` error (skipped), never the outside file's size, and
    /// no wait on the FIFO.
    #[test]
    fn a_file_swapped_after_the_walk_is_not_probed() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        let lib = dir.path().join("lib");
        std::fs::create_dir_all(outside.join("album")).unwrap();
        std::fs::create_dir_all(lib.join("album")).unwrap();
        let gif = |w: u8| {
            let mut g = b"GIF89a".to_vec();
            g.extend_from_slice(&[w, 0, 7, 0, 0, 0, 0, 0x3b]);
            g
        };
        write(&outside, "secret.gif", &gif(99));
        write(&outside.join("album"), "a.gif", &gif(99));
        let a = write(&lib.join("album"), "a.gif", &gif(5));
        let seen = |p: &Path| {
            let m = std::fs::symlink_metadata(p).unwrap();
            (m.dev(), m.ino())
        };
        let walked = seen(&a);
        let (t, info) = probe_expecting(&a, FileType::Gif, Some(walked)).unwrap();
        assert_eq!(
            (t, info.width, info.height),
            (FileType::Gif, Some(5), Some(7))
        );
        let refused = |p: &Path, what: &str| match probe_expecting(p, FileType::Gif, Some(walked)) {
            Err(ProbeError::Io { .. }) => {}
            other => panic!("{what}: {other:?}"),
        };

        // The file itself swapped for a symlink.
        std::fs::rename(&a, lib.join("kept.gif")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret.gif"), &a).unwrap();
        refused(&a, "symlink in place of the file");
        std::fs::remove_file(&a).unwrap();
        // The folder swapped for a symlink to an outside folder holding a
        // file of the same name.
        std::fs::rename(lib.join("album"), lib.join("album.old")).unwrap();
        std::os::unix::fs::symlink(outside.join("album"), lib.join("album")).unwrap();
        refused(&a, "symlink in place of the folder");
        std::fs::remove_file(lib.join("album")).unwrap();
        std::fs::rename(lib.join("album.old"), lib.join("album")).unwrap();
        // Another file renamed over it.
        let other = write(&lib, "other.gif", &gif(42));
        std::fs::rename(&other, &a).unwrap();
        refused(&a, "another file");
        // A FIFO: refused at once (the open does not wait for a writer).
        std::fs::remove_file(&a).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &a,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        for guess in [FileType::Gif, FileType::Video] {
            match probe_expecting(&a, guess, None) {
                Err(ProbeError::Io { .. }) => {}
                other => panic!("fifo as {guess:?}: {other:?}"),
            }
        }
    }

    /// A little-endian TIFF/Exif block with IFD0 (Orientation, Exif pointer)
    /// and an Exif IFD (DateTimeOriginal, OffsetTimeOriginal).
    fn tiff_exif(orientation: Option<u16>, taken: Option<&str>, offset: Option<&str>) -> Vec<u8> {
        type Entry = (u16, u16, Vec<u8>); // tag, TIFF type, value bytes
        let ascii = |s: &str| [s.as_bytes(), &[0]].concat();
        let mut ifd0: Vec<Entry> = Vec::new();
        if let Some(o) = orientation {
            ifd0.push((0x0112, 3, o.to_le_bytes().to_vec()));
        }
        let mut exif_ifd: Vec<Entry> = Vec::new();
        if let Some(t) = taken {
            exif_ifd.push((0x9003, 2, ascii(t)));
        }
        if let Some(o) = offset {
            exif_ifd.push((0x9011, 2, ascii(o)));
        }
        let ifd_len = |n: usize| 2 + 12 * n + 4;
        let exif_at = 8 + ifd_len(ifd0.len() + 1);
        ifd0.push((0x8769, 4, (exif_at as u32).to_le_bytes().to_vec()));
        let mut data_at = exif_at + ifd_len(exif_ifd.len());
        let mut out = b"II*\0\x08\0\0\0".to_vec();
        let mut data = Vec::new();
        for ifd in [&ifd0, &exif_ifd] {
            out.extend_from_slice(&(ifd.len() as u16).to_le_bytes());
            for (tag, typ, value) in ifd.iter() {
                let count = if *typ == 3 {
                    value.len() / 2
                } else if *typ == 4 {
                    1
                } else {
                    value.len()
                };
                out.extend_from_slice(&tag.to_le_bytes());
                out.extend_from_slice(&typ.to_le_bytes());
                out.extend_from_slice(&(count as u32).to_le_bytes());
                if value.len() <= 4 {
                    let mut inline = value.clone();
                    inline.resize(4, 0);
                    out.extend_from_slice(&inline);
                } else {
                    out.extend_from_slice(&(data_at as u32).to_le_bytes());
                    data_at += value.len();
                    data.extend_from_slice(value);
                }
            }
            out.extend_from_slice(&[0; 4]);
        }
        out.extend_from_slice(&data);
        out
    }

    fn app_segment(marker: u8, body: &[u8]) -> Vec<u8> {
        let mut seg = vec![0xFF, marker];
        seg.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        seg.extend_from_slice(body);
        seg
    }

    /// A real JPEG from the `image` crate with `segments` spliced in after SOI.
    fn jpeg(w: u32, h: u32, segments: &[Vec<u8>]) -> Vec<u8> {
        let pixels: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        let mut encoded = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut encoded, 80)
            .encode(&pixels, w, h, image::ExtendedColorType::Rgb8)
            .unwrap();
        [&encoded[..2], &segments.concat(), &encoded[2..]].concat()
    }

    fn exif_jpeg(w: u32, h: u32, orientation: Option<u16>, taken: Option<&str>) -> Vec<u8> {
        let body = [&b"Exif\0\0"[..], &tiff_exif(orientation, taken, None)].concat();
        jpeg(w, h, &[app_segment(0xE1, &body)])
    }

    fn gif(frames: &[u16]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            // 256 colours and noisy pixels, so frames don't compress away.
            let palette: Vec<u8> = (0..=255u8).flat_map(|i| [i, 255 - i, i / 2]).collect();
            let mut enc = gif::Encoder::new(&mut out, 30, 20, &palette).unwrap();
            enc.set_repeat(gif::Repeat::Infinite).unwrap();
            for (i, &delay) in frames.iter().enumerate() {
                let mut frame = gif::Frame {
                    width: 30,
                    height: 20,
                    delay,
                    buffer: std::borrow::Cow::Owned(noise(600, i as u32)),
                    ..gif::Frame::default()
                };
                frame.make_lzw_pre_encoded();
                enc.write_lzw_pre_encoded_frame(&frame).unwrap();
            }
        }
        out
    }

    fn noise(len: usize, mut seed: u32) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 24) as u8
            })
            .collect()
    }

    fn dims(info: &MediaInfo) -> (Option<i64>, Option<i64>) {
        (info.width, info.height)
    }

    #[test]
    fn classifies_by_extension_case_insensitively() {
        let c = |n: &str| classify_by_name(Path::new(n));
        assert_eq!(c("a/IMG_1.JPG"), FileType::Image);
        assert_eq!(c("x.heic"), FileType::Image);
        assert_eq!(c("x.Dng"), FileType::Image);
        assert_eq!(c("x.gif"), FileType::Gif);
        assert_eq!(c("x.MOV"), FileType::Video);
        assert_eq!(c("x.m2ts"), FileType::Video);
        assert_eq!(c("x.webm"), FileType::Video);
        assert_eq!(c("x.flac"), FileType::Audio);
        assert_eq!(c("x.M4A"), FileType::Audio);
        assert_eq!(c("x.txt"), FileType::Other);
        assert_eq!(c("README"), FileType::Other);
        assert_eq!(c(".jpg"), FileType::Other, "a dotfile has no extension");
    }

    #[test]
    fn exif_orientation_gives_display_dimensions() {
        let dir = tempfile::tempdir().unwrap();
        for (o, expect) in [
            (1, (64, 48)),
            (3, (64, 48)),
            (5, (48, 64)),
            (6, (48, 64)),
            (8, (48, 64)),
        ] {
            let path = write(
                dir.path(),
                &format!("o{o}.jpg"),
                &exif_jpeg(64, 48, Some(o), None),
            );
            let (kind, info) = probe(&path, FileType::Image).unwrap();
            assert_eq!(kind, FileType::Image);
            assert_eq!(info.orientation, Some(i64::from(o)), "orientation {o}");
            assert_eq!(
                dims(&info),
                (Some(expect.0), Some(expect.1)),
                "orientation {o}"
            );
            assert_eq!(info.duration, None);
        }
        let plain = write(dir.path(), "plain.jpg", &jpeg(64, 48, &[]));
        let (_, info) = probe(&plain, FileType::Image).unwrap();
        assert_eq!(
            (dims(&info), info.orientation),
            ((Some(64), Some(48)), None)
        );
        assert_eq!(info.capture_time, None);
    }

    #[test]
    fn exif_capture_time_with_and_without_offset() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (None, Some(1_623_760_496)),
            (Some("+02:00"), Some(1_623_760_496 - 7200)),
            (Some("-05:30"), Some(1_623_760_496 + 19_800)),
            (Some("bogus!"), Some(1_623_760_496)),
        ];
        for (i, (offset, expect)) in cases.into_iter().enumerate() {
            let tiff = tiff_exif(Some(1), Some("2021:06:15 12:34:56"), offset);
            let body = [&b"Exif\0\0"[..], &tiff].concat();
            let path = write(
                dir.path(),
                &format!("t{i}.jpg"),
                &jpeg(8, 8, &[app_segment(0xE1, &body)]),
            );
            let (_, info) = probe(&path, FileType::Image).unwrap();
            assert_eq!(info.capture_time, expect, "offset {offset:?}");
        }
        let blank = write(
            dir.path(),
            "z.jpg",
            &exif_jpeg(8, 8, None, Some("0000:00:00 00:00:00")),
        );
        let (_, info) = probe(&blank, FileType::Image).unwrap();
        assert_eq!((info.capture_time, info.orientation), (None, None));
    }

    #[test]
    fn exif_and_frame_header_beyond_the_first_read() {
        let dir = tempfile::tempdir().unwrap();
        // XMP first, then three 60 KB APP2 segments push both the Exif
        // segment and the frame header past the 128 KiB head.
        let mut segments = vec![app_segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x/>")];
        segments.extend((0..3).map(|_| app_segment(0xE2, &vec![0x5A; 60_000])));
        let body = [
            &b"Exif\0\0"[..],
            &tiff_exif(Some(6), Some("2001:02:03 04:05:06"), None),
        ]
        .concat();
        segments.push(app_segment(0xE1, &body));
        let path = write(dir.path(), "big.jpg", &jpeg(40, 30, &segments));
        let (kind, info) = probe(&path, FileType::Image).unwrap();
        assert_eq!(kind, FileType::Image);
        assert_eq!(info.orientation, Some(6));
        assert_eq!(dims(&info), (Some(30), Some(40)));
        assert_eq!(
            info.capture_time,
            exifmeta::unix_from_civil(2001, 2, 3, 4, 5, 6)
        );
        HEAD_BUF.with(|b| assert_eq!(b.borrow().len(), HEAD_BYTES, "head buffer shrinks back"));
    }

    #[test]
    fn images_are_typed_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let mut png = Vec::new();
        image::RgbImage::new(33, 17)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        for name in ["a.png", "png-named.jpg", "noext"] {
            let path = write(dir.path(), name, &png);
            let (kind, info) = probe(&path, classify_by_name(&path)).unwrap();
            assert_eq!(
                (kind, dims(&info)),
                (FileType::Image, (Some(33), Some(17))),
                "{name}"
            );
        }
        let gif_named_jpg = write(dir.path(), "anim.jpg", &gif(&[5, 5]));
        assert_eq!(
            probe(&gif_named_jpg, FileType::Image).unwrap().0,
            FileType::Gif
        );
        for (name, bytes) in [
            ("text.jpg", b"hello, not an image".to_vec()),
            ("empty.jpg", Vec::new()),
            ("noise.jpg", noise(5000, 1)),
            ("noise.gif", noise(5000, 2)),
            ("noise.png", noise(300_000, 3)),
        ] {
            let path = write(dir.path(), name, &bytes);
            let (kind, info) = probe(&path, classify_by_name(&path)).unwrap();
            assert_eq!(
                (kind, info),
                (FileType::Other, MediaInfo::default()),
                "{name}"
            );
        }
        let err = probe(&dir.path().join("missing.jpg"), FileType::Image).unwrap_err();
        assert!(matches!(err, ProbeError::Io { .. }), "{err}");
        assert!(err.to_string().contains("missing.jpg"), "{err}");
    }

    #[test]
    fn damaged_jpegs_do_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        let good = exif_jpeg(64, 48, Some(6), Some("2021:06:15 12:34:56"));
        for cut in (0..good.len()).step_by(7) {
            let path = write(dir.path(), "cut.jpg", &good[..cut]);
            let _ = probe(&path, FileType::Image).unwrap();
        }
        for seed in 0..50 {
            let mut bad = good.clone();
            let junk = noise(200, seed);
            let at = 20 + (seed as usize * 13) % 200;
            bad[at..at + 200].copy_from_slice(&junk);
            let path = write(dir.path(), "bad.jpg", &bad);
            let _ = probe(&path, FileType::Image).unwrap();
        }
    }

    #[test]
    fn gif_duration_is_the_sum_of_frame_delays() {
        let dir = tempfile::tempdir().unwrap();
        let anim = gif(&[10, 20, 30]);
        let path = write(dir.path(), "a.gif", &anim);
        let (kind, info) = probe(&path, FileType::Gif).unwrap();
        assert_eq!(kind, FileType::Gif);
        assert_eq!(dims(&info), (Some(30), Some(20)));
        assert_eq!(info.duration, Some(0.6));

        let still = write(dir.path(), "s.gif", &gif(&[0]));
        let (kind, info) = probe(&still, FileType::Gif).unwrap();
        assert_eq!((kind, info.duration), (FileType::Gif, Some(0.0)));

        // Cut inside the last frame: the first two frames still count.
        let walk = walk_gif(&anim[..anim.len() - 10]);
        assert_eq!((walk.frames, walk.delay_cs), (2, 30));
        assert!(walk.error.is_some());
        let cut = write(dir.path(), "cut.gif", &anim[..anim.len() / 2]);
        let (kind, info) = probe(&cut, FileType::Gif).unwrap();
        assert_eq!((kind, dims(&info)), (FileType::Gif, (Some(30), Some(20))));
        // Noise after a valid header.
        let junk = [&anim[..13], &noise(4000, 9)].concat();
        let path = write(dir.path(), "junk.gif", &junk);
        assert_eq!(probe(&path, FileType::Gif).unwrap().0, FileType::Gif);
    }

    /// Found by fuzz/fuzz_targets/exif.rs: a file ending within 6 bytes of
    /// a too-short APP1 segment (22 bytes here: SOI, a comment, APP1 of
    /// length 4, 2 bytes) made the probe loop forever, holding a scanner
    /// thread at 100% CPU.
    #[test]
    fn a_jpeg_ending_in_a_short_app1_segment_probes() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "short.jpg",
            b"\xFF\xD8\xFF\xFE\x00\x0A12345678\xFF\xE1\x00\x04\x00\x01\x00\x00",
        );
        let (kind, info) = probe(&path, FileType::Image).unwrap();
        assert_eq!((kind, info.orientation), (FileType::Image, None));
    }

    /// Found by fuzz/fuzz_targets/probe.rs: a GIF whose logical screen is
    /// 0 wide came back with a height and no width.
    #[test]
    fn a_gif_with_a_zero_side_has_no_size() {
        let dir = tempfile::tempdir().unwrap();
        for (w, h) in [(0u16, 65535u16), (7, 0), (0, 0)] {
            let mut bytes = gif(&[10]);
            bytes[6..8].copy_from_slice(&w.to_le_bytes());
            bytes[8..10].copy_from_slice(&h.to_le_bytes());
            let path = write(dir.path(), "zero.gif", &bytes);
            let (kind, info) = probe(&path, FileType::Image).unwrap();
            assert_eq!(
                (kind, dims(&info)),
                (FileType::Gif, (None, None)),
                "{w}x{h}"
            );
            assert_eq!(info.duration, Some(0.1));
        }
    }

    #[test]
    fn gif_walk_reads_past_the_head_buffer() {
        // Enough frames that the block walk continues into the file after
        // the first 128 KiB read.
        let dir = tempfile::tempdir().unwrap();
        let big = gif(&[2; 300]);
        assert!(big.len() > HEAD_BYTES, "fixture is {} bytes", big.len());
        let path = write(dir.path(), "big.gif", &big);
        let (_, info) = probe(&path, FileType::Gif).unwrap();
        assert_eq!(info.duration, Some(6.0));
    }

    #[test]
    fn ffprobe_json_maps_streams_rotation_and_times() {
        let json = br#"{"streams":[
            {"codec_type":"video","codec_name":"h264","width":1920,"height":1080,
             "nb_frames":"300","disposition":{"default":1,"attached_pic":0},
             "side_data_list":[{"side_data_type":"Display Matrix","rotation":-90}]},
            {"codec_type":"audio","codec_name":"aac"}],
            "format":{"duration":"10.010000","tags":{"creation_time":"2020-05-17T10:20:30.000000Z"}}}"#;
        let (kind, info) = parse_ffprobe_json(json).unwrap();
        assert_eq!(kind, FileType::Video);
        assert_eq!(
            info.orientation,
            Some(6),
            "-90 in the matrix is 90° clockwise"
        );
        assert_eq!(dims(&info), (Some(1080), Some(1920)));
        assert_eq!(info.duration, Some(10.01));
        assert_eq!(info.capture_time, Some(1_589_710_830));

        let rotate_tag = br#"{"streams":[{"codec_type":"video","codec_name":"mpeg4","width":4,"height":2,"tags":{"rotate":"270"}}],"format":{}}"#;
        let (_, info) = parse_ffprobe_json(rotate_tag).unwrap();
        assert_eq!(
            (info.orientation, dims(&info)),
            (Some(8), (Some(2), Some(4)))
        );
        let half_turn = br#"{"streams":[{"codec_type":"video","width":4,"height":2,"side_data_list":[{"side_data_type":"Display Matrix","rotation":180}]}]}"#;
        assert_eq!(
            parse_ffprobe_json(half_turn).unwrap().1.orientation,
            Some(3)
        );

        let mp3_with_cover = br#"{"streams":[{"codec_type":"audio","codec_name":"mp3","duration":"3.5"},
            {"codec_type":"video","codec_name":"png","width":500,"height":500,"disposition":{"attached_pic":1}}],
            "format":{"duration":"N/A"}}"#;
        let (kind, info) = parse_ffprobe_json(mp3_with_cover).unwrap();
        assert_eq!(
            (kind, info.width, info.duration),
            (FileType::Audio, None, Some(3.5))
        );

        let lone_picture = br#"{"streams":[{"codec_type":"video","codec_name":"mjpeg","width":8,"height":8,"nb_frames":"1"}]}"#;
        assert_eq!(parse_ffprobe_json(lone_picture).unwrap().0, FileType::Other);
        let mjpeg_avi = br#"{"streams":[{"codec_type":"video","codec_name":"mjpeg","width":640,"height":480,"nb_frames":"900"}]}"#;
        assert_eq!(parse_ffprobe_json(mjpeg_avi).unwrap().0, FileType::Video);
        assert_eq!(
            parse_ffprobe_json(b"{}").unwrap(),
            (FileType::Other, MediaInfo::default())
        );
        assert!(parse_ffprobe_json(b"not json").is_err());
    }

    #[test]
    fn utc_timestamps_parse_and_epochs_are_unknown() {
        assert_eq!(
            parse_utc_timestamp("2020-05-17T10:20:30Z"),
            Some(1_589_710_830)
        );
        assert_eq!(
            parse_utc_timestamp("2020-05-17 10:20:30"),
            Some(1_589_710_830)
        );
        assert_eq!(parse_utc_timestamp("1970-01-01T00:00:00.000000Z"), None);
        assert_eq!(parse_utc_timestamp("1904-01-01T00:00:00.000000Z"), None);
        assert_eq!(parse_utc_timestamp("yesterday"), None);
    }

    #[test]
    fn garbage_av_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "noise.mp4", &noise(10_000, 4));
        assert!(probe(&path, FileType::Video).is_err());
        let err = probe(&dir.path().join("gone.mkv"), FileType::Video).unwrap_err();
        assert!(matches!(err, ProbeError::Io { .. }), "{err}");
    }

    // ---- fixtures made by the real ffmpeg ----

    /// Whether ffmpeg and ffprobe can run. Under `CI=true` their absence fails
    /// the test; elsewhere the test is skipped with a note.
    fn have_ffmpeg() -> bool {
        let runs = |p: PathBuf| {
            Command::new(p)
                .arg("-version")
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if runs(process::ffmpeg_path()) && runs(process::ffprobe_path()) {
            return true;
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "ffmpeg/ffprobe are required when CI=true (apt-get install ffmpeg)"
        );
        eprintln!("skipping: ffmpeg/ffprobe not found");
        false
    }

    /// Runs ffmpeg in `dir` with whitespace-separated `args`; file names are
    /// relative to `dir`, so the temp path never needs quoting.
    fn ffmpeg(dir: &Path, args: &str) {
        let out = Command::new(process::ffmpeg_path())
            .current_dir(dir)
            .args(["-v", "error", "-y"])
            .args(args.split_whitespace())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "ffmpeg {args}: {err}");
    }

    /// 2 s of 320x240 test pattern at 10 fps plus a sine tone.
    const AV_INPUTS: &str = "-f lavfi -i testsrc=size=320x240:rate=10:duration=2 \
        -f lavfi -i sine=duration=2 -c:v mpeg4 -q:v 3 -c:a aac -shortest";
    const TONE: &str = "-f lavfi -i sine=duration=2";

    fn assert_secs(actual: Option<f64>, expect: f64) {
        let d = actual.expect("a duration");
        let close = (d - expect).abs() < 0.15;
        assert!(close, "duration {d}, expected ≈ {expect}");
    }

    #[test]
    fn mp4_and_mov_are_read_natively() {
        if !have_ffmpeg() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let created = "-metadata creation_time=2020-05-17T10:20:30Z";
        for (name, extra) in [("a.mp4", created), ("a.mov", created), ("a.3gp", "")] {
            ffmpeg(dir.path(), &format!("{AV_INPUTS} {extra} {name}"));
            let path = dir.path().join(name);
            let native = mp4::read_info(File::open(&path).unwrap()).unwrap();
            let (kind, info) = probe(&path, FileType::Video).unwrap();
            let used_native = media_from_mp4(&native) == (kind, info.clone());
            assert!(
                used_native,
                "{name}: probe disagrees with the native reader"
            );
            assert_eq!(kind, FileType::Video, "{name}");
            assert_eq!(dims(&info), (Some(320), Some(240)), "{name}");
            assert_eq!(info.orientation, None, "{name}");
            assert_secs(info.duration, 2.0);
            let expect_time = (!extra.is_empty()).then_some(1_589_710_830);
            assert_eq!(info.capture_time, expect_time, "{name}");
            let (ff_kind, ff_info) = probe_with_ffprobe(&path).unwrap();
            let ff = (ff_kind, dims(&ff_info));
            assert_eq!(ff, (kind, dims(&info)), "ffprobe agrees on {name}");
        }
    }

    /// Mean absolute difference of two same-sized images, 0–255.
    fn image_diff(a: &Path, b: &Path) -> f64 {
        let a = image::open(a).unwrap().to_rgb8();
        let b = image::open(b).unwrap().to_rgb8();
        assert_eq!(a.dimensions(), b.dimensions());
        let pairs = a.as_raw().iter().zip(b.as_raw());
        let total: u64 = pairs.map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
        total as f64 / a.as_raw().len() as f64
    }

    /// Ground truth for the sign of rotation: ffmpeg applies the display
    /// matrix when it decodes, so the frame it shows is compared with the
    /// stored frame turned clockwise and counter-clockwise.
    #[test]
    fn video_rotation_matches_what_ffmpeg_displays() {
        if !have_ffmpeg() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (d, at) = (dir.path(), |n: &str| dir.path().join(n));
        ffmpeg(d, &format!("{AV_INPUTS} plain.mp4"));
        for (filter, out) in [("transpose=clock", "cw"), ("transpose=cclock", "ccw")] {
            ffmpeg(
                d,
                &format!("-i plain.mp4 -vf {filter} -frames:v 1 {out}.png"),
            );
        }
        ffmpeg(d, "-i plain.mp4 -vf hflip,vflip -frames:v 1 half.png");
        for tag in [90, 180, 270] {
            let name = format!("rot{tag}.mp4");
            ffmpeg(
                d,
                &format!("-i plain.mp4 -c copy -metadata:s:v:0 rotate={tag} {name}"),
            );
            ffmpeg(d, &format!("-i {name} -frames:v 1 shown{tag}.png"));
            let shown = at(&format!("shown{tag}.png"));
            let expect = if tag == 180 {
                assert!(image_diff(&shown, &at("half.png")) < 8.0);
                3
            } else {
                let cw = image_diff(&shown, &at("cw.png"));
                let ccw = image_diff(&shown, &at("ccw.png"));
                let clear = cw.min(ccw) < 8.0 && cw.max(ccw) > 30.0;
                assert!(clear, "cw {cw}, ccw {ccw}");
                if cw < ccw {
                    6
                } else {
                    8
                }
            };
            let (kind, info) = probe(&at(&name), FileType::Video).unwrap();
            assert_eq!(kind, FileType::Video);
            assert_eq!(info.orientation, Some(expect), "rotate={tag}");
            let want = if expect == 3 { (320, 240) } else { (240, 320) };
            assert_eq!(dims(&info), (Some(want.0), Some(want.1)), "rotate={tag}");
            let (_, ff) = probe_with_ffprobe(&at(&name)).unwrap();
            let same = (ff.orientation, dims(&ff)) == (info.orientation, dims(&info));
            assert!(
                same,
                "ffprobe disagrees for rotate={tag}: {ff:?} vs {info:?}"
            );
        }
    }

    #[test]
    fn audio_files_are_audio() {
        if !have_ffmpeg() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        ffmpeg(d, &format!("{TONE} -c:a aac a.m4a"));
        ffmpeg(d, &format!("{TONE} -c:a libmp3lame a.mp3"));
        // An MP3 with cover art: a video stream marked attached_pic.
        ffmpeg(d, "-f lavfi -i testsrc=size=64x64 -frames:v 1 cover.png");
        ffmpeg(
            d,
            &format!(
                "{TONE} -i cover.png -map 0 -map 1 -c:a libmp3lame -c:v png \
                 -disposition:v attached_pic -id3v2_version 3 cover.mp3"
            ),
        );
        for name in ["a.m4a", "a.mp3", "cover.mp3"] {
            let (kind, info) = probe(&d.join(name), FileType::Audio).unwrap();
            assert_eq!(kind, FileType::Audio, "{name}");
            assert_eq!(
                (dims(&info), info.orientation),
                ((None, None), None),
                "{name}"
            );
            assert_secs(info.duration, 2.0);
        }
        // An m4a is read natively, without ffprobe.
        let native = mp4::read_info(File::open(d.join("a.m4a")).unwrap()).unwrap();
        assert_eq!(native.file_type(), FileType::Audio);
    }

    #[test]
    fn other_containers_go_through_ffprobe() {
        if !have_ffmpeg() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        ffmpeg(d, &format!("{AV_INPUTS} a.mkv"));
        let (kind, info) = probe(&d.join("a.mkv"), FileType::Video).unwrap();
        assert_eq!(
            (kind, dims(&info)),
            (FileType::Video, (Some(320), Some(240)))
        );
        assert_secs(info.duration, 2.0);
        // Motion JPEG without sound, as old compact cameras wrote.
        ffmpeg(
            d,
            "-f lavfi -i testsrc=size=320x240:rate=10:duration=2 -c:v mjpeg m.avi",
        );
        let (kind, info) = probe(&d.join("m.avi"), FileType::Video).unwrap();
        assert_eq!(
            (kind, dims(&info)),
            (FileType::Video, (Some(320), Some(240)))
        );
    }

    /// What OBS, action cams and screen recorders write: an empty moov,
    /// the samples in moof+mdat fragments. ffprobe is the reference.
    #[test]
    fn fragmented_mp4s_list_their_duration() {
        if !have_ffmpeg() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let long = "-f lavfi -i testsrc=size=320x240:rate=10:duration=5 \
            -f lavfi -i sine=duration=5 -c:v libx264 -preset ultrafast -g 10 -c:a aac -shortest";
        for (name, flags) in [
            ("frag.mp4", "frag_keyframe+empty_moov"),
            ("frag.mov", "frag_keyframe+empty_moov+default_base_moof"),
            // The first fragment inside the moov itself.
            ("hybrid.mp4", "frag_keyframe"),
        ] {
            ffmpeg(d, &format!("{long} -movflags {flags} {name}"));
            let path = d.join(name);
            let native = mp4::read_info(File::open(&path).unwrap()).unwrap();
            let (kind, info) = probe(&path, FileType::Video).unwrap();
            assert_eq!(media_from_mp4(&native), (kind, info.clone()), "{name}");
            assert_eq!(kind, FileType::Video, "{name}");
            assert_eq!(dims(&info), (Some(320), Some(240)), "{name}");
            let (_, ff) = probe_with_ffprobe(&path).unwrap();
            let (ours, theirs) = (info.duration.unwrap(), ff.duration.unwrap());
            assert!(
                (ours - theirs).abs() < 0.1,
                "{name}: {ours} vs ffprobe {theirs}"
            );
            assert_secs(info.duration, 5.0);
        }
    }

    /// Anamorphic video (non-square pixels) is listed at the size it is
    /// shown, by the native reader (tkhd) and through ffprobe (mkv) alike.
    #[test]
    fn anamorphic_video_lists_its_display_size() {
        if !have_ffmpeg() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let src =
            "-f lavfi -i testsrc=size=480x360:rate=10:duration=1 -c:v libx264 -preset ultrafast";
        for name in ["wide.mp4", "wide.mkv"] {
            ffmpeg(d, &format!("{src} -vf setsar=4/3 {name}"));
            let (kind, info) = probe(&d.join(name), FileType::Video).unwrap();
            assert_eq!(kind, FileType::Video);
            assert_eq!(dims(&info), (Some(640), Some(360)), "{name}");
        }
        ffmpeg(d, &format!("{src} -vf setsar=3/4 tall.mkv"));
        let (_, info) = probe(&d.join("tall.mkv"), FileType::Video).unwrap();
        assert_eq!(dims(&info), (Some(360), Some(360)));
    }

    #[test]
    fn truncated_mp4s() {
        if !have_ffmpeg() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // moov at the end: cutting the file loses it, and ffprobe agrees.
        ffmpeg(d, &format!("{AV_INPUTS} tail.mp4"));
        let tail = std::fs::read(d.join("tail.mp4")).unwrap();
        let cut = write(d, "cut.mp4", &tail[..tail.len() / 2]);
        assert!(mp4::read_info(File::open(&cut).unwrap()).is_err());
        assert!(probe(&cut, FileType::Video).is_err());
        // moov first: a file cut inside mdat still has a complete header.
        ffmpeg(d, &format!("{AV_INPUTS} -movflags +faststart front.mp4"));
        let front = std::fs::read(d.join("front.mp4")).unwrap();
        let cut = write(d, "cut2.mp4", &front[..front.len() * 2 / 3]);
        let native = mp4::read_info(File::open(&cut).unwrap()).unwrap();
        assert_eq!(native.file_type(), FileType::Video);
        let (kind, info) = probe(&cut, FileType::Video).unwrap();
        assert_eq!(
            (kind, dims(&info)),
            (FileType::Video, (Some(320), Some(240)))
        );
    }

    /// Micro-measurement of the image fast path. Run with
    /// `cargo test --release --lib media::probe::tests::jpeg_probe_speed -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing, not a check"]
    fn jpeg_probe_speed() {
        let dir = tempfile::tempdir().unwrap();
        for (w, h) in [(64, 48), (640, 480), (2000, 1500)] {
            let files: Vec<PathBuf> = (0..200)
                .map(|i| {
                    let bytes = exif_jpeg(w, h, Some(6), Some("2021:06:15 12:34:56"));
                    write(dir.path(), &format!("{w}-{i}.jpg"), &bytes)
                })
                .collect();
            let size = std::fs::metadata(&files[0]).unwrap().len();
            let rounds = 100;
            let start = Instant::now();
            for _ in 0..rounds {
                for f in &files {
                    let (kind, _) = probe(f, FileType::Image).unwrap();
                    assert_eq!(kind, FileType::Image);
                }
            }
            let per_file = start.elapsed() / (rounds * files.len() as u32);
            // Baseline: just the open and the one head read.
            let mut buf = vec![0u8; HEAD_BYTES];
            let start = Instant::now();
            for _ in 0..rounds {
                for f in &files {
                    let n = File::open(f).unwrap().read(&mut buf).unwrap();
                    assert!(n > 0);
                }
            }
            let io = start.elapsed() / (rounds * files.len() as u32);
            eprintln!(
                "{w}x{h} JPEG ({size} bytes, Exif): {per_file:?} per probe, {io:?} of it open+read"
            );
        }
    }
}
