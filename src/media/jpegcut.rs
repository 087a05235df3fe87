//! A JPEG that ends before its end marker: a photo cut off by a failed copy
//! or an upload still under way. libjpeg, browsers and iOS show what is
//! there and fill the rest with grey (libjpeg leaves the MCUs it has no data
//! for at zero, which is mid-grey); Pillow does the same when told to load
//! truncated images. We do too, when enough of the photo is there for the
//! thumbnail to be a picture of it rather than a grey rectangle:
//!
//! - a sequential (baseline) JPEG: at least half of its MCUs decode whole
//!   from the data ([`MIN_WHOLE_SHARE`]). Below that most of the thumbnail
//!   would be grey; a file cut 20 bytes into its scan has a strip of pixels
//!   at most and is refused (−10008), as before.
//! - a progressive JPEG: every component's first (DC) scan is complete, so
//!   the whole picture is there at 1/8 of its detail; later scans that are
//!   complete add detail, a scan the file ends in is left out (libjpeg
//!   would use its first MCUs: a little more detail at the top).
//!
//! Anything we can't measure (a layout `jpegpar` doesn't decode, a
//! lossless or arithmetic-coded file) is refused: "an honest refusal"
//! over a picture we can't vouch for. A cut file is never cached for good
//! once it grows: the thumbnail cache keys on the original's size and
//! modification time.

use std::io::Read;

use super::jpegpar::whole_mcus;
use super::jpegwalk::segments;
use super::raster::decode_scaled;
use super::raster::Raster;

/// Least share of a baseline JPEG's MCUs (as numerator / denominator) that
/// must decode whole for a cut-off file to be shown.
const MIN_WHOLE_SHARE: (usize, usize) = (1, 2);
/// libjpeg's fill for what the data lacks: zero coefficients, mid-grey.
const GREY: u8 = 128;

/// Decodes the cut-off JPEG `data` (from its SOI to where the file ends) at
/// the smallest scale covering `edge`, within `max_bytes`, when enough of it
/// is there; else says why not.
pub(crate) fn decode(data: &[u8], edge: u32, max_bytes: u64) -> Result<Raster, String> {
    let sof = segments(data).find_map(|(m, _, _)| super::jpegwalk::is_sof(m).then_some(m));
    match sof {
        Some(0xC0 | 0xC1) => sequential(data, edge, max_bytes),
        Some(0xC2) => progressive(data, edge, max_bytes),
        _ => Err("cut off before its end, in a kind of JPEG whose cut is not measured".into()),
    }
}

/// A cut-off sequential JPEG: decoded with the rest of its data read as
/// zero bits (jpeg-decoder does that past a marker), then painted grey from
/// the first MCU that was not whole, as libjpeg leaves it.
fn sequential(data: &[u8], edge: u32, max_bytes: u64) -> Result<Raster, String> {
    let Some(whole) = whole_mcus(data) else {
        return Err("cut off before its end, in a layout whose cut is not measured".into());
    };
    let (num, den) = MIN_WHOLE_SHARE;
    if whole.mcus * den < whole.total * num {
        return Err(format!(
            "cut off after {} of its {} MCUs: too little of the picture to show",
            whole.mcus, whole.total
        ));
    }
    // The decoder wants a restart marker after every interval: one for each
    // interval the data lacks (each then decodes from zero bits), and the
    // end marker.
    let mut close = Vec::new();
    if whole.restart > 0 {
        let have = closed_intervals(data);
        let need = whole.total.div_ceil(whole.restart);
        // The marker before interval k is RST((k − 1) mod 8).
        for k in have.max(1)..need {
            close.extend_from_slice(&[0xFF, 0xD0 + ((k - 1) % 8) as u8]);
        }
    }
    close.extend_from_slice(&[0xFF, 0xD9]);
    let mut raster = decode_scaled(data.chain(close.as_slice()), edge, max_bytes)?;
    grey_from(&mut raster, &whole, data);
    Ok(raster)
}

/// Restart markers in the entropy-coded data of `data` plus one: the
/// intervals that have begun.
fn closed_intervals(data: &[u8]) -> usize {
    let Some(scan) = segments(data)
        .find(|s| s.0 == 0xDA)
        .map(|(_, at, len)| at + len)
    else {
        return 0;
    };
    let mut n = 1;
    let mut i = scan;
    while let Some(p) = memchr::memchr(0xFF, &data[i..]) {
        let at = i + p;
        match data.get(at + 1) {
            Some(0xD0..=0xD7) => n += 1,
            Some(0x00 | 0xFF) => {}
            _ => break,
        }
        i = at + 1;
    }
    n
}

