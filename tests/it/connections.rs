//! Connections (finding 8, and issue #13's TCP_NODELAY): without a login,
//! one device used to stop the server answering with 1,100 half-open
//! connections. Now half-open and slow-header connections are closed after
//! the header-read timeout, idle ones after the keep-alive timeout, and at
//! a connection cap the longest-idle connection of the biggest holder makes
//! room — so a normal client is still answered. Requests in flight are
//! never cut. Over 127.0.0.1; other loopback addresses (127.0.0.2…) stand
//! for other devices.

use crate::common;

use common::data;
use common::process::{Launch, Running};
use common::TestApp;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The soft descriptor limit raised to the hard one: a flood test holds
/// both ends of every connection in this process.
fn raise_fd_limit(need: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        },
    );
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    assert!(
        soft >= need,
        "this test needs {need} descriptors, the limit is {soft}"
    );
}

fn device(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// A TCP connection to `to` from loopback address `from`.
async fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(from, 0)).unwrap();
    s.connect(to).await.unwrap()
}

/// Waits (polling the server's own counters) until `cond` holds.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether the server closed `s` (EOF or reset) — without waiting.
fn closed(s: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    match s.try_read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// The normal client: logs in and lists files on a fresh connection.
async fn normal_client_is_answered(s: &TestApp) {
    let api = s.login("alice").await;
    let v = api.get_json("/files.icc", json!({"pageIndex": 0})).await;
    assert!(!data(&v)["list"].as_array().unwrap().is_empty());
}

fn stats(s: &TestApp) -> &isync::http::activity::ConnStats {
    &s.running.as_ref().unwrap().conns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_device_with_1100_half_open_connections_does_not_keep_others_out() {
    raise_fd_limit(4000);
    // The defaults (64 per address, 512 in all), and a header timeout long
    // enough that only the cap can be what keeps the server answering.
    let (s, _) = TestApp::start(|c| c.http.header_read_timeout_secs = 600).await;
    assert_eq!(s.cfg.http.max_connections_per_address, 64);
    let before = stats(&s).accepted.load(Ordering::Relaxed);
    let mut flood = Vec::new();
    for _ in 0..1100 {
        flood.push(connect_from(device(2), s.addr()).await);
    }
    // And a slow-header client from the same device.
    let mut slow = connect_from(device(2), s.addr()).await;
    slow.write_all(b"GET /api/v1/info HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        .await
        .unwrap();
    until("the flood accepted", || {
        stats(&s).accepted.load(Ordering::Relaxed) >= before + 1101
    })
    .await;
    until("the device down to its cap", || {
        stats(&s).open.load(Ordering::Relaxed) <= 64
    })
    .await;
    normal_client_is_answered(&s).await;

    // The oldest of the device's own connections made room; its newest
    // 64 are open (the slow one among them).
    let st = stats(&s);
    assert_eq!(st.refused.load(Ordering::Relaxed), 0);
    assert!(st.evicted.load(Ordering::Relaxed) >= 1101 - 64);
    let gone = flood.iter().filter(|c| closed(c)).count();
    assert!(gone >= 1100 - 64, "{gone} closed");
    assert!(closed(&flood[0]));
    assert!(!closed(flood.last().unwrap()));
    assert!(!closed(&slow));
    // A device at its cap still gets its next request in.
    let mut c = connect_from(device(2), s.addr()).await;
    c.write_all(b"GET /api/v1/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let reply = String::from_utf8(read_to_close(&mut c).await).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

/// The real binary, started the way systemd starts it without
/// `LimitNOFILE=` (soft descriptor limit 1024); killed on drop.
struct Binary {
    _server: Running,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Binary {
    fn start() -> Binary {
        let dir = tempfile::Builder::new()
            .prefix("isync-conns-")
            .tempdir()
            .unwrap();
        let cfg = dir.path().join("isync.toml");
        std::fs::write(
            &cfg,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n",
                dir.path().join("data")
            ),
        )
        .unwrap();
        let server = Launch::serve(&cfg)
            .soft_nofile(1024)
            .env("ISYNC_LOG", "info")
            .start();
        Binary {
            addr: server.ready().parse().unwrap(),
            _server: server,
            _dir: dir,
        }
    }
}

/// The review's attack on the real binary with systemd's default soft
/// limit of 1024 descriptors: 1,100 connections that never send a byte
/// used to leave no descriptor to accept anyone else with, for as long as
/// they were held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_review_attack_on_the_real_binary_leaves_it_answering() {
    raise_fd_limit(2000);
    let server = Binary::start();
    let mut flood = Vec::new();
    for _ in 0..1100 {
        flood.push(connect_from(device(2), server.addr).await);
    }
    let mut c = connect_from(device(1), server.addr).await;
    c.write_all(b"GET /api/v1/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(60), read_to_close(&mut c))
        .await
        .expect("no answer while the flood is held");
    let reply = String::from_utf8(reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // Room was made by closing the device's oldest connections.
    until("the oldest closed", || closed(&flood[0])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_many_addresses_is_held_to_the_global_cap() {
    raise_fd_limit(4000);
    let (s, _) = TestApp::start(|c| {
        c.http.header_read_timeout_secs = 600;
        c.http.max_connections = 200;
        c.http.max_connections_per_address = 64;
    })
    .await;
    let before = stats(&s).accepted.load(Ordering::Relaxed);
    // 20 devices × 55 = 1,100 connections, none over its own cap.
    let mut flood = Vec::new();
    for i in 0..1100 {
        flood.push(connect_from(device(10 + (i % 20) as u8), s.addr()).await);
    }
    until("the flood accepted", || {
        stats(&s).accepted.load(Ordering::Relaxed) >= before + 1100
    })
    .await;
    until("the global cap", || {
        stats(&s).open.load(Ordering::Relaxed) <= 200
    })
    .await;
    normal_client_is_answered(&s).await;
    assert_eq!(stats(&s).refused.load(Ordering::Relaxed), 0);
    // Room was made from the biggest holders: every device keeps a share.
    let open_per_device: Vec<usize> = (0..20)
        .map(|d| {
            flood
                .iter()
                .enumerate()
                .filter(|(i, c)| i % 20 == d && !closed(c))
                .count()
        })
        .collect();
    assert!(
        open_per_device.iter().all(|n| (8..=12).contains(n)),
        "{open_per_device:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_slow_header_and_idle_connections_are_closed_requests_in_flight_are_not() {
    // 24 MiB, more than the loopback socket buffers hold.
    const BIG: usize = 24 << 20;
    let (s, _) = TestApp::start(|c| {
        c.http.header_read_timeout_secs = 1;
        c.http.keep_alive_timeout_secs = 2;
        let big: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
        common::write_file(&c.libraries[0].path.join("big.bin"), &big);
    })
    .await;
    let st = stats(&s);
    let (head0, idle0) = (
        st.header_timeouts.load(Ordering::Relaxed),
        st.idle_timeouts.load(Ordering::Relaxed),
    );
    // Half-open: connect, send nothing.
    let mut half_open = Vec::new();
    for _ in 0..50 {
        half_open.push(connect_from(device(3), s.addr()).await);
    }
    // Slow header: a byte now and then, never the end of the head.
    let mut slow = connect_from(device(4), s.addr()).await;
    slow.write_all(b"GET /api/v1/info HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        // The first byte at once (a late timer on a loaded machine cannot
        // make the header timeout come first), then one every 100 ms.
        let mut sent = 0;
        loop {
            if slow.write_all(b"a").await.is_err() || closed(&slow) {
                return (sent, read_to_close(&mut slow).await);
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // Idle after one request on a kept-alive connection.
    let mut idle = connect_from(device(5), s.addr()).await;
    idle.write_all(b"GET /api/v1/info HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");

    // A download whose client stops reading for longer than both timeouts.
    let token = s.token("alice").await;
    let alice = s.login("alice").await;
    let id = alice.file_id("big.bin").await;
    let mut dl = connect_from(device(6), s.addr()).await;
    dl.write_all(
        format!(
            "GET /downFile.icc?id={id} HTTP/1.1\r\nHost: x\r\nCookie: session={token}\r\n\
             Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut start = vec![0u8; 64 << 10];
    dl.read_exact(&mut start).await.unwrap();

    for c in &mut half_open {
        assert!(
            read_to_close(c).await.is_empty(),
            "nothing sent, just closed"
        );
    }
    let (trickled, reply) = trickle.await.unwrap();
    assert!(reply.is_empty(), "no response to an unfinished head");
    assert!(trickled >= 1);
    let rest = read_to_close(&mut idle).await;
    assert!(!rest.is_empty(), "the rest of the first response");
    until("the timeouts counted", || {
        st.header_timeouts.load(Ordering::Relaxed) >= head0 + 51
            && st.idle_timeouts.load(Ordering::Relaxed) > idle0
    })
    .await;

    // The download, paused all this time, completes.
    let mut body = start;
    body.extend(read_to_close(&mut dl).await);
    let text = String::from_utf8_lossy(&body[..200]).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let head_end = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(body.len() - head_end, BIG, "the whole file");
    assert!(body[head_end..]
        .iter()
        .enumerate()
        .all(|(i, b)| *b == (i % 251) as u8));
    // Sent from the page cache with sendfile (http/sendfile.rs).
    assert!(st.sendfile_bytes.load(Ordering::Relaxed) >= BIG as u64);
}

/// Reads one response (head and `Content-Length` body) 16 KiB at a time;
/// returns the head (lower case) and the body's length.
fn read_response(conn: &mut std::net::TcpStream) -> (String, usize) {
    use std::io::Read;
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
    (head, len)
}

/// A `w`×`h` JPEG of noise: its thumbnails stay large (no flat areas).
fn noise_jpeg(w: u32, h: u32) -> Vec<u8> {
    let mut x: u32 = 0x2545_f491;
    let img = image::RgbImage::from_fn(w, h, |_, _| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        image::Rgb([x as u8, (x >> 8) as u8, (x >> 16) as u8])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .unwrap();
    out
}

/// The server's end of the loopback connection whose client end is
/// `client`. The server runs in this process, so its socket is one of ours:
/// found among `/proc/self/fd` by its addresses and duplicated with
/// `pidfd_getfd` (a copy of the descriptor, not of the connection: closing
/// it closes nothing).
fn server_end(client: &std::net::TcpStream) -> std::net::TcpStream {
    use rustix::process::{getpid, pidfd_getfd, pidfd_open, PidfdFlags, PidfdGetfdFlags};
    let (ours, theirs) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
    let me = pidfd_open(getpid(), PidfdFlags::empty()).expect("pidfd_open (Linux 5.3+)");
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Some(n) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        let Ok(fd) = pidfd_getfd(&me, n, PidfdGetfdFlags::empty()) else {
            continue;
        };
        let s = std::net::TcpStream::from(fd);
        if s.local_addr().ok() == Some(theirs) && s.peer_addr().ok() == Some(ours) {
            return s;
        }
    }
    panic!("no socket of this process is the server's end of {ours} -> {theirs}");
}

/// Issue #13: with Nagle's algorithm on, the last partial segment of each
/// response larger than a segment (64 KiB on loopback, 1.4 KiB on a LAN)
/// waited for the client's delayed ACK of the one before (~40 ms on
/// Linux): a client making requests one after another on one kept-alive
/// connection saw ~44 ms where the server spent 2–5. The server's end of
/// every connection has TCP_NODELAY, checked on the socket itself (how
/// much the client gains, against Nagle in the same run, is printed by
/// `cargo bench --bench edge -- latency`); and responses of several segments follow
/// one another on the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_turns_nagle_off_on_every_connection() {
    let (s, api) = TestApp::start(|c| {
        let lib = &c.libraries[0].path;
        common::write_file(&lib.join("noise.jpg"), &noise_jpeg(1600, 400));
        common::write_file(&lib.join("data.bin"), &vec![7u8; 100_000]);
    })
    .await;
    let (photo, data) = (
        api.file_id("noise.jpg").await,
        api.file_id("data.bin").await,
    );
    let token = s.token("alice").await;
    let sock = TcpSocket::new_v4().unwrap();
    let conn = sock.connect(s.addr()).await.unwrap().into_std().unwrap();
    conn.set_nonblocking(false).unwrap();
    // A connection the client just opened: the server may not have
    // accepted it yet; one request makes sure it has.
    let conn = tokio::task::spawn_blocking(move || {
        let mut conn = conn;
        for (path, query) in [
            ("/thumbnail.icc", format!("id={photo}&level=1")),
            ("/downFile.icc", format!("id={data}")),
        ] {
            for _ in 0..3 {
                std::io::Write::write_all(
                    &mut conn,
                    format!(
                        "GET {path}?{query} HTTP/1.1\r\nHost: x\r\nCookie: session={token}\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .unwrap();
                let (head, body) = read_response(&mut conn);
                assert!(head.starts_with("http/1.1 200"), "{path}: {head}");
                // More than one loopback segment, with a partial one last.
                assert!(body > 66_000 && body % 65_483 != 0, "{body}");
            }
        }
        conn
    })
    .await
    .unwrap();
    let server = server_end(&conn);
    assert!(
        server.nodelay().unwrap(),
        "the server's end of the connection has Nagle's algorithm on"
    );
    // The client's end was left as it was: the check is of the server's.
    assert!(!conn.nodelay().unwrap());
}

/// A refused upload whose client is still sending: the server answers at
/// once (here −10001, no login) and ends the connection, but keeps reading
/// and dropping what the client sends until it closes (lingering close), so
/// the client can send its whole body and then read the answer. Closing at
/// once would make the kernel reset the connection, and the reset destroys
/// the answer before the client reads it: a phone would see "connection
/// reset", not the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_still_sending_a_refused_body_reads_the_answer() {
    let (s, _) = TestApp::start(|_| {}).await;
    const BODY: usize = 24 << 20;
    let addr = s.addr();
    let (sent, answer) = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        write!(
            c,
            "POST /uploadFile.icc?id=1 HTTP/1.1\r\nHost: {addr}\r\n\
             Content-Type: multipart/form-data; boundary=x\r\n\
             Content-Length: {BODY}\r\n\r\n"
        )
        .unwrap();
        let chunk = vec![b'x'; 64 << 10];
        let mut sent = 0;
        while sent < BODY {
            match c.write(&chunk[..chunk.len().min(BODY - sent)]) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        let mut answer = Vec::new();
        let _ = c.read_to_end(&mut answer);
        (sent, String::from_utf8_lossy(&answer).into_owned())
    })
    .await
    .unwrap();
    assert_eq!(sent, BODY, "the body could not be sent whole");
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("-10001"),
        "the answer was lost: {answer:?}"
    );
    assert!(stats(&s).lingered.load(Ordering::Relaxed) >= 1);
}
