//! `downFile.icc` / `downFile.icc.<ext>` (spec §6.11, §7): whole files, the
//! Range checklist, HEAD, conditional requests, a file gone from disk, and
//! a large sparse file read near its end (bytes read counted in the real
//! server process).

use crate::common;

use common::*;
use serde_json::json;

/// 1000 bytes whose value is their offset mod 251, so any misplaced slice
/// shows.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

const SIZE: usize = 1000;

async fn app() -> TestApp {
    TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .file("lib/data.qqq", &pattern(SIZE))
        .file("lib/photo.jpg", &jpeg(64, 48, 1, None))
        .file("lib/clip.mp4", b"not really a video, but named like one")
        .file("lib/empty.txt", b"")
        // Thumbnails only when asked (offline_not_gone needs one uncached).
        .prerender(false)
        .spawn()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_files_with_type_length_and_accept_ranges() {
    let app = app().await;
    for (name, ctype) in [
        ("data.qqq", "application/octet-stream"),
        ("photo.jpg", "image/jpeg"),
        ("clip.mp4", "video/mp4"),
        ("empty.txt", "text/plain"),
    ] {
        let on_disk = std::fs::read(app.media().join("lib").join(name)).unwrap();
        let id = app.api.file_id(name).await;
        let r = app.api.download(id, &[]).await;
        assert_eq!(r.status(), 200, "{name}");
        assert!(
            header(&r, "content-type").starts_with(ctype),
            "{name}: {}",
            header(&r, "content-type")
        );
        assert_eq!(
            header(&r, "content-length"),
            on_disk.len().to_string(),
            "{name}"
        );
        assert_eq!(header(&r, "accept-ranges"), "bytes", "{name}");
        assert_eq!(header(&r, "content-range"), "", "{name}");
        assert_eq!(
            r.bytes().await.unwrap().as_ref(),
            on_disk.as_slice(),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_suffix_after_downfile_ic_is_routed_there() {
    let app = app().await;
    let id = app.api.file_id("clip.mp4").await;
    for path in [
        "/downFile.icc.mp4",
        "/downFile.icc.MOV",
        "/downFile.ic",
        "/downFile.icx",
    ] {
        let r = app.api.get(path, json!({"id": id})).await;
        assert_eq!(r.status(), 200, "{path}");
        // The content type comes from the real file, not the suffix.
        assert!(
            header(&r, "content-type").starts_with("video/mp4"),
            "{path}"
        );
        assert_eq!(r.bytes().await.unwrap().len(), 38);
    }
    // Paths are case-sensitive and must start with /downFile.ic.
    for path in [
        "/downfile.icc",
        "/DownFile.icc",
        "/downFile.i",
        "/xdownFile.icc",
    ] {
        let r = app.api.get(path, json!({"id": id})).await;
        assert_eq!(r.status(), 404, "{path}");
    }
}

/// One Range request against data.qqq: status, Content-Range, body.
async fn ranged(app: &TestApp, id: i64, range: &str) -> (u16, String, String, Vec<u8>) {
    let r = app.api.download(id, &[("Range", range)]).await;
    let status = r.status().as_u16();
    let cr = header(&r, "content-range");
    let cl = header(&r, "content-length");
    let body = r.bytes().await.unwrap().to_vec();
    assert_eq!(
        cl,
        body.len().to_string(),
        "{range}: Content-Length vs body"
    );
    (status, cr, cl, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_ranges_are_206_with_exact_bytes() {
    let app = app().await;
    let id = app.api.file_id("data.qqq").await;
    let file = pattern(SIZE);
    let last = SIZE - 1;
    for (range, a, b) in [
        ("bytes=0-0", 0, 0),
        ("bytes=0-1", 0, 1),
        ("bytes=10-19", 10, 19),
        ("bytes=500-", 500, last),
        ("bytes=0-", 0, last),
        ("bytes=-1", last, last),
        ("bytes=-100", SIZE - 100, last),
        ("bytes=-1000", 0, last),
        ("bytes=-5000", 0, last),
        ("bytes=990-5000", 990, last),
        ("bytes=999-999", last, last),
        ("bytes=999-", last, last),
    ] {
        let (status, cr, _, body) = ranged(&app, id, range).await;
        assert_eq!(status, 206, "{range}");
        assert_eq!(cr, format!("bytes {a}-{b}/{SIZE}"), "{range}");
        assert_eq!(body, file[a..=b], "{range}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_past_the_end_are_416() {
    let app = app().await;
    let id = app.api.file_id("data.qqq").await;
    for range in [
        "bytes=1000-",
        "bytes=1000-1000",
        "bytes=5000-6000",
        "bytes=-0",
    ] {
        let (status, cr, _, body) = ranged(&app, id, range).await;
        assert_eq!(status, 416, "{range}");
        assert_eq!(cr, format!("bytes */{SIZE}"), "{range}");
        assert!(body.is_empty() || serde_json::from_slice::<serde_json::Value>(&body).is_ok());
    }
    // An empty file has no byte to start at.
    let empty = app.api.file_id("empty.txt").await;
    let (status, cr, _, _) = ranged(&app, empty, "bytes=0-").await;
    assert_eq!((status, cr.as_str()), (416, "bytes */0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_unparsable_or_reversed_ranges_send_the_whole_file() {
    let app = app().await;
    let id = app.api.file_id("data.qqq").await;
    for range in [
        "bytes=0-1,5-6",
        "bytes=0-1, 500-",
        "garbage",
        "bytes=abc-",
        "bytes=5-2",
        "items=0-1",
        "bytes=",
        "bytes=--5",
        "bytes=1-2-3",
    ] {
        let (status, cr, _, body) = ranged(&app, id, range).await;
        assert_eq!(status, 200, "{range}");
        assert_eq!(cr, "", "{range}");
        assert_eq!(body, pattern(SIZE), "{range}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_has_the_same_headers_and_no_body() {
    let app = app().await;
    let id = app.api.file_id("data.qqq").await;
    for range in [None, Some("bytes=10-19"), Some("bytes=2000-")] {
        let mut get = app
            .api
            .http
            .get(app.api.url("/downFile.icc"))
            .query(&[("id", id)]);
        let mut head = app
            .api
            .http
            .head(app.api.url("/downFile.icc"))
            .query(&[("id", id)]);
        if let Some(r) = range {
            get = get.header("Range", r);
            head = head.header("Range", r);
        }
        let g = get.send().await.unwrap();
        let h = head.send().await.unwrap();
        assert_eq!(g.status(), h.status(), "{range:?}");
        for name in [
            "content-type",
            "content-length",
            "accept-ranges",
            "content-range",
            "etag",
            "last-modified",
        ] {
            assert_eq!(header(&g, name), header(&h, name), "{name} for {range:?}");
        }
        assert!(h.bytes().await.unwrap().is_empty(), "HEAD has no body");
    }
    let h = app
        .api
        .http
        .head(app.api.url("/downFile.icc.bin"))
        .query(&[("id", id)])
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    assert_eq!(header(&h, "content-length"), SIZE.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_requests() {
    let app = app().await;
    let id = app.api.file_id("data.qqq").await;
    let r = app.api.download(id, &[]).await;
    let etag = header(&r, "etag");
    let modified = header(&r, "last-modified");
    assert!(!etag.is_empty() && !modified.is_empty());

    let r = app.api.download(id, &[("If-None-Match", &etag)]).await;
    assert_eq!(r.status(), 304);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = app
        .api
        .download(id, &[("If-None-Match", &format!("\"other\", {etag}"))])
        .await;
    assert_eq!(r.status(), 304);
    let r = app
        .api
        .download(id, &[("If-None-Match", "\"other\"")])
        .await;
    assert_eq!(r.status(), 200);

    // If-Range: the range only while the validator still matches.
    let r = app
        .api
        .download(id, &[("Range", "bytes=0-9"), ("If-Range", &etag)])
        .await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().len(), 10);
    let r = app
        .api
        .download(id, &[("Range", "bytes=0-9"), ("If-Range", &modified)])
        .await;
    assert_eq!(r.status(), 206);
    let r = app
        .api
        .download(id, &[("Range", "bytes=0-9"), ("If-Range", "\"stale\"")])
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-range"), "");
    assert_eq!(r.bytes().await.unwrap().to_vec(), pattern(SIZE));

    // A changed file gets a new validator.
    let path = app.media().join("lib/data.qqq");
    std::fs::write(&path, pattern(SIZE + 1)).unwrap();
    let r = app.api.download(id, &[("If-None-Match", &etag)]).await;
    assert_eq!(r.status(), 200, "changed file must not be 304");
    assert_ne!(header(&r, "etag"), etag);
}

/// README "Downloads honour `If-Modified-Since`" (RFC 9110 §13.1.3): 304
/// with no body when the file was not modified after the date sent — its
/// Last-Modified or any later date —, the whole file when it was, when the
/// date is not an HTTP-date, and once the file changes; `If-None-Match`,
/// when sent, decides alone. (The date was compared as a string: only the
/// exact Last-Modified got a 304.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_modified_since() {
    const T: u64 = 1_700_000_000;
    let app = TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .file("lib/data.qqq", &pattern(SIZE))
        .with_media(|m| set_mtime(&m.join("lib/data.qqq"), T))
        .spawn()
        .await;
    let date = |secs: u64| {
        httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
    };
    let id = app.api.file_id("data.qqq").await;
    let r = app.api.download(id, &[]).await;
    let (modified, etag) = (header(&r, "last-modified"), header(&r, "etag"));
    assert_eq!(modified, date(T));
    for (ims, status) in [
        (modified.clone(), 304),
        (date(T + 1), 304),
        (date(T + 100_000_000), 304),
        // Another spelling of the same instant (RFC 850).
        ("Tuesday, 14-Nov-23 22:13:20 GMT".to_string(), 304),
        (date(T - 1), 200),
        (date(0), 200),
        ("yesterday".into(), 200),
        (String::new(), 200),
    ] {
        let r = app.api.download(id, &[("If-Modified-Since", &ims)]).await;
        assert_eq!(r.status(), status, "If-Modified-Since: {ims:?}");
        assert_eq!(header(&r, "etag"), etag, "{ims:?}");
        let body = r.bytes().await.unwrap().to_vec();
        if status == 304 {
            assert!(body.is_empty(), "{ims:?}");
        } else {
            assert_eq!(body, pattern(SIZE), "{ims:?}");
        }
    }
    let r = app
        .api
        .download(
            id,
            &[
                ("If-None-Match", "\"other\""),
                ("If-Modified-Since", &modified),
            ],
        )
        .await;
    assert_eq!(r.status(), 200, "If-None-Match decides");
    let r = app
        .api
        .download(
            id,
            &[("If-None-Match", &etag), ("If-Modified-Since", &date(0))],
        )
        .await;
    assert_eq!(r.status(), 304, "If-None-Match decides");

    // Touched later: modified since.
    set_mtime(&app.media().join("lib/data.qqq"), T + 60);
    let r = app
        .api
        .download(id, &[("If-Modified-Since", &modified)])
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "last-modified"), date(T + 60));
    assert_eq!(r.bytes().await.unwrap().to_vec(), pattern(SIZE));
}

/// The `Server-Timing: app;dur=<ms>` value of a response.
fn server_timing(r: &reqwest::Response, what: &str) -> f64 {
    let v = header(r, "server-timing");
    let ms = v
        .strip_prefix("app;dur=")
        .unwrap_or_else(|| panic!("{what}: Server-Timing {v:?}"));
    let ms: f64 = ms
        .parse()
        .unwrap_or_else(|_| panic!("{what}: Server-Timing {v:?}"));
    assert!(ms.is_finite() && ms >= 0.0, "{what}: {v:?}");
    ms
}

/// README "Every response carries `Server-Timing: app;dur=<ms>`": a JSON
/// success and a JSON error, a binary 200, 304 and 206, a binary error,
/// the 404 of an unknown path and the 405 of a wrong method, with and
/// without a session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_server_timing() {
    let app = app().await;
    let id = app.api.file_id("data.qqq").await;
    let r = app.api.download(id, &[]).await;
    let etag = header(&r, "etag");
    let mut seen = Vec::new();
    let mut check = |what: &str, r: &reqwest::Response, status: u16| {
        assert_eq!(r.status(), status, "{what}");
        server_timing(r, what);
        seen.push(status);
    };
    check("binary", &app.api.download(id, &[]).await, 200);
    check(
        "304",
        &app.api.download(id, &[("If-None-Match", &etag)]).await,
        304,
    );
    check(
        "206",
        &app.api.download(id, &[("Range", "bytes=0-9")]).await,
        206,
    );
    check(
        "416",
        &app.api.download(id, &[("Range", "bytes=5000-")]).await,
        416,
    );
    check("binary error", &app.api.download(999_999, &[]).await, 404);
    let r = app.api.get("/files.icc", json!({"pageIndex": 0})).await;
    assert_eq!(header(&r, "content-type"), "application/json");
    check("JSON ok", &r, 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["code"], OK);
    let r = app.anon().get("/files.icc", json!({"pageIndex": 0})).await;
    check("JSON error (no session)", &r, 200);
    assert_err(&r.json().await.unwrap(), NEED_LOGIN);
    let r = app.api.get("/files.icc", json!({"pageIndex": "x"})).await;
    check("JSON error (bad parameter)", &r, 200);
    assert_err(&r.json().await.unwrap(), BAD_PARAM);
    let r = app.anon().get("/no/such/path", json!({})).await;
    check("404 fallback", &r, 404);
    let r = app
        .api
        .http
        .post(app.api.url("/downFile.icc.bin"))
        .send()
        .await
        .unwrap();
    check("405 on a prefixed route", &r, 405);
    let r = app
        .api
        .http
        .put(app.api.url("/files.icc"))
        .send()
        .await
        .unwrap();
    check("405 on a route", &r, 405);
    assert_eq!(seen.len(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_gone_from_disk_and_bad_ids() {
    let app = app().await;
    let id = app.api.file_id("photo.jpg").await;
    std::fs::remove_file(app.media().join("lib/photo.jpg")).unwrap();
    assert_binary_err_status(app.api.download(id, &[]).await, 404, FILE_GONE).await;
    let r = app.api.download(id, &[("Range", "bytes=0-0")]).await;
    assert_binary_err_status(r, 404, FILE_GONE).await;

    assert_binary_err_status(app.api.download(999_999, &[]).await, 404, NOT_FOUND).await;
    for bad in [
        json!({}),
        json!({"id": "x"}),
        json!({"id": ""}),
        json!({"id": "1_0"}),
    ] {
        let r = app.api.get("/downFile.icc", bad.clone()).await;
        assert_binary_err_status(r, 400, BAD_PARAM).await;
    }
    // Wrong method.
    let r = app
        .api
        .http
        .post(app.api.url("/downFile.icc"))
        .query(&[("id", id)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}

/// Bytes the process `pid` has read so far, by any `read` call (files,
/// sockets, pipes, the sparse holes of a file included): `rchar` in
/// `/proc/<pid>/io`.
fn bytes_read_by(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).expect("read /proc/<pid>/io");
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .expect("rchar in /proc/<pid>/io")
        .trim()
        .parse()
        .expect("rchar is a number")
}

/// Range reads near the end of a 200 MB file, and HEAD, read what they
/// send and not the file: counted as the bytes the real server process
/// reads (`/proc/<pid>/io`), which a full download of the same file is
/// shown to raise by the whole size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_sparse_file_streams_from_near_its_end() {
    const BIG: u64 = 200 * 1024 * 1024;
    // Far below BIG, far above what the replies, the requests and the
    // server's own bookkeeping read.
    const SMALL_READS: u64 = 8 * 1024 * 1024;
    let tail = b"the very end of a big file";
    let mut p = common::process::Process::new(&["alice"], "");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(p.lib().join("big.bin")).unwrap();
        f.set_len(BIG).unwrap();
        f.seek(SeekFrom::Start(BIG - tail.len() as u64)).unwrap();
        f.write_all(tail).unwrap();
    }
    p.start(&[]);
    p.wait_logged("initial scan:", 1).await;
    let api = p.login("alice").await;
    let file = api.file_named("big.bin").await;
    assert_eq!(file["size"], BIG);
    let id = id(&file);
    let pid = p.pid();

    let before = bytes_read_by(pid);
    let r = api
        .download(id, &[("Range", &format!("bytes=-{}", tail.len()))])
        .await;
    assert_eq!(r.status(), 206);
    assert_eq!(
        header(&r, "content-range"),
        format!("bytes {}-{}/{BIG}", BIG - tail.len() as u64, BIG - 1)
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), tail);
    let r = api
        .download(
            id,
            &[(
                "Range",
                &format!("bytes={}-{}", BIG - 100_000, BIG - 99_001),
            )],
        )
        .await;
    assert_eq!(r.status(), 206);
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), 1000);
    assert!(body.iter().all(|b| *b == 0));
    // The whole file's headers without reading it.
    let h = api
        .http
        .head(api.url("/downFile.icc"))
        .query(&[("id", id)])
        .send()
        .await
        .unwrap();
    assert_eq!(header(&h, "content-length"), BIG.to_string());
    let ranged = bytes_read_by(pid) - before;
    assert!(
        ranged < SMALL_READS,
        "range reads and HEAD must not read the whole file: the server read {ranged} bytes"
    );

    // The measure sees a full read: downloading the whole file raises it
    // by at least the file's size.
    let before = bytes_read_by(pid);
    let mut r = api.download(id, &[]).await;
    assert_eq!(r.status(), 200);
    let mut got = 0u64;
    while let Some(chunk) = r.chunk().await.unwrap() {
        got += chunk.len() as u64;
    }
    assert_eq!(got, BIG);
    let full = bytes_read_by(pid) - before;
    assert!(
        full >= BIG,
        "a full download read only {full} bytes of {BIG}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_spaces_unicode_and_url_characters() {
    let names = [
        "Été 2024/photo #1.jpg",
        "100% sure/a?b&c=d.txt",
        "quotes/\"x\" 'y'.qqq",
        "日本/写真.JPEG",
    ];
    let mut b = TestApp::builder().user("alice").library("lib", &["alice"]);
    for (i, n) in names.iter().enumerate() {
        b = b.file(&format!("lib/{n}"), &pattern(100 + i));
    }
    let app = b.spawn().await;
    for (i, n) in names.iter().enumerate() {
        let file = n.rsplit('/').next().unwrap();
        let f = app.api.file_named(file).await;
        let r = app.api.download(id(&f), &[("Range", "bytes=1-")]).await;
        assert_eq!(r.status(), 206, "{n}");
        assert_eq!(
            r.bytes().await.unwrap().to_vec(),
            pattern(100 + i)[1..],
            "{n}"
        );
    }
    let jpeg = app.api.file_named("写真.JPEG").await;
    assert_eq!(jpeg["ext"], "jpeg");
    let r = app.api.download(id(&jpeg), &[]).await;
    assert_eq!(header(&r, "content-type"), "image/jpeg");
}

// ------------------------------------------------- symlink swaps (finding 5)

/// What a file outside the library holds; no reply may ever carry it.
const SECRET: &[u8] = b"OUTSIDE-THE-LIBRARY: /etc/shadow stand-in";

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Swaps two paths atomically (`renameat2(RENAME_EXCHANGE)`): a file or a
/// folder of the library and a symlink beside it trade places, and
/// swapping again puts everything back, inodes included.
fn exchange(a: &std::path::Path, b: &std::path::Path) {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        a,
        rustix::fs::CWD,
        b,
        rustix::fs::RenameFlags::EXCHANGE,
    )
    .unwrap_or_else(|e| panic!("exchange {} and {}: {e}", a.display(), b.display()));
}

/// Every path and content under `dir`, to show nothing changed there.
fn tree_of(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .map(|e| e.unwrap())
        .map(|e| {
            let bytes = if e.file_type().is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            (e.path().display().to_string(), bytes)
        })
        .collect();
    v.sort();
    v
}

/// A library with `photo.jpg` and `sub/c.jpg`; beside it (not a library)
/// `outside/` holds files of the same names with [`SECRET`], and `swap/`
/// holds symlinks to them, ready to be exchanged with the library's.
async fn swap_app(watch: bool) -> TestApp {
    TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .file("lib/photo.jpg", &jpeg(64, 48, 1, None))
        .file("lib/sub/c.jpg", &jpeg(32, 32, 3, None))
        .file("outside/photo.jpg", SECRET)
        .file("outside/c.jpg", SECRET)
        .with_media(|m| {
            std::fs::create_dir_all(m.join("swap")).unwrap();
            std::os::unix::fs::symlink(m.join("outside/photo.jpg"), m.join("swap/photo.jpg"))
                .unwrap();
            std::os::unix::fs::symlink(m.join("outside"), m.join("swap/sub")).unwrap();
        })
        .watch(watch)
        .spawn()
        .await
}

/// One reply of the hammer: the original's exact bytes, or a JSON error;
/// never a byte of the outside file.
#[derive(Debug, Default)]
struct Outcomes {
    sent: usize,
    refused: Vec<i64>,
}

async fn fetch_checked(r: reqwest::Response, original: &[u8], what: &str, out: &mut Outcomes) {
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap();
    assert!(
        !contains(&body, SECRET),
        "{what}: HTTP {status} sent the outside file"
    );
    if status == 200 || status == 206 {
        assert_eq!(body.as_ref(), original, "{what}: {status} with other bytes");
        out.sent += 1;
    } else {
        let v: serde_json::Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{what}: HTTP {status}, not JSON ({e})"));
        out.refused.push(v["code"].as_i64().unwrap());
    }
}

async fn symlink_swaps_never_send_an_outside_file(watch: bool) {
    let app = swap_app(watch).await;
    let m = app.media();
    let photo = jpeg(64, 48, 1, None);
    let c = jpeg(32, 32, 3, None);
    let (pid, cid) = (
        app.api.file_id("photo.jpg").await,
        app.api.file_id("c.jpg").await,
    );
    let key = |id: i64| {
        let api = app.api.clone();
        async move {
            let v = api.get_json("/shareFileUrl.icc", json!({"id": id})).await;
            data(&v).as_str().unwrap().to_string()
        }
    };
    let (pkey, ckey) = (key(pid).await, key(cid).await);
    let anon = app.anon();
    let outside_before = tree_of(&m.join("outside"));
    let db_before = app.db_snapshot().await;

    // Held swapped: the file, then a folder on the path. With the watcher
    // off nothing has rescanned: the record still names the path.
    for (lib_path, swap_path) in [
        (m.join("lib/photo.jpg"), m.join("swap/photo.jpg")),
        (m.join("lib/sub"), m.join("swap/sub")),
    ] {
        exchange(&lib_path, &swap_path);
        for (id, k) in [(pid, &pkey), (cid, &ckey)] {
            let mut out = Outcomes::default();
            let original = if id == pid { &photo } else { &c };
            fetch_checked(
                app.api.download(id, &[]).await,
                original,
                "download",
                &mut out,
            )
            .await;
            let r = anon.get("/shareFile.icc", json!({"shareKey": k})).await;
            fetch_checked(r, original, "share link", &mut out).await;
            let r = app.api.download(id, &[("Range", "bytes=0-")]).await;
            fetch_checked(r, original, "ranged download", &mut out).await;
            let swapped = lib_path.ends_with("sub") == (id == cid);
            if !watch && swapped {
                assert_eq!(out.refused, [FILE_GONE; 3], "{}", lib_path.display());
            }
        }
        exchange(&lib_path, &swap_path);
    }
    if !watch {
        // Put back, the same files are served again.
        assert_eq!(
            app.api.download(pid, &[]).await.bytes().await.unwrap(),
            photo
        );
        let r = anon.get("/shareFile.icc", json!({"shareKey": &ckey})).await;
        assert_eq!(r.bytes().await.unwrap(), c);
    }

    // Hammered while both are swapped back and forth as fast as the
    // machine goes (the review's race: 12 of 2,239 requests leaked).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, m) = (stop.clone(), m.clone());
        tokio::task::spawn_blocking(move || {
            let mut pairs = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for name in ["photo.jpg", "sub"] {
                    exchange(&m.join("lib").join(name), &m.join("swap").join(name));
                    std::thread::yield_now();
                    exchange(&m.join("lib").join(name), &m.join("swap").join(name));
                }
                pairs += 1;
            }
            pairs
        })
    };
    let mut clients = Vec::new();
    for n in 0..4 {
        let (api, anon) = (app.api.clone(), app.anon());
        let (pkey, ckey, photo, c) = (pkey.clone(), ckey.clone(), photo.clone(), c.clone());
        clients.push(tokio::spawn(async move {
            let mut out = Outcomes::default();
            for i in 0..150 {
                let (id, k, original) = if (i + n) % 2 == 0 {
                    (pid, &pkey, &photo)
                } else {
                    (cid, &ckey, &c)
                };
                let r = if i % 3 == 0 {
                    anon.get("/shareFile.icc", json!({"shareKey": k})).await
                } else {
                    api.download(id, &[]).await
                };
                fetch_checked(r, original, "hammered", &mut out).await;
            }
            out
        }));
    }
    let mut total = Outcomes::default();
    for c in clients {
        let out = c.await.unwrap();
        total.sent += out.sent;
        total.refused.extend(out.refused);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let pairs = swapper.await.unwrap();
    eprintln!(
        "watch={watch}: {pairs} swap rounds; {} sent intact, {} refused",
        total.sent,
        total.refused.len()
    );
    assert!(pairs > 0);
    if !watch {
        // The record still names the file: only "gone" while swapped.
        assert!(
            total.refused.iter().all(|c| *c == FILE_GONE),
            "{:?}",
            total.refused
        );
        assert_eq!(app.db_snapshot().await, db_before, "nothing changed");
    } else {
        // The watcher may drop the record (or the share link with it)
        // while a symlink stands in for it: not found, never the file.
        let allowed = [FILE_GONE, NOT_FOUND, BAD_PARAM];
        assert!(
            total.refused.iter().all(|c| allowed.contains(c)),
            "{:?}",
            total.refused
        );
    }
    assert_eq!(tree_of(&m.join("outside")), outside_before);
    assert_eq!(std::fs::read(m.join("lib/photo.jpg")).unwrap(), photo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlink_swaps_never_send_an_outside_file_watcher_off() {
    symlink_swaps_never_send_an_outside_file(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlink_swaps_never_send_an_outside_file_watcher_on() {
    symlink_swaps_never_send_an_outside_file(true).await;
}

/// A file replaced behind the scanner's back (another inode renamed over
/// it, say a hard link to a file elsewhere) is not sent under the old
/// record's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_replaced_since_the_scan_is_not_sent_under_its_old_id() {
    let app = swap_app(false).await;
    let m = app.media();
    let id = app.api.file_id("photo.jpg").await;
    std::fs::hard_link(m.join("outside/photo.jpg"), m.join("lib/.tmp")).unwrap();
    std::fs::rename(m.join("lib/.tmp"), m.join("lib/photo.jpg")).unwrap();
    let r = app.api.download(id, &[]).await;
    assert_binary_err_status(r, 404, FILE_GONE).await;
    // Once scanned, the record describes the new file and it is sent.
    app.rescan().await;
    let r = app
        .api
        .download(app.api.file_id("photo.jpg").await, &[])
        .await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), SECRET);
}

// ------------------------------------------------------- offline vs gone

/// A miss in a library whose root is gone or is not the library's disk
/// is "offline" (−10011, retry later), never "gone" (−10006, which an app
/// may take as a deletion) — even before the watcher (off here) noticed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_under_a_missing_or_swapped_root_is_offline_not_gone() {
    let app = app().await;
    let id = app.api.file_id("photo.jpg").await;
    let key = {
        let v = app
            .api
            .get_json("/shareFileUrl.icc", json!({"id": id}))
            .await;
        data(&v).as_str().unwrap().to_string()
    };
    let lib = app.media().join("lib");
    let away = app.media().join("lib.unplugged");
    // Level 0 is cached before the disk goes; level 1 is not.
    let small = app
        .api
        .get("/thumbnail.icc", json!({"id": id, "level": 0}))
        .await;
    assert_eq!(small.status(), 200);
    let small = small.bytes().await.unwrap();
    let before = app.db_snapshot().await;
    let offline = |what: &'static str| {
        let (api, anon, key) = (app.api.clone(), app.anon(), key.clone());
        async move {
            for r in [
                api.download(id, &[]).await,
                api.download(id, &[("Range", "bytes=0-")]).await,
                anon.get("/shareFile.icc", json!({"shareKey": key})).await,
                // Never "gone" (nor a build error recorded for good) for a
                // thumbnail whose original cannot be read because the disk
                // is not there.
                api.get("/thumbnail.icc", json!({"id": id, "level": 1}))
                    .await,
            ] {
                assert_binary_err_status(r, 503, LIBRARY_OFFLINE).await;
            }
            // The cached level lives on the library's disk (issue 15:
            // thumbnails never fill the SD card): gone with it, and
            // answered as offline, not as a new render or a 500.
            let r = api
                .get("/thumbnail.icc", json!({"id": id, "level": 0}))
                .await;
            assert_eq!(r.status(), 503, "{what}");
            assert_binary_err_status(r, 503, LIBRARY_OFFLINE).await;
        }
    };

    // Unplugged: the root is gone.
    std::fs::rename(&lib, &away).unwrap();
    offline("root missing").await;
    // Unmounted: an empty mount point.
    std::fs::create_dir(&lib).unwrap();
    offline("empty mount point").await;
    // Another disk at the mount point, with a file of the same name (a
    // different inode, and no identity marker).
    write_file(&lib.join("photo.jpg"), &jpeg(64, 48, 9, None));
    offline("another disk").await;
    std::fs::remove_dir_all(&lib).unwrap();

    // Back: served again; nothing was changed meanwhile.
    std::fs::rename(&away, &lib).unwrap();
    assert_eq!(app.api.download(id, &[]).await.status(), 200);
    // The cached level is served again, the same bytes.
    let r = app
        .api
        .get("/thumbnail.icc", json!({"id": id, "level": 0}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), small);
    assert_eq!(app.db_snapshot().await, before);
    assert!(app.library_online("lib").await);
    // The root there and the file missing: that is "gone".
    std::fs::remove_file(lib.join("photo.jpg")).unwrap();
    assert_binary_err_status(app.api.download(id, &[]).await, 404, FILE_GONE).await;
    let r = app
        .api
        .get("/thumbnail.icc", json!({"id": id, "level": 1}))
        .await;
    assert_binary_err_status(r, 404, FILE_GONE).await;
}
