//! HEIF/HEIC and AVIF stills (issue 15) over HTTP through the real server:
//! typed as photos with their displayed size (after `clap`/`irot`/`imir`),
//! capture time from the Exif item, both thumbnail levels upright and
//! unmirrored (checked by the colour of the corners), grid tiles in order,
//! 8- and 10-bit; damaged or hostile files refused (−10008) or listed
//! without a size, never a crash or a 500. Fixtures come from the real
//! ffmpeg (libx265, libaom) through `common/heifmux.rs`; where libheif's
//! `heif-convert` is installed (the Makefile's test tools) it checks the
//! muxer and our reading of `irot`/`imir` independently.

use crate::common;
use common::heifmux;

use common::*;
use heifmux::{Codec, Spec};
use image::{DynamicImage, GenericImageView};
use serde_json::{json, Value};

const RED: [u8; 3] = [255, 0, 0];
const GREEN: [u8; 3] = [0, 255, 0];
const BLUE: [u8; 3] = [0, 0, 255];
const YELLOW: [u8; 3] = [255, 255, 0];

/// `w`×`h`: red, green / blue, yellow quadrants (top-left, top-right /
/// bottom-left, bottom-right).
fn quadrants(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let c = match (x < w / 2, y < h / 2) {
                (true, true) => RED,
                (false, true) => GREEN,
                (true, false) => BLUE,
                (false, false) => YELLOW,
            };
            out.extend_from_slice(&c);
        }
    }
    out
}

/// The colours at the four corners (inset by an eighth) of `img`, in the
/// order top-left, top-right, bottom-left, bottom-right, each snapped to
/// the nearest of the four fixture colours.
fn corners(img: &DynamicImage) -> [[u8; 3]; 4] {
    let (w, h) = img.dimensions();
    let at = |fx: f64, fy: f64| {
        let p = img
            .get_pixel((w as f64 * fx) as u32, (h as f64 * fy) as u32)
            .0;
        *[RED, GREEN, BLUE, YELLOW]
            .iter()
            .min_by_key(|c| {
                (0..3)
                    .map(|i| (i32::from(p[i]) - i32::from(c[i])).pow(2))
                    .sum::<i32>()
            })
            .unwrap()
    };
    [
        at(0.125, 0.125),
        at(0.875, 0.125),
        at(0.125, 0.875),
        at(0.875, 0.875),
    ]
}

fn single(codec: Codec, ten_bit: bool, irot: Option<u8>, imir: Option<u8>) -> Vec<u8> {
    let c = heifmux::encode(&quadrants(320, 240), 320, 240, codec, ten_bit);
    let mut spec = Spec::single(c);
    spec.irot = irot;
    spec.imir = imir;
    spec.exif = Some(heifmux::exif_taken("2001:02:03 04:05:06"));
    heifmux::mux(&spec)
}

fn grid(ten_bit: bool) -> Vec<u8> {
    let spec = heifmux::grid(
        &quadrants(400, 300),
        400,
        300,
        256,
        2,
        2,
        Codec::Hevc,
        ten_bit,
    );
    heifmux::mux(&spec)
}

async fn thumb(api: &Api, id: i64, level: i64) -> reqwest::Response {
    api.get("/thumbnail.icc", json!({"id": id, "level": level}))
        .await
}

async fn thumb_img(api: &Api, name: &str, level: i64) -> DynamicImage {
    let id = api.file_id(name).await;
    let r = thumb(api, id, level).await;
    let status = r.status();
    let bytes = r.bytes().await.unwrap();
    assert_eq!(
        status,
        200,
        "{name} level {level}: {}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
    );
    image::load_from_memory(&bytes).expect("thumbnail decodes")
}

