//! Decoding a big JPEG on several cores, when its encoder made that
//! possible. A baseline JPEG's entropy-coded data is one sequential Huffman
//! stream, which is where ~90% of a scaled decode's time goes (see
//! `jpegscale`) and which can't be cut cleanly (`jpegpar` cuts it where the
//! code resynchronises, with a decoder of its own) — except at restart markers:
//! with a restart interval (DRI), the coder state resets every N MCUs and
//! the stream is cut by RSTn markers into independently decodable pieces.
//! Many camera and phone encoders write them (hardware JPEG encoders
//! usually do).
//!
//! This module cuts such a file into horizontal bands at MCU rows where a
//! restart interval begins, gives each band the original headers with its
//! own height (and renumbered RST markers, which the decoder checks), decodes
//! the bands at the same DCT scale on their own threads, and stacks the
//! rows. Anything unexpected (progressive or non-interleaved scans, no DRI,
//! intervals that never line up with rows, a count of restart markers that
//! doesn't match the frame) returns `None` and the caller decodes the file
//! in one piece as before: the result is the same pixels either way.
//!
//! Thumbnails take this path only at full scale (photos of 1 to ~2.5 MP):
//! at 1/2 scale and below `jpegpar` splits such a file at the same markers
//! with its own, faster decoder.

use super::jpegwalk::segments;
use super::raster::{to_raster, Raster};
use jpeg_decoder::{Decoder, PixelFormat};

/// The frame and scan layout a band split needs.
#[derive(Debug, Clone, PartialEq)]
struct Layout {
    width: u32,
    height: u32,
    /// Offset of the SOF height field (two bytes, big-endian).
    sof_height_at: usize,
    /// MCU size in pixels.
    mcu_w: u32,
    mcu_h: u32,
    /// Restart interval in MCUs.
    restart: u32,
    /// First byte of the entropy-coded data (after the SOS segment).
    scan_at: usize,
}

/// Most bands (threads) one decode uses.
const MAX_BANDS: usize = 4;
/// A backstop for one band's decoder. Bands are cut only at full scale,
/// which `jpegscale` uses for pictures up to twice the box (2.5 MP): a
/// band needs a few MB, and the caller's budget lease covers the whole.
const MAX_BAND_DECODE_BYTES: usize = 64 << 20;

