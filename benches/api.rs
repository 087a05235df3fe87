//! `files.icc` benchmark (issue 2): a load generator over loopback with
//! keep-alive against the real server, on libraries of 5,000 and 100,000
//! files (records written straight into the database: the listing path does
//! not touch the originals). Prints medians and p95 of the server-side time
//! (`Server-Timing`) and of the end-to-end time, for every sort and for the
//! first and deepest page, with a baseline measured in the same run: the
//! cheapest authenticated endpoint (`helpInfo.icc?type=0`). Before the
//! server starts, the parts of one page are timed in-process (index slice,
//! SQL fetch of the 100 records, JSON encoding, and joining the encodings the
//! listing snapshot keeps) to show where a listing's time goes. Then a
//! listing right after a one-row write, against the full reload of the index
//! (interleaved, same run).
//! First, "memory": the release binary's idle RSS (median of several starts,
//! with the pre-render worker off as the baseline) and its RSS while a 2 GB
//! file streams.
//! Then, for each library, the server's CPU seconds per 1,000 pages (issue
//! 13: what a Pi pays) against a bare SQLite query of the same pages.
//! Run: `cargo bench --bench api` (`-- memory` for the memory part alone,
//! `-- listing` for the listing parts alone, `-- cpu` for the CPU per page
//! alone).

mod common;

use common::{cpu_ticks, free_port, median, pct, rss_kib, server_ms, thread_cpu_secs, SelfCpu};
use isync::config::{Config, LibraryConfig, ScanConfig};
use isync::db::listing::Query;
use isync::db::{catalogs, files, users, Db};
use isync::http::api::file::FileInfo;
use isync::model::{CatalogId, MediaInfo};
use std::time::{Duration, Instant};

const REQUESTS: usize = 400;

/// Writes `n` file records spread over 50 catalogs of one library.
fn populate(db: &Db, root: CatalogId, lib_path: &str, n: usize) {
    let lib = db
        .read(|c| Ok(isync::db::libraries::by_path(c, lib_path)?.unwrap()))
        .unwrap();
    db.write(|tx| {
        let mut cats = Vec::new();
        for i in 0..50 {
            let path = format!("{lib_path}/album{i}");
            cats.push(catalogs::insert(
                tx,
                &catalogs::NewCatalog {
                    root_id: Some(root),
                    parent_id: Some(root),
                    library_id: lib.id,
                    path: &path,
                    name: &format!("album{i}"),
                    create_time: 1_600_000_000,
                    now: 1_700_000_000,
                },
            )?);
        }
        for i in 0..n {
            let x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let video = i % 10 == 0;
            let f = files::ScannedFile {
                catalog_id: cats[i % cats.len()],
                root_id: root,
                disk_name: format!("IMG_{i:06}.{}", if video { "mp4" } else { "jpg" }),
                ext: if video { "mp4".into() } else { "jpg".into() },
                size: (x % 10_000_000) as i64 + 1000,
                mtime_ns: 0,
                inode: i as i64,
                create_time: 1_500_000_000 + (x % 200_000_000) as i64,
                file_type: if video { 4 } else { 1 },
                info: MediaInfo {
                    width: (i % 7 != 0).then_some(640 + (x % 4000) as i64),
                    height: (i % 7 != 0).then_some(480 + (x % 3000) as i64),
                    orientation: None,
                    duration: video.then_some((x % 600) as f64 / 3.0),
                    capture_time: None,
                    content_id: None,
                },
            };
            files::insert_scanned(tx, &f, 1_700_000_000)?;
        }
        Ok(())
    })
    .unwrap();
}

/// Median in ms of `runs` calls of `f`.
fn median_ms<T>(runs: usize, mut f: impl FnMut() -> T) -> f64 {
    let v: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median(&v)
}