fn dims(f: &Value) -> (i64, i64) {
    (
        f["width"].as_i64().unwrap_or(-1),
        f["height"].as_i64().unwrap_or(-1),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heic_and_avif_are_photos_upright_with_their_displayed_size() {
    if !ffmpeg_available() {
        return;
    }
    let app = TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .file("lib/plain.heic", &single(Codec::Hevc, false, None, None))
        // 90° counter-clockwise, then mirrored top↔bottom.
        .file(
            "lib/turned.heic",
            &single(Codec::Hevc, true, Some(1), Some(0)),
        )
        // 90° counter-clockwise: what the issue saw listed unturned.
        .file("lib/turned.avif", &single(Codec::Av1, false, Some(1), None))
        .file(
            "lib/IMG_0001.HIF",
            &single(Codec::Hevc, false, Some(2), None),
        )
        .file("lib/grid8.heic", &grid(false))
        .file("lib/grid10.heic", &grid(true))
        // Level 0 shrinks it 8x: decoded without HEVC's loop filters.
        .file("lib/large.heic", &{
            let c = heifmux::encode(&quadrants(1280, 960), 1280, 960, Codec::Hevc, false);
            heifmux::mux(&Spec::single(c))
        })
        .spawn()
        .await;
    let api = &app.api;
    let plain = api.file_named("plain.heic").await;
    assert_eq!(plain["type"], 1, "a photo: {plain}");
    assert_eq!(dims(&plain), (320, 240));
    // 2001-02-03 04:05:06 without a zone: taken as UTC.
    assert_eq!(plain["createTime"], 981_173_106, "capture time from Exif");
    for level in [0, 1] {
        let img = thumb_img(api, "plain.heic", level).await;
        let edge = if level == 0 { 160 } else { 320 };
        assert_eq!(img.dimensions(), (edge, edge * 3 / 4));
        assert_eq!(corners(&img), [RED, GREEN, BLUE, YELLOW], "level {level}");
    }

    // Turned a quarter to the left, the stored top-right (green) comes to
    // the top-left and the top-left (red) to the bottom-left; the mirror
    // (mode 0) then swaps top and bottom.
    let turned = api.file_named("turned.heic").await;
    assert_eq!(dims(&turned), (240, 320));
    assert_eq!(turned["orientation"], 5, "irot 90 + imir 0 is a transpose");
    for level in [0, 1] {
        let img = thumb_img(api, "turned.heic", level).await;
        let edge = if level == 0 { 160 } else { 320 };
        assert_eq!(img.dimensions(), (edge * 3 / 4, edge));
        assert_eq!(corners(&img), [RED, BLUE, GREEN, YELLOW], "level {level}");
    }
    let avif = api.file_named("turned.avif").await;
    assert_eq!((avif["type"].clone(), dims(&avif)), (json!(1), (240, 320)));
    for level in [0, 1] {
        let img = thumb_img(api, "turned.avif", level).await;
        assert_eq!(corners(&img), [GREEN, YELLOW, RED, BLUE], "level {level}");
    }
    let hif = api.file_named("IMG_0001.HIF").await;
    assert_eq!((hif["type"].clone(), dims(&hif)), (json!(1), (320, 240)));
    let img = thumb_img(api, "IMG_0001.HIF", 1).await;
    assert_eq!(corners(&img), [YELLOW, BLUE, GREEN, RED], "turned 180°");

    for (level, edge) in [(0, 160), (1, 800)] {
        let img = thumb_img(api, "large.heic", level).await;
        assert_eq!(
            img.dimensions(),
            (edge, edge * 3 / 4),
            "large level {level}"
        );
        assert_eq!(
            corners(&img),
            [RED, GREEN, BLUE, YELLOW],
            "large level {level}"
        );
    }

    for name in ["grid8.heic", "grid10.heic"] {
        let f = api.file_named(name).await;
        assert_eq!(dims(&f), (400, 300), "{name}: the grid's output size");
        for level in [0, 1] {
            let img = thumb_img(api, name, level).await;
            let edge = if level == 0 { 160 } else { 400 };
            assert_eq!(img.dimensions(), (edge, edge * 3 / 4), "{name}");
            // The tiles in order, the padding of the last row and column cut.
            assert_eq!(corners(&img), [RED, GREEN, BLUE, YELLOW], "{name} {level}");
            let (w, h) = img.dimensions();
            let edge_px = img.get_pixel(w - 1, h - 1).0;
            assert!(
                edge_px[0] > 160 && edge_px[1] > 160 && edge_px[2] < 100,
                "{name}: bottom-right pixel {edge_px:?} is the picture's, not padding"
            );
        }
    }
    app.stop().await;
}

/// Replaces the first `ispe` size of `file` with `w`×`h`.
fn with_ispe(mut file: Vec<u8>, w: u32, h: u32) -> Vec<u8> {
    let at = file.windows(4).position(|b| b == b"ispe").unwrap() + 8;
    file[at..at + 4].copy_from_slice(&w.to_be_bytes());
    file[at + 4..at + 8].copy_from_slice(&h.to_be_bytes());
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_and_hostile_heifs_are_refused_not_crashed_on() {
    if !ffmpeg_available() {
        return;
    }
    let good = single(Codec::Hevc, false, None, None);
    let mdat = good.windows(4).position(|b| b == b"mdat").unwrap();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("half.heic", good[..good.len() / 2].to_vec()),
        // The boxes are whole, the coded picture lies past the end.
        ("pastend.heic", good[..mdat + 40].to_vec()),
        ("huge.heic", with_ispe(good.clone(), 60_000, 60_000)),
    ];
    let mut g = grid(false);
    // A 2x2 grid whose description says 1x2: tiles missing.
    let idat = g.windows(4).position(|b| b == b"idat").unwrap() + 4;
    g[idat + 2] = 0;
    cases.push(("grid_missing.heic", g));
    // Coded bytes replaced with noise: ffmpeg decodes nothing.
    let mut noise = good.clone();
    for (i, b) in noise[mdat + 4..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(151).wrapping_add(7);
    }
    cases.push(("noise.heic", noise));
    // A grid whose last tile is smaller than the others (its own `ispe`):
    // refused as libheif refuses it, never stretched into place.
    let spec = heifmux::grid_with(&quadrants(400, 300), 400, 300, 256, 2, 2, |i, t| {
        let h = if i == 3 { 192 } else { 256 };
        heifmux::encode(&t[..(256 * h * 3) as usize], 256, h, Codec::Hevc, false)
    });
    cases.push(("grid_sizes.heic", heifmux::mux(&spec)));
    let mut b = TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .file("lib/good.heic", &good);
    for (name, bytes) in &cases {
        b = b.file(&format!("lib/{name}"), bytes);
    }
    let app = b.spawn().await;
    for (name, _) in &cases {
        let f = app.api.file_named(name).await;
        assert_eq!(f["type"], 1, "{name} is still a photo: {f}");
        let id = app.api.file_id(name).await;
        for level in [0, 1] {
            let r = thumb(&app.api, id, level).await;
            assert_binary_err_status(r, 404, -10008).await;
        }
    }
    // The huge one is listed with what it declares; it is never decoded.
    let huge = app.api.file_named("huge.heic").await;
    assert_eq!(dims(&huge), (60_000, 60_000));
    for name in ["grid_missing.heic", "grid_sizes.heic"] {
        let f = app.api.file_named(name).await;
        assert!(f.get("width").is_none(), "{name}: {f}");
    }
    // And the server is fine.
    let img = thumb_img(&app.api, "good.heic", 0).await;
    assert_eq!(corners(&img), [RED, GREEN, BLUE, YELLOW]);
    app.stop().await;
}

/// libheif (Debian's `heif-convert`) reads our fixtures as we do: the
/// muxer writes valid HEIF and our turning and mirroring agree with it.
#[test]
fn libheif_agrees_with_the_fixtures() {
    if !heif_convert_available() {
        return;
    }
    if !ffmpeg_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // libheif 1.15 mirrors 8-bit pictures only.
        (
            "turned.heic",
            single(Codec::Hevc, false, Some(1), Some(0)),
            [RED, BLUE, GREEN, YELLOW],
            (240, 320),
        ),
        (
            "turned180.heic",
            single(Codec::Hevc, true, Some(2), None),
            [YELLOW, BLUE, GREEN, RED],
            (320, 240),
        ),
        (
            "grid.heic",
            grid(false),
            [RED, GREEN, BLUE, YELLOW],
            (400, 300),
        ),
        // 48 tiles as an iPhone's 12 MP grid has (smaller): libheif
        // refused the muxer's grids while each tile had properties of its
        // own, ~150 of them, past the 127 that 7-bit `ipma` indices hold.
        (
            "grid48.heic",
            heifmux::mux(&heifmux::grid(
                &quadrants(500, 380),
                500,
                380,
                64,
                6,
                8,
                Codec::Hevc,
                false,
            )),
            [RED, GREEN, BLUE, YELLOW],
            (500, 380),
        ),
        (
            "turned.avif",
            single(Codec::Av1, false, Some(1), None),
            [GREEN, YELLOW, RED, BLUE],
            (240, 320),
        ),
    ];
    for (name, bytes, want, size) in cases {
        let src = dir.path().join(name);
        std::fs::write(&src, bytes).unwrap();
        let out = dir.path().join(format!("{name}.png"));
        let o = std::process::Command::new("heif-convert")
            .arg(&src)
            .arg(&out)
            .output()
            .unwrap();
        if !o.status.success() && name.ends_with(".avif") {
            // Debian's libheif may be built without an AV1 decoder.
            eprintln!(
                "heif-convert cannot decode AVIF here: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            continue;
        }
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let img = image::open(&out)
            .unwrap_or_else(|e| panic!("{name}: {e}: {}", String::from_utf8_lossy(&o.stdout)));
        assert_eq!(img.dimensions(), size, "{name}");
        assert_eq!(corners(&img), want, "{name}");
    }
}

/// `w`×`h`: red growing to the right, green downwards, blue along the
/// other diagonal, so every tile of a grid has colours of its own.
fn gradient(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for y in 0..h {
        for x in 0..w {
            out.push((x * 255 / (w - 1)) as u8);
            out.push((y * 255 / (h - 1)) as u8);
            out.push((255 - (x + y) * 255 / (w + h - 2)) as u8);
        }
    }
    out
}

/// Mean absolute difference of two RGB pictures of one size, per channel
/// value, over the `x0..x1`×`y0..y1` rectangle.
fn mean_diff(
    a: &DynamicImage,
    b: &DynamicImage,
    (x0, x1): (u32, u32),
    (y0, y1): (u32, u32),
) -> f64 {
    let (a, b) = (a.to_rgb8(), b.to_rgb8());
    let mut sum = 0u64;
    for y in y0..y1 {
        for x in x0..x1 {
            let (p, q) = (a.get_pixel(x, y).0, b.get_pixel(x, y).0);
            sum += (0..3).map(|i| u64::from(p[i].abs_diff(q[i]))).sum::<u64>();
        }
    }
    sum as f64 / (3 * (x1 - x0) * (y1 - y0)) as f64
}

/// A grid whose tiles differ in their parameter sets (every other tile
/// encoded without SAO and wavefronts and with chroma QP offsets: another
/// SPS and PPS in its `hvcC`) is decoded tile by tile with each tile's
/// own, as libheif decodes it: the thumbnail has libheif's pixels in every
/// tile. Decoding a tile with its neighbour's parameter sets misparses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grid_tiles_with_their_own_parameter_sets_are_decoded_as_libheif_does() {
    if !ffmpeg_available() {
        return;
    }
    let (w, h) = (400, 300);
    let spec = heifmux::grid_with(&gradient(w, h), w, h, 256, 2, 2, |i, t| {
        let x265 = if i % 2 == 1 {
            "sao=0:wpp=0:cbqpoffs=-6:crqpoffs=6"
        } else {
            ""
        };
        heifmux::encode_with(t, 256, 256, Codec::Hevc, false, 12, x265)
    });
    let bytes = heifmux::mux(&spec);
    let app = TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .file("lib/mixed.heic", &bytes)
        .prerender(false)
        .spawn()
        .await;
    assert_eq!(dims(&app.api.file_named("mixed.heic").await), (400, 300));
    // Level 1 covers the picture: its own size, no scaling.
    let ours = thumb_img(&app.api, "mixed.heic", 1).await;
    assert_eq!(ours.dimensions(), (w, h));
    // Against the picture encoded: within what HEVC at crf 12 and the
    // thumbnail's JPEG lose, tile by tile.
    let source = DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, gradient(w, h)).unwrap());
    let tiles = [
        ((0, 256), (0, 256)),
        ((256, w), (0, 256)),
        ((0, 256), (256, h)),
        ((256, w), (256, h)),
    ];
    for (i, &(xs, ys)) in tiles.iter().enumerate() {
        let d = mean_diff(&ours, &source, xs, ys);
        assert!(d < 4.0, "tile {i}: mean difference {d:.2} from the source");
    }
    app.stop().await;

    // libheif, where installed, decodes the same pixels.
    if !heif_convert_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("mixed.heic");
    std::fs::write(&src, &bytes).unwrap();
    let out = dir.path().join("mixed.png");
    let o = std::process::Command::new("heif-convert")
        .arg(&src)
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let theirs = image::open(&out).unwrap();
    assert_eq!(theirs.dimensions(), (w, h));
    for (i, &(xs, ys)) in tiles.iter().enumerate() {
        let d = mean_diff(&ours, &theirs, xs, ys);
        assert!(d < 4.0, "tile {i}: mean difference {d:.2} from libheif");
    }
}

