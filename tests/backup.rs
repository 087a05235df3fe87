//! Online backup and restore (issue 6): a backup taken while a client
//! uploads and lists stalls no request; a backup restored gives the data
//! back row for row; restore is refused while the server runs.

mod common;

use common::server::Server;
use common::{data, Api, OK};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn config_file(s: &Server) -> PathBuf {
    let p = s.dir.path().join("isync.toml");
    std::fs::write(&p, s.cfg.to_toml()).unwrap();
    p
}

fn isync(s: &Server, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_isync"))
        .arg("--config")
        .arg(config_file(s))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every row of every table but the backup log, as text.
fn dump(db_file: &Path) -> String {
    let c =
        rusqlite::Connection::open_with_flags(db_file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let tables: Vec<String> = c
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT IN ('backup_runs') AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(tables.len() >= 10, "{tables:?}");
    let mut out = String::new();
    for t in tables {
        let mut st = c
            .prepare(&format!("SELECT * FROM {t} ORDER BY 1, 2"))
            .unwrap();
        let n = st.column_count();
        let mut rows = st.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            out.push_str(&t);
            for i in 0..n {
                out.push_str(&format!(
                    " {:?}",
                    r.get::<_, rusqlite::types::Value>(i).unwrap()
                ));
            }
            out.push('\n');
        }
    }
    out
}

/// Server-side time of a reply (`Server-Timing: app;dur=<ms>`).
fn server_ms(r: &reqwest::Response) -> f64 {
    common::header(r, "server-timing")
        .trim_start_matches("app;dur=")
        .parse()
        .unwrap()
}

async fn upload_one(api: &Api, cid: i64, n: usize) -> (f64, f64) {
    let body = format!("photo number {n} ").repeat(200);
    let r = api
        .http
        .post(api.url("/uploadFileInfo.icc"))
        .form(&json!({"cid": cid, "name": format!("p{n}.jpg"), "size": body.len(), "type": 1, "ext": "jpg"}))
        .send()
        .await
        .unwrap();
    let t1 = server_ms(&r);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], OK, "{v}");
    let id = data(&v)["id"].as_i64().unwrap();
    let mp = format!(
        "--B0und\r\nContent-Disposition: form-data; name=\"origin\"; filename=\"o\"\r\n\r\n{body}\r\n--B0und--\r\n"
    );
    let r = api
        .http
        .post(api.url("/uploadFile.icc"))
        .query(&[("id", id.to_string()), ("obp", "0".into())])
        .header("content-type", "multipart/form-data; boundary=B0und")
        .body(mp)
        .send()
        .await
        .unwrap();
    let t2 = server_ms(&r);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], OK, "{v}");
    (t1, t2)
}

/// Server-side times of upload + listing rounds (one of each a round).
struct Load {
    info: Vec<f64>,
    upload: Vec<f64>,
    list: Vec<f64>,
}

impl Load {
    fn rounds(&self) -> usize {
        self.list.len()
    }

    fn all(&self) -> impl Iterator<Item = f64> + '_ {
        self.info
            .iter()
            .chain(&self.upload)
            .chain(&self.list)
            .copied()
    }

    fn count(&self) -> usize {
        self.all().count()
    }

    fn slower_than(&self, ms: f64) -> usize {
        self.all().filter(|&t| t > ms).count()
    }

    fn worst(&self) -> f64 {
        self.all().fold(0.0, f64::max)
    }
}

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stat = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            format!("median {:.1} max {:.1} ms", v[v.len() / 2], v[v.len() - 1])
        };
        write!(
            f,
            "{} rounds; uploadFileInfo {}; uploadFile {}; files.icc {}",
            self.rounds(),
            stat(&self.info),
            stat(&self.upload),
            stat(&self.list)
        )
    }
}