/// Where the time of one 100-record page goes, in-process (no HTTP).
fn breakdown(db: &Db, root: CatalogId, n: usize) {
    let idx = db.listing().unwrap();
    let q = Query {
        roots: vec![root],
        sort: -4,
        limit: 100,
        ..Default::default()
    };
    let (ids, _) = idx.page(&q);
    let page = median_ms(500, || idx.page(&q));
    let sql = median_ms(300, || db.read(|c| files::by_ids(c, &ids)).unwrap());
    let recs = db.read(|c| files::by_ids(c, &ids)).unwrap();
    let encode = median_ms(300, || {
        let infos: Vec<FileInfo> = recs
            .iter()
            .cloned()
            .map(|r| FileInfo::new(r, None))
            .collect();
        serde_json::to_vec(&infos).unwrap()
    });
    let kept: Vec<Vec<u8>> = recs
        .iter()
        .cloned()
        .map(|r| serde_json::to_vec(&FileInfo::new(r, None)).unwrap())
        .collect();
    let joined = median_ms(500, || {
        let mut out = Vec::with_capacity(kept.iter().map(|k| k.len() + 1).sum());
        for (i, k) in kept.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(k);
        }
        out
    });
    println!(
        "[{n} files] one page, in-process: index slice {page:.3} ms; SQL fetch of 100 records \
         {sql:.3} ms; JSON encoding {encode:.3} ms; joining 100 kept encodings (what a page \
         served before costs now instead of the two) {joined:.3} ms"
    );
}

struct Sample {
    server_ms: Vec<f64>,
    e2e_ms: Vec<f64>,
    first_server_ms: f64,
}