/// Paints `raster` grey from the first MCU that was not whole on: the rest
/// of its MCU row, and every row below.
fn grey_from(raster: &mut Raster, whole: &super::jpegpar::Whole, data: &[u8]) {
    let Some((width, _)) = super::jpegwalk::frame_size(data).ok().flatten() else {
        return;
    };
    if whole.mcus >= whole.total || width == 0 || whole.mcus_x == 0 {
        return;
    }
    // The decoded picture's scale against the frame: n/8 on both sides,
    // rounded up as the decoder rounds its size.
    let scale = |v: u32| (u64::from(v) * u64::from(raster.width)).div_ceil(u64::from(width));
    let (row, col) = (whole.mcus / whole.mcus_x, whole.mcus % whole.mcus_x);
    let top = scale(whole.mcu_h * row as u32).min(u64::from(raster.height)) as usize;
    let left = scale(whole.mcu_w * col as u32).min(u64::from(raster.width)) as usize;
    let bottom = scale(whole.mcu_h * (row as u32 + 1)).min(u64::from(raster.height)) as usize;
    let channels = if raster.alpha { 4 } else { 3 };
    let stride = raster.width as usize * channels;
    for y in top..bottom {
        raster.data[y * stride + left * channels..(y + 1) * stride].fill(GREY);
    }
    raster.data[bottom * stride..].fill(GREY);
}

/// A cut-off progressive JPEG: its complete scans, then the end marker,
/// when every component's DC scan is among them.
fn progressive(data: &[u8], edge: u32, max_bytes: u64) -> Result<Raster, String> {
    let scans = Scans::of(data);
    let Some(components) = scans.components else {
        return Err("cut off before its frame header".into());
    };
    let enough = scans.dc_whole.len() >= components;
    let Some(end) = scans.complete_end.filter(|_| enough) else {
        return Err(format!(
            "cut off with the first scan of {} of its {components} components: \
             too little of the picture to show",
            scans.dc_whole.len()
        ));
    };
    decode_scaled(data[..end].chain(&[0xFF, 0xD9][..]), edge, max_bytes)
}

/// What a walk over all the scans of a JPEG that may be cut off finds.
#[derive(Debug, Default, PartialEq)]
struct Scans {
    /// Components in the frame header.
    components: Option<usize>,
    /// Component ids whose first DC scan (Ss = 0, Ah = 0) is complete.
    dc_whole: Vec<u8>,
    /// Where the entropy-coded data of the last complete scan ends.
    complete_end: Option<usize>,
}

impl Scans {
    fn of(data: &[u8]) -> Scans {
        let mut found = Scans::default();
        // Marker segments and scans from after the SOI; a scan is complete
        // when a marker other than RSTn follows its data.
        let mut at = 2;
        loop {
            // Fill bytes and anything but a marker are skipped.
            let Some(p) = data.get(at..).and_then(|d| memchr::memchr(0xFF, d)) else {
                return found;
            };
            let mut m = at + p + 1;
            while data.get(m) == Some(&0xFF) {
                m += 1;
            }
            let Some(&marker) = data.get(m) else {
                return found;
            };
            match marker {
                0x00 | 0x01 | 0xD0..=0xD7 => {
                    at = m + 1;
                    continue;
                }
                0xD9 => return found,
                _ => {}
            }
            let Some(len) = data.get(m + 1..m + 3) else {
                return found;
            };
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            let Some(body) = data.get(m + 3..m + 1 + len).filter(|_| len >= 2) else {
                return found;
            };
            at = m + 1 + len;
            if super::jpegwalk::is_sof(marker) && found.components.is_none() {
                found.components = body.get(5).map(|&n| usize::from(n));
            }
            if marker != 0xDA {
                continue;
            }
            let Some(end) = scan_end(data, at) else {
                return found;
            };
            found.complete_end = Some(end);
            let ns = usize::from(*body.first().unwrap_or(&0));
            if let (Some(ids), Some(&[ss, _, ahl])) =
                (body.get(1..1 + 2 * ns), body.get(1 + 2 * ns..4 + 2 * ns))
            {
                if ss == 0 && ahl >> 4 == 0 {
                    for c in ids.chunks(2) {
                        if !found.dc_whole.contains(&c[0]) {
                            found.dc_whole.push(c[0]);
                        }
                    }
                }
            }
            at = end;
        }
    }
}

