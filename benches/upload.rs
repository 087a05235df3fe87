//! Upload benchmark (issue 3): throughput of `uploadFile.icc` over loopback
//! for a 1 GiB original, against `cat file > dest` on the same disk measured
//! in the same run. Two more baselines do the upload's durable disk work
//! without the network, since the server fsyncs before it acknowledges:
//! `cat` followed by an fsync, and `dd oflag=direct conv=fsync` (direct
//! I/O, as the server writes). Each figure is the median of `RUNS`; the
//! source file is in the page cache for every run. Prints all of them, the
//! ratios, and whether the "80% of `cat`" target is within the disk's reach.
//! Note that coreutils `cat` copies with `copy_file_range` (one copy, in the
//! kernel), while an upload crosses user space: the client's read and send,
//! the server's receive and its copy into aligned blocks (written with
//! direct I/O), plus loopback TCP.
//!
//! CPU per GB uploaded (issue 13: what a Pi pays): the server's user +
//! system (the server runs in this process and is the only thing in it
//! working while curl uploads) against a bare socket sink receiving the same
//! curl upload (read, write, fsync: the least a server storing it durably
//! does) and the CPU of `cat` and `dd` writing the same GiB; medians.
//!
//! First, memory: a 4 GiB upload to the release binary as a separate
//! process, its RSS printed every 256 MiB (skipped below 10 GB free;
//! `-- --no-memory` skips it too).
//! Run: `cargo bench --bench upload` (needs ~2 GiB free in the temp dir, 10
//! for the memory part; `ISYNC_BENCH_DIR` picks another disk).

mod common;

use common::{median, rss_kib, thread_cpu_secs, SelfCpu};
use isync::config::{Config, LibraryConfig};
use isync::db::{users, Db};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SIZE: u64 = 1 << 30;
const RUNS: usize = 3;
const BOUNDARY: &str = "isyncBenchBoundary0123456789";

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

/// CPU seconds per GB (10^9 bytes) of a 1 GiB transfer.
fn per_gb(cpu: f64) -> f64 {
    cpu / (SIZE as f64 / 1e9)
}

/// `cat src > dest`, optionally followed by an fsync of dest; wall time
/// and CPU seconds (cat's and the fsync's).
fn cat_once(src: &Path, dest: &Path, sync: bool) -> (Duration, f64) {
    let (t, c0) = (Instant::now(), SelfCpu::now());
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
    let (d, cpu) = (t.elapsed(), SelfCpu::since(c0).total());
    std::fs::remove_file(dest).unwrap();
    (d, cpu)
}

/// `dd if=src of=dest bs=4M oflag=direct conv=fsync`: the durable write
/// the server does, without the network; wall time and dd's CPU seconds.
fn dd_once(src: &Path, dest: &Path) -> (Duration, f64) {
    let (t, c0) = (Instant::now(), SelfCpu::now());
    let st = std::process::Command::new("dd")
        .arg(format!("if={}", src.display()))
        .arg(format!("of={}", dest.display()))
        .args(["bs=4M", "oflag=direct", "conv=fsync", "status=none"])
        .status()
        .expect("dd");
    assert!(st.success());
    let (d, cpu) = (t.elapsed(), SelfCpu::since(c0).total());
    std::fs::remove_file(dest).unwrap();
    (d, cpu)
}

/// `curl -F file=@src url`, as [`curl_once`] sends it; its stdout.
fn curl_post(src: &Path, url: &str, cookie: &str) -> Vec<u8> {
    let form = format!("file=@{};filename=origin", src.display());
    let out = std::process::Command::new("curl")
        .args(["-sS", "-H", "Expect:", "-b", cookie, "-F", &form, url])
        .output()
        .expect("curl (apt-get install curl)");
    assert!(out.status.success(), "curl failed");
    out.stdout
}

