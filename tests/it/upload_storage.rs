//! Where uploads may write, and how much (security issue #12, items 4 and
//! 6): a library whose disk is gone answers −10011 to every upload, quietly
//! (one warning per library going offline, nothing written where the disk
//! should be); the free-space reserve holds on small file systems the test
//! mounts (tmpfs, as root), also for uploads side by side; the per-user
//! quota counts what each user uploaded; the appliance's users folder on
//! the library disk is never written while that disk is away.

use crate::common;

use common::process::Process;
use common::upload::{announce, first_root, payload, send_origin, stored_origin};
use common::{assert_err, data, Api, LIBRARY_OFFLINE, STORAGE_FULL};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of `size` mounted at a folder for the test's life (lazily
/// unmounted at the end). Needs root: outside CI a test without it says so
/// and skips; under `CI=true` it fails.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(at)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Mount(at.to_path_buf())),
            other => {
                let why = format!("cannot mount a tmpfs at {} ({other:?})", at.display());
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("{why}: these tests need root (CI=true)");
                }
                eprintln!("skipping: {why}; run as root");
                None
            }
        }
    }
}

/// The disk goes away: `umount -l`, the folder is the empty mount point
/// again (files open on it stay usable, as after an unplug).
fn unplug(at: &Path) {
    let st = Command::new("umount").arg("-l").arg(at).status().unwrap();
    assert!(st.success());
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Already gone when the test unplugged it: that failure is fine.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn free(p: &Path) -> u64 {
    isync::upload::free_bytes(p).unwrap()
}

fn rows(p: &Process) -> i64 {
    p.db_read(|c| c.query_row("SELECT count(*) FROM files", [], |r| r.get(0)))
}

/// Every path below `dir`.
fn tree(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap().path().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Warnings and errors logged from line `from` on.
fn loud(p: &Process, from: usize) -> Vec<String> {
    p.log()[from..]
        .iter()
        .filter(|l| l.starts_with("WARN") || l.starts_with("ERROR"))
        .cloned()
        .collect()
}

async fn new_upload(api: &Api, size: u64) -> Value {
    let cid = first_root(api).await;
    announce(
        api,
        json!({"cid": cid, "name": "v.mov", "size": size, "type": 4, "ext": "mov"}),
    )
    .await
}

/// Waits until the first scan wrote the library's identity marker: from
/// then on a root without it is not the library.
async fn wait_for_marker(lib: &Path) {
    let marker = lib.join(".isync/library-id");
    common::until(&format!("the marker in {}", lib.display()), || async {
        marker.is_file().then_some(())
    })
    .await;
}

/// Item 4: the library's disk is gone (its mount point empty). A burst of
/// uploads — 100 announcements, 100 `uploadFile.icc` to a pending upload —
/// all answer −10011, the log gains at most the one warning that the
/// library went offline, and nothing is written into the empty mount point
/// (the SD card on the appliance). With the disk back, the upload goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_to_a_missing_disk_answer_offline_quietly() {
    let mut p = Process::new(&["alice"], "[watch]\noffline_check_secs = 1");
    common::write_file(&p.lib().join("a.jpg"), &common::jpeg(40, 30, 1, None));
    p.start(&[]);
    wait_for_marker(&p.lib()).await;
    let api = p.login("alice").await;
    let v = new_upload(&api, 5000).await;
    let id = data(&v)["id"].as_i64().unwrap();
    let part = payload(5000, 7);
    let before_rows = rows(&p);
    let mark = p.log().len();

    // Unplugged: the mount point is an empty folder again.
    let away = p.dir.path().join("lib.unplugged");
    std::fs::rename(p.lib(), &away).unwrap();
    std::fs::create_dir(p.lib()).unwrap();
    for i in 0..100 {
        let v = new_upload(&api, 1000).await;
        assert_err(&v, LIBRARY_OFFLINE);
        let v = send_origin(&api, json!({"id": id, "obp": 0}), &part).await;
        assert_err(&v, LIBRARY_OFFLINE);
        assert!(v["msg"].as_str().unwrap().contains("offline"), "{i}: {v}");
    }
    assert_eq!(
        tree(&p.lib()),
        [p.lib().to_string_lossy()],
        "nothing written"
    );
    assert_eq!(rows(&p), before_rows);
    let loud_lines = loud(&p, mark);
    eprintln!("log while offline: {loud_lines:#?}");
    assert!(loud_lines.len() <= 1, "{loud_lines:#?}");
    assert!(
        loud_lines.iter().all(|l| l.contains("is offline")),
        "{loud_lines:#?}"
    );
    assert!(!loud_lines.iter().any(|l| l.contains("internal")));

    // The disk is back: the same upload goes through (its disk is checked,
    // not the flag the watcher clears within `offline_check_secs`).
    std::fs::remove_dir(p.lib()).unwrap();
    std::fs::rename(&away, p.lib()).unwrap();
    let v = send_origin(&api, json!({"id": id, "obp": 0}), &part).await;
    assert_eq!(data(&v)["fileInfo"]["size"], 5000);
    let (r, _) = common::until("the library back online", || async {
        let r = api.download(id, &[]).await;
        (r.status() == 200).then_some(r)
    })
    .await;
    assert!(r.bytes().await.unwrap()[..] == part[..]);
}

/// Item 6, the appliance: the folder of users without a library is on the
/// library disk (`default_user_path` under it), a real file system the
/// test mounts. With the disk unmounted, such a user's uploads answer
/// −10011 and a first login of another one too — nothing is created under
/// the empty mount point, which is the SD card.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_folder_on_the_library_disk_is_never_written_without_it() {
    let dir = tempfile::Builder::new()
        .prefix("isync-disk-")
        .tempdir()
        .unwrap();
    let disk = dir.path().join("disk");
    let Some(mount) = Mount::tmpfs(&disk, "64m") else {
        return;
    };
    common::write_file(&disk.join("a.jpg"), &common::jpeg(40, 30, 1, None));
    let users = disk.join(".isync/users");
    let mut p = Process::new_in(
        dir,
        &disk,
        &["alice"],
        &format!("default_user_path = {users:?}\n[upload]\nmin_free_bytes = 1048576"),
    );
    p.hold(mount);
    p.add_user("carol");
    p.add_user("dave");
    p.start(&[]);
    wait_for_marker(&disk).await;
    // Carol has no library: her folder is made on the disk, and works.
    let carol = p.login("carol").await;
    let v = new_upload(&carol, 3000).await;
    let id = data(&v)["id"].as_i64().unwrap();
    let body = payload(3000, 8);
    data(&send_origin(&carol, json!({"id": id}), &body).await);
    let carol_dir = users.join(data(&v)["uploadUserId"].to_string());
    assert!(std::fs::read_dir(&carol_dir).unwrap().count() >= 1);
    let v = new_upload(&carol, 3000).await;
    let pending = data(&v)["id"].as_i64().unwrap();
    let before_rows = rows(&p);
    let mark = p.log().len();

    unplug(&disk);
    assert_eq!(tree(&disk), [disk.to_string_lossy()]);
    for _ in 0..20 {
        assert_err(&new_upload(&carol, 1000).await, LIBRARY_OFFLINE);
        let v = send_origin(&carol, json!({"id": pending}), &body).await;
        assert_err(&v, LIBRARY_OFFLINE);
    }
    // Dave's first login would make his folder: not on the SD card.
    let v = common::Api::new(&p.base)
        .get_json(
            "/login.icc",
            json!({"userName": "dave", "password": common::PASSWORD}),
        )
        .await;
    assert_err(&v, LIBRARY_OFFLINE);
    assert_eq!(
        tree(&disk),
        [disk.to_string_lossy()],
        "nothing on the SD card"
    );
    assert_eq!(rows(&p), before_rows);
    let loud_lines = loud(&p, mark);
    eprintln!("log while offline: {loud_lines:#?}");
    // At most one line per library going offline: the disk's and Carol's.
    assert!(loud_lines.len() <= 2, "{loud_lines:#?}");
    assert!(
        loud_lines.iter().all(|l| l.contains("is offline")),
        "{loud_lines:#?}"
    );
}

