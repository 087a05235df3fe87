//! Live Photos (issue 15) through the real server: an iPhone-style library
//! (HEIC and JPEG photos whose Apple MakerNote carries a content identifier,
//! MOVs made by the real ffmpeg with the identifier in their QuickTime
//! metadata) is scanned; a photo and a video of one name and identifier list
//! as one photo naming its video (`livePhotoVideoId`), which downloads and
//! thumbnails like any file; a pair whose identifiers differ lists as two.
//! Deleting either half trashes both, restoring either brings both back,
//! a virtual move takes both, and renames on disk part and re-pair them.
//! The same photos and videos uploaded as the app does (`uploadFile.icc`)
//! pair when the second half completes, in either order, or at the next
//! start after a crash in between. A half sent again (a reopened upload) is
//! hidden while pending, as any pending file is, and its other half stays
//! listed; the completion pairs them again.

use crate::common;
use common::heifmux;

use common::fixtures::{apple_maker_note, exif_app1, iphone_exif_tiff, with_app1};
use common::process::Process;
use common::upload::{announce, first_root, multipart, send_origin, send_parts, BOUNDARY};
use common::*;
use serde_json::{json, Value};
use std::process::Command;

const ID_A: &str = "1B0C1D6E-7A52-4D1F-9C3E-6A2B8E9F0A11";
const ID_B: &str = "2C4E5F60-8B63-4E20-AD4F-7B3C9FA01B22";
const ID_C: &str = "3D5F6071-9C74-4F31-BE50-8C4DA0B12C33";
const ID_D: &str = "4E607182-AD85-4042-CF61-9D5EB1C23D44";
const TAKEN: &str = "2024:07:14 09:30:00";

/// An iPhone HEIC: a real HEVC still with an Exif item holding the Apple
/// MakerNote, `content_id` in it.
fn heic(content_id: Option<&str>) -> Vec<u8> {
    let rgb: Vec<u8> = (0..64 * 48).flat_map(|i| [i as u8, 90, 200]).collect();
    let mut spec =
        heifmux::Spec::single(heifmux::encode(&rgb, 64, 48, heifmux::Codec::Hevc, false));
    spec.exif = Some(iphone_exif_tiff(TAKEN, &apple_maker_note(content_id)));
    heifmux::mux(&spec)
}

/// An iPhone "most compatible" JPEG with the same EXIF.
fn jpeg_live(content_id: &str) -> Vec<u8> {
    let app1 = exif_app1(&iphone_exif_tiff(
        TAKEN,
        &apple_maker_note(Some(content_id)),
    ));
    with_app1(&jpeg(64, 48, 7, None), &app1)
}

/// A MOV from the real ffmpeg with the Live Photo key in its QuickTime
/// metadata (`use_metadata_tags` writes `mdta` keys, as iOS does).
fn mov(content_id: &str, seed: u32) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("live.mov");
    let st = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(format!(
            "testsrc=size=64x48:rate=10:duration=1,hue=h={seed}"
        ))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-movflags", "use_metadata_tags", "-metadata"])
        .arg(format!(
            "com.apple.quicktime.content.identifier={content_id}"
        ))
        .arg(&out)
        .status()
        .expect("run ffmpeg");
    assert!(st.success(), "ffmpeg failed");
    std::fs::read(out).unwrap()
}

struct Library {
    mov_1: Vec<u8>,
    mov_2: Vec<u8>,
}

/// IMG_0001: HEIC + MOV, id A (a Live Photo). IMG_0002: JPEG + MOV, id B
/// (one, "most compatible"). IMG_0003: HEIC id C + MOV id D (two files).
/// IMG_0004: a HEIC without identifier. Returns the app and the MOVs.
async fn iphone_library() -> Option<(TestApp, Library)> {
    if !ffmpeg_available() {
        return None;
    }
    let lib = Library {
        mov_1: mov(ID_A, 10),
        mov_2: mov(ID_B, 20),
    };
    let app = TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .file("lib/DCIM/IMG_0001.HEIC", &heic(Some(ID_A)))
        .file("lib/DCIM/IMG_0001.MOV", &lib.mov_1)
        .file("lib/DCIM/IMG_0002.JPG", &jpeg_live(ID_B))
        .file("lib/DCIM/IMG_0002.MOV", &lib.mov_2)
        .file("lib/DCIM/IMG_0003.HEIC", &heic(Some(ID_C)))
        .file("lib/DCIM/IMG_0003.MOV", &mov(ID_D, 30))
        .file("lib/DCIM/IMG_0004.HEIC", &heic(None))
        .spawn()
        .await;
    Some((app, lib))
}