/// Baseline for the server's CPU: the same curl upload into a bare socket
/// sink, one thread that reads the request, writes the body as it arrives
/// to `dest` (1 MiB reads), fsyncs and answers 200 — the least a server
/// storing an upload durably does, without HTTP and multipart parsing,
/// hashing or direct I/O. Returns the wall time, the sink thread's CPU
/// seconds and curl's.
fn sink_once(src: &Path, dest: &Path) -> (Duration, f64, f64) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/upload", listener.local_addr().unwrap());
    let dest2 = dest.to_owned();
    let sink = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let c0 = thread_cpu_secs();
        let mut out = std::fs::File::create(&dest2).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut head = Vec::new();
        let body_at = loop {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "curl closed the connection");
            head.extend_from_slice(&buf[..n]);
            if let Some(p) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
        };
        let len: u64 = String::from_utf8_lossy(&head[..body_at])
            .to_ascii_lowercase()
            .lines()
            .find_map(|l| l.strip_prefix("content-length: ").map(|v| v.trim().parse()))
            .expect("content-length")
            .unwrap();
        out.write_all(&head[body_at..]).unwrap();
        let mut got = (head.len() - body_at) as u64;
        while got < len {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "curl closed the connection");
            out.write_all(&buf[..n]).unwrap();
            got += n as u64;
        }
        out.sync_all().unwrap();
        c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            .unwrap();
        (got, thread_cpu_secs() - c0)
    });
    let (t, c0) = (Instant::now(), SelfCpu::now());
    let reply = curl_post(src, &url, "x=y");
    let (d, curl_cpu) = (t.elapsed(), SelfCpu::since(c0).children);
    let (got, sink_cpu) = sink.join().expect("sink thread");
    assert_eq!(reply, b"ok");
    assert!(got > SIZE, "the whole multipart body arrived: {got}");
    std::fs::remove_file(dest).unwrap();
    (d, sink_cpu, curl_cpu)
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

/// Frees the space for the next run (deleting moves the original to the
/// library's trash, so the trash is emptied too).
async fn delete(client: &reqwest::Client, base: &str, id: i64, lib: &Path) {
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
    let _ = std::fs::remove_dir_all(lib.join(".isync/trash"));
}

/// The upload by `curl` (a separate, efficient client process, as a phone
/// on the LAN would stream it). Returns the wall time, the CPU seconds of
/// this process (the server: the bench's own client waits meanwhile) and
/// curl's.
async fn curl_once(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    src: &Path,
    lib: &Path,
) -> (Duration, f64, f64) {
    let id = announce(client, base).await;
    let url = format!("{base}/uploadFile.icc?id={id}");
    let cookie = format!("session={token}");
    let src2 = src.to_owned();
    let (t, c0) = (Instant::now(), SelfCpu::now());
    let out = tokio::task::spawn_blocking(move || curl_post(&src2, &url, &cookie))
        .await
        .unwrap();
    let (d, cpu) = (t.elapsed(), SelfCpu::since(c0));
    let r: serde_json::Value = serde_json::from_slice(&out).expect("curl reply");
    assert_eq!(r["code"], 0, "{r}");
    assert_eq!(r["data"]["fileInfo"]["size"], SIZE);
    delete(client, base, id, lib).await;
    (d, cpu.own, cpu.children)
}

/// The upload by reqwest in this process (it shares the CPU with the
/// server), optionally with `cm=sha1`.
async fn upload_once(
    client: &reqwest::Client,
    base: &str,
    src: &Path,
    lib: &Path,
    cm: bool,
) -> Duration {
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
    delete(client, base, id, lib).await;
    d
}

use futures_util::StreamExt;

/// The release binary serving `dir` (an empty library of user `bench`);
/// returns the child and its base URL.
fn spawn_server(dir: &Path) -> (std::process::Child, String) {
    use std::io::BufRead;
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let cfg = common::write_config(dir, "127.0.0.1:0", "", &lib);
    common::add_bench_user(&cfg);
    let mut child = common::serve_command(&cfg, "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "isync serve exited");
        if let Some(a) = line.split("listening on ").nth(1) {
            break a.trim().to_string();
        }
    };
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    (child, format!("http://{addr}"))
}

