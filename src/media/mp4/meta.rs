//! A Live Photo video's content identifier, from the QuickTime metadata
//! of its `meta` box (`hdlr` `mdta`, `keys`, `ilst`).

use std::io::{Read, Seek};

use super::source::{BoxHeader, Source};
use super::{be32, Mp4Error, CONTENT_ID_KEY, MAX_BOXES_PER_CONTAINER, MAX_META_BYTES};

impl<R: Read + Seek> Source<R> {
    /// The content identifier of one `meta` box, read whole when small
    /// (see [`meta_content_id`]); a larger one is skipped.
    pub(super) fn content_id(&mut self, meta: &BoxHeader) -> Result<Option<String>, Mp4Error> {
        let len = meta.end - meta.body;
        if len > MAX_META_BYTES as u64 {
            return Ok(None);
        }
        let mut body = vec![0u8; len as usize];
        self.body(meta, &mut body)?;
        Ok(meta_content_id(&body))
    }
}

/// The Live Photo content identifier in the body of a QuickTime `meta` box
/// (ffmpeg's `mov_read_meta`/`mov_read_keys`/`mov_read_ilst` read the same
/// layout): an `hdlr` of type `mdta`, a `keys` box (version and flags, a
/// count, then per key its size including 8 header bytes, a namespace and
/// the name) and an `ilst` whose children are named by 1-based key index,
/// each holding a `data` box (type, locale, value). QuickTime's `meta` has
/// no version and flags, ISO's has: both are accepted, as ffmpeg does.
/// Pure and bounded: sizes are checked against `body` and a value that is
/// not printable ASCII is none (`exifmeta::content_id_text`).
pub(crate) fn meta_content_id(body: &[u8]) -> Option<String> {
    let hdlr_at = [0, 4]
        .into_iter()
        .find(|&at| body.get(at + 4..at + 8) == Some(b"hdlr"))?;
    let boxes = slice_boxes(&body[hdlr_at..]);
    let (_, hdlr) = boxes.iter().find(|(k, _)| k == b"hdlr")?;
    // version/flags, pre-defined, then the handler type.
    if hdlr.get(8..12) != Some(b"mdta") {
        return None;
    }
    let (_, keys) = boxes.iter().find(|(k, _)| k == b"keys")?;
    let count = keys.get(4..8).map(|b| be32(b, 0))?;
    let mut at = 8usize;
    let mut index = None;
    for i in 1..=count {
        let size = usize::try_from(be32(keys.get(at..at + 4)?, 0)).ok()?;
        let key = keys.get(at + 8..at.checked_add(size)?)?;
        if size < 8 {
            return None;
        }
        if key == CONTENT_ID_KEY {
            index = Some(i);
            break;
        }
        at += size;
    }
    let index = index?.to_be_bytes();
    let (_, ilst) = boxes.iter().find(|(k, _)| k == b"ilst")?;
    let (_, item) = slice_boxes(ilst).into_iter().find(|(k, _)| *k == index)?;
    let (_, data) = slice_boxes(item).into_iter().find(|(k, _)| k == b"data")?;
    // Type 1: UTF-8 text; then a 4-byte locale.
    if data.get(..4).map(|b| be32(b, 0)) != Some(1) {
        return None;
    }
    crate::media::exifmeta::content_id_text(data.get(8..)?)
}

