//! Thumbnail frames from ffmpeg: a representative, upright, scaled frame of
//! a video as one MJPEG image (display-shaped for anamorphic video,
//! tone-mapped to SDR for HDR video), and still formats the `image` crate
//! doesn't read (WebP, HEIF…) as PNG.
//!
//! ffmpeg reads the original the server opened (its standard input), with
//! the demuxer our own sniffing chose (`container.rs`) and the `file`
//! protocol alone: it never guesses a format and never opens another file.

use std::ffi::OsString;
use std::process::Command;
use std::time::Instant;

use super::budget::Allowance;
use super::container::Container;
use super::mp4::{self, Colour};
use super::original::Original;
use super::process::{ffmpeg_path, input_args, run_on_file, FFMPEG_TIMEOUT};
use super::raster::{decode_image, Raster, ThumbError};

/// Where we look for a video frame, in seconds: about 1 s in (spec §10; the
/// first keyframe from there, 1–2 s in for phone videos), then further along
/// when that frame is black (fade-ins, lens caps).
const VIDEO_SEEKS_S: [f64; 3] = [1.0, 4.0, 12.0];
/// Mean luma (0–255) under which a frame counts as black.
const BLACK_MEAN_LUMA: u32 = 24;
/// MJPEG quantiser (2 best … 31 worst); 3 is close to JPEG quality 85.
const MJPEG_QSCALE: &str = "3";

/// A representative frame of the video `orig`, turned upright from its
/// display matrix (ffmpeg autorotates), scaled to fit `edge`: baseline JPEG.
pub(crate) fn video_frame(orig: &Original, edge: u32) -> Result<Vec<u8>, ThumbError> {
    if !orig.container.is_some_and(|c| c.is_video_container()) {
        return Err(orig.failed("not a video container isync reads"));
    }
    let tone_map = hdr_tone_map(orig);
    let look = Look {
        edge,
        tone_map: tone_map.as_deref(),
    };
    // One budget for all attempts, so a slow file can't cost 4 timeouts.
    let deadline = Instant::now() + FFMPEG_TIMEOUT;
    let mut darkest_fallback: Option<(u32, Vec<u8>)> = None;
    for seek in VIDEO_SEEKS_S {
        let mut jpeg = grab(orig, Some(seek), look, Output::Keyframe, deadline)?;
        if jpeg.is_empty() {
            // No keyframe from here on (one keyframe for the whole video, as
            // some encoders and screen recorders write) or past the end:
            // decode every frame up to this point.
            jpeg = grab(orig, Some(seek), look, Output::Frame, deadline)?;
        }
        if jpeg.is_empty() {
            break; // the video ends before this point
        }
        let luma = mean_luma(&jpeg).unwrap_or(u32::MAX);
        if luma >= BLACK_MEAN_LUMA {
            return Ok(jpeg);
        }
        log::debug!(path:display = orig.label().display(), seek, luma; "black video frame, looking further");
        if darkest_fallback.as_ref().is_none_or(|(l, _)| luma > *l) {
            darkest_fallback = Some((luma, jpeg));
        }
    }
    if let Some((_, jpeg)) = darkest_fallback {
        return Ok(jpeg); // dark all along: the brightest we saw
    }
    // Shorter than the first seek point: the first frame (spec §10).
    let jpeg = grab(orig, None, look, Output::Keyframe, deadline)?;
    if jpeg.is_empty() {
        return Err(orig.failed("ffmpeg found no video frame"));
    }
    Ok(jpeg)
}

/// The first frame of a still image ffmpeg can read, scaled to fit `edge`,
/// with its alpha channel. Orientation is the caller's business. ffmpeg's
/// own memory is capped (`process::CHILD_MAX_DATA_BYTES`); ours, the PNG
/// it returns, is at most `edge`² pixels and is reserved by `decode_image`.
pub(crate) fn still_frame<'a>(
    orig: &Original,
    edge: u32,
    allow: Allowance<'a>,
) -> Result<(Raster, super::budget::Lease<'a>), ThumbError> {
    let look = Look {
        edge,
        tone_map: None,
    };
    let png = grab(
        orig,
        None,
        look,
        Output::Png,
        Instant::now() + FFMPEG_TIMEOUT,
    )?;
    if png.is_empty() {
        return Err(orig.failed("ffmpeg could not read this image"));
    }
    let reader =
        image::ImageReader::with_format(std::io::Cursor::new(png), image::ImageFormat::Png);
    decode_image(reader, orig, edge, allow)
}

