//! Thumbnail rendering (spec §10): decode the original at the smallest size
//! that still covers the level's box, scale it to fit, turn it upright
//! (§2.4) and encode it as a baseline JPEG, or a PNG when transparency is used.
//!
//! Everything here blocks: callers run it on the blocking pool (see
//! `thumbcache`). The original is read through the file the server opened
//! (`original.rs`), by format as its first bytes say: JPEGs take the fast
//! paths in `jpegscale`, PNGs are decoded row by row into a shrinking
//! accumulator (`pngstream`), TIFFs page 0 (`tiffdec`, else libtiff's
//! `tiff2rgba` in a child, `tiffrgba`), GIFs, BMPs and
//! animated WebPs by the `image` crate, videos and the
//! still formats the server doesn't decode itself by ffmpeg (`framegrab`).
//!
//! Memory: each render works out its peak from the file's header and
//! reserves it in the process's one budget (`budget.rs`) before it
//! allocates; one that could never fit is refused (−10008), one that finds
//! the budget used up waits. Nothing reads more of an original than its
//! decoder needs (a JPEG up to its end marker, bounded by its dimensions).

use std::path::Path;

use image::ImageReader;

use super::budget::{Allowance, Lease};
use super::container::Container;
use super::heif::{self, HeifError};
use super::original::{read_at_most, Original};
use super::raster::{decode_image, fit, orient, reserve, Raster};
use super::{framegrab, heifdec, jpegscale, pngstream, tiffdec, tiffrgba};
use crate::model::{FileType, ThumbLevel};

/// The error a render ends in, where callers of the renderer look for it.
pub(crate) use super::thumberror::ThumbError;

/// What a video render holds in this process (ffmpeg's own memory is
/// capped separately, `process::CHILD_MAX_DATA_BYTES`): the JPEG frame
/// ffmpeg returns and its small decodes.
const VIDEO_RENDER_BYTES: u64 = 4 << 20;
/// JPEG quality of generated thumbnails: visually clean at screen size
/// while keeping a level-1 thumbnail around 50–120 kB.
pub(crate) const THUMB_JPEG_QUALITY: u8 = 80;

pub(crate) const CONTENT_TYPE_JPEG: &str = "image/jpeg";
pub(crate) const CONTENT_TYPE_PNG: &str = "image/png";

/// An encoded thumbnail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumb {
    pub bytes: Vec<u8>,
    /// `image/jpeg` or `image/png`.
    pub content_type: &'static str,
}

/// Builds the thumbnail of the file at `path`, opened as given: for tests
/// and benches (the server opens originals with [`Original::open`] and
/// calls [`render_original`]). Blocking.
pub fn render(
    path: &Path,
    kind: FileType,
    orientation: Option<i64>,
    level: ThumbLevel,
) -> Result<Thumb, ThumbError> {
    if !kind.has_thumbnail() {
        return Err(ThumbError::Unsupported);
    }
    let orig = Original::open_path(path)?;
    render_original(&orig, kind, orientation, level, Allowance::standalone())
}

/// Both levels of the file at `path`, as [`render_both_original`]; for
/// tests and benches. Blocking.
pub fn render_both(
    path: &Path,
    kind: FileType,
    orientation: Option<i64>,
) -> [Result<Thumb, ThumbError>; 2] {
    if !kind.has_thumbnail() {
        return [Err(ThumbError::Unsupported), Err(ThumbError::Unsupported)];
    }
    match Original::open_path(path) {
        Ok(orig) => render_both_original(&orig, kind, orientation, Allowance::standalone()),
        Err(e) => {
            let copy = e.duplicate();
            [Err(e), Err(copy)]
        }
    }
}

/// Builds the thumbnail of one original. Blocking.
///
/// `orientation` is the stored EXIF value (§2.4) and is applied to stills;
/// videos are turned upright by ffmpeg from their display matrix, so it is
/// ignored for them (applying both would rotate twice).
pub fn render_original(
    orig: &Original,
    kind: FileType,
    orientation: Option<i64>,
    level: ThumbLevel,
    allow: Allowance<'_>,
) -> Result<Thumb, ThumbError> {
    if !kind.has_thumbnail() {
        return Err(ThumbError::Unsupported);
    }
    if level == ThumbLevel::View {
        return render_view(orig, kind, orientation, allow);
    }
    let edge = level.max_edge_px();
    if kind == FileType::Video {
        let _lease = reserve(orig, allow, VIDEO_RENDER_BYTES)?;
        let bytes = framegrab::video_frame(orig, edge)?;
        return Ok(Thumb {
            bytes,
            content_type: CONTENT_TYPE_JPEG,
        });
    }
    still_at(orig, orientation, edge, allow)
}

