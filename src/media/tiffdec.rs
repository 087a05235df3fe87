//! TIFF thumbnails in-process, by the `image` crate's TIFF decoder (the
//! `tiff` crate): page 0 only, strips or tiles, chunky or planar, 8- and
//! 16-bit, RGB, grey, CMYK, JPEG-, LZW-, Deflate- and PackBits-compressed,
//! classic or BigTIFF. ffmpeg 5.1 got most of what scanners write wrong
//! and still answered with a picture (a JPEG-compressed TIFF came out
//! solid green, tiled, planar and 16-bit RGB ones black, CMYK blank,
//! 2/4-bit grey as noise, a multi-page one as another page), so TIFFs
//! never go to ffmpeg: what this decoder cannot read is refused, and a
//! panic inside it is caught and refused the same way; the renderer
//! (`thumbs`) then hands the file to libtiff's `tiff2rgba` (`tiffrgba`).
//! This stays in-process alone, as the fuzz target `stills` runs it.
//!
//! Bounds as for every full-raster decode (`raster::decode_image`): the
//! pixel count is checked and the decoder's peak reserved in the render
//! budget before anything is allocated, and the decoder's own allocations
//! are capped by `image::Limits`. Blocking: callers are on the blocking
//! pool.

use std::panic::{catch_unwind, AssertUnwindSafe};

use image::{ImageFormat, ImageReader};

use super::budget::{Allowance, Lease};
use super::original::Original;
use super::raster::{decode_image, Raster, ThumbError};
use super::stillmeta::tiff_directory_bounded;

/// The first page of the TIFF `orig`, whole, with the lease covering it
/// and what follows.
pub(crate) fn decode<'a>(
    orig: &Original,
    edge: u32,
    allow: Allowance<'a>,
) -> Result<(Raster, Lease<'a>), ThumbError> {
    let mut reader = orig.reader(64 * 1024).map_err(|e| orig.failed(e))?;
    // The `tiff` crate sizes a vector by an entry's claimed count before
    // reading it: a lying count is refused here, before it can allocate.
    if let Err(why) = tiff_directory_bounded(&mut reader).map_err(|e| orig.failed(e))? {
        return Err(orig.failed(why));
    }
    std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(0)).map_err(|e| orig.failed(e))?;
    let decoded = catch_unwind(AssertUnwindSafe(|| {
        decode_image(
            ImageReader::with_format(reader, ImageFormat::Tiff),
            orig,
            edge,
            allow,
        )
    }));
    match decoded {
        Ok(result) => result,
        Err(_) => {
            log::warn!(path:display = orig.label().display(); "the tiff decoder panicked");
            Err(orig.failed("the tiff decoder could not read this file"))
        }
    }
}
