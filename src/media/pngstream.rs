//! PNG thumbnails in memory proportional to the width, not the area: the
//! `png` crate hands over one row at a time, and each row is added into a
//! row of box sums `f` pixels wide; every `f` rows the sums become one row
//! of a picture `f` times smaller on each side (libvips' "shrink" before
//! its final Lanczos pass, done while reading). That picture, no more than
//! twice the box, is then scaled to the box exactly. A 236 KB PNG of
//! 9000x9000 zeros used to cost 540 MB (the whole raster, then its RGB
//! copy); now about 20 MB, and a 20000x20000 one the same.
//!
//! Interlaced (Adam7) PNGs deliver their rows pass by pass; the last pass
//! holds every odd row at full width, so when the picture shrinks by two
//! or more those rows alone make the thumbnail (the even rows are decoded
//! and dropped). Small interlaced PNGs go to the `image` crate whole.
//!
//! Colour is averaged weighted by alpha, so a transparent pixel's colour
//! does not darken its neighbours' edges.

use std::fmt::Display;

use png::{Adam7Info, ColorType, InterlaceInfo, Transformations};

use super::budget::{Allowance, Lease};
use super::original::Original;
use super::raster::{
    fit_size, post_cost, reserve, resize, Raster, ThumbError, MAX_STREAMED_PIXELS,
};

/// What the `png` crate may allocate besides its rows: the zlib window and
/// the chunks it keeps (text and ICC chunks are skipped unread).
const PNG_DECODER_BYTES: usize = 4 << 20;

/// Decodes the PNG `orig` into a picture that fits the `edge` box, with the
/// lease covering it and what follows (turning, encoding).
pub(crate) fn decode<'a>(
    orig: &Original,
    edge: u32,
    allow: Allowance<'a>,
) -> Result<(Raster, Lease<'a>), ThumbError> {
    let failed = |e: &dyn Display| orig.failed(e);
    let reader = orig.reader(64 * 1024).map_err(|e| failed(&e))?;
    let mut dec = png::Decoder::new_with_limits(
        reader,
        png::Limits {
            bytes: PNG_DECODER_BYTES,
        },
    );
    // 8 bits per channel; palettes, low bit depths and tRNS expanded.
    dec.set_transformations(Transformations::normalize_to_color8());
    dec.set_ignore_text_chunk(true);
    dec.set_ignore_iccp_chunk(true);
    // As libpng in browsers and iOS: a chunk with a bad CRC (or a bad
    // zlib checksum) is still read; damage shows in the pixels, if at
    // all, not as a refusal.
    dec.ignore_checksums(true);
    let (w, h, interlaced) = {
        let info = dec.read_header_info().map_err(|e| failed(&e))?;
        (info.width, info.height, info.interlaced)
    };
    let pixels = u64::from(w) * u64::from(h);
    if pixels == 0 || pixels > MAX_STREAMED_PIXELS {
        return Err(failed(&format_args!(
            "{w}x{h} pixels is outside what thumbnails accept (1 to {MAX_STREAMED_PIXELS})"
        )));
    }
    let (tw, th) = fit_size(w, h, edge);
    let f = (w.max(h) / edge).max(1);
    if interlaced && (f < 2 || h < 2) {
        return whole(dec, (w, h), orig, edge, allow);
    }
    // Interlaced: the last pass's rows are every other row of the picture.
    let (fy, rows) = if interlaced { (f / 2, h / 2) } else { (f, h) };
    let (iw, ih) = (w.div_ceil(f), rows.div_ceil(fy));
    let wide = u64::from(w);
    // The decoder's raw rows (current and previous, up to 8 bytes a pixel
    // before 16-bit samples are stripped) and its output row, the sums, the
    // shrunk picture and what scaling and encoding it hold.
    let cost = 3 * 8 * wide
        + u64::from(iw) * 4 * 8
        + u64::from(iw) * u64::from(ih) * 4
        + post_cost(iw, ih, edge, true)
        + PNG_DECODER_BYTES as u64;
    let lease = reserve(orig, allow, cost)?;
    let mut reader = dec.read_info().map_err(|e| failed(&e))?;
    let channels = match reader.output_color_type().0 {
        ColorType::Grayscale => 1,
        ColorType::GrayscaleAlpha => 2,
        ColorType::Rgb => 3,
        ColorType::Rgba => 4,
        ColorType::Indexed => return Err(failed(&"palette not expanded")),
    };
    let key = low_bit_grey_key(reader.info());
    let mut keyed = Vec::new();
    let mut shrink = Shrink::new(w, f, fy, iw, ih, channels);
    // Rows are taken up to the last one the picture needs, and no further:
    // the decoder's next step would read on to IEND, which a file cut
    // short after its pixels (browsers show those) does not have.
    let mut pass7 = 0;
    let mut taken = 0;
    while taken < rows {
        let Some(row) = reader.next_interlaced_row().map_err(|e| failed(&e))? else {
            return Err(failed(&"png ends before its last row"));
        };
        if interlaced {
            match row.interlace() {
                InterlaceInfo::Adam7(a) if *a == Adam7Info::new(7, pass7, w) => pass7 += 1,
                _ => continue,
            }
        }
        match key {
            Some(key) => shrink.push(key.apply(row.data(), &mut keyed)),
            None => shrink.push(row.data()),
        }
        taken += 1;
    }
    let raster = shrink.finish();
    // Exactly the box of the picture's own shape (the shrunk picture's may
    // be off by rounding, or by the rows an odd height left out).
    let raster = resize(raster, tw, th).map_err(|e| failed(&e))?;
    Ok((raster, lease))
}