/// A still fitted into the `edge` box, upright, encoded.
fn still_at(
    orig: &Original,
    orientation: Option<i64>,
    edge: u32,
    allow: Allowance<'_>,
) -> Result<Thumb, ThumbError> {
    let (raster, _lease, upright) = decode_still(orig, edge, allow)?;
    let raster = fit(raster, edge).map_err(|e| orig.failed(e))?;
    let raster = orient(raster, stored_turn(orientation, upright));
    encode(raster).map_err(|e| orig.failed(e))
}

/// The browser view of a still ([`ThumbLevel::View`]): the picture at full
/// size, upright, as a JPEG (a PNG when it uses transparency). When its
/// render at full size needs more than the whole memory budget, the
/// largest size that fits: each try's box three quarters of the last,
/// down to the screen level's; a try the budget can never hold is refused
/// before anything is decoded, so the misses cost a header read each.
/// Videos have none. Blocking.
pub(crate) fn render_view(
    orig: &Original,
    kind: FileType,
    orientation: Option<i64>,
    allow: Allowance<'_>,
) -> Result<Thumb, ThumbError> {
    if !matches!(kind, FileType::Image | FileType::Gif) {
        return Err(ThumbError::Unsupported);
    }
    let floor = ThumbLevel::Screen.max_edge_px();
    let mut edge = ThumbLevel::View.max_edge_px();
    loop {
        match still_at(orig, orientation, edge, allow) {
            Err(ThumbError::TooLarge(why)) if edge > floor => {
                log::debug!("browser view at {edge} px does not fit: {why}");
                edge = (edge / 4 * 3).max(floor);
            }
            done => return done,
        }
    }
}

/// Both levels of one original, `[level 0, level 1]`, from a single decode:
/// what the pre-render worker uses, since decoding a 12 MP JPEG twice costs
/// twice. Level 1 is made as [`render_original`] makes it; level 0 from the
/// EXIF thumbnail when that is usable, else scaled down from level 1's
/// pixels (for a video: from its level-1 frame, one ffmpeg run instead of
/// two). Blocking.
pub(crate) fn render_both_original(
    orig: &Original,
    kind: FileType,
    orientation: Option<i64>,
    allow: Allowance<'_>,
) -> [Result<Thumb, ThumbError>; 2] {
    let both = |e: ThumbError| {
        let copy = e.duplicate();
        [Err(e), Err(copy)]
    };
    if !kind.has_thumbnail() {
        return both(ThumbError::Unsupported);
    }
    let failed = |e: String| orig.failed(e);
    let (small_edge, screen_edge) = (
        ThumbLevel::Small.max_edge_px(),
        ThumbLevel::Screen.max_edge_px(),
    );
    if kind == FileType::Video {
        let _lease = match reserve(orig, allow, VIDEO_RENDER_BYTES) {
            Ok(l) => l,
            Err(e) => return both(e),
        };
        let frame = match framegrab::video_frame(orig, screen_edge) {
            Ok(bytes) => bytes,
            Err(e) => return both(e),
        };
        let small = jpegscale::decode_bytes(&frame, small_edge)
            .and_then(|r| fit(r, small_edge))
            .and_then(encode)
            .map_err(failed);
        let screen = Thumb {
            bytes: frame,
            content_type: CONTENT_TYPE_JPEG,
        };
        return [small, Ok(screen)];
    }
    let (screen, _lease) = match decode_still(orig, screen_edge, allow)
        .and_then(|(r, lease, up)| Ok((fit(r, screen_edge).map_err(failed)?, lease, up)))
    {
        Ok((r, lease, upright)) => (orient(r, stored_turn(orientation, upright)), lease),
        Err(e) => return both(e),
    };
    let exif_small = (orig.container == Some(Container::Jpeg))
        .then(|| jpegscale::exif_thumbnail_of(orig, small_edge, allow.budget))
        .flatten();
    let small = match exif_small {
        Some((r, _exif_lease)) => fit(r, small_edge).map(|r| orient(r, orientation.unwrap_or(1))),
        None => fit(screen.clone(), small_edge), // already upright
    };
    [
        small.and_then(encode).map_err(failed),
        encode(screen).map_err(failed),
    ]
}

