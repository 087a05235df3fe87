//! Helpers the benches share: order statistics (median, percentiles), what
//! /proc says of a process (RSS, CPU ticks), starting the release binary as
//! a separate process, and a blocking HTTP/1.1 GET reader.
//!
//! Each bench is its own crate and includes this file with `mod common;`;
//! it may import `std`, `isync` and the dev-dependencies, nothing of any
//! bench. A bench uses a part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

#[path = "../../tests/it/common/fixtures.rs"]
pub mod fixtures;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

// ------------------------------------------------------------- statistics

/// The value at fraction `p` (0..=1) of `v` in order: index
/// `round((len - 1) * p)` of a sorted copy.
pub fn pct<T: PartialOrd + Copy>(v: &[T], p: f64) -> T {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// The upper median: index `len / 2` of a sorted copy of `v`.
pub fn median<T: PartialOrd + Copy>(v: &[T]) -> T {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

// --------------------------------------------------------------- fixtures

/// `jpeg` with an APP1 Exif segment (orientation, IFD1 thumbnail) where
/// cameras put it: the demo library's EXIF builder, shared with the tests.
pub fn with_exif(jpeg: &[u8], orientation: Option<u16>, thumb: Option<&[u8]>) -> Vec<u8> {
    fixtures::with_app1(
        jpeg,
        &isync::media::exifwrite::exif_app1_with(orientation, thumb),
    )
}

// ------------------------------------------------------------------ /proc

/// USER_HZ: clock ticks per second of /proc's CPU times; 100 on every
/// Linux the project targets.
pub const TICKS_PER_SEC: u64 = 100;

/// `VmRSS` of process `pid` in KiB; 0 when it cannot be read.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system, clock ticks) process `pid` used so far; 0 when
/// it cannot be read.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields 14 and 15, counted after the parenthesised name (field 2).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum()
}

/// CPU seconds (user + system) of this process — every thread, the exited
/// ones too — and of its children it has waited for (ffmpeg, `cat`, `dd`,
/// curl), from /proc/self/stat. Tick resolution (10 ms): take deltas over
/// work of a few hundred ms at least.
#[derive(Clone, Copy, Debug)]
pub struct SelfCpu {
    pub own: f64,
    pub children: f64,
}

impl SelfCpu {
    pub fn now() -> SelfCpu {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // utime, stime, cutime, cstime: fields 14 to 17, counted after the
        // parenthesised name (field 2).
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let f: Vec<u64> = after
            .split_whitespace()
            .skip(11)
            .take(4)
            .map(|v| v.parse().unwrap())
            .collect();
        let secs = |t: u64| t as f64 / TICKS_PER_SEC as f64;
        SelfCpu {
            own: secs(f[0] + f[1]),
            children: secs(f[2] + f[3]),
        }
    }

    /// Own plus children's.
    pub fn total(&self) -> f64 {
        self.own + self.children
    }

    /// What was used since `before`.
    pub fn since(before: SelfCpu) -> SelfCpu {
        let now = SelfCpu::now();
        SelfCpu {
            own: now.own - before.own,
            children: now.children - before.children,
        }
    }
}

/// CPU seconds the calling thread has run so far, to the nanosecond
/// (/proc/thread-self/schedstat: the scheduler's own run-time sum).
pub fn thread_cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    let ns: u64 = s.split_whitespace().next().unwrap().parse().unwrap();
    ns as f64 / 1e9
}

// ------------------------------------------------------- the release binary

/// A free TCP port on 127.0.0.1 (free when asked; the server binds it
/// soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes `<dir>/isync.toml`: listening on `listen`, data in `<dir>/data`,
/// the TOML `extra` (sections such as `[scan]`), then library `lib` of
/// user `bench`. Returns the file's path.
pub fn write_config(dir: &Path, listen: &str, extra: &str, lib: &Path) -> PathBuf {
    let cfg = dir.join("isync.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"{listen}\"\ndata_dir = {:?}\n{extra}[[library]]\npath = {lib:?}\n\
             users = [\"bench\"]\n",
            dir.join("data"),
        ),
    )
    .unwrap();
    cfg
}

