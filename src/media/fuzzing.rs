//! Entry points for the fuzz targets in `fuzz/` (docs/fuzzing.md): the
//! crate-private JPEG decoders and header readers behind a small `pub`
//! surface, so the parsers are fuzzed exactly as the server runs them.
//! Nothing in the server calls these; they add no behaviour of their own.

use std::io;
use std::path::Path;

use super::budget::{Allowance, Budget, DEFAULT_BUDGET_BYTES};
use super::container::Container;
use super::original::Original;
use super::raster::{Raster, ThumbError};
use super::{jpegbands, jpegpar, jpegscale, pngstream, tiffdec};
use crate::model::ThumbLevel;

/// Decoded pixels: `width`×`height`, RGB (or RGBA when `alpha`), rows
/// without padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pixels {
    pub width: u32,
    pub height: u32,
    pub alpha: bool,
    pub data: Vec<u8>,
}

impl From<Raster> for Pixels {
    fn from(r: Raster) -> Pixels {
        Pixels {
            width: r.width,
            height: r.height,
            alpha: r.alpha,
            data: r.data,
        }
    }
}

/// The thumbnail decode of the JPEG at `path` for `level` (`jpegscale`:
/// EXIF thumbnail, MPF preview, `jpegpar`, `jpegbands`, jpeg-decoder).
/// `Ok(None)`: the general decoder would take the file.
pub fn thumbnail_decode(path: &Path, level: ThumbLevel) -> Result<Option<Pixels>, ThumbError> {
    let orig = Original::open_path(path)?;
    let decoded = jpegscale::decode(&orig, level.max_edge_px(), Allowance::standalone())?;
    Ok(decoded.map(|(raster, _lease)| Pixels::from(raster)))
}

/// The EXIF thumbnail of the JPEG at `path` when it can stand in at `edge`.
pub fn exif_thumbnail(path: &Path, edge: u32) -> Option<Pixels> {
    let orig = Original::open_path(path).ok()?;
    jpegscale::exif_thumbnail_of(&orig, edge, Budget::shared_default())
        .map(|(raster, _lease)| Pixels::from(raster))
}

/// A JPEG in memory decoded at the smallest scale covering `edge` (video
/// frames), with the pixel-count check first.
pub fn decode_bytes(jpeg: &[u8], edge: u32) -> Result<Pixels, String> {
    jpegscale::decode_bytes(jpeg, edge).map(Pixels::from)
}

/// jpeg-decoder in one piece at the smallest scale covering `edge`: the
/// reference the parallel decoders must agree with. Within the default
/// render budget ([`DEFAULT_BUDGET_BYTES`]).
pub fn decode_scaled(jpeg: &[u8], edge: u32) -> Result<Pixels, String> {
    jpegscale::decode_scaled(jpeg, edge, DEFAULT_BUDGET_BYTES).map(Pixels::from)
}

/// `jpegpar` with up to `threads` ranges of at least `min_range_bytes`
/// (the server uses 64 KiB; a fuzzer's small inputs need less to be split),
/// within the default render budget.
pub fn jpegpar_decode(
    jpeg: &[u8],
    edge: u32,
    threads: usize,
    min_range_bytes: usize,
) -> Option<Pixels> {
    jpegpar::decode_split(jpeg, edge, threads, min_range_bytes, DEFAULT_BUDGET_BYTES)
        .map(Pixels::from)
}

/// `jpegbands` in up to `bands` bands.
pub fn jpegbands_decode(jpeg: &[u8], edge: u32, bands: usize) -> Option<Pixels> {
    jpegbands::decode(jpeg, edge, bands).map(Pixels::from)
}

/// What `jpegscale` reads before the frame header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JpegHead {
    pub width: u32,
    pub height: u32,
    pub components: u8,
    pub precision: u8,
    pub huffman_dct: bool,
    pub progressive: bool,
    /// The APP1 Exif payload from its TIFF header on.
    pub exif: Option<Vec<u8>>,
    /// The APP2 MPF payload and the offset of its MP header in the input.
    pub mpf: Option<(u64, Vec<u8>)>,
}

pub fn jpeg_head(jpeg: &[u8]) -> io::Result<JpegHead> {
    let h = jpegscale::read_head(&mut &jpeg[..])?;
    Ok(JpegHead {
        width: h.width,
        height: h.height,
        components: h.components,
        precision: h.precision,
        huffman_dct: h.huffman_dct,
        progressive: h.progressive,
        exif: h.exif,
        mpf: h.mpf,
    })
}

/// One MP entry: `(format, type, size, offset)`.
pub(crate) type MpEntry = (u32, u32, u32, u32);

/// The MPEntry table of an MPF payload; `None` when damaged.
pub fn mp_entries(mpf: &[u8]) -> Option<Vec<MpEntry>> {
    let entries = jpegscale::mp_entries(mpf)?;
    Some(
        entries
            .into_iter()
            .map(|e| (e.format, e.kind, e.size, e.offset))
            .collect(),
    )
}

/// The in-process thumbnail decode of a PNG (`pngstream`), TIFF
/// (`tiffdec`) or BMP (the `image` crate) file at `path`, as the renderer
/// runs it for `level`. `Ok(None)`: another format (ffmpeg's or a JPEG).
pub fn still_decode(path: &Path, level: ThumbLevel) -> Result<Option<Pixels>, ThumbError> {
    let orig = Original::open_path(path)?;
    let (edge, allow) = (level.max_edge_px(), Allowance::standalone());
    let decoded = match orig.container {
        Some(Container::Png) => pngstream::decode(&orig, edge, allow)?,
        Some(Container::Tiff) => tiffdec::decode(&orig, edge, allow)?,
        Some(Container::Bmp) => {
            let reader = orig.reader(64 * 1024).map_err(|e| orig.failed(e))?;
            let reader = image::ImageReader::with_format(reader, image::ImageFormat::Bmp);
            super::raster::decode_image(reader, &orig, edge, allow)?
        }
        _ => return Ok(None),
    };
    Ok(Some(Pixels::from(decoded.0)))
}
