//! EXIF for the catalogue: finding the Exif APP1 segment in a JPEG header held
//! in memory, and reading Orientation, the capture time and an iPhone's Live
//! Photo content identifier (Apple MakerNote tag 0x0011) out of it.

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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExifMeta {
    /// EXIF Orientation 1..=8 (out-of-range values are dropped).
    pub orientation: Option<u16>,
    /// `DateTimeOriginal` (else `DateTimeDigitized`) as unix seconds.
    pub capture_time: Option<i64>,
    /// The Live Photo content identifier of an iPhone picture (see
    /// [`apple_content_id`]), normalised by [`content_id_text`].
    pub content_id: Option<String>,
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
    let content_id = exif
        .get_field(Tag::MakerNote, In::PRIMARY)
        .and_then(|f| match &f.value {
            Value::Undefined(note, _) => apple_content_id(note),
            _ => None,
        });
    ExifMeta {
        orientation,
        capture_time,
        content_id,
    }
}

/// The header of an iPhone's MakerNote: `Apple iOS\0`, a version (`\0\x01`
/// on every iPhone seen), then the byte order of the directory after it.
const APPLE_NOTE_ID: &[u8] = b"Apple iOS\0";
/// Where the MakerNote's directory starts (exiftool's `Apple::Main`: "Start
/// => $valuePtr + 14"); its value offsets count from the note's first byte
/// ("Base => $start - 14").
const APPLE_NOTE_IFD_AT: usize = 14;
/// Apple MakerNote tag 0x0011, exiftool's `ContentIdentifier`: a UUID
/// string the photo shares with the `.MOV` of its Live Photo.
const APPLE_TAG_CONTENT_ID: u16 = 0x0011;
/// More directory entries than this is not a MakerNote iOS wrote (about 60
/// tags on an iPhone 15): the rest is not read.
const APPLE_NOTE_MAX_ENTRIES: usize = 512;
/// Longest content identifier kept (a UUID is 36 characters).
pub(crate) const CONTENT_ID_MAX_CHARS: usize = 64;