fn names(list: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = list
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

/// The id of the video behind photo `name`, or None.
async fn video_of(api: &Api, name: &str) -> Option<i64> {
    api.file_named(name).await["livePhotoVideoId"].as_i64()
}

fn dcim(app: &TestApp) -> std::path::PathBuf {
    app.media().join("lib/DCIM")
}

async fn downloaded(api: &Api, id: i64) -> Vec<u8> {
    let r = api.download(id, &[]).await;
    assert_eq!(r.status(), 200, "download of {id}");
    r.bytes().await.unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_photo_lists_as_one_photo_with_its_video() {
    let Some((app, lib)) = iphone_library().await else {
        return;
    };
    let api = &app.api;
    let all = api.all_files().await;
    assert_eq!(
        names(&all),
        [
            "IMG_0001.HEIC",
            "IMG_0002.JPG",
            "IMG_0003.HEIC",
            "IMG_0003.MOV",
            "IMG_0004.HEIC"
        ],
        "{all:#?}"
    );
    // The photos of pairs name their videos; the rest name none.
    let photo_1 = api.file_named("IMG_0001.HEIC").await;
    assert_eq!(photo_1["type"], 1);
    assert_eq!(
        (photo_1["width"].as_i64(), photo_1["height"].as_i64()),
        (Some(64), Some(48))
    );
    let v1 = video_of(api, "IMG_0001.HEIC")
        .await
        .expect("HEIC names its video");
    let v2 = video_of(api, "IMG_0002.JPG")
        .await
        .expect("JPEG names its video");
    for name in ["IMG_0003.HEIC", "IMG_0003.MOV", "IMG_0004.HEIC"] {
        assert_eq!(video_of(api, name).await, None, "{name}");
    }
    assert!(all.iter().all(|f| id(f) != v1 && id(f) != v2));
    // The videos are reachable as any file: original bytes and thumbnail.
    assert_eq!(downloaded(api, v1).await, lib.mov_1);
    assert_eq!(downloaded(api, v2).await, lib.mov_2);
    let thumb = api
        .get("/thumbnail.icc", json!({"id": v1, "level": 0}))
        .await;
    assert_eq!(thumb.status(), 200);
    let img = image::load_from_memory(&thumb.bytes().await.unwrap()).expect("thumbnail");
    assert!(img.width() <= 160 && img.width() > 0);

    // Counts count what is listed: the filtered total, pages, fileCount.
    let videos = api.files(json!({"pageIndex": 0, "types": "4"})).await;
    assert_eq!(names(&videos), ["IMG_0003.MOV"]);
    let v = api
        .get_json("/files.icc", json!({"pageIndex": 0, "maxPerPage": 10}))
        .await;
    assert_eq!(data(&v)["page"]["pageCount"], 1);
    assert_eq!(data(&v)["list"].as_array().unwrap().len(), 5);
    let page_1 = api
        .get_json(
            "/files.icc",
            json!({"pageIndex": 0, "maxPerPage": 10, "sort": 1}),
        )
        .await;
    assert_eq!(data(&page_1)["list"].as_array().unwrap().len(), 5);
    let folder = api
        .all_catalogs()
        .await
        .into_iter()
        .find(|c| c["name"] == "DCIM")
        .expect("DCIM catalog");
    assert_eq!(folder["fileCount"], 5);

    // A second scan changes nothing.
    let report = app.rescan().await;
    assert_eq!((report.added, report.updated, report.removed), (0, 0, 0));
    assert_eq!(video_of(api, "IMG_0001.HEIC").await, Some(v1));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_live_photo_trashes_both_and_restoring_restores_both() {
    let Some((app, lib)) = iphone_library().await else {
        return;
    };
    let api = &app.api;
    let photo = api.file_id("IMG_0001.HEIC").await;
    let video = video_of(api, "IMG_0001.HEIC").await.unwrap();
    let heic_bytes = std::fs::read(dcim(&app).join("IMG_0001.HEIC")).unwrap();

    let v = api
        .post_form("/deleteFiles.icc", json!({"ids": photo.to_string()}))
        .await;
    assert_eq!(v["code"], 0, "{v}");
    for name in ["IMG_0001.HEIC", "IMG_0001.MOV"] {
        assert!(!dcim(&app).join(name).exists(), "{name} still on disk");
    }
    assert_binary_err_status(api.download(video, &[]).await, 404, NOT_FOUND).await;
    assert_eq!(
        names(&api.all_files().await),
        [
            "IMG_0002.JPG",
            "IMG_0003.HEIC",
            "IMG_0003.MOV",
            "IMG_0004.HEIC"
        ]
    );
    let db = app.db().clone();
    let trashed = tokio::task::spawn_blocking(move || isync::trash::list(&db))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(trashed.len(), 2, "{trashed:?}");

    // Naming the video deletes its photo too; a lone half deletes alone.
    let jpeg_video = video_of(api, "IMG_0002.JPG").await.unwrap();
    let lone = api.file_id("IMG_0003.HEIC").await;
    let v = api
        .post_form(
            "/deleteFiles.icc",
            json!({"ids": format!("{jpeg_video},{lone}")}),
        )
        .await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(
        names(&api.all_files().await),
        ["IMG_0003.MOV", "IMG_0004.HEIC"]
    );

    // Restoring the video's entry brings the photo back as well, under
    // their own names; the next scan pairs them again.
    let video_entry = trashed
        .iter()
        .find(|e| e.original_path.ends_with("IMG_0001.MOV"))
        .unwrap()
        .id;
    let db = app.db().clone();
    tokio::task::spawn_blocking(move || isync::trash::restore(&db, video_entry))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        std::fs::read(dcim(&app).join("IMG_0001.HEIC")).unwrap(),
        heic_bytes
    );
    assert_eq!(
        std::fs::read(dcim(&app).join("IMG_0001.MOV")).unwrap(),
        lib.mov_1
    );
    app.rescan().await;
    let video = video_of(api, "IMG_0001.HEIC").await.expect("paired again");
    assert_eq!(downloaded(api, video).await, lib.mov_1);
    assert_eq!(
        names(&api.all_files().await),
        ["IMG_0001.HEIC", "IMG_0003.MOV", "IMG_0004.HEIC"]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renames_part_and_pair_and_a_move_takes_both() {
    let Some((app, _lib)) = iphone_library().await else {
        return;
    };
    let api = &app.api;
    let video = video_of(api, "IMG_0001.HEIC").await.unwrap();
    let dir = dcim(&app);
    let rename = |from: &str, to: &str| std::fs::rename(dir.join(from), dir.join(to)).unwrap();

    // The video renamed: two files (same record, recognised by inode).
    rename("IMG_0001.MOV", "IMG_0009.MOV");
    app.rescan().await;
    assert_eq!(video_of(api, "IMG_0001.HEIC").await, None);
    assert_eq!(api.file_id("IMG_0009.MOV").await, video);
    // Back, with another case: one again.
    rename("IMG_0009.MOV", "img_0001.mov");
    app.rescan().await;
    assert_eq!(video_of(api, "IMG_0001.HEIC").await, Some(video));
    // Both moved into another folder on disk: still one.
    std::fs::create_dir(dir.join("Trip")).unwrap();
    rename("IMG_0001.HEIC", "Trip/IMG_0001.HEIC");
    rename("img_0001.mov", "Trip/img_0001.mov");
    app.rescan().await;
    assert_eq!(video_of(api, "IMG_0001.HEIC").await, Some(video));

    // A virtual move of the photo shows the video in the new catalog too.
    let photo = api.file_named("IMG_0001.HEIC").await;
    let cats = api.all_catalogs().await;
    let target = id(cats.iter().find(|c| c["name"] == "DCIM").unwrap());
    assert_ne!(photo["catalogId"], target);
    let v = api
        .post_form(
            "/updateFile.icc",
            json!({"id": id(&photo), "catalogId": target}),
        )
        .await;
    assert_eq!(v["code"], 0, "{v}");
    let shown = app
        .db_read(move |c| {
            Ok(
                c.query_row("SELECT catalog_id FROM files WHERE id = ?1", [video], |r| {
                    r.get::<_, i64>(0)
                })?,
            )
        })
        .await;
    assert_eq!(shown, target);
    let in_dcim = api
        .files(json!({"pageIndex": 0, "pids": target.to_string()}))
        .await;
    assert!(names(&in_dcim).contains(&"IMG_0001.HEIC".to_owned()));
    assert!(in_dcim.iter().all(|f| id(f) != video));
    app.stop().await;
}

/// Files recorded before migration 7 (no identifier learnt, no link) are
/// probed once more by the next scan and paired; the scan after that
/// probes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_library_scanned_before_live_photos_is_paired_by_the_next_scan() {
    let Some((app, _lib)) = iphone_library().await else {
        return;
    };
    let api = &app.api;
    let video = video_of(api, "IMG_0001.HEIC").await.unwrap();
    let modified = |files: &[Value]| -> std::collections::BTreeMap<i64, i64> {
        files
            .iter()
            .map(|f| {
                (
                    f["id"].as_i64().unwrap(),
                    f["lastModifyTime"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let before = modified(&api.all_files().await);
    app.db()
        .write_async(|tx| {
            tx.execute(
                "UPDATE files SET content_id = NULL, live_photo_id = NULL",
                [],
            )?;
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(video_of(api, "IMG_0001.HEIC").await, None);
    assert_eq!(api.all_files().await.len(), 7);
    // Probed for the identifier alone: no record "changed", no thumbnail
    // dropped, no lastModifyTime moved (a client would fetch them again).
    let report = app.rescan().await;
    assert_eq!(report.updated, 0, "{report:?}");
    assert!(report.changed_ids.is_empty(), "{report:?}");
    assert_eq!(video_of(api, "IMG_0001.HEIC").await, Some(video));
    let after = api.all_files().await;
    assert_eq!(after.len(), 5);
    for (id, t) in modified(&after) {
        assert_eq!(Some(&t), before.get(&id), "lastModifyTime of file {id}");
    }
    assert_eq!(app.rescan().await.updated, 0);
    app.stop().await;
}

// ------------------------------------------------------------ by upload

/// An app whose one library alice uploads into; its root catalog's id.
async fn upload_app() -> Option<(TestApp, i64)> {
    if !ffmpeg_available() {
        return None;
    }
    let app = TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .spawn()
        .await;
    let root = first_root(&app.api).await;
    Some((app, root))
}

/// Uploads `bytes` as `name` (of type `ty`) into catalog `cid` in one
/// request, as the app does (spec §6.14, §6.15); the new file's id.
async fn upload_as(api: &Api, cid: i64, name: &str, ty: i64, bytes: &[u8]) -> i64 {
    let ext = name.rsplit('.').next().unwrap().to_lowercase();
    let v = announce(
        api,
        json!({"cid": cid, "name": name, "size": bytes.len(), "type": ty, "ext": ext}),
    )
    .await;
    let id = data(&v)["id"].as_i64().unwrap();
    let v = send_origin(api, json!({"id": id}), bytes).await;
    assert_eq!(v["code"], 0, "upload of {name}: {v}");
    id
}

const IMAGE: i64 = 1;
const VIDEO: i64 = 4;

/// Uploads `bytes` as `name` with no extension (`ext` empty), as an iOS
/// client may send them; the new file's id.
async fn upload_bare(api: &Api, cid: i64, name: &str, ty: i64, bytes: &[u8]) -> i64 {
    let v = announce(
        api,
        json!({"cid": cid, "name": name, "size": bytes.len(), "type": ty, "ext": ""}),
    )
    .await;
    let id = data(&v)["id"].as_i64().unwrap();
    let v = send_origin(api, json!({"id": id}), bytes).await;
    assert_eq!(v["code"], 0, "upload of {name}: {v}");
    id
}

/// Names without an extension (`IMG_0001`, no `ext`): the halves pair by
/// name and identifier all the same, the kind read from their bytes; other
/// identifiers, or a declared type the bytes are not, stay two files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halves_sent_without_an_extension_pair_by_their_content() {
    let Some((app, root)) = upload_app().await else {
        return;
    };
    let api = &app.api;
    let photo = upload_bare(api, root, "IMG_0001", IMAGE, &heic(Some(ID_A))).await;
    let video_bytes = mov(ID_A, 10);
    let video = upload_bare(api, root, "IMG_0001", VIDEO, &video_bytes).await;
    // One bare, one named: the same stem.
    let jpeg = upload_bare(api, root, "IMG_0002", IMAGE, &jpeg_live(ID_B)).await;
    let mov_2 = upload_as(api, root, "IMG_0002.MOV", VIDEO, &mov(ID_B, 20)).await;
    // Identifiers that differ.
    upload_bare(api, root, "IMG_0003", IMAGE, &heic(Some(ID_C))).await;
    upload_bare(api, root, "IMG_0003", VIDEO, &mov(ID_D, 30)).await;
    // The video's bytes declared a photo: not a photo by its content.
    upload_bare(api, root, "IMG_0004", IMAGE, &heic(Some(ID_D))).await;
    upload_bare(api, root, "IMG_0004", IMAGE, &mov(ID_D, 40)).await;

    let all = api.all_files().await;
    let listed: Vec<i64> = all.iter().map(id).collect();
    assert_eq!(all.len(), 6, "{all:#?}");
    assert!(!listed.contains(&video) && !listed.contains(&mov_2));
    let link = |f: i64| all.iter().find(|x| id(x) == f).unwrap()["livePhotoVideoId"].as_i64();
    assert_eq!(link(photo), Some(video));
    assert_eq!(link(jpeg), Some(mov_2));
    assert_eq!(
        all.iter()
            .filter(|f| f["livePhotoVideoId"].is_i64())
            .count(),
        2
    );
    assert_eq!(downloaded(api, video).await, video_bytes);
    // A scan reads the same pairs from the records.
    app.rescan().await;
    assert_eq!(api.all_files().await.len(), 6);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_heic_then_its_mov_list_as_one_live_photo() {
    let Some((app, root)) = upload_app().await else {
        return;
    };
    let api = &app.api;
    let photo_bytes = heic(Some(ID_A));
    let video_bytes = mov(ID_A, 10);
    let photo = upload_as(api, root, "IMG_0001.HEIC", IMAGE, &photo_bytes).await;
    // Alone so far: a photo without a video.
    assert_eq!(names(&api.all_files().await), ["IMG_0001.HEIC"]);
    assert_eq!(video_of(api, "IMG_0001.HEIC").await, None);

    let video = upload_as(api, root, "IMG_0001.MOV", VIDEO, &video_bytes).await;
    assert_eq!(names(&api.all_files().await), ["IMG_0001.HEIC"]);
    assert_eq!(api.file_id("IMG_0001.HEIC").await, photo);
    assert_eq!(video_of(api, "IMG_0001.HEIC").await, Some(video));
    assert_eq!(downloaded(api, video).await, video_bytes);
    assert_eq!(downloaded(api, photo).await, photo_bytes);

    // A scan reads the same pair from the records (the uploads' names on
    // disk are the server's, their pairing names the client's).
    app.rescan().await;
    assert_eq!(names(&api.all_files().await), ["IMG_0001.HEIC"]);
    assert_eq!(video_of(api, "IMG_0001.HEIC").await, Some(video));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_mov_then_its_jpeg_pair_and_other_ids_stay_two_files() {
    let Some((app, root)) = upload_app().await else {
        return;
    };
    let api = &app.api;
    let video_bytes = mov(ID_B, 20);
    let video = upload_as(api, root, "IMG_0002.MOV", VIDEO, &video_bytes).await;
    // A video alone lists as itself.
    assert_eq!(names(&api.all_files().await), ["IMG_0002.MOV"]);
    let photo = upload_as(api, root, "IMG_0002.JPG", IMAGE, &jpeg_live(ID_B)).await;
    assert_eq!(names(&api.all_files().await), ["IMG_0002.JPG"]);
    assert_eq!(api.file_id("IMG_0002.JPG").await, photo);
    assert_eq!(video_of(api, "IMG_0002.JPG").await, Some(video));
    assert_eq!(downloaded(api, video).await, video_bytes);

    // One name, two identifiers: two files, neither naming a video.
    upload_as(api, root, "IMG_0003.HEIC", IMAGE, &heic(Some(ID_C))).await;
    upload_as(api, root, "IMG_0003.MOV", VIDEO, &mov(ID_D, 30)).await;
    assert_eq!(
        names(&api.all_files().await),
        ["IMG_0002.JPG", "IMG_0003.HEIC", "IMG_0003.MOV"]
    );
    assert_eq!(video_of(api, "IMG_0003.HEIC").await, None);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_uploaded_live_photo_trashes_both() {
    let Some((app, root)) = upload_app().await else {
        return;
    };
    let api = &app.api;
    let photo = upload_as(api, root, "IMG_0001.HEIC", IMAGE, &heic(Some(ID_A))).await;
    let video = upload_as(api, root, "IMG_0001.MOV", VIDEO, &mov(ID_A, 10)).await;
    assert_eq!(video_of(api, "IMG_0001.HEIC").await, Some(video));
    let lib = app.media().join("lib");
    let on_disk = |dir: &std::path::Path| {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        v.sort();
        v
    };
    assert_eq!(on_disk(&lib).len(), 2, "{:?}", on_disk(&lib));

    let v = api
        .post_form("/deleteFiles.icc", json!({"ids": photo.to_string()}))
        .await;
    assert_eq!(v["code"], 0, "{v}");
    assert!(api.all_files().await.is_empty());
    assert_eq!(on_disk(&lib), Vec::<String>::new());
    assert_binary_err_status(api.download(video, &[]).await, 404, NOT_FOUND).await;
    let db = app.db().clone();
    let trashed = tokio::task::spawn_blocking(move || isync::trash::list(&db))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(trashed.len(), 2, "{trashed:?}");
    let mut names: Vec<&str> = trashed.iter().map(|e| e.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["IMG_0001.HEIC", "IMG_0001.MOV"]);
    app.stop().await;
}

/// The server dies completing the video's upload (its original in the
/// folder, its record not yet complete, no identifier recorded): the next
/// start finishes the upload (`upload::recover`) and its first scan reads
/// the identifier and pairs it with the photo uploaded before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_completing_the_second_half_is_paired_by_the_next_start() {
    if !ffmpeg_available() {
        return;
    }
    let mut p = Process::new(&["alice"], "");
    p.start(&[]);
    p.wait_logged("initial scan:", 1).await;
    let api = p.login("alice").await;
    let root = first_root(&api).await;
    let photo = upload_as(&api, root, "IMG_0001.HEIC", IMAGE, &heic(Some(ID_A))).await;
    p.kill9();

    p.start(&[("ISYNC_FAILPOINT", "upload-complete-moved")]);
    p.wait_logged("initial scan:", 2).await;
    let api = p.login("alice").await;
    let video_bytes = mov(ID_A, 10);
    let v = announce(
        &api,
        json!({"cid": root, "name": "IMG_0001.MOV", "size": video_bytes.len(),
            "type": VIDEO, "ext": "mov"}),
    )
    .await;
    let video = data(&v)["id"].as_i64().unwrap();
    let r = api
        .http
        .post(api.url("/uploadFile.icc"))
        .query(&json!({"id": video}))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(multipart(&[("origin", Some("origin"), &video_bytes)]))
        .send()
        .await;
    assert!(r.is_err(), "the server answered: {r:?}");
    assert!(p.wait_died(), "the server aborted at the failpoint");
    let record = |p: &Process| {
        p.db_read(|c| {
            c.query_row(
                "SELECT status_origin, content_id FROM files WHERE id = ?1",
                [video],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?)),
            )
        })
    };
    assert_eq!(record(&p), (2, None), "pending, no identifier");

    p.start(&[]);
    p.wait_logged("initial scan:", 3).await;
    assert_eq!(record(&p), (3, Some(ID_A.to_owned())));
    let api = p.login("alice").await;
    assert_eq!(names(&api.all_files().await), ["IMG_0001.HEIC"]);
    assert_eq!(api.file_id("IMG_0001.HEIC").await, photo);
    assert_eq!(video_of(&api, "IMG_0001.HEIC").await, Some(video));
    assert_eq!(downloaded(&api, video).await, video_bytes);
}

/// A reopened upload of `id` (`obp`: where it starts again) held in the
/// middle: the request's head and the first `first` bytes of `bytes` are
/// sent, the rest waits for [`Resend::finish`].
struct Resend {
    conn: tokio::net::TcpStream,
    rest: Vec<u8>,
}

impl Resend {
    async fn start(app: &TestApp, id: i64, obp: usize, bytes: &[u8], first: usize) -> Resend {
        use tokio::io::AsyncWriteExt;
        let token = app.token("alice").await;
        let body = multipart(&[("origin", Some("origin"), bytes)]);
        let head = format!(
            "POST /uploadFile.icc?id={id}&obp={obp} HTTP/1.1\r\nHost: x\r\nCookie: session={token}\r\n\
             Connection: close\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        let mut conn = tokio::net::TcpStream::connect(app.addr()).await.unwrap();
        conn.write_all(head.as_bytes()).await.unwrap();
        let cut = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4 + first;
        conn.write_all(&body[..cut]).await.unwrap();
        conn.flush().await.unwrap();
        // Pending once the server took the part: `uploadingInfo.icc` lists it.
        until(&format!("file {id} pending"), || async {
            common::upload::stored_origin(&app.api, id).await.map(drop)
        })
        .await;
        Resend {
            conn,
            rest: body[cut..].to_vec(),
        }
    }

    /// Sends the rest; the reply's JSON.
    async fn finish(mut self) -> Value {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.conn.write_all(&self.rest).await.unwrap();
        let mut reply = Vec::new();
        self.conn.read_to_end(&mut reply).await.unwrap();
        let text = String::from_utf8_lossy(&reply);
        let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP reply");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        // The body as sent, or as one chunk.
        let json = &body[body.find('{').expect("JSON")..=body.rfind('}').unwrap()];
        serde_json::from_str(json).unwrap()
    }
}

/// A file sent again (spec §9.2, a reopened upload) is pending until it
/// completes, and `files.icc` hides a pending file: a plain photo vanishes
/// from the listing meanwhile. Of a Live Photo only the half being
/// rewritten does: its photo pending, the video is listed on its own; its
/// video pending, the photo stays listed naming no video. The completion
/// pairs them again, and the pair is one file as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_again_hides_only_itself_until_it_completes() {
    let Some((app, root)) = upload_app().await else {
        return;
    };
    let api = &app.api;
    let (photo_bytes, video_bytes) = (heic(Some(ID_A)), mov(ID_A, 10));
    let photo = upload_as(api, root, "IMG_0001.HEIC", IMAGE, &photo_bytes).await;
    let video = upload_as(api, root, "IMG_0001.MOV", VIDEO, &video_bytes).await;
    let plain_bytes = heic(None);
    let plain = upload_as(api, root, "IMG_0009.HEIC", IMAGE, &plain_bytes).await;
    assert_eq!(
        names(&api.all_files().await),
        ["IMG_0001.HEIC", "IMG_0009.HEIC"]
    );

    // A plain file rewritten from byte 0: hidden while pending.
    let resend = Resend::start(&app, plain, 0, &plain_bytes, 100).await;
    assert_eq!(names(&api.all_files().await), ["IMG_0001.HEIC"]);
    assert_eq!(data(&resend.finish().await)["fileInfo"]["id"], plain);
    assert_eq!(
        names(&api.all_files().await),
        ["IMG_0001.HEIC", "IMG_0009.HEIC"]
    );

    // The photo rewritten: its video is listed alone meanwhile and still
    // downloads; counts count it.
    let resend = Resend::start(&app, photo, 0, &photo_bytes, 100).await;
    let all = api.all_files().await;
    assert_eq!(names(&all), ["IMG_0001.MOV", "IMG_0009.HEIC"], "{all:#?}");
    assert_eq!(api.file_id("IMG_0001.MOV").await, video);
    assert_eq!(downloaded(api, video).await, video_bytes);
    let v = resend.finish().await;
    assert_eq!(data(&v)["fileInfo"]["id"], photo, "{v}");
    assert_eq!(
        names(&api.all_files().await),
        ["IMG_0001.HEIC", "IMG_0009.HEIC"]
    );
    assert_eq!(video_of(api, "IMG_0001.HEIC").await, Some(video));
    assert_eq!(downloaded(api, photo).await, photo_bytes);

    // The video rewritten (from the middle: the stored version goes to
    // the trash): the photo stays listed, naming no video.
    let half = video_bytes.len() / 2;
    let resend = Resend::start(&app, video, half, &video_bytes[half..], 10).await;
    let all = api.all_files().await;
    assert_eq!(names(&all), ["IMG_0001.HEIC", "IMG_0009.HEIC"], "{all:#?}");
    assert_eq!(api.file_id("IMG_0001.HEIC").await, photo);
    assert_eq!(video_of(api, "IMG_0001.HEIC").await, None);
    let v = resend.finish().await;
    assert_eq!(data(&v)["fileInfo"]["id"], video, "{v}");
    assert_eq!(
        names(&api.all_files().await),
        ["IMG_0001.HEIC", "IMG_0009.HEIC"]
    );
    assert_eq!(video_of(api, "IMG_0001.HEIC").await, Some(video));
    assert_eq!(downloaded(api, video).await, video_bytes);

    // A scan agrees with what the uploads left.
    app.rescan().await;
    assert_eq!(video_of(api, "IMG_0001.HEIC").await, Some(video));
    app.stop().await;
}

/// A photo's client thumbnail sent again hides the photo while pending
/// (as any pending part does) and parts the pair, so its video is listed
/// alone; a scan meanwhile must not pair them again (both would vanish).
/// The completion pairs them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_while_a_photos_thumbnail_is_sent_again_keeps_its_video_listed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some((app, root)) = upload_app().await else {
        return;
    };
    let api = &app.api;
    let photo = upload_as(api, root, "IMG_0001.HEIC", IMAGE, &heic(Some(ID_A))).await;
    let video = upload_as(api, root, "IMG_0001.MOV", VIDEO, &mov(ID_A, 10)).await;
    let thumb = jpeg(64, 48, 3, None);
    let v = send_parts(
        api,
        json!({"id": photo, "tbp": 0}),
        &[("thumb", Some("thumb"), &thumb)],
    )
    .await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(names(&api.all_files().await), ["IMG_0001.HEIC"]);
    assert_eq!(video_of(api, "IMG_0001.HEIC").await, Some(video));

    // The thumbnail sent again, held open after its first bytes.
    let token = app.token("alice").await;
    let body = multipart(&[("thumb", Some("thumb"), &thumb)]);
    let head = format!(
        "POST /uploadFile.icc?id={photo}&tbp=0 HTTP/1.1\r\nHost: x\r\nCookie: session={token}\r\n\
         Connection: close\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let mut conn = tokio::net::TcpStream::connect(app.addr()).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    let cut = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4 + 10;
    conn.write_all(&body[..cut]).await.unwrap();
    conn.flush().await.unwrap();
    // The photo pending, its video alone.
    until("the video listed alone", || async {
        (names(&api.all_files().await) == ["IMG_0001.MOV"]).then_some(())
    })
    .await;

    // A file arriving in the folder makes the scan pair it again.
    std::fs::write(app.media().join("lib/IMG_0002.JPG"), jpeg(64, 48, 5, None)).unwrap();
    app.rescan().await;
    assert_eq!(
        names(&api.all_files().await),
        ["IMG_0001.MOV", "IMG_0002.JPG"],
        "a scan while the thumbnail is pending leaves the video listed"
    );

    conn.write_all(&body[cut..]).await.unwrap();
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).await.unwrap();
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.contains("\"code\":0"),
        "{text}"
    );
    assert_eq!(
        names(&api.all_files().await),
        ["IMG_0001.HEIC", "IMG_0002.JPG"]
    );
    assert_eq!(video_of(api, "IMG_0001.HEIC").await, Some(video));
    app.stop().await;
}
