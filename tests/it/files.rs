//! `files.icc` (spec §3.3, §3.4, §2.5, §6.9): paging and its bounds, every
//! sort against an order computed here, the filters, and the FileInfo of
//! each media type (type bits, display dimensions, orientation, duration).

use crate::common;

use common::*;
use serde_json::{json, Value};
use std::cmp::Ordering;

const T0: u64 = 1_500_000_000;

/// A library whose files differ in every sort key, with ties and nulls:
/// equal createTimes, equal sizes, equal widths with different heights,
/// equal durations, and files without duration or dimensions.
async fn sortable() -> TestApp {
    TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .file("lib/img1.jpg", &jpeg(64, 48, 1, None))
        .file("lib/img2.jpg", &jpeg(64, 32, 2, None))
        .file("lib/img3.jpg", &jpeg(120, 90, 3, None))
        .file("lib/rot6.jpg", &jpeg(80, 60, 4, Some(6)))
        .file("lib/anim.gif", &gif(20, 10, 4, 25))
        .file("lib/anim2.gif", &gif(30, 10, 2, 50))
        .file("lib/note.txt", b"12345")
        .file("lib/note2.txt", b"abcde")
        .file("lib/sub/in_sub.jpg", &jpeg(50, 50, 5, None))
        .with_media(|m| {
            for (name, t) in [
                ("img1.jpg", T0 + 100),
                ("img2.jpg", T0 + 100),
                ("img3.jpg", T0 + 50),
                ("rot6.jpg", T0 + 300),
                ("anim.gif", T0 + 200),
                ("anim2.gif", T0 + 10),
                ("note.txt", T0 + 400),
                ("note2.txt", T0 + 400),
                ("sub/in_sub.jpg", T0 + 20),
            ] {
                set_mtime(&m.join("lib").join(name), t);
            }
        })
        .spawn()
        .await
}

