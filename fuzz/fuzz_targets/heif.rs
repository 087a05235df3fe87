//! `media/heif.rs`: the HEIF/AVIF `meta` parser.
//!
//! Input: the file. Checks:
//! - it never panics, and what it reports is sane: a displayed size no
//!   larger than the coded one, a crop inside the picture, an orientation
//!   1–8, a grid whose tile count is rows × columns (at most `MAX_TILES`);
//! - a picture has a decoder configuration, all of one codec, and each
//!   tile names one of them;
//! - reading any item it located (the tiles, the Exif item) stays within
//!   the cap given and the file, whatever `iloc` claims;
//! - the live heap stays small (the `meta` box is capped at 4 MiB).
#![no_main]

use std::io::Cursor;

use isync::media::heif::{read, Codec, Layout, MAX_TILES};
use libfuzzer_sys::fuzz_target;

/// The cap the fuzz target reads items with.
const ITEM_CAP: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Ok(h) = read(&mut Cursor::new(data)) else {
        return;
    };
    let p = &h.primary;
    assert!((1..=8).contains(&p.orientation()));
    if let Some(c) = p.crop {
        assert!(c.w >= 1 && c.h >= 1);
        assert!(u64::from(c.x) + u64::from(c.w) <= u64::from(p.width));
        assert!(u64::from(c.y) + u64::from(c.h) <= u64::from(p.height));
    }
    assert!(!p.configs.is_empty(), "a picture without decoder configuration");
    let hevc = |c: Codec| matches!(c, Codec::Hevc { .. });
    assert!(p.configs.iter().all(|c| hevc(c.codec) == hevc(p.codec())));
    let (dw, dh) = p.display_size();
    assert!(u64::from(dw) * u64::from(dh) <= u64::from(p.width) * u64::from(p.height));
    let ids: Vec<u32> = match &p.layout {
        Layout::Single(id) => vec![*id],
        Layout::Grid {
            rows, cols, tiles, ..
        } => {
            assert_eq!(u64::from(*rows) * u64::from(*cols), tiles.len() as u64);
            assert!(tiles.len() <= MAX_TILES);
            assert!(tiles.iter().all(|t| t.config < p.configs.len()));
            tiles.iter().map(|t| t.id).collect()
        }
    };
    for id in ids {
        if let Ok(bytes) = h.item_data(&mut Cursor::new(data), id, ITEM_CAP) {
            assert!(bytes.len() as u64 <= ITEM_CAP);
        }
    }
    if let Some(exif) = h.exif(&mut Cursor::new(data)) {
        assert!(exif.len() <= data.len());
    }
});
