//! `media/probe.rs`: what the scanner learns from a file's content —
//! type, display dimensions, orientation, duration, capture time — for
//! anything under an image name (JPEG, PNG, GIF, WebP, TIFF, HEIF, BMP, an
//! ISO-BMFF file): the path that never starts a process.
//!
//! Input: the file. Checks:
//! - probing a readable file never fails (a damaged picture is "other" or
//!   has unknown dimensions, not an error);
//! - dimensions are both known or both unknown, positive, and fit a `u32`
//!   (what the catalogue and the wire API carry);
//! - orientation is 1–8, a duration finite and not negative, a capture
//!   time in years 1–9999;
//! - the live heap stays small (the head buffer is at most 2 MiB).
#![no_main]

use isync::media::probe::probe;
use isync::model::FileType;
use isync_fuzz::scratch_file;
use libfuzzer_sys::fuzz_target;

const FIRST_SECOND: i64 = -62_135_596_800 - 86_400;
const LAST_SECOND: i64 = 253_402_300_799 + 86_400;

fuzz_target!(|data: &[u8]| {
    let path = scratch_file(data, "jpg");
    let (kind, info) = probe(&path, FileType::Image).expect("probing a readable image file");
    match (info.width, info.height) {
        (Some(w), Some(h)) => {
            assert!(w >= 1 && u32::try_from(w).is_ok(), "width {w}");
            assert!(h >= 1 && u32::try_from(h).is_ok(), "height {h}");
        }
        (None, None) => {}
        (w, h) => panic!("one dimension known: {w:?} x {h:?} ({kind:?})"),
    }
    if let Some(o) = info.orientation {
        assert!((1..=8).contains(&o), "orientation {o}");
    }
    if let Some(d) = info.duration {
        assert!(d.is_finite() && d >= 0.0, "duration {d}");
    }
    if let Some(t) = info.capture_time {
        assert!(
            (FIRST_SECOND..=LAST_SECOND).contains(&t),
            "capture time {t}"
        );
    }
    if kind == FileType::Gif {
        assert!(data.starts_with(b"GIF8"), "GIF type without the GIF magic");
    }
});
