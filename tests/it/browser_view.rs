//! Browser-viewable originals (issue 15, isync's `viewFile.icc`): a HEIC
//! grid (turned by `irot`) and a TIFF come back as JPEGs of their displayed
//! size, upright (the colour of each corner of a known pattern), rendered
//! once however many requests ask (the cache's render counter) and kept in
//! the thumbnail store as a level of their own; ranges and conditional
//! requests as for downloads; a JPEG original is sent as itself; a share
//! link opened by a browser shows the JPEG and still downloads the
//! original; an account without `browse` is refused with downFile.icc's
//! code, and so is a user asking for a file of a library out of their
//! reach; a bad or unknown id is an error that changes nothing. Real server,
//! real ffmpeg (libx265 through `common/heifmux.rs`), real files.

use crate::common;
use common::heifmux;

use common::*;
use image::{DynamicImage, GenericImageView};
use isync::accounts::{self, Actor};
use serde_json::json;
use std::path::{Path, PathBuf};

const RED: [u8; 3] = [255, 0, 0];
const GREEN: [u8; 3] = [0, 255, 0];
const BLUE: [u8; 3] = [0, 0, 255];
const YELLOW: [u8; 3] = [255, 255, 0];

/// `w`×`h`: red, green / blue, yellow quadrants.
fn quadrants(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            out.extend_from_slice(match (x < w / 2, y < h / 2) {
                (true, true) => &RED,
                (false, true) => &GREEN,
                (true, false) => &BLUE,
                (false, false) => &YELLOW,
            });
        }
    }
    out
}

/// The colours at the four corners (inset by an eighth), top-left,
/// top-right, bottom-left, bottom-right, each snapped to the nearest of the
/// four pattern colours.
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

/// A 1200x900 HEIC: a 5x4 grid of 256² tiles (the last row and column
/// padded), turned 90° counter-clockwise by `irot`: displayed 900x1200.
fn turned_grid_heic() -> Vec<u8> {
    let mut spec = heifmux::grid(
        &quadrants(1200, 900),
        1200,
        900,
        256,
        4,
        5,
        heifmux::Codec::Hevc,
        false,
    );
    spec.irot = Some(1);
    heifmux::mux(&spec)
}

/// A 1000x750 RGB TIFF of the pattern.
fn tiff() -> Vec<u8> {
    let img = image::RgbImage::from_raw(1000, 750, quadrants(1000, 750)).unwrap();
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Tiff).unwrap();
    out.into_inner()
}

async fn view(api: &Api, id: i64, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut rq = api.http.get(api.url("/viewFile.icc")).query(&[("id", id)]);
    for (k, v) in headers {
        rq = rq.header(*k, *v);
    }
    rq.send().await.expect("request")
}

/// A view that must be a JPEG rendering: its image, its body, and the size
/// its headers state.
async fn view_jpeg(api: &Api, id: i64) -> (DynamicImage, Vec<u8>, (u32, u32)) {
    let r = view(api, id, &[]).await;
    assert_eq!(r.status(), 200, "file {id}");
    assert_eq!(header(&r, "content-type"), "image/jpeg");
    assert_eq!(header(&r, "x-isync-reduced"), "0", "full size");
    let said = (
        header(&r, "x-isync-width").parse().unwrap(),
        header(&r, "x-isync-height").parse().unwrap(),
    );
    let body = r.bytes().await.unwrap().to_vec();
    let img = image::load_from_memory_with_format(&body, image::ImageFormat::Jpeg).expect("a JPEG");
    (img, body, said)
}

