//! `media/jpegpar/`: the parallel baseline JPEG decoder at 1/2, 1/4 and
//! 1/8 scale (ranges cut at restart markers or where the Huffman code
//! resynchronises).
//!
//! Input: 3 bytes of parameters (output edge, threads, smallest range),
//! then the JPEG. Checks:
//! - a decode in 2–4 ranges equals the one-range decode exactly (the
//!   module's own promise), including whether it decodes at all;
//! - the raster is the size jpeg-decoder's scale choice gives for the
//!   frame header's dimensions, and holds `width × height × 3` bytes;
//! - where jpeg-decoder (one piece) also decodes the file, its size is the
//!   same;
//! - the live heap stays within the render budget (`DEFAULT_BUDGET_BYTES`).
#![no_main]

use isync::media::fuzzing::{decode_scaled, jpeg_head, jpegpar_decode};
use isync::media::budget::DEFAULT_BUDGET_BYTES;
use isync_fuzz::{params, set_heap_limit};
use libfuzzer_sys::fuzz_target;

/// Edges the thumbnails use (160, 800) and others that pick each scale.
const EDGES: [u32; 8] = [160, 800, 1, 20, 64, 100, 300, 1200];

fuzz_target!(
    init: {
        // The decoder's own budget, plus the reference decode and copies.
        set_heap_limit(DEFAULT_BUDGET_BYTES as usize + (64 << 20));
    },
    |data: &[u8]| {
    let ([e, t, r], jpeg) = params::<3>(data);
    let edge = EDGES[usize::from(e) % EDGES.len()];
    let threads = 2 + usize::from(t) % 3;
    let min_range = 1 + usize::from(r) * 16;

    let par = jpegpar_decode(jpeg, edge, threads, min_range);
    let one = jpegpar_decode(jpeg, edge, 1, min_range);
    assert_eq!(par, one, "{threads} ranges vs one");
    let Some(p) = par else { return };

    let head = jpeg_head(jpeg).expect("jpegpar decoded a file whose head doesn't read");
    let scaled = |len: u32, n: u32| (len * n).div_ceil(8);
    let n = [1u32, 2, 4]
        .into_iter()
        .find(|&n| scaled(head.width, n) >= edge || scaled(head.height, n) >= edge)
        .expect("jpegpar decodes only below full scale");
    assert_eq!(
        (p.width, p.height),
        (scaled(head.width, n), scaled(head.height, n)),
        "{}x{} at {n}/8",
        head.width,
        head.height
    );
    assert!(!p.alpha);
    assert_eq!(p.data.len(), p.width as usize * p.height as usize * 3);

    // jpeg-decoder (one piece) gives the same size. Its pixels are held to
    // jpegpar's by the unit tests on valid files only: on a damaged
    // entropy stream the two read invalid symbols differently (an EOB run
    // or an overlong zero run in a baseline scan: jpegpar reads them as
    // libjpeg does) and decode different garbage, both within bounds.
    if let Ok(want) = decode_scaled(jpeg, edge) {
        assert_eq!((want.width, want.height), (p.width, p.height), "jpeg-decoder's size");
    }
});
