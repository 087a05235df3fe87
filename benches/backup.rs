//! Backup benchmark (issue 6): does an online backup hold up the API?
//! A library of 50,000 records; a client lists (`files.icc`) and writes
//! (`updateFile.icc`, a committed transaction each) for a few seconds with
//! no backup (the baseline), then for as long again while backups run back
//! to back. Prints the server-side time of each request (`Server-Timing`)
//! as median, 99th percentile and maximum for both phases, the ratios, and
//! the time one backup takes; then, as the backup's own baseline, one
//! isync backup against the sqlite3 shell's `.backup` of the same database
//! (interleaved, idle server).
//! Run: `cargo bench --bench backup`.

mod common;

use common::{pct, server_ms};
use isync::config::{Config, LibraryConfig};
use isync::db::{users, Db};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RECORDS: usize = 50_000;
const PHASE: Duration = Duration::from_secs(4);
/// Backups timed for the same-run baseline against `sqlite3 .backup`.
const BASELINE_RUNS: usize = 5;

/// Server times of `files.icc` pages (reads; the listing index stays warm)
/// or of `updateFile.icc` memo changes (writes: one committed transaction
/// each) for `for_`.
async fn load(
    client: &reqwest::Client,
    base: &str,
    ids: &[i64],
    writes: bool,
    for_: Duration,
) -> Vec<f64> {
    let mut out = Vec::new();
    let start = Instant::now();
    let mut i = 0usize;
    while start.elapsed() < for_ {
        let r = if writes {
            client
                .post(format!("{base}/updateFile.icc"))
                .form(&[
                    ("id", ids[i % ids.len()].to_string()),
                    ("memo", format!("m{i}")),
                ])
                .send()
                .await
                .unwrap()
        } else {
            client
                .get(format!("{base}/files.icc"))
                .query(&[
                    ("pageIndex", (i % 50).to_string()),
                    ("maxPerPage", "100".into()),
                ])
                .send()
                .await
                .unwrap()
        };
        out.push(server_ms(&r));
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["code"], 0, "{v}");
        i += 1;
    }
    out
}