/// How a frame is shaped on its way out.
#[derive(Clone, Copy)]
struct Look<'a> {
    /// The box the frame is fitted into, in pixels.
    edge: u32,
    /// Filters turning an HDR frame into SDR (BT.709), for HDR video.
    tone_map: Option<&'a str>,
}

/// The filter chain tone-mapping `orig`'s frames to SDR BT.709, when its
/// header says it is HDR (PQ or HLG transfer). Read from the ISO-BMFF
/// `colr` box: iPhones, Android phones and ffmpeg write it; other
/// containers are taken as SDR. Blocking (reads the header).
fn hdr_tone_map(orig: &Original) -> Option<String> {
    if orig.container != Some(Container::IsoBmff) {
        return None;
    }
    let colour = match mp4::read_info(orig.file()) {
        Ok(info) => info.video?.colour?,
        Err(e) => {
            log::debug!(path:display = orig.label().display(), error:% = e; "no mp4 header for colour");
            return None;
        }
    };
    tone_map_filters(&colour)
}

/// zscale (libzimg) filters for an HDR `colour`: to linear light (100 nits
/// as 1.0), to BT.709 primaries, Hable's curve for the highlights, back to
/// BT.709 gamma. The input's code points are named rather than taken from
/// the frame, which the scaler before may not carry. The result is coded
/// as a JPEG decoder reads it (JFIF: BT.601 matrix, full range): left as
/// BT.709 YUV, every decoder would shift its hues (red 12 levels low on
/// the test's fixture).
fn tone_map_filters(colour: &Colour) -> Option<String> {
    let transfer = match colour.hdr_transfer()? {
        Colour::TRANSFER_PQ => "smpte2084",
        _ => "arib-std-b67",
    };
    let primaries = if colour.primaries == Colour::PRIMARIES_BT2020 {
        "bt2020"
    } else {
        "709"
    };
    // Matrix 9 is BT.2020 non-constant luminance; 10 (constant) is rare.
    let matrix = if colour.matrix == 9 {
        "bt2020nc"
    } else {
        "709"
    };
    Some(format!(
        "zscale=tin={transfer}:pin={primaries}:min={matrix}:rin=tv:t=linear:npl=100,\
         format=gbrpf32le,zscale=p=709,tonemap=hable:desat=0,\
         zscale=t=709:m=470bg:r=full,format=yuvj420p"
    ))
}

#[derive(Clone, Copy, PartialEq)]
enum Output {
    /// A video's first keyframe at or after the seek point, as JPEG.
    Keyframe,
    /// A video's frame at the seek point, as JPEG.
    Frame,
    /// A still image's first frame, as PNG with alpha.
    Png,
}

