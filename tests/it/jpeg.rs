//! JPEGs that browsers, iOS and libjpeg show although they bend the
//! standard, and `.mpo` files (issue 15): each listed with its size and
//! given thumbnails whose pixels match libjpeg's decode of the same file
//! (libjpeg-turbo through the `mozjpeg` crate), over HTTP.
//! - restart intervals whose RST markers are preceded by stray bytes or
//!   numbered out of sequence (jpeg-decoder: "no marker found where RST1
//!   was expected", "found RST5 where RST2 was expected");
//! - Photoshop-style stray bytes (zeros, garbage, 0xFF fill) between
//!   marker segments, which cost both the size and the thumbnail;
//! - a Multi-Picture `.mpo` (3D cameras): typed a photo, listed with its
//!   first image's size, thumbnails of the first image.

use crate::common;

use common::fixtures::{with_app1, with_mpf_preview};
use common::*;
use image::{imageops, DynamicImage, GenericImageView, RgbImage};
use serde_json::json;

/// A smooth photo-like `w`×`h` picture with a red top-left quarter, as
/// 4:2:0 JPEG with a restart interval of `restart` MCUs (0: none).
fn photo(w: u16, h: u16, restart: u16) -> Vec<u8> {
    let (wu, hu) = (u32::from(w), u32::from(h));
    let img = RgbImage::from_fn(wu, hu, |x, y| {
        if x < wu / 4 && y < hu / 4 {
            image::Rgb([220, 40, 30])
        } else {
            image::Rgb([
                (x * 200 / wu) as u8 + 20,
                (y * 200 / hu) as u8 + 30,
                ((x + y) * 100 / (wu + hu)) as u8 + 90,
            ])
        }
    });
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    if restart > 0 {
        enc.set_restart_interval(restart);
    }
    enc.encode(img.as_raw(), w, h, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

/// Offsets of the RSTn markers in `jpeg`'s entropy-coded data.
fn restart_markers(jpeg: &[u8]) -> Vec<usize> {
    let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    (sos..jpeg.len() - 1)
        .filter(|&i| jpeg[i] == 0xFF && (0xD0..=0xD7).contains(&jpeg[i + 1]))
        .collect()
}

/// `jpeg` with `junk` before every third RST marker (what some encoders
/// leave at the end of an interval: libjpeg skips it with a warning).
fn junk_before_restarts(jpeg: &[u8], junk: &[u8]) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    for &at in restart_markers(jpeg).iter().rev().step_by(3) {
        out.splice(at..at, junk.iter().copied());
    }
    out
}

/// `jpeg` with one RST marker numbered three ahead of its place (libjpeg
/// takes it for the one expected and decodes on).
fn misnumbered_restart(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let at = restart_markers(jpeg)[5] + 1;
    out[at] = 0xD0 + (out[at] - 0xD0 + 3) % 8;
    out
}

/// `jpeg` with `junk` after each marker segment before the scan (the
/// Photoshop files of issue 15 have such bytes after APP segments).
fn junk_between_segments(jpeg: &[u8], junk: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let mut at = 2;
    while jpeg[at + 1] != 0xDA {
        let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        out.extend_from_slice(&jpeg[at..at + 2 + len]);
        out.extend_from_slice(junk);
        at += 2 + len;
    }
    out.extend_from_slice(&jpeg[at..]);
    out
}

/// libjpeg's decode of `jpeg` (warnings are silent, errors panic).
fn libjpeg(jpeg: &[u8]) -> RgbImage {
    let d = mozjpeg::Decompress::new_mem(jpeg).expect("libjpeg reads the header");
    let (w, h) = (d.width() as u32, d.height() as u32);
    let mut rgb = d.rgb().expect("libjpeg decodes");
    let px: Vec<[u8; 3]> = rgb.read_scanlines().expect("libjpeg decodes");
    rgb.finish().ok();
    RgbImage::from_raw(w, h, px.concat()).unwrap()
}

/// Mean and 99th-percentile absolute difference per channel of a
/// thumbnail against libjpeg's decode of `original` scaled to its size.
fn against_libjpeg(thumb: &DynamicImage, original: &[u8]) -> (f64, u8) {
    let (w, h) = thumb.dimensions();
    let want = imageops::resize(&libjpeg(original), w, h, imageops::FilterType::Triangle);
    let mut d: Vec<u8> = thumb
        .to_rgb8()
        .as_raw()
        .iter()
        .zip(want.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .collect();
    let mean = d.iter().map(|&v| f64::from(v)).sum::<f64>() / d.len() as f64;
    d.sort_unstable();
    (mean, d[d.len() * 99 / 100])
}

async fn thumb_ok(api: &Api, id: i64, level: u8) -> DynamicImage {
    let r = api
        .get("/thumbnail.icc", json!({"id": id, "level": level}))
        .await;
    let status = r.status();
    let bytes = r.bytes().await.unwrap();
    assert_eq!(
        status,
        200,
        "thumbnail {id} level {level}: {}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
    );
    image::load_from_memory(&bytes).expect("thumbnail decodes")
}

/// Each file of `files` is listed as a photo of `(w, h)`, and both its
/// thumbnails match libjpeg's decode of `reference` (the file itself, or
/// the first image of an MPO).
async fn check(app: &TestApp, files: &[(&str, &[u8], (u32, u32))]) {
    for &(name, reference, (w, h)) in files {
        let f = app.api.file_named(name).await;
        assert_eq!(f["type"], 1, "{name} typed a photo: {f}");
        assert_eq!(
            (&f["width"], &f["height"]),
            (&json!(w), &json!(h)),
            "{name} listed with its size"
        );
        for level in [0, 1] {
            let img = thumb_ok(&app.api, id(&f), level).await;
            let edge = if level == 0 { 160 } else { 800 };
            assert_eq!(img.width().max(img.height()), edge.min(w.max(h)), "{name}");
            let (mean, p99) = against_libjpeg(&img, reference);
            assert!(
                mean < 2.5 && p99 <= 16,
                "{name} level {level}: mean {mean:.2}, p99 {p99} off libjpeg's pixels"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_intervals_libjpeg_reads_get_thumbnails() {
    // Below 1 MP: jpeg-decoder alone; 2 MP: the range decoder first.
    let small = photo(1000, 750, 4);
    let big = photo(1800, 1200, 6);
    let files = [
        ("junk.jpg", junk_before_restarts(&small, &[0x11; 20])),
        ("zeros.jpg", junk_before_restarts(&small, &[0; 16])),
        ("misnumbered.jpg", misnumbered_restart(&small)),
        ("big_junk.jpg", junk_before_restarts(&big, &[0x5A; 40])),
        ("big_misnumbered.jpg", misnumbered_restart(&big)),
    ];
    let mut b = TestApp::builder().user("alice").library("lib", &["alice"]);
    for (name, bytes) in &files {
        b = b.file(&format!("lib/{name}"), bytes);
    }
    let app = b.spawn().await;
    let expect: Vec<(&str, &[u8], (u32, u32))> = files
        .iter()
        .map(|(n, b)| {
            let size = if n.starts_with("big") {
                (1800, 1200)
            } else {
                (1000, 750)
            };
            (*n, b.as_slice(), size)
        })
        .collect();
    check(&app, &expect).await;
}

/// A restart marker missing altogether: libjpeg greys out an interval,
/// other decoders run on misaligned; no thumbnail is better than a wrong
/// one, and the file is still listed with its size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_restart_marker_is_refused_not_guessed() {
    let small = photo(1000, 750, 4);
    let at = restart_markers(&small)[10];
    let mut missing = small.clone();
    missing.drain(at..at + 2);
    let app = TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .file("lib/missing.jpg", &missing)
        .spawn()
        .await;
    let f = app.api.file_named("missing.jpg").await;
    assert_eq!((&f["width"], &f["height"]), (&json!(1000), &json!(750)));
    let r = app
        .api
        .get("/thumbnail.icc", json!({"id": id(&f), "level": 1}))
        .await;
    assert_ne!(r.status(), 200, "a guessed thumbnail was served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stray_bytes_between_segments_keep_size_orientation_and_thumbnail() {
    let plain = photo(1000, 750, 0);
    let restarts = photo(1800, 1200, 8);
    // Orientation 6 in an Exif segment after the junk: displayed 750×1000.
    let turned = with_app1(
        &plain,
        &isync::media::exifwrite::exif_app1_with(Some(6), None),
    );
    let files = [
        ("zeros.jpg", junk_between_segments(&plain, &[0; 7])),
        (
            "garbage.jpg",
            junk_between_segments(&plain, b"\r\n8BIM junk"),
        ),
        ("fill.jpg", junk_between_segments(&plain, &[0xFF; 5])),
        (
            "ff00.jpg",
            junk_between_segments(&restarts, &[0xFF, 0x00, 1]),
        ),
        ("turned.jpg", junk_between_segments(&turned, &[0; 3])),
    ];
    let mut b = TestApp::builder().user("alice").library("lib", &["alice"]);
    for (name, bytes) in &files {
        b = b.file(&format!("lib/{name}"), bytes);
    }
    let app = b.spawn().await;
    let expect: Vec<(&str, &[u8], (u32, u32))> = files[..4]
        .iter()
        .map(|(n, b)| {
            let size = if *n == "ff00.jpg" {
                (1800, 1200)
            } else {
                (1000, 750)
            };
            (*n, b.as_slice(), size)
        })
        .collect();
    check(&app, &expect).await;
    // The Exif behind stray bytes is read: size as displayed, and the
    // thumbnail turned (its red stored top-left corner at the top right).
    let f = app.api.file_named("turned.jpg").await;
    assert_eq!(f["orientation"], 6, "{f}");
    assert_eq!((&f["width"], &f["height"]), (&json!(750), &json!(1000)));
    let img = thumb_ok(&app.api, id(&f), 1).await.to_rgb8();
    assert_eq!(img.dimensions(), (600, 800));
    let red = |x: u32, y: u32| {
        let p = img.get_pixel(x, y).0;
        p[0] > 170 && p[1] < 90 && p[2] < 90
    };
    assert!(red(540, 60) && !red(60, 60), "turned by its Exif");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mpo_files_are_photos_of_their_first_image() {
    // A left and a right view of different sizes and colours: the size
    // and the pixels tell which one was used.
    let left = photo(1200, 900, 0);
    let right = {
        let img = RgbImage::from_pixel(640, 480, image::Rgb([20, 40, 200]));
        let mut out = Vec::new();
        DynamicImage::ImageRgb8(img)
            .write_to(
                &mut std::io::Cursor::new(&mut out),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        out
    };
    // MP type 0x020002: a multi-frame image, disparity (stereo) view.
    let mpo = with_mpf_preview(&left, &right, 0x02_0002);
    let app = TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .file("lib/DSCF0001.MPO", &mpo)
        .file("lib/stereo.mpo", &mpo)
        .spawn()
        .await;
    check(
        &app,
        &[
            ("DSCF0001.MPO", left.as_slice(), (1200, 900)),
            ("stereo.mpo", left.as_slice(), (1200, 900)),
        ],
    )
    .await;
}
