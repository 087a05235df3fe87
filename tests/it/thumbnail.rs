//! `thumbnail.icc` (spec §6.10, §10, §2.4, §2.6): box sizes per level,
//! aspect kept and never enlarged, EXIF orientation applied (checked by where
//! the fixture's red corner lands), GIF first frame, a video frame that is
//! not black, PNG for transparent sources, the cache following the original,
//! and the error codes.

use crate::common;

use common::*;
use image::{DynamicImage, GenericImageView};
use serde_json::{json, Value};

/// Seed whose gradient never looks red (blue channel 148), so only the
/// fixture's marker quarter is red.
const SEED: u8 = 4;

async fn thumb(api: &Api, id: i64, level: Value) -> reqwest::Response {
    api.get("/thumbnail.icc", json!({"id": id, "level": level}))
        .await
}

/// Fetches a thumbnail that must succeed; returns its content type, bytes
/// and decoded image.
async fn thumb_ok(api: &Api, id: i64, level: Value) -> (String, Vec<u8>, DynamicImage) {
    let r = thumb(api, id, level.clone()).await;
    let status = r.status();
    let ctype = header(&r, "content-type");
    let bytes = r.bytes().await.unwrap().to_vec();
    assert_eq!(
        status,
        200,
        "thumbnail {id} level {level}: {}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
    );
    assert!(
        ctype == "image/jpeg" || ctype == "image/png",
        "content type {ctype:?}"
    );
    let img = image::load_from_memory(&bytes).expect("thumbnail decodes");
    (ctype, bytes, img)
}

/// The SOF marker of a JPEG (0xC0 baseline, 0xC2 progressive, …).
fn sof_marker(jpeg: &[u8]) -> u8 {
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "not a JPEG");
    let mut i = 2;
    while i + 4 <= jpeg.len() {
        assert_eq!(jpeg[i], 0xFF, "bad JPEG segment at {i}");
        let m = jpeg[i + 1];
        if (0xC0..=0xCF).contains(&m) && m != 0xC4 && m != 0xC8 && m != 0xCC {
            return m;
        }
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        i += 2 + len;
    }
    panic!("no SOF marker")
}

fn is_red(img: &DynamicImage, fx: f64, fy: f64) -> bool {
    let (w, h) = img.dimensions();
    let x = ((w as f64 * fx) as u32).min(w - 1);
    let y = ((h as f64 * fy) as u32).min(h - 1);
    let p = img.get_pixel(x, y).0;
    p[0] > 170 && p[1] < 80 && p[2] < 80
}

/// Which display corner is red: "tl", "tr", "bl" or "br" (asserting exactly
/// one is).
fn red_corner(img: &DynamicImage) -> &'static str {
    let corners = [
        ("tl", 0.125, 0.125),
        ("tr", 0.875, 0.125),
        ("bl", 0.125, 0.875),
        ("br", 0.875, 0.875),
    ];
    let red: Vec<&str> = corners
        .iter()
        .filter(|(_, x, y)| is_red(img, *x, *y))
        .map(|(n, _, _)| *n)
        .collect();
    assert_eq!(red.len(), 1, "expected one red corner, got {red:?}");
    red[0]
}

