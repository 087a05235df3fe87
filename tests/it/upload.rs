//! Resumable uploads over real HTTP (spec §6.14–6.16, §9): chunked and
//! resumed uploads with digests, refused offsets, a killed connection, a
//! restart mid-upload, name collisions, traversal attempts and every bad
//! input leaving the database and the disk unchanged.

use crate::common;

use common::{assert_err, data, Api, BAD_PARAM, NEED_LOGIN, STORAGE_FULL};
use md5::Digest as _;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

// ------------------------------------------------------------------ harness
// `TestApp::start`: alice and bob over libraries `lib` and `other`,
// configured per test (limits, share lifetime), restartable on the same data.
use common::upload::{multipart, payload, BOUNDARY};
use common::{root_id, TestApp};

// ------------------------------------------------------------------ helpers

async fn upload(api: &Api, query: Value, parts: &[(&str, Option<&str>, &[u8])]) -> Value {
    let r = api
        .http
        .post(api.url("/uploadFile.icc"))
        .query(&query)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(multipart(parts))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let close = r.headers().get("connection").is_some_and(|v| v == "close");
    let v: Value = r.json().await.unwrap();
    // The body was read to its end: the connection stays open for the
    // next request (a refusal mid-body closes it, see bad_input_changes_nothing).
    if v["code"] == 0 {
        assert!(!close, "an accepted upload closed its connection: {v}");
    }
    v
}

async fn announce(api: &Api, extra: Value) -> Value {
    let mut p = json!({"cid": root_id(api).await, "name": "holiday.jpg", "size": 300000,
        "type": 1, "ext": "jpg"});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    api.post_form("/uploadFileInfo.icc", p).await
}

fn sha1_hex(b: &[u8]) -> String {
    hex::encode(sha1::Sha1::digest(b))
}

fn md5_hex(b: &[u8]) -> String {
    hex::encode(md5::Md5::digest(b))
}

async fn uploading(api: &Api) -> Vec<Value> {
    let v = api.get_json("/uploadingInfo.icc", json!({})).await;
    data(&v).as_array().unwrap().clone()
}

