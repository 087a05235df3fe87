//! Fixtures shared by the thumbnail tests of `media` (test builds only).
//! May import: `process` (where ffmpeg is), `exifwrite` (the EXIF builder).

use std::path::{Path, PathBuf};
use std::process::Command;

use image::{imageops, Rgb, RgbImage};

#[path = "../../tests/it/common/fixtures.rs"]
mod fixtures;

/// Whether ffmpeg is here; under `CI=true` its absence fails the test.
pub fn have_ffmpeg() -> bool {
    let ok = Command::new(super::process::ffmpeg_path())
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "ffmpeg is required under CI (apt-get install ffmpeg)"
        );
        eprintln!("skipping: ffmpeg not installed");
    }
    ok
}

/// Runs ffmpeg with `args`, panicking with its stderr on failure.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new(super::process::ffmpeg_path())
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn solid(w: u32, h: u32, c: [u8; 3]) -> RgbImage {
    RgbImage::from_pixel(w, h, Rgb(c))
}

pub const RED: [u8; 3] = [230, 20, 20];
pub const GREEN: [u8; 3] = [20, 200, 20];
pub const BLUE: [u8; 3] = [20, 20, 230];
pub const YELLOW: [u8; 3] = [230, 230, 20];

/// An upright picture with one colour per quadrant: red top-left, green
/// top-right, blue bottom-left, yellow bottom-right.
pub fn quadrants(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb(match (x < w / 2, y < h / 2) {
            (true, true) => RED,
            (false, true) => GREEN,
            (true, false) => BLUE,
            (false, false) => YELLOW,
        })
    })
}

pub fn jpeg_bytes(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(img)
        .expect("encode jpeg");
    out
}

pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write fixture");
    path
}

/// `jpeg` with an APP1 Exif segment (orientation, IFD1 thumbnail) where
/// cameras put it: the one EXIF builder (the demo library uses it too), shared with the
/// integration tests and benches.
pub fn with_exif(jpeg: &[u8], orientation: Option<u16>, thumb: Option<&[u8]>) -> Vec<u8> {
    fixtures::with_app1(jpeg, &super::exifwrite::exif_app1_with(orientation, thumb))
}

pub use fixtures::{apple_maker_note, iphone_exif_tiff, with_mpf_preview};

/// Decodes a rendered thumbnail.
pub fn decode(bytes: &[u8]) -> image::RgbaImage {
    image::load_from_memory(bytes)
        .expect("decode thumbnail")
        .into_rgba8()
}

/// Whether pixel `(x, y)` of `img` is within `tol` of `c` per channel.
pub fn near(img: &image::RgbaImage, x: u32, y: u32, c: [u8; 3], tol: u8) -> bool {
    let p = img.get_pixel(x, y).0;
    (0..3).all(|i| p[i].abs_diff(c[i]) <= tol)
}

/// The stored pixels whose display (per §2.4 orientation `o`) is `upright`,
/// built from the spec's definitions, independently of `orient`.
pub fn stored_for(upright: &image::RgbImage, o: i64) -> image::RgbImage {
    match o {
        1 => upright.clone(),
        2 => imageops::flip_horizontal(upright),
        3 => imageops::rotate180(upright),
        4 => imageops::flip_vertical(upright),
        // Transpose and transverse are their own inverses.
        5 => imageops::flip_horizontal(&imageops::rotate90(upright)),
        6 => imageops::rotate270(upright), // shown rotated 90° clockwise
        7 => imageops::flip_horizontal(&imageops::rotate270(upright)),
        8 => imageops::rotate90(upright), // shown rotated 90° counter-clockwise
        _ => unreachable!(),
    }
}

/// Asserts the four quadrant colours sit where an upright picture has them.
pub fn assert_upright(img: &image::RgbaImage, what: &str) {
    let (w, h) = img.dimensions();
    let (l, r, t, b) = (w / 8, w - 1 - w / 8, h / 8, h - 1 - h / 8);
    for (x, y, c, name) in [
        (l, t, RED, "red top-left"),
        (r, t, GREEN, "green top-right"),
        (l, b, BLUE, "blue bottom-left"),
        (r, b, YELLOW, "yellow bottom-right"),
    ] {
        assert!(
            near(img, x, y, c, 40),
            "{what}: expected {name}, got {:?} at ({x},{y}) of {w}x{h}",
            img.get_pixel(x, y)
        );
    }
}
