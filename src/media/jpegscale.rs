//! JPEG fast paths for thumbnails: the EXIF IFD1 thumbnail cameras embed
//! (level 0 without decoding the photo) and decoding at 1/2, 1/4 or 1/8
//! scale inside the IDCT, so a 12 MP photo never exists at full size.
//!
//! Decoder choice (measured with `benches/thumbs.rs` on a 4.1 MB 12 MP
//! q90 photo, CPU per decode): jpeg-decoder 1/4 scale 89 ms, mozjpeg
//! (libjpeg-turbo, no SIMD) 2/8 78 ms; at 1/8, 85 vs 54 ms; zune-jpeg can't
//! scale (full decode 111 ms). The Huffman pass over the whole file
//! dominates, so no option reaches 40 ms; jpeg-decoder is within ~12% at
//! level 1, pure Rust (no C to cross-build) and returns errors where
//! mozjpeg panics, which would need panic=unwind and catch_unwind.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::Path;

use jpeg_decoder::{Decoder, PixelFormat};

use super::thumbs::{check_pixels, fit_size, Raster, ThumbError, MAX_DECODE_BYTES};
use crate::model::ThumbLevel;

/// Most header bytes we read looking for the frame header. APP segments are
/// at most 64 KiB each; real files put SOF within the first ~70 KiB.
const MAX_HEAD_BYTES: u64 = 1024 * 1024;

/// What the markers before the frame header tell us.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JpegHead {
    pub width: u32,
    pub height: u32,
    pub components: u8,
    pub precision: u8,
    /// SOF0/SOF1 (sequential) or SOF2 (progressive) Huffman coding: the
    /// processes the scaled decoder handles.
    pub huffman_dct: bool,
    pub progressive: bool,
    /// The APP1 Exif payload from its TIFF header on, if any.
    pub exif: Option<Vec<u8>>,
}

/// Decodes the JPEG at `path` no smaller than `level`'s box needs, or `None`
/// when this path can't handle the file (CMYK, 12-bit, lossless) and the
/// general decoder should try.
pub(crate) fn decode(path: &Path, level: ThumbLevel) -> Result<Option<Raster>, ThumbError> {
    let failed = |e: &dyn std::fmt::Display| ThumbError::failed(path, e);
    let edge = level.max_edge_px();
    let file = File::open(path).map_err(|e| failed(&e))?;
    // 64 KiB covers a whole APP1 segment in one read, so the EXIF thumbnail
    // path touches only the head of the file: cheap even on a USB disk.
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let head = read_head(&mut reader).map_err(|e| failed(&e))?;
    check_pixels(head.width, head.height).map_err(|e| failed(&e))?;
    if !head.huffman_dct || head.precision != 8 || !matches!(head.components, 1 | 3) {
        return Ok(None);
    }
    if level == ThumbLevel::Small {
        if let Some(raster) = head
            .exif
            .as_deref()
            .and_then(|tiff| exif_thumbnail(tiff, head.width, head.height, edge))
        {
            log::debug!(path:display = path.display(); "thumbnail from the EXIF thumbnail");
            return Ok(Some(raster));
        }
    }
    if head.progressive {
        // Progressive decoding keeps every coefficient (an i16 each) of the
        // full-size image until the last scan, whatever the output scale.
        let coefficients = u64::from(head.width) * u64::from(head.height) * 2 * 3;
        if coefficients > MAX_DECODE_BYTES {
            return Err(failed(&format_args!(
                "progressive {}x{} JPEG needs more than {} MiB to decode",
                head.width,
                head.height,
                MAX_DECODE_BYTES >> 20
            )));
        }
    }
    // The whole file in memory: jpeg-decoder reads the entropy-coded data a
    // byte at a time, which costs +50% CPU through a BufReader.
    let mut data = Vec::new();
    reader.rewind().map_err(|e| failed(&e))?;
    reader.read_to_end(&mut data).map_err(|e| failed(&e))?;
    decode_scaled(data.as_slice(), edge)
        .map(Some)
        .map_err(|e| failed(&e))
}

/// Decodes with the smallest IDCT scale whose longest side still covers `edge`.
fn decode_scaled<R: Read>(reader: R, edge: u32) -> Result<Raster, String> {
    let mut dec = Decoder::new(reader);
    dec.set_max_decoding_buffer_size(MAX_DECODE_BYTES as usize);
    let want = u16::try_from(edge).unwrap_or(u16::MAX);
    dec.read_info().map_err(|e| e.to_string())?;
    let (w, h) = dec.scale(want, want).map_err(|e| e.to_string())?;
    let pixels = dec.decode().map_err(|e| e.to_string())?;
    let format = dec.info().map(|i| i.pixel_format);
    to_raster(pixels, u32::from(w), u32::from(h), format)
}