/// Item 6: the free-space reserve on a 32 MiB file system (the users
/// folder, which on a plain install is on the SD card) with
/// `min_free_bytes` = 8 MiB. An announcement past it is refused and changes
/// nothing; two uploads streaming side by side, more than fits, stop before
/// the reserve (at least one refused with −10014, the disk never below 8
/// MiB free); what a refused upload stored stays pending and counted
/// exactly (no room left taken ahead), and the server goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_stop_before_the_free_space_reserve() {
    const RESERVE: u64 = 8 << 20;
    let dir = tempfile::Builder::new()
        .prefix("isync-full-")
        .tempdir()
        .unwrap();
    let users = dir.path().join("users");
    let Some(mount) = Mount::tmpfs(&users, "32m") else {
        return;
    };
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let mut p = Process::new_in(
        dir,
        &lib,
        &["alice"],
        &format!("default_user_path = {users:?}\n[upload]\nmin_free_bytes = {RESERVE}"),
    );
    p.hold(mount);
    p.add_user("carol");
    p.start(&[]);
    let carol = p.login("carol").await;
    let free0 = free(&users);
    eprintln!("users folder: {free0} bytes free");
    let rows0 = rows(&p);
    let tree0 = tree(&users);

    // Announced past the reserve: refused, nothing recorded or made.
    let v = new_upload(&carol, free0 - RESERVE + 1).await;
    assert_err(&v, STORAGE_FULL);
    assert!(v["msg"].as_str().unwrap().contains("min_free_bytes"), "{v}");
    assert_eq!(rows(&p), rows0);
    assert_eq!(tree(&users), tree0);

    // A 1 MiB file of the test's own holds room that the last step gets
    // back: two uploads racing for the space may leave less than a page
    // above the reserve, too little to announce anything.
    let ballast = users.join("ballast");
    std::fs::write(&ballast, vec![7u8; 1 << 20]).unwrap();

    // Two announced small, each then sent 16 MB (chunked: no length to
    // refuse them by up front): about 23 MB fit above the reserve, not 32.
    let a = data(&new_upload(&carol, 1 << 20).await)["id"]
        .as_i64()
        .unwrap();
    let b = data(&new_upload(&carol, 1 << 20).await)["id"]
        .as_i64()
        .unwrap();
    let big = payload(16 << 20, 9);
    let (ra, rb) = tokio::join!(
        send_chunked(&carol, a, big.clone()),
        send_chunked(&carol, b, big.clone())
    );
    eprintln!("a: {ra}\nb: {rb}");
    let refused: Vec<(i64, &Value)> = [(a, &ra), (b, &rb)]
        .into_iter()
        .filter(|(_, r)| r["code"] != 0)
        .collect();
    assert!(!refused.is_empty(), "both fit? {ra} {rb}");
    let left = free(&users);
    assert!(
        left >= RESERVE,
        "the reserve was crossed: {left} bytes free"
    );
    for (id, r) in &refused {
        assert_err(r, STORAGE_FULL);
        assert!(r["msg"].as_str().unwrap().contains("resume"), "{r}");
        // Pending, invisible, and counting exactly the bytes on disk.
        let stored = stored_origin(&carol, *id).await.expect("still pending");
        let staged = staged_file(&users, *id).expect("staged bytes");
        assert_eq!(std::fs::metadata(&staged).unwrap().len() as i64, stored);
        assert!(std::fs::read(&staged).unwrap()[..] == big[..stored as usize]);
        assert!(carol.all_files().await.iter().all(|f| f["id"] != *id));
    }
    // No room held for bytes that never came: what the disk lost is what
    // is stored (tmpfs counts whole pages).
    let stored: u64 = walkdir::WalkDir::new(&users)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len().div_ceil(4096) * 4096)
        .sum();
    let lost = free0 - left;
    assert!(
        lost <= stored + (256 << 10),
        "{lost} bytes of free space gone for {stored} stored"
    );

    // With its length sent, a body that cannot fit is refused before a
    // byte is stored.
    std::fs::remove_file(&ballast).unwrap();
    let left = free(&users);
    let c = data(&new_upload(&carol, 1000).await)["id"]
        .as_i64()
        .unwrap();
    let v = send_origin(&carol, json!({"id": c}), &payload(left as usize, 3)).await;
    assert_err(&v, STORAGE_FULL);
    assert_eq!(stored_origin(&carol, c).await, Some(0));
    assert!(staged_file(&users, c).is_none_or(|f| std::fs::metadata(f).unwrap().len() == 0));
    // The server goes on.
    assert_eq!(uploading_ids(&carol).await.len(), refused.len() + 1);
    let v = carol.get_json("/catalogs.icc", json!({"pids": "-1"})).await;
    data(&v);
}

