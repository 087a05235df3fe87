//! The SD card never fills (issue 15, "Where generated data lives"): the
//! data dir on a small file system the test mounts (a 16 MB tmpfs standing
//! for the card), with a user without a library whose uploads land on it.
//! Uploads that would cross `storage.data_min_free_bytes` are refused with
//! −10014 (when announced and while streaming) and change nothing; below
//! the reserve, reads, logins and uploads to the library's own disk go on,
//! `/api/v1/info` and the status line sent to systemd (`NOTIFY_SOCKET`)
//! say "SD card nearly full"; nothing already stored is lost; once space
//! is freed uploads work again. Runs the real binary.

use crate::common;

use common::mount::Mounts;
use common::process::{Process, LOG_WAIT};
use common::upload::{announce, first_root, payload, send_origin};
use common::{assert_err, data, Api, STORAGE_FULL};
use serde_json::{json, Value};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

const RESERVE: u64 = 4 << 20;

fn free(p: &Path) -> u64 {
    isync::upload::free_bytes(p).unwrap()
}

fn rows(p: &Process) -> i64 {
    p.db_read(|c| c.query_row("SELECT count(*) FROM files", [], |r| r.get(0)))
}

/// Every path below `dir`, with its size.
fn tree(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| !e.path().to_string_lossy().contains("isync.db"))
        .map(|e| {
            let len = if e.file_type().is_file() {
                e.metadata().unwrap().len()
            } else {
                0
            };
            (e.path().to_string_lossy().into_owned(), len)
        })
        .collect();
    v.sort();
    v
}

/// Announces `name` of `size` bytes in `api`'s first root catalog.
async fn new_upload(api: &Api, name: &str, size: u64) -> Value {
    let cid = first_root(api).await;
    announce(
        api,
        json!({"cid": cid, "name": name, "size": size, "type": 16, "ext": "bin"}),
    )
    .await
}

/// Uploads `bytes` as a new file `name`; its id.
async fn upload(api: &Api, name: &str, bytes: &[u8]) -> i64 {
    let id = data(&new_upload(api, name, bytes.len() as u64).await)["id"]
        .as_i64()
        .unwrap();
    let v = send_origin(api, json!({"id": id}), bytes).await;
    data(&v);
    id
}

async fn downloaded(api: &Api, id: i64) -> Vec<u8> {
    let r = api.download(id, &[]).await;
    assert_eq!(r.status(), 200, "download {id}");
    r.bytes().await.unwrap().to_vec()
}

async fn info(api: &Api) -> Value {
    data(&api.get_json("/api/v1/info", json!({})).await)["storage"].clone()
}

/// The `STATUS=` lines the server sent to its notify socket so far.
fn statuses(sock: &UnixDatagram, seen: &mut Vec<String>) {
    let mut buf = vec![0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        seen.extend(
            msg.lines()
                .filter_map(|l| l.strip_prefix("STATUS="))
                .map(str::to_owned),
        );
    }
}

