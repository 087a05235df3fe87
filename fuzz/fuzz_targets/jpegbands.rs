//! `media/jpegbands.rs`: a JPEG with restart intervals decoded in
//! horizontal bands on several threads through jpeg-decoder.
//!
//! Input: 2 bytes of parameters (output edge, bands), then the JPEG.
//! Checks: a banded decode is exactly jpeg-decoder's one-piece decode
//! (same size, same pixels: the module's promise), holds
//! `width × height × 3` bytes, and the live heap stays within the decode
//! budget.
#![no_main]

use isync::media::fuzzing::{decode_scaled, jpegbands_decode};
use isync::media::budget::DEFAULT_BUDGET_BYTES;
use isync_fuzz::{params, set_heap_limit};
use libfuzzer_sys::fuzz_target;

const EDGES: [u32; 8] = [160, 800, 1, 20, 64, 100, 300, 1200];

fuzz_target!(
    init: {
        set_heap_limit(DEFAULT_BUDGET_BYTES as usize + (64 << 20));
    },
    |data: &[u8]| {
    let ([e, b], jpeg) = params::<2>(data);
    let edge = EDGES[usize::from(e) % EDGES.len()];
    let bands = 2 + usize::from(b) % 3;
    let Some(got) = jpegbands_decode(jpeg, edge, bands) else {
        return;
    };
    assert_eq!(got.data.len(), got.width as usize * got.height as usize * 3);
    let want = decode_scaled(jpeg, edge)
        .unwrap_or_else(|e| panic!("bands decoded what jpeg-decoder refuses: {e}"));
    assert_eq!((got.width, got.height), (want.width, want.height), "size");
    assert!(got.data == want.data, "pixels differ from the one-piece decode");
});