/// Where the staged original of upload `id` is, under the users folder.
fn staged_file(users: &Path, id: i64) -> Option<PathBuf> {
    std::fs::read_dir(users)
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .join(format!(".isync/uploads/{id}.origin"))
        })
        .find(|p| p.exists())
}

/// Sends `bytes` as the origin of `id` in chunks of 1 MiB, without a
/// `Content-Length` (chunked transfer).
async fn send_chunked(api: &Api, id: i64, bytes: Vec<u8>) -> Value {
    let body = common::upload::multipart(&[("origin", Some("origin"), &bytes)]);
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = body
        .chunks(1 << 20)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let r = api
        .http
        .post(api.url("/uploadFile.icc"))
        .query(&[("id", id)])
        .header(
            "content-type",
            format!("multipart/form-data; boundary={}", common::upload::BOUNDARY),
        )
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    r.json().await.unwrap()
}

async fn uploading_ids(api: &Api) -> Vec<i64> {
    common::upload::uploading(api)
        .await
        .iter()
        .map(|f| f["id"].as_i64().unwrap())
        .collect()
}

/// Item 6: `upload.user_quota_bytes` counts each user's uploads — the
/// announced size while pending, the stored size once complete, not the
/// `size` updateFile.icc may set — refusing announcements and streams past
/// it with −10014 and changing nothing; deleting frees room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_counts_what_each_user_uploaded() {
    let (s, api) = common::TestApp::start(|c| c.upload.user_quota_bytes = 1_000_000).await;
    let bob = s.login("bob").await;
    let a = data(&new_upload(&api, 600_000).await)["id"]
        .as_i64()
        .unwrap();
    let before = s.snapshot().await;
    let v = new_upload(&api, 500_000).await;
    assert_err(&v, STORAGE_FULL);
    assert!(v["msg"].as_str().unwrap().contains("quota"), "{v}");
    assert_eq!(s.snapshot().await, before);
    // Another user's quota is their own.
    data(&new_upload(&bob, 900_000).await);
    let b = data(&new_upload(&api, 300_000).await)["id"]
        .as_i64()
        .unwrap();

    // B may hold 400,000 bytes (1,000,000 − A's 600,000): a stream past
    // that stops there, the part stays pending with what came before.
    let v = send_origin(&api, json!({"id": b}), &payload(600_000, 1)).await;
    assert_err(&v, STORAGE_FULL);
    let stored = stored_origin(&api, b).await.expect("pending");
    assert!(stored <= 400_000, "{stored}");

    // A record's size set by updateFile frees nothing.
    let v = api
        .post_form("/updateFile.icc", json!({"id": a, "size": 0}))
        .await;
    data(&v);
    assert_err(&new_upload(&api, 200_000).await, STORAGE_FULL);
    // A completed smaller than announced counts its real size; deleting
    // gives the room back.
    data(&send_origin(&api, json!({"id": a}), &payload(100_000, 2)).await);
    data(&new_upload(&api, 500_000).await);
    assert_err(&new_upload(&api, 200_000).await, STORAGE_FULL);
    let v = api
        .post_form("/deleteFiles.icc", json!({"ids": a.to_string()}))
        .await;
    data(&v);
    data(&new_upload(&api, 100_000).await);
}