/// The files in the cache folders below `dir` whose names start `prefix`.
fn cached(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if e.file_name().to_string_lossy().starts_with(prefix) {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heic_and_tiff_are_shown_as_upright_full_size_jpegs_rendered_once() {
    if !ffmpeg_available() {
        return;
    }
    let heic = turned_grid_heic();
    let app = TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .prerender(false)
        .file("lib/IMG_0001.HEIC", &heic)
        .file("lib/scan.tif", &tiff())
        .spawn()
        .await;
    let api = &app.api;
    let heic_id = api.file_id("IMG_0001.HEIC").await;
    let tiff_id = api.file_id("scan.tif").await;
    let thumbs = &app.state().thumbs;

    // The HEIC: every tile in its place, turned upright, at full size.
    let before = thumbs.renders();
    let (img, first, said) = view_jpeg(api, heic_id).await;
    assert_eq!(img.dimensions(), (900, 1200), "the displayed size");
    assert_eq!(said, (900, 1200), "the headers say it");
    assert_eq!(corners(&img), [GREEN, YELLOW, RED, BLUE], "turned upright");
    assert_eq!(thumbs.renders(), before + 1);
    // Cached: the same bytes again, nothing rendered, kept as level 2.
    let (_, again, _) = view_jpeg(api, heic_id).await;
    assert_eq!(again, first);
    assert_eq!(thumbs.renders(), before + 1, "a cache hit");
    let kept = cached(app.root(), &format!("{heic_id}_2_"));
    assert_eq!(kept.len(), 1, "one cached view: {kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), first);

    // The TIFF, asked for twice at once: one render.
    let before = thumbs.renders();
    let (a, b) = tokio::join!(view_jpeg(api, tiff_id), view_jpeg(api, tiff_id));
    assert_eq!(thumbs.renders(), before + 1, "single flight");
    assert_eq!(a.1, b.1);
    assert_eq!(a.0.dimensions(), (1000, 750));
    assert_eq!(corners(&a.0), [RED, GREEN, BLUE, YELLOW]);

    // Ranges and validators as for downloads.
    let r = view(api, heic_id, &[("Range", "bytes=0-99")]).await;
    assert_eq!(r.status(), 206);
    assert_eq!(
        header(&r, "content-range"),
        format!("bytes 0-99/{}", first.len())
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &first[..100]);
    let etag = header(&view(api, heic_id, &[]).await, "etag");
    assert!(!etag.is_empty());
    let r = view(api, heic_id, &[("If-None-Match", &etag)]).await;
    assert_eq!(r.status(), 304);
    assert_eq!(thumbs.renders(), before + 1, "all from the cache");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jpeg_is_its_own_view_and_refusals_match_downloads_and_change_nothing() {
    if !ffmpeg_available() {
        return;
    }
    let photo = jpeg(640, 480, 7, Some(6));
    let app = TestApp::builder()
        .user("alice")
        .user("bob")
        .library("lib", &["alice", "bob"])
        .prerender(false)
        .file("lib/photo.jpg", &photo)
        .file("lib/IMG_0002.HEIC", &turned_grid_heic())
        .file("lib/notes.txt", b"not a photo")
        .spawn()
        .await;
    let api = &app.api;
    let jpg = api.file_id("photo.jpg").await;
    let heic = api.file_id("IMG_0002.HEIC").await;
    let txt = api.file_id("notes.txt").await;
    let renders = app.state().thumbs.renders();

    // A JPEG is sent as itself, as downFile.icc sends it.
    let r = view(api, jpg, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "image/jpeg");
    assert_eq!(header(&r, "x-isync-width"), "", "not a rendering");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &photo[..]);

    // An account whose type lacks `browse`: refused as downFile.icc is.
    let db = app.db().clone();
    tokio::task::spawn_blocking(move || {
        accounts::upsert_type(&db, Actor::Console, "nobody", "").unwrap();
        accounts::set_type(&db, Actor::Console, "bob", "nobody").unwrap();
    })
    .await
    .unwrap();
    let bob = app.login("bob").await;
    let before = app.db_snapshot().await;
    let down = bob.download(heic, &[]).await;
    let (down_status, down_code) = (down.status().as_u16(), NO_PERMISSION);
    assert_binary_err_status(down, down_status, down_code).await;
    assert_binary_err_status(view(&bob, heic, &[]).await, down_status, down_code).await;

    // Bad input: an unknown id, a non-number, a file that is no photo.
    assert_binary_err_status(view(api, 987_654, &[]).await, 404, NOT_FOUND).await;
    let r = api
        .http
        .get(api.url("/viewFile.icc"))
        .query(&[("id", "seven")])
        .send()
        .await
        .unwrap();
    assert_binary_err_status(r, 400, BAD_PARAM).await;
    assert_binary_err_status(view(api, txt, &[]).await, 404, WRONG_FILE_TYPE).await;
    assert_eq!(app.db_snapshot().await, before, "refusals changed nothing");
    assert_eq!(app.state().thumbs.renders(), renders, "nothing rendered");
    assert!(cached(app.root(), &format!("{heic}_2_")).is_empty());
    app.stop().await;
}

/// The status, content type and `{code, msg}` of a refusal.
async fn refusal(r: reqwest::Response) -> (u16, String, i64, String) {
    let status = r.status().as_u16();
    let ctype = header(&r, "content-type");
    let v: serde_json::Value = r.json().await.expect("a JSON error");
    let msg = v["msg"].as_str().unwrap_or_default().to_owned();
    (status, ctype, v["code"].as_i64().expect("a code"), msg)
}

/// Bob's session reaches his library only: asking viewFile.icc for the id
/// of a photo in Alice's library (a HEIC that would be rendered, a JPEG
/// that would be sent as itself) gets what downFile.icc answers for that
/// id, which is what an id nobody has gets; nothing is rendered, cached or
/// changed, and the answer names nothing of the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_another_users_library_is_refused_as_downloads_are() {
    if !ffmpeg_available() {
        return;
    }
    let photo = jpeg(640, 480, 7, None);
    let app = TestApp::builder()
        .user("alice")
        .user("bob")
        .library("alice_lib", &["alice"])
        .library("bob_lib", &["bob"])
        .prerender(false)
        .file("alice_lib/IMG_0003.HEIC", &turned_grid_heic())
        .file("alice_lib/private.jpg", &photo)
        .file("bob_lib/mine.jpg", &jpeg(64, 48, 3, None))
        .spawn()
        .await;
    let alice = &app.api;
    let heic = alice.file_id("IMG_0003.HEIC").await;
    let jpg = alice.file_id("private.jpg").await;
    let bob = app.login("bob").await;
    let mine = bob.file_id("mine.jpg").await;
    assert_eq!(bob.all_files().await.len(), 1, "bob sees his file only");
    let renders = app.state().thumbs.renders();
    let before = app.db_snapshot().await;

    let nobodys = refusal(bob.download(987_654, &[]).await).await;
    for id in [heic, jpg] {
        let down = refusal(bob.download(id, &[]).await).await;
        let viewed = refusal(view(&bob, id, &[]).await).await;
        assert_eq!(viewed, down, "file {id}");
        assert!(down.0 >= 400 && down.2 < 0, "a refusal: {down:?}");
        assert_eq!(
            (viewed.0, viewed.2),
            (nobodys.0, nobodys.2),
            "as an id nobody has"
        );
        for name in ["IMG_0003", "private", "alice_lib"] {
            assert!(!viewed.3.contains(name), "{name} in {viewed:?}");
        }
    }
    assert_eq!(app.db_snapshot().await, before, "refusals changed nothing");
    assert_eq!(app.state().thumbs.renders(), renders, "nothing rendered");
    assert!(cached(app.root(), &format!("{heic}_")).is_empty());
    assert!(cached(app.root(), &format!("{jpg}_")).is_empty());

    // Alice is shown both; Bob his own.
    let (img, _, _) = view_jpeg(alice, heic).await;
    assert_eq!(img.dimensions(), (900, 1200));
    let r = view(alice, jpg, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &photo[..]);
    assert_eq!(view(&bob, mine, &[]).await.status(), 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_heic_shows_a_browser_the_jpeg_and_downloads_the_original() {
    if !ffmpeg_available() {
        return;
    }
    let heic = turned_grid_heic();
    let app = TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .prerender(false)
        .file("lib/IMG_0003.HEIC", &heic)
        .spawn()
        .await;
    let api = &app.api;
    let id = api.file_id("IMG_0003.HEIC").await;
    let v = api.get_json("/shareFileUrl.icc", json!({"id": id})).await;
    let key = data(&v).as_str().unwrap().to_string();
    let anon = app.anon();
    let get = |accept: Option<&'static str>, extra: Option<(&'static str, &'static str)>| {
        let mut rq = anon
            .http
            .get(anon.url("/shareFile.icc"))
            .query(&[("shareKey", key.as_str())]);
        if let Some((k, v)) = extra {
            rq = rq.query(&[(k, v)]);
        }
        if let Some(a) = accept {
            rq = rq.header("Accept", a);
        }
        rq.send()
    };
    let page = Some("text/html,application/xhtml+xml,*/*;q=0.8");

    // A browser opening the link: the JPEG, upright, inline.
    let r = get(page, None).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "image/jpeg");
    assert!(header(&r, "content-disposition").starts_with("inline"));
    assert!(header(&r, "content-disposition").contains("IMG_0003.jpg"));
    let img = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(img.dimensions(), (900, 1200));
    assert_eq!(corners(&img), [GREEN, YELLOW, RED, BLUE]);
    // `view=1` asks for it whatever the Accept.
    let r = get(None, Some(("view", "1"))).await.unwrap();
    assert_eq!(header(&r, "content-type"), "image/jpeg");

    // An app, or `original=1`: the original, byte for byte.
    for (accept, extra) in [(None, None), (page, Some(("original", "1")))] {
        let r = get(accept, extra).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_ne!(header(&r, "content-type"), "image/jpeg");
        assert_eq!(r.bytes().await.unwrap().as_ref(), &heic[..]);
    }
    app.stop().await;
}