/// Where the entropy-coded data from `from` ends: the offset of the marker
/// (not RSTn) after it; `None` when the data ends first.
fn scan_end(data: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    loop {
        let at = i + memchr::memchr(0xFF, data.get(i..)?)?;
        match *data.get(at + 1)? {
            0x00 | 0xD0..=0xD7 => i = at + 2,
            0xFF => i = at + 1,
            _ => return Some(at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    /// A picture with detail everywhere, so its bytes spread evenly over
    /// its rows.
    fn busy(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = (x * 7 + y * 13) ^ (x * y);
            Rgb([v as u8, (v >> 3) as u8 ^ 0x55, (x + y) as u8])
        })
    }

    fn encode(img: &RgbImage, progressive: bool, restart: u16) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut out, 85);
        enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
        enc.set_progressive(progressive);
        enc.set_restart_interval(restart);
        enc.encode(
            img.as_raw(),
            img.width() as u16,
            img.height() as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .unwrap();
        out
    }

    fn scan_start(data: &[u8]) -> usize {
        segments(data)
            .find(|s| s.0 == 0xDA)
            .map(|(_, at, len)| at + len)
            .unwrap()
    }

    /// Mean absolute difference of the rows `rows` of two same-size
    /// rasters.
    fn mad(a: &Raster, b: &Raster, rows: std::ops::Range<u32>) -> f64 {
        let stride = a.width as usize * 3;
        let (from, to) = (rows.start as usize * stride, rows.end as usize * stride);
        let sum: u64 = a.data[from..to]
            .iter()
            .zip(&b.data[from..to])
            .map(|(x, y)| u64::from(x.abs_diff(*y)))
            .sum();
        sum as f64 / (to - from) as f64
    }

    #[test]
    fn a_baseline_jpeg_cut_past_half_shows_its_top_and_grey_below() {
        let img = busy(320, 240);
        for restart in [0, 4] {
            let full = encode(&img, false, restart);
            let scan = scan_start(&full);
            let cut = &full[..scan + (full.len() - scan) * 7 / 10];
            let intact = decode_scaled(full.as_slice(), 320, u64::MAX).unwrap();
            let shown = decode(cut, 320, u64::MAX).unwrap();
            assert_eq!((shown.width, shown.height), (320, 240));
            // The top half is the photo's, the last rows grey.
            let top = mad(&intact, &shown, 0..120);
            assert!(top < 1.0, "restart {restart}: top differs by {top}");
            let last = &shown.data[shown.data.len() - 320 * 3..];
            assert!(last.iter().all(|&v| v == GREY), "restart {restart}");
            // 30% of the scan is too little.
            let short = &full[..scan + (full.len() - scan) * 3 / 10];
            let err = decode(short, 320, u64::MAX).unwrap_err();
            assert!(err.contains("too little"), "restart {restart}: {err}");
        }
    }

    #[test]
    fn a_progressive_jpeg_is_shown_once_every_dc_scan_is_whole() {
        let img = busy(200, 160);
        let full = encode(&img, true, 0);
        let intact = decode_scaled(full.as_slice(), 200, u64::MAX).unwrap();
        let all = Scans::of(&full);
        assert_eq!(all.components, Some(3));
        assert_eq!(all.dc_whole.len(), 3);
        // Cut 8 bytes short: every scan but the last, close to the whole.
        let shown = decode(&full[..full.len() - 8], 200, u64::MAX).unwrap();
        assert!(mad(&intact, &shown, 0..160) < 6.0);
        // Cut inside the first scan: refused.
        let first = scan_start(&full);
        let err = decode(&full[..first + 10], 200, u64::MAX).unwrap_err();
        assert!(err.contains("too little"), "{err}");
        // No scan at all (a header cut off): refused, no panic.
        for n in [0, 2, 100, first - 1] {
            assert!(decode(&full[..n], 200, u64::MAX).is_err(), "cut at {n}");
        }
    }
}
