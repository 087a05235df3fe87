//! `media/exifmeta.rs` and the EXIF/MPF side of `media/jpegscale.rs`: the
//! Exif segment finder the scanner runs on a file's head, the TIFF/Exif
//! and container (PNG, WebP, TIFF) readers, and the JPEG head walk that
//! keeps the Exif and MPF payloads for thumbnails.
//!
//! Input: the bytes (a JPEG head, a TIFF structure or a container). Checks:
//! - `find_jpeg_exif` never points outside the buffer, asks for more only
//!   past its end, and gives on a prefix what it gives on the whole (so a
//!   file's head read in one or two reads yields the same Exif);
//! - the two JPEG walkers agree: the head walk's Exif payload is the one
//!   `find_jpeg_exif` found, and its MPF payload is a copy of the input at
//!   the offset it reports;
//! - orientation is 1–8 and a capture time lies in years 1–9999;
//! - the MP entry table has no more entries than its bytes can hold
//!   (16 bytes each, 12 for the last).
#![no_main]

use isync::media::exifmeta::{find_jpeg_exif, from_container, parse_tiff, ExifMeta, JpegExif};
use isync::media::fuzzing::{jpeg_head, mp_entries};
use libfuzzer_sys::fuzz_target;

/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, with a day of slack for
/// a time zone offset.
const FIRST_SECOND: i64 = -62_135_596_800 - 86_400;
const LAST_SECOND: i64 = 253_402_300_799 + 86_400;

fn check_meta(m: &ExifMeta) {
    if let Some(o) = m.orientation {
        assert!((1..=8).contains(&o), "orientation {o}");
    }
    if let Some(t) = m.capture_time {
        assert!(
            (FIRST_SECOND..=LAST_SECOND).contains(&t),
            "capture time {t}"
        );
    }
}

/// Each MP entry is 16 bytes, of which the last entry needs only the
/// first 12 (attribute, size, offset): no more entries than that.
fn check_entries(mpf: &[u8]) {
    if let Some(entries) = mp_entries(mpf) {
        assert!(
            entries.len() <= (mpf.len() + 4) / 16,
            "{} entries",
            entries.len()
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let full = find_jpeg_exif(data);
    match &full {
        JpegExif::Found(r) => {
            assert!(
                r.start >= 12 && r.start <= r.end && r.end <= data.len(),
                "{r:?}"
            );
            assert_eq!(&data[r.start - 6..r.start], b"Exif\0\0");
            if let Some(m) = parse_tiff(&data[r.clone()]) {
                check_meta(&m);
            }
        }
        JpegExif::NeedMore(n) => assert!(*n > data.len(), "needs {n} of {}", data.len()),
        JpegExif::Absent => {}
    }
    // From 2 bytes on: a shorter buffer can't show the SOI marker, and the
    // scanner only walks heads that imagesize recognised as JPEG.
    for cut in [data.len() / 3, data.len() / 2, data.len().saturating_sub(1)] {
        if cut < 2 {
            continue;
        }
        match find_jpeg_exif(&data[..cut]) {
            JpegExif::NeedMore(n) => assert!(n > cut, "needs {n} of {cut}"),
            prefix => assert_eq!(prefix, full, "prefix of {cut} bytes"),
        }
    }

    if let Ok(head) = jpeg_head(data) {
        let found = match &full {
            JpegExif::Found(r) => Some(&data[r.clone()]),
            _ => None,
        };
        assert_eq!(
            head.exif.as_deref(),
            found,
            "the two walkers disagree on Exif"
        );
        if let Some((at, mpf)) = &head.mpf {
            let at = usize::try_from(*at).unwrap();
            assert_eq!(
                data.get(at..at + mpf.len()),
                Some(&mpf[..]),
                "MPF payload at {at}"
            );
            check_entries(mpf);
        }
    }

    if let Some(m) = parse_tiff(data) {
        check_meta(&m);
    }
    if let Some(m) = from_container(data) {
        check_meta(&m);
    }
    check_entries(data);
});