/// The EXIF orientation still to apply to a decoded raster: none when the
/// decoder already turned it upright (HEIF/AVIF, from `irot`/`imir`).
fn stored_turn(orientation: Option<i64>, upright: bool) -> i64 {
    if upright {
        1
    } else {
        orientation.unwrap_or(1)
    }
}

/// Decodes a still image (first frame of a GIF) no smaller than needed for
/// the `edge` box: JPEGs at a reduced DCT scale, PNGs shrunk row by row,
/// GIFs at full size, HEIF/AVIF by `heifdec` (already upright: the `bool`);
/// with the lease covering the decode and what follows (scaling, turning,
/// encoding).
fn decode_still<'a>(
    orig: &Original,
    edge: u32,
    allow: Allowance<'a>,
) -> Result<(Raster, Lease<'a>, bool), ThumbError> {
    if orig.container == Some(Container::IsoBmff) {
        match heif::read(&mut orig.file()) {
            Ok(h) => {
                return heifdec::decode(orig, &h, edge, allow).map(|(r, l)| (r, l, true));
            }
            Err(HeifError::NotHeif) => {}
            Err(e) => return Err(orig.failed(e)),
        }
    }
    decode_plain(orig, edge, allow).map(|(r, l)| (r, l, false))
}

fn decode_plain<'a>(
    orig: &Original,
    edge: u32,
    allow: Allowance<'a>,
) -> Result<(Raster, Lease<'a>), ThumbError> {
    let format = match orig.container {
        Some(Container::Jpeg) => {
            if let Some(decoded) = jpegscale::decode(orig, edge, allow)? {
                return Ok(decoded);
            }
            // CMYK or 12-bit JPEGs: rare enough for the general decoder.
            image::ImageFormat::Jpeg
        }
        Some(Container::Png) => return pngstream::decode(orig, edge, allow),
        Some(Container::Gif) => image::ImageFormat::Gif,
        // Every BMP header kind, top-down rows, bit fields, RLE.
        Some(Container::Bmp) => image::ImageFormat::Bmp,
        Some(Container::Tiff) => return decode_tiff(orig, edge, allow),
        // ffmpeg 5.1's `webp_pipe` skips ANIM/ANMF: an animated WebP's
        // first frame, composed on its canvas as a viewer shows it, comes
        // from the `image` crate (image-webp). Stills stay with ffmpeg,
        // which scales them down as it decodes.
        Some(Container::Webp) if is_animated_webp(orig)? => image::ImageFormat::WebP,
        // WebP, HEIF, a video named like a photo…: ffmpeg reads
        // them, with the demuxer for what the bytes are.
        Some(c) if c.demuxer().is_some() => return framegrab::still_frame(orig, edge, allow),
        _ => return Err(orig.failed("not an image format isync reads")),
    };
    let reader = orig.reader(64 * 1024).map_err(|e| orig.failed(e))?;
    decode_image(ImageReader::with_format(reader, format), orig, edge, allow)
}

/// Page 0 of a TIFF: in-process (`tiffdec`); what the tiff crate cannot
/// read (YCbCr or old-style JPEG, CIELab, palettes, 1/2/4-bit grey, LZMA
/// or WebP compression, a damaged file) or panicked on, by libtiff in a
/// child process (`tiffrgba`), which refuses (−10008) what it cannot read
/// either. A render that does not fit the budget is not tried again.
fn decode_tiff<'a>(
    orig: &Original,
    edge: u32,
    allow: Allowance<'a>,
) -> Result<(Raster, Lease<'a>), ThumbError> {
    match tiffdec::decode(orig, edge, allow) {
        Err(ThumbError::Failed(why)) => {
            log::debug!(path:display = orig.label().display(); "{why}; trying tiff2rgba");
            tiffrgba::decode(orig, edge, allow)
        }
        done => done,
    }
}