/// A small interlaced PNG (under twice the box) decoded whole by the same
/// lenient decoder, its 8-bit output turned into RGB(A).
fn whole<'a, R: std::io::BufRead + std::io::Seek>(
    dec: png::Decoder<R>,
    (w, h): (u32, u32),
    orig: &Original,
    edge: u32,
    allow: Allowance<'a>,
) -> Result<(Raster, Lease<'a>), ThumbError> {
    let failed = |e: &dyn Display| orig.failed(e);
    let px = u64::from(w) * u64::from(h);
    // The decoder's frame (≤ 4 bytes a pixel at 8 bits), our RGBA copy,
    // the decoder's rows and what follows.
    let cost = 8 * px + 3 * 8 * u64::from(w) + post_cost(w, h, edge, true);
    let lease = reserve(orig, allow, cost + PNG_DECODER_BYTES as u64)?;
    let mut reader = dec.read_info().map_err(|e| failed(&e))?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| failed(&"png frame too large"))?;
    let mut buf = vec![0u8; size];
    let (color, _) = reader.output_color_type();
    let stride = size / h as usize;
    let bits = 8 * color.samples() as u8;
    let key = low_bit_grey_key(reader.info());
    let mut keyed = Vec::new();
    // Row by row until every pixel has come (the passes hold each pixel
    // once), for the reason `decode` stops at its last row.
    let mut filled = 0u64;
    while filled < px {
        let Some(row) = reader.next_interlaced_row().map_err(|e| failed(&e))? else {
            return Err(failed(&"png ends before its last row"));
        };
        let InterlaceInfo::Adam7(a) = *row.interlace() else {
            return Err(failed(&"png rows not interlaced"));
        };
        let data = match key {
            Some(key) => key.apply(row.data(), &mut keyed),
            None => row.data(),
        };
        png::expand_interlaced_row(&mut buf, stride, data, &a, bits);
        filled += (row.data().len() / color.samples()) as u64;
    }
    let (alpha, data) = match color {
        ColorType::Grayscale => (false, buf.iter().flat_map(|&l| [l; 3]).collect()),
        ColorType::GrayscaleAlpha => (
            true,
            buf.chunks_exact(2)
                .flat_map(|p| [p[0], p[0], p[0], p[1]])
                .collect(),
        ),
        ColorType::Rgb => (false, buf),
        ColorType::Rgba => (true, buf),
        ColorType::Indexed => return Err(failed(&"palette not expanded")),
    };
    Ok((
        Raster {
            width: w,
            height: h,
            alpha,
            data,
        },
        lease,
    ))
}

