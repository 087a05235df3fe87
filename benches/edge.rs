//! Connection edge benchmark (issue 13): what TCP_NODELAY saves a client
//! that downloads one file after another on one kept-alive connection.
//! With Nagle's algorithm on, the last partial segment of a response
//! larger than a segment waits for the client's delayed ACK of the one
//! before (~40 ms on Linux). The same server is started twice in this run
//! — as shipped (TCP_NODELAY) and with Nagle's algorithm left on
//! (`ISYNC_BENCH_NAGLE`, the baseline) — and the same client makes the
//! same 200 downloads of a 100 kB file against each. Prints, per mode, the
//! client's and the server's (`Server-Timing`) median, the stalls (a
//! request the client saw take 30 ms more than the server spent on it) and
//! the ratio of the client medians.
//! Run: `cargo bench --bench edge`.

use isync::config::{Config, LibraryConfig};
use isync::db::{users, Db};
use std::io::{Read, Write};
use std::time::Instant;

const REQUESTS: usize = 200;
const FILE_BYTES: usize = 100_000;

/// Reads one response (head and `Content-Length` body) 16 KiB at a time,
/// the way curl reads; returns the head (lower case).
fn read_response(conn: &mut std::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 << 10];
    let head_end = loop {
        let n = conn.read(&mut chunk).unwrap();
        assert!(n > 0, "closed");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut got = buf.len() - head_end;
    while got < len {
        let n = conn.read(&mut chunk[..(len - got).min(16 << 10)]).unwrap();
        assert!(n > 0, "closed");
        got += n;
    }
    head
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Client and server times (ms) of [`REQUESTS`] sequential downloads on
/// one connection to a server started over `cfg`.
async fn run(cfg: Config) -> (Vec<f64>, Vec<f64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut running = isync::app::start(cfg, listener).await.unwrap();
    running.wait_scanned().await;
    let base = format!("http://{}", running.addr);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let login = client
        .get(format!(
            "{base}/login.icc?userName=bench&password=benchbench"
        ))
        .send()
        .await
        .unwrap();
    let token = login
        .cookies()
        .find(|c| c.name() == "session")
        .expect("session cookie")
        .value()
        .to_string();
    let files: serde_json::Value = client
        .get(format!("{base}/files.icc?pageIndex=0&maxPerPage=10"))
        .header("cookie", format!("session={token}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = files["data"]["list"][0]["id"].as_i64().expect("the file");
    // A receive window that starts large (as one grown by autotuning):
    // reading then never opens it enough to force an ACK, so the ACK of a
    // lone full segment is always the delayed one.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4 << 20).unwrap();
    let conn = sock
        .connect(running.addr)
        .await
        .unwrap()
        .into_std()
        .unwrap();
    conn.set_nonblocking(false).unwrap();
    let times = tokio::task::spawn_blocking(move || {
        let mut conn = conn;
        let (mut client, mut server) = (Vec::new(), Vec::new());
        for _ in 0..REQUESTS {
            let t = Instant::now();
            conn.write_all(
                format!(
                    "GET /downFile.icc?id={id} HTTP/1.1\r\nHost: x\r\nCookie: session={token}\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap();
            let head = read_response(&mut conn);
            assert!(head.starts_with("http/1.1 200"), "{head}");
            client.push(t.elapsed().as_secs_f64() * 1e3);
            let dur = head
                .lines()
                .find_map(|l| l.strip_prefix("server-timing: app;dur="))
                .unwrap();
            server.push(dur.trim().parse::<f64>().unwrap());
        }
        (client, server)
    })
    .await
    .unwrap();
    running.stop().await.unwrap();
    times
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: nothing to do.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(lib.join("data.bin"), vec![7u8; FILE_BYTES]).unwrap();
    let mut cfg = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().join("data"),
        libraries: vec![LibraryConfig {
            path: lib,
            users: vec!["bench".into()],
            merge: true,
        }],
        ..Config::default()
    };
    cfg.scan.prerender_threads = 0;
    {
        let db = Db::open(&cfg.db_path()).unwrap();
        let hash = isync::auth::hash_password("benchbench");
        db.write(|tx| users::upsert(tx, "bench", &hash, 0)).unwrap();
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut medians = Vec::new();
    println!("edge bench: {REQUESTS} sequential downloads of {FILE_BYTES} bytes on one connection");
    for (mode, nagle) in [("TCP_NODELAY (shipped)", false), ("Nagle (baseline)", true)] {
        // Read by the server when it starts (`http::serve::Limits`).
        if nagle {
            std::env::set_var("ISYNC_BENCH_NAGLE", "1");
        } else {
            std::env::remove_var("ISYNC_BENCH_NAGLE");
        }
        let (client, server) = rt.block_on(run(cfg.clone()));
        let stalls = client
            .iter()
            .zip(&server)
            .filter(|(c, s)| **c - **s > 30.0)
            .count();
        let (c, s) = (median(client), median(server));
        println!(
            "{mode:<24} client median {c:7.2} ms, server median {s:6.2} ms, stalls {stalls}/{REQUESTS}"
        );
        medians.push(c);
    }
    std::env::remove_var("ISYNC_BENCH_NAGLE");
    println!(
        "client median, Nagle / TCP_NODELAY: {:.1}x",
        medians[1] / medians[0]
    );
}
