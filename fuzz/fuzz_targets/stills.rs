//! `media/stillmeta.rs` (BMP sizes, PNG and WebP metadata chunks, XMP
//! orientation, BigTIFF's first directory) and the in-process decoders of
//! still formats other than JPEG: `pngstream`, `tiffdec` (the `tiff`
//! crate, page 0, panics caught) and the `image` crate's BMP decoder.
//!
//! Input: 1 byte of parameters (level), then the file. Checks:
//! - sizes are positive; orientations 1–8; a metadata chunk read from a
//!   WebP or PNG is at most `MAX_META_CHUNK_BYTES`; a PNG's chunks are the
//!   same found in a head holding all of it or a third, the rest sought;
//! - a decoded raster holds `width × height × (3 | 4)` bytes, both sides
//!   ≥ 1, and is refused rather than panicking;
//! - the live heap stays within the render budget (`DEFAULT_BUDGET_BYTES`).
#![no_main]

use std::io::Cursor;

use isync::media::budget::DEFAULT_BUDGET_BYTES;
use isync::media::fuzzing::still_decode;
use isync::media::stillmeta::{
    bigtiff_info, bmp_dims, png_meta, webp_meta, xmp_orientation, MAX_META_CHUNK_BYTES,
};
use isync::model::ThumbLevel;
use isync_fuzz::{params, scratch_file, set_heap_limit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        set_heap_limit(DEFAULT_BUDGET_BYTES as usize + (64 << 20));
    },
    |data: &[u8]| {
    let ([l], file) = params::<1>(data);
    let level = if l & 1 == 0 { ThumbLevel::Small } else { ThumbLevel::Screen };

    if let Some((w, h)) = bmp_dims(file) {
        assert!(w >= 1 && h >= 1, "bmp {w}x{h}");
    }
    // Whole in the head, or the head cut short and the rest read from the
    // file by seeking: the same chunks, none past the cap.
    let whole = png_meta(file, &mut Cursor::new(file));
    let seeking = png_meta(&file[..file.len() / 3], &mut Cursor::new(file));
    if let (Ok(whole), Ok(seeking)) = (&whole, &seeking) {
        assert_eq!(whole, seeking, "png metadata depends on the head's length");
        for chunk in [&whole.0, &whole.1].into_iter().flatten() {
            assert!(chunk.len() <= MAX_META_CHUNK_BYTES as usize);
        }
    }
    if let Some(o) = xmp_orientation(file) {
        assert!((1..=8).contains(&o), "xmp orientation {o}");
    }
    if let Ok((exif, xmp)) = webp_meta(&mut Cursor::new(file)) {
        for chunk in [exif, xmp].into_iter().flatten() {
            assert!(chunk.len() <= MAX_META_CHUNK_BYTES as usize);
        }
    }
    if let Ok(Some((w, h, o))) = bigtiff_info(&mut Cursor::new(file)) {
        assert!(w >= 1 && h >= 1, "bigtiff {w}x{h}");
        assert!(o.is_none_or(|o| (1..=8).contains(&o)), "bigtiff orientation {o:?}");
    }

    let path = scratch_file(file, "img");
    if let Ok(Some(p)) = still_decode(&path, level) {
        assert!(p.width >= 1 && p.height >= 1, "empty raster");
        let channels = if p.alpha { 4 } else { 3 };
        assert_eq!(p.data.len(), p.width as usize * p.height as usize * channels);
    }
});