/// The transparent grey of a 1, 2 or 4-bit grey PNG whose tRNS key has
/// bits above its depth, as its 8-bit output shows it. The PNG spec wants
/// those bits zero; libpng (browsers, iOS, Pillow) masks the key to the
/// bit depth (`png_do_expand`: `gray & 0x01`, `0x03`, `0x0f`), the `png`
/// crate compares the key's low byte whole and so never matches
/// (Pillow's 1_trns.png: key 0x00FF in a 1-bit PNG, white transparent).
/// Keys within the depth, 8 and 16-bit grey, RGB keys (low bytes at 8 bits,
/// as libpng) and palette tRNS (ignored when longer than the palette, as
/// libpng) the crate already reads as libpng does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GreyKey(u8);

/// [`GreyKey`] of a PNG, when the `png` crate's reading needs it.
fn low_bit_grey_key(info: &png::Info) -> Option<GreyKey> {
    let depth = info.bit_depth as u8;
    if info.color_type != ColorType::Grayscale || depth >= 8 {
        return None;
    }
    // The crate keeps the key's low byte.
    let &[low] = info.trns.as_deref()? else {
        return None;
    };
    let max = (1u8 << depth) - 1;
    // Within the depth the crate's comparison is libpng's.
    (low > max).then(|| GreyKey((low & max) * (255 / max)))
}

impl GreyKey {
    /// `row` (grey and alpha at 8 bits, the crate's output) with the key's
    /// pixels transparent, in `buf`.
    fn apply<'b>(self, row: &[u8], buf: &'b mut Vec<u8>) -> &'b [u8] {
        buf.clear();
        buf.extend_from_slice(row);
        for p in buf.chunks_exact_mut(2) {
            if p[0] == self.0 {
                p[1] = 0;
            }
        }
        buf
    }
}

/// Box sums of `fx`×`fy` cells over rows pushed one at a time.
struct Shrink {
    width: u32,
    fx: u32,
    fy: u32,
    /// Channels of the rows pushed: 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA.
    input: usize,
    alpha: bool,
    /// One cell row of sums: RGB, or alpha-weighted RGB and alpha.
    sums: Vec<u64>,
    rows_in: u32,
    out: Vec<u8>,
    out_w: u32,
    out_h: u32,
}

impl Shrink {
    fn new(width: u32, fx: u32, fy: u32, out_w: u32, out_h: u32, input: usize) -> Shrink {
        let alpha = matches!(input, 2 | 4);
        let c = if alpha { 4 } else { 3 };
        Shrink {
            width,
            fx,
            fy,
            input,
            alpha,
            sums: vec![0; out_w as usize * c],
            rows_in: 0,
            out: Vec::with_capacity(out_w as usize * out_h as usize * c),
            out_w,
            out_h: 0,
        }
    }

    fn push(&mut self, row: &[u8]) {
        match self.input {
            1 => self.add::<1>(row),
            2 => self.add::<2>(row),
            3 => self.add::<3>(row),
            _ => self.add::<4>(row),
        }
        self.rows_in += 1;
        if self.rows_in == self.fy {
            self.emit();
        }
    }