/// Whether the WebP `orig` is animated: an extended header (`VP8X`) first,
/// with its animation flag set.
fn is_animated_webp(orig: &Original) -> Result<bool, ThumbError> {
    let mut head = [0u8; 21];
    let n = read_at_most(orig.file(), &mut head, 0).map_err(|e| orig.failed(e))?;
    Ok(n == head.len() && &head[12..16] == b"VP8X" && head[20] & 0x02 != 0)
}

/// RGB(A) rows as YCbCr for a 4:2:0 JPEG, each pixel's chroma the mean of
/// its 2x2 block. jpeg-encoder subsamples by taking one pixel of each block
/// (the top-left); on a fine pattern (text, a screenshot's dither, fabric)
/// that pixel's colour then stands for all four and the thumbnail takes a
/// false tint. libjpeg and every camera average, and so do we: as the
/// encoder reads the block's top-left pixel, every pixel of a block gets
/// the block's mean chroma. Luma stays per pixel.
struct AveragedChroma<'a> {
    data: &'a [u8],
    bpp: usize,
    width: u16,
    height: u16,
}

impl jpeg_encoder::ImageBuffer for AveragedChroma<'_> {
    fn get_jpeg_color_type(&self) -> jpeg_encoder::JpegColorType {
        jpeg_encoder::JpegColorType::Ycbcr
    }

    fn width(&self) -> u16 {
        self.width
    }

    fn height(&self) -> u16 {
        self.height
    }

    fn fill_buffers(&self, y: u16, buffers: &mut [Vec<u8>; 4]) {
        let (w, h, bpp) = (usize::from(self.width), usize::from(self.height), self.bpp);
        let row = |y: usize| &self.data[y * w * bpp..(y + 1) * w * bpp];
        let y = usize::from(y);
        let (top, bottom) = (row(y & !1), row((y | 1).min(h - 1)));
        let here = row(y);
        let [luma, cb, cr, _] = buffers;
        luma.reserve(w);
        cb.reserve(w);
        cr.reserve(w);
        // jpeg-encoder's own fixed-point conversion (`rgb_to_ycbcr`), split
        // so that luma is per pixel and chroma per block.
        for (x, p) in here.chunks_exact(bpp).enumerate() {
            let (r, g, b) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
            luma.push(((19595 * r + 38470 * g + 7471 * b + 0x7FFF) >> 16) as u8);
            if x % 2 == 1 {
                continue;
            }
            let x1 = (x + 1).min(w - 1);
            // The block's summed colour; the conversion is linear, so its
            // chroma (rounded once) is the mean of the four pixels'.
            let mut sum = [0i32; 3];
            for r in [top, bottom] {
                for i in [x * bpp, x1 * bpp] {
                    for (c, s) in sum.iter_mut().enumerate() {
                        *s += i32::from(r[i + c]);
                    }
                }
            }
            let [r, g, b] = sum;
            let u = ((-11059 * r - 21709 * g + 32768 * b + (512 << 16) + 0x1_FFFF) >> 18) as u8;
            let v = ((32768 * r - 27439 * g - 5329 * b + (512 << 16) + 0x1_FFFF) >> 18) as u8;
            let n = if x1 > x { 2 } else { 1 };
            for _ in 0..n {
                cb.push(u);
                cr.push(v);
            }
        }
    }
}

/// Encodes as PNG when any pixel is not fully opaque, else as a baseline
/// 4:2:0 JPEG. jpeg-encoder (SIMD on x86, plain Rust elsewhere) takes 4 ms
/// for 800x600 where the `image` crate's encoder takes 12–20 ms.
pub(crate) fn encode(src: Raster) -> Result<Thumb, String> {
    use image::ImageEncoder;
    let transparent = src.alpha && src.data.chunks_exact(4).any(|p| p[3] != u8::MAX);
    let mut bytes = Vec::new();
    if transparent {
        image::codecs::png::PngEncoder::new(&mut bytes)
            .write_image(
                &src.data,
                src.width,
                src.height,
                image::ExtendedColorType::Rgba8,
            )
            .map_err(|e| e.to_string())?;
        return Ok(Thumb {
            bytes,
            content_type: CONTENT_TYPE_PNG,
        });
    }
    let (w, h) = (
        u16::try_from(src.width).map_err(|e| e.to_string())?,
        u16::try_from(src.height).map_err(|e| e.to_string())?,
    );
    let mut encoder = jpeg_encoder::Encoder::new(&mut bytes, THUMB_JPEG_QUALITY);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    encoder
        .encode_image(AveragedChroma {
            data: &src.data,
            // Alpha, all opaque here, is dropped.
            bpp: if src.alpha { 4 } else { 3 },
            width: w,
            height: h,
        })
        .map_err(|e| e.to_string())?;
    Ok(Thumb {
        bytes,
        content_type: CONTENT_TYPE_JPEG,
    })
}

