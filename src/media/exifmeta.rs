//! EXIF for the catalogue: finding the Exif APP1 segment in a JPEG header held
//! in memory, and reading Orientation and the capture time out of it.

use super::jpegwalk::{is_sof, Step, Walker};
use exif::{In, Tag, Value};
use std::ops::Range;

/// What a JPEG header buffer says about its Exif segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JpegExif {
    /// Byte range of the TIFF structure (after `Exif\0\0`) within the buffer.
    Found(Range<usize>),
    /// The header holds no Exif segment (or is not a JPEG we can walk).
    Absent,
    /// The walk ran off the end of the buffer; it needs this many bytes
    /// (always more than it was given).
    NeedMore(usize),
}

/// The EXIF facts the catalogue keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExifMeta {
    /// EXIF Orientation 1..=8 (out-of-range values are dropped).
    pub orientation: Option<u16>,
    /// `DateTimeOriginal` (else `DateTimeDigitized`) as unix seconds.
    pub capture_time: Option<i64>,
}

const EXIF_ID: &[u8] = b"Exif\0\0";

/// Walks the JPEG marker segments of `buf` (which starts at SOI) up to the
/// first frame header, looking for an APP1 segment that carries Exif. Other
/// APP1 segments (XMP) are skipped, and so are stray bytes between segments
/// (`jpegwalk`). Never reads past `buf`.
pub fn find_jpeg_exif(buf: &[u8]) -> JpegExif {
    let mut walk = Walker::new();
    loop {
        let h = match walk.step(buf) {
            Step::Header(h) => h,
            Step::NeedMore(n) => return JpegExif::NeedMore(n),
            Step::End => return JpegExif::Absent,
        };
        // Start of scan or any frame header: Exif comes before these in
        // every writer we know of, so stop looking.
        if h.marker == 0xDA || is_sof(h.marker) {
            return JpegExif::Absent;
        }
        let (body, end) = (h.at + 2, h.end());
        let tiff = body + EXIF_ID.len();
        // An APP1 segment too short for the identifier is no Exif: skip it.
        // (Asking for its end, already held, made the caller loop forever:
        // found by the exif fuzz target.)
        if h.marker == 0xE1 && tiff <= end {
            if tiff > buf.len() {
                return JpegExif::NeedMore(end);
            }
            if buf[body..tiff] == *EXIF_ID {
                if end > buf.len() {
                    return JpegExif::NeedMore(end);
                }
                return JpegExif::Found(tiff..end);
            }
        }
    }
}

/// Parses a TIFF/Exif structure and extracts orientation and capture time.
/// `None` when the structure is unreadable; partial data is used when the
/// parser could read some of it (a TIFF file cut at our read buffer).
pub fn parse_tiff(tiff: &[u8]) -> Option<ExifMeta> {
    let parsed = exif::Reader::new()
        .continue_on_error(true)
        .read_raw(tiff.to_vec())
        .or_else(|e| e.distill_partial_result(|_| {}));
    parsed.ok().map(|exif| meta_of(&exif))
}

/// Best-effort EXIF from an image container other than JPEG (PNG `eXIf`,
/// WebP `EXIF` chunk, TIFF) held in `buf`, possibly cut short.
pub fn from_container(buf: &[u8]) -> Option<ExifMeta> {
    if buf.starts_with(b"II*\0") || buf.starts_with(b"MM\0*") {
        return parse_tiff(buf);
    }
    let exif = exif::Reader::new()
        .read_from_container(&mut std::io::Cursor::new(buf))
        .ok()?;
    Some(meta_of(&exif))
}

fn meta_of(exif: &exif::Exif) -> ExifMeta {
    let orientation = exif
        .get_field(Tag::Orientation, In::PRIMARY)
        .and_then(|f| f.value.get_uint(0))
        .filter(|o| (1..=8).contains(o))
        .map(|o| o as u16);
    let capture_time = capture_time(exif, Tag::DateTimeOriginal, Tag::OffsetTimeOriginal)
        .or_else(|| capture_time(exif, Tag::DateTimeDigitized, Tag::OffsetTimeDigitized));
    ExifMeta {
        orientation,
        capture_time,
    }
}