// --------------------------------------------------- client thumbnails (issue 15)

/// Uploads a file with both client thumbnails into `api`'s first root;
/// its id. The original first; then half the small thumbnail (complete as
/// it is, the large one pending: `uploadingInfo.icc` counts it), appended
/// to with the rest (reopened) beside the large one. `own`: where the
/// library keeps them, checked in between.
async fn upload_with_thumbs(api: &Api, thumb: &[u8], screen: &[u8], own: &Path) -> i64 {
    let cid = first_root(api).await;
    let body = common::jpeg(320, 240, 5, None);
    let v = announce(
        api,
        json!({"cid": cid, "name": "with_thumbs.jpg", "size": body.len(), "type": 1,
            "ext": "jpg", "statusForThumb": 2, "statusForScreen": 2}),
    )
    .await;
    let id = data(&v)["id"].as_i64().unwrap();
    data(&send_origin(api, json!({"id": id}), &body).await);
    let half = &thumb[..thumb.len() / 2];
    let parts = [("thumb", Some("thumb"), half)];
    data(&common::upload::send_parts(api, json!({"id": id, "tbp": 0}), &parts).await);
    let pending = common::upload::uploading(api).await;
    let p = pending.iter().find(|f| f["id"] == id).expect("pending");
    assert_eq!(p["uploadingScreenSize"], 0, "{p}");
    let first = own.join(format!("{id}_0.jpg"));
    assert_eq!(std::fs::read(&first).unwrap(), half, "{}", first.display());
    let rest = &thumb[half.len()..];
    let parts = [
        ("thumb", Some("thumb"), rest),
        ("screen", Some("screen"), screen),
    ];
    let q = json!({"id": id, "tbp": half.len(), "sbp": 0});
    data(&common::upload::send_parts(api, q, &parts).await);
    id
}