/// Whether libheif's `heif-convert` is installed; required under CI.
fn heif_convert_available() -> bool {
    let have = std::process::Command::new("heif-convert")
        .arg("--version")
        .output()
        .is_ok();
    if !have {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "heif-convert is required under CI (apt-get install libheif-examples)"
        );
        eprintln!("skipping: heif-convert not installed");
    }
    have
}

/// `rgb` (`w` wide) upside down.
fn flipped(rgb: &[u8], w: u32) -> Vec<u8> {
    let row = (w * 3) as usize;
    rgb.chunks_exact(row).rev().flatten().copied().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_aperture_and_embedded_thumbnail() {
    if !ffmpeg_available() {
        return;
    }
    // 160x120 of the 320x240 stored picture, its centre 80 px right of the
    // picture's: x 160..320, y 60..180, the green and yellow quadrants; then
    // a quarter turn to the left.
    let c = heifmux::encode(&quadrants(320, 240), 320, 240, Codec::Hevc, false);
    let mut clapped = Spec::single(c);
    clapped.clap = Some([160, 1, 120, 1, 80, 1, 0, 1]);
    clapped.irot = Some(1);
    // A primary with a thumbnail item (`thmb`) that differs from it, so the
    // thumbnail shows which one was decoded: upside down.
    let c = heifmux::encode(&quadrants(640, 480), 640, 480, Codec::Hevc, false);
    let t = heifmux::encode(
        &flipped(&quadrants(240, 180), 240),
        240,
        180,
        Codec::Hevc,
        false,
    );
    let mut thumbed = Spec::single(c);
    thumbed.thumbnail = Some(t);
    let app = TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .file("lib/clapped.heic", &heifmux::mux(&clapped))
        .file("lib/thumbed.heic", &heifmux::mux(&thumbed))
        .prerender(false)
        .spawn()
        .await;
    let api = &app.api;
    assert_eq!(dims(&api.file_named("clapped.heic").await), (120, 160));
    for level in [0, 1] {
        let img = thumb_img(api, "clapped.heic", level).await;
        // Already inside both boxes: not enlarged.
        assert_eq!(img.dimensions(), (120, 160), "level {level}");
        assert_eq!(
            corners(&img),
            [GREEN, YELLOW, GREEN, YELLOW],
            "level {level}"
        );
    }
    assert_eq!(dims(&api.file_named("thumbed.heic").await), (640, 480));
    // Level 0 from the embedded thumbnail (240 px covers its 160 px box)…
    let small = thumb_img(api, "thumbed.heic", 0).await;
    assert_eq!(small.dimensions(), (160, 120));
    assert_eq!(corners(&small), [BLUE, YELLOW, RED, GREEN]);
    // …level 1 from the picture itself.
    let screen = thumb_img(api, "thumbed.heic", 1).await;
    assert_eq!(screen.dimensions(), (640, 480));
    assert_eq!(corners(&screen), [RED, GREEN, BLUE, YELLOW]);
    app.stop().await;
}
