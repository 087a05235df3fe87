//! Probing by content, from one read of the file's head: the still-image
//! formats (JPEG, PNG, WebP, TIFF, BMP, GIF, HEIF/AVIF), and an ISO-BMFF
//! file under an image name. Never starts a process.

use crate::media::exifmeta::{self, JpegExif};
use crate::media::heif;
use crate::media::jpegwalk;
use crate::media::mp4;
use crate::media::stillmeta;
use crate::model::{FileType, MediaInfo};
use std::cell::RefCell;
use std::fs::File;
use std::io::{self, BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use super::gifwalk::walk_gif;
use super::{display_dims, media_from_mp4, ProbeError, HEAD_BYTES, MAX_HEAD_BYTES};

thread_local! {
    /// One reusable head buffer per probing thread: allocating and faulting in
    /// 128 KiB per file would cost more than the probe itself.
    pub(super) static HEAD_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
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