/// The boxes laid end to end in `b` as (type, body), up to the first that
/// does not fit (or a 64-bit or to-the-end size, which small metadata
/// boxes never use).
fn slice_boxes(b: &[u8]) -> Vec<([u8; 4], &[u8])> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(head) = b.get(at..at + 8) {
        let size = be32(head, 0) as usize;
        let Some(body) = b.get(at + 8..at.saturating_add(size)) else {
            break;
        };
        if size < 8 || out.len() >= MAX_BOXES_PER_CONTAINER {
            break;
        }
        out.push(([head[4], head[5], head[6], head[7]], body));
        at += size;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::read_info;
    use super::super::tests::{bx, ftyp, mvhd_v0};
    use super::*;
    use std::io::Cursor;

    const UUID: &str = "FFCBAC24-E547-4BBC-AF47-38B1A3D845E3";

    /// A QuickTime `meta` box as an iPhone writes it (no version and flags
    /// unless `iso`): `hdlr` mdta, `keys`, `ilst`, the content identifier
    /// under key `at` (1-based) among `keys`.
    fn meta(iso: bool, keys: &[&str], values: &[&str]) -> Vec<u8> {
        let mut hdlr = vec![0; 8];
        hdlr.extend_from_slice(b"mdta");
        hdlr.extend_from_slice(&[0; 13]);
        let mut k = vec![0, 0, 0, 0];
        k.extend_from_slice(&(keys.len() as u32).to_be_bytes());
        for key in keys {
            k.extend_from_slice(&(key.len() as u32 + 8).to_be_bytes());
            k.extend_from_slice(b"mdta");
            k.extend_from_slice(key.as_bytes());
        }
        let mut ilst = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let mut data = vec![0, 0, 0, 1, 0, 0, 0, 0];
            data.extend_from_slice(v.as_bytes());
            ilst.extend(bx(&(i as u32 + 1).to_be_bytes(), &bx(b"data", &data)));
        }
        let mut body = if iso { vec![0; 4] } else { Vec::new() };
        body.extend([bx(b"hdlr", &hdlr), bx(b"keys", &k), bx(b"ilst", &ilst)].concat());
        bx(b"meta", &body)
    }

    const KEY: &str = "com.apple.quicktime.content.identifier";

    #[test]
    fn a_live_photo_video_names_its_content_identifier() {
        let keys = ["com.apple.quicktime.make", KEY, "com.apple.quicktime.model"];
        let values = ["Apple", &UUID.to_lowercase(), "iPhone 15"];
        // iPhone: moov/meta without version; ffmpeg: moov/udta/meta, ISO.
        let iphone = bx(
            b"moov",
            &[mvhd_v0(600, 1200), meta(false, &keys, &values)].concat(),
        );
        let info = read_info(Cursor::new([ftyp(), iphone].concat())).unwrap();
        assert_eq!(info.content_id.as_deref(), Some(UUID));
        assert_eq!(info.duration_secs, Some(2.0));
        let udta = bx(b"udta", &meta(true, &[KEY], &[UUID]));
        let ffmpeg = bx(b"moov", &[udta, mvhd_v0(600, 1200)].concat());
        let info = read_info(Cursor::new([ftyp(), ffmpeg].concat())).unwrap();
        assert_eq!(info.content_id.as_deref(), Some(UUID));
        // Other keys only, or no meta: none.
        let other = bx(
            b"moov",
            &[mvhd_v0(600, 1200), meta(false, &keys[..1], &values[..1])].concat(),
        );
        assert_eq!(
            read_info(Cursor::new([ftyp(), other].concat()))
                .unwrap()
                .content_id,
            None
        );
    }

    /// Fuzz safety of the `meta` parser: every truncation and every byte
    /// changed of a real layout, and noise, give an identifier or none,
    /// never a panic or a read outside the box; the movie itself still
    /// reads when only its `meta` is damaged.
    #[test]
    fn damaged_meta_boxes_never_panic() {
        let good = meta(false, &["com.apple.quicktime.make", KEY], &["Apple", UUID]);
        let body = &good[8..];
        assert_eq!(meta_content_id(body).as_deref(), Some(UUID));
        for len in 0..body.len() {
            if let Some(id) = meta_content_id(&body[..len]) {
                assert!(UUID.starts_with(&id), "cut at {len}: {id}");
            }
        }
        for at in 0..body.len() {
            for v in [0x00, 0x07, 0x80, 0xFF] {
                let mut bad = body.to_vec();
                bad[at] = v;
                if let Some(id) = meta_content_id(&bad) {
                    assert!(id.is_ascii() && id.len() <= 64, "byte {at} = {v}: {id}");
                }
                let moov = bx(b"moov", &[mvhd_v0(600, 1200), bx(b"meta", &bad)].concat());
                let info = read_info(Cursor::new([ftyp(), moov].concat())).unwrap();
                assert_eq!(info.duration_secs, Some(2.0));
            }
        }
        // A key count of 2^32-1, a key size of 2^32-1.
        let mut many = body.to_vec();
        let keys_at = many.windows(4).position(|w| w == b"keys").unwrap();
        many[keys_at + 8..keys_at + 12].copy_from_slice(&[0xFF; 4]);
        let _ = meta_content_id(&many);
        many[keys_at + 12..keys_at + 16].copy_from_slice(&[0xFF; 4]);
        assert_eq!(meta_content_id(&many), None);
        let mut seed = 0x9E37_79B9_u32;
        for n in [0usize, 4, 8, 12, 40, 300] {
            let mut noise = b"\0\0\0\x21hdlr".to_vec();
            for _ in 0..n {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                noise.push((seed >> 24) as u8);
            }
            let _ = meta_content_id(&noise);
        }
    }
}