/// EXIF date-times are local wall-clock time with no zone. With the matching
/// `OffsetTime*` tag we can get the true instant; without it we store the wall
/// clock as if it were UTC, so the date the family sees is the date on the
/// camera.
fn capture_time(exif: &exif::Exif, tag: Tag, offset_tag: Tag) -> Option<i64> {
    let field = exif.get_field(tag, In::PRIMARY)?;
    let Value::Ascii(ref parts) = field.value else {
        return None;
    };
    let mut dt = exif::DateTime::from_ascii(parts.first()?).ok()?;
    if let Some(Value::Ascii(parts)) = exif.get_field(offset_tag, In::PRIMARY).map(|f| &f.value) {
        if let Some(text) = parts.first() {
            // A malformed offset leaves `dt.offset` as None: wall clock as UTC.
            let _ = dt.parse_offset(text);
        }
    }
    let local = unix_from_civil(
        i64::from(dt.year),
        u32::from(dt.month),
        u32::from(dt.day),
        u32::from(dt.hour),
        u32::from(dt.minute),
        u32::from(dt.second),
    )?;
    Some(local - i64::from(dt.offset.unwrap_or(0)) * 60)
}

pub use crate::time::unix_from_civil;

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzz/fuzz_targets/exif.rs: an APP1 segment shorter than
    /// `Exif\0\0` at the end of the buffer gave `NeedMore` of bytes the
    /// buffer already held, and the probe's read-more loop spun forever on
    /// a 10-byte file.
    #[test]
    fn a_short_app1_segment_is_skipped_and_never_asks_for_held_bytes() {
        let file = b"\xFF\xD8\xFF\xE1\x00\x04\x00\x01\x00\x00";
        for len in 2..=file.len() {
            if let JpegExif::NeedMore(n) = find_jpeg_exif(&file[..len]) {
                assert!(n > len, "asks for {n} bytes holding {len}");
            }
        }
        // A real Exif segment after the short one is still found.
        let mut jpeg = b"\xFF\xD8\xFF\xE1\x00\x04Ex".to_vec();
        jpeg.extend_from_slice(b"\xFF\xE1\x00\x0CExif\0\0II*\0");
        jpeg.extend_from_slice(b"\xFF\xD9");
        assert_eq!(find_jpeg_exif(&jpeg), JpegExif::Found(18..22));
    }

    #[test]
    fn jpeg_walk_skips_xmp_and_reports_short_buffers() {
        let mut jpeg = vec![0xFF, 0xD8];
        // APP1 XMP first, then APP1 Exif with a 4-byte "TIFF" body.
        let xmp = b"http://ns.adobe.com/xap/1.0/\0<x/>";
        jpeg.extend_from_slice(&[0xFF, 0xE1]);
        jpeg.extend_from_slice(&((xmp.len() + 2) as u16).to_be_bytes());
        jpeg.extend_from_slice(xmp);
        let exif_at = jpeg.len();
        jpeg.extend_from_slice(&[0xFF, 0xE1, 0x00, 12]);
        jpeg.extend_from_slice(b"Exif\0\0II*\0");
        jpeg.extend_from_slice(&[0xFF, 0xDA]);
        let tiff = exif_at + 4 + 6;
        assert_eq!(find_jpeg_exif(&jpeg), JpegExif::Found(tiff..tiff + 4));
        assert_eq!(
            find_jpeg_exif(&jpeg[..exif_at + 8]),
            JpegExif::NeedMore(exif_at + 14)
        );
        assert_eq!(
            find_jpeg_exif(b"\xFF\xD8\xFF\xC0\x00\x11"),
            JpegExif::Absent
        );
        assert_eq!(find_jpeg_exif(b"not a jpeg"), JpegExif::Absent);
        // Stray bytes after SOI are skipped (libjpeg does; Photoshop files
        // have them): a buffer of them asks for more, and an Exif segment
        // after them is found.
        assert_eq!(
            find_jpeg_exif(b"\xFF\xD8\x12\x34\x56\x78"),
            JpegExif::NeedMore(10)
        );
        let stray = [&jpeg[..2], b"\0\0junk".as_slice(), &jpeg[2..]].concat();
        assert_eq!(find_jpeg_exif(&stray), JpegExif::Found(tiff + 6..tiff + 10));
        assert_eq!(
            find_jpeg_exif(b"\xFF\xD8\xFF\xE1\x00\x01"),
            JpegExif::Absent
        );
    }
}