    /// Adds one row of `N`-channel pixels into the sums, a cell at a time.
    fn add<const N: usize>(&mut self, row: &[u8]) {
        let c = if self.alpha { 4 } else { 3 };
        for (sums, cell) in self
            .sums
            .chunks_exact_mut(c)
            .zip(row.chunks(self.fx as usize * N))
        {
            // Within one cell (at most 2^29 pixels of 255 · 255) a u64 holds.
            let mut acc = [0u64; 4];
            for p in cell.chunks_exact(N) {
                match N {
                    1 => acc[0] += u64::from(p[0]),
                    2 => {
                        let a = u64::from(p[1]);
                        acc[0] += u64::from(p[0]) * a;
                        acc[3] += a;
                    }
                    3 => {
                        acc[0] += u64::from(p[0]);
                        acc[1] += u64::from(p[1]);
                        acc[2] += u64::from(p[2]);
                    }
                    _ => {
                        let a = u64::from(p[3]);
                        acc[0] += u64::from(p[0]) * a;
                        acc[1] += u64::from(p[1]) * a;
                        acc[2] += u64::from(p[2]) * a;
                        acc[3] += a;
                    }
                }
            }
            if N <= 2 {
                // Grey: one sum stands for the three channels.
                acc[1] = acc[0];
                acc[2] = acc[0];
            }
            for (s, a) in sums.iter_mut().zip(acc) {
                *s += a;
            }
        }
    }

    /// Turns the sums into one row of averages.
    fn emit(&mut self) {
        let c = if self.alpha { 4 } else { 3 };
        let rows = u64::from(self.rows_in);
        for (j, sums) in self.sums.chunks_exact_mut(c).enumerate() {
            let first = j as u64 * u64::from(self.fx);
            let cols = u64::from(self.fx).min(u64::from(self.width) - first);
            let n = cols * rows;
            let avg = |sum: u64, by: u64| ((sum + by / 2) / by).min(255) as u8;
            if self.alpha {
                let a = sums[3];
                if a == 0 {
                    self.out.extend_from_slice(&[0, 0, 0, 0]);
                } else {
                    let rgba = [avg(sums[0], a), avg(sums[1], a), avg(sums[2], a), avg(a, n)];
                    self.out.extend_from_slice(&rgba);
                }
            } else {
                let rgb = [avg(sums[0], n), avg(sums[1], n), avg(sums[2], n)];
                self.out.extend_from_slice(&rgb);
            }
            sums.fill(0);
        }
        self.rows_in = 0;
        self.out_h += 1;
    }

