//! Upload benchmark (issue 3): throughput of `uploadFile.icc` over loopback
//! for a 1 GiB original, against `cat file > dest` on the same disk measured
//! in the same run (also `cat` followed by an fsync, since the server syncs
//! before it acknowledges). Each figure is the median of `RUNS`; the source
//! file is in the page cache for every run. Prints both and the ratio.
//! Run: `cargo bench --bench upload` (needs ~2 GiB free in the temp dir;
//! `ISYNC_BENCH_DIR` picks another disk).

use isync::config::{Config, LibraryConfig};
use isync::db::{users, Db};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SIZE: u64 = 1 << 30;
const RUNS: usize = 3;
const BOUNDARY: &str = "isyncBenchBoundary0123456789";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mb_s(d: Duration) -> f64 {
    SIZE as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

/// A 1 GiB file of varied bytes (not zeros: no file system shortcut).
fn make_source(path: &Path) {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in block.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    for i in 0..(SIZE >> 20) {
        block[0..8].copy_from_slice(&i.to_le_bytes());
        f.write_all(&block).unwrap();
    }
    f.flush().unwrap();
}

/// `cat src > dest`, optionally followed by an fsync of dest.
fn cat_once(src: &Path, dest: &Path, sync: bool) -> Duration {
    let t = Instant::now();
    let out = std::fs::File::create(dest).unwrap();
    let st = std::process::Command::new("cat")
        .arg(src)
        .stdout(out.try_clone().unwrap())
        .status()
        .expect("cat");
    assert!(st.success());
    if sync {
        out.sync_all().unwrap();
    }
    let d = t.elapsed();
    std::fs::remove_file(dest).unwrap();
    d
}

/// Announces a 1 GiB file; returns its id.
async fn announce(client: &reqwest::Client, base: &str) -> i64 {
    let v: serde_json::Value = client
        .post(format!("{base}/uploadFileInfo.icc"))
        .form(&[
            ("cid", "1"),
            ("name", "big.bin"),
            ("size", &SIZE.to_string()),
            ("type", "16"),
            ("ext", "bin"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"]["id"].as_i64().expect("announced")
}

/// Frees the space for the next run.
async fn delete(client: &reqwest::Client, base: &str, id: i64) {
    let del: serde_json::Value = client
        .post(format!("{base}/deleteFiles.icc"))
        .form(&[("ids", id.to_string())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(del["code"], 0);
}

/// The upload by `curl` (a separate, efficient client process, as a phone
/// on the LAN would stream it).
async fn curl_once(client: &reqwest::Client, base: &str, token: &str, src: &Path) -> Duration {
    let id = announce(client, base).await;
    let url = format!("{base}/uploadFile.icc?id={id}");
    let form = format!("file=@{};filename=origin", src.display());
    let cookie = format!("session={token}");
    let t = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "-H", "Expect:", "-b", &cookie, "-F", &form, &url])
            .output()
            .expect("curl (apt-get install curl)")
    })
    .await
    .unwrap();
    let d = t.elapsed();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("curl reply");
    assert_eq!(r["code"], 0, "{r}");
    assert_eq!(r["data"]["fileInfo"]["size"], SIZE);
    delete(client, base, id).await;
    d
}

/// The upload by reqwest in this process (it shares the CPU with the
/// server), optionally with `cm=sha1`.
async fn upload_once(client: &reqwest::Client, base: &str, src: &Path, cm: bool) -> Duration {
    let id = announce(client, base).await;
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"origin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{BOUNDARY}--\r\n");
    let len = head.len() as u64 + SIZE + tail.len() as u64;
    let file = tokio::fs::File::open(src).await.unwrap();
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(head))])
        .chain(tokio_util::io::ReaderStream::with_capacity(file, 2 << 20))
        .chain(futures_util::stream::iter([Ok(bytes::Bytes::from(tail))]));
    let q = if cm { "&cm=sha1" } else { "" };
    let t = Instant::now();
    let r: serde_json::Value = client
        .post(format!("{base}/uploadFile.icc?id={id}{q}"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .header("content-length", len)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let d = t.elapsed();
    assert_eq!(r["code"], 0, "{r}");
    assert_eq!(r["data"]["fileInfo"]["size"], SIZE);
    delete(client, base, id).await;
    d
}

use futures_util::StreamExt;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let base_dir = std::env::var_os("ISYNC_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("isync-upload-bench-")
        .tempdir_in(base_dir)
        .unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let src = dir.path().join("source.bin");
    make_source(&src);

    let cats: Vec<Duration> = (0..RUNS)
        .map(|_| cat_once(&src, &lib.join("copy"), false))
        .collect();
    let cats_sync: Vec<Duration> = (0..RUNS)
        .map(|_| cat_once(&src, &lib.join("copy"), true))
        .collect();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (curl, inproc, inproc_sha1) = rt.block_on(async {
        let cfg = Config {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.path().join("data"),
            libraries: vec![LibraryConfig {
                path: lib.clone(),
                users: vec!["bench".into()],
                merge: true,
            }],
            ..Config::default()
        };
        {
            let db = Db::open(&cfg.db_path()).unwrap();
            let hash = isync::auth::hash_password("bench");
            db.write(|tx| users::upsert(tx, "bench", &hash, isync::db::now()))
                .unwrap();
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut running = isync::app::start(cfg, listener).await.unwrap();
        running.wait_scanned().await;
        let base = format!("http://{}", running.addr);
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .no_proxy()
            .timeout(Duration::from_secs(600))
            .build()
            .unwrap();
        let r = client
            .get(format!("{base}/login.icc?userName=bench&password=bench"))
            .send()
            .await
            .unwrap();
        let token = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim_start_matches("session=").to_string())
            .expect("session cookie");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["code"], 0);
        let (mut curl, mut inproc, mut inproc_sha1) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..RUNS {
            curl.push(curl_once(&client, &base, &token, &src).await);
            inproc.push(upload_once(&client, &base, &src, false).await);
            inproc_sha1.push(upload_once(&client, &base, &src, true).await);
        }
        running.stop().await.unwrap();
        (curl, inproc, inproc_sha1)
    });

    let rows = [
        ("cat file > dest", median(cats)),
        ("cat file > dest; fsync", median(cats_sync)),
        ("uploadFile.icc, curl client", median(curl)),
        ("uploadFile.icc, in-process client", median(inproc)),
        ("uploadFile.icc cm=sha1, in-process", median(inproc_sha1)),
    ];
    println!("upload benchmark: 1 GiB original over loopback, median of {RUNS}");
    for (what, d) in rows {
        println!(
            "  {what:<36} {:7.3} s  {:6.0} MiB/s",
            d.as_secs_f64(),
            mb_s(d)
        );
    }
    let pct = |up: Duration, base: Duration| 100.0 * base.as_secs_f64() / up.as_secs_f64();
    let (cat, cat_sync) = (rows[0].1, rows[1].1);
    for (what, d) in &rows[2..] {
        println!(
            "  {what}: {:.0}% of cat, {:.0}% of cat + fsync",
            pct(*d, cat),
            pct(*d, cat_sync)
        );
    }
}