#[cfg(test)]
mod tests {
    use super::super::raster::fit_size;
    use super::super::testkit::*;
    use super::*;

    /// Issue #15: jpeg-encoder's 4:2:0 takes each 2x2 block's top-left
    /// chroma, so a 1-pixel dither of blue and yellow (grey from any
    /// distance) came out blue, off by ~100 levels. Averaged chroma keeps
    /// every 8x8 area's mean colour within a few levels, like libjpeg; an
    /// odd width and height and an RGBA raster too. Fails on point sampling.
    #[test]
    fn chroma_is_averaged_not_point_sampled() {
        for (w, h, alpha) in [(64u32, 48u32, false), (63, 47, false), (64, 48, true)] {
            let bpp = if alpha { 4 } else { 3 };
            let mut data = Vec::new();
            for y in 0..h {
                for x in 0..w {
                    let px: [u8; 3] = if (x + y) % 2 == 0 {
                        [0, 0, 255]
                    } else {
                        [255, 255, 0]
                    };
                    data.extend_from_slice(&px);
                    if alpha {
                        data.push(255);
                    }
                }
            }
            let src = data.clone();
            let thumb = encode(Raster {
                width: w,
                height: h,
                alpha,
                data,
            })
            .unwrap();
            assert_eq!(thumb.content_type, CONTENT_TYPE_JPEG);
            let img = decode(&thumb.bytes);
            assert_eq!(img.dimensions(), (w, h));
            let mut worst = 0i32;
            for by in 0..h / 8 {
                for bx in 0..w / 8 {
                    let (mut want, mut got) = ([0i32; 3], [0i32; 3]);
                    for y in by * 8..by * 8 + 8 {
                        for x in bx * 8..bx * 8 + 8 {
                            let i = ((y * w + x) as usize) * bpp;
                            let p = img.get_pixel(x, y).0;
                            for c in 0..3 {
                                want[c] += i32::from(src[i + c]);
                                got[c] += i32::from(p[c]);
                            }
                        }
                    }
                    for c in 0..3 {
                        worst = worst.max((want[c] - got[c]).abs() / 64);
                    }
                }
            }
            assert!(
                worst <= 12,
                "{w}x{h} alpha {alpha}: an 8x8 mean off by {worst}"
            );
        }
    }

    #[test]
    fn all_eight_orientations_come_out_upright() {
        let dir = tempfile::tempdir().unwrap();
        let upright = quadrants(96, 48);
        for o in 1..=8 {
            let stored = stored_for(&upright, o);
            let path = dir.path().join(format!("o{o}.png"));
            stored.save(&path).unwrap();
            let thumb = render(&path, FileType::Image, Some(o), ThumbLevel::Screen).unwrap();
            assert_eq!(thumb.content_type, CONTENT_TYPE_JPEG);
            let img = decode(&thumb.bytes);
            assert_eq!(img.dimensions(), (96, 48), "orientation {o}: display size");
            assert_upright(&img, &format!("orientation {o}"));
        }
    }

    #[test]
    fn orientations_through_the_scaled_jpeg_decoder() {
        let dir = tempfile::tempdir().unwrap();
        let upright = quadrants(1600, 800);
        for o in 1..=8 {
            let stored = stored_for(&upright, o);
            let path = write(dir.path(), &format!("o{o}.jpg"), &jpeg_bytes(&stored, 90));
            for level in [ThumbLevel::Small, ThumbLevel::Screen] {
                let thumb = render(&path, FileType::Image, Some(o), level).unwrap();
                let img = decode(&thumb.bytes);
                let edge = level.max_edge_px();
                assert_eq!(img.dimensions(), (edge, edge / 2), "orientation {o}");
                assert_upright(&img, &format!("jpeg orientation {o} level {level:?}"));
            }
        }
    }