    fn finish(mut self) -> Raster {
        if self.rows_in > 0 {
            self.emit();
        }
        Raster {
            width: self.out_w,
            height: self.out_h,
            alpha: self.alpha,
            data: self.out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::budget::{Budget, Class};
    use super::super::testkit::*;
    use super::*;

    fn png_bytes(img: &image::DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    fn render(bytes: &[u8], edge: u32, budget: &Budget) -> Raster {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "p.png", bytes);
        let orig = Original::open_path(&path).unwrap();
        super::decode(
            &orig,
            edge,
            Allowance::new(budget, Class::Request(crate::model::ThumbLevel::Screen)),
        )
        .unwrap()
        .0
    }

    #[test]
    fn shrinks_to_the_box_with_the_right_colours() {
        let budget = Budget::new(64 << 20);
        let img = image::DynamicImage::ImageRgb8(quadrants(2400, 1200));
        let r = render(&png_bytes(&img), 800, &budget);
        assert_eq!((r.width, r.height, r.alpha), (800, 400, false));
        let at = |x: usize, y: usize| &r.data[(y * 800 + x) * 3..][..3];
        for (x, y, c) in [
            (100, 100, RED),
            (700, 100, GREEN),
            (100, 300, BLUE),
            (700, 300, YELLOW),
        ] {
            let p = at(x, y);
            assert!((0..3).all(|i| p[i].abs_diff(c[i]) <= 2), "({x},{y}) {p:?}");
        }
        // Small pictures keep their size.
        let r = render(
            &png_bytes(&img.resize_exact(300, 150, image::imageops::Nearest)),
            800,
            &budget,
        );
        assert_eq!((r.width, r.height), (300, 150));
        assert!(budget.peak() < 20 << 20, "peak {}", budget.peak());
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn grey_alpha_and_palette_pngs() {
        let budget = Budget::new(64 << 20);
        // Transparent left half (whose colour must not bleed), opaque right.
        let rgba = image::RgbaImage::from_fn(1000, 500, |x, _| {
            if x < 500 {
                image::Rgba([0, 0, 0, 0])
            } else {
                image::Rgba([200, 10, 10, 255])
            }
        });
        let r = render(&png_bytes(&rgba.into()), 160, &budget);
        assert_eq!((r.width, r.height, r.alpha), (160, 80, true));
        let px = |x: usize| &r.data[(40 * 160 + x) * 4..][..4];
        assert_eq!(px(10)[3], 0);
        assert_eq!(px(150), &[200, 10, 10, 255]);
        // The cell across the edge: half transparent, full red where seen.
        let grey = image::GrayImage::from_pixel(900, 300, image::Luma([77]));
        let r = render(&png_bytes(&grey.into()), 160, &budget);
        assert_eq!((r.width, r.height, r.alpha), (160, 53, false));
        assert!(r.data.iter().all(|v| v.abs_diff(77) <= 1));
        let mut pal = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut pal, 640, 480);
            enc.set_color(png::ColorType::Indexed);
            enc.set_depth(png::BitDepth::Two);
            enc.set_palette(vec![0, 0, 0, 10, 200, 30, 0, 0, 255, 255, 255, 255]);
            let mut w = enc.write_header().unwrap();
            w.write_image_data(&vec![0b0101_0101; 640 / 4 * 480])
                .unwrap();
        }
        let r = render(&pal, 160, &budget);
        assert_eq!((r.width, r.height), (160, 120));
        assert_eq!(&r.data[..3], &[10, 200, 30]);
    }

    /// A `w`×`h` PNG of `color` at `depth` bits with `trns` as its tRNS
    /// chunk, each row `row`.
    fn keyed_png(
        (w, h): (u32, u32),
        color: png::ColorType,
        depth: png::BitDepth,
        trns: &[u8],
        row: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(color);
        enc.set_depth(depth);
        enc.set_trns(trns.to_vec());
        let mut wr = enc.write_header().unwrap();
        wr.write_image_data(&row.repeat(h as usize)).unwrap();
        wr.finish().unwrap();
        out
    }

    /// tRNS colour keys read as libpng reads them: a grey key at 1, 2 and
    /// 4 bits masked to the depth (Pillow's 1_trns.png: 0x00FF at 1 bit is
    /// white), 8-bit grey and RGB keys by their low bytes, 16-bit keys whole.
    /// Each picture is its left half the key's colour, its right half
    /// another: transparent left, opaque right, or opaque throughout.
    #[test]
    fn trns_keys_are_read_as_libpng_reads_them() {
        use png::{BitDepth::*, ColorType::*};
        let budget = Budget::new(64 << 20);
        // (color, depth, tRNS, a row of 16 pixels, alpha left and right)
        type Case<'a> = (png::ColorType, png::BitDepth, &'a [u8], Vec<u8>, (u8, u8));
        let cases: &[Case] = &[
            // 1 bit: white (1) left, black right; keys 0x00FF, 0x0001, 0x00FE.
            (Grayscale, One, &[0, 0xFF], vec![0xFF, 0], (0, 255)),
            (Grayscale, One, &[0, 1], vec![0xFF, 0], (0, 255)),
            (Grayscale, One, &[1, 0xFE], vec![0xFF, 0], (255, 0)),
            // 2 bits: value 2 left, 1 right; key 0x0006 → 2, 0x0004 → 0.
            (
                Grayscale,
                Two,
                &[0, 6],
                vec![0xAA, 0xAA, 0x55, 0x55],
                (0, 255),
            ),
            (
                Grayscale,
                Two,
                &[0, 4],
                vec![0xAA, 0xAA, 0x55, 0x55],
                (255, 255),
            ),
            // 4 bits: 0x9 left, 0x3 right; key 0x0039 → 9.
            (
                Grayscale,
                Four,
                &[0, 0x39],
                [[0x99; 4], [0x33; 4]].concat(),
                (0, 255),
            ),
            // 8 bits: the key's high byte ignored (0x0150 → 0x50).
            (
                Grayscale,
                Eight,
                &[1, 0x50],
                [[0x50; 8], [0x60; 8]].concat(),
                (0, 255),
            ),
            // RGB at 8 bits: each channel's low byte.
            (
                Rgb,
                Eight,
                &[1, 10, 2, 20, 3, 30],
                [[10, 20, 30].repeat(8), vec![9; 24]].concat(),
                (0, 255),
            ),
            // 16-bit grey: the whole value; 0x1234 is not 0x3434.
            (
                Grayscale,
                Sixteen,
                &[0x12, 0x34],
                [[0x12, 0x34].repeat(8), vec![0; 16]].concat(),
                (0, 255),
            ),
            (
                Grayscale,
                Sixteen,
                &[0x12, 0x34],
                [[0x34, 0x34].repeat(8), vec![0; 16]].concat(),
                (255, 255),
            ),
        ];
        for (i, (color, depth, trns, row, want)) in cases.iter().enumerate() {
            let png = keyed_png((16, 4), *color, *depth, trns, row);
            let r = render(&png, 16, &budget);
            assert_eq!((r.width, r.height), (16, 4), "case {i}");
            let alpha = |x: usize| if r.alpha { r.data[x * 4 + 3] } else { 255 };
            assert_eq!((alpha(2), alpha(13)), *want, "case {i}");
        }
    }