/// Every file below `dir` whose name is one of `id`'s client thumbnails.
fn thumbs_of(dir: &Path, id: i64) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name().to_string_lossy();
            n.starts_with(&format!("{id}_")) && e.path().to_string_lossy().contains("uploaded")
        })
        .map(|e| e.into_path())
        .collect();
    v.sort();
    v
}

async fn level(api: &Api, id: i64, level: u8) -> Vec<u8> {
    let r = api
        .get("/thumbnail.icc", json!({"id": id, "level": level}))
        .await;
    assert_eq!(r.status(), 200, "thumbnail {level} of {id}");
    r.bytes().await.unwrap().to_vec()
}

/// The thumbnails an app uploads with a file live where its library's
/// thumbnail cache does, on the library's disk
/// (`<library>/.isync/thumbs/uploaded`), pending and complete, never on
/// the SD card (the data dir); they are served, counted while pending and
/// deleted with the file there. One uploaded before (in the data dir) is
/// still served and deleted. With `thumbnails.location = "data_dir"` they
/// go to the data dir, as the cache does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_thumbnails_live_on_the_library_disk() {
    let app = common::TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .prerender(false)
        .spawn()
        .await;
    let api = &app.api;
    let lib = app.media().join("lib");
    let data_dir = app.data_dir();
    let (thumb, screen) = (
        common::jpeg(160, 120, 1, None),
        common::jpeg(800, 600, 2, None),
    );
    let own = lib.join(".isync/thumbs/uploaded");
    let id = upload_with_thumbs(api, &thumb, &screen, &own).await;
    assert_eq!(
        thumbs_of(&lib, id),
        [
            own.join(format!("{id}_0.jpg")),
            own.join(format!("{id}_1.jpg"))
        ]
    );
    assert!(
        thumbs_of(&data_dir, id).is_empty(),
        "{:?}",
        thumbs_of(&data_dir, id)
    );
    assert_eq!(level(api, id, 0).await, thumb);
    assert_eq!(level(api, id, 1).await, screen);

    // One uploaded before they moved (in the data dir) is still served.
    let old = data_dir.join("thumbs/uploaded");
    std::fs::create_dir_all(&old).unwrap();
    for l in 0..2 {
        let name = format!("{id}_{l}.jpg");
        std::fs::rename(own.join(&name), old.join(&name)).unwrap();
    }
    assert_eq!(level(api, id, 0).await, thumb);
    let v = api
        .post_form("/deleteFiles.icc", json!({"ids": id.to_string()}))
        .await;
    data(&v);
    assert!(thumbs_of(&data_dir, id).is_empty());
    // A new one goes to the library again, and leaves with its file.
    let id = upload_with_thumbs(api, &thumb, &screen, &own).await;
    assert_eq!(thumbs_of(&lib, id).len(), 2);
    data(
        &api.post_form("/deleteFiles.icc", json!({"ids": id.to_string()}))
            .await,
    );
    assert!(thumbs_of(&lib, id).is_empty());
    app.stop().await;

    // Kept in the data dir by configuration: there, as the cache.
    let app = common::TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .prerender(false)
        .tune(|c| c.thumbnails.location = isync::config::ThumbLocation::DataDir)
        .spawn()
        .await;
    let in_data = app.data_dir().join("thumbs/uploaded");
    let id = upload_with_thumbs(&app.api, &thumb, &screen, &in_data).await;
    assert_eq!(thumbs_of(&app.data_dir(), id).len(), 2);
    assert!(thumbs_of(&app.media().join("lib"), id).is_empty());
    assert_eq!(level(&app.api, id, 1).await, screen);
    app.stop().await;
}