/// Runs ffmpeg once. Empty output means "no frame there" (e.g. a seek past
/// the end), which ffmpeg does not treat as an error.
fn grab(
    orig: &Original,
    seek_s: Option<f64>,
    look: Look<'_>,
    out: Output,
    deadline: Instant,
) -> Result<Vec<u8>, ThumbError> {
    let Some(container) = orig.container.filter(|c| c.demuxer().is_some()) else {
        return Err(orig.failed("not a format isync gives to ffmpeg"));
    };
    let demuxer = container.demuxer().expect("filtered above");
    let timeout = deadline.saturating_duration_since(Instant::now());
    if timeout.is_zero() {
        return Err(orig.failed("ffmpeg took too long"));
    }
    let mut args: Vec<OsString> = ["-hide_banner", "-nostdin", "-loglevel", "error"]
        .map(OsString::from)
        .into();
    if out == Output::Keyframe {
        // Decode keyframes only. With the input seek below this gives the
        // first keyframe at or after the seek point from one decoded frame,
        // where decoding every frame from the keyframe before took ~30
        // frames for 1 s of 1080p (499 → 151 ms wall on the loaded 2-core
        // dev machine, ~100 ms of it ffmpeg's start-up). One decoder thread:
        // frame threads only add start-up for a single frame.
        args.extend(["-skip_frame", "nokey", "-threads", "1"].map(OsString::from));
    }
    if let Some(s) = seek_s {
        // Input seeking: jumps to the keyframe before, then decodes up to it.
        args.extend(["-ss".into(), format!("{s:.3}").into()]);
    }
    args.extend(input_args(demuxer, container.demuxer_options()));
    // Fit the box without enlarging; min() keeps small videos at their size.
    // Autorotation has already inserted its transpose (which turns the
    // sample aspect ratio too), so iw/ih/sar are upright.
    let edge = look.edge;
    let mut filters = if out == Output::Png {
        // Stills keep their pixels: a TIFF's unequal dpi is no display shape.
        format!("scale='min({edge},iw)':'min({edge},ih)':force_original_aspect_ratio=decrease")
    } else {
        // Video is fitted by its display shape: anamorphic video (pixel
        // aspect ratio ≠ 1, as DV/HDV cameras write) is shown widened by
        // its sar (or heightened, for tall pixels, so a turned anamorphic
        // video comes out at its listed size too). One scale, straight to
        // the thumbnail's size; for square pixels the same as fitting iw×ih.
        let (dw, dh) = ("iw*max(1,sar)", "ih/min(1,sar)");
        let fit = format!("min(1,min({edge}/({dw}),{edge}/({dh})))");
        format!("scale='max(1,round({dw}*{fit}))':'max(1,round({dh}*{fit}))',setsar=1")
    };
    // Tone mapping after the fit: its float stages then work on a
    // thumbnail's pixels, not a 4K frame's.
    if let Some(tone_map) = look.tone_map {
        filters.push(',');
        filters.push_str(tone_map);
    }
    // No `thumbnail` filter: comparing 6 full-HD frames cost +40% CPU
    // (120 ms here); the blackness check above catches the frames that
    // matter (fade-ins, lens caps) for less.
    let codec = match out {
        Output::Keyframe | Output::Frame => [
            "-c:v",
            "mjpeg",
            "-pix_fmt",
            "yuvj420p",
            "-q:v",
            MJPEG_QSCALE,
        ]
        .as_slice(),
        Output::Png => ["-c:v", "png", "-pix_fmt", "rgba"].as_slice(),
    };
    args.extend([
        "-map".into(),
        // Capital V: real video, never an attached cover picture.
        "0:V:0".into(),
        "-an".into(),
        "-sn".into(),
        "-dn".into(),
    ]);
    args.extend(["-vf".into(), filters.into()]);
    args.extend([
        "-frames:v".into(),
        "1".into(),
        "-f".into(),
        "image2pipe".into(),
    ]);
    args.extend(codec.iter().map(OsString::from));
    args.push("pipe:1".into());
    let mut cmd = Command::new(ffmpeg_path());
    cmd.args(args);
    let input = orig.stdin().map_err(|e| orig.failed(e))?;
    run_on_file(cmd, input, timeout).map_err(|e| orig.failed(e))
}

