//! Test and bench fixtures: JPEG segment builders that turn a plain JPEG
//! into what cameras and phones write (an EXIF APP1 in its place, a CIPA
//! DC-007 Multi-Picture preview). Plain `std`, no import of isync, so the
//! one file serves the integration tests (`mod fixtures;` in
//! `tests/it/common`), the unit tests of `src/media` and the benches (both
//! through `#[path]`). The EXIF segment itself comes from
//! `isync::media::exifwrite::exif_app1_with`, which the demo library needs too.

#![allow(dead_code)]

/// Where a new APP segment goes in `jpeg`: after SOI and the encoder's JFIF
/// APP0, if any (the order cameras use).
fn after_app0(jpeg: &[u8]) -> usize {
    if jpeg.get(2..4) == Some(&[0xFF, 0xE0]) {
        4 + usize::from(u16::from_be_bytes([jpeg[4], jpeg[5]]))
    } else {
        2
    }
}

/// `jpeg` with the APP1 segment `app1` inserted where cameras put it; with
/// `isync::media::exifwrite::exif_app1_with` it is a camera's EXIF JPEG.
pub fn with_app1(jpeg: &[u8], app1: &[u8]) -> Vec<u8> {
    let at = after_app0(jpeg);
    [&jpeg[..at], app1, &jpeg[at..]].concat()
}

/// `primary` (a whole JPEG) turned into a CIPA DC-007 Multi-Picture file
/// whose second image is `preview` (a whole JPEG), typed "large thumbnail"
/// (`preview_type`: 0x010001 VGA class, 0x010002 full-HD class) — what
/// cameras and phones write. The MPF APP2 segment goes after any APP0/APP1
/// of the primary; the preview follows the primary's EOI.
pub fn with_mpf_preview(primary: &[u8], preview: &[u8], preview_type: u32) -> Vec<u8> {
    // Insert after SOI, APP0 and APP1 segments, as cameras order them.
    let mut at = 2;
    while primary.get(at) == Some(&0xFF) && matches!(primary.get(at + 1), Some(0xE0 | 0xE1)) {
        at += 2 + usize::from(u16::from_be_bytes([primary[at + 2], primary[at + 3]]));
    }
    // MP header (little-endian TIFF) + MP Index IFD of 3 entries + 2 MP entries.
    let ifd_at: u32 = 8;
    let entries_at = ifd_at + 2 + 3 * 12 + 4;
    let seg_len = 2 + 4 + entries_at as usize + 2 * 16;
    let mpf_header_in_file = (at + 4 + 4) as u32; // marker, length, "MPF\0"
    let primary_len = (primary.len() + 2 + seg_len) as u32;
    let mut mp = b"II*\0".to_vec();
    mp.extend_from_slice(&ifd_at.to_le_bytes());
    mp.extend_from_slice(&3u16.to_le_bytes());
    let field = |mp: &mut Vec<u8>, tag: u16, typ: u16, count: u32, value: &[u8; 4]| {
        mp.extend_from_slice(&tag.to_le_bytes());
        mp.extend_from_slice(&typ.to_le_bytes());
        mp.extend_from_slice(&count.to_le_bytes());
        mp.extend_from_slice(value);
    };
    field(&mut mp, 0xB000, 7, 4, b"0100"); // MPFVersion
    field(&mut mp, 0xB001, 4, 1, &2u32.to_le_bytes()); // NumberOfImages
    field(&mut mp, 0xB002, 7, 32, &entries_at.to_le_bytes()); // MPEntry
    mp.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    let mp_entry = |mp: &mut Vec<u8>, attr: u32, size: u32, offset: u32| {
        mp.extend_from_slice(&attr.to_le_bytes());
        mp.extend_from_slice(&size.to_le_bytes());
        mp.extend_from_slice(&offset.to_le_bytes());
        mp.extend_from_slice(&[0; 4]); // no dependent images
    };
    // Primary: representative, baseline MP primary image, offset 0 by rule.
    mp_entry(&mut mp, 0x2003_0000, primary_len, 0);
    mp_entry(
        &mut mp,
        preview_type & 0x00FF_FFFF,
        preview.len() as u32,
        primary_len - mpf_header_in_file,
    );
    let mut seg = vec![0xFF, 0xE2];
    seg.extend_from_slice(&(seg_len as u16).to_be_bytes());
    seg.extend_from_slice(b"MPF\0");
    seg.extend_from_slice(&mp);
    debug_assert_eq!(seg.len(), 2 + seg_len);
    [&primary[..at], &seg, &primary[at..], preview].concat()
}