async fn measure(client: &reqwest::Client, url: &str, n: usize) -> Sample {
    let mut s = Sample {
        server_ms: Vec::with_capacity(n),
        e2e_ms: Vec::with_capacity(n),
        first_server_ms: 0.0,
    };
    for i in 0..n + n / 10 {
        let t = Instant::now();
        let resp = client.get(url).send().await.unwrap();
        let timing = server_ms(&resp);
        let body = resp.bytes().await.unwrap();
        let e2e = t.elapsed().as_secs_f64() * 1e3;
        assert!(
            body.starts_with(b"{\"code\":0"),
            "{}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
        if i == 0 {
            s.first_server_ms = timing;
        }
        if i >= n / 10 {
            // The first tenth warms up (lazy sort orders, caches).
            s.server_ms.push(timing);
            s.e2e_ms.push(e2e);
        }
    }
    s
}

/// Pages per sample, and samples, of [`cpu_per_1000_pages`].
const CPU_PAGES: usize = 1000;
const CPU_RUNS: usize = 5;

/// Issue 13: the server's CPU seconds per 1,000 `files.icc` pages of 100
/// records (sort −1, newest first), as a phone scrolling the library asks
/// them: every page in turn, from the top again after the last. A first
/// pass reads every page once (the records read and encoded, as the
/// first listing after a start does; that cost is in the listing figures)
/// and collects the ids each page shows. The server runs in this process;
/// the client is one thread on a kept-alive connection, so the server's
/// CPU is this process's minus that thread's, both measured. Baseline, same
/// run: the same pages' records by a bare SQLite query on a read-only
/// connection of its own (`SELECT * … WHERE id IN (100 ids)`, every column
/// read), nothing of HTTP or JSON.
fn cpu_per_1000_pages(
    addr: std::net::SocketAddr,
    cookie: &str,
    pages: usize,
    db: &std::path::Path,
    n: usize,
) {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_nodelay(true).unwrap();
    let url = |p: usize| format!("/files.icc?pageIndex={p}&maxPerPage=100&sort=-1");
    let ids: Vec<Vec<i64>> = (0..pages)
        .map(|p| {
            let (_, body) = common::get(&mut c, &url(p), cookie, &[]);
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["code"], 0, "{v}");
            v["data"]["list"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["id"].as_i64().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(ids.iter().map(Vec::len).sum::<usize>(), n);
    let (mut server, mut client) = (Vec::new(), Vec::new());
    for _ in 0..CPU_RUNS {
        let (p0, t0) = (SelfCpu::now(), thread_cpu_secs());
        for i in 0..CPU_PAGES {
            let (head, body) = common::get(&mut c, &url(i % pages), cookie, &[]);
            assert!(head.starts_with("http/1.1 200"), "{head}");
            assert!(body.starts_with(b"{\"code\":0"));
        }
        let mine = thread_cpu_secs() - t0;
        server.push(SelfCpu::since(p0).own - mine);
        client.push(mine);
    }
    // Baseline: the same pages' rows, on this thread.
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut bare = Vec::new();
    for _ in 0..CPU_RUNS {
        let t0 = thread_cpu_secs();
        let mut rows_read = 0;
        for i in 0..CPU_PAGES {
            let page = &ids[i % pages];
            let sql = format!(
                "SELECT * FROM files WHERE id IN ({})",
                vec!["?"; page.len()].join(",")
            );
            let mut stmt = conn.prepare_cached(&sql).unwrap();
            let cols = stmt.column_count();
            let mut rows = stmt.query(rusqlite::params_from_iter(page)).unwrap();
            while let Some(r) = rows.next().unwrap() {
                for k in 0..cols {
                    std::hint::black_box(r.get::<_, rusqlite::types::Value>(k).unwrap());
                }
                rows_read += 1;
            }
        }
        assert_eq!(
            rows_read,
            (0..CPU_PAGES).map(|i| ids[i % pages].len()).sum::<usize>()
        );
        bare.push(thread_cpu_secs() - t0);
    }
    let (sm, bm) = (median(&server), median(&bare));
    println!(
        "[{n} files] CPU-s per {CPU_PAGES} files.icc pages of 100 (median of {CPU_RUNS}): server \
         {sm:.3} (min {:.3}, max {:.3}; the client thread {:.3}); baseline, bare SQLite query of \
         the same pages {bm:.3}; {:.2}x the baseline",
        pct(&server, 0.0),
        pct(&server, 1.0),
        median(&client),
        sm / bm.max(1e-9)
    );
}

async fn run_library(n: usize, only_cpu: bool) {
    let dir = tempfile::tempdir().unwrap();
    let lib_path = dir.path().join("lib");
    std::fs::create_dir_all(&lib_path).unwrap();
    let cfg = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().join("data"),
        libraries: vec![LibraryConfig {
            path: lib_path.clone(),
            users: vec!["bench".into()],
            merge: true,
        }],
        // The records have no files behind them: nothing to pre-render.
        scan: ScanConfig {
            prerender_threads: 0,
            ..ScanConfig::default()
        },
        ..Config::default()
    };
    let db_path = cfg.db_path();
    {
        let db = Db::open(&cfg.db_path()).unwrap();
        let hash = isync::auth::hash_password("bench");
        db.write(|tx| users::upsert(tx, "bench", &hash, 0)).unwrap();
        let plan = isync::library::sync_libraries(&db, &cfg).unwrap();
        let root = plan.scan[0].0.root_id.unwrap();
        populate(&db, root, &lib_path.to_string_lossy(), n);
        breakdown(&db, root, n);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut running = isync::app::start(cfg, listener).await.unwrap();
    running.wait_scanned().await;
    let base = format!("http://{}", running.addr);
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let login: serde_json::Value = client
        .get(format!("{base}/login.icc?userName=bench&password=bench"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(login["code"], 0);
    let first: serde_json::Value = client
        .get(format!("{base}/files.icc?pageIndex=0&maxPerPage=100"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pages = first["data"]["page"]["pageCount"].as_i64().unwrap();
    assert_eq!(pages as usize, n.div_ceil(100));

    let login = client
        .get(format!("{base}/login.icc?userName=bench&password=bench"))
        .send()
        .await
        .unwrap();
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_string();
    let addr = running.addr;
    tokio::task::spawn_blocking(move || {
        cpu_per_1000_pages(addr, &cookie, pages as usize, &db_path, n)
    })
    .await
    .unwrap();
    if only_cpu {
        running.stop().await.unwrap();
        return;
    }

    let baseline = measure(&client, &format!("{base}/helpInfo.icc?type=0"), REQUESTS).await;
    let b_med = pct(&baseline.server_ms, 0.5);
    println!(
        "[{n} files] baseline helpInfo.icc: server median {:.3} ms, end-to-end median {:.3} ms",
        b_med,
        pct(&baseline.e2e_ms, 0.5)
    );
    let target = if n <= 5_000 { 0.5 } else { 5.0 };
    let mut worst: f64 = 0.0;
    let mut firsts = Vec::new();
    for sort in [0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5] {
        for (label, page) in [("first", 0), ("deepest", pages - 1)] {
            let url = format!("{base}/files.icc?pageIndex={page}&maxPerPage=100&sort={sort}");
            let reqs = if n > 10_000 { REQUESTS / 4 } else { REQUESTS };
            let s = measure(&client, &url, reqs).await;
            // The very first request of the page (the warm-up's first): the
            // records are read and encoded; every later one reuses them.
            firsts.push(s.first_server_ms);
            let med = pct(&s.server_ms, 0.5);
            worst = worst.max(med);
            println!(
                "[{n} files] files.icc sort={sort:>2} {label:<7} page: server median {med:.3} ms p95 {:.3} ms; end-to-end median {:.3} ms; {:.1}x baseline",
                pct(&s.server_ms, 0.95),
                pct(&s.e2e_ms, 0.5),
                med / b_med.max(1e-6)
            );
        }
    }
    println!(
        "[{n} files] worst server median {worst:.3} ms (target < {target} ms): {}; \
         first request of each page (its records read and encoded; the first of a sort also sorts): median {:.3} ms, max {:.3} ms",
        if worst < target { "OK" } else { "MISSED" },
        pct(&firsts, 0.5),
        pct(&firsts, 1.0)
    );
    after_writes(
        &client,
        &base,
        &running,
        first["data"]["list"][0]["id"].as_i64().unwrap(),
        n,
    )
    .await;
    running.stop().await.unwrap();
    let _ = Duration::ZERO;
}

/// A listing right after a write (a memo change: one `files` row), as when a
/// phone uploads while the app lists: the index catches up with the changed
/// row (merging it into the sort orders already computed). Baseline, same
/// run, interleaved: the same with the index forgotten after the write, so
/// the listing loads and sorts it from the table (what every write cost
/// before).
async fn after_writes(
    client: &reqwest::Client,
    base: &str,
    running: &isync::app::Running,
    id: i64,
    n: usize,
) {
    let rounds = if n > 10_000 { 30 } else { 60 };
    let (mut inc, mut full) = (Vec::new(), Vec::new());
    for i in 0..rounds * 2 {
        let v: serde_json::Value = client
            .post(format!("{base}/updateFile.icc"))
            .form(&[("id", id.to_string()), ("memo", format!("m{i}"))])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["code"], 0, "{v}");
        let baseline = i % 2 == 1;
        if baseline {
            running.state.db.invalidate_listing();
        }
        let r = client
            .get(format!(
                "{base}/files.icc?pageIndex=0&maxPerPage=100&sort=-1"
            ))
            .send()
            .await
            .unwrap();
        let server = server_ms(&r);
        let body = r.bytes().await.unwrap();
        assert!(body.starts_with(b"{\"code\":0"));
        if baseline { &mut full } else { &mut inc }.push(server);
    }
    let (mi, mf) = (pct(&inc, 0.5), pct(&full, 0.5));
    println!(
        "[{n} files] files.icc (sort=-1, first page) right after a one-row write: index caught up \
         from the changed row: median {mi:.3} ms, max {:.3} ms; baseline, reloaded from the table: \
         median {mf:.3} ms, max {:.3} ms; {:.1}x faster",
        pct(&inc, 1.0),
        pct(&full, 1.0),
        mf / mi.max(1e-6)
    );
}

/// How many times the server is started for each configuration; the idle
/// figures are their medians.
const RSS_RUNS: usize = 5;

/// The library the memory runs serve: 50 small JPEGs and a 2 GB sparse MOV.
fn rss_library(dir: &std::path::Path) -> std::path::PathBuf {
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    for i in 0..50u8 {
        std::fs::write(
            lib.join(format!("p{i}.jpg")),
            isync::demo::jpeg_bytes(320, 240, i, None),
        )
        .unwrap();
    }
    let big = std::fs::File::create(lib.join("big.mov")).unwrap();
    big.set_len(2 * 1024 * 1024 * 1024).unwrap();
    lib
}

/// A release server as a separate process on a fresh data dir over `lib`,
/// with user `bench` logged in on the returned client once the initial scan
/// listed every file.
struct RssServer {
    child: std::process::Child,
    base: String,
    client: reqwest::Client,
    _data: tempfile::TempDir,
}

impl RssServer {
    async fn start(lib: &std::path::Path, prerender_threads: Option<usize>) -> RssServer {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let scan = prerender_threads
            .map(|n| format!("[scan]\nprerender_threads = {n}\n"))
            .unwrap_or_default();
        let cfg = common::write_config(dir.path(), &format!("127.0.0.1:{port}"), &scan, lib);
        common::add_bench_user(&cfg);
        let child = common::serve_command(&cfg, "warn").spawn().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut listed = 0;
        while Instant::now() < deadline {
            if let Ok(r) = client
                .get(format!(
                    "{base}/login.icc?userName=bench&password={}",
                    common::BENCH_PASSWORD
                ))
                .send()
                .await
            {
                let _ = r.bytes().await;
                let v: serde_json::Value = client
                    .get(format!("{base}/files.icc?pageIndex=0&maxPerPage=100"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                listed = v["data"]["list"].as_array().map_or(0, |a| a.len());
                if listed == 51 {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(listed, 51, "server listed the library");
        RssServer {
            child,
            base,
            client,
            _data: dir,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// RSS once the process is idle: no CPU used for 0.5 s (the scan and
    /// the pre-render worker done), at most 60 s after the listing.
    async fn idle_rss_kib(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = cpu_ticks(self.pid());
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = cpu_ticks(self.pid());
            if now == last || Instant::now() > deadline {
                return rss_kib(self.pid());
            }
            last = now;
        }
    }
}

impl Drop for RssServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Idle RSS of the real binary after its initial scan and a login and two
/// listings: median of [`RSS_RUNS`] starts each with the default
/// configuration and, as the baseline, with the pre-render worker off,
/// alternating. Then RSS while a 2 GB file (sparse) streams through
/// `downFile.icc`.
async fn rss() {
    let dir = tempfile::tempdir().unwrap();
    let lib = rss_library(dir.path());
    let mb = |kib: u64| kib as f64 / 1024.0;
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..RSS_RUNS {
        for (threads, into) in [(None, &mut on), (Some(0), &mut off)] {
            let server = RssServer::start(&lib, threads).await;
            let _ = server
                .client
                .get(format!(
                    "{}/files.icc?pageIndex=0&maxPerPage=100&sort=-3",
                    server.base
                ))
                .send()
                .await
                .unwrap()
                .bytes()
                .await;
            into.push(mb(server.idle_rss_kib().await));
        }
    }
    let show = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "RSS idle (target < 20 MB), median of {RSS_RUNS}: {:.1} MB (runs: {}); baseline, \
         scan.prerender_threads = 0: {:.1} MB (runs: {})",
        pct(&on, 0.5),
        show(&on),
        pct(&off, 0.5),
        show(&off)
    );

    let server = RssServer::start(&lib, None).await;
    let pid = server.pid();
    let v: serde_json::Value = server
        .client
        .get(format!(
            "{}/files.icc?pageIndex=0&maxPerPage=100&sort=-3",
            server.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let big_id = v["data"]["list"][0]["id"].as_i64().unwrap();
    let mut resp = server
        .client
        .get(format!("{}/downFile.icc.mov?id={big_id}", server.base))
        .send()
        .await
        .unwrap();
    let (mut got, mut peak, mut samples) = (0u64, 0u64, Vec::new());
    let t = Instant::now();
    let mut next_sample = 0u64;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        got += chunk.len() as u64;
        if got >= next_sample {
            let r = rss_kib(pid);
            peak = peak.max(r);
            samples.push(r);
            next_sample += 128 * 1024 * 1024;
        }
    }
    let el = t.elapsed().as_secs_f64();
    assert_eq!(got, 2 * 1024 * 1024 * 1024);
    println!(
        "RSS streaming 2 GB: peak {:.1} MB, first {:.1} MB, last {:.1} MB ({:.0} MB/s)",
        mb(peak),
        mb(samples.first().copied().unwrap_or(0)),
        mb(samples.last().copied().unwrap_or(0)),
        got as f64 / 1e6 / el
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // `cargo bench --bench api -- memory` runs the memory part alone.
    // `-- listing` the listing part alone.
    let only_memory = std::env::args().any(|a| a == "memory");
    let only_listing = std::env::args().any(|a| a == "listing");
    let only_cpu = std::env::args().any(|a| a == "cpu");
    rt.block_on(async {
        if !only_listing && !only_cpu {
            rss().await;
        }
        if !only_memory {
            run_library(5_000, only_cpu).await;
            run_library(100_000, only_cpu).await;
        }
    });
}