    /// An Adam7-interlaced RGB PNG of `img` (the `png` crate encodes none):
    /// the passes' rows, unfiltered, in stored deflate blocks.
    fn interlaced_png(img: &image::RgbImage) -> Vec<u8> {
        fn crc32(bytes: &[u8]) -> u32 {
            let mut c = !0u32;
            for &b in bytes {
                c ^= u32::from(b);
                for _ in 0..8 {
                    c = if c & 1 == 1 {
                        0xEDB8_8320 ^ (c >> 1)
                    } else {
                        c >> 1
                    };
                }
            }
            !c
        }
        fn chunk(out: &mut Vec<u8>, kind: &[u8], body: &[u8]) {
            out.extend((body.len() as u32).to_be_bytes());
            let start = out.len();
            out.extend(kind);
            out.extend(body);
            let crc = crc32(&out[start..]);
            out.extend(crc.to_be_bytes());
        }
        let (w, h) = img.dimensions();
        let mut raw = Vec::new();
        for (x0, y0, dx, dy) in [
            (0, 0, 8, 8),
            (4, 0, 8, 8),
            (0, 4, 4, 8),
            (2, 0, 4, 4),
            (0, 2, 2, 4),
            (1, 0, 2, 2),
            (0, 1, 1, 2),
        ] {
            if x0 >= w {
                continue;
            }
            for y in (y0..h).step_by(dy) {
                raw.push(0); // filter: none
                for x in (x0..w).step_by(dx) {
                    raw.extend(img.get_pixel(x, y).0);
                }
            }
        }
        let mut z = vec![0x78, 0x01];
        let blocks: Vec<&[u8]> = raw.chunks(65535).collect();
        for (i, b) in blocks.iter().enumerate() {
            z.push(u8::from(i + 1 == blocks.len()));
            let len = b.len() as u16;
            z.extend(len.to_le_bytes());
            z.extend((!len).to_le_bytes());
            z.extend(*b);
        }
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in &raw {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        z.extend(((b << 16) | a).to_be_bytes());
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend(w.to_be_bytes());
        ihdr.extend(h.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 1]); // 8-bit RGB, Adam7
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(&mut out, b"IDAT", &z);
        chunk(&mut out, b"IEND", &[]);
        out
    }

