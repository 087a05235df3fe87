//! The pixels every decoder produces and the renderer consumes: [`Raster`],
//! the error a render ends in ([`ThumbError`]), the size limits, the memory
//! arithmetic each decoder reserves from (`post_cost`, `reserve`), and the
//! raster operations shared by decoders and renderer (`fit_size`, `fit`,
//! `resize`, `orient`, the `image` crate's decode).
//!
//! May import: `budget`, `original` (what a file is), `thumberror`,
//! external crates.
//! Imported by the decoders (`jpegscale`, `jpegbands`, `jpegpar`,
//! `pngstream`, `tiffdec`, `tiffrgba`, `heifdec`, `framegrab`) and the renderer (`thumbs`); it
//! imports none of them.

use std::io::BufRead;

use fast_image_resize as fir;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits};
use jpeg_decoder::PixelFormat;

use super::budget::{Allowance, Lease};
use super::original::Original;
pub(crate) use super::thumberror::ThumbError;

/// Largest source we agree to decode into a full raster, in pixels
/// (scaled JPEG decoding needs little memory whatever the size, but other
/// decoders hold every pixel): 100 MP is already far past any camera a
/// family owns. PNGs, decoded row by row, go up to [`MAX_STREAMED_PIXELS`].
pub(crate) const MAX_SOURCE_PIXELS: u64 = 100_000_000;
/// Largest PNG we decode (row by row, so memory is no limit): 2^29 pixels,
/// a 23,000 px square. Time is: inflating and filtering every row of that
/// takes seconds on a Pi.
pub(crate) const MAX_STREAMED_PIXELS: u64 = 1 << 29;

/// Decoded pixels, 8 bits per channel, RGB or RGBA, rows without padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Raster {
    pub width: u32,
    pub height: u32,
    pub alpha: bool,
    pub data: Vec<u8>,
}

impl Raster {
    pub(crate) fn from_dynamic(img: DynamicImage) -> Raster {
        let (width, height) = (img.width(), img.height());
        if img.color().has_alpha() {
            let data = img.into_rgba8().into_raw();
            Raster {
                width,
                height,
                alpha: true,
                data,
            }
        } else {
            let data = img.into_rgb8().into_raw();
            Raster {
                width,
                height,
                alpha: false,
                data,
            }
        }
    }
}

/// Reserves `bytes` for a render of `orig`.
pub(crate) fn reserve<'a>(
    orig: &Original,
    allow: Allowance<'a>,
    bytes: u64,
) -> Result<Lease<'a>, ThumbError> {
    allow
        .budget
        .reserve(bytes, allow.class)
        .map_err(|e| ThumbError::from_budget(orig.label(), e))
}

/// Decodes with the `image` crate, which holds the whole picture: refused
/// past [`MAX_SOURCE_PIXELS`] or when its peak does not fit the budget,
/// before anything is allocated.
pub(crate) fn decode_image<'a, R: BufRead + std::io::Seek>(
    mut reader: ImageReader<R>,
    orig: &Original,
    edge: u32,
    allow: Allowance<'a>,
) -> Result<(Raster, Lease<'a>), ThumbError> {
    let failed = |e: &dyn std::fmt::Display| orig.failed(e);
    let mut limits = Limits::default();
    limits.max_image_width = Some(u16::MAX.into());
    limits.max_image_height = Some(u16::MAX.into());
    reader.limits(limits.clone());
    let mut decoder = reader.into_decoder().map_err(|e| failed(&e))?;
    let (w, h) = decoder.dimensions();
    check_pixels(w, h).map_err(|e| failed(&e))?;
    // The decoder's own buffer, a composed frame (GIF) or a conversion to
    // 8-bit RGB(A) of the same size, then scaling and encoding.
    let pixels = u64::from(w) * u64::from(h);
    let decoded = decoder.total_bytes();
    let cost = 2 * decoded + 4 * pixels + post_cost(w, h, edge, true);
    let lease = reserve(orig, allow, cost)?;
    limits.max_alloc = Some(2 * decoded + 4 * pixels);
    decoder.set_limits(limits).map_err(|e| failed(&e))?;
    let img = DynamicImage::from_decoder(decoder).map_err(|e| failed(&e))?;
    Ok((Raster::from_dynamic(img), lease))
}

/// What scaling a `w`×`h` raster (RGBA at worst) into the `edge` box,
/// turning it and encoding it hold besides the raster itself: the scaler's
/// intermediate (box width × source height), the result, its turned copy
/// (and for the pre-render's two levels, a copy for level 0) and the
/// encoded bytes. A raster that already fits is not scaled (`resize`
/// hands it back): no intermediate and no result, only the turned copy,
/// level 0's and the encoded bytes (at most the raster's size) — what lets
/// a browser view (`ThumbLevel::View`) be full size.
pub(crate) fn post_cost(w: u32, h: u32, edge: u32, alpha: bool) -> u64 {
    let c: u64 = if alpha { 4 } else { 3 };
    let (fw, fh) = fit_size(w, h, edge);
    if (fw, fh) == (w, h) {
        return 3 * u64::from(w) * u64::from(h) * c + (1 << 20);
    }
    let (fw, fh) = (u64::from(fw), u64::from(fh));
    fw * u64::from(h) * c + 4 * fw * fh * c + (1 << 20)
}

pub(crate) fn check_pixels(w: u32, h: u32) -> Result<(), String> {
    let px = u64::from(w) * u64::from(h);
    if px == 0 || px > MAX_SOURCE_PIXELS {
        return Err(format!(
            "{w}x{h} pixels is outside what thumbnails accept (1 to {MAX_SOURCE_PIXELS})"
        ));
    }
    Ok(())
}

