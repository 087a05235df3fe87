//! Online backup and restore (issue 6): a backup taken while a client
//! uploads and lists stalls no request; a backup restored gives the data
//! back row for row; restore is refused while the server runs.

use crate::common;

use common::process::Launch;
use common::TestApp;
use common::{data, Api, OK};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn config_file(s: &TestApp) -> PathBuf {
    let p = s.dir.path().join("isync.toml");
    std::fs::write(&p, s.cfg.to_toml()).unwrap();
    p
}

fn isync(s: &TestApp, args: &[&str]) -> (i32, String, String) {
    let out = Launch::new().config(&config_file(s)).args(args).output();
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

/// Server-side times of upload + listing rounds (one of each a round), and
/// how many uploads and listings began and ended inside one backup run.
struct Load {
    info: Vec<f64>,
    upload: Vec<f64>,
    list: Vec<f64>,
    uploads_inside: usize,
    lists_inside: usize,
}

impl Load {
    fn rounds(&self) -> usize {
        self.list.len()
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

/// Which backup run is in progress: its number when one runs, else None
/// (see [`load`]; none given: no backup is watched).
type RunNow<'a> = &'a (dyn Fn() -> Option<usize> + Sync);

/// How long [`load`] goes on past its `dur` for an upload and a listing
/// served inside one backup run (a bound that ends the test, not a
/// measurement: on a loaded machine a request can take longer than a run).
const INSIDE_WAIT: Duration = Duration::from_secs(120);

/// Uploads one file and lists, again and again for `dur` (10 rounds at
/// least). With `run_now`, counts the uploads and listings that began and
/// ended while one and the same backup run was in progress, and goes on
/// (up to [`INSIDE_WAIT`]) until it has seen one of each.
async fn load(
    api: &Api,
    cid: i64,
    first: usize,
    dur: Duration,
    run_now: Option<RunNow<'_>>,
) -> Load {
    let mut l = Load {
        info: Vec::new(),
        upload: Vec::new(),
        list: Vec::new(),
        uploads_inside: 0,
        lists_inside: 0,
    };
    let inside = |before: Option<usize>, after: Option<usize>| before.is_some() && before == after;
    let watched = run_now.is_some();
    let run_now = || run_now.and_then(|f| f());
    let seen_inside = |l: &Load| l.uploads_inside > 0 && l.lists_inside > 0;
    let start = Instant::now();
    while start.elapsed() < dur
        || l.rounds() < 10
        || (watched && !seen_inside(&l) && start.elapsed() < dur + INSIDE_WAIT)
    {
        let before = run_now();
        let (a, b) = upload_one(api, cid, first + l.rounds()).await;
        let after = run_now();
        l.uploads_inside += usize::from(inside(before, after));
        let r = api
            .get("/files.icc", json!({"pageIndex": 0, "maxPerPage": 100}))
            .await;
        let c = server_ms(&r);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["code"], OK, "{v}");
        l.lists_inside += usize::from(inside(after, run_now()));
        l.info.push(a);
        l.upload.push(b);
        l.list.push(c);
    }
    l
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_load_then_restore_row_for_row() {
    // On tmpfs when there is one: the disk's own fsync stalls are not what
    // this is about (and it runs faster). How long requests take during
    // backups, against none running, is measured by `benches/backup.rs`;
    // here the question is whether they are served *while* one runs.
    let shm = common::tmpfs();
    // No pre-render either: it records failed renders of the bulk rows
    // (no files behind them) whenever it gets to them, which would change
    // rows between two dumps below.
    let mut s = TestApp::two_users(shm.as_deref())
        .tune(|c| {
            c.watch.enabled = false;
            c.scan.prerender_threads = 0;
        })
        .spawn()
        .await;
    let api = s.api.clone();
    eprintln!(
        "data on {}",
        shm.map_or("the temp dir's disk (no tmpfs)".into(), |p| p
            .display()
            .to_string())
    );
    let backups_dir = s.cfg.backup_dir();
    // Some bulk, so the copy takes a while: 5,000 more records.
    bulk(&s, 5000).await;
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
    let alone = load(&api, cid, 0, Duration::from_millis(1500), None).await;
    let backups = s.running.as_ref().unwrap().state.backups.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Runs finished so far: while run n is in progress, `done` is n, and
    // no other run can be in progress while it is.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (stop2, b2, done2) = (stop.clone(), backups.clone(), done.clone());
    let runner = tokio::task::spawn_blocking(move || {
        let backups = b2;
        let mut runs = Vec::new();
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) || runs.is_empty() {
            runs.push(backups.run(None).expect("backup under load"));
            done2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        runs
    });
    // Read `done` first and the progress second before a request, the other
    // way round after it: the same n on both sides with a run in progress
    // means run n was in progress the whole time.
    let run_now = || {
        let n = done.load(std::sync::atomic::Ordering::SeqCst);
        let running = backups.progress().running;
        let again = done.load(std::sync::atomic::Ordering::SeqCst);
        (running && n == again).then_some(n)
    };
    let during = load(
        &api,
        cid,
        alone.rounds(),
        Duration::from_secs(3),
        Some(&run_now),
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let runs = runner.await.unwrap();
    assert!(!runs.is_empty());
    eprintln!(
        "alone: {alone}\nduring {} backups: {during}; inside one run: {} uploads, {} listings",
        runs.len(),
        during.uploads_inside,
        during.lists_inside
    );
    // Served while a backup runs, not held until it ends: uploads (a write
    // transaction each) and listings both began and finished inside one
    // run, with no time bound involved.
    assert!(
        during.uploads_inside > 0 && during.lists_inside > 0,
        "no upload or no listing completed inside a backup run ({during}; alone: {alone})"
    );
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
    let (s, _api) = TestApp::start(|c| c.watch.enabled = false).await;
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

fn isync_backups_empty(s: &TestApp) -> bool {
    std::fs::read_dir(s.lib().join(".isync/backups"))
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

// ---------------------------------------------------------------------------
// The README's backup and restore promises, each through the real binary
// where the promise is about the command line.

const PW: &str = "a long family password";
const BUSY: i64 = -10013;

/// Claims the server with `init`; the admin's key client.
async fn admin(s: &TestApp) -> Api {
    let v = Api::new(&s.base)
        .post_json(
            "/api/v1/register",
            json!({"token": "init", "userName": "root", "password": PW}),
        )
        .await;
    Api::with_bearer(&s.base, data(&v)["accessKey"].as_str().unwrap())
}

/// Adds `n` file records (bulk for the copy to chew on).
/// `?1` more file records, copies of the first one, for a copy to chew on.
const BULK_ROWS: &str =
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
     INSERT INTO files(catalog_id, real_catalog_id, root_id, disk_name, name, ext, \
       import_time, last_modify, size, type, memo) \
     SELECT f.catalog_id, f.real_catalog_id, f.root_id, 'bulk' || i || '.jpg', \
       'bulk' || i || '.jpg', 'jpg', 0, 0, 1000, 1, hex(randomblob(100)) \
     FROM n, (SELECT * FROM files ORDER BY id LIMIT 1) f";

async fn bulk(s: &TestApp, n: u32) {
    s.db()
        .write_async(move |tx| {
            tx.execute(BULK_ROWS, [n])?;
            Ok(())
        })
        .await
        .unwrap();
}

/// Every file under `dir` (relative path → bytes).
fn files_under(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(dir).unwrap();
            (
                rel.to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// Makes a backup with the running server; its folder.
async fn backup_now(s: &TestApp) -> PathBuf {
    let b = s.state().backups.clone();
    let run = tokio::task::spawn_blocking(move || b.run(None))
        .await
        .unwrap()
        .unwrap();
    PathBuf::from(run.path.unwrap())
}

/// Copies backup `folder` to `<test dir>/<name>` and lets `damage` change
/// its database; with `reseal`, the manifest's SHA-256 is made to match the
/// changed copy (as if it had been damaged before it was sealed).
fn altered_copy(
    s: &TestApp,
    folder: &Path,
    name: &str,
    reseal: bool,
    damage: impl FnOnce(&Path),
) -> PathBuf {
    let to = s.dir.path().join(name);
    std::fs::create_dir_all(&to).unwrap();
    for f in ["isync.db", "manifest.json"] {
        std::fs::copy(folder.join(f), to.join(f)).unwrap();
    }
    damage(&to.join("isync.db"));
    assert!(
        !to.join("isync.db-wal").exists(),
        "the damage left a WAL beside the copy"
    );
    if reseal {
        use sha2::Digest;
        let sha = hex::encode(sha2::Sha256::digest(
            std::fs::read(to.join("isync.db")).unwrap(),
        ));
        let mut m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(to.join("manifest.json")).unwrap())
                .unwrap();
        m["dbSha256"] = sha.into();
        std::fs::write(to.join("manifest.json"), m.to_string()).unwrap();
    }
    to
}

/// Runs `sql` on a database file (not a live one).
fn sql_on(db: &Path, sql: &str) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch(sql).unwrap();
}

/// `isync restore` refuses a copy that does not match its manifest, one
/// that fails SQLite's integrity check, and one from a newer isync — each
/// with a message saying what is wrong, and nothing changes: not the data
/// dir (database, thumbnails, lock) byte for byte, nor the copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_a_damaged_or_newer_copy_and_changes_nothing() {
    let (mut s, _api) = TestApp::start(|c| c.watch.enabled = false).await;
    let folder = backup_now(&s).await;
    s.running.take().unwrap().stop().await.unwrap();

    // A flipped byte: the copy no longer matches its manifest.
    let flipped = altered_copy(&s, &folder, "flipped", false, |db| {
        let mut b = std::fs::read(db).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0xff;
        std::fs::write(db, b).unwrap();
    });
    // An index that no longer matches its table (sealed: only the
    // integrity check can tell).
    let corrupt = altered_copy(&s, &folder, "corrupt", true, |db| {
        sql_on(
            db,
            "PRAGMA writable_schema = ON; \
             UPDATE sqlite_master SET sql = 'CREATE INDEX files_catalog ON files(size)' \
             WHERE name = 'files_catalog';",
        );
    });
    // A schema this isync does not know.
    let newer = isync::db::MIGRATIONS_LEN + 1;
    let future = altered_copy(&s, &folder, "future", true, |db| {
        sql_on(db, &format!("PRAGMA user_version = {newer};"));
    });

    let data_dir = s.cfg.data_dir.clone();
    let before = files_under(&data_dir);
    assert!(before.contains_key("isync.db"), "{:?}", before.keys());
    for (from, says) in [
        (&flipped, vec!["does not match its manifest", "refusing"]),
        (&corrupt, vec!["integrity check", "failed", "files_catalog"]),
        // The bare database file (no manifest): checked all the same.
        (&corrupt.join("isync.db"), vec!["integrity check", "failed"]),
        (
            &future,
            vec![
                "newer isync",
                &*format!("schema {newer}"),
                "upgrade isync first",
            ],
        ),
    ] {
        let copy_dir = if from.is_dir() {
            from.to_path_buf()
        } else {
            from.parent().unwrap().to_path_buf()
        };
        let copy_before = files_under(&copy_dir);
        let (code, out, err) = isync(&s, &["restore", from.to_str().unwrap()]);
        assert_eq!(code, 2, "{}: {out}{err}", from.display());
        for w in says {
            assert!(err.contains(w), "{}: {w:?} not said: {err}", from.display());
        }
        assert!(out.is_empty(), "{out}");
        assert!(
            files_under(&data_dir) == before,
            "restoring {} changed the data dir",
            from.display()
        );
        assert!(files_under(&copy_dir) == copy_before, "{}", from.display());
    }
    // And the real backup still restores after all that.
    let (code, out, err) = isync(&s, &["restore", folder.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
}

/// A successful restore deletes nothing: the database it replaces (and any
/// thumbnail uploaded for a record the backup does not have, kept on the
/// library's disk) is moved aside, byte for byte as it was (the thumbnail
/// on its own disk); everything else in the data dir stays where it was,
/// and the backup itself is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_moves_the_replaced_database_aside_byte_for_byte() {
    let (mut s, api) = TestApp::start(|c| c.watch.enabled = false).await;
    let folder = backup_now(&s).await;
    let backup_before = files_under(&folder);

    // After the backup: a memo changed, and an upload with a client
    // thumbnail (a record the backup does not know).
    let a = api.file_id("a.jpg").await;
    let d = api
        .post_form(
            "/updateFile.icc",
            json!({"id": a, "memo": "after the backup"}),
        )
        .await;
    assert_eq!(d["code"], OK, "{d}");
    let cid = common::root_id(&api).await;
    let v = api
        .post_form(
            "/uploadFileInfo.icc",
            json!({"cid": cid, "name": "new.jpg", "size": 5, "type": 1, "ext": "jpg",
                   "statusForThumb": 2}),
        )
        .await;
    let new_id = data(&v)["id"].as_i64().unwrap();
    let thumb = common::jpeg(40, 30, 7, None);
    let mut body = b"--B0und\r\nContent-Disposition: form-data; name=\"origin\"; filename=\"origin\"\r\n\r\nhello\r\n--B0und\r\nContent-Disposition: form-data; name=\"thumb\"; filename=\"thumb\"\r\n\r\n".to_vec();
    body.extend_from_slice(&thumb);
    body.extend_from_slice(b"\r\n--B0und--\r\n");
    let r = api
        .send_raw(
            reqwest::Method::POST,
            &format!("/uploadFile.icc?id={new_id}&obp=0&tbp=0"),
            "multipart/form-data; boundary=B0und",
            body,
        )
        .await;
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], OK, "{v}");
    let thumb_name = format!("{new_id}_0.jpg");
    let lib_thumbs = s.lib().join(".isync/thumbs");
    s.running.take().unwrap().stop().await.unwrap();

    let data_dir = s.cfg.data_dir.clone();
    let before = files_under(&data_dir);
    let on_lib = lib_thumbs.join("uploaded").join(&thumb_name);
    assert!(
        std::fs::read(&on_lib).unwrap() == thumb,
        "on the library's disk"
    );
    assert!(
        !before.keys().any(|k| k.ends_with(&thumb_name)),
        "none on the SD card: {:?}",
        before.keys()
    );
    let (code, out, err) = isync(&s, &["restore", folder.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let aside = PathBuf::from(
        out.lines()
            .find_map(|l| l.strip_prefix("the database it replaced is kept in "))
            .unwrap_or_else(|| panic!("{out}")),
    );
    let aside_rel = aside
        .strip_prefix(&data_dir)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let after = files_under(&data_dir);
    // Each file of before is where it was or aside, unchanged.
    for (path, bytes) in &before {
        let name = Path::new(path).file_name().unwrap().to_string_lossy();
        let moved = if path.starts_with("isync.db") {
            Some(format!("{aside_rel}/{name}"))
        } else if path.starts_with("thumbs/uploaded/") {
            Some(format!("{aside_rel}/uploaded-thumbs/{name}"))
        } else {
            None
        };
        match (after.get(path), moved.as_ref().and_then(|m| after.get(m))) {
            (Some(b), None) if !path.starts_with("isync.db") => {
                assert!(b == bytes, "{path} changed")
            }
            (_, Some(b)) => assert!(b == bytes, "{path} moved aside but changed"),
            _ => panic!(
                "{path} is gone (aside: {aside_rel}; now: {:?})",
                after.keys()
            ),
        }
    }
    assert!(
        after[&format!("{aside_rel}/isync.db")] == before["isync.db"],
        "the replaced database is kept byte for byte"
    );
    assert!(!on_lib.exists(), "the new record's thumbnail went aside");
    let aside_name = aside.file_name().unwrap().to_string_lossy();
    let kept = lib_thumbs.join(format!("uploaded-aside-{aside_name}/{thumb_name}"));
    assert!(std::fs::read(&kept).unwrap() == thumb, "kept byte for byte");
    assert!(files_under(&folder) == backup_before, "the backup changed");

    // The server starts on the restored data: the memo is the backup's.
    let api = s.boot().await;
    let a = api.file_named("a.jpg").await;
    assert_ne!(a["memo"], "after the backup", "{a}");
}

/// Backups started at once over the API: exactly one runs; every other
/// start is answered −10013 and leaves no backup behind. (Before, the
/// handler looked at `running` and started the run on another thread, so
/// two requests at once could both be told the backup had started.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_started_at_once_run_one_at_a_time() {
    let (s, _api) = TestApp::start(|c| {
        c.watch.enabled = false;
        c.backup.keep = 50;
    })
    .await;
    let root = admin(&s).await;
    // A copy that takes a while (and several fsyncs).
    bulk(&s, 20_000).await;
    let starts: Vec<_> = (0..8)
        .map(|_| {
            let root = root.clone();
            tokio::spawn(async move { root.post_form("/api/v1/backup", json!({})).await })
        })
        .collect();
    let mut replies = Vec::new();
    for t in starts {
        replies.push(t.await.unwrap());
    }
    let started: Vec<_> = replies.iter().filter(|v| v["code"] == OK).collect();
    let busy: Vec<_> = replies.iter().filter(|v| v["code"] == BUSY).collect();
    assert_eq!(started.len() + busy.len(), 8, "{replies:?}");
    assert!(!started.is_empty(), "{replies:?}");
    assert!(
        !busy.is_empty(),
        "8 starts at once all found it idle: {replies:?}"
    );
    for v in &started {
        assert_eq!(data(v)["running"], true, "{v}");
    }
    for v in &busy {
        common::assert_err(v, BUSY);
        assert!(
            v["msg"].as_str().unwrap().contains("already running"),
            "{v}"
        );
    }
    // Every start that was told "started" made one backup, no more.
    let b = s.state().backups.clone();
    tokio::task::spawn_blocking(move || b.wait_idle())
        .await
        .unwrap();
    let st = root.get_json("/api/v1/backup", json!({})).await;
    let st = data(&st);
    let recent = st["recent"].as_array().unwrap();
    assert_eq!(recent.len(), started.len(), "{st}");
    assert!(recent.iter().all(|r| r["ok"] == true), "{st}");
    assert_eq!(
        st["generations"].as_array().unwrap().len(),
        started.len(),
        "{st}"
    );
    assert_eq!(st["progress"]["running"], false);
}

// ---------------------------------------------------------------------------
// The SD card's reserve (issue 15): a backup folder on the data dir's disk.

/// A backup into a folder on the data dir's file system (a 16 MB tmpfs
/// standing for the SD card) that would leave less than
/// `storage.data_min_free_bytes` free is refused with −10014's error before
/// anything is written, and recorded as failed; the same backup to another
/// disk works meanwhile, and to the card once there is room for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_onto_the_sd_card_keeps_its_reserve() {
    const RESERVE: u64 = 4 << 20;
    let sd = tempfile::tempdir().unwrap();
    let card = sd.path().join("card");
    let mut mounts = common::mount::Mounts::default();
    if mounts.tmpfs_sized(&card, "16m").is_none() {
        return;
    }
    let data_dir = card.join("data");
    let (s, _api) = TestApp::start(|c| {
        c.data_dir = data_dir.clone();
        c.storage.data_min_free_bytes = RESERVE;
        c.watch.enabled = false;
    })
    .await;
    bulk(&s, 5_000).await;
    let need: u64 = s
        .db()
        .read(|c| Ok(isync::db::backup::size_bytes(c)?))
        .unwrap()
        .try_into()
        .unwrap();
    assert!(need > 1 << 20, "a database of {need} bytes");
    let free = || isync::freespace::free_bytes(&card).unwrap();
    // Something else on the card (logs, say) leaves room for half a copy
    // above the reserve.
    let filler = card.join("filler");
    let fill_to = |left: u64| {
        let have = std::fs::metadata(&filler).map_or(0, |m| m.len());
        let f = free();
        assert!(f + have > left, "{f} bytes free, wanted {left}");
        std::fs::write(&filler, vec![1u8; (have + f - left) as usize]).unwrap();
    };
    fill_to(RESERVE + need / 2);
    // The database on the card grows and shrinks by itself (its WAL, the
    // refusal being recorded): what the backup may not take is the free
    // space beside the database's own files.
    let db_files = || -> u64 {
        ["isync.db", "isync.db-wal", "isync.db-shm"]
            .iter()
            .map(|n| std::fs::metadata(data_dir.join(n)).map_or(0, |m| m.len()))
            .sum()
    };
    let before = free() + db_files();

    let backups = s.state().backups.clone();
    let run = |to: PathBuf| {
        let b = backups.clone();
        async move {
            tokio::task::spawn_blocking(move || b.run(Some(&to)))
                .await
                .unwrap()
        }
    };
    let on_card = card.join("backups");
    let e = run(on_card.clone()).await.unwrap_err();
    assert!(
        matches!(e, isync::error::Error::StorageFull(_)),
        "a storage-full refusal: {e:?}"
    );
    let msg = e.to_string();
    for word in ["SD card", "reserve", "data_min_free_bytes", "--to"] {
        assert!(msg.contains(word), "{word} in {msg}");
    }
    assert!(
        !on_card.exists(),
        "nothing written: {:?}",
        files_under(&on_card)
    );
    assert!(
        free() + db_files() + (64 << 10) >= before,
        "{} + {} < {before}",
        free(),
        db_files()
    );
    let st = backups.status().unwrap();
    assert!(!st.recent[0].ok, "the refusal is recorded");
    assert_eq!(st.recent[0].message, msg);

    // Another disk keeps no such reserve.
    let elsewhere = s.dir.path().join("elsewhere");
    let done = run(elsewhere.clone()).await.unwrap();
    assert!(done.ok && done.path.unwrap().starts_with(elsewhere.to_str().unwrap()));

    // Room for the copy above the reserve: it is written, and the reserve
    // is still free after it.
    fill_to(RESERVE + need * 2);
    let done = run(on_card.clone()).await.unwrap();
    let folder = PathBuf::from(done.path.unwrap());
    assert!(folder.starts_with(&on_card));
    assert!(folder.join("isync.db").is_file());
    assert!(free() >= RESERVE, "{} bytes free", free());
    s.stop().await;
    drop(mounts);
}

/// The files table as rows of text, id order (what a backup must leave as
/// it found it).
fn file_rows(p: &common::process::Process) -> Vec<String> {
    p.db_read(|c| {
        let mut st = c.prepare("SELECT id, name, size, memo FROM files ORDER BY id")?;
        let rows = st.query_map([], |r| {
            Ok(format!(
                "{}|{}|{}|{:?}",
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<String>>(3)?
            ))
        })?;
        rows.collect()
    })
}

/// A backup onto the SD card (the data dir on a 48 MB tmpfs) that passes
/// the room check, then runs short while the copy is written (something
/// else fills the card once the copy has begun: the `backup-copying`
/// failpoint holds the copy until it has), is stopped with the
/// storage-full error, its partial folder removed and the run recorded as
/// failed; the database and the library are as they were, the server goes
/// on serving, and once the space is freed the next backup is written.
/// On the real binary: `isync backup` asks the running server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_that_runs_short_on_the_sd_card_is_stopped_and_removed() {
    const RESERVE: u64 = 4 << 20;
    let dir = tempfile::Builder::new()
        .prefix("isync-proc-")
        .tempdir()
        .unwrap();
    let card = dir.path().join("data");
    let mut mounts = common::mount::Mounts::default();
    if mounts.tmpfs_sized(&card, "48m").is_none() {
        return;
    }
    let backups = card.join("backups");
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let cfg = format!(
        "[scan]\nprerender_threads = 0\n[storage]\ndata_min_free_bytes = {RESERVE}\n\
         [backup]\ndir = {backups:?}\n"
    );
    let mut p = common::process::Process::new_in(dir, &lib, &["alice"], &cfg);
    p.hold(mounts);
    common::write_file(&lib.join("a.jpg"), &common::jpeg(640, 480, 1, None));
    p.start(&[]);
    p.wait_logged("initial scan:", 1).await;
    assert!(p.stop().success());
    // Rows for the copy to chew on (its progress is checked every few
    // thousand steps), written with the server stopped.
    {
        let c = rusqlite::Connection::open(p.data().join("isync.db")).unwrap();
        c.execute(BULK_ROWS, [20000]).unwrap();
    }

    let gate = p.dir.path().join("go-on");
    let hold = format!("backup-copying@{}", gate.display());
    p.start(&[("ISYNC_FAILPOINT", &hold)]);
    p.wait_logged("initial scan:", 2).await;
    let api = p.login("alice").await;
    let a = api.file_id("a.jpg").await;
    let rows = file_rows(&p);
    assert!(rows.len() > 20_000, "{} rows", rows.len());
    let library = files_under(&lib);
    let free = || isync::freespace::free_bytes(&card).unwrap();

    let config = p.config();
    let backup = move || Launch::new().config(&config).arg("backup").output();
    let running = tokio::task::spawn_blocking(backup.clone());
    p.wait_logged("failpoint backup-copying: waiting", 1).await;
    // The room check passed and the copy has begun, in its partial folder.
    let partial: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        partial.len() == 1 && partial[0].ends_with(".partial"),
        "{partial:?}"
    );
    // Something else takes the card down to half its reserve.
    let filler = card.join("filler");
    std::fs::write(&filler, vec![1u8; (free() - RESERVE / 2) as usize]).unwrap();
    std::fs::write(&gate, b"").unwrap();
    let out = running.await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for words in [
        "ran short while the copy was written",
        "SD card",
        "storage.data_min_free_bytes",
        "nothing was kept",
    ] {
        assert!(err.contains(words), "{words:?} in {err}");
    }
    assert!(
        files_under(&backups).is_empty(),
        "the partial copy removed: {:?}",
        files_under(&backups).keys()
    );
    assert_eq!(
        std::fs::read_dir(&backups).unwrap().count(),
        0,
        "no folder left"
    );
    assert_eq!(p.logged("backup failed:").len(), 1);

    // Recorded as failed, with the same message; the data as it was; the
    // server serving.
    let admin = {
        let v = Api::new(&p.base)
            .post_json(
                "/api/v1/register",
                json!({"token": "init", "userName": "root", "password": PW}),
            )
            .await;
        Api::with_bearer(&p.base, data(&v)["accessKey"].as_str().unwrap())
    };
    let st = admin.get_json("/api/v1/backup", json!({})).await;
    let last = &data(&st)["recent"][0];
    assert_eq!(last["ok"], false, "{st}");
    let msg = last["message"].as_str().unwrap();
    assert!(msg.contains("ran short") && err.contains(msg), "{msg}");
    assert!(data(&st)["generations"].as_array().unwrap().is_empty());
    assert_eq!(file_rows(&p), rows, "the database's files as they were");
    assert_eq!(files_under(&lib), library, "the library as it was");
    let r = api
        .get("/thumbnail.icc", json!({"id": a, "level": 0}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(api.file_id("a.jpg").await, a);

    // Space freed: the next backup is written, and keeps the reserve.
    std::fs::remove_file(&filler).unwrap();
    let out = tokio::task::spawn_blocking(backup).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kept = isync::backup::generations(&backups);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(backups.join(&kept[0]).join("isync.db").is_file());
    assert!(free() >= RESERVE, "{} bytes free", free());
}