fn staged(s: &TestApp) -> Vec<String> {
    std::fs::read_dir(s.lib().join(".isync/uploads"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Sends the head and the first `send` bytes of an `origin` part of
/// `total` bytes over a raw connection, then closes it (a killed upload).
async fn broken_upload(s: &TestApp, token: &str, id: i64, obp: usize, part: &[u8], send: usize) {
    use tokio::io::AsyncWriteExt;
    let full = multipart(&[("file", Some("origin"), part)]);
    let head = format!(
        "POST /uploadFile.icc?id={id}&obp={obp} HTTP/1.1\r\nHost: x\r\nCookie: session={token}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n",
        full.len()
    );
    let mut c = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    c.write_all(head.as_bytes()).await.unwrap();
    // Cut inside the data, `send` bytes after the part's header.
    let start = full.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let cut = start + send;
    c.write_all(&full[..cut]).await.unwrap();
    c.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(c);
}

/// The origin size `uploadingInfo.icc` reports once the server has synced
/// what a broken request delivered (it settles within a moment).
async fn settled_origin_size(api: &Api, id: i64) -> i64 {
    let mut last = -1;
    // 60 s: on a loaded machine the server may take seconds to see the
    // close and sync; two equal answers 100 ms apart end it at once.
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let list = uploading(api).await;
        let f = list
            .iter()
            .find(|f| f["id"] == id)
            .expect("still uploading");
        let n = f["uploadingOriginSize"].as_i64().unwrap();
        if n == last && n > 0 {
            return n;
        }
        last = n;
    }
    panic!("uploadingOriginSize never settled");
}

// -------------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_upload_in_three_chunks_with_digests() {
    let (s, api) = TestApp::start(|_| {}).await;
    let body = payload(300_000, 1);
    let thumb = common::jpeg(100, 80, 9, None);
    let v = announce(&api, json!({"statusForThumb": 2, "memo": "m"})).await;
    let f = data(&v);
    let id = f["id"].as_i64().unwrap();
    assert_eq!(f["uploadingOriginSize"], 0);
    assert_eq!(f["uploadingThumbSize"], 0);
    assert!(f.get("uploadingScreenSize").is_none(), "{f}");
    assert!(f["uploadUserId"].as_i64().is_some());
    // Invisible to files.icc while pending, listed by uploadingInfo.icc.
    assert!(api.all_files().await.iter().all(|x| x["id"] != id));
    assert_eq!(uploading(&api).await.len(), 1);

    // Chunk 1 with sha1 of what is stored.
    let v = upload(
        &api,
        json!({"id": id, "obp": 0, "cm": "SHA1"}),
        &[("origin", Some("origin"), &body[..100_000])],
    )
    .await;
    assert_eq!(
        data(&v)["check"]["origin"],
        sha1_hex(&body[..100_000]),
        "{v}"
    );
    assert!(data(&v)["check"].get("thumb").is_none());

    // An offset past what is stored is refused and writes nothing.
    let before = s.snapshot().await;
    let v = upload(
        &api,
        json!({"id": id, "obp": 150_000}),
        &[("origin", Some("origin"), &body[150_000..])],
    )
    .await;
    assert_err(&v, BAD_PARAM);
    assert_eq!(s.snapshot().await, before);

    // Chunk 2 with md5 of the whole stored part (earlier bytes included).
    let v = upload(
        &api,
        json!({"id": id, "obp": 100_000, "cm": "md5"}),
        &[("origin", Some("origin"), &body[100_000..200_000])],
    )
    .await;
    assert_eq!(
        data(&v)["check"]["origin"],
        md5_hex(&body[..200_000]),
        "{v}"
    );

    // An earlier offset rewrites the tail: resend 150k.. with the last chunk.
    let v = upload(
        &api,
        json!({"id": id, "obp": 150_000, "tbp": 0, "cm": "sha1"}),
        &[
            ("comment", None, b"ignored"),
            ("origin", Some("origin"), &body[150_000..]),
            ("x", Some("thumb"), &thumb),
        ],
    )
    .await;
    let d = data(&v);
    assert_eq!(d["check"]["origin"], sha1_hex(&body), "{v}");
    assert_eq!(d["check"]["thumb"], sha1_hex(&thumb), "{v}");
    assert_eq!(d["fileInfo"]["size"], 300_000);
    assert!(d["fileInfo"].get("uploadingOriginSize").is_none());

    // Complete: listed, downloadable byte for byte, nothing staged.
    assert!(uploading(&api).await.is_empty());
    let listed = api.all_files().await;
    let f = listed
        .iter()
        .find(|x| x["id"] == id)
        .expect("visible after completion");
    assert_eq!(f["name"], "holiday.jpg");
    assert_eq!(f["memo"], "m");
    let got = api.download(id, &[]).await.bytes().await.unwrap();
    assert_eq!(&got[..], &body[..]);
    assert!(staged(&s).is_empty(), "{:?}", staged(&s));
    // On the library's disk, beside its thumbnail cache.
    let t = isync::library::layout::uploaded_thumb_path(
        &isync::library::layout::library_thumb_dir(&s.lib()),
        isync::model::FileId(id),
        isync::model::ThumbLevel::Small,
    );
    assert_eq!(std::fs::read(t).unwrap(), thumb);
    // The original sits in the catalog folder under a server-made name.
    let on_disk: Vec<String> = std::fs::read_dir(s.lib())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(&format!("_{id}.jpg")))
        .collect();
    assert_eq!(on_disk.len(), 1, "{on_disk:?}");
    assert_eq!(std::fs::read(s.lib().join(&on_disk[0])).unwrap(), body);

    // The spec lets a completed part be appended to with the right offset.
    let more = payload(1000, 2);
    let v = upload(
        &api,
        json!({"id": id, "obp": 300_000, "cm": "sha1"}),
        &[("origin", Some("origin"), &more)],
    )
    .await;
    let mut all = body.clone();
    all.extend_from_slice(&more);
    assert_eq!(data(&v)["check"]["origin"], sha1_hex(&all));
    assert_eq!(data(&v)["fileInfo"]["size"], 301_000);
    assert_eq!(
        api.download(id, &[]).await.bytes().await.unwrap().len(),
        301_000
    );
    // A rescan keeps the record (same id) and adds nothing.
    let n_before = api.all_files().await.len();
    let st = s.running.as_ref().unwrap().state.clone();
    tokio::task::spawn_blocking(move || {
        let plan = st.plan.read().unwrap().clone();
        st.scanner.scan_plan(&plan).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(api.all_files().await.len(), n_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connection_mid_chunk_then_resume() {
    let (s, api) = TestApp::start(|_| {}).await;
    let body = payload(2_000_000, 3);
    let v = announce(&api, json!({"size": 2_000_000})).await;
    let id = data(&v)["id"].as_i64().unwrap();
    let token = s.token("alice").await;
    broken_upload(&s, &token, id, 0, &body, 700_000).await;
    let n = settled_origin_size(&api, id).await;
    assert!(n > 0 && n <= 700_000, "{n}");
    // Still pending and invisible.
    assert!(api.all_files().await.iter().all(|x| x["id"] != id));
    let v = upload(
        &api,
        json!({"id": id, "obp": n, "cm": "sha1"}),
        &[("origin", Some("origin"), &body[n as usize..])],
    )
    .await;
    assert_eq!(data(&v)["check"]["origin"], sha1_hex(&body), "{v}");
    assert_eq!(
        api.download(id, &[]).await.bytes().await.unwrap().len(),
        body.len()
    );
    assert!(staged(&s).is_empty());
}

/// Parts larger than the disk writer's aligned blocks (`upload/disk.rs`
/// writes full blocks with direct I/O, the first bytes up to an aligned
/// offset and the last partial block through the page cache): a broken
/// connection keeps what arrived, its partial block included, and resumes
/// at odd offsets, below the stored size too, store every byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_parts_broken_and_resumed_at_odd_offsets_keep_every_byte() {
    let (s, api) = TestApp::start(|_| {}).await;
    let total = 21_000_003;
    let body = payload(total, 11);
    let v = announce(&api, json!({"size": total})).await;
    let id = data(&v)["id"].as_i64().unwrap();
    let token = s.token("alice").await;
    // Two full 4 MiB blocks and 1.6 MB of a third, then the cut.
    let cut = 10_000_001;
    broken_upload(&s, &token, id, 0, &body, cut).await;
    // The partial block is written once the server sees the connection
    // close; only the few bytes that might begin the boundary may be held
    // back.
    let mut n = 0;
    for _ in 0..20 {
        n = settled_origin_size(&api, id).await as usize;
        if n > cut - 1000 {
            break;
        }
    }
    assert!(n > cut - 1000 && n <= cut, "{n}");
    // Resume below the stored size, inside a block written directly: the
    // tail is cut off and rewritten, and the md5 reads the kept 6 MB back.
    let back = 6_000_001;
    let mid = 15_000_017;
    let v = upload(
        &api,
        json!({"id": id, "obp": back, "cm": "md5"}),
        &[("origin", Some("origin"), &body[back..mid])],
    )
    .await;
    assert_eq!(data(&v)["check"]["origin"], md5_hex(&body[..mid]), "{v}");
    // A request that ends normally completes the part (spec §9.3); the
    // next one appends to it.
    assert_eq!(data(&v)["fileInfo"]["size"], mid, "{v}");
    let v = upload(
        &api,
        json!({"id": id, "obp": mid, "cm": "sha1"}),
        &[("origin", Some("origin"), &body[mid..])],
    )
    .await;
    assert_eq!(data(&v)["check"]["origin"], sha1_hex(&body), "{v}");
    assert_eq!(data(&v)["fileInfo"]["size"], total);
    let got = api.download(id, &[]).await.bytes().await.unwrap();
    assert!(got[..] == body[..], "the stored original differs");
    assert!(staged(&s).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_upload_then_resume() {
    let (mut s, api) = TestApp::start(|_| {}).await;
    let body = payload(1_500_000, 4);
    let v = announce(&api, json!({"size": 1_500_000, "statusForScreen": 2})).await;
    let id = data(&v)["id"].as_i64().unwrap();
    let token = s.token("alice").await;
    broken_upload(&s, &token, id, 0, &body, 500_000).await;
    let n = settled_origin_size(&api, id).await;
    drop(api);
    let api = s.restart().await;
    // After the restart the stored size is what was synced before.
    let list = uploading(&api).await;
    let f = list
        .iter()
        .find(|f| f["id"] == id)
        .expect("pending after restart");
    assert_eq!(f["uploadingOriginSize"], n);
    assert_eq!(f["uploadingScreenSize"], 0);
    let screen = common::jpeg(400, 300, 5, None);
    let v = upload(
        &api,
        json!({"id": id, "obp": n, "cm": "md5"}),
        &[
            ("origin", Some("origin"), &body[n as usize..]),
            ("screen", Some("screen"), &screen),
        ],
    )
    .await;
    assert_eq!(data(&v)["check"]["origin"], md5_hex(&body), "{v}");
    assert_eq!(data(&v)["check"]["screen"], md5_hex(&screen), "{v}");
    assert!(uploading(&api).await.is_empty());
    let got = api.download(id, &[]).await.bytes().await.unwrap();
    assert_eq!(&got[..], &body[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_collisions_never_overwrite() {
    let (s, api) = TestApp::start(|_| {}).await;
    let v = announce(&api, json!({"name": "a.jpg", "ext": "JPG"})).await;
    let id = data(&v)["id"].as_i64().unwrap();
    let date = isync::time::civil_date(data(&v)["uploadTime"].as_i64().unwrap());
    // Someone puts a file exactly where the server would name the upload.
    let squatter = s.lib().join(format!("{date}_{id}.jpg"));
    std::fs::write(&squatter, b"do not touch").unwrap();
    let body = payload(5000, 6);
    let v = upload(
        &api,
        json!({"id": id}),
        &[("origin", Some("origin"), &body)],
    )
    .await;
    data(&v);
    assert_eq!(std::fs::read(&squatter).unwrap(), b"do not touch");
    assert_eq!(
        std::fs::read(s.lib().join(format!("{date}_{id}_1.jpg"))).unwrap(),
        body
    );
    // Same display name as an existing file: a second record, its own file.
    let v2 = announce(&api, json!({"name": "a.jpg"})).await;
    let id2 = data(&v2)["id"].as_i64().unwrap();
    let v = upload(
        &api,
        json!({"id": id2}),
        &[("origin", Some("origin"), b"second")],
    )
    .await;
    data(&v);
    assert_eq!(
        std::fs::read(s.lib().join("a.jpg")).unwrap(),
        common::jpeg(64, 48, 1, None)
    );
    assert_eq!(
        api.download(id2, &[]).await.bytes().await.unwrap(),
        "second"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_attempts_are_refused_or_made_harmless() {
    // No pre-render: it records the failed thumbnails of the 4-byte "photos"
    // uploaded below whenever it gets to them, between two snapshots.
    let (s, api) = TestApp::start(|c| c.scan.prerender_threads = 0).await;
    let before = s.snapshot().await;
    let tree = s.tree();
    let long = "x".repeat(101);
    for bad in [
        json!({"name": long}),
        json!({"name": ""}),
        json!({"ext": "../../../etc/x"}),
        json!({"ext": "abcdefghijk"}),
        json!({"cid": "../1"}),
        json!({"size": -1}),
        json!({"type": 3}),
        json!({"type": "1/.."}),
    ] {
        let v = announce(&api, bad.clone()).await;
        assert_err(&v, BAD_PARAM);
    }
    // A size no disk has: storage full (isync's −10014), not a bad value.
    let v = announce(&api, json!({"size": 1_u64 << 62})).await;
    assert_err(&v, STORAGE_FULL);
    assert_eq!(s.snapshot().await, before);
    assert_eq!(s.tree(), tree);

    // Hostile display names and extensions never reach the disk: the name
    // on disk is the server's, the extension is cleaned.
    for (name, ext) in [
        ("../../../etc/passwd", "../x"),
        ("/abs/path", "a\0b"),
        ("nul\0name", "j/p/g"),
    ] {
        let v = announce(&api, json!({"name": name, "ext": ext})).await;
        let id = data(&v)["id"].as_i64().unwrap();
        let v = upload(
            &api,
            json!({"id": id}),
            &[("origin", Some("origin"), b"data")],
        )
        .await;
        assert_eq!(data(&v)["fileInfo"]["name"], name);
        let path: String = s
            .db()
            .read_async(move |c| {
                Ok(isync::db::files::by_id(c, isync::model::FileId(id))?
                    .unwrap()
                    .path)
            })
            .await
            .unwrap();
        let p = std::path::Path::new(&path);
        assert_eq!(p.parent().unwrap(), s.lib(), "{path}");
        let fname = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            fname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "{fname}"
        );
    }
    // Part names that try to be paths are not roles.
    let v = announce(&api, json!({})).await;
    let id = data(&v)["id"].as_i64().unwrap();
    let before = s.snapshot().await;
    for f in ["../origin", "/etc/origin", "origin\0", "x/../../origin"] {
        let v = upload(&api, json!({"id": id}), &[("file", Some(f), b"x")]).await;
        assert_err(&v, BAD_PARAM);
    }
    assert_eq!(s.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_changes_nothing() {
    let (s, api) = TestApp::start(|c| c.upload.max_thumb_bytes = 1000).await;
    let v = announce(&api, json!({"statusForThumb": 2})).await;
    let id = data(&v)["id"].as_i64().unwrap();
    let imported = api.file_id("a.jpg").await;
    let bob = s.login("bob").await;
    let before = s.snapshot().await;
    let tree = s.tree();
    let anon = Api::new(&s.base);

    // No session: −10001 before anything else.
    let p = json!({"cid": root_id(&api).await, "name": "n", "size": 1, "type": 1, "ext": ""});
    assert_err(&anon.post_form("/uploadFileInfo.icc", p).await, NEED_LOGIN);
    assert_err(
        &anon.get_json("/uploadingInfo.icc", json!({})).await,
        NEED_LOGIN,
    );
    assert_err(
        &upload(
            &anon,
            json!({"id": id}),
            &[("origin", Some("origin"), b"x")],
        )
        .await,
        NEED_LOGIN,
    );
    // Missing required parameters.
    for missing in ["cid", "name", "size", "type", "ext"] {
        let mut p =
            json!({"cid": root_id(&api).await, "name": "n", "size": 1, "type": 1, "ext": "jpg"});
        p.as_object_mut().unwrap().remove(missing);
        assert_err(&api.post_form("/uploadFileInfo.icc", p).await, BAD_PARAM);
    }
    // A catalog of another user's library.
    let foreign = root_id(&bob).await;
    assert_err(&announce(&api, json!({"cid": foreign})).await, BAD_PARAM);
    assert_err(&announce(&api, json!({"cid": 999_999})).await, BAD_PARAM);

    let part: &[u8] = b"hello";
    // uploadFile: no id, bad id, foreign file, imported original.
    assert_err(
        &upload(&api, json!({}), &[("origin", Some("origin"), part)]).await,
        BAD_PARAM,
    );
    assert_err(
        &upload(
            &api,
            json!({"id": "x"}),
            &[("origin", Some("origin"), part)],
        )
        .await,
        BAD_PARAM,
    );
    assert_err(
        &upload(
            &api,
            json!({"id": 999_999}),
            &[("origin", Some("origin"), part)],
        )
        .await,
        BAD_PARAM,
    );
    assert_err(
        &upload(&bob, json!({"id": id}), &[("origin", Some("origin"), part)]).await,
        BAD_PARAM,
    );
    assert_err(
        &upload(
            &api,
            json!({"id": imported}),
            &[("origin", Some("origin"), part)],
        )
        .await,
        BAD_PARAM,
    );
    // Offsets past the stored size; a negative offset.
    assert_err(
        &upload(
            &api,
            json!({"id": id, "obp": 1}),
            &[("origin", Some("origin"), part)],
        )
        .await,
        BAD_PARAM,
    );
    assert_err(
        &upload(
            &api,
            json!({"id": id, "tbp": 7}),
            &[("thumb", Some("thumb"), part)],
        )
        .await,
        BAD_PARAM,
    );
    assert_err(
        &upload(
            &api,
            json!({"id": id, "obp": -1}),
            &[("origin", Some("origin"), part)],
        )
        .await,
        BAD_PARAM,
    );
    // Unknown role, not multipart, malformed multipart.
    assert_err(
        &upload(&api, json!({"id": id}), &[("f", Some("poster"), part)]).await,
        BAD_PARAM,
    );
    let r = api
        .send_raw(
            reqwest::Method::POST,
            &format!("/uploadFile.icc?id={id}"),
            "application/octet-stream",
            "raw",
        )
        .await;
    assert_err(&r.json().await.unwrap(), BAD_PARAM);
    let r = api
        .send_raw(
            reqwest::Method::POST,
            &format!("/uploadFile.icc?id={id}"),
            &format!("multipart/form-data; boundary={BOUNDARY}"),
            "garbage without a boundary line",
        )
        .await;
    assert_err(&r.json().await.unwrap(), BAD_PARAM);
    // Too many parts (all plain fields, so nothing is written).
    let many: Vec<(&str, Option<&str>, &[u8])> = (0..20).map(|_| ("f", None, part)).collect();
    assert_err(&upload(&api, json!({"id": id}), &many).await, BAD_PARAM);
    // Security issue #12 (low): a part header block over 16 KiB, or more
    // than 1 KiB of padding after a boundary, sent in one piece (one
    // request body, one write) — the limits held only for bytes arriving in
    // small chunks. Refused, nothing stored.
    for (what, body) in [
        (
            "header",
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; \
                 filename=\"origin\"\r\nX-Pad: {}\r\n\r\nabc\r\n--{BOUNDARY}--\r\n",
                "p".repeat(20 * 1024)
            ),
        ),
        (
            "padding",
            format!(
                "--{BOUNDARY}{}\r\nContent-Disposition: form-data; name=\"file\"; \
                 filename=\"origin\"\r\n\r\nabc\r\n--{BOUNDARY}--\r\n",
                " ".repeat(2 * 1024)
            ),
        ),
    ] {
        let r = api
            .send_raw(
                reqwest::Method::POST,
                &format!("/uploadFile.icc?id={id}"),
                &format!("multipart/form-data; boundary={BOUNDARY}"),
                body,
            )
            .await;
        // The body may be left unread: the server closes the connection
        // and says so, so the client opens a new one for its next request.
        assert_eq!(common::header(&r, "connection"), "close", "{what}");
        let v: Value = r.json().await.unwrap();
        assert_err(&v, BAD_PARAM);
        assert!(
            v["msg"].as_str().unwrap().contains(if what == "header" {
                "longer than 16384 bytes"
            } else {
                "padding"
            }),
            "{what}: {v}"
        );
    }
    // Wrong method.
    let r = api.get("/uploadFile.icc", json!({"id": id})).await;
    assert_eq!(r.status(), 405);
    assert_eq!(s.snapshot().await, before);
    assert_eq!(s.tree(), tree);

    // A thumbnail over the configured limit is refused (the bytes under
    // the limit stay staged, as for any broken request; status stays 2).
    let big = vec![7u8; 5000];
    assert_err(
        &upload(&api, json!({"id": id}), &[("thumb", Some("thumb"), &big)]).await,
        BAD_PARAM,
    );
    let list = uploading(&api).await;
    assert!(list[0]["uploadingThumbSize"].as_i64().unwrap() <= 1000);
}

// ------------------------------------------------------------- ownership

/// Makes `name` an account of built-in type `type_id` (3 uploader, 2
/// editor) and logs it in again (a session carries the permissions it was
/// opened with).
async fn as_type(s: &TestApp, name: &str, type_id: i64) -> Api {
    let n = name.to_string();
    s.db()
        .write(move |tx| {
            let u = isync::db::users::by_name(tx, &n)?.expect("user");
            isync::db::users::set_type(tx, u.id, type_id, isync::db::now())?;
            Ok(())
        })
        .unwrap();
    s.login(name).await
}

/// What an attack must leave alone: every row, every path, and the bytes
/// of the uploads, the staged part and the client thumbnails.
async fn everything(s: &TestApp) -> (String, Vec<String>, Vec<(String, Vec<u8>)>) {
    let mut bytes = Vec::new();
    for e in walkdir::WalkDir::new(s.dir.path()).sort_by_file_name() {
        let e = e.unwrap();
        let p = e.path().to_string_lossy().into_owned();
        if e.file_type().is_file() && !p.contains("isync.db") && !p.contains("isync.lock") {
            bytes.push((p, std::fs::read(e.path()).unwrap()));
        }
    }
    (s.snapshot().await, s.tree(), bytes)
}

/// Security issue #12 (High): an uploader wrote over files that are not
/// theirs. Now every part of `uploadFile.icc` — origin, thumb, screen, at
/// any offset, to a complete upload, a pending one or a scanned photo — is
/// the uploader's or a moderator's, like `updateFile.icc`/`deleteFiles.icc`,
/// and a refusal changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_uploader_cannot_write_any_part_of_someone_elses_file() {
    let (s, _) = TestApp::start(|c| c.libraries[0].users.push("bob".into())).await;
    let alice = as_type(&s, "alice", 3).await;
    let bob = as_type(&s, "bob", 3).await;
    // Alice's complete upload with her own thumbnail, and a pending one.
    let body = payload(300_000, 21);
    let thumb = common::jpeg(100, 80, 4, None);
    let v = announce(&alice, json!({"statusForThumb": 2})).await;
    let done = data(&v)["id"].as_i64().unwrap();
    let v = upload(
        &alice,
        json!({"id": done}),
        &[
            ("origin", Some("origin"), &body),
            ("thumb", Some("thumb"), &thumb),
        ],
    )
    .await;
    data(&v);
    let v = announce(&alice, json!({"name": "pending.mov"})).await;
    let pending = data(&v)["id"].as_i64().unwrap();
    let v = upload(
        &alice,
        json!({"id": pending}),
        &[("origin", Some("origin"), &body[..1000])],
    )
    .await;
    data(&v);
    // Make it pending again (an append that breaks off keeps 1000 bytes).
    let token = s.token("alice").await;
    broken_upload(&s, &token, pending, 1000, &body[1000..], 0).await;
    let scanned = bob.file_id("a.jpg").await;
    let before = everything(&s).await;

    let evil = payload(5000, 66);
    let attacks: Vec<(i64, Value, &str)> = vec![
        // Replace, truncate, append to her complete original.
        (done, json!({"id": done, "obp": 0}), "origin"),
        (done, json!({"id": done, "obp": 100}), "origin"),
        (done, json!({"id": done, "obp": 300_000}), "origin"),
        // Her thumbnail, and the screen level the server would make.
        (done, json!({"id": done, "tbp": 0}), "thumb"),
        (done, json!({"id": done, "sbp": 0}), "screen"),
        // Truncate or extend her pending upload.
        (pending, json!({"id": pending, "obp": 0}), "origin"),
        (pending, json!({"id": pending, "obp": 1000}), "origin"),
        // The thumbnails of a scanned library photo, for everyone.
        (scanned, json!({"id": scanned, "tbp": 0}), "thumb"),
        (scanned, json!({"id": scanned, "sbp": 0}), "screen"),
        (scanned, json!({"id": scanned}), "origin"),
    ];
    for (id, q, part) in &attacks {
        let v = upload(&bob, q.clone(), &[(part, Some(part), &evil)]).await;
        assert_err(&v, common::NO_PERMISSION);
        assert!(v["msg"].as_str().unwrap().contains("moderate"), "{v}");
        // The same with the role as the field name only.
        let v = upload(&bob, q.clone(), &[(part, None, &evil)]).await;
        assert_err(&v, common::NO_PERMISSION);
        assert_eq!(everything(&s).await, before, "file {id}, {q}, {part}");
    }
    let got = alice.download(done, &[]).await.bytes().await.unwrap();
    assert!(got[..] == body[..]);
    let list = uploading(&alice).await;
    let p = list.iter().find(|f| f["id"] == pending).unwrap();
    assert_eq!(p["uploadingOriginSize"], 1000, "{p}");

    // The owner may, and so may a moderator: the same rule as updateFile.
    let v = upload(
        &alice,
        json!({"id": pending, "obp": 1000}),
        &[("origin", Some("origin"), &body[1000..2000])],
    )
    .await;
    assert_eq!(data(&v)["fileInfo"]["size"], 2000);
    let bob = as_type(&s, "bob", 2).await;
    let shot = common::jpeg(300, 200, 8, None);
    let v = upload(
        &bob,
        json!({"id": scanned, "sbp": 0}),
        &[("screen", Some("screen"), &shot)],
    )
    .await;
    data(&v);
}

/// Security issue #12: a rewrite of a complete original (an offset below
/// its size) never cuts it in place. The stored version goes to the trash,
/// restorable byte for byte; the spec's semantics hold (the bytes below the
/// offset are kept, the rest is the new part); an append at its size keeps
/// everything and trashes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_original_keeps_its_old_version_in_the_trash() {
    let (s, api) = TestApp::start(|_| {}).await;
    let old = payload(300_000, 31);
    let v = announce(&api, json!({})).await;
    let id = data(&v)["id"].as_i64().unwrap();
    data(&upload(&api, json!({"id": id}), &[("origin", Some("origin"), &old)]).await);
    let old_path = s.lib().join(format!(
        "{}_{id}.jpg",
        isync::time::civil_date(data(&v)["uploadTime"].as_i64().unwrap())
    ));
    assert_eq!(std::fs::read(&old_path).unwrap(), old);

    // Rewrite from byte 100,000.
    let tail = payload(50_000, 32);
    let v = upload(
        &api,
        json!({"id": id, "obp": 100_000, "cm": "sha1"}),
        &[("origin", Some("origin"), &tail)],
    )
    .await;
    let mut new = old[..100_000].to_vec();
    new.extend_from_slice(&tail);
    assert_eq!(data(&v)["check"]["origin"], sha1_hex(&new), "{v}");
    assert_eq!(data(&v)["fileInfo"]["size"], 150_000);
    let got = api.download(id, &[]).await.bytes().await.unwrap();
    assert!(got[..] == new[..]);
    let trash = isync::trash::list(s.db()).unwrap();
    assert_eq!(trash.len(), 1, "{trash:?}");
    assert_eq!(trash[0].original_path, old_path.to_string_lossy());
    assert_eq!(trash[0].size, Some(300_000));
    assert!(std::fs::read(&trash[0].trash_path).unwrap() == old);
    assert!(staged(&s).is_empty(), "{:?}", staged(&s));

    // An append at the size: kept and extended, nothing more in the trash.
    let more = payload(1000, 33);
    let v = upload(
        &api,
        json!({"id": id, "obp": 150_000}),
        &[("origin", Some("origin"), &more)],
    )
    .await;
    assert_eq!(data(&v)["fileInfo"]["size"], 151_000);
    assert_eq!(isync::trash::list(s.db()).unwrap().len(), 1);

    // The old version comes back with `isync trash restore`, beside the
    // new one; one record for the upload, the restored file listed anew.
    let back = isync::trash::restore(s.db(), trash[0].id).unwrap();
    assert!(std::fs::read(&back).unwrap() == old);
    let st = s.running.as_ref().unwrap().state.clone();
    tokio::task::spawn_blocking(move || {
        let plan = st.plan.read().unwrap().clone();
        st.scanner.scan_plan(&plan).unwrap()
    })
    .await
    .unwrap();
    let all = api.all_files().await;
    assert_eq!(all.iter().filter(|f| f["id"] == id).count(), 1);
    assert_eq!(
        all.len(),
        4,
        "a.jpg, b.jpg, the upload, the restored version"
    );
}

// ------------------------------------------------------- memory, races, timer

/// `VmRSS` of process `pid`, in bytes.
fn rss_of(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// A multipart body of one `origin` part of `size` bytes, generated as it
/// is sent (the client holds one 1 MiB block, never the body).
/// `sent` counts the payload bytes handed to the client so far.
fn streamed_origin(size: u64, sent: std::sync::Arc<AtomicU64>) -> (u64, reqwest::Body) {
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"origin\"\r\n\r\n"
    );
    let tail = format!("\r\n--{BOUNDARY}--\r\n");
    let len = head.len() as u64 + size + tail.len() as u64;
    let block = bytes::Bytes::from(payload(1 << 20, 9));
    let blocks = size >> 20;
    let body = futures_util::stream::iter(
        std::iter::once(bytes::Bytes::from(head))
            .chain((0..blocks).map(move |_| {
                sent.fetch_add(block.len() as u64, Ordering::Relaxed);
                block.clone()
            }))
            .chain(std::iter::once(bytes::Bytes::from(tail)))
            .map(Ok::<_, std::io::Error>),
    );
    (len, reqwest::Body::wrap_stream(body))
}

/// Issue 3: a large upload keeps the server's memory flat (the 4 GB run is
/// `cargo bench --bench upload`; this is the bounded variant for CI). The
/// real binary, as a separate process, receives 256 MiB while
/// its `VmRSS` is sampled every 10 ms (after a small warm-up upload).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_upload_keeps_server_memory_flat() {
    const SIZE: u64 = 256 << 20;
    const BOUND: u64 = 32 << 20;
    let mut p = common::process::Process::new(&["alice"], "");
    p.start(&[]);
    let pid = p.pid();
    let api = Api::new(&p.base);
    let v = api
        .get_json(
            "/login.icc",
            json!({"userName": "alice", "password": common::PASSWORD}),
        )
        .await;
    assert_eq!(v["code"], 0, "{v}");
    // Warm up: one small upload through the same path.
    for size in [4u64 << 20, SIZE] {
        let a = announce(&api, json!({"size": size})).await;
        let id = data(&a)["id"].as_i64().unwrap();
        let before = rss_of(pid);
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let sent = std::sync::Arc::new(AtomicU64::new(0));
        // (payload bytes sent, server RSS) every 10 ms.
        let sampler = {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut curve = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    curve.push((sent.load(Ordering::Relaxed), rss_of(pid)));
                    std::thread::sleep(Duration::from_millis(10));
                }
                curve
            })
        };
        let (len, body) = streamed_origin(size, sent);
        let r: Value = api
            .http
            .post(api.url("/uploadFile.icc"))
            .query(&[("id", id)])
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .header("content-length", len)
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stop.store(true, Ordering::Relaxed);
        let samples = sampler.join().unwrap();
        let curve: Vec<u64> = samples.iter().map(|&(_, rss)| rss).collect();
        assert_eq!(r["code"], 0, "{r}");
        assert_eq!(data(&r)["fileInfo"]["size"], size);
        let peak = curve.iter().copied().max().unwrap_or(before);
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        eprintln!(
            "upload of {:.0} MiB: server RSS {:.1} MiB before, peak {:.1} MiB ({} samples)",
            mib(size),
            mib(before),
            mib(peak),
            curve.len()
        );
        let every: Vec<String> = curve
            .iter()
            .step_by(8)
            .map(|r| format!("{:.0}", mib(*r)))
            .collect();
        eprintln!("  RSS every 80 ms (MiB): {}", every.join(" "));
        if size == SIZE {
            // Bounded (the queue to the disk writer and buffers), and not
            // growing with the bytes received: while the second half of the
            // payload streams, RSS peaks no higher than during the first
            // (plus allocator slack). Split by bytes sent, not by time: the
            // completion (fsync, database, the watcher) comes after the
            // last byte and is not growth with the bytes.
            assert!(
                peak.saturating_sub(before) < BOUND,
                "server RSS grew by {:.1} MiB while receiving {:.0} MiB (bound {:.0} MiB)",
                mib(peak.saturating_sub(before)),
                mib(size),
                mib(BOUND)
            );
            let half = |range: std::ops::Range<u64>| {
                samples
                    .iter()
                    .filter(|(s, _)| range.contains(s))
                    .map(|&(_, rss)| rss)
                    .max()
                    .expect("samples in each half of the upload")
            };
            let (p1, p2) = (half(0..SIZE / 2), half(SIZE / 2..SIZE));
            assert!(
                p2 <= p1 + (8 << 20),
                "server RSS kept growing: peak {:.1} MiB in the first half, {:.1} MiB in the second",
                mib(p1),
                mib(p2)
            );
        }
    }
}

/// Issue 3: stale partial uploads are purged by the server's timer, with no
/// upload or deletion to trigger it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_housekeeping_timer_purges_stale_uploads_without_activity() {
    let (s, api) = TestApp::start(|c| c.upload.stale_after_hours = 0).await;
    let a = announce(&api, json!({})).await;
    let id = data(&a)["id"].as_i64().unwrap();
    let part = payload(1000, 3);
    let token = s.token("alice").await;
    broken_upload(&s, &token, id, 0, &part, 500).await;
    assert!(settled_origin_size(&api, id).await > 0);
    // Older than the cut-off (whole seconds), and nothing else runs it:
    // the announce above already used the hourly activity-triggered run.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(uploading(&api).await.len(), 1, "not purged by activity");
    let token = tokio_util::sync::CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    isync::trash::spawn_housekeeping(
        s.db(),
        &std::sync::Arc::new(s.cfg.clone()),
        Duration::from_millis(200),
        token.clone(),
        &tracker,
    );
    let t = std::time::Instant::now();
    while !uploading(&api).await.is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "not purged by the timer"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(staged(&s).is_empty(), "{:?}", staged(&s));
    // The staged bytes went to the trash (restorable), not lost.
    let trash = isync::trash::list(s.db()).unwrap();
    assert_eq!(trash.len(), 1);
    assert_eq!(std::fs::read(&trash[0].trash_path).unwrap().len(), 500);
    // Stops on shutdown.
    token.cancel();
    tracker.close();
    tokio::time::timeout(Duration::from_secs(30), tracker.wait())
        .await
        .expect("the timer stops when cancelled");
}

/// Issue 3: re-uploading a completed original while the scanner runs over
/// and over on the same folder never yields a duplicate record, never
/// loses the upload and never fails it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_uploads_racing_the_scanner_keep_one_record() {
    let (s, api) = TestApp::start(|_| {}).await;
    let a = announce(&api, json!({})).await;
    let id = data(&a)["id"].as_i64().unwrap();
    let first = payload(4096, 1);
    let r = upload(&api, json!({"id": id}), &[("file", Some("origin"), &first)]).await;
    assert_eq!(r["code"], 0, "{r}");

    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let done = std::sync::Arc::new(AtomicU64::new(0));
    let scans = {
        let state = s.running.as_ref().unwrap().state.clone();
        let (stop, done) = (stop.clone(), done.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let plan = state.plan.read().unwrap().clone();
                state.scanner.scan_plan(&plan).expect("scan");
                n += 1;
                done.store(n, Ordering::Relaxed);
            }
            n
        })
    };
    let mut last = first;
    // 60 re-uploads at least, and on until the scanner has run more than
    // 10 times among them (on a loaded machine its thread may get little
    // time while the uploads get through): the race is the test's plan,
    // not the machine's luck. Bounded, so a scanner that stalls still ends
    // the test.
    let mut round = 0u64;
    while round < 60 || done.load(Ordering::Relaxed) <= 10 {
        assert!(
            round < 2000,
            "the scanner ran only {} times in {round} re-uploads",
            done.load(Ordering::Relaxed)
        );
        round += 1;
        let bytes = payload(4096 + round as usize, 100 + round);
        let r = upload(
            &api,
            json!({"id": id, "cm": "sha1"}),
            &[("file", Some("origin"), &bytes)],
        )
        .await;
        assert_eq!(r["code"], 0, "round {round}: {r}");
        assert_eq!(data(&r)["check"]["origin"], sha1_hex(&bytes));
        last = bytes;
    }
    stop.store(true, Ordering::Relaxed);
    let n = scans.join().unwrap();
    assert!(n > 10, "the scanner ran only {n} times");
    let state = s.running.as_ref().unwrap().state.clone();
    let plan = state.plan.read().unwrap().clone();
    state.scanner.scan_plan(&plan).unwrap();

    // One record per file on disk, and the upload is the one we sent last.
    let names = api.all_files().await;
    let mut listed: Vec<String> = names
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, ["a.jpg", "b.jpg", "holiday.jpg"], "{names:#?}");
    let f = api.file_named("holiday.jpg").await;
    assert_eq!(common::id(&f), id);
    let r = api.download(id, &[]).await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), last.as_slice());
    let on_disk: Vec<String> = std::fs::read_dir(s.lib())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && n != "sub" && n != "a.jpg")
        .collect();
    assert_eq!(on_disk.len(), 1, "{on_disk:?}");
    let rows: i64 = s
        .db()
        .read(|c| Ok(c.query_row("SELECT count(*) FROM files", [], |r| r.get(0))?))
        .unwrap();
    // a.jpg, sub/b.jpg, the upload, and other/c.jpg (bob's library).
    assert_eq!(rows, 4, "one row per file");
}