/// Adds a file record as an upload by `uploader` would leave it (the upload
/// API is not part of this server yet). `status_origin` 2 = still uploading.
async fn insert_upload(
    app: &TestApp,
    catalog: i64,
    name: &str,
    uploader: i64,
    upload_time: i64,
    status_origin: i64,
) -> i64 {
    let name = name.to_string();
    app.db()
        .write_async(move |tx| {
            tx.execute(
                "INSERT INTO files(catalog_id, real_catalog_id, root_id, disk_name, name, ext, \
                 create_time, upload_time, import_time, last_modify, size, type, upload_user_id, \
                 status_origin) \
                 SELECT id, id, root_id, ?2, ?2, 'jpg', ?3, ?3, ?3, ?3, 999, 1, ?4, ?5 \
                 FROM catalogs WHERE id = ?1",
                rusqlite::params![catalog, name, upload_time, uploader, status_origin],
            )?;
            Ok(tx.last_insert_rowid())
        })
        .await
        .expect("insert upload")
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// The order spec §2.5 prescribes for `sort`, computed from the FileInfos.
fn expected_order(files: &[Value], sort: i64) -> Vec<i64> {
    let keys = |f: &Value| -> Vec<Option<f64>> {
        match sort.abs() {
            1 => vec![num(&f["createTime"])],
            2 => vec![num(&f["uploadTime"])],
            3 => vec![num(&f["size"])],
            4 => vec![num(&f["duration"])],
            5 => vec![num(&f["width"]), num(&f["height"])],
            _ => vec![],
        }
    };
    let desc = sort < 0;
    let mut v: Vec<&Value> = files.iter().collect();
    v.sort_by(|a, b| {
        let mut o = Ordering::Equal;
        for (x, y) in keys(a).into_iter().zip(keys(b)) {
            // Nulls first ascending, last descending.
            let k = match (x, y) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(x), Some(y)) => x.partial_cmp(&y).unwrap(),
            };
            o = o.then(if desc { k.reverse() } else { k });
        }
        o.then(id(a).cmp(&id(b)))
    });
    v.into_iter().map(id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sort_matches_the_spec_order() {
    let app = sortable().await;
    let alice = app.user_id("alice").await;
    let root = id(&app.api.catalogs("-1").await[0]);
    insert_upload(&app, root, "up_late.jpg", alice, 1_700_000_000, 0).await;
    insert_upload(&app, root, "up_early.jpg", alice, 1_600_000_000, 0).await;
    let all = app.api.all_files().await;
    assert_eq!(all.len(), 11, "{all:#?}");
    // The fixtures really have ties and nulls for each key.
    let count = |k: &str, v: Value| all.iter().filter(|f| f[k] == v).count();
    assert_eq!(count("createTime", json!(T0 + 100)), 2);
    assert_eq!(count("createTime", json!(T0 + 400)), 2);
    assert_eq!(count("size", json!(5)), 2);
    assert!(all.iter().filter(|f| f.get("duration").is_none()).count() > 2);
    assert!(all.iter().filter(|f| f.get("width").is_none()).count() >= 2);
    assert!(all.iter().filter(|f| f["width"] == 64).count() == 2);

    // Storage order is stable between calls.
    assert_eq!(ids(&all), ids(&app.api.all_files().await));
    for sort in (-5..=5).filter(|s| *s != 0) {
        let got = app
            .api
            .files(json!({"pageIndex": 0, "maxPerPage": 10000, "sort": sort}))
            .await;
        assert_eq!(ids(&got), expected_order(&all, sort), "sort {sort}");
        // Paging through the same sort gives the same sequence.
        let mut paged = Vec::new();
        for page in 0..2 {
            let p = app
                .api
                .files(json!({"pageIndex": page, "maxPerPage": 10, "sort": sort}))
                .await;
            paged.extend(ids(&p));
        }
        assert_eq!(paged, ids(&got), "paged sort {sort}");
    }
    // Spot checks a reader can verify by hand.
    let names = |list: Vec<Value>| -> Vec<String> {
        list.iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    };
    let by_size_desc = names(
        app.api
            .files(json!({"pageIndex": 0, "sort": -3, "types": "16"}))
            .await,
    );
    assert_eq!(
        by_size_desc,
        ["note.txt", "note2.txt"],
        "ties by id ascending"
    );
    let by_duration = names(
        app.api
            .files(json!({"pageIndex": 0, "sort": 4, "types": "2"}))
            .await,
    );
    assert_eq!(
        by_duration,
        ["anim.gif", "anim2.gif"],
        "equal durations: id ascending"
    );
    let uploads = names(
        app.api
            .files(json!({"pageIndex": 0, "sort": -2, "onlySelfUpload": 1}))
            .await,
    );
    assert_eq!(uploads, ["up_late.jpg", "up_early.jpg"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_out_of_range_is_storage_order() {
    let app = sortable().await;
    let storage = ids(&app.api.all_files().await);
    for sort in [
        json!(6),
        json!(-6),
        json!(100),
        json!("abc"),
        json!(i64::MIN),
    ] {
        let v = app
            .api
            .get_json("/files.icc", json!({"pageIndex": 0, "sort": sort}))
            .await;
        assert_eq!(
            ids(data(&v)["list"].as_array().unwrap()),
            storage,
            "sort {sort}"
        );
        assert!(data(&v)["page"].is_object(), "{v}");
    }
}

async fn many_files(n: usize) -> TestApp {
    let mut b = TestApp::builder().user("alice").library("lib", &["alice"]);
    for i in 0..n {
        b = b.file(&format!("lib/f{i:03}.txt"), format!("{i}").as_bytes());
    }
    b.spawn().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_and_page_size_bounds() {
    let app = many_files(25).await;
    let page = |idx: i64, per: Value| {
        let api = app.api.clone();
        async move {
            let v = api
                .get_json("/files.icc", json!({"pageIndex": idx, "maxPerPage": per}))
                .await;
            data(&v).clone()
        }
    };
    let mut seen = Vec::new();
    for (idx, want) in [(0, 10), (1, 10), (2, 5), (3, 0), (50, 0)] {
        let d = page(idx, json!(10)).await;
        assert_eq!(
            d["page"],
            json!({"pageIndex": idx, "maxPerPage": 10, "pageCount": 3}),
            "{d}"
        );
        let list = d["list"].as_array().unwrap();
        assert_eq!(list.len(), want, "page {idx}");
        seen.extend(ids(list));
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 25, "pages overlap or miss files: {seen:?}");

    // Out-of-range or invalid page sizes mean the default, 100.
    for per in [
        json!(5),
        json!(9),
        json!(10001),
        json!(0),
        json!(-10),
        json!("abc"),
        json!(""),
    ] {
        let d = page(0, per.clone()).await;
        assert_eq!(d["page"]["maxPerPage"], 100, "maxPerPage {per}");
        assert_eq!(d["page"]["pageCount"], 1);
        assert_eq!(d["list"].as_array().unwrap().len(), 25);
    }
    for per in [10, 10000] {
        assert_eq!(page(0, json!(per)).await["page"]["maxPerPage"], per);
    }
    // Without maxPerPage.
    let v = app
        .api
        .get_json("/files.icc", json!({"pageIndex": 0}))
        .await;
    assert_eq!(data(&v)["page"]["maxPerPage"], 100);
    // No matches: pageCount 0.
    let v = app
        .api
        .get_json("/files.icc", json!({"pageIndex": 0, "types": "4"}))
        .await;
    assert_eq!(
        data(&v),
        &json!({"list": [], "page": {"pageIndex": 0, "maxPerPage": 100, "pageCount": 0}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_by_root_catalog_type_and_uploader() {
    let app = TestApp::builder()
        .user("alice")
        .user("bob")
        .library("a", &["alice"])
        .library("b", &["alice", "bob"])
        .file("a/one.jpg", &jpeg(40, 30, 1, None))
        .file("a/two.gif", &gif(8, 8, 2, 10))
        .file("a/sub/three.jpg", &jpeg(40, 30, 2, None))
        .file("a/sub/four.txt", b"4")
        .file("b/five.jpg", &jpeg(40, 30, 3, None))
        .spawn()
        .await;
    let alice = app.user_id("alice").await;
    let bob = app.user_id("bob").await;
    let roots = app.api.catalogs("-1").await;
    let root = |n: &str| id(roots.iter().find(|c| c["name"] == n).unwrap());
    let (ra, rb) = (root("a"), root("b"));
    let sub = id(&app.api.catalogs(&ra.to_string()).await[0]);
    let mine = insert_upload(&app, rb, "mine.jpg", alice, 1_600_000_000, 0).await;
    insert_upload(&app, rb, "bobs.jpg", bob, 1_600_000_000, 0).await;
    let pending = insert_upload(&app, rb, "pending.jpg", alice, 1_600_000_000, 2).await;

    let names = |params: Value| {
        let api = app.api.clone();
        async move {
            let mut n: Vec<String> = api
                .files(params)
                .await
                .iter()
                .map(|f| f["name"].as_str().unwrap().to_string())
                .collect();
            n.sort();
            n
        }
    };
    let everything = [
        "bobs.jpg",
        "five.jpg",
        "four.txt",
        "mine.jpg",
        "one.jpg",
        "three.jpg",
        "two.gif",
    ];
    assert_eq!(
        names(json!({"pageIndex": 0})).await,
        everything,
        "uploads still in progress are hidden"
    );
    assert!(!ids(&app.api.all_files().await).contains(&pending));

    // rootIds narrows only when every id is one of the user's roots.
    assert_eq!(
        names(json!({"pageIndex": 0, "rootIds": ra.to_string()})).await,
        ["four.txt", "one.jpg", "three.jpg", "two.gif"]
    );
    assert_eq!(
        names(json!({"pageIndex": 0, "rootIds": format!("{ra},{rb}")})).await,
        everything
    );
    for other in [format!("{ra},999999"), sub.to_string(), "x".into()] {
        assert_eq!(
            names(json!({"pageIndex": 0, "rootIds": other})).await,
            everything,
            "rootIds {other}"
        );
    }
    // pids: files shown directly in those catalogs, not below them.
    assert_eq!(
        names(json!({"pageIndex": 0, "pids": ra.to_string()})).await,
        ["one.jpg", "two.gif"]
    );
    assert_eq!(
        names(json!({"pageIndex": 0, "pids": format!("{ra}, {sub}")})).await,
        ["four.txt", "one.jpg", "three.jpg", "two.gif"]
    );
    assert!(names(json!({"pageIndex": 0, "pids": "999999"}))
        .await
        .is_empty());
    // types.
    assert_eq!(
        names(json!({"pageIndex": 0, "types": "2"})).await,
        ["two.gif"]
    );
    assert_eq!(
        names(json!({"pageIndex": 0, "types": "2,16"})).await,
        ["four.txt", "two.gif"]
    );
    assert!(names(json!({"pageIndex": 0, "types": "32"}))
        .await
        .is_empty());
    assert_eq!(
        names(json!({"pageIndex": 0, "types": "1;2"})).await,
        everything,
        "invalid = absent"
    );
    // onlySelfUpload.
    assert_eq!(
        names(json!({"pageIndex": 0, "onlySelfUpload": 1})).await,
        ["mine.jpg"]
    );
    assert_eq!(
        names(json!({"pageIndex": 0, "onlySelfUpload": 0})).await,
        everything
    );
    assert_eq!(
        names(json!({"pageIndex": 0, "onlySelfUpload": "yes"})).await,
        everything
    );
    // Combined.
    assert_eq!(
        names(json!({"pageIndex": 0, "pids": format!("{sub},{rb}"), "types": "1", "rootIds": rb.to_string()})).await,
        ["bobs.jpg", "five.jpg", "mine.jpg"]
    );
    let f = app.api.file_named("mine.jpg").await;
    assert_eq!(f["id"], mine);
    assert_eq!(f["uploadUserId"], alice);
    assert_eq!(f["uploadTime"], 1_600_000_000);
}

fn assert_no_nulls_or_internals(f: &Value) {
    let obj = f.as_object().unwrap();
    for (k, v) in obj {
        assert!(!v.is_null(), "null {k} must be omitted: {f}");
    }
    for internal in [
        "statusForOrigin",
        "statusForThumb",
        "statusForScreen",
        "path",
        "diskName",
        "longitude",
        "latitude",
        "realCatalogId",
        "rootId",
    ] {
        assert!(
            !obj.contains_key(internal),
            "{internal} is not part of FileInfo: {f}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_info_of_images_gifs_and_other_files() {
    let a = jpeg(64, 48, 1, None);
    let app = TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .file("lib/a.jpg", &a)
        .file("lib/UPPER.JPG", &jpeg(16, 12, 2, None))
        .file("lib/rot3.jpg", &jpeg(80, 60, 3, Some(3)))
        .file("lib/rot5.jpg", &jpeg(80, 60, 4, Some(5)))
        .file("lib/rot6.jpg", &jpeg(80, 60, 5, Some(6)))
        .file("lib/rot7.jpg", &jpeg(80, 60, 6, Some(7)))
        .file("lib/rot8.jpg", &jpeg(80, 60, 7, Some(8)))
        .file("lib/anim.gif", &gif(20, 10, 4, 25))
        .file("lib/note.txt", b"some text")
        .file("lib/README", b"no extension")
        .with_media(|m| set_mtime(&m.join("lib/a.jpg"), T0))
        .spawn()
        .await;
    let root = id(&app.api.catalogs("-1").await[0]);
    let started = now_secs() - 120;
    for f in app.api.all_files().await {
        assert_no_nulls_or_internals(&f);
        assert_eq!(f["catalogId"], root, "{f}");
        assert!(f["createTime"].is_i64(), "createTime present: {f}");
        assert!(f["importTime"].as_i64().unwrap() >= started, "{f}");
        assert!(f["lastModifyTime"].is_i64(), "{f}");
        assert!(
            f.get("uploadUserId").is_none() && f.get("uploadTime").is_none(),
            "{f}"
        );
        assert!(f.get("uploadingOriginSize").is_none(), "{f}");
    }

    let f = app.api.file_named("a.jpg").await;
    assert_eq!(f["type"], 1);
    assert_eq!(f["ext"], "jpg");
    assert_eq!(f["size"], a.len());
    assert_eq!((&f["width"], &f["height"]), (&json!(64), &json!(48)));
    assert!(f["orientation"].is_null() || f["orientation"] == 1, "{f}");
    assert!(f.get("duration").is_none(), "{f}");
    assert_eq!(f["createTime"], T0, "earliest of ctime/mtime/atime");

    let f = app.api.file_named("UPPER.JPG").await;
    assert_eq!((&f["type"], &f["ext"]), (&json!(1), &json!("jpg")));

    // Display dimensions: swapped for orientations 5–8 (spec §2.4).
    for (name, o, w, h) in [
        ("rot3.jpg", 3, 80, 60),
        ("rot5.jpg", 5, 60, 80),
        ("rot6.jpg", 6, 60, 80),
        ("rot7.jpg", 7, 60, 80),
        ("rot8.jpg", 8, 60, 80),
    ] {
        let f = app.api.file_named(name).await;
        assert_eq!(
            (&f["orientation"], &f["width"], &f["height"]),
            (&json!(o), &json!(w), &json!(h)),
            "{f}"
        );
    }

    let f = app.api.file_named("anim.gif").await;
    assert_eq!((&f["type"], &f["ext"]), (&json!(2), &json!("gif")));
    assert_eq!((&f["width"], &f["height"]), (&json!(20), &json!(10)));
    let d = f["duration"].as_f64().expect("GIF duration");
    assert!((d - 1.0).abs() < 0.01, "4 frames × 0.25 s, got {d}");

    let f = app.api.file_named("note.txt").await;
    assert_eq!(
        (&f["type"], &f["ext"], &f["size"]),
        (&json!(16), &json!("txt"), &json!(9))
    );
    assert!(
        f.get("width").is_none() && f.get("duration").is_none(),
        "{f}"
    );
    let f = app.api.file_named("README").await;
    assert_eq!((&f["type"], &f["ext"]), (&json!(16), &json!("")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_info_of_video_and_audio() {
    let (Some(mp4), Some(rot), Some(m4a), Some(mp3)) =
        (av(Av::Mp4), av(Av::Mp4Rotated), av(Av::M4a), av(Av::Mp3))
    else {
        return;
    };
    let app = TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .file("lib/clip.mp4", mp4)
        .file("lib/CLIP2.MP4", mp4)
        .file("lib/rotated.mp4", rot)
        .file("lib/tone.m4a", m4a)
        .file("lib/tone.mp3", mp3)
        .spawn()
        .await;
    let near = |v: &Value, want: f64| {
        let d = v.as_f64().unwrap_or_else(|| panic!("no duration: {v}"));
        assert!((d - want).abs() < 0.2, "duration {d}, want about {want}");
    };
    for name in ["clip.mp4", "CLIP2.MP4"] {
        let f = app.api.file_named(name).await;
        assert_no_nulls_or_internals(&f);
        assert_eq!((&f["type"], &f["ext"]), (&json!(4), &json!("mp4")), "{f}");
        assert_eq!(
            (&f["width"], &f["height"]),
            (&json!(320), &json!(240)),
            "{f}"
        );
        assert!(f["orientation"].is_null() || f["orientation"] == 1, "{f}");
        near(&f["duration"], 2.0);
        assert_eq!(f["size"], mp4.len());
    }
    // A quarter turn: orientation 6 or 8 as the display matrix says, display
    // dimensions swapped.
    let want = av_orientation(rot).expect("fixture has a quarter-turn display matrix");
    let f = app.api.file_named("rotated.mp4").await;
    assert_eq!(
        (&f["type"], &f["orientation"], &f["width"], &f["height"]),
        (&json!(4), &json!(want), &json!(240), &json!(320)),
        "{f}"
    );
    for (name, ext) in [("tone.m4a", "m4a"), ("tone.mp3", "mp3")] {
        let f = app.api.file_named(name).await;
        assert_no_nulls_or_internals(&f);
        assert_eq!((&f["type"], &f["ext"]), (&json!(8), &json!(ext)), "{f}");
        near(&f["duration"], 1.5);
        assert!(f.get("width").is_none(), "audio has no dimensions: {f}");
    }
}

/// A JPEG whose EXIF carries DateTimeOriginal `when` ("YYYY:MM:DD hh:mm:ss")
/// and, optionally, OffsetTimeOriginal `offset` ("+02:00").
fn jpeg_taken_at(when: &str, offset: Option<&str>) -> Vec<u8> {
    let mut strings: Vec<(u16, Vec<u8>)> = vec![(0x9003, format!("{when}\0").into_bytes())];
    if let Some(o) = offset {
        strings.push((0x9011, format!("{o}\0").into_bytes()));
    }
    let exif_ifd_at = 8 + 2 + 12 + 4;
    let data_at = exif_ifd_at + 2 + 12 * strings.len() + 4;
    let mut t = Vec::new();
    t.extend_from_slice(b"II*\0");
    t.extend_from_slice(&8u32.to_le_bytes());
    // IFD0: one entry, the pointer to the Exif IFD.
    t.extend_from_slice(&1u16.to_le_bytes());
    t.extend_from_slice(&0x8769u16.to_le_bytes());
    t.extend_from_slice(&4u16.to_le_bytes());
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(&(exif_ifd_at as u32).to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    // Exif IFD: ASCII entries whose text follows the IFD.
    t.extend_from_slice(&(strings.len() as u16).to_le_bytes());
    let mut at = data_at;
    for (tag, text) in &strings {
        t.extend_from_slice(&tag.to_le_bytes());
        t.extend_from_slice(&2u16.to_le_bytes());
        t.extend_from_slice(&(text.len() as u32).to_le_bytes());
        t.extend_from_slice(&(at as u32).to_le_bytes());
        at += text.len();
    }
    t.extend_from_slice(&0u32.to_le_bytes());
    for (_, text) in &strings {
        t.extend_from_slice(text);
    }
    let mut seg = vec![0xFF, 0xE1];
    seg.extend_from_slice(&((2 + 6 + t.len()) as u16).to_be_bytes());
    seg.extend_from_slice(b"Exif\0\0");
    seg.extend_from_slice(&t);
    let mut out = jpeg(40, 30, 1, None);
    out.splice(2..2, seg);
    out
}

/// Spec §3.3 and §12.1 say an imported file's createTime is the earliest of
/// its ctime/mtime/atime; isync prefers the photo's EXIF capture time when it
/// has one (issue 2: "capture time for photos"), so sorting by createTime
/// follows when the photos were taken even after a copy reset the mtimes.
/// This pins that choice and its time-zone handling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_time_is_the_exif_capture_time_when_present() {
    let app = TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .file(
            "lib/zoned.jpg",
            &jpeg_taken_at("2001:02:03 04:05:06", Some("+02:00")),
        )
        .file("lib/local.jpg", &jpeg_taken_at("2001:02:03 04:05:06", None))
        .file("lib/plain.jpg", &jpeg(40, 30, 1, None))
        .with_media(|m| {
            for n in ["zoned.jpg", "local.jpg", "plain.jpg"] {
                set_mtime(&m.join("lib").join(n), T0);
            }
        })
        .spawn()
        .await;
    // 04:05:06 at UTC+2 is 02:05:06 UTC.
    assert_eq!(
        app.api.file_named("zoned.jpg").await["createTime"],
        981_165_906
    );
    // Without a zone the camera's wall clock is taken as UTC.
    assert_eq!(
        app.api.file_named("local.jpg").await["createTime"],
        981_173_106
    );
    assert_eq!(app.api.file_named("plain.jpg").await["createTime"], T0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_with_any_part_uploading_are_hidden_but_counted() {
    let app = TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .file("lib/a.jpg", &jpeg(40, 30, 1, None))
        .spawn()
        .await;
    let alice = app.user_id("alice").await;
    let root = id(&app.api.catalogs("-1").await[0]);
    let mut hidden = Vec::new();
    for column in ["status_origin", "status_thumb", "status_screen"] {
        let f = insert_upload(
            &app,
            root,
            &format!("{column}.jpg"),
            alice,
            1_600_000_000,
            0,
        )
        .await;
        let sql = format!("UPDATE files SET {column} = 2 WHERE id = ?1");
        app.db()
            .write_async(move |tx| Ok(tx.execute(&sql, [f])?))
            .await
            .unwrap();
        hidden.push(f);
    }
    let done = insert_upload(&app, root, "done.jpg", alice, 1_600_000_000, 3).await;
    let listed = ids(&app.api.all_files().await);
    assert!(hidden.iter().all(|h| !listed.contains(h)), "{listed:?}");
    assert!(listed.contains(&done), "status 3 is complete");
    assert_eq!(listed.len(), 2);
    let v = app
        .api
        .get_json("/files.icc", json!({"pageIndex": 0, "onlySelfUpload": 1}))
        .await;
    assert_eq!(data(&v)["page"]["pageCount"], 1);
    assert_eq!(ids(data(&v)["list"].as_array().unwrap()), vec![done]);
    // fileCount includes pending uploads (spec §3.2).
    assert_eq!(app.api.catalogs("-1").await[0]["fileCount"], 5);
}

/// `files.icc` keeps each record's encoding with the listing snapshot; any
/// change to a file must show in the very next listing, and the reply must be
/// exactly the JSON a serialiser writes (compared as bytes, not as values).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_reflect_every_change_at_once_and_stay_byte_exact() {
    let app = many_files(30).await;
    let raw = |params: Value| {
        let api = app.api.clone();
        async move {
            let r = api.get("/files.icc", params).await;
            assert_eq!(header(&r, "content-type"), "application/json");
            r.bytes().await.unwrap().to_vec()
        }
    };
    let params = json!({"pageIndex": 0, "maxPerPage": 10, "sort": -3});
    let first = raw(params.clone()).await;
    // Served again from the kept encodings: the same bytes, compact, in the
    // wire's field order (the unit test in http/api/file.rs compares them
    // with the serialiser's output byte for byte).
    assert_eq!(raw(params.clone()).await, first);
    let text = String::from_utf8(first.clone()).unwrap();
    assert!(
        text.starts_with(r#"{"code":0,"data":{"list":[{"id":"#),
        "{text}"
    );
    assert!(text.ends_with(r#"],"page":{"pageIndex":0,"maxPerPage":10,"pageCount":3}}}"#));
    let v: Value = serde_json::from_slice(&first).unwrap();
    let target = id(&data(&v)["list"][3]);

    for (n, text) in [(1, "first ✓"), (2, "second \"quoted\"")] {
        let r = app
            .api
            .post_json(
                "/updateHelpInfo.icc",
                json!({"type": 2, "id": target, "helpInt": n, "helpText": text}),
            )
            .await;
        assert_eq!(r["code"], 0, "{r}");
        let v: Value = serde_json::from_slice(&raw(params.clone()).await).unwrap();
        let f = &data(&v)["list"][3];
        assert_eq!(
            (id(f), &f["helpInt"], &f["helpText"]),
            (target, &json!(n), &json!(text))
        );
    }
    // Deleting and adding files changes pages and totals at once too.
    let del = app
        .api
        .post_form("/deleteFiles.icc", json!({"ids": target.to_string()}))
        .await;
    assert_eq!(del["code"], 0, "{del}");
    let v: Value = serde_json::from_slice(&raw(params.clone()).await).unwrap();
    assert!(!ids(data(&v)["list"].as_array().unwrap()).contains(&target));
    write_file(
        &app.media().join("lib/new.txt"),
        b"a file larger than any other here",
    );
    app.rescan().await;
    let v: Value = serde_json::from_slice(&raw(params).await).unwrap();
    assert_eq!(data(&v)["list"][0]["name"], "new.txt", "largest first");
    assert_eq!(data(&v)["page"]["pageCount"], 3);
}