/// Average luma of a small JPEG, decoded at 1/8 scale (a few hundred pixels).
fn mean_luma(jpeg: &[u8]) -> Option<u32> {
    let mut dec = jpeg_decoder::Decoder::new(jpeg);
    dec.read_info().ok()?;
    dec.scale(1, 1).ok()?;
    let px = dec.decode().ok()?;
    let channels = match dec.info()?.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => 3,
        jpeg_decoder::PixelFormat::L8 => 1,
        _ => return None,
    };
    let n = px.len() / channels;
    if n == 0 {
        return None;
    }
    let sum: u64 = px
        .chunks_exact(channels)
        .map(|p| match p {
            [r, g, b] => (u64::from(*r) * 299 + u64::from(*g) * 587 + u64::from(*b) * 114) / 1000,
            [l] => u64::from(*l),
            _ => 0,
        })
        .sum();
    Some((sum / n as u64) as u32)
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::thumbs::{render, CONTENT_TYPE_JPEG};
    use crate::model::{FileType, ThumbLevel};

    fn video(dir: &std::path::Path, name: &str, lavfi: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            lavfi,
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            path.to_str().unwrap(),
        ]);
        path
    }

    fn frame(path: &std::path::Path, level: ThumbLevel) -> image::RgbaImage {
        // The orientation argument is ignored for videos: ffmpeg autorotates.
        let thumb = render(path, FileType::Video, Some(6), level).unwrap();
        assert_eq!(thumb.content_type, CONTENT_TYPE_JPEG);
        assert!(thumb.bytes.starts_with(&[0xFF, 0xD8]));
        decode(&thumb.bytes)
    }

    #[test]
    fn video_frame_fits_the_box_without_enlarging() {
        if !have_ffmpeg() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = video(
            dir.path(),
            "v.mp4",
            "testsrc2=size=320x180:rate=25:duration=2",
        );
        assert_eq!(frame(&path, ThumbLevel::Screen).dimensions(), (320, 180));
        assert_eq!(frame(&path, ThumbLevel::Small).dimensions(), (160, 90));
    }

    #[test]
    fn rotated_video_comes_out_upright() {
        if !have_ffmpeg() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let plain = video(
            dir.path(),
            "plain.mp4",
            "color=c=blue:s=320x180:r=25:d=2,drawbox=x=0:y=0:w=80:h=45:color=red:t=fill",
        );
        let rotated = dir.path().join("rotated.mp4");
        // The legacy tag becomes a display matrix when remuxed.
        ffmpeg(&[
            "-i",
            plain.to_str().unwrap(),
            "-c",
            "copy",
            "-metadata:s:v:0",
            "rotate=90",
            rotated.to_str().unwrap(),
        ]);
        // Which way ffmpeg reads it: the display matrix angle is
        // counter-clockwise, so +90 turns the stored top-left to bottom-left.
        let probe = std::process::Command::new(super::super::process::ffprobe_path())
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream_side_data=rotation",
                "-of",
                "csv=p=0",
            ])
            .arg(&rotated)
            .output()
            .unwrap();
        let rotation: i64 = String::from_utf8_lossy(&probe.stdout)
            .trim()
            .parse()
            .expect("rotation in side data");
        let img = frame(&rotated, ThumbLevel::Screen);
        assert_eq!(img.dimensions(), (180, 320), "portrait after rotation");
        let (x, y) = match rotation.rem_euclid(360) {
            90 => (20, 300),  // counter-clockwise: bottom-left
            270 => (160, 20), // clockwise: top-right
            r => panic!("unexpected rotation {r}"),
        };
        assert!(
            near(&img, x, y, [255, 0, 0], 60),
            "red corner at ({x},{y}), got {:?}",
            img.get_pixel(x, y)
        );
        assert!(near(&img, 90, 160, [0, 0, 255], 60));
    }

    #[test]
    fn black_opening_is_skipped() {
        if !have_ffmpeg() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = video(
            dir.path(),
            "fade.mp4",
            "color=c=black:s=320x240:r=25:d=2[a];color=c=green:s=320x240:r=25:d=4[b];[a][b]concat=n=2:v=1:a=0",
        );
        let img = frame(&path, ThumbLevel::Small);
        assert!(
            near(&img, 80, 60, [0, 128, 0], 50),
            "not black: {:?}",
            img.get_pixel(80, 60)
        );
    }

    #[test]
    fn short_video_gives_its_first_frame() {
        if !have_ffmpeg() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = video(dir.path(), "short.mp4", "color=c=red:s=200x100:r=25:d=0.4");
        let img = frame(&path, ThumbLevel::Screen);
        assert_eq!(img.dimensions(), (200, 100));
        assert!(near(&img, 100, 50, [255, 0, 0], 60));
    }

    /// Mean red, green, blue of an image.
    fn mean_rgb(img: &image::RgbaImage) -> [f64; 3] {
        let n = f64::from(img.width() * img.height());
        let mut sum = [0.0; 3];
        for p in img.pixels() {
            for (s, v) in sum.iter_mut().zip(p.0) {
                *s += f64::from(v);
            }
        }
        sum.map(|s| s / n)
    }

    /// Anamorphic video (4:3 pixels, as HDV and DV cameras record) is shown
    /// 4/3 as wide as stored: the thumbnail has the listed shape, with the
    /// red left half and blue right half still meeting in the middle.
    #[test]
    fn anamorphic_video_thumbnail_is_display_shaped() {
        if !have_ffmpeg() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hdv.mp4");
        let rotated = dir.path().join("hdv-rotated.mp4");
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "color=c=red:s=240x360:r=25:d=2[l];color=c=blue:s=240x360:r=25:d=2[r];[l][r]hstack",
            "-vf",
            "setsar=4/3",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            path.to_str().unwrap(),
        ]);
        let img = frame(&path, ThumbLevel::Screen);
        assert_eq!(img.dimensions(), (640, 360), "480×360 stored, 4:3 pixels");
        for (x, c) in [
            (20, [255, 0, 0]),
            (300, [255, 0, 0]),
            (340, [0, 0, 255]),
            (620, [0, 0, 255]),
        ] {
            assert!(
                near(&img, x, 180, c, 60),
                "x {x}: {:?}",
                img.get_pixel(x, 180)
            );
        }
        let img = frame(&path, ThumbLevel::Small);
        assert_eq!(img.dimensions(), (160, 90));
        // Turned a quarter by its display matrix: the pixels turn too.
        ffmpeg(&[
            "-i",
            path.to_str().unwrap(),
            "-c",
            "copy",
            "-metadata:s:v:0",
            "rotate=90",
            rotated.to_str().unwrap(),
        ]);
        let img = frame(&rotated, ThumbLevel::Screen);
        assert_eq!(img.dimensions(), (360, 640), "portrait, display-shaped");
    }

    /// The tone map the thumbnail is expected to use, written out here
    /// rather than taken from the code under test.
    const REFERENCE_TONE_MAP: &str = "zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,\
        tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv,format=yuv420p";

    /// A frame ffmpeg makes of `path` with `filters` (or none), as RGB.
    fn reference_frame(
        path: &std::path::Path,
        filters: Option<&str>,
        size: &str,
    ) -> image::RgbaImage {
        let out = path.with_extension(format!("{}.png", filters.is_some()));
        let mut args = vec!["-i", path.to_str().unwrap()];
        let chain = format!(
            "scale={size}{}",
            filters.map(|f| format!(",{f}")).unwrap_or_default()
        );
        args.extend(["-vf", &chain, "-frames:v", "1", out.to_str().unwrap()]);
        ffmpeg(&args);
        image::open(&out).unwrap().to_rgba8()
    }

    /// HDR video (10-bit HEVC, BT.2020, PQ or HLG, as iPhones record) gets a
    /// tone-mapped thumbnail: its colour is the tone-mapped reference's,
    /// clearly not the washed-out frame a plain conversion gives.
    #[test]
    fn hdr_video_thumbnail_is_tone_mapped() {
        if !have_ffmpeg() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        for (name, trc) in [("pq.mp4", "smpte2084"), ("hlg.mov", "arib-std-b67")] {
            let path = dir.path().join(name);
            ffmpeg(&[
                "-f",
                "lavfi",
                "-i",
                "color=c=0xA08060:s=320x240:r=25:d=2",
                "-vf",
                "format=yuv420p10le",
                "-c:v",
                "libx265",
                "-preset",
                "ultrafast",
                "-x265-params",
                "log-level=error",
                "-pix_fmt",
                "yuv420p10le",
                "-color_primaries",
                "bt2020",
                "-color_trc",
                trc,
                "-colorspace",
                "bt2020nc",
                path.to_str().unwrap(),
            ]);
            let thumb = mean_rgb(&frame(&path, ThumbLevel::Small));
            let tone_mapped =
                mean_rgb(&reference_frame(&path, Some(REFERENCE_TONE_MAP), "160:120"));
            let naive = mean_rgb(&reference_frame(&path, None, "160:120"));
            let distance = |a: [f64; 3], b: [f64; 3]| {
                a.iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f64::max)
            };
            assert!(
                distance(thumb, tone_mapped) < 6.0,
                "{name}: thumbnail {thumb:?}, tone-mapped reference {tone_mapped:?}"
            );
            assert!(
                distance(naive, tone_mapped) > 15.0,
                "{name}: the fixture does not tell the two apart: naive {naive:?}"
            );
        }
    }

    #[test]
    fn broken_video_fails() {
        if !have_ffmpeg() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "broken.mp4",
            b"\0\0\0\x18ftypmp42 definitely not a movie",
        );
        let err = render(&path, FileType::Video, None, ThumbLevel::Small).unwrap_err();
        assert!(matches!(err, super::ThumbError::Failed(_)), "{err}");
    }
}