    #[test]
    fn render_both_gives_both_levels_from_one_decode() {
        let dir = tempfile::tempdir().unwrap();
        let upright = quadrants(1600, 800);
        for o in [1, 6] {
            let stored = stored_for(&upright, o);
            let path = write(dir.path(), &format!("o{o}.jpg"), &jpeg_bytes(&stored, 90));
            let [small, screen] = render_both(&path, FileType::Image, Some(o));
            let (small, screen) = (
                decode(&small.unwrap().bytes),
                decode(&screen.unwrap().bytes),
            );
            assert_eq!(small.dimensions(), (160, 80), "orientation {o}");
            assert_eq!(screen.dimensions(), (800, 400), "orientation {o}");
            assert_upright(&small, &format!("level 0, orientation {o}"));
            assert_upright(&screen, &format!("level 1, orientation {o}"));
        }
        // A usable EXIF thumbnail still makes level 0 (red here, the photo blue).
        let main = jpeg_bytes(&solid(2000, 1500, BLUE), 90);
        let thumb = jpeg_bytes(&solid(160, 120, RED), 85);
        let path = write(
            dir.path(),
            "exif.jpg",
            &with_exif(&main, None, Some(&thumb)),
        );
        let [small, screen] = render_both(&path, FileType::Image, None);
        assert!(near(&decode(&small.unwrap().bytes), 80, 60, RED, 30));
        assert!(near(&decode(&screen.unwrap().bytes), 400, 300, BLUE, 30));
        // Failures reach both levels.
        let gone = dir.path().join("gone.jpg");
        let [a, b] = render_both(&gone, FileType::Image, None);
        assert!(matches!(a, Err(ThumbError::SourceMissing(_))), "{a:?}");
        assert!(matches!(b, Err(ThumbError::SourceMissing(_))), "{b:?}");
        let bad = write(dir.path(), "bad.jpg", b"\xFF\xD8\xFF\xE0 junk");
        let [a, b] = render_both(&bad, FileType::Image, None);
        assert!(matches!(a, Err(ThumbError::Failed(_))) && matches!(b, Err(ThumbError::Failed(_))));
        let [a, _] = render_both(&bad, FileType::Audio, None);
        assert!(matches!(a, Err(ThumbError::Unsupported)));
    }