fn to_raster(
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

/// The embedded IFD1 thumbnail, decoded, when it can stand in for the photo
/// at `edge`: at least `edge` on its longest side (or as large as the photo),
/// and the photo's aspect ratio. Some cameras letterbox a 4:3 thumbnail for a
/// 3:2 or 16:9 photo; those black bars must not reach the client.
fn exif_thumbnail(tiff: &[u8], width: u32, height: u32, edge: u32) -> Option<Raster> {
    let exif = exif::Reader::new().read_raw(tiff.to_vec()).ok()?;
    let field = |tag| {
        exif.get_field(tag, exif::In::THUMBNAIL)
            .and_then(|f| f.value.get_uint(0))
    };
    let offset = field(exif::Tag::JPEGInterchangeFormat)? as usize;
    let len = field(exif::Tag::JPEGInterchangeFormatLength)? as usize;
    let bytes = tiff.get(offset..offset.checked_add(len)?)?;
    let mut dec = Decoder::new(bytes);
    let pixels = dec.decode().ok()?;
    let info = dec.info()?;
    let (tw, th) = (u32::from(info.width), u32::from(info.height));
    let big_enough = tw.max(th) >= edge.min(width.max(height));
    // Same shape as the photo, within a pixel of rounding.
    let (ew, eh) = fit_size(width, height, tw.max(th));
    let same_shape = ew.abs_diff(tw) <= 1 && eh.abs_diff(th) <= 1;
    if !big_enough || !same_shape {
        log::debug!(tw, th, width, height; "EXIF thumbnail unusable");
        return None;
    }
    to_raster(pixels, tw, th, Some(info.pixel_format)).ok()
}

/// Reads markers up to the frame header (SOFn), keeping the Exif payload.
pub(crate) fn read_head<R: Read>(reader: &mut R) -> io::Result<JpegHead> {
    let bad =
        |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("not a JPEG: {what}"));
    let mut r = reader.take(MAX_HEAD_BYTES);
    let mut b2 = [0u8; 2];
    r.read_exact(&mut b2)?;
    if b2 != [0xFF, 0xD8] {
        return Err(bad("no SOI marker"));
    }
    let mut exif = None;
    loop {
        let mut b = [0u8; 1];
        r.read_exact(&mut b)?;
        if b[0] != 0xFF {
            return Err(bad("garbage between segments"));
        }
        // Any number of 0xFF fill bytes may precede a marker code.
        let marker = loop {
            r.read_exact(&mut b)?;
            if b[0] != 0xFF {
                break b[0];
            }
        };
        if matches!(marker, 0x01 | 0xD0..=0xD7) {
            continue; // stand-alone markers carry no length
        }
        if marker == 0xDA || marker == 0xD9 {
            return Err(bad("scan or end before the frame header"));
        }
        r.read_exact(&mut b2)?;
        let len = usize::from(u16::from_be_bytes(b2));
        if len < 2 {
            return Err(bad("segment length below 2"));
        }
        let mut body = vec![0u8; len - 2];
        r.read_exact(&mut body)?;
        match marker {
            0xE1 if exif.is_none() && body.starts_with(b"Exif\0\0") => {
                body.drain(..6);
                exif = Some(body);
            }
            // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                if body.len() < 6 {
                    return Err(bad("short frame header"));
                }
                return Ok(JpegHead {
                    precision: body[0],
                    height: u32::from(u16::from_be_bytes([body[1], body[2]])),
                    width: u32::from(u16::from_be_bytes([body[3], body[4]])),
                    components: body[5],
                    huffman_dct: matches!(marker, 0xC0..=0xC2),
                    progressive: marker == 0xC2,
                    exif,
                });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::thumbs::testkit::{self, *};
    use super::super::thumbs::{render, CONTENT_TYPE_JPEG};
    use super::*;
    use crate::model::FileType;

    /// A blue photo whose embedded thumbnail is red: the colour tells which
    /// one a level-0 thumbnail came from.
    fn photo(
        dir: &Path,
        name: &str,
        w: u32,
        h: u32,
        thumb: Option<(u32, u32)>,
        o: Option<u16>,
    ) -> std::path::PathBuf {
        let main = jpeg_bytes(&solid(w, h, BLUE), 90);
        let thumb = thumb.map(|(tw, th)| jpeg_bytes(&solid(tw, th, RED), 85));
        write(dir, name, &with_exif(&main, o, thumb.as_deref()))
    }

    fn level0(path: &Path, o: Option<i64>) -> image::RgbaImage {
        let thumb = render(path, FileType::Image, o, ThumbLevel::Small).unwrap();
        assert_eq!(thumb.content_type, CONTENT_TYPE_JPEG);
        testkit::decode(&thumb.bytes)
    }

    #[test]
    fn level_0_uses_the_exif_thumbnail() {
        let dir = tempfile::tempdir().unwrap();
        let path = photo(dir.path(), "cam.jpg", 2000, 1500, Some((160, 120)), Some(1));
        let img = level0(&path, Some(1));
        assert_eq!(img.dimensions(), (160, 120));
        assert!(
            near(&img, 80, 60, RED, 30),
            "EXIF thumbnail expected, got {:?}",
            img.get_pixel(80, 60)
        );
        // Level 1 needs more pixels than the thumbnail has: the photo itself.
        let thumb = render(&path, FileType::Image, Some(1), ThumbLevel::Screen).unwrap();
        let img = testkit::decode(&thumb.bytes);
        assert_eq!(img.dimensions(), (800, 600));
        assert!(near(&img, 400, 300, BLUE, 30));
    }

    #[test]
    fn exif_thumbnail_is_oriented_and_downscaled() {
        let dir = tempfile::tempdir().unwrap();
        let path = photo(dir.path(), "rot.jpg", 4000, 3000, Some((320, 240)), Some(6));
        let img = level0(&path, Some(6));
        assert_eq!(
            img.dimensions(),
            (120, 160),
            "320x240 thumbnail, turned and fitted"
        );
        assert!(near(&img, 60, 80, RED, 30));
    }

    #[test]
    fn unusable_exif_thumbnails_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        // Too small for the box.
        let small = photo(dir.path(), "small.jpg", 2000, 1500, Some((80, 60)), None);
        // Letterboxed: a 4:3 thumbnail for a 16:9 photo.
        let boxed = photo(dir.path(), "boxed.jpg", 1600, 900, Some((160, 120)), None);
        // Not a JPEG at all.
        let main = jpeg_bytes(&solid(1000, 750, BLUE), 90);
        let junk = write(
            dir.path(),
            "junk.jpg",
            &with_exif(&main, None, Some(b"\xFF\xD8 nope")),
        );
        for path in [small, boxed, junk] {
            let img = level0(&path, None);
            let (w, h) = img.dimensions();
            assert!(
                near(&img, w / 2, h / 2, BLUE, 30),
                "{}: photo expected",
                path.display()
            );
        }
        // A thumbnail as large as a small photo is good enough.
        let tiny = photo(dir.path(), "tiny.jpg", 120, 90, Some((120, 90)), None);
        let img = level0(&tiny, None);
        assert_eq!(img.dimensions(), (120, 90));
        assert!(near(&img, 60, 45, RED, 30));
    }

    #[test]
    fn head_parsing() {
        let main = jpeg_bytes(&solid(300, 200, BLUE), 90);
        let head = read_head(&mut main.as_slice()).unwrap();
        assert_eq!(
            (head.width, head.height, head.components, head.precision),
            (300, 200, 3, 8)
        );
        assert!(head.huffman_dct && !head.progressive && head.exif.is_none());
        let tagged = with_exif(&main, Some(8), None);
        let head = read_head(&mut tagged.as_slice()).unwrap();
        assert!(head.exif.unwrap().starts_with(b"II*\0"));
        for bad in [
            &b""[..],
            b"\xFF\xD8",
            b"GIF89a",
            b"\xFF\xD8\xFF\xDA\x00\x02",
            b"\xFF\xD8\xFF\xC0\x00\x01",
        ] {
            assert!(read_head(&mut &bad[..]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn grayscale_jpeg() {
        let dir = tempfile::tempdir().unwrap();
        let gray = image::GrayImage::from_pixel(1000, 500, image::Luma([128]));
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
            .encode_image(&gray)
            .unwrap();
        let path = write(dir.path(), "gray.jpg", &bytes);
        let img = testkit::decode(
            &render(&path, FileType::Image, None, ThumbLevel::Small)
                .unwrap()
                .bytes,
        );
        assert_eq!(img.dimensions(), (160, 80));
        assert!(near(&img, 80, 40, [128, 128, 128], 6));
    }
}