/// Runs backups back to back until `stop`; their durations (ms) and size.
fn backups_until(b: Arc<isync::backup::Backups>, stop: Arc<AtomicBool>) -> (Vec<f64>, i64) {
    let (mut times, mut bytes) = (Vec::new(), 0);
    while !stop.load(Ordering::Relaxed) || times.is_empty() {
        let t = Instant::now();
        let r = b.run(None).expect("backup");
        times.push(t.elapsed().as_secs_f64() * 1e3);
        bytes = r.bytes.unwrap_or(0);
    }
    (times, bytes)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media/lib");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join("seed.jpg"), b"\xff\xd8\xff\xd9").unwrap();
    let mut cfg = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    cfg.watch.enabled = false;
    cfg.backup.dir = Some(dir.path().join("backups"));
    cfg.libraries = vec![LibraryConfig {
        path: media.clone(),
        users: vec!["alice".into()],
        merge: true,
    }];
    let db = Db::open(&cfg.db_path()).unwrap();
    let hash = isync::auth::hash_password("bench password");
    db.write(|tx| users::upsert(tx, "alice", &hash, 0).map(|_| ()))
        .unwrap();
    drop(db);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut running = isync::app::start(cfg.clone(), listener).await.unwrap();
        running.wait_scanned().await;
        let db = running.state.db.clone();
        db.write_async(|tx| {
            tx.execute_batch(&format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {RECORDS}) \
                 INSERT INTO files(catalog_id, real_catalog_id, root_id, disk_name, name, ext, \
                   import_time, last_modify, size, type, memo, width, height) \
                 SELECT f.catalog_id, f.real_catalog_id, f.root_id, 'r' || i || '.jpg', \
                   'IMG_' || i || '.jpg', 'jpg', i, i, 1000 + i, 1, hex(randomblob(40)), 4000, 3000 \
                 FROM n, (SELECT * FROM files ORDER BY id LIMIT 1) f"
            ))?;
            Ok(())
        })
        .await
        .unwrap();
        let ids: Vec<i64> = db
            .read_async(|c| {
                let mut st = c.prepare("SELECT id FROM files ORDER BY id LIMIT 200")?;
                let rows = st.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
            .unwrap();
        let base = format!("http://{}", running.addr);
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .no_proxy()
            .build()
            .unwrap();
        let v: serde_json::Value = client
            .get(format!("{base}/login.icc"))
            .query(&[("userName", "alice"), ("password", "bench password")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["code"], 0, "{v}");
        let mut rows = Vec::new();
        let mut all_times = Vec::new();
        let mut size = 0;
        for writes in [false, true] {
            // Warm the listing index (a write before a read rebuilds it).
            load(&client, &base, &ids, writes, Duration::from_millis(300)).await;
            load(&client, &base, &ids, false, Duration::from_millis(50)).await;
            let quiet = load(&client, &base, &ids, writes, PHASE).await;
            let stop = Arc::new(AtomicBool::new(false));
            let (b, s2) = (running.state.backups.clone(), stop.clone());
            let runner = tokio::task::spawn_blocking(move || backups_until(b, s2));
            let busy = load(&client, &base, &ids, writes, PHASE).await;
            stop.store(true, Ordering::Relaxed);
            let (times, bytes) = runner.await.unwrap();
            all_times.extend(times);
            size = bytes;
            let name = if writes { "updateFile.icc" } else { "files.icc" };
            rows.push((format!("{name}, no backup"), quiet));
            rows.push((format!("{name}, during backups"), busy));
        }
        println!(
            "backup bench: {RECORDS} records, database copy {:.1} MB; {} backups, median {:.0} ms each",
            size as f64 / 1e6,
            all_times.len(),
            pct(&all_times, 0.5)
        );
        println!("{:<32}{:>10}{:>10}{:>10}{:>8}", "server time (ms)", "median", "p99", "max", "n");
        for (name, v) in rows.iter() {
            let n = v.len();
            println!(
                "{name:<32}{:>10.3}{:>10.3}{:>10.3}{n:>8}",
                pct(v, 0.5),
                pct(v, 0.99),
                pct(v, 1.0)
            );
        }
        for pair in rows.chunks(2) {
            let (a, b) = pair.split_at(1);
            println!(
                "ratio during/no backup, {}: median {:.2}, p99 {:.2}",
                a[0].0.split(',').next().unwrap(),
                pct(&b[0].1, 0.5) / pct(&a[0].1, 0.5),
                pct(&b[0].1, 0.99) / pct(&a[0].1, 0.99)
            );
        }
        // Baseline for the backup itself, same run, server idle: the
        // sqlite3 shell's `.backup` of the same database (the online backup
        // API, nothing else) against an isync backup (`VACUUM INTO`, the
        // integrity check, fsyncs, manifest and pruning), interleaved.
        let (db_path, to) = (cfg.db_path(), cfg.backup.dir.clone().unwrap());
        let mut ours = Vec::new();
        let mut shell = Vec::new();
        for i in 0..BASELINE_RUNS {
            let b = running.state.backups.clone();
            let t = Instant::now();
            tokio::task::spawn_blocking(move || b.run(None).expect("backup"))
                .await
                .unwrap();
            ours.push(t.elapsed().as_secs_f64() * 1e3);
            let (from, copy) = (db_path.clone(), to.join(format!("shell-{i}.db")));
            let t = Instant::now();
            let ran = tokio::task::spawn_blocking(move || {
                std::process::Command::new("sqlite3")
                    .arg(&from)
                    .arg(format!(".backup '{}'", copy.display()))
                    .status()
            })
            .await
            .unwrap();
            match ran {
                Ok(st) if st.success() => shell.push(t.elapsed().as_secs_f64() * 1e3),
                other => {
                    println!("no sqlite3 shell baseline ({other:?}): apt-get install sqlite3");
                    break;
                }
            }
        }
        if !shell.is_empty() {
            let (o, b) = (pct(&ours, 0.5), pct(&shell, 0.5));
            println!(
                "one backup, idle server: isync median {o:.0} ms, sqlite3 .backup median {b:.0} ms \
                 ({} runs each), ratio {:.2}",
                shell.len(),
                o / b
            );
        }
        running.stop().await.unwrap();
    });
}