thread_local! {
    /// Split decodes that succeeded on this thread, and the bands they
    /// used: the pixels are the same either way by design, so this is how
    /// a test (or a curious bench) sees that the split path ran. Per thread
    /// because tests run side by side in one process, and the caller of
    /// [`decode`] is the thread that asked for the thumbnail.
    static BAND_DECODES: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// `(decodes, bands)`: how many JPEGs this thread has decoded in bands so
/// far, and how many bands those took in all.
#[cfg(test)]
pub(crate) fn band_decodes_on_this_thread() -> (u64, u64) {
    BAND_DECODES.with(|c| c.get())
}

/// How many bands (threads) one decode uses for a render's setting
/// ([`Allowance::decode_bands`](super::budget::Allowance)): 0 for one per
/// core, up to [`MAX_BANDS`] (the default); 1 means "don't".
pub(crate) fn bands_for(setting: usize) -> usize {
    match setting {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(MAX_BANDS),
        n => n.min(MAX_BANDS),
    }
}

/// Reads the markers up to the first scan. `None` unless the file is a
/// single-scan, interleaved, 8-bit baseline/extended Huffman JPEG with a
/// restart interval.
fn layout(data: &[u8]) -> Option<Layout> {
    let mut frame: Option<(u32, u32, usize, u32, u32, u8)> = None;
    let mut restart = 0u32;
    for (marker, at, len) in segments(data) {
        let body = &data[at + 2..at + len];
        match marker {
            // Baseline or extended sequential, Huffman.
            0xC0 | 0xC1 => {
                if body.len() < 6 || body[0] != 8 {
                    return None;
                }
                let height = u32::from(u16::from_be_bytes([body[1], body[2]]));
                let width = u32::from(u16::from_be_bytes([body[3], body[4]]));
                let n = body[5];
                let comps = body.get(6..6 + 3 * usize::from(n))?;
                let (mut hmax, mut vmax) = (1u32, 1u32);
                for c in comps.chunks(3) {
                    hmax = hmax.max(u32::from(c[1] >> 4));
                    vmax = vmax.max(u32::from(c[1] & 15));
                }
                if n == 1 {
                    // A single-component scan is non-interleaved: 8x8 MCUs.
                    (hmax, vmax) = (1, 1);
                }
                frame = Some((width, height, at + 3, 8 * hmax, 8 * vmax, n));
            }
            // Any other frame type (progressive, lossless, arithmetic).
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return None,
            0xDD => {
                restart = u32::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
            }
            0xDA => {
                let (width, height, sof_height_at, mcu_w, mcu_h, n) = frame?;
                // All components in this one scan.
                if *body.first()? != n || restart == 0 || height == 0 || width == 0 {
                    return None;
                }
                return Some(Layout {
                    width,
                    height,
                    sof_height_at,
                    mcu_w,
                    mcu_h,
                    restart,
                    scan_at: at + len,
                });
            }
            0xD9 => return None,
            _ => {}
        }
    }
    None
}

/// Where each restart interval's bytes begin, and where the entropy-coded
/// data ends (the offset of the EOI marker after it). `None` when the RST
/// markers are not numbered 0, 1, … 7, 0, … in order, or the data ends in
/// anything but EOI (another marker, the end of the file): a damaged file
/// the one-piece decoder reports, which bands cut at `end` and closed with
/// their own EOI would decode instead (found by the jpegbands fuzz target).
fn intervals(data: &[u8], from: usize) -> Option<(Vec<usize>, usize)> {
    let mut starts = vec![from];
    let mut i = from;
    while let Some(p) = memchr::memchr(0xFF, &data[i..]) {
        let at = i + p;
        match data.get(at + 1) {
            // Stuffed zero, or fill bytes before a marker.
            Some(0x00) => i = at + 2,
            Some(0xFF) => i = at + 1,
            Some(&m @ 0xD0..=0xD7) => {
                if usize::from(m - 0xD0) != (starts.len() - 1) % 8 {
                    return None;
                }
                starts.push(at + 2);
                i = at + 2;
            }
            Some(0xD9) => return Some((starts, at)),
            _ => return None,
        }
    }
    None
}

/// Decodes `data` at the smallest DCT scale whose longer side covers `edge`
/// (as `jpegscale` does), in up to `bands` horizontal bands on as many
/// threads. `None` when the file can't be split (see the module doc) or a
/// band came out other than expected; the caller then decodes it whole.
pub(crate) fn decode(data: &[u8], edge: u32, bands: usize) -> Option<Raster> {
    if bands < 2 {
        return None;
    }
    let plan = Plan::new(data, bands)?;
    let (out_w, out_h, eighths) = output_scale(data, plan.layout.width, edge)?;
    let decoded = plan.decode_bands(data, out_w);
    let raster = plan.stack(decoded, out_w, out_h, plan.layout.mcu_h * eighths / 8)?;
    BAND_DECODES.with(|c| {
        let (n, b) = c.get();
        c.set((n + 1, b + plan.bands() as u64));
    });
    Some(raster)
}

/// Where a file is cut into bands: its layout, where each restart interval
/// begins, and the MCU rows each band keeps.
struct Plan {
    layout: Layout,
    mcus_per_row: u64,
    /// MCU rows of the picture.
    rows: u64,
    /// Where each restart interval's bytes begin (see [`intervals`]).
    starts: Vec<usize>,
    /// Offset of the EOI marker that ends the entropy-coded data.
    end: usize,
    /// MCU rows between two rows a band may start at.
    step: u64,
    /// Band b keeps MCU rows `[cut[b], cut[b + 1])`; one entry more than
    /// there are bands.
    cut: Vec<u64>,
}

/// One band's decoded rows, as jpeg-decoder gave them.
struct Band {
    pixels: Vec<u8>,
    width: u16,
    height: u16,
    format: Option<PixelFormat>,
}

impl Plan {
    /// The cuts of `data` into up to `bands` bands. `None` when the file
    /// can't be split (see the module doc) or has rows for one band only.
    fn new(data: &[u8], bands: usize) -> Option<Plan> {
        let layout = layout(data)?;
        let mcus_per_row = u64::from(layout.width.div_ceil(layout.mcu_w));
        let rows = u64::from(layout.height.div_ceil(layout.mcu_h));
        let (starts, end) = intervals(data, layout.scan_at)?;
        let restart = u64::from(layout.restart);
        if starts.len() as u64 != (mcus_per_row * rows).div_ceil(restart) {
            return None;
        }
        // A band may start at MCU row r when r * mcus_per_row is a multiple
        // of the interval: r a multiple of `step`.
        let step = restart / gcd(restart, mcus_per_row);
        let steps = rows / step;
        let bands = (bands as u64).min(steps);
        if bands < 2 {
            return None;
        }
        let mut cut: Vec<u64> = (0..bands).map(|b| b * steps / bands * step).collect();
        cut.push(rows);
        Some(Plan {
            layout,
            mcus_per_row,
            rows,
            starts,
            end,
            step,
            cut,
        })
    }

    fn bands(&self) -> usize {
        self.cut.len() - 1
    }

    /// The MCU rows band `b` decodes: the rows it keeps, and one step of
    /// rows more above and below (where there are any). With chroma halved
    /// vertically (4:2:0, the usual camera layout) the decoder blends each
    /// chroma row with its neighbours, so the rows at a band's edge need the
    /// rows beyond it to come out as in a one-piece decode. The extra rows
    /// are cropped ([`Plan::stack`]).
    fn span(&self, b: usize) -> (u64, u64) {
        let (r0, r1) = (self.cut[b], self.cut[b + 1]);
        let e0 = if b > 0 { r0 - self.step } else { r0 };
        let e1 = if b + 1 < self.bands() {
            (r1 + self.step).min(self.rows)
        } else {
            r1
        };
        (e0, e1)
    }

    /// Band `b` as a JPEG of its own: the original headers with the band's
    /// height, the intervals of its rows, its RST markers renumbered from
    /// 0 (the decoder checks them), and an EOI.
    fn band_jpeg(&self, data: &[u8], b: usize) -> Vec<u8> {
        let (l, starts) = (&self.layout, &self.starts);
        let restart = u64::from(l.restart);
        let (e0, e1) = self.span(b);
        let first = (e0 * self.mcus_per_row / restart) as usize;
        let last = ((e1 * self.mcus_per_row).div_ceil(restart) as usize).min(starts.len());
        let top = e0 * u64::from(l.mcu_h);
        let bottom = (e1 * u64::from(l.mcu_h)).min(u64::from(l.height));
        let mut out =
            Vec::with_capacity(l.scan_at + (self.end - starts[first]) / self.bands() + 64);
        out.extend_from_slice(&data[..l.scan_at]);
        let h = (bottom - top) as u16;
        out[l.sof_height_at..l.sof_height_at + 2].copy_from_slice(&h.to_be_bytes());
        for (n, i) in (first..last).enumerate() {
            // Interval i runs to the RST marker that ends it (or the end).
            let stop = if i + 1 < starts.len() {
                starts[i + 1] - 2
            } else {
                self.end
            };
            out.extend_from_slice(&data[starts[i]..stop]);
            if i + 1 < last {
                out.extend_from_slice(&[0xFF, 0xD0 + (n % 8) as u8]);
            }
        }
        out.extend_from_slice(&[0xFF, 0xD9]);
        out
    }

    /// Every band decoded at the scale that makes it `out_w` wide, band 0
    /// on this thread and each other on a thread of its own; `None` for a
    /// band that failed.
    fn decode_bands(&self, data: &[u8], out_w: u16) -> Vec<Option<Band>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = (1..self.bands())
                .map(|b| {
                    let jpeg = self.band_jpeg(data, b);
                    std::thread::Builder::new()
                        .name("isync-jpeg-band".into())
                        .spawn_scoped(s, move || decode_band(&jpeg, out_w))
                })
                .collect();
            let mut out = vec![decode_band(&self.band_jpeg(data, 0), out_w)];
            for h in handles {
                out.push(h.ok().and_then(|h| h.join().ok().flatten()));
            }
            out
        })
    }

    /// The rows each band keeps (`mcu_out` output rows per MCU row),
    /// stacked into one raster. `None` unless every band decoded, all in
    /// one pixel format, `out_w` wide, and together `out_h` high.
    fn stack(
        &self,
        decoded: Vec<Option<Band>>,
        out_w: u16,
        out_h: u16,
        mcu_out: u32,
    ) -> Option<Raster> {
        let mut pixels = Vec::new();
        let mut height = 0u32;
        let mut format = None;
        for (b, band) in decoded.into_iter().enumerate() {
            let Band {
                pixels: p,
                width: w,
                height: h,
                format: f,
            } = band?;
            let f = f?;
            let channels = match f {
                PixelFormat::RGB24 => 3,
                PixelFormat::L8 => 1,
                _ => return None,
            };
            if w != out_w || format.is_some_and(|g| g != f) {
                return None;
            }
            format = Some(f);
            // The rows this band keeps, in output rows.
            let (e0, _) = self.span(b);
            let skip = u64::from(mcu_out) * (self.cut[b] - e0);
            let keep = if b + 1 < self.bands() {
                u64::from(mcu_out) * (self.cut[b + 1] - self.cut[b])
            } else {
                u64::from(h).checked_sub(skip)?
            };
            if skip + keep > u64::from(h) {
                return None;
            }
            let row = usize::from(w) * channels;
            pixels.extend_from_slice(p.get(skip as usize * row..(skip + keep) as usize * row)?);
            height += keep as u32;
        }
        if height != u32::from(out_h) {
            return None;
        }
        to_raster(pixels, u32::from(out_w), height, format).ok()
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The size jpeg-decoder decodes the whole picture (`width` wide) to for
/// `edge`, and that scale in eighths (it scales by 1/8, 2/8, 4/8 or 8/8).
fn output_scale(data: &[u8], width: u32, edge: u32) -> Option<(u16, u16, u32)> {
    let mut whole = Decoder::new(data);
    whole.read_info().ok()?;
    let want = u16::try_from(edge).unwrap_or(u16::MAX);
    let (out_w, out_h) = whole.scale(want, want).ok()?;
    let eighths = [1u32, 2, 4, 8]
        .into_iter()
        .find(|&s| (width * s).div_ceil(8) == u32::from(out_w))?;
    Some((out_w, out_h, eighths))
}

/// Decodes one band's JPEG at the scale that makes it `out_w` wide (the
/// whole picture's scale).
fn decode_band(jpeg: &[u8], out_w: u16) -> Option<Band> {
    let mut dec = Decoder::new(jpeg);
    dec.set_max_decoding_buffer_size(MAX_BAND_DECODE_BYTES);
    dec.read_info().ok()?;
    let (width, height) = dec.scale(out_w, u16::MAX).ok()?;
    let pixels = dec.decode().ok()?;
    Some(Band {
        pixels,
        width,
        height,
        format: dec.info().map(|i| i.pixel_format),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A photo-like JPEG (gradients and detail) with a restart interval.
    fn jpeg(w: u16, h: u16, restart: Option<u16>, gray: bool) -> Vec<u8> {
        jpeg_sampled(w, h, restart, gray, None)
    }

    /// `jpeg` with a chroma sampling (jpeg-encoder picks 4:4:4 at q90).
    fn jpeg_sampled(
        w: u16,
        h: u16,
        restart: Option<u16>,
        gray: bool,
        sampling: Option<jpeg_encoder::SamplingFactor>,
    ) -> Vec<u8> {
        let channels = if gray { 1 } else { 3 };
        let mut px = Vec::with_capacity(usize::from(w) * usize::from(h) * channels);
        for y in 0..u32::from(h) {
            for x in 0..u32::from(w) {
                let v = [
                    (x * 255 / u32::from(w)) as u8,
                    (y * 255 / u32::from(h)) as u8,
                    ((x ^ y) & 0xFF) as u8,
                ];
                px.extend_from_slice(&v[..channels]);
            }
        }
        let mut out = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
        if let Some(r) = restart {
            enc.set_restart_interval(r);
        }
        if let Some(f) = sampling {
            enc.set_sampling_factor(f);
        }
        let ct = if gray {
            jpeg_encoder::ColorType::Luma
        } else {
            jpeg_encoder::ColorType::Rgb
        };
        enc.encode(&px, w, h, ct).unwrap();
        out
    }

    /// The one-piece decode `jpegscale` falls back to.
    fn whole(data: &[u8], edge: u32) -> Raster {
        super::super::jpegscale::decode_scaled(data, edge, u64::MAX).unwrap()
    }

    /// Same pixels as one whole decode for every chroma layout cameras
    /// write — 4:2:0 above all, whose chroma the decoder blends across rows
    /// (so bands overlap and are cropped) — at every scale.
    #[test]
    fn subsampled_chroma_decodes_to_the_same_pixels() {
        use jpeg_encoder::SamplingFactor as F;
        for (f, name) in [
            (F::F_2_2, "4:2:0"),
            (F::F_1_2, "4:4:0"),
            (F::F_2_1, "4:2:2"),
            (F::F_1_1, "4:4:4"),
        ] {
            for (w, h, restart, bands) in [(640u16, 480u16, 40u16, 2usize), (1003, 755, 9, 4)] {
                let data = jpeg_sampled(w, h, Some(restart), false, Some(f));
                for edge in [u32::from(w), 400, 200, 80] {
                    let got = decode(&data, edge, bands)
                        .unwrap_or_else(|| panic!("{name} {w}x{h}: not split"));
                    let want = whole(&data, edge);
                    assert_eq!(
                        (got.width, got.height),
                        (want.width, want.height),
                        "{name} {w}x{h} edge {edge}"
                    );
                    if got.data != want.data {
                        let row = want.width as usize * 3;
                        let bad = got
                            .data
                            .chunks(row)
                            .zip(want.data.chunks(row))
                            .position(|(a, b)| a != b);
                        panic!("{name} {w}x{h} ri {restart} edge {edge}: row {bad:?} differs");
                    }
                }
            }
        }
    }

    /// Same pixels as one whole decode, for sizes that are and aren't whole
    /// MCUs, intervals that do and don't divide a row, 2–4 bands, colour
    /// and grey, every scale.
    #[test]
    fn bands_decode_to_the_same_pixels() {
        let cases = [
            (640u16, 480u16, 40u16, false, 1024u32, 2usize),
            (643, 485, 7, false, 320, 3),
            (1000, 750, 1, false, 256, 4),
            (500, 333, 3, true, 100, 2),
            (800, 608, 50, false, 800, 4),
            (330, 900, 21, false, 120, 3),
        ];
        for (w, h, restart, gray, edge, bands) in cases {
            let data = jpeg(w, h, Some(restart), gray);
            let got = decode(&data, edge, bands)
                .unwrap_or_else(|| panic!("{w}x{h} ri {restart}: not split"));
            let want = whole(&data, edge);
            assert_eq!(
                (got.width, got.height),
                (want.width, want.height),
                "{w}x{h} ri {restart}"
            );
            assert!(
                got.data == want.data,
                "{w}x{h} ri {restart} edge {edge}: pixels differ"
            );
        }
    }

    /// The thumbnail path takes the band decode for such a file at full
    /// scale (`jpegpar` takes the smaller scales) — one split decode in two
    /// bands, counted — and gets the same raster as a one-piece decode; a
    /// file without restart markers is decoded whole (the count stays), and
    /// so is the same file when the render's setting is 1 band.
    #[test]
    fn the_thumbnail_decoder_uses_bands() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jpg");
        let data = jpeg(1200, 900, Some(75), false);
        std::fs::write(&path, &data).unwrap();
        let plain = dir.path().join("plain.jpg");
        std::fs::write(&plain, jpeg(1200, 900, None, false)).unwrap();
        let level = crate::model::ThumbLevel::Screen;
        let decode_path = super::super::jpegscale::decode_path;
        let before = band_decodes_on_this_thread();
        let got = decode_path(&path, level, 2).unwrap().expect("decoded");
        let after = band_decodes_on_this_thread();
        let unsplit = decode_path(&plain, level, 2).unwrap().expect("decoded");
        let after_plain = band_decodes_on_this_thread();
        let one_piece = decode_path(&path, level, 1).unwrap().expect("decoded");
        assert_eq!(
            (after.0 - before.0, after.1 - before.1),
            (1, 2),
            "one decode in two bands"
        );
        assert_eq!(after_plain, after, "no restart markers: decoded whole");
        assert_eq!(
            band_decodes_on_this_thread(),
            after,
            "1 band: decoded whole"
        );
        let want = whole(&data, level.max_edge_px());
        assert_eq!((got.width, got.height), (want.width, want.height));
        assert!(got.data == want.data, "pixels differ");
        assert!(one_piece.data == want.data, "pixels differ in one piece");
        assert_eq!((unsplit.width, unsplit.height), (want.width, want.height));
    }

    #[test]
    fn files_that_cannot_be_split_are_left_to_the_whole_decode() {
        // No restart interval.
        assert!(decode(&jpeg(640, 480, None, false), 320, 2).is_none());
        // One band asked for.
        assert!(decode(&jpeg(640, 480, Some(4), false), 320, 1).is_none());
        // Too few rows for two bands at this interval (a whole picture).
        assert!(decode(&jpeg(64, 32, Some(200), false), 32, 2).is_none());
        // Not a JPEG, or cut short: no panic, no split.
        assert!(decode(b"not a jpeg at all", 320, 2).is_none());
        let data = jpeg(640, 480, Some(8), false);
        for cut in [3, 100, data.len() / 2] {
            let _ = decode(&data[..cut], 320, 2);
        }
        // A missing restart marker: the count doesn't match, not split.
        let mut damaged = data.clone();
        let at = layout(&damaged).unwrap().scan_at;
        let rst = damaged[at..]
            .windows(2)
            .position(|w| w[0] == 0xFF && (0xD0..=0xD7).contains(&w[1]))
            .unwrap()
            + at;
        let mut renumbered = damaged.clone();
        damaged.drain(rst..rst + 2);
        assert!(decode(&damaged, 320, 2).is_none());
        // A misnumbered restart marker (the one-piece decoder refuses it):
        // not split either.
        renumbered[rst + 1] = 0xD5;
        assert!(decode(&renumbered, 320, 2).is_none());
    }

    /// Found by fuzz/fuzz_targets/jpegbands.rs: a stray marker in the last
    /// interval (or a file cut before EOI) made jpeg-decoder refuse the
    /// file, while the bands, cut before it and closed with an EOI of their
    /// own, decoded: a picture or an error depending on the core count.
    #[test]
    fn data_not_ending_in_eoi_is_left_to_the_whole_decode() {
        let data = jpeg(128, 96, Some(8), false);
        assert!(decode(&data, 64, 2).is_some());
        let eoi = data.len() - 2;
        assert_eq!(&data[eoi..], &[0xFF, 0xD9]);
        let stray = [&data[..eoi - 20], &[0xFF, 0x83], &data[eoi - 20..]].concat();
        assert!(super::super::jpegscale::decode_scaled(stray.as_slice(), 64, u64::MAX).is_err());
        assert!(decode(&stray, 64, 2).is_none());
        assert!(decode(&data[..eoi], 64, 2).is_none(), "no EOI");
    }
}
