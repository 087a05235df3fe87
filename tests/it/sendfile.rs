//! File bodies sent with `sendfile` (issue #13, `src/http/sendfile.rs`),
//! over 127.0.0.1 against the real accept loop: large files whole and
//! ranged are byte-exact, a file cut short while it is being sent ends the
//! connection instead of sending other bytes, and file bodies, JSON, HEAD
//! and 304 replies pipelined on one kept-alive connection come back in
//! order, each exact.

use crate::common;

use common::TestApp;
use std::io::{Read, Write};
use std::sync::atomic::Ordering;

/// `n` pseudo-random bytes (xorshift): a slice from the wrong offset, or
/// zeros, never matches.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

fn sendfile_bytes(s: &TestApp) -> u64 {
    s.running
        .as_ref()
        .unwrap()
        .conns
        .sendfile_bytes
        .load(Ordering::Relaxed)
}

/// Waits for the server's sendfile count to reach `before + want` and
/// checks it goes no further: a client has the bytes as soon as the kernel
/// sent them, a moment before the connection's task counts them.
async fn sent_through_sendfile(s: &TestApp, before: u64, want: u64) {
    let start = std::time::Instant::now();
    while sendfile_bytes(s) - before < want {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "{} of {want} bytes counted as sendfile'd",
            sendfile_bytes(s) - before
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(sendfile_bytes(s) - before, want);
}

/// A blocking connection to the server (the client reads like curl).
fn connect(s: &TestApp) -> std::net::TcpStream {
    std::net::TcpStream::connect(s.addr()).unwrap()
}

fn request(method: &str, path: &str, token: &str, extra: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: x\r\nCookie: session={token}\r\n{extra}\r\n")
}

/// Reads one response: (status line and headers in lower case, body). A
/// body is read for `Content-Length` unless `head_only` (HEAD, 304).
fn read_response(c: &mut std::net::TcpStream, head_only: bool) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte up to the end of the head: pipelined responses follow.
    while !buf.ends_with(b"\r\n\r\n") {
        let n = c.read(&mut byte).unwrap();
        assert!(
            n > 0,
            "closed inside a head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap().to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; if head_only { 0 } else { len }];
    c.read_exact(&mut body).unwrap();
    (head, body)
}

/// Larger than a marker frame (2 MiB) several times over, and not a
/// multiple of it nor of a page.
const BIG: usize = (9 << 20) + 12_345;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_whole_and_ranged_is_byte_exact_through_sendfile() {
    let data = noise(BIG, 7);
    let d = data.clone();
    let (s, api) = TestApp::start(move |c| {
        common::write_file(&c.libraries[0].path.join("big.bin"), &d);
    })
    .await;
    let id = api.file_id("big.bin").await;
    let before = sendfile_bytes(&s);
    let two = 2usize << 20;
    let cases: Vec<(Option<String>, std::ops::Range<usize>)> = vec![
        (None, 0..BIG),
        (Some("bytes=0-".into()), 0..BIG),
        // Starts and ends inside pages and across marker frames.
        (
            Some(format!("bytes=1000-{}", 3 * two + 4095)),
            1000..3 * two + 4096,
        ),
        (Some(format!("bytes={}-", two - 1)), two - 1..BIG),
        (Some("bytes=-777".into()), BIG - 777..BIG),
        (Some(format!("bytes={}-{}", two, two)), two..two + 1),
    ];
    let mut expect_sent = 0;
    for (range, want) in &cases {
        let r = match range {
            Some(r) => api.download(id, &[("Range", r)]).await,
            None => api.download(id, &[]).await,
        };
        let status = r.status().as_u16();
        assert_eq!(status, if range.is_some() { 206 } else { 200 }, "{range:?}");
        assert_eq!(
            common::header(&r, "content-length"),
            want.len().to_string(),
            "{range:?}"
        );
        let body = r.bytes().await.unwrap();
        assert!(
            body.as_ref() == &data[want.clone()],
            "{range:?}: bytes differ"
        );
        expect_sent += want.len() as u64;
    }
    // Every one of those bytes went out through sendfile, not the
    // streamed body (ISYNC_BENCH_STREAMED=1 makes this fail).
    sent_through_sendfile(&s, before, expect_sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_cut_short_while_being_sent_ends_the_connection_with_only_its_bytes() {
    const LEN: usize = 64 << 20;
    let data = noise(LEN, 11);
    let d = data.clone();
    let (s, api) = TestApp::start(move |c| {
        common::write_file(&c.libraries[0].path.join("long.bin"), &d);
    })
    .await;
    let id = api.file_id("long.bin").await;
    let token = s.token("alice").await;
    let path = s.lib().join("long.bin");
    let before = sendfile_bytes(&s);
    // A small fixed receive buffer (no autotuning to 32 MiB): the server
    // stops on a full socket long before the end of the file.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(256 << 10).unwrap();
    let conn = sock.connect(s.addr()).await.unwrap().into_std().unwrap();
    conn.set_nonblocking(false).unwrap();
    let (got, head) = tokio::task::spawn_blocking(move || {
        let mut c = conn;
        c.write_all(request("GET", &format!("/downFile.icc?id={id}"), &token, "").as_bytes())
            .unwrap();
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 << 10];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = c.read(&mut chunk).unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&chunk[..n]);
        }
        while buf.len() < 1 << 20 {
            let n = c.read(&mut chunk).unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&chunk[..n]);
        }
        // Cut the file to 4 MiB while the server waits for room.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(4 << 20)
            .unwrap();
        // Read until the server ends the connection.
        loop {
            match c.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        (buf.split_off(end), head)
    })
    .await
    .unwrap();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains(&format!("content-length: {LEN}")), "{head}");
    // Short of the promised length (the client sees a broken transfer),
    // and every byte it did get is the file's own at its offset.
    assert!(got.len() >= 1 << 20 && got.len() < LEN, "{}", got.len());
    assert!(
        got == data[..got.len()],
        "bytes other than the file's were sent"
    );
    assert!(sendfile_bytes(&s) > before, "sent through sendfile");
    // The server goes on answering.
    let v = api
        .get_json("/files.icc", serde_json::json!({"pageIndex": 0}))
        .await;
    assert_eq!(v["code"], 0, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_bodies_and_json_pipelined_on_one_connection_stay_in_order() {
    let big = noise((3 << 20) + 99, 3);
    let small = noise(1000, 5);
    let (b, sm) = (big.clone(), small.clone());
    let (s, api) = TestApp::start(move |c| {
        common::write_file(&c.libraries[0].path.join("big.bin"), &b);
        common::write_file(&c.libraries[0].path.join("small.bin"), &sm);
    })
    .await;
    let (big_id, small_id) = (api.file_id("big.bin").await, api.file_id("small.bin").await);
    let token = s.token("alice").await;
    let before_etag = sendfile_bytes(&s);
    let etag = {
        let r = api.download(small_id, &[]).await;
        let etag = common::header(&r, "etag");
        assert_eq!(r.bytes().await.unwrap().as_ref(), small.as_slice());
        etag
    };
    assert!(!etag.is_empty());
    // That download counted, before the count the test compares.
    sent_through_sendfile(&s, before_etag, small.len() as u64).await;
    let before = sendfile_bytes(&s);

    enum Want {
        Bytes(u16, Vec<u8>),
        Json,
        Head(usize),
        NotModified,
    }
    let mut reqs = String::new();
    let mut wants = Vec::new();
    for i in 0..12 {
        let (a, b) = (i * 1000, i * 1000 + 300_000 + i * 77);
        let plan = [
            (
                request("GET", &format!("/downFile.icc?id={big_id}"), &token, ""),
                Want::Bytes(200, big.clone()),
            ),
            (
                request("GET", "/files.icc?pageIndex=0", &token, ""),
                Want::Json,
            ),
            (
                request(
                    "GET",
                    &format!("/downFile.icc?id={big_id}"),
                    &token,
                    &format!("Range: bytes={a}-{b}\r\n"),
                ),
                Want::Bytes(206, big[a..=b].to_vec()),
            ),
            (
                request("GET", &format!("/downFile.icc?id={small_id}"), &token, ""),
                Want::Bytes(200, small.clone()),
            ),
            (
                request("HEAD", &format!("/downFile.icc?id={big_id}"), &token, ""),
                Want::Head(big.len()),
            ),
            (
                request(
                    "GET",
                    &format!("/downFile.icc?id={small_id}"),
                    &token,
                    &format!("If-None-Match: {etag}\r\n"),
                ),
                Want::NotModified,
            ),
        ];
        for (r, w) in plan {
            reqs.push_str(&r);
            wants.push(w);
        }
    }
    reqs.push_str(&request(
        "GET",
        &format!("/downFile.icc?id={small_id}"),
        &token,
        "Connection: close\r\n",
    ));
    wants.push(Want::Bytes(200, small.clone()));
    let mut expect_sent = 0u64;
    for w in &wants {
        if let Want::Bytes(_, b) = w {
            expect_sent += b.len() as u64;
        }
    }
    let n = wants.len();
    let mut c = connect(&s);
    let checked = tokio::task::spawn_blocking(move || {
        // Every request at once (pipelined), then the replies in order.
        c.write_all(reqs.as_bytes()).unwrap();
        for (i, w) in wants.into_iter().enumerate() {
            let head_only = matches!(w, Want::Head(_) | Want::NotModified);
            let (head, body) = read_response(&mut c, head_only);
            match w {
                Want::Bytes(status, bytes) => {
                    assert!(
                        head.starts_with(&format!("http/1.1 {status}")),
                        "{i}: {head}"
                    );
                    assert!(body == bytes, "{i}: body differs");
                }
                Want::Json => {
                    assert!(head.starts_with("http/1.1 200"), "{i}: {head}");
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(v["code"], 0, "{i}: {v}");
                }
                Want::Head(len) => {
                    assert!(head.starts_with("http/1.1 200"), "{i}: {head}");
                    assert!(
                        head.contains(&format!("content-length: {len}")),
                        "{i}: {head}"
                    );
                }
                Want::NotModified => {
                    assert!(head.starts_with("http/1.1 304"), "{i}: {head}");
                }
            }
        }
        // Nothing more: after the last reply (Connection: close) the
        // server ends the connection, no stray bytes before the end.
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{} bytes after the last reply", rest.len());
        n
    })
    .await
    .unwrap();
    assert_eq!(checked, 73);
    sent_through_sendfile(&s, before, expect_sent).await;
}
