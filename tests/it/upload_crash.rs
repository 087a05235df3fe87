//! Kill -9 drills of the upload path (security issue #12, items 2 and 3):
//! the real binary as a subprocess, stopped dead at chosen steps (debug
//! builds abort at `ISYNC_FAILPOINT`) and at random moments, started again,
//! and the upload resumed as the app would (from the size
//! `uploadingInfo.icc` reports). Afterwards every file is byte-identical,
//! has exactly one record, and no stored size ever went backwards.

use crate::common;

use common::process::Process;
use common::upload::{announce, first_root, payload, send_origin, stored_origin};
use common::{data, Api};
use serde_json::{json, Value};

/// Files of the library on disk (not the hidden `.isync`).
fn listed(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    v.sort();
    v
}

fn staged(p: &Process) -> Vec<String> {
    std::fs::read_dir(p.lib().join(".isync/uploads"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (up to [`common::app::DEADLINE`]) for the staging folder to
/// empty: leftovers are removed by the first scan, which runs once the
/// server serves.
async fn staged_emptied(p: &Process) -> Vec<String> {
    let start = std::time::Instant::now();
    while !staged(p).is_empty() && start.elapsed() < common::app::DEADLINE {
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    staged(p)
}

fn rows(p: &Process) -> i64 {
    p.db_read(|c| c.query_row("SELECT count(*) FROM files", [], |r| r.get(0)))
}

/// `(status_origin, disk_name)` of record `id`.
fn record(p: &Process, id: i64) -> (i64, String) {
    p.db_read(|c| {
        c.query_row(
            "SELECT status_origin, disk_name FROM files WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    })
}

async fn new_upload(api: &Api, name: &str, size: usize, extra: Value) -> i64 {
    let mut q = json!({"cid": first_root(api).await, "name": name, "size": size,
        "type": 16, "ext": "bin"});
    for (k, v) in extra.as_object().unwrap() {
        q[k] = v.clone();
    }
    let v = announce(api, q).await;
    data(&v)["id"].as_i64().unwrap()
}

/// Sends a request the server dies in the middle of (a failpoint): the
/// client sees the connection close, no reply.
async fn send_and_lose_the_reply(api: &Api, query: Value, parts: &[(&str, Option<&str>, &[u8])]) {
    let r = api
        .http
        .post(api.url("/uploadFile.icc"))
        .query(&query)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={}", common::upload::BOUNDARY),
        )
        .body(common::upload::multipart(parts))
        .send()
        .await;
    assert!(r.is_err(), "the server answered: {r:?}");
}

/// Item 2: the original is in its folder, the record not yet complete,
/// and the process dies. The restart finishes the completion before its
/// first scan: one record (the same id, complete, the real size), no
/// second record for the file the scan finds, nothing for the app to send
/// again, the client thumbnail in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_moving_and_recording_finishes_the_upload_at_start() {
    let mut p = Process::new(&["alice"], "");
    p.start(&[("ISYNC_FAILPOINT", "upload-complete-moved")]);
    let api = p.login("alice").await;
    let body = payload(3_000_001, 1);
    let thumb = common::jpeg(120, 90, 3, None);
    let id = new_upload(&api, "clip.bin", body.len(), json!({"statusForThumb": 2})).await;
    send_and_lose_the_reply(
        &api,
        json!({"id": id}),
        &[
            ("origin", Some("origin"), &body),
            ("thumb", Some("thumb"), &thumb),
        ],
    )
    .await;
    assert!(p.wait_died(), "the server aborted at the failpoint");
    // The window was hit: the file is in the folder, the record pending.
    let on_disk = listed(&p.lib());
    assert_eq!(on_disk.len(), 1, "{on_disk:?}");
    assert!(on_disk[0].ends_with(&format!("_{id}.bin")), "{on_disk:?}");
    let (status, name) = record(&p, id);
    assert_eq!(status, 2);
    assert!(name.starts_with(".isync-upload-"), "{name}");
    let moves: i64 =
        p.db_read(|c| c.query_row("SELECT count(*) FROM upload_moves", [], |r| r.get(0)));
    assert_eq!(moves, 1, "the move is journaled");

    p.start(&[]);
    let api = p.login("alice").await;
    assert_eq!(stored_origin(&api, id).await, None, "complete, not pending");
    assert_eq!(record(&p, id), (3, on_disk[0].clone()));
    assert_eq!(rows(&p), 1, "one record, no duplicate from the scan");
    let files = api.all_files().await;
    assert_eq!(files.len(), 1, "{files:#?}");
    assert_eq!(files[0]["id"], id);
    assert_eq!(files[0]["size"], body.len());
    let got = api.download(id, &[]).await.bytes().await.unwrap();
    assert!(got[..] == body[..], "the stored original differs");
    // The client thumbnail is in place (on the library's disk) and
    // recorded complete.
    let t = p.lib().join(format!(".isync/thumbs/uploaded/{id}_0.jpg"));
    assert!(std::fs::read(t).unwrap() == thumb);
    let status: i64 = p.db_read(|c| {
        c.query_row("SELECT status_thumb FROM files WHERE id = ?1", [id], |r| {
            r.get(0)
        })
    });
    assert_eq!(status, 3);
    assert!(staged(&p).is_empty(), "{:?}", staged(&p));
    assert_eq!(listed(&p.lib()), on_disk);
    let moves: i64 =
        p.db_read(|c| c.query_row("SELECT count(*) FROM upload_moves", [], |r| r.get(0)));
    assert_eq!(moves, 0);
}

/// A crash after the record says complete, before the staging name went:
/// the second link is removed at start (a later rewrite could otherwise
/// write through it into the original).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_recording_leaves_no_second_link() {
    use std::os::unix::fs::MetadataExt;
    let mut p = Process::new(&["alice"], "");
    p.start(&[("ISYNC_FAILPOINT", "upload-complete-recorded")]);
    let api = p.login("alice").await;
    let body = payload(200_000, 2);
    let id = new_upload(&api, "a.bin", body.len(), json!({})).await;
    send_and_lose_the_reply(
        &api,
        json!({"id": id}),
        &[("origin", Some("origin"), &body)],
    )
    .await;
    assert!(p.wait_died());
    assert_eq!(staged(&p).len(), 1, "the crash left the staging name");
    p.start(&[]);
    let api = p.login("alice").await;
    let left = staged_emptied(&p).await;
    assert!(left.is_empty(), "{left:?}");
    let (status, name) = record(&p, id);
    assert_eq!(status, 3);
    let m = std::fs::metadata(p.lib().join(&name)).unwrap();
    assert_eq!(m.nlink(), 1);
    // A rewrite now sends this version to the trash, untouched.
    let v = send_origin(&api, json!({"id": id, "obp": 10}), b"new tail").await;
    assert_eq!(data(&v)["fileInfo"]["size"], 18);
    assert_eq!(rows(&p), 1);
    let trashed: String =
        p.db_read(|c| c.query_row("SELECT trash_path FROM trash", [], |r| r.get(0)));
    assert!(std::fs::read(trashed).unwrap() == body);
}

/// A crash while a complete original becomes pending again (recorded,
/// not moved yet), for a rewrite and for an append: the restart carries
/// the move through before scanning. No record for the original left in
/// its folder, the old version in the trash (rewrite) or staged (append),
/// the stored size as it should be, and the upload resumes to the right
/// bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_reopening_an_original_loses_nothing() {
    let mut p = Process::new(&["alice"], "");
    p.start(&[]);
    let api = p.login("alice").await;
    let old = payload(500_000, 3);
    let id = new_upload(&api, "r.bin", old.len(), json!({})).await;
    data(&send_origin(&api, json!({"id": id}), &old).await);
    let id2 = new_upload(&api, "a.bin", old.len(), json!({})).await;
    data(&send_origin(&api, json!({"id": id2}), &old).await);
    let names = listed(&p.lib());
    assert_eq!(names.len(), 2);
    p.kill9();

    // The rewrite from byte 1000 dies after the database said so.
    p.start(&[("ISYNC_FAILPOINT", "upload-reopen-recorded")]);
    let api = p.login("alice").await;
    let tail = payload(10_000, 4);
    send_and_lose_the_reply(
        &api,
        json!({"id": id, "obp": 1000}),
        &[("origin", Some("origin"), &tail)],
    )
    .await;
    assert!(p.wait_died());
    assert_eq!(listed(&p.lib()), names, "not moved yet");
    p.start(&[]);
    let api = p.login("alice").await;
    assert_eq!(rows(&p), 2, "no record for the original left in its folder");
    assert_eq!(stored_origin(&api, id).await, Some(1000));
    let trashed: String =
        p.db_read(|c| c.query_row("SELECT trash_path FROM trash", [], |r| r.get(0)));
    assert!(
        std::fs::read(trashed).unwrap() == old,
        "the old version is in the trash"
    );
    let v = send_origin(&api, json!({"id": id, "obp": 1000}), &tail).await;
    let mut new = old[..1000].to_vec();
    new.extend_from_slice(&tail);
    assert_eq!(data(&v)["fileInfo"]["size"], new.len());
    assert!(api.download(id, &[]).await.bytes().await.unwrap()[..] == new[..]);
    p.kill9();

    // The append at its size dies the same way.
    p.start(&[("ISYNC_FAILPOINT", "upload-reopen-recorded")]);
    let api = p.login("alice").await;
    send_and_lose_the_reply(
        &api,
        json!({"id": id2, "obp": old.len()}),
        &[("origin", Some("origin"), b"more")],
    )
    .await;
    assert!(p.wait_died());
    p.start(&[]);
    let api = p.login("alice").await;
    assert_eq!(rows(&p), 2);
    assert_eq!(stored_origin(&api, id2).await, Some(old.len() as i64));
    let v = send_origin(&api, json!({"id": id2, "obp": old.len()}), b"more").await;
    assert_eq!(data(&v)["fileInfo"]["size"], old.len() + 4);
    let got = api.download(id2, &[]).await.bytes().await.unwrap();
    assert!(got[..old.len()] == old[..] && &got[old.len()..] == b"more");
    assert_eq!(listed(&p.lib()).len(), 2);
}

/// A small xorshift, seeded per run (printed, for replaying a failure).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Where a paced body stops: before its chunk `at` it says so on `parked`
/// and sends nothing more (the rest fails once `go` is dropped). A kill
/// then lands inside the body whatever the machine's load: the server
/// cannot complete an upload whose last bytes were never sent.
struct Hold {
    at: usize,
    parked: tokio::sync::oneshot::Sender<()>,
    go: tokio::sync::oneshot::Receiver<()>,
}

/// Sends `bytes` as the origin part from `obp`, paced (a chunk of 128 KiB
/// every `pace_ms`) so that a kill lands inside the request, or held at a
/// chunk ([`Hold`]); the reply, or None when the connection died.
async fn send_paced(
    api: Api,
    id: i64,
    obp: i64,
    bytes: Vec<u8>,
    pace_ms: u64,
    hold: Option<Hold>,
) -> Option<Value> {
    let body = common::upload::multipart(&[("origin", Some("origin"), &bytes)]);
    let len = body.len();
    let chunks: Vec<bytes::Bytes> = body
        .chunks(128 << 10)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    let stream = futures_util::stream::unfold(
        (chunks.into_iter().enumerate(), hold),
        move |(mut rest, mut hold)| async move {
            let (i, chunk) = rest.next()?;
            if let Some(h) = hold.take_if(|h| h.at == i) {
                let _ = h.parked.send(());
                // Never let go: dropped after the kill, the body fails.
                let _ = h.go.await;
                return Some((Err(std::io::Error::other("held")), (rest, None)));
            }
            tokio::time::sleep(std::time::Duration::from_millis(pace_ms)).await;
            Some((Ok::<_, std::io::Error>(chunk), (rest, hold)))
        },
    );
    let r = api
        .http
        .post(api.url("/uploadFile.icc"))
        .query(&json!({"id": id, "obp": obp}))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={}", common::upload::BOUNDARY),
        )
        .header("content-length", len)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

/// Item 3: uploads killed with `kill -9` at random moments — during the
/// body, during the fsync, during completion — and, for every other file,
/// exactly between "file in place" and "recorded". After each restart the
/// app's resume: ask `uploadingInfo.icc`, send the rest from there. Bounded:
/// 6 files of 1–13 MB, 1 to 3 kills each (for the files that then die at
/// the failpoint, with the body held at a random chunk; for the others at a
/// random time within the request's sending), 3 aborts at the failpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_killed_at_random_points_resume_byte_identical() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("drill seed {seed}");
    let mut rng = Rng(seed);
    let mut p = Process::new(&["alice"], "");
    p.start(&[]);
    let mut api = p.login("alice").await;
    let mut files: Vec<(i64, Vec<u8>)> = Vec::new();
    let (mut kills, mut aborts, mut mid) = (0, 0, 0);
    // Stored sizes seen after a kill that left the upload pending.
    let mut seen = Vec::new();
    for n in 0..6u64 {
        let size = 1_000_000 + rng.below(12_000_000) as usize;
        let body = payload(size, 100 + n);
        let id = new_upload(&api, &format!("f{n}.bin"), size, json!({})).await;
        // The last size the server reported; never to go down.
        let mut stored = 0i64;
        // Each file: 1 to 3 kills at random moments, then every other one
        // dies at the failpoint as it completes, then it completes.
        let planned_kills = 1 + rng.below(3);
        let mut abort = n % 2 == 0;
        let mut attempts = 0;
        loop {
            attempts += 1;
            assert!(attempts <= 12, "file {n} never completed (seed {seed})");
            let rest = body[stored as usize..].to_vec();
            // 1 to 4 ms per 128 KiB: up to half a second a request, whose
            // body takes at least `span` ms to send.
            let pace = 1 + rng.below(4);
            let span = (rest.len() as u64 >> 17).max(1) * pace;
            let kill = attempts <= planned_kills;
            let failpoint = !kill && std::mem::take(&mut abort);
            if failpoint {
                p.kill9();
                p.start(&[("ISYNC_FAILPOINT", "upload-complete-moved")]);
                api = p.login("alice").await;
            }
            // A file that is to die at the failpoint must still be pending
            // when it gets there, whatever the load: its kills come while
            // its body is held at a random chunk (the first included: the
            // head only), not after a timer that may fire late.
            let chunks = rest.len().div_ceil(128 << 10).max(1) as u64;
            let (hold, parked, go) = if kill && abort {
                let (parked_tx, parked) = tokio::sync::oneshot::channel();
                let (go, go_rx) = tokio::sync::oneshot::channel::<()>();
                let at = rng.below(chunks) as usize;
                let hold = Hold {
                    at,
                    parked: parked_tx,
                    go: go_rx,
                };
                (Some(hold), Some(parked), Some(go))
            } else {
                (None, None, None)
            };
            let req = tokio::spawn(send_paced(api.clone(), id, stored, rest, pace, hold));
            let killed = if failpoint {
                // Dies by itself once the file is in place.
                let r = req.await.unwrap();
                assert!(r.is_none(), "completed past the failpoint: {r:?}");
                assert!(p.wait_died());
                aborts += 1;
                true
            } else if let Some(parked) = parked {
                // Inside the body: the rest is never sent.
                let _ = parked.await;
                p.kill9();
                drop(go);
                kills += 1;
                let _ = req.await;
                true
            } else if kill {
                // Somewhere in the request: its body, the fsync, the moves.
                let ms = rng.below(span + 50);
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                p.kill9();
                kills += 1;
                let _ = req.await;
                true
            } else {
                let v = req.await.unwrap().expect("a reply");
                assert_eq!(v["code"], 0, "{v}");
                false
            };
            if killed {
                p.start(&[]);
                api = p.login("alice").await;
            }
            match stored_origin(&api, id).await {
                Some(now) => {
                    if killed {
                        mid += 1;
                        seen.push(now);
                    }
                    assert!(
                        now >= stored,
                        "file {n}: stored size went back from {stored} to {now} (seed {seed})"
                    );
                    assert!(now as usize <= size);
                    stored = now;
                }
                None => break,
            }
        }
        files.push((id, body));
    }
    eprintln!(
        "drill: {kills} random kills, {aborts} aborts at the failpoint, {mid} left the upload \
         pending; stored sizes then: {seen:?}"
    );
    // The drill must have hit the middle of uploads, not only their ends,
    // and the window between moving and recording: by its plan, each of
    // the 3 files held mid-body was killed there at least once.
    assert!(
        mid >= 3,
        "only {mid} kills landed inside an upload (seed {seed})"
    );
    assert_eq!(aborts, 3, "aborts at the failpoint (seed {seed})");
    // One more clean restart: nothing left to finish changes anything.
    p.kill9();
    p.start(&[]);
    let api = p.login("alice").await;
    assert_eq!(
        rows(&p),
        files.len() as i64,
        "one record per file (seed {seed})"
    );
    assert_eq!(api.all_files().await.len(), files.len());
    assert_eq!(
        listed(&p.lib()).len(),
        files.len(),
        "{:?}",
        listed(&p.lib())
    );
    let left = staged_emptied(&p).await;
    assert!(left.is_empty(), "{left:?}");
    for (id, body) in &files {
        let got = api.download(*id, &[]).await.bytes().await.unwrap();
        assert!(got[..] == body[..], "file {id} differs (seed {seed})");
    }
}