/// The password of user `bench` made by [`add_bench_user`] (8 to 1024
/// characters, as `isync user add` asks).
pub const BENCH_PASSWORD: &str = "bench-password";

/// `isync user add bench` (password [`BENCH_PASSWORD`]) with the release
/// binary on config `cfg`.
pub fn add_bench_user(cfg: &Path) {
    let mut add = Command::new(env!("CARGO_BIN_EXE_isync"))
        .arg("--config")
        .arg(cfg)
        .args(["user", "add", "bench", "--password-stdin"])
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(format!("{BENCH_PASSWORD}\n").as_bytes())
        .unwrap();
    assert!(add.wait().unwrap().success());
}

/// `isync serve` of the release binary on config `cfg`, logging at `level`
/// to stderr; not yet spawned, so the caller adds environment and stdio.
pub fn serve_command(cfg: &Path, level: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_isync"));
    cmd.arg("--config")
        .arg(cfg)
        .arg("serve")
        .env_remove("JOURNAL_STREAM")
        .env("ISYNC_LOG", level);
    cmd
}

// ------------------------------------------------------------ HTTP client

/// Sends `GET path` on a kept-alive connection with the headers given
/// (`Cookie` when `cookie` is not empty, then `extra`).
fn send_get(c: &mut TcpStream, path: &str, cookie: &str, extra: &[(&str, &str)]) {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n");
    if !cookie.is_empty() {
        req.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    c.write_all(req.as_bytes()).unwrap();
}

/// Reads a response head, `chunk.len()` bytes at a time; returns the head
/// lower-cased and the body bytes read with it.
fn read_head(c: &mut TcpStream, chunk: &mut [u8]) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let head_end = loop {
        let n = c.read(chunk).unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let body = buf.split_off(head_end);
    (String::from_utf8_lossy(&buf).to_ascii_lowercase(), body)
}

/// The `content-length` of a lower-cased head.
fn content_length(head: &str) -> Option<u64> {
    head.lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map(|v| v.trim().parse().unwrap())
}

/// One GET on a kept-alive connection, read 16 KiB at a time; returns the
/// lower-cased head and the body (none without a `content-length`).
pub fn get(
    c: &mut TcpStream,
    path: &str,
    cookie: &str,
    extra: &[(&str, &str)],
) -> (String, Vec<u8>) {
    send_get(c, path, cookie, extra);
    let mut chunk = vec![0u8; 16 << 10];
    let (head, mut body) = read_head(c, &mut chunk);
    let len = content_length(&head).unwrap_or(0) as usize;
    while body.len() < len {
        let want = (len - body.len()).min(chunk.len());
        let n = c.read(&mut chunk[..want]).unwrap();
        assert!(n > 0, "connection closed");
        body.extend_from_slice(&chunk[..n]);
    }
    (head, body)
}

/// A GET whose body is counted and dropped, read 256 KiB at a time (the
/// same reader for every server); returns the status line and the bytes.
pub fn get_count(
    c: &mut TcpStream,
    path: &str,
    cookie: &str,
    range: Option<&str>,
) -> (String, u64) {
    let extra: Vec<(&str, &str)> = range.map(|r| ("Range", r)).into_iter().collect();
    send_get(c, path, cookie, &extra);
    let mut chunk = vec![0u8; 256 << 10];
    let (head, body) = read_head(c, &mut chunk);
    let len = content_length(&head).expect("content-length");
    let mut got = body.len() as u64;
    while got < len {
        let n = c.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed");
        got += n as u64;
    }
    (head.lines().next().unwrap_or("").to_string(), got)
}

/// The server's own time of a reply (`Server-Timing: app;dur=<ms>`) from a
/// lower-cased head; NaN without one.
pub fn server_ms_of_head(head: &str) -> f64 {
    head.lines()
        .find_map(|l| l.strip_prefix("server-timing: app;dur="))
        .map_or(f64::NAN, |v| v.trim().parse().unwrap())
}

/// The server's own time of a reqwest reply (`Server-Timing:
/// app;dur=<ms>`).
pub fn server_ms(r: &reqwest::Response) -> f64 {
    r.headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("dur=").nth(1))
        .and_then(|v| v.parse().ok())
        .expect("server-timing header")
}