    #[test]
    fn an_interlaced_png_is_read_from_its_last_pass() {
        let budget = Budget::new(64 << 20);
        let bytes = interlaced_png(&quadrants(1800, 1200));
        let whole = image::load_from_memory(&bytes).unwrap();
        assert_eq!(whole.width(), 1800, "a valid interlaced PNG");
        let r = render(&bytes, 800, &budget);
        assert_eq!((r.width, r.height), (800, 533));
        let at = |x: usize, y: usize| &r.data[(y * 800 + x) * 3..][..3];
        for (x, y, c) in [
            (100, 100, RED),
            (700, 100, GREEN),
            (100, 400, BLUE),
            (700, 400, YELLOW),
        ] {
            let p = at(x, y);
            assert!((0..3).all(|i| p[i].abs_diff(c[i]) <= 2), "({x},{y}) {p:?}");
        }
        // Small: decoded whole.
        let r = render(&interlaced_png(&quadrants(300, 200)), 800, &budget);
        assert_eq!((r.width, r.height), (300, 200));
        assert_eq!(&r.data[..3], &RED);
    }

    #[test]
    fn small_interlaced_pngs_without_iend_or_with_a_bad_crc_are_read() {
        let budget = Budget::new(64 << 20);
        // Odd sizes, down to one row and one column: passes left empty.
        for (w, h) in [(300, 201), (7, 1), (1, 9), (3, 3)] {
            let img = quadrants(w, h);
            let good = interlaced_png(&img);
            let no_iend = good[..good.len() - 12].to_vec();
            let mut bad_crc = good.clone();
            let idat_crc = good.len() - 12 - 4;
            bad_crc[idat_crc] ^= 0xFF;
            for (name, bytes) in [("good", good), ("no IEND", no_iend), ("bad CRC", bad_crc)] {
                let r = render(&bytes, 800, &budget);
                assert_eq!((r.width, r.height), (w, h), "{w}x{h} {name}");
                let want: Vec<u8> = img.pixels().flat_map(|p| p.0).collect();
                assert_eq!(r.data, want, "{w}x{h} {name}: every pixel");
            }
        }
    }

    #[test]
    fn memory_follows_the_width_not_the_area() {
        // 9000x9000 zeros: 236 KB on disk, 243 MB as RGB.
        let mut bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut bytes, 9000, 9000);
            enc.set_color(png::ColorType::Rgb);
            enc.set_compression(png::Compression::High);
            let mut writer = enc.write_header().unwrap();
            let mut w = writer.stream_writer().unwrap();
            let row = vec![0u8; 9000 * 3];
            for _ in 0..9000 {
                std::io::Write::write_all(&mut w, &row).unwrap();
            }
            w.finish().unwrap();
        }
        assert!(bytes.len() < 1_000_000, "{} bytes", bytes.len());
        let budget = Budget::new(64 << 20);
        let r = render(&bytes, 800, &budget);
        assert_eq!((r.width, r.height), (800, 800));
        assert!(r.data.iter().all(|v| *v == 0));
        let reserved = budget.peak();
        assert!(reserved < 24 << 20, "reserved {reserved}");
    }

    #[test]
    fn damaged_and_oversized_pngs_fail() {
        let budget = Budget::new(64 << 20);
        let dir = tempfile::tempdir().unwrap();
        let img = image::DynamicImage::ImageRgb8(quadrants(400, 300));
        let good = png_bytes(&img);
        let mut huge = good.clone();
        // IHDR width and height (after the 8-byte signature, length, type).
        huge[16..24].copy_from_slice(&[0, 0, 0x80, 0, 0, 0, 0x80, 0]);
        for (name, bytes) in [
            ("cut.png", good[..good.len() / 2].to_vec()),
            ("huge.png", huge),
            ("empty.png", b"\x89PNG\r\n\x1a\n".to_vec()),
        ] {
            let path = write(dir.path(), name, &bytes);
            let orig = Original::open_path(&path).unwrap();
            let got = super::decode(
                &orig,
                800,
                Allowance::new(&budget, Class::Request(crate::model::ThumbLevel::Screen)),
            );
            assert!(matches!(got, Err(ThumbError::Failed(_))), "{name}: {got:?}");
        }
        assert_eq!(budget.used(), 0);
    }
}