/// Waits until the newest status line `pred` accepts (bounded by
/// [`LOG_WAIT`]: the server reads the free space every few seconds).
async fn wait_status(sock: &UnixDatagram, seen: &mut Vec<String>, pred: impl Fn(&str) -> bool) {
    let start = std::time::Instant::now();
    loop {
        statuses(sock, seen);
        if seen.last().is_some_and(|s| pred(s)) {
            return;
        }
        assert!(
            start.elapsed() < LOG_WAIT,
            "no such status line; sent: {seen:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Fills the data dir's disk with a file of the test's own (logs growing,
/// say) until `left` bytes are free.
fn fill_to(path: &Path, data: &Path, left: u64) {
    let have = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let f = free(data);
    assert!(f > left, "{f} bytes free, wanted {left}");
    std::fs::write(path, vec![1u8; (have + f - left) as usize]).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sd_card_keeps_its_reserve_and_says_so() {
    let dir = tempfile::Builder::new()
        .prefix("isync-sd-")
        .tempdir()
        .unwrap();
    let data_dir = dir.path().join("data");
    let mut mounts = Mounts::default();
    if mounts.tmpfs_sized(&data_dir, "16m").is_none() {
        return;
    }
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let notify_path: PathBuf = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify_path).unwrap();
    sock.set_nonblocking(true).unwrap();
    // Only the SD card's reserve is in play: the library disk keeps none.
    let mut p = Process::new_in(
        dir,
        &lib,
        &["alice"],
        &format!(
            "[upload]\nmin_free_bytes = 0\n[storage]\ndata_min_free_bytes = {RESERVE}\n\
             [scan]\nprerender_threads = 0"
        ),
    );
    p.hold(mounts);
    p.add_user("carol");
    p.start(&[("NOTIFY_SOCKET", notify_path.to_str().unwrap())]);
    let mut seen = Vec::new();
    let (alice, carol) = (p.login("alice").await, p.login("carol").await);

    // Plenty of room: stored on the card, the status line says nothing.
    let s = info(&carol).await;
    assert_eq!(s["uploadsPaused"], false, "{s}");
    assert_eq!(s["dataReserveBytes"], RESERVE, "{s}");
    assert!(s.get("note").is_none(), "{s}");
    let a = payload(1 << 20, 1);
    let a_id = upload(&carol, "a.bin", &a).await;
    let b = payload(300 << 10, 2);
    let b_id = upload(&alice, "b.bin", &b).await;
    wait_status(&sock, &mut seen, |s| s.contains("libraries online")).await;
    assert!(seen.iter().all(|s| !s.contains("SD card")), "{seen:?}");

    // Just above the reserve: what would cross it is refused, with the
    // SD card's reserve named, and nothing is recorded or written.
    let ballast = data_dir.join("ballast");
    fill_to(&ballast, &data_dir, RESERVE + (512 << 10));
    let (rows0, tree0) = (rows(&p), tree(&data_dir));
    let v = new_upload(&carol, "c.bin", 1 << 20).await;
    assert_err(&v, STORAGE_FULL);
    let msg = v["msg"].as_str().unwrap();
    assert!(
        msg.contains("SD card") && msg.contains("storage.data_min_free_bytes"),
        "{v}"
    );
    // Announced small, sent big: refused before a byte is stored.
    let c_id = data(&new_upload(&carol, "c.bin", 1000).await)["id"]
        .as_i64()
        .unwrap();
    let v = send_origin(&carol, json!({"id": c_id}), &payload(1 << 20, 3)).await;
    assert_err(&v, STORAGE_FULL);
    assert!(free(&data_dir) >= RESERVE, "reserve crossed");
    let staged: Vec<_> = tree(&data_dir)
        .into_iter()
        .filter(|(path, _)| path.ends_with(&format!("{c_id}.origin")))
        .collect();
    assert!(staged.iter().all(|(_, len)| *len == 0), "{staged:?}");
    assert_eq!(rows(&p), rows0 + 1, "only the small announcement recorded");
    for (path, len) in &tree0 {
        assert!(
            tree(&data_dir).contains(&(path.clone(), *len)),
            "{path} changed"
        );
    }

    // Below the reserve (something else filled the card): the status line
    // and info say why, uploads to the card stop, everything else goes on.
    fill_to(&ballast, &data_dir, RESERVE - (1 << 20));
    wait_status(&sock, &mut seen, |s| s.contains("SD card nearly full")).await;
    let line = seen.last().unwrap().clone();
    assert!(
        line.contains("reserve 4.0 MiB") && line.contains("uploads to it paused"),
        "{line}"
    );
    p.wait_logged("SD card nearly full", 1).await;
    let s = info(&carol).await;
    assert_eq!(s["uploadsPaused"], true, "{s}");
    assert!(s["dataFreeBytes"].as_u64().unwrap() < RESERVE, "{s}");
    assert!(
        s["note"]
            .as_str()
            .unwrap()
            .starts_with("SD card nearly full"),
        "{s}"
    );
    let rows1 = rows(&p);
    assert_err(&new_upload(&carol, "d.bin", 10).await, STORAGE_FULL);
    assert_eq!(rows(&p), rows1);
    // Reads, a new login (a session written to the database on the card)
    // and an upload to the library's own disk all work.
    let carol2 = p.login("carol").await;
    assert_eq!(downloaded(&carol2, a_id).await, a);
    assert!(carol2.all_files().await.iter().any(|f| f["id"] == a_id));
    let e = payload(200 << 10, 5);
    let e_id = upload(&alice, "e.bin", &e).await;
    assert_eq!(downloaded(&alice, e_id).await, e);

    // Space freed: back to normal, and uploads to the card work again.
    std::fs::remove_file(&ballast).unwrap();
    wait_status(&sock, &mut seen, |s| !s.contains("SD card")).await;
    p.wait_logged("back above its reserve", 1).await;
    assert_eq!(info(&carol).await["uploadsPaused"], false);
    let f = payload(2 << 20, 6);
    let f_id = upload(&carol, "f.bin", &f).await;
    // Nothing stored before was lost.
    assert_eq!(downloaded(&carol, f_id).await, f);
    assert_eq!(downloaded(&carol, a_id).await, a);
    assert_eq!(downloaded(&alice, b_id).await, b);
    assert_eq!(downloaded(&alice, e_id).await, e);
}

/// A scan that finds the card below its reserve records no new files (the
/// database's growth stops short of it) and says why; the server stays up
/// and logins work; once space is freed, `isync scan` records them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_stops_short_of_the_reserve() {
    const FILES: usize = 60;
    let dir = tempfile::Builder::new()
        .prefix("isync-sd-scan-")
        .tempdir()
        .unwrap();
    let data_dir = dir.path().join("data");
    let mut mounts = Mounts::default();
    if mounts.tmpfs_sized(&data_dir, "16m").is_none() {
        return;
    }
    let lib = dir.path().join("lib");
    for i in 0..FILES {
        let sub = lib.join(format!("2024-{:02}", i / 20 + 1));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("note-{i}.txt")), payload(100, i as u64)).unwrap();
    }
    let mut p = Process::new_in(
        dir,
        &lib,
        &["alice"],
        &format!(
            "[storage]\ndata_min_free_bytes = {RESERVE}\n[upload]\nmin_free_bytes = 0\n\
             [scan]\nprerender_threads = 0"
        ),
    );
    p.hold(mounts);
    let ballast = data_dir.join("ballast");
    fill_to(&ballast, &data_dir, RESERVE - (1 << 20));
    p.start(&[]);
    p.wait_logged("new files not recorded", 1).await;
    assert_eq!(rows(&p), 0, "files recorded below the reserve");
    let alice = p.login("alice").await;
    assert!(alice.all_files().await.is_empty());
    let s = info(&alice).await;
    assert_eq!(s["uploadsPaused"], true, "{s}");

    std::fs::remove_file(&ballast).unwrap();
    let out = p.cli(&["scan"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rows(&p), FILES as i64);
    assert_eq!(alice.all_files().await.len(), FILES);
}