/// Uploads one file and lists, again and again for `dur` (10 rounds at least).
async fn load(api: &Api, cid: i64, first: usize, dur: Duration) -> Load {
    let mut l = Load {
        info: Vec::new(),
        upload: Vec::new(),
        list: Vec::new(),
    };
    let start = Instant::now();
    while start.elapsed() < dur || l.rounds() < 10 {
        let (a, b) = upload_one(api, cid, first + l.rounds()).await;
        let r = api
            .get("/files.icc", json!({"pageIndex": 0, "maxPerPage": 100}))
            .await;
        let c = server_ms(&r);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["code"], OK, "{v}");
        l.info.push(a);
        l.upload.push(b);
        l.list.push(c);
    }
    l
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_load_then_restore_row_for_row() {
    // On tmpfs when there is one: the 100 ms bound below is about what a
    // backup does to the server (locks, checkpoints, CPU). The fsync latency
    // of this shared VM's disk alone passes 100 ms now and then, backup or
    // not (seen: 143 ms with none running); `benches/backup.rs` measures
    // the real disk.
    let shm = common::server::tmpfs();
    let on_tmpfs = shm.is_some();
    let (mut s, api) = Server::start_in(shm.as_deref(), |c| c.watch.enabled = false).await;
    eprintln!(
        "data on {}",
        shm.map_or("the temp dir's disk (no tmpfs)".into(), |p| p
            .display()
            .to_string())
    );
    let backups_dir = s.cfg.backup_dir();
    // Some bulk, so the copy takes a while: 5,000 more records.
    s.db()
        .write_async(|tx| {
            tx.execute_batch(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) \
                 INSERT INTO files(catalog_id, real_catalog_id, root_id, disk_name, name, ext, \
                   import_time, last_modify, size, type, memo) \
                 SELECT f.catalog_id, f.real_catalog_id, f.root_id, 'bulk' || i || '.jpg', \
                   'bulk' || i || '.jpg', 'jpg', 0, 0, 1000, 1, hex(randomblob(100)) \
                 FROM n, (SELECT * FROM files ORDER BY id LIMIT 1) f",
            )?;
            Ok(())
        })
        .await
        .unwrap();
    let cid = api
        .all_catalogs()
        .await
        .iter()
        .find(|c| c["name"] == "lib")
        .unwrap()["id"]
        .as_i64()
        .unwrap();

    // The library disk holds the backups by default (here: lib/.isync).
    assert!(
        backups_dir.starts_with(s.lib()),
        "{}",
        backups_dir.display()
    );

    // Load: uploads and listings, first alone (what this disk does
    // anyway), then while backups run back to back.
    let alone = load(&api, cid, 0, Duration::from_millis(1500)).await;
    let backups = s.running.as_ref().unwrap().state.backups.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (stop2, b2) = (stop.clone(), backups.clone());
    let runner = tokio::task::spawn_blocking(move || {
        let backups = b2;
        let mut runs = Vec::new();
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) || runs.is_empty() {
            runs.push(backups.run(None).expect("backup under load"));
        }
        runs
    });
    let during = load(&api, cid, alone.rounds(), Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let runs = runner.await.unwrap();
    assert!(!runs.is_empty());
    eprintln!("alone: {alone}\nduring {} backups: {during}", runs.len());
    if on_tmpfs {
        assert!(
            during.worst() < 100.0,
            "a request took {:.1} ms during a backup ({during}; alone: {alone})",
            during.worst()
        );
    } else {
        // No tmpfs: a disk's own fsync stalls (and back-to-back backups
        // competing for its journal) reach the maximum; what the server
        // decides still shows in the bulk of the requests.
        eprintln!("NOTE: no tmpfs; the 100 ms bound applies to 99% of requests");
        let slow = during.slower_than(100.0);
        assert!(
            slow * 100 <= during.count(),
            "{slow} of {} requests over 100 ms during backups ({during}; alone: {alone})",
            during.count()
        );
    }
    assert!(runs.iter().all(|r| r.ok));
    // The newest `keep` are on disk; older ones were pruned.
    let keep = s.cfg.backup.keep as usize;
    for (i, r) in runs.iter().rev().enumerate() {
        let on_disk = Path::new(r.path.as_ref().unwrap()).exists();
        assert_eq!(on_disk, i < keep, "run {i} from the newest: {r:?}");
        if !on_disk {
            continue;
        }
        let m: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(Path::new(r.path.as_ref().unwrap()).join("manifest.json"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(m["integrity"], "ok");
        assert!(m["files"].as_i64().unwrap() >= 5002, "{m}");
    }
    // The status says how it went; only `keep` generations stay.
    let st = backups.status().unwrap();
    assert!(st.recent[0].ok && !st.progress.running);
    assert!(st.generations.len() <= s.cfg.backup.keep as usize);

    // A quiet backup through the CLI (asked of the running server), then
    // the reference state.
    let (code, out, err) = isync(&s, &["backup"]);
    assert_eq!(code, 0, "{out}{err}");
    let folder = PathBuf::from(
        out.trim()
            .strip_prefix("backup written to ")
            .unwrap()
            .split(" (")
            .next()
            .unwrap(),
    );
    let reference = dump(&folder.join("isync.db"));
    assert!(reference.contains("bulk4999.jpg") && reference.contains("p9.jpg"));

    // Changes after the backup.
    let gone = api.file_id("a.jpg").await;
    let d = api
        .post_form("/deleteFiles.icc", json!({"ids": gone.to_string()}))
        .await;
    assert_eq!(d["code"], OK);
    upload_one(&api, cid, 100_000).await;

    // Refused while the server runs; nothing changes.
    let live_before = dump(&s.cfg.db_path());
    let (code, _, err) = isync(&s, &["restore", folder.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("running"), "{err}");
    assert_eq!(dump(&s.cfg.db_path()), live_before);

    // Stop, restore, compare row for row, start.
    s.running.take().unwrap().stop().await.unwrap();
    let (code, out, err) = isync(&s, &["restore", folder.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("integrity ok"), "{out}");
    assert_eq!(dump(&s.cfg.db_path()), reference, "restored data differs");
    // The database it replaced was kept.
    let aside = std::fs::read_dir(s.cfg.data_dir.clone())
        .unwrap()
        .flatten()
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("before-restore-")
        })
        .expect("previous database kept");
    assert!(aside.path().join("isync.db").is_file());
    let api = s.boot().await;
    assert!(api.all_files().await.len() > 5000);
    // A damaged backup is refused.
    let bad = s.dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(folder.join("manifest.json"), bad.join("manifest.json")).unwrap();
    let mut bytes = std::fs::read(folder.join("isync.db")).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(bad.join("isync.db"), bytes).unwrap();
    s.running.take().unwrap().stop().await.unwrap();
    let (code, _, err) = isync(&s, &["restore", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("manifest"), "{err}");
}

/// With the library disk missing, the default backup folder (on that disk)
/// is refused instead of filling the SD card under the mount point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_refuses_an_offline_library_disk() {
    let (s, _api) = Server::start(|c| c.watch.enabled = false).await;
    let marker = s.lib().join(".isync/library-id");
    assert!(marker.is_file());
    std::fs::rename(&marker, s.dir.path().join("marker.bak")).unwrap();
    let backups = s.running.as_ref().unwrap().state.backups.clone();
    let r = tokio::task::spawn_blocking(move || backups.run(None))
        .await
        .unwrap();
    let e = r.unwrap_err().to_string();
    assert!(e.contains("offline"), "{e}");
    assert!(!s.lib().join(".isync/backups").exists() || isync_backups_empty(&s));
    let st = s.running.as_ref().unwrap().state.backups.status().unwrap();
    assert!(!st.recent[0].ok, "the failure is recorded");
    // A folder named explicitly (`isync backup --to`) is the caller's
    // choice: it works with the library disk away.
    let elsewhere = s.dir.path().join("elsewhere");
    let backups = s.running.as_ref().unwrap().state.backups.clone();
    let to = elsewhere.clone();
    let run = tokio::task::spawn_blocking(move || backups.run(Some(&to)))
        .await
        .unwrap()
        .unwrap();
    assert!(run.ok && run.path.unwrap().starts_with(elsewhere.to_str().unwrap()));
}

fn isync_backups_empty(s: &Server) -> bool {
    std::fs::read_dir(s.lib().join(".isync/backups"))
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}
