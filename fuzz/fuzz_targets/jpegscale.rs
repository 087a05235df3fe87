//! `media/jpegscale.rs`: the thumbnail decode of a JPEG file — its header
//! walk, the EXIF IFD1 thumbnail, the MPF large thumbnail, the parallel
//! paths and jpeg-decoder at reduced scale — and `decode_bytes` (video
//! frames).
//!
//! Input: 1 byte of parameters (level), then the file. Checks:
//! - a raster holds `width × height × (3 | 4)` bytes, both sides ≥ 1;
//! - it covers what was asked: its long side is at least the level's edge,
//!   or the photo's own long side when that is smaller (an embedded
//!   preview too small for the box must not be used);
//! - the EXIF thumbnail alone obeys the same rule;
//! - the live heap stays within the render budget (`DEFAULT_BUDGET_BYTES`).
#![no_main]

use isync::media::fuzzing::{decode_bytes, exif_thumbnail, jpeg_head, thumbnail_decode, Pixels};
use isync::media::budget::DEFAULT_BUDGET_BYTES;
use isync::model::ThumbLevel;
use isync_fuzz::{params, scratch_file, set_heap_limit};
use libfuzzer_sys::fuzz_target;

fn check(p: &Pixels, photo_long: u32, edge: u32, what: &str) {
    assert!(p.width >= 1 && p.height >= 1, "{what}: empty raster");
    let channels = if p.alpha { 4 } else { 3 };
    assert_eq!(
        p.data.len(),
        p.width as usize * p.height as usize * channels,
        "{what}: {}x{}",
        p.width,
        p.height
    );
    assert!(
        p.width.max(p.height) >= edge.min(photo_long),
        "{what}: {}x{} for edge {edge} of a photo {photo_long} px long",
        p.width,
        p.height
    );
}

fuzz_target!(
    init: {
        set_heap_limit(DEFAULT_BUDGET_BYTES as usize + (64 << 20));
    },
    |data: &[u8]| {
    let ([l], jpeg) = params::<1>(data);
    let level = if l & 1 == 0 { ThumbLevel::Small } else { ThumbLevel::Screen };
    let edge = level.max_edge_px();
    let path = scratch_file(jpeg, "jpg");
    let photo_long = jpeg_head(jpeg).map(|h| h.width.max(h.height));

    if let Ok(Some(p)) = thumbnail_decode(&path, level) {
        let long = photo_long.as_ref().expect("decoded a file whose head doesn't read");
        check(&p, *long, edge, "thumbnail decode");
    }
    if let Some(p) = exif_thumbnail(&path, edge) {
        let long = photo_long.as_ref().expect("EXIF thumbnail of a file whose head doesn't read");
        check(&p, *long, edge, "EXIF thumbnail");
    }
    if let Ok(p) = decode_bytes(jpeg, edge) {
        let long = photo_long.as_ref().expect("decoded bytes whose head doesn't read");
        check(&p, *long, edge, "decode_bytes");
    }
});