/// Issue 3: a 4 GiB upload to the release binary (a separate process)
/// keeps its memory flat. The body is generated as it is sent (one 1 MiB
/// block repeated); the server's `VmRSS` is read every 256 MiB sent.
/// Skipped when the disk has less than 10 GB free.
async fn memory_4g(base_dir: &Path) {
    const BIG: u64 = 4 << 30;
    const STEP: u64 = 256 << 20;
    let free = {
        let out = std::process::Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(base_dir)
            .output()
            .expect("df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    if free < 10_000_000_000 {
        println!(
            "memory: skipped, {:.1} GB free in {} (needs 10 GB)",
            free as f64 / 1e9,
            base_dir.display()
        );
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("isync-upload-rss-")
        .tempdir_in(base_dir)
        .unwrap();
    let (mut child, base) = spawn_server(dir.path());
    let pid = child.id();
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .no_proxy()
        .timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    let v: serde_json::Value = client
        .get(format!(
            "{base}/login.icc?userName=bench&password={}",
            common::BENCH_PASSWORD
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["code"], 0, "{v}");
    let v: serde_json::Value = client
        .get(format!("{base}/catalogs.icc?pids=-1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cid = v["data"][0]["id"].as_i64().expect("root catalog");
    let v: serde_json::Value = client
        .post(format!("{base}/uploadFileInfo.icc"))
        .form(&[
            ("cid", cid.to_string()),
            ("name", "big.bin".into()),
            ("size", BIG.to_string()),
            ("type", "16".into()),
            ("ext", "bin".into()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = v["data"]["id"].as_i64().expect("announced");
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"origin\"\r\n\r\n"
    );
    let tail = format!("\r\n--{BOUNDARY}--\r\n");
    let len = head.len() as u64 + BIG + tail.len() as u64;
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for b in block.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let block = bytes::Bytes::from(block);
    let curve = std::sync::Arc::new(std::sync::Mutex::new(vec![(0u64, rss_kib(pid) * 1024)]));
    let c2 = curve.clone();
    let blocks = (0..(BIG >> 20)).map(move |i| {
        let sent = i << 20;
        if sent > 0 && sent % STEP == 0 {
            c2.lock().unwrap().push((sent, rss_kib(pid) * 1024));
        }
        block.clone()
    });
    let body = futures_util::stream::iter(
        std::iter::once(bytes::Bytes::from(head))
            .chain(blocks)
            .chain(std::iter::once(bytes::Bytes::from(tail)))
            .map(Ok::<_, std::io::Error>),
    );
    let t = Instant::now();
    let r: serde_json::Value = client
        .post(format!("{base}/uploadFile.icc?id={id}"))
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
    let took = t.elapsed();
    assert_eq!(r["code"], 0, "{r}");
    assert_eq!(r["data"]["fileInfo"]["size"], BIG);
    let after = rss_kib(pid) * 1024;
    let _ = child.kill();
    let _ = child.wait();
    let curve = curve.lock().unwrap().clone();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "memory: 4 GiB upload to the release binary in {:.1} s ({:.0} MiB/s); server RSS \
         (MiB) every 256 MiB sent:",
        took.as_secs_f64(),
        mib(BIG) / took.as_secs_f64()
    );
    let line: Vec<String> = curve
        .iter()
        .map(|(at, rss)| format!("{:.0}:{:.1}", mib(*at), mib(*rss)))
        .collect();
    println!("  {}", line.join("  "));
    let peak = curve.iter().map(|(_, r)| *r).max().unwrap_or(0);
    println!(
        "  before {:.1} MiB, peak {:.1} MiB, after the reply {:.1} MiB",
        mib(curve[0].1),
        mib(peak),
        mib(after)
    );
}

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
    // Memory first, while the disk holds nothing of this run.
    if !std::env::args().any(|a| a == "--no-memory") {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(memory_4g(dir.path()));
    }
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let src = dir.path().join("source.bin");
    make_source(&src);

    // Interleaved, so a slow spell of the shared disk hits all three.
    let (mut cats, mut cats_sync, mut dds) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        cats.push(cat_once(&src, &lib.join("copy"), false));
        cats_sync.push(cat_once(&src, &lib.join("copy"), true));
        dds.push(dd_once(&src, &lib.join("copy")));
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (curl, sinks, inproc, inproc_sha1) = rt.block_on(async {
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
        let (mut curl, mut sinks) = (Vec::new(), Vec::new());
        let (mut inproc, mut inproc_sha1) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            curl.push(curl_once(&client, &base, &token, &src, &lib).await);
            let (src2, dest) = (src.clone(), lib.join("sink"));
            sinks.push(
                tokio::task::spawn_blocking(move || sink_once(&src2, &dest))
                    .await
                    .unwrap(),
            );
            inproc.push(upload_once(&client, &base, &src, &lib, false).await);
            inproc_sha1.push(upload_once(&client, &base, &src, &lib, true).await);
        }
        running.stop().await.unwrap();
        (curl, sinks, inproc, inproc_sha1)
    });
    let walls = |v: &[(Duration, f64)]| median(&v.iter().map(|r| r.0).collect::<Vec<_>>());
    let cpus = |v: &[(Duration, f64)]| median(&v.iter().map(|r| r.1).collect::<Vec<_>>());
    let col = |v: &[(Duration, f64, f64)], i: usize| {
        median(&v.iter().map(|r| [r.1, r.2][i]).collect::<Vec<_>>())
    };
    let (cats_cpu, cats_sync_cpu, dds_cpu) = (cpus(&cats), cpus(&cats_sync), cpus(&dds));
    let (cats, cats_sync, dds) = (walls(&cats), walls(&cats_sync), walls(&dds));
    let (server_cpu, curl_cpu) = (col(&curl, 0), col(&curl, 1));
    let (sink_cpu, sink_curl_cpu) = (col(&sinks, 0), col(&sinks, 1));
    let sink_wall = median(&sinks.iter().map(|r| r.0).collect::<Vec<_>>());
    let curl = curl.iter().map(|r| r.0).collect::<Vec<_>>();

    let rows = [
        ("cat file > dest", cats),
        ("cat file > dest; fsync", cats_sync),
        ("dd oflag=direct conv=fsync", dds),
        ("bare socket sink + fsync, curl client", sink_wall),
        ("uploadFile.icc, curl client", median(&curl)),
        ("uploadFile.icc, in-process client", median(&inproc)),
        ("uploadFile.icc cm=sha1, in-process", median(&inproc_sha1)),
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
    let (cat, cat_sync, dd) = (rows[0].1, rows[1].1, rows[2].1);
    for (what, d) in &rows[4..] {
        println!(
            "  {what}: {:.0}% of cat, {:.0}% of cat + fsync, {:.0}% of dd direct + fsync",
            pct(*d, cat),
            pct(*d, cat_sync),
            pct(*d, dd)
        );
    }
    // 80% of cat's throughput is cat's time / 0.8. The durable write alone
    // (the faster of the two no-network baselines) is a floor for an
    // upload that fsyncs before it replies.
    let target = cat.as_secs_f64() / 0.8;
    let floor = cat_sync.min(dd).as_secs_f64();
    println!(
        "  target, 80% of cat: {target:.3} s; the durable write alone takes {floor:.3} s: {}",
        if floor > target {
            "out of reach for any upload that fsyncs before it replies"
        } else {
            "within reach"
        }
    );
    println!(
        "CPU-s per GB uploaded (user + system, GB = 10^9 bytes, median of {RUNS}; the \
         client's beside it):"
    );
    let ratio = per_gb(server_cpu) / per_gb(sink_cpu).max(1e-9);
    for (what, cpu, client) in [
        ("uploadFile.icc, server", server_cpu, Some(curl_cpu)),
        ("bare socket sink + fsync", sink_cpu, Some(sink_curl_cpu)),
        ("cat file > dest", cats_cpu, None),
        ("cat file > dest; fsync", cats_sync_cpu, None),
        ("dd oflag=direct conv=fsync", dds_cpu, None),
    ] {
        let client = client.map_or(String::new(), |c| format!("  (curl {:.3})", per_gb(c)));
        println!("  {what:<36} {:7.3} CPU-s/GB{client}", per_gb(cpu));
    }
    println!("  server / bare sink: {ratio:.2}x");
}