/// The content identifier in an Apple MakerNote (`note`: the MakerNote's
/// bytes, its header first). `None` for any other maker's note and for a
/// note that is cut short or whose entry points outside it: every length
/// and offset is checked against `note`, none is trusted.
pub(crate) fn apple_content_id(note: &[u8]) -> Option<String> {
    if !note.starts_with(APPLE_NOTE_ID) {
        return None;
    }
    let big = match note.get(12..14)? {
        b"MM" => true,
        b"II" => false,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b: [u8; 2] = note.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = note.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let count = usize::from(u16_at(APPLE_NOTE_IFD_AT)?).min(APPLE_NOTE_MAX_ENTRIES);
    (0..count).find_map(|i| {
        let entry = APPLE_NOTE_IFD_AT + 2 + 12 * i;
        // Type 2 (ASCII) or 7 (undefined bytes): a string either way.
        if u16_at(entry)? != APPLE_TAG_CONTENT_ID || !matches!(u16_at(entry + 2)?, 2 | 7) {
            return None;
        }
        let len = usize::try_from(u32_at(entry + 4)?).ok()?;
        let value = if len <= 4 {
            note.get(entry + 8..entry + 8 + len)?
        } else {
            let at = usize::try_from(u32_at(entry + 8)?).ok()?;
            note.get(at..at.checked_add(len)?)?
        };
        content_id_text(value)
    })
}

/// A content identifier as the catalogue keeps it: printable ASCII up to
/// the first NUL, trimmed and upper-cased (iOS writes UUIDs in capitals;
/// compared alike whatever wrote them), 1 to [`CONTENT_ID_MAX_CHARS`] long.
/// Anything else is no identifier.
pub(crate) fn content_id_text(raw: &[u8]) -> Option<String> {
    let raw = raw.split(|&b| b == 0).next().unwrap_or_default();
    let text = std::str::from_utf8(raw).ok()?.trim();
    let ok = !text.is_empty()
        && text.len() <= CONTENT_ID_MAX_CHARS
        && text.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| text.to_ascii_uppercase())
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

pub(crate) use crate::time::unix_from_civil;

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

    const UUID: &str = "FFCBAC24-E547-4BBC-AF47-38B1A3D845E3";

    /// The Live Photo identifier is read from an iPhone's EXIF (big-endian,
    /// MakerNote in the Exif IFD), with the capture time beside it.
    #[test]
    fn an_iphone_maker_note_gives_the_content_identifier() {
        use crate::media::testkit::{apple_maker_note, iphone_exif_tiff};
        let note = apple_maker_note(Some(&UUID.to_lowercase()));
        assert_eq!(apple_content_id(&note).as_deref(), Some(UUID));
        let tiff = iphone_exif_tiff("2023:06:01 12:00:00", &note);
        let meta = parse_tiff(&tiff).unwrap();
        assert_eq!(meta.content_id.as_deref(), Some(UUID));
        assert_eq!(meta.capture_time, Some(1_685_620_800));
        // No identifier in the note, or another maker's note: none.
        let plain = iphone_exif_tiff("2023:06:01 12:00:00", &apple_maker_note(None));
        assert_eq!(parse_tiff(&plain).unwrap().content_id, None);
        let other = iphone_exif_tiff("2023:06:01 12:00:00", b"Nikon\0\x02\x10\0\0MM\0*");
        assert_eq!(parse_tiff(&other).unwrap().content_id, None);
    }

    /// Fuzz safety: every truncation of a note, every single-byte change
    /// and plain garbage give an identifier or none, never a panic, and
    /// never one read from outside the note (an offset pointing past its
    /// end, a length of 4 GiB).
    #[test]
    fn apple_maker_notes_cut_short_or_garbled_never_panic() {
        use crate::media::testkit::{apple_maker_note, iphone_exif_tiff};
        let note = apple_maker_note(Some(UUID));
        for len in 0..note.len() {
            // The identifier ends the note: any cut loses it.
            let cut = apple_content_id(&note[..len]);
            assert!(
                cut.is_none() || len >= note.len() - 1,
                "cut at {len}: {cut:?}"
            );
            let _ = parse_tiff(&iphone_exif_tiff("2023:06:01 12:00:00", &note[..len]));
        }
        for at in 0..note.len() {
            for v in [0x00, 0x01, 0x7F, 0x80, 0xFF] {
                let mut bad = note.clone();
                bad[at] = v;
                if let Some(id) = apple_content_id(&bad) {
                    assert!(id.len() <= CONTENT_ID_MAX_CHARS && id.is_ascii());
                }
            }
        }
        // Length 0xFFFFFFFF and an offset past the end.
        let mut huge = note.clone();
        huge[14 + 2 + 12 + 4..14 + 2 + 12 + 8].copy_from_slice(&[0xFF; 4]);
        assert_eq!(apple_content_id(&huge), None);
        let mut far = note.clone();
        far[14 + 2 + 12 + 8..14 + 2 + 12 + 12].copy_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
        assert_eq!(apple_content_id(&far), None);
        // An entry count of 65535 over a short note.
        let mut many = note[..30].to_vec();
        many[14..16].copy_from_slice(&[0xFF, 0xFF]);
        assert_eq!(apple_content_id(&many), None);
        let mut noise = 0x1234_5678u32;
        for len in [0, 1, 13, 14, 16, 100, 1000] {
            let mut g = b"Apple iOS\0\0\x01MM".to_vec();
            g.extend((0..len).map(|_| {
                noise ^= noise << 13;
                noise ^= noise >> 17;
                noise ^= noise << 5;
                noise as u8
            }));
            let _ = apple_content_id(&g);
        }
        // Only printable ASCII is an identifier.
        assert_eq!(content_id_text(b" ab-12\0junk"), Some("AB-12".into()));
        assert_eq!(content_id_text(b"\0"), None);
        assert_eq!(content_id_text("é".as_bytes()), None);
        assert_eq!(content_id_text(&[b'a'; 65]), None);
    }
}