async fn photos_app() -> TestApp {
    let mut b = TestApp::builder()
        .user("alice")
        .user("bob")
        .library("photos", &["alice"])
        .library("bobs", &["bob"])
        .file("photos/big.jpg", &jpeg(1600, 1200, SEED, None))
        .file("photos/tall.jpg", &jpeg(300, 1200, SEED, None))
        .file("photos/small.jpg", &jpeg(100, 50, SEED, None))
        .file("photos/small_rot6.jpg", &jpeg(100, 50, SEED, Some(6)))
        .file("photos/anim.gif", &gif(64, 48, 3, 10))
        .file("photos/notes.txt", b"text")
        .file("bobs/secret.jpg", &jpeg(200, 100, SEED, None));
    for o in 1..=8u16 {
        b = b.file(&format!("photos/o{o}.jpg"), &jpeg(400, 300, SEED, Some(o)));
    }
    b.spawn().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn levels_fit_their_box_keep_the_aspect_and_never_enlarge() {
    let app = photos_app().await;
    let big = app.api.file_id("big.jpg").await;
    let (ctype, bytes, img) = thumb_ok(&app.api, big, json!(0)).await;
    assert_eq!(ctype, "image/jpeg");
    assert_eq!(sof_marker(&bytes), 0xC0, "baseline JPEG");
    assert_eq!(img.dimensions(), (160, 120));
    assert_eq!(red_corner(&img), "tl");
    let (_, bytes, img) = thumb_ok(&app.api, big, json!(1)).await;
    assert_eq!(sof_marker(&bytes), 0xC0, "baseline JPEG");
    assert_eq!(img.dimensions(), (800, 600));
    // Any level but 0 is the screen size; an invalid level is absent (0).
    for level in [json!(5), json!(-1)] {
        assert_eq!(
            thumb_ok(&app.api, big, level).await.2.dimensions(),
            (800, 600)
        );
    }
    for level in [json!("abc"), json!("")] {
        assert_eq!(
            thumb_ok(&app.api, big, level).await.2.dimensions(),
            (160, 120)
        );
    }
    let r = app.api.get("/thumbnail.icc", json!({"id": big})).await;
    assert_eq!(r.status(), 200, "level defaults to 0");

    let tall = app.api.file_id("tall.jpg").await;
    assert_eq!(
        thumb_ok(&app.api, tall, json!(0)).await.2.dimensions(),
        (40, 160)
    );
    assert_eq!(
        thumb_ok(&app.api, tall, json!(1)).await.2.dimensions(),
        (200, 800)
    );

    // Already inside the box: not enlarged.
    let small = app.api.file_id("small.jpg").await;
    for level in [0, 1] {
        let (_, _, img) = thumb_ok(&app.api, small, json!(level)).await;
        assert_eq!(img.dimensions(), (100, 50), "level {level}");
    }
    // …but still turned upright when the EXIF says so.
    let rot = app.api.file_id("small_rot6.jpg").await;
    let (_, _, img) = thumb_ok(&app.api, rot, json!(1)).await;
    assert_eq!(img.dimensions(), (50, 100));
    assert_eq!(red_corner(&img), "tr");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exif_orientation_is_applied() {
    let app = photos_app().await;
    // Where the stored top-left corner ends up once displayed (spec §2.4).
    for (o, corner) in [
        (1, "tl"),
        (2, "tr"),
        (3, "br"),
        (4, "bl"),
        (5, "tl"),
        (6, "tr"),
        (7, "br"),
        (8, "bl"),
    ] {
        let id = app.api.file_id(&format!("o{o}.jpg")).await;
        let want = if o >= 5 { (120, 160) } else { (160, 120) };
        let (_, _, img) = thumb_ok(&app.api, id, json!(0)).await;
        assert_eq!(img.dimensions(), want, "orientation {o}");
        assert_eq!(red_corner(&img), corner, "orientation {o}");
        let (_, _, img) = thumb_ok(&app.api, id, json!(1)).await;
        assert_eq!(red_corner(&img), corner, "orientation {o}, level 1");
        let want = if o >= 5 { (300, 400) } else { (400, 300) };
        assert_eq!(img.dimensions(), want, "orientation {o}, level 1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gifs_give_their_first_frame() {
    let app = photos_app().await;
    let id = app.api.file_id("anim.gif").await;
    let (_, _, img) = thumb_ok(&app.api, id, json!(0)).await;
    assert_eq!(img.dimensions(), (64, 48));
    // Frame i has green = 40·i: the first frame's is about 0.
    let rgb = img.to_rgb8();
    let green: f64 =
        rgb.pixels().map(|p| p.0[1] as f64).sum::<f64>() / (rgb.width() * rgb.height()) as f64;
    assert!(green < 20.0, "first frame expected, mean green {green}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn videos_give_a_frame_that_is_not_black() {
    let (Some(mp4), Some(rot)) = (av(Av::Mp4), av(Av::Mp4Rotated)) else {
        return;
    };
    let app = TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .file("lib/clip.mp4", mp4)
        .file("lib/rotated.mp4", rot)
        .spawn()
        .await;
    let id = app.api.file_id("clip.mp4").await;
    let (_, _, img) = thumb_ok(&app.api, id, json!(0)).await;
    assert_eq!(img.dimensions(), (160, 120));
    let (ctype, _, img) = thumb_ok(&app.api, id, json!(1)).await;
    assert_eq!(ctype, "image/jpeg");
    assert_eq!(img.dimensions(), (320, 240), "never enlarged");
    let luma = img.to_luma8();
    let mean: f64 = luma.pixels().map(|p| p.0[0] as f64).sum::<f64>() / (320.0 * 240.0);
    assert!(mean > 30.0, "black frame (mean luma {mean})");
    // Turned, checked by pixels: the stored top-left red corner shows where
    // the display matrix puts it (a quarter turn the wrong way has the same
    // size but the red corner opposite).
    let corner = match av_orientation(rot).expect("fixture has a quarter-turn display matrix") {
        6 => "tr",
        8 => "bl",
        o => panic!("unexpected orientation {o}"),
    };
    let id = app.api.file_id("rotated.mp4").await;
    for (level, dims) in [(0, (120, 160)), (1, (240, 320))] {
        let (_, _, img) = thumb_ok(&app.api, id, json!(level)).await;
        assert_eq!(img.dimensions(), dims, "rotation applied, level {level}");
        assert_eq!(red_corner(&img), corner, "level {level}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transparent_sources_give_png() {
    let mut png = Vec::new();
    let img = image::RgbaImage::from_fn(400, 200, |x, _| {
        image::Rgba([200, 50, 50, if x < 200 { 0 } else { 255 }])
    });
    DynamicImage::ImageRgba8(img)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let app = TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .file("lib/alpha.png", &png)
        .spawn()
        .await;
    let id = app.api.file_id("alpha.png").await;
    let (ctype, _, img) = thumb_ok(&app.api, id, json!(0)).await;
    assert_eq!(ctype, "image/png");
    assert_eq!(img.dimensions(), (160, 80));
    assert!(img.color().has_alpha());
    assert_eq!(
        img.get_pixel(10, 40).0[3],
        0,
        "transparent half stays transparent"
    );
    assert_eq!(img.get_pixel(150, 40).0[3], 255);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thumbnails_follow_the_original() {
    let app = photos_app().await;
    let id = app.api.file_id("big.jpg").await;
    let (_, first, img) = thumb_ok(&app.api, id, json!(0)).await;
    assert_eq!(img.dimensions(), (160, 120));
    // Cached on disk, on the library's disk (issue 15).
    let lib_cache = app.media().join("photos/.isync/thumbs");
    let cached = walk_files(&lib_cache);
    assert!(
        cached
            .iter()
            .any(|p| std::fs::read(p).is_ok_and(|b| b == first)),
        "no cached copy of the thumbnail under {}",
        lib_cache.display()
    );
    let (_, again, _) = thumb_ok(&app.api, id, json!(0)).await;
    assert_eq!(again, first, "served from the cache");

    // The original changes (other size and orientation): new thumbnail.
    write_file(
        &app.media().join("photos/big.jpg"),
        &jpeg(800, 200, SEED, Some(3)),
    );
    app.rescan().await;
    let (_, _, img) = thumb_ok(&app.api, id, json!(0)).await;
    assert_eq!(img.dimensions(), (160, 40));
    assert_eq!(red_corner(&img), "br");
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_requests_agree() {
    let app = photos_app().await;
    let id = app.api.file_id("o6.jpg").await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let api = app.api.clone();
            tokio::spawn(async move { thumb_ok(&api, id, json!(1)).await.1 })
        })
        .collect();
    let mut bodies = Vec::new();
    for t in tasks {
        bodies.push(t.await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "different bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thumbnail_errors() {
    let app = photos_app().await;
    let notes = app.api.file_id("notes.txt").await;
    let r = thumb(&app.api, notes, json!(0)).await;
    assert_binary_err_status(r, 404, WRONG_FILE_TYPE).await;
    assert_binary_err_status(thumb(&app.api, 999_999, json!(0)).await, 404, NOT_FOUND).await;
    let bob = app.login("bob").await;
    let secret = bob.file_id("secret.jpg").await;
    assert_binary_err_status(thumb(&app.api, secret, json!(0)).await, 404, NOT_FOUND).await;
    for bad in [
        json!({}),
        json!({"id": "x"}),
        json!({"id": "1_0"}),
        json!({"level": 0}),
    ] {
        let r = app.api.get("/thumbnail.icc", bad.clone()).await;
        assert_binary_err_status(r, 400, BAD_PARAM).await;
    }
    let r = app
        .anon()
        .get("/thumbnail.icc", json!({"id": notes, "level": 0}))
        .await;
    assert_binary_err_status(r, 403, NEED_LOGIN).await;

    // The original vanished before any thumbnail was made.
    let small = app.api.file_id("small.jpg").await;
    std::fs::remove_file(app.media().join("photos/small.jpg")).unwrap();
    assert_binary_err_status(thumb(&app.api, small, json!(0)).await, 404, FILE_GONE).await;
    // A damaged image: its header is fine, its pixels are cut off. Either
    // the scanner already saw it is no image (−10005) or building fails
    // (−10008, sticky).
    let tall = app.api.file_id("tall.jpg").await;
    let mut cut = jpeg(300, 1200, SEED, None);
    let sos = cut.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    cut.truncate(sos + 20);
    write_file(&app.media().join("photos/tall.jpg"), &cut);
    app.rescan().await;
    let kind = app.api.file_named("tall.jpg").await["type"].clone();
    let want = if kind == 1 { -10008 } else { WRONG_FILE_TYPE };
    for _ in 0..2 {
        assert_binary_err_status(thumb(&app.api, tall, json!(1)).await, 404, want).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_libraries_keep_their_thumbnails_on_their_disk() {
    let app = photos_app().await;
    let kept = app.api.file_id("big.jpg").await;
    let uncached = app.api.file_id("o3.jpg").await;
    let (_, first, _) = thumb_ok(&app.api, kept, json!(0)).await;
    // The pre-render worker may have made o3's thumbnails already: once it
    // is idle, they are removed, so o3 is really not in the cache.
    prerendered(&app).await;
    for level in [0, 1] {
        for p in cached(&app, uncached, level) {
            std::fs::remove_file(p).unwrap();
        }
    }
    std::fs::rename(app.media().join("photos"), app.media().join("away")).unwrap();
    let r = app.rescan().await;
    assert_eq!(r.offline.len(), 1, "{r}");
    // The cache is on the library's disk (issue 15): gone with it, cached
    // or not, the answer is "offline".
    for id in [kept, uncached] {
        let r = thumb(&app.api, id, json!(0)).await;
        assert_binary_err_status(r, 503, LIBRARY_OFFLINE).await;
    }
    // Back: the cached one is there again, served without a render.
    std::fs::rename(app.media().join("away"), app.media().join("photos")).unwrap();
    assert!(app.rescan().await.offline.is_empty());
    let renders = app.state().thumbs.renders();
    let (_, again, _) = thumb_ok(&app.api, kept, json!(0)).await;
    assert_eq!(again, first);
    assert_eq!(app.state().thumbs.renders(), renders, "a cache hit");
}

// ------------------------------------------------ embedded previews, pre-render

/// Waits until the pre-render worker has nothing pending; its status then.
async fn prerendered(app: &TestApp) -> isync::media::prerender::PrerenderStatus {
    let worker = app.state().prerender.clone();
    tokio::task::spawn_blocking(move || worker.wait_idle(std::time::Duration::from_secs(120)))
        .await
        .unwrap()
}

/// The cached thumbnail files of file `id` at `level` (0 or 1): on its
/// library's disk (`<library>/.isync/thumbs`) or in the data dir.
fn cached(app: &TestApp, id: i64, level: u8) -> Vec<std::path::PathBuf> {
    let shard = format!("{:02x}", id.rem_euclid(256));
    let mut caches = vec![app.data_dir().join("thumbs")];
    for lib in std::fs::read_dir(app.media()).unwrap().flatten() {
        caches.push(lib.path().join(".isync/thumbs"));
    }
    let prefix = format!("{id}_{level}_");
    caches
        .iter()
        .filter_map(|c| std::fs::read_dir(c.join(&shard)).ok())
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

fn solid_jpeg(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
        .encode_image(&image::RgbImage::from_pixel(w, h, image::Rgb(rgb)))
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_mpf_preview_makes_the_thumbnails() {
    // A camera file: the photo (red corner, EXIF orientation 6) and, after
    // it, a green 1600x1200 "large thumbnail" announced in an MPF segment.
    let photo = jpeg(3200, 2400, SEED, Some(6));
    let green = [30, 200, 40];
    let preview = solid_jpeg(1600, 1200, green);
    let file = common::fixtures::with_mpf_preview(&photo, &preview, 0x01_0002);
    let app = TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .file("lib/camera.jpg", &file)
        .spawn()
        .await;
    let id = app.api.file_id("camera.jpg").await;
    for (level, want) in [(1, (600, 800)), (0, (120, 160))] {
        let (_, _, img) = thumb_ok(&app.api, id, json!(level)).await;
        assert_eq!(
            img.dimensions(),
            want,
            "level {level}: the photo's shape, turned"
        );
        let p = img.get_pixel(want.0 / 2, want.1 / 2).0;
        assert!(
            (0..3).all(|i| p[i].abs_diff(green[i]) < 40),
            "level {level}: made from the preview, got {p:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_prerenders_both_levels_and_a_broken_file_does_not_stop_it() {
    let mut broken = jpeg(1200, 900, SEED, None);
    let sos = broken.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    broken.truncate(sos + 20);
    let mut b = TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .file("lib/a_big.jpg", &jpeg(1600, 1200, SEED, None))
        .file("lib/b_broken.jpg", &broken)
        .file("lib/c_rot6.jpg", &jpeg(400, 300, SEED, Some(6)))
        .file("lib/d_anim.gif", &gif(64, 48, 3, 10))
        .file("lib/notes.txt", b"text");
    let video = av(Av::Mp4);
    if let Some(mp4) = video {
        b = b.file("lib/e_clip.mp4", mp4);
    }
    let app = b.spawn().await;
    let status = prerendered(&app).await;
    assert!(!status.busy && status.sweeps >= 1, "{status:?}");

    // Every good original has both levels on disk, though nobody asked.
    let mut good = vec!["a_big.jpg", "c_rot6.jpg", "d_anim.gif"];
    if video.is_some() {
        good.push("e_clip.mp4");
    }
    for name in &good {
        let id = app.api.file_id(name).await;
        for level in [0, 1] {
            assert_eq!(cached(&app, id, level).len(), 1, "{name} level {level}");
        }
    }
    assert_eq!(status.written, 2 * good.len() as u64, "{status:?}");
    // The broken one failed (unless the scanner already found it is no
    // image) without stopping the others, and is left for requests.
    let broken_is_image = app.api.file_named("b_broken.jpg").await["type"] == 1;
    assert_eq!(status.failed, u64::from(broken_is_image), "{status:?}");
    let broken_id = app.api.file_id("b_broken.jpg").await;
    assert!(cached(&app, broken_id, 1).is_empty());
    let notes = app.api.file_id("notes.txt").await;
    assert!(cached(&app, notes, 0).is_empty(), "no thumbnail for text");

    // Requests are served from what the worker made: no render at request
    // time, the very bytes on disk, and the right picture.
    let big = app.api.file_id("a_big.jpg").await;
    let (_, bytes, img) = thumb_ok(&app.api, big, json!(1)).await;
    assert_eq!(bytes, std::fs::read(&cached(&app, big, 1)[0]).unwrap());
    assert_eq!((img.dimensions(), red_corner(&img)), ((800, 600), "tl"));
    let rot = app.api.file_id("c_rot6.jpg").await;
    let (_, _, img) = thumb_ok(&app.api, rot, json!(0)).await;
    assert_eq!((img.dimensions(), red_corner(&img)), ((120, 160), "tr"));
    assert_eq!(app.state().thumbs.renders(), 0, "all cache hits");

    // A changed original is rendered again after the scan that sees it.
    write_file(
        &app.media().join("lib/a_big.jpg"),
        &jpeg(800, 200, SEED, Some(3)),
    );
    app.rescan().await;
    let again = prerendered(&app).await;
    assert_eq!(again.written, status.written + 2, "{again:?}");
    let (_, _, img) = thumb_ok(&app.api, big, json!(0)).await;
    assert_eq!((img.dimensions(), red_corner(&img)), ((160, 40), "br"));
    assert_eq!(app.state().thumbs.renders(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prerender_waits_out_an_offline_library_and_catches_up_on_its_return() {
    let app = TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .file("lib/a.jpg", &jpeg(1200, 900, SEED, None))
        .file("lib/sub/b.jpg", &jpeg(900, 1200, SEED, None))
        .spawn()
        .await;
    let first = prerendered(&app).await;
    assert_eq!(first.written, 4, "{first:?}");
    let ids = [
        app.api.file_id("a.jpg").await,
        app.api.file_id("b.jpg").await,
    ];

    // The disk goes away; its thumbnail cache is lost meanwhile (say, its
    // folder was cleaned up).
    std::fs::rename(app.media().join("lib"), app.media().join("away")).unwrap();
    assert_eq!(app.rescan().await.offline.len(), 1);
    let offline = prerendered(&app).await;
    assert_eq!(
        offline.failed, first.failed,
        "offline files are not failures"
    );
    std::fs::remove_dir_all(app.media().join("away/.isync/thumbs")).unwrap();

    // It comes back unchanged: no record changes, yet all of it is visited.
    std::fs::rename(app.media().join("away"), app.media().join("lib")).unwrap();
    let r = app.rescan().await;
    assert!(r.offline.is_empty() && !r.changed_anything(), "{r}");
    let back = prerendered(&app).await;
    assert_eq!(back.written, first.written + 4, "{back:?}");
    for id in ids {
        assert_eq!(cached(&app, id, 0).len() + cached(&app, id, 1).len(), 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_the_prerender_backlog() {
    // A backlog far longer than the bound below: 150 originals of 1024x768
    // (~15 ms a visit on an idle core, much more at nice 19 on a busy one).
    const N: u64 = 150;
    let mut b = TestApp::builder().user("alice").library("lib", &["alice"]);
    let photo = jpeg(1024, 768, SEED, None);
    for i in 0..N {
        b = b.file(&format!("lib/p{i:03}.jpg"), &photo);
    }
    let app = b.spawn().await;
    let threads = app
        .cfg
        .scan
        .prerender_threads
        .min(isync::media::prerender::default_threads()) as u64;
    let worker = app.state().prerender.clone();
    // Stop once the sweep has queued the backlog (not before: an empty
    // queue would prove nothing).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while worker.status().sweeps == 0 {
        assert!(std::time::Instant::now() < deadline, "no sweep");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let at_stop = worker.status();
    assert!(
        at_stop.visited + 2 * threads < N,
        "the backlog was already done, nothing to show: {at_stop:?}"
    );
    assert_eq!(at_stop.threads as u64, threads, "{at_stop:?}");
    app.stop().await;
    // Each thread finishes at most the original it was rendering when we
    // looked and the one it may have begun before the stop reached it, and
    // then ends (awaited as an event: how long a render takes at nice 19
    // on a busy machine is not the question, whether the backlog is left is).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while worker.status().threads > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the pre-render threads never ended after the stop: {:?}",
            worker.status()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let after = worker.status();
    assert!(
        after.visited <= at_stop.visited + 2 * threads,
        "kept rendering after the stop: {at_stop:?} then {after:?}"
    );
}

// ------------------------------------------------------------------ uploads

const BOUNDARY: &str = "isyncThumbTestBoundary2xQ9";

/// Announces `name` in the root catalog and uploads its original in one
/// request; returns the file id.
async fn upload_original(api: &Api, name: &str, bytes: &[u8]) -> i64 {
    let root = id(&api.catalogs("-1").await[0]);
    let v = api
        .post_form(
            "/uploadFileInfo.icc",
            json!({"cid": root, "name": name, "size": bytes.len(), "type": 1, "ext": "jpg"}),
        )
        .await;
    let file = data(&v)["id"].as_i64().unwrap_or_else(|| panic!("{v}"));
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"origin\"; filename=\"origin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let r = api
        .http
        .post(api.url("/uploadFile.icc"))
        .query(&json!({"id": file, "obp": 0}))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(data(&v)["fileInfo"]["size"], bytes.len(), "{v}");
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_upload_is_prerendered_without_the_watcher() {
    let app = TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .file("lib/old.jpg", &jpeg(400, 300, SEED, None))
        .watch(false)
        .spawn()
        .await;
    assert!(!app.cfg.watch.enabled, "no watcher scan can pick it up");
    let before = prerendered(&app).await;
    assert_eq!(before.written, 2, "{before:?}");

    let id = upload_original(&app.api, "new.jpg", &jpeg(1200, 900, SEED, None)).await;
    let after = prerendered(&app).await;
    // Both levels are on disk though nobody asked for a thumbnail, and no
    // scan ran: the completed upload asked the worker.
    for level in [0, 1] {
        assert_eq!(cached(&app, id, level).len(), 1, "level {level}: {after:?}");
    }
    assert_eq!(
        (after.written, after.sweeps),
        (before.written + 2, before.sweeps),
        "{after:?}"
    );
    assert_eq!(app.state().thumbs.renders(), 0, "no request rendered");
    // The request that follows is a cache hit, of the right picture.
    let (_, bytes, img) = thumb_ok(&app.api, id, json!(1)).await;
    assert_eq!(bytes, std::fs::read(&cached(&app, id, 1)[0]).unwrap());
    assert_eq!((img.dimensions(), red_corner(&img)), ((800, 600), "tl"));
    assert_eq!(app.state().thumbs.renders(), 0, "served from the cache");
}

/// README "Renames and moves keep ids … and cached thumbnails": a file
/// renamed, and a folder moved elsewhere with a file in it, keep their ids
/// and their cached thumbnails — the same files on disk (same inode, same
/// bytes), nothing rendered again by the pre-render worker or by a
/// request, and the thumbnail served is the cached one, of the right
/// picture.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_thumbnails_survive_a_rename_and_a_move() {
    let app = TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .file("lib/a.jpg", &jpeg(1600, 1200, SEED, None))
        .file("lib/sub/b.jpg", &jpeg(400, 300, SEED, Some(6)))
        .dir("lib/elsewhere")
        .watch(false)
        .spawn()
        .await;
    let before = prerendered(&app).await;
    assert_eq!(before.written, 4, "{before:?}");
    let ids = [
        app.api.file_id("a.jpg").await,
        app.api.file_id("b.jpg").await,
    ];
    let on_disk = |id: i64| -> Vec<(std::path::PathBuf, u64, Vec<u8>)> {
        [0, 1]
            .into_iter()
            .flat_map(|level| cached(&app, id, level))
            .map(|p| {
                let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&p).unwrap());
                let bytes = std::fs::read(&p).unwrap();
                (p, ino, bytes)
            })
            .collect()
    };
    let cache: Vec<_> = ids.iter().map(|&id| on_disk(id)).collect();
    assert!(cache.iter().all(|c| c.len() == 2), "two levels each");

    let lib = app.media().join("lib");
    std::fs::rename(lib.join("a.jpg"), lib.join("renamed.jpg")).unwrap();
    std::fs::rename(lib.join("sub"), lib.join("elsewhere/moved")).unwrap();
    let report = app.rescan().await;
    assert_eq!(
        (report.added, report.removed, report.moved),
        (0, 0, 1),
        "{report}"
    );
    assert_eq!(report.catalogs_moved, 1, "{report}");
    assert_eq!(app.api.file_id("renamed.jpg").await, ids[0]);
    assert_eq!(app.api.file_id("b.jpg").await, ids[1]);

    let after = prerendered(&app).await;
    assert_eq!(
        after.written, before.written,
        "nothing rendered again: {after:?}"
    );
    for (id, was) in ids.iter().zip(&cache) {
        assert_eq!(&on_disk(*id), was, "the cached files of {id} are kept");
    }
    let (_, bytes, img) = thumb_ok(&app.api, ids[0], json!(1)).await;
    assert_eq!(bytes, std::fs::read(&cached(&app, ids[0], 1)[0]).unwrap());
    assert_eq!((img.dimensions(), red_corner(&img)), ((800, 600), "tl"));
    let (_, bytes, img) = thumb_ok(&app.api, ids[1], json!(0)).await;
    assert_eq!(bytes, std::fs::read(&cached(&app, ids[1], 0)[0]).unwrap());
    assert_eq!((img.dimensions(), red_corner(&img)), ((120, 160), "tr"));
    assert_eq!(app.state().thumbs.renders(), 0, "served from the cache");
}

// ------------------------------------------------------------------ attacks

/// Opens of files in a folder, seen through inotify: what the server (and
/// the ffmpeg/ffprobe it starts) opened or read there.
struct OpenWatch {
    fd: std::os::fd::OwnedFd,
}

impl OpenWatch {
    fn new(dir: &std::path::Path) -> OpenWatch {
        use rustix::fs::inotify;
        let fd = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC)
            .expect("inotify");
        inotify::add_watch(
            &fd,
            dir,
            inotify::WatchFlags::OPEN | inotify::WatchFlags::ACCESS,
        )
        .expect("watch");
        OpenWatch { fd }
    }

    /// Names of the files opened or read since the last call.
    fn touched(&self) -> Vec<String> {
        let mut buf = [std::mem::MaybeUninit::uninit(); 8192];
        let mut reader = rustix::fs::inotify::Reader::new(&self.fd, &mut buf);
        let mut names = Vec::new();
        while let Ok(ev) = reader.next() {
            if let Some(n) = ev.file_name() {
                names.push(n.to_string_lossy().into_owned());
            }
        }
        names
    }
}

/// An MPEG-TS video (what an HLS playlist lists) of a solid `colour`.
fn ts_video(colour: &str) -> Option<Vec<u8>> {
    if !ffmpeg_available() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("v.ts");
    let st = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(format!("color=c={colour}:s=320x240:r=10:d=3"))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    Some(std::fs::read(out).unwrap())
}

/// Announces `name` (`ext`, wire `type`) in the root catalog and uploads
/// its original; returns the file id.
async fn upload_as(api: &Api, name: &str, ext: &str, kind: i64, bytes: &[u8]) -> i64 {
    let root = id(&api.catalogs("-1").await[0]);
    let v = api
        .post_form(
            "/uploadFileInfo.icc",
            json!({"cid": root, "name": name, "size": bytes.len(), "type": kind, "ext": ext}),
        )
        .await;
    let file = data(&v)["id"].as_i64().unwrap_or_else(|| panic!("{v}"));
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"origin\"; filename=\"origin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let r = api
        .http
        .post(api.url("/uploadFile.icc"))
        .query(&json!({"id": file, "obp": 0}))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    file
}

/// Finding 7: an HLS playlist uploaded as a video (named `.m3u8`, or the
/// same bytes named `.mp4` in a library) listing another user's video by
/// its path. ffprobe (scan) and ffmpeg (thumbnails) used to follow it and
/// decode bob's video for alice. Now neither runs on it at all: no
/// thumbnail, nothing of bob's opened, nothing learnt from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_playlist_posing_as_a_video_opens_no_other_file() {
    let Some(secret) = ts_video("red") else {
        return;
    };
    let b = TestApp::builder()
        .user("alice")
        .user("bob")
        .library("photos", &["alice"])
        .library("bobs", &["bob"])
        .file("bobs/secret.ts", &secret);
    let target = b.media().join("bobs/secret.ts");
    let playlist = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXTINF:3.0,\n{}\n\
         #EXTINF:3.0,\nfile:{}\n#EXT-X-ENDLIST\n",
        target.display(),
        target.display()
    );
    // Watched from before the server starts: the initial scan's ffprobe
    // counts too. The scan of bob's own library opens secret.ts (every
    // listed file is checked readable): `bob_scanned` is the scan's opens
    // of it, all before the first request, and only those.
    let opens = OpenWatch::new(&b.media().join("bobs"));
    let app = b.file("photos/evil.mp4", playlist.as_bytes()).spawn().await;
    let bob_scanned = opens.touched().iter().filter(|n| *n == "secret.ts").count();
    assert!(
        bob_scanned <= 1,
        "the scan opened secret.ts {bob_scanned} times"
    );
    let uploaded = upload_as(&app.api, "evil.m3u8", "m3u8", 4, playlist.as_bytes()).await;
    prerendered(&app).await;
    let in_library = app.api.file_id("evil.mp4").await;
    let listed = app.api.file_named("evil.mp4").await;
    assert!(
        listed.get("width").is_none() && listed.get("duration").is_none(),
        "the probe learnt nothing from bob's video: {listed}"
    );
    let before = app.db_snapshot().await;
    for id in [in_library, uploaded] {
        for level in [0, 1] {
            let r = thumb(&app.api, id, json!(level)).await;
            assert_binary_err_status(r, 404, -10008).await;
        }
    }
    assert!(cached(&app, in_library, 1).is_empty() && cached(&app, uploaded, 1).is_empty());
    let touched = opens.touched();
    assert!(
        !touched.iter().any(|n| n == "secret.ts"),
        "bob's video was opened: {touched:?}"
    );
    // Failing is sticky (spec §2.3), nothing else changed.
    let after = app.db_snapshot().await;
    let changed: Vec<_> = before
        .lines()
        .zip(after.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert!(
        changed.iter().all(|(a, _)| a.starts_with("files")),
        "{changed:?}"
    );
    // The watch does see an open of that file.
    drop(std::fs::File::open(&target).unwrap());
    assert!(opens.touched().iter().any(|n| n == "secret.ts"));
}

/// Finding 5, thumbnail side: a listed file (or a folder on its path)
/// swapped for a symlink to another user's file, or replaced by another
/// file, between the scan and a request. The thumbnail used to show the
/// other file; now the request answers −10006 and nothing is cached or
/// recorded, for photos and for the video ffmpeg reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_file_swapped_for_a_symlink_gives_no_thumbnail_of_its_target() {
    let blue = solid_jpeg(640, 480, [20, 20, 230]);
    let red = solid_jpeg(640, 480, [230, 20, 20]);
    let mut b = TestApp::builder()
        .user("alice")
        .user("bob")
        .library("photos", &["alice"])
        .library("bobs", &["bob"])
        .file("photos/pic.jpg", &blue)
        .file("photos/copy.jpg", &blue)
        .file("photos/sub/pic2.jpg", &blue)
        .file("bobs/secret.jpg", &red)
        .file("bobs/sub/pic2.jpg", &red);
    let video = av(Av::Mp4);
    if let Some(mp4) = video {
        b = b.file("photos/clip.mp4", mp4).file("bobs/secret.mp4", mp4);
    }
    let app = b.spawn().await;
    prerendered(&app).await;
    let media = app.media();
    let mut names = vec!["pic.jpg", "copy.jpg", "pic2.jpg"];
    if video.is_some() {
        names.push("clip.mp4");
    }
    let mut ids = Vec::new();
    for name in &names {
        let id = app.api.file_id(name).await;
        // Not served from what the pre-render made before the swap.
        for level in [0, 1] {
            for p in cached(&app, id, level) {
                std::fs::remove_file(p).unwrap();
            }
        }
        ids.push(id);
    }
    // The swaps: a file link, a folder link, another file under the name
    // (the recorded one kept aside, so its inode is not reused).
    let aside = app.root().join("aside");
    std::fs::create_dir(&aside).unwrap();
    std::fs::rename(media.join("photos/pic.jpg"), aside.join("pic.jpg")).unwrap();
    std::os::unix::fs::symlink(media.join("bobs/secret.jpg"), media.join("photos/pic.jpg"))
        .unwrap();
    std::fs::rename(media.join("photos/sub"), aside.join("sub")).unwrap();
    std::os::unix::fs::symlink(media.join("bobs/sub"), media.join("photos/sub")).unwrap();
    std::fs::rename(media.join("photos/copy.jpg"), aside.join("copy.jpg")).unwrap();
    std::fs::copy(media.join("bobs/secret.jpg"), media.join("photos/copy.jpg")).unwrap();
    if video.is_some() {
        std::fs::rename(media.join("photos/clip.mp4"), aside.join("clip.mp4")).unwrap();
        std::os::unix::fs::symlink(media.join("bobs/secret.mp4"), media.join("photos/clip.mp4"))
            .unwrap();
    }
    let before = app.db_snapshot().await;
    let renders = app.state().thumbs.renders();
    for _ in 0..3 {
        for (name, id) in names.iter().zip(&ids) {
            for level in [0, 1] {
                let r = thumb(&app.api, *id, json!(level)).await;
                let status = r.status();
                let body = r.bytes().await.unwrap();
                let v: Value = serde_json::from_slice(&body)
                    .unwrap_or_else(|_| panic!("{name} level {level}: served {status}"));
                assert_eq!(v["code"], FILE_GONE, "{name} level {level}: {v}");
            }
        }
    }
    for id in &ids {
        assert!(cached(&app, *id, 0).is_empty() && cached(&app, *id, 1).is_empty());
    }
    assert_eq!(app.state().thumbs.renders(), renders, "nothing rendered");
    assert_eq!(app.db_snapshot().await, before, "nothing recorded");
}

/// A test skipped for a missing tool fails under `CI=true`: this binary's
/// video test, run again with ffmpeg out of `PATH`, is skipped (and
/// passes) without `CI`, and fails naming ffmpeg with `CI=true`.
#[test]
fn a_test_skipped_for_a_missing_tool_fails_under_ci() {
    let no_tools = tempfile::tempdir().unwrap();
    let run = |ci: bool| {
        let mut c = std::process::Command::new(std::env::current_exe().unwrap());
        c.args([
            "--exact",
            "thumbnail::videos_give_a_frame_that_is_not_black",
            "--nocapture",
        ])
        .env("PATH", no_tools.path())
        .env_remove("CI");
        if ci {
            c.env("CI", "true");
        }
        let o = c.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.success(), text)
    };
    let (ok, text) = run(false);
    assert!(ok && text.contains("skipping: ffmpeg not found"), "{text}");
    assert!(text.contains("1 passed"), "{text}");
    let (ok, text) = run(true);
    assert!(!ok, "passed under CI=true without ffmpeg: {text}");
    assert!(
        text.contains("ffmpeg is required when CI=true") && text.contains("1 failed"),
        "{text}"
    );
}

/// Mean absolute difference (0..255) of two same-size pictures over the
/// rows `from..to` (fractions of the height).
fn row_difference(a: &DynamicImage, b: &DynamicImage, from: f64, to: f64) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let (a, b) = (a.to_rgb8(), b.to_rgb8());
    let (w, h) = a.dimensions();
    let rows = (f64::from(h) * from) as u32..(f64::from(h) * to) as u32;
    let (mut sum, mut n) = (0u64, 0u64);
    for y in rows {
        for x in 0..w {
            for c in 0..3 {
                sum += u64::from(a.get_pixel(x, y)[c].abs_diff(b.get_pixel(x, y)[c]));
                n += 1;
            }
        }
    }
    sum as f64 / n as f64
}

/// A JPEG cut off in its scan (a failed copy, an upload still under way)
/// is shown as far as it goes when most of it is there, its missing rows
/// grey as libjpeg, browsers and iOS show them; cut 20 bytes into its scan
/// it is refused (−10008). Once the whole file is there it gets a fresh
/// thumbnail: the cache keys on the original's size and mtime, and the
/// scanner lifts a refusal when the file changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_jpeg_shows_its_top_until_the_rest_arrives() {
    let whole = jpeg(600, 800, SEED, None);
    let sos = whole.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    let cut = &whole[..sos + (whole.len() - sos) * 6 / 10];
    let early = &whole[..sos + 20];
    let app = TestApp::builder()
        .user("alice")
        .library("photos", &["alice"])
        .file("photos/whole.jpg", &whole)
        .file("photos/cut.jpg", cut)
        .file("photos/early.jpg", early)
        .spawn()
        .await;
    let reference = app.api.file_id("whole.jpg").await;
    let (_, _, intact) = thumb_ok(&app.api, reference, json!(1)).await;
    assert_eq!(intact.dimensions(), (600, 800));

    let id = app.api.file_id("cut.jpg").await;
    let (_, _, shown) = thumb_ok(&app.api, id, json!(1)).await;
    assert_eq!(shown.dimensions(), (600, 800));
    assert_eq!(red_corner(&shown), "tl");
    let top = row_difference(&intact, &shown, 0.0, 0.5);
    assert!(
        top < 2.0,
        "the top half differs from the intact file's by {top}"
    );
    let grey = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(600, 800, image::Rgb([128; 3])));
    let bottom = row_difference(&grey, &shown, 0.9, 1.0);
    assert!(bottom < 3.0, "the missing rows are not grey: {bottom} off");
    assert!(
        row_difference(&grey, &intact, 0.9, 1.0) > 30.0,
        "the intact bottom is no grey"
    );

    let early_id = app.api.file_id("early.jpg").await;
    assert_binary_err_status(thumb(&app.api, early_id, json!(1)).await, 404, -10008).await;

    // The rest arrives: both are shown whole.
    write_file(&app.media().join("photos/cut.jpg"), &whole);
    write_file(&app.media().join("photos/early.jpg"), &whole);
    app.rescan().await;
    for (name, id) in [("cut.jpg", id), ("early.jpg", early_id)] {
        let (_, _, img) = thumb_ok(&app.api, id, json!(1)).await;
        let all = row_difference(&intact, &img, 0.0, 1.0);
        assert!(all < 2.0, "{name}: not the whole picture ({all} off)");
    }
}