/// Size that fits `w`×`h` into an `edge` square keeping the aspect ratio,
/// never enlarging; the longest side becomes exactly `edge` when scaled.
pub(crate) fn fit_size(w: u32, h: u32, edge: u32) -> (u32, u32) {
    let long = w.max(h);
    if long <= edge {
        return (w, h);
    }
    let scale = |side: u32| {
        let s = (u64::from(side) * u64::from(edge) + u64::from(long) / 2) / u64::from(long);
        (s as u32).max(1)
    };
    (scale(w), scale(h))
}

/// Scales `src` to fit the box with a Lanczos3 convolution (SIMD in
/// fast_image_resize; alpha is premultiplied during resampling).
pub(crate) fn fit(src: Raster, edge: u32) -> Result<Raster, String> {
    let (w, h) = fit_size(src.width, src.height, edge);
    resize(src, w, h)
}

/// Scales `src` to exactly `w`×`h` (Lanczos3, as [`fit`]).
pub(crate) fn resize(src: Raster, w: u32, h: u32) -> Result<Raster, String> {
    if (w, h) == (src.width, src.height) {
        return Ok(src);
    }
    let pixel = if src.alpha {
        fir::PixelType::U8x4
    } else {
        fir::PixelType::U8x3
    };
    let from = fir::images::ImageRef::new(src.width, src.height, &src.data, pixel)
        .map_err(|e| format!("resize source: {e}"))?;
    let mut to = fir::images::Image::new(w, h, pixel);
    let options = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Lanczos3));
    fir::Resizer::new()
        .resize(&from, &mut to, &options)
        .map_err(|e| format!("resize: {e}"))?;
    Ok(Raster {
        width: w,
        height: h,
        alpha: src.alpha,
        data: to.into_vec(),
    })
}

/// Applies EXIF orientation `o` (§2.4) so the pixels display upright.
/// Values outside 1–8 count as 1, as the spec treats an absent value.
pub(crate) fn orient(src: Raster, o: i64) -> Raster {
    // Stored pixel of display pixel (x, y), as sx = ax·x + bx·y + cx and
    // sy = ay·x + by·y + cy: each case straight from the §2.4 table.
    let (w, h) = (src.width as isize, src.height as isize);
    let (ax, bx, cx, ay, by, cy) = match o {
        2 => (-1, 0, w - 1, 0, 1, 0),      // mirror left↔right
        3 => (-1, 0, w - 1, 0, -1, h - 1), // rotate 180°
        4 => (1, 0, 0, 0, -1, h - 1),      // mirror top↔bottom
        5 => (0, 1, 0, 1, 0, 0),           // transpose
        6 => (0, 1, 0, -1, 0, h - 1),      // rotate 90° clockwise
        7 => (0, -1, w - 1, -1, 0, h - 1), // transverse
        8 => (0, -1, w - 1, 1, 0, 0),      // rotate 90° counter-clockwise
        _ => return src,
    };
    let (dw, dh) = if o >= 5 {
        (src.height, src.width)
    } else {
        (src.width, src.height)
    };
    // Walk the stored image by index: +step_x per display column, +step_y
    // per display row.
    let walk = Walk {
        origin: cx + cy * w,
        step_x: ax + ay * w,
        step_y: bx + by * w,
        width: dw as usize,
    };
    let data = if src.alpha {
        walk.remap::<4>(&src.data)
    } else {
        walk.remap::<3>(&src.data)
    };
    Raster {
        width: dw,
        height: dh,
        alpha: src.alpha,
        data,
    }
}

struct Walk {
    origin: isize,
    step_x: isize,
    step_y: isize,
    width: usize,
}

impl Walk {
    fn remap<const N: usize>(&self, src: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; src.len()];
        for (y, row) in out.chunks_exact_mut(self.width * N).enumerate() {
            let mut s = self.origin + self.step_y * y as isize;
            for px in row.chunks_exact_mut(N) {
                let i = s as usize * N;
                px.copy_from_slice(&src[i..i + N]);
                s += self.step_x;
            }
        }
        out
    }
}

/// Decodes with the smallest IDCT scale whose longest side still covers
/// `edge`; jpeg-decoder refuses to allocate more than `max_bytes`.
pub(crate) fn decode_scaled<R: std::io::Read>(
    reader: R,
    edge: u32,
    max_bytes: u64,
) -> Result<Raster, String> {
    let mut dec = jpeg_decoder::Decoder::new(reader);
    dec.set_max_decoding_buffer_size(usize::try_from(max_bytes).unwrap_or(usize::MAX));
    let want = u16::try_from(edge).unwrap_or(u16::MAX);
    dec.read_info().map_err(|e| e.to_string())?;
    let (w, h) = dec.scale(want, want).map_err(|e| e.to_string())?;
    let pixels = dec.decode().map_err(|e| e.to_string())?;
    let format = dec.info().map(|i| i.pixel_format);
    to_raster(pixels, u32::from(w), u32::from(h), format)
}

/// jpeg-decoder's output (RGB or grey) as a raster.
pub(crate) fn to_raster(
    pixels: Vec<u8>,
    width: u32,
    height: u32,
    format: Option<PixelFormat>,
) -> Result<Raster, String> {
    let n = width as usize * height as usize;
    let data = match format {
        Some(PixelFormat::RGB24) if pixels.len() == n * 3 => pixels,
        Some(PixelFormat::L8) if pixels.len() == n => pixels.iter().flat_map(|&l| [l; 3]).collect(),
        other => return Err(format!("unexpected decoder output {other:?}")),
    };
    Ok(Raster {
        width,
        height,
        alpha: false,
        data,
    })
}