/// An iPhone's MakerNote: `Apple iOS\0`, version 1, `MM`, then a
/// big-endian directory whose offsets count from the note's first byte —
/// a MakerNoteVersion entry, then the Live Photo ContentIdentifier (tag
/// 0x0011, ASCII) when `content_id` is given.
pub fn apple_maker_note(content_id: Option<&str>) -> Vec<u8> {
    let mut note = b"Apple iOS\0\0\x01MM".to_vec();
    let entries: u16 = 1 + u16::from(content_id.is_some());
    let data_at = 14 + 2 + 12 * u32::from(entries) + 4;
    note.extend_from_slice(&entries.to_be_bytes());
    // 0x0001 MakerNoteVersion, SLONG 14.
    note.extend_from_slice(&[0, 1, 0, 9, 0, 0, 0, 1, 0, 0, 0, 14]);
    let mut data = Vec::new();
    if let Some(id) = content_id {
        let text = [id.as_bytes(), b"\0"].concat();
        note.extend_from_slice(&0x0011u16.to_be_bytes());
        note.extend_from_slice(&2u16.to_be_bytes());
        note.extend_from_slice(&(text.len() as u32).to_be_bytes());
        note.extend_from_slice(&data_at.to_be_bytes());
        data.extend_from_slice(&text);
    }
    note.extend_from_slice(&[0; 4]);
    note.extend_from_slice(&data);
    note
}

/// A big-endian TIFF/Exif block as an iPhone writes it: IFD0 with Make
/// and the Exif IFD pointer; the Exif IFD with DateTimeOriginal and the
/// MakerNote `note` (UNDEFINED bytes).
pub fn iphone_exif_tiff(taken: &str, note: &[u8]) -> Vec<u8> {
    let make = b"Apple\0";
    let taken = [taken.as_bytes(), b"\0"].concat();
    let entry = |out: &mut Vec<u8>, tag: u16, typ: u16, count: u32, value: u32| {
        out.extend_from_slice(&tag.to_be_bytes());
        out.extend_from_slice(&typ.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    };
    // Header 8, IFD0 (2 + 2·12 + 4) at 8, Exif IFD (2 + 2·12 + 4) at 38,
    // then Make, DateTimeOriginal and the note.
    let exif_at = 8 + 30;
    let make_at = exif_at + 30;
    let taken_at = make_at + make.len() as u32;
    let note_at = taken_at + taken.len() as u32;
    let mut out = b"MM\0*\0\0\0\x08".to_vec();
    out.extend_from_slice(&2u16.to_be_bytes());
    entry(&mut out, 0x010F, 2, make.len() as u32, make_at);
    entry(&mut out, 0x8769, 4, 1, exif_at);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&2u16.to_be_bytes());
    entry(&mut out, 0x9003, 2, taken.len() as u32, taken_at);
    entry(&mut out, 0x927C, 7, note.len() as u32, note_at);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(make);
    out.extend_from_slice(&taken);
    out.extend_from_slice(note);
    out
}

/// `tiff` as a JPEG's EXIF APP1 segment.
pub fn exif_app1(tiff: &[u8]) -> Vec<u8> {
    let len = u16::try_from(2 + 6 + tiff.len()).expect("EXIF fits one APP1 segment");
    let mut seg = vec![0xFF, 0xE1];
    seg.extend_from_slice(&len.to_be_bytes());
    seg.extend_from_slice(b"Exif\0\0");
    seg.extend_from_slice(tiff);
    seg
}