    #[test]
    fn render_both_takes_one_video_frame_for_both_levels() {
        if !have_ffmpeg() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.mp4");
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=25:duration=2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            path.to_str().unwrap(),
        ]);
        let [small, screen] = render_both(&path, FileType::Video, None);
        let (small, screen) = (
            decode(&small.unwrap().bytes),
            decode(&screen.unwrap().bytes),
        );
        assert_eq!(screen.dimensions(), (800, 450));
        assert_eq!(small.dimensions(), (160, 90));
    }

    #[test]
    fn absent_or_bogus_orientation_means_upright() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.png");
        quadrants(64, 32).save(&path).unwrap();
        for o in [None, Some(0), Some(9), Some(-3)] {
            let img = decode(
                &render(&path, FileType::Image, o, ThumbLevel::Small)
                    .unwrap()
                    .bytes,
            );
            assert_upright(&img, &format!("{o:?}"));
        }
    }

    #[test]
    fn fits_the_box_keeping_aspect_and_never_enlarges() {
        assert_eq!(fit_size(4000, 3000, 160), (160, 120));
        assert_eq!(fit_size(3000, 4000, 800), (600, 800));
        assert_eq!(fit_size(1000, 333, 160), (160, 53));
        assert_eq!(fit_size(100_000, 10, 160), (160, 1));
        assert_eq!(fit_size(120, 90, 160), (120, 90));
        assert_eq!(fit_size(800, 800, 800), (800, 800));

        let dir = tempfile::tempdir().unwrap();
        let small = write(
            dir.path(),
            "small.jpg",
            &jpeg_bytes(&solid(100, 50, RED), 90),
        );
        for level in [ThumbLevel::Small, ThumbLevel::Screen] {
            let img = decode(&render(&small, FileType::Image, None, level).unwrap().bytes);
            assert_eq!(img.dimensions(), (100, 50), "never enlarged");
        }
        let tall = write(
            dir.path(),
            "tall.jpg",
            &jpeg_bytes(&solid(900, 3000, BLUE), 85),
        );
        let img = decode(
            &render(&tall, FileType::Image, None, ThumbLevel::Screen)
                .unwrap()
                .bytes,
        );
        assert_eq!(img.dimensions(), (240, 800));
        let img = decode(
            &render(&tall, FileType::Image, None, ThumbLevel::Small)
                .unwrap()
                .bytes,
        );
        assert_eq!(
            img.dimensions(),
            (48, 160),
            "level 0 is exactly 160 on the long side"
        );
    }

    #[test]
    fn output_is_baseline_jpeg() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "a.jpg", &jpeg_bytes(&quadrants(1200, 900), 90));
        let bytes = render(&path, FileType::Image, None, ThumbLevel::Screen)
            .unwrap()
            .bytes;
        let head = super::jpegscale::read_head(&mut bytes.as_slice()).unwrap();
        assert!(head.huffman_dct && !head.progressive);
        assert_eq!((head.width, head.height), (800, 600));
    }

    #[test]
    fn gif_gives_its_first_frame() {
        use image::{Delay, Frame, RgbaImage};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("anim.gif");
        {
            let file = std::fs::File::create(&path).unwrap();
            let mut enc = image::codecs::gif::GifEncoder::new(file);
            for c in [RED, GREEN, BLUE] {
                let px = RgbaImage::from_pixel(300, 200, image::Rgba([c[0], c[1], c[2], 255]));
                enc.encode_frame(Frame::from_parts(
                    px,
                    0,
                    0,
                    Delay::from_numer_denom_ms(100, 1),
                ))
                .unwrap();
            }
        }
        let thumb = render(&path, FileType::Gif, None, ThumbLevel::Small).unwrap();
        assert_eq!(
            thumb.content_type, CONTENT_TYPE_JPEG,
            "an opaque GIF becomes a JPEG"
        );
        let img = decode(&thumb.bytes);
        assert_eq!(img.dimensions(), (160, 107));
        assert!(
            near(&img, 80, 50, RED, 40),
            "first frame, got {:?}",
            img.get_pixel(80, 50)
        );
    }

    /// The browser view: full size when the budget holds it; the largest
    /// size that fits when not (a smaller budget, the same 3000x2000
    /// TIFF), aspect kept; refused (−10008's error) when not even the
    /// decode fits. Nothing stays reserved.
    #[test]
    fn the_browser_view_is_full_size_or_the_largest_the_budget_holds() {
        use super::super::budget::{Budget, Class};
        const MIB: u64 = 1 << 20;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scan.tif");
        image::RgbImage::from_fn(3000, 2000, |x, y| {
            image::Rgb([(x / 12) as u8, (y / 8) as u8, 90])
        })
        .save(&path)
        .unwrap();
        let orig = Original::open_path(&path).unwrap();
        let view = |mib: u64| {
            let budget = Budget::new(mib * MIB);
            let allow = Allowance::new(&budget, Class::Request(ThumbLevel::View));
            let got = render_view(&orig, FileType::Image, None, allow);
            assert_eq!(budget.used(), 0);
            got.map(|t| {
                let img = decode(&t.bytes);
                (img.width(), img.height())
            })
        };
        assert_eq!(view(160).unwrap(), (3000, 2000), "the default budget");
        let (w, h) = view(100).unwrap();
        assert!((800..3000).contains(&w), "reduced to {w}x{h}");
        assert!((w * 2 / 3).abs_diff(h) <= 1, "aspect kept: {w}x{h}");
        let err = view(40).unwrap_err();
        assert!(matches!(err, ThumbError::TooLarge(_)), "{err}");
        assert!(matches!(
            render_view(&orig, FileType::Video, None, Allowance::standalone()),
            Err(ThumbError::Unsupported)
        ));
    }

    #[test]
    fn transparency_gives_png_and_opaque_alpha_gives_jpeg() {
        let dir = tempfile::tempdir().unwrap();
        let see_through = image::RgbaImage::from_fn(400, 200, |x, _| {
            image::Rgba([200, 10, 10, if x < 200 { 255 } else { 0 }])
        });
        let path = dir.path().join("alpha.png");
        see_through.save(&path).unwrap();
        let thumb = render(&path, FileType::Image, Some(3), ThumbLevel::Small).unwrap();
        assert_eq!(thumb.content_type, CONTENT_TYPE_PNG);
        assert!(thumb.bytes.starts_with(b"\x89PNG"));
        let img = decode(&thumb.bytes);
        assert_eq!(img.dimensions(), (160, 80));
        // Rotated 180°: the transparent half is now on the left.
        assert_eq!(img.get_pixel(10, 40).0[3], 0);
        assert_eq!(img.get_pixel(150, 40).0, [200, 10, 10, 255]);

        let opaque = image::RgbaImage::from_pixel(50, 50, image::Rgba([1, 2, 3, 255]));
        let path = dir.path().join("opaque.png");
        opaque.save(&path).unwrap();
        let thumb = render(&path, FileType::Image, None, ThumbLevel::Small).unwrap();
        assert_eq!(
            thumb.content_type, CONTENT_TYPE_JPEG,
            "alpha channel present but unused"
        );
    }

    #[test]
    fn corrupt_or_absurd_files_fail_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let good = jpeg_bytes(&quadrants(1000, 700), 90);
        let mut garbage = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
        garbage.extend((0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            ("soi-only.jpg", vec![0xFF, 0xD8, 0xFF], true),
            ("garbage.jpg", garbage, true),
            (
                "header-only.jpg",
                good[..good.len().min(400)].to_vec(),
                true,
            ),
            // Truncated scan data: decoders may pad with grey; either way no panic.
            ("truncated.jpg", good[..good.len() / 2].to_vec(), false),
            ("empty.png", Vec::new(), true),
            ("junk.png", b"\x89PNG\r\n\x1a\n not really".to_vec(), true),
        ];
        for (name, bytes, must_fail) in cases {
            let path = write(dir.path(), name, &bytes);
            for level in [ThumbLevel::Small, ThumbLevel::Screen] {
                let got = render(&path, FileType::Image, None, level);
                if must_fail {
                    assert!(matches!(got, Err(ThumbError::Failed(_))), "{name}: {got:?}");
                }
            }
        }
        // A frame header claiming 65535x65535 (4.3 GP) is refused before decoding.
        let mut huge = good.clone();
        let sof = huge.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        huge[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        let path = write(dir.path(), "huge.jpg", &huge);
        let err = render(&path, FileType::Image, None, ThumbLevel::Screen).unwrap_err();
        assert!(err.to_string().contains("65535x65535"), "{err}");
    }

    #[test]
    fn wrong_kind_and_missing_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "a.jpg", &jpeg_bytes(&solid(10, 10, RED), 90));
        for kind in [FileType::Audio, FileType::Other] {
            assert!(matches!(
                render(&path, kind, None, ThumbLevel::Small),
                Err(ThumbError::Unsupported)
            ));
        }
        let gone = dir.path().join("gone.jpg");
        assert!(matches!(
            render(&gone, FileType::Image, None, ThumbLevel::Small),
            Err(ThumbError::SourceMissing(p)) if p == gone
        ));
        assert!(matches!(
            render(&gone, FileType::Video, None, ThumbLevel::Small),
            Err(ThumbError::SourceMissing(_))
        ));
    }

    #[test]
    fn formats_image_cannot_read_go_through_ffmpeg() {
        if !have_ffmpeg() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("q.png");
        quadrants(640, 320).save(&png).unwrap();
        let bmp = dir.path().join("q.webp");
        let (src, out) = (png.to_str().unwrap(), bmp.to_str().unwrap());
        ffmpeg(&["-i", src, "-c:v", "libwebp", "-lossless", "1", out]);
        let img = decode(
            &render(&bmp, FileType::Image, Some(6), ThumbLevel::Small)
                .unwrap()
                .bytes,
        );
        assert_eq!(img.dimensions(), (80, 160), "rotated by its orientation");
        let thumb = render(&bmp, FileType::Image, None, ThumbLevel::Small).unwrap();
        assert_upright(&decode(&thumb.bytes), "webp via ffmpeg");
    }
}
