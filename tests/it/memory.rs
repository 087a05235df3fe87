//! The server's memory under hostile files (issue #12, finding 3), measured
//! on the `isync` binary itself run as a subprocess with the default
//! configuration: its peak resident size (`VmHWM` in /proc, reset between
//! cases through `clear_refs`) while a file lands in its library and is
//! asked for at both levels — the pre-render worker and the requests
//! rendering it, together. No file may take it past 300 MB, the bound of a
//! Raspberry Pi with 1 GB. Then: a restart renders none of them again, and
//! a render the server does not survive (killed mid-render) is recorded as
//! failed and never tried again until the file changes.
//!
//! The figures are printed (`cargo test --test it memory:: -- --nocapture`) and
//! copied into docs/performance.md.

use crate::common;
use common::heifmux;
use common::process::Process;

use common::*;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// The bound for the server process (VmHWM).
const MAX_RSS_BYTES: u64 = 300 << 20;
/// How long the server may take to get somewhere before the test gives up
/// (a safety net, not a measurement: the debug build renders slowly).
const PATIENCE: Duration = Duration::from_secs(600);

/// Whether a log line says a render of `file_id` began (a request's or the
/// pre-render worker's).
fn render_started(line: &str, file_id: Option<i64>) -> bool {
    let started =
        line.contains("thumbnail render started") || line.contains("thumbnail pre-render started");
    started && file_id.is_none_or(|id| line.contains(&format!("file_id={id} ")))
}

/// `isync serve` on `<root>/data` with library `<root>/media/lib` (user
/// alice) and otherwise default settings; not started yet.
fn server(dir: tempfile::TempDir) -> Process {
    let lib = dir.path().join("media/lib");
    std::fs::create_dir_all(&lib).unwrap();
    Process::new_in(dir, &lib, &["alice"], "")
}

/// Starts `p` logging at debug level; returns where its log of this run
/// begins.
fn start(p: &mut Process) -> usize {
    let from = p.lines().len();
    p.start(&[("ISYNC_LOG", "debug")]);
    from
}

/// Waits for a log line from index `from` on that passes `pred`.
fn wait_for(p: &Process, from: usize, what: &str, pred: impl Fn(&str) -> bool) -> String {
    p.lines().wait_for(from, what, PATIENCE, pred)
}

/// A logged-in client of `p`, without the usual 30 s limit: the debug
/// build renders a 20000² PNG slowly.
async fn login(p: &Process) -> Api {
    let api = Api {
        http: reqwest::Client::builder()
            .cookie_store(true)
            .no_proxy()
            .timeout(PATIENCE)
            .build()
            .unwrap(),
        base: p.base.clone(),
    };
    let v = api
        .get_json(
            "/login.icc",
            json!({"userName": "alice", "password": PASSWORD}),
        )
        .await;
    assert_eq!(v["code"], 0, "{v}");
    api
}

fn status(p: &Process, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{}/status", p.pid())).unwrap();
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} in /proc/pid/status"));
    kb << 10
}

/// Peak resident size since the last [`reset_peak`].
fn peak_rss(p: &Process) -> u64 {
    status(p, "VmHWM:")
}

/// Starts a new peak from the current resident size (Linux ≥ 4.0).
fn reset_peak(p: &Process) {
    std::fs::write(format!("/proc/{}/clear_refs", p.pid()), "5").unwrap();
}

/// SIGTERM: the server stops as systemd would stop it.
fn stop(p: &mut Process) {
    assert!(p.stop().success(), "clean exit");
}

/// Statuses of the server-made levels of file `id` (0 local, 1 failed).
fn thumb_status(p: &Process, id: i64) -> (i64, i64) {
    p.db_read(|c| {
        c.query_row(
            "SELECT status_thumb, status_screen FROM files WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    })
}

/// The cached thumbnails of file `id` at `level`: on the library's disk
/// (or in the data dir, its fallback).
fn cached(p: &Process, id: i64, level: u8) -> Vec<PathBuf> {
    let shard = format!("{:02x}", id.rem_euclid(256));
    let prefix = format!("{id}_{level}_");
    [p.lib().join(".isync/thumbs"), p.data().join("thumbs")]
        .iter()
        .filter_map(|d| std::fs::read_dir(d.join(&shard)).ok())
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// File ids of the renders in progress, from the journal's slots.
fn rendering(p: &Process) -> Vec<i64> {
    let dir = p.data().join("thumbs/.journal");
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter(|r| r.len() >= 16 && r.starts_with(b"ISRJ"))
        .map(|r| i64::from_le_bytes(r[8..16].try_into().unwrap()))
        .collect()
}

/// Waits until both levels of file `id` are cached or recorded as
/// failed, and no render runs.
async fn settled(p: &Process, id: i64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (small, screen) = thumb_status(p, id);
        let done = [(0, small), (1, screen)]
            .into_iter()
            .all(|(level, status)| status == 1 || !cached(p, id, level).is_empty());
        if done && rendering(p).is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "file {id} never settled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn listed(api: &Api, name: &str) -> i64 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let all = api.all_files().await;
        if let Some(f) = all.iter().find(|f| f["name"] == name) {
            return id(f);
        }
        assert!(Instant::now() < deadline, "{name} never listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Both levels of file `id`: the status and, for a thumbnail, its size.
async fn both_levels(api: &Api, id: i64) -> Vec<Result<(u32, u32), i64>> {
    let mut out = Vec::new();
    for level in [0, 1] {
        let r = api
            .get("/thumbnail.icc", json!({"id": id, "level": level}))
            .await;
        let ok = r.status().is_success();
        let body = r.bytes().await.unwrap();
        out.push(if ok {
            let img = image::load_from_memory(&body).expect("a thumbnail");
            Ok((img.width(), img.height()))
        } else {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            Err(v["code"].as_i64().unwrap())
        });
    }
    out
}

/// `viewFile.icc` of file `id`: the size of the JPEG (checked against the
/// size its headers state), or the error code.
async fn view_size(api: &Api, id: i64) -> Result<(u32, u32), i64> {
    let r = api.get("/viewFile.icc", json!({"id": id})).await;
    if !r.status().is_success() {
        let v: serde_json::Value = r.json().await.unwrap();
        return Err(v["code"].as_i64().unwrap());
    }
    let said: (u32, u32) = (
        header(&r, "x-isync-width").parse().unwrap(),
        header(&r, "x-isync-height").parse().unwrap(),
    );
    let body = r.bytes().await.unwrap();
    let img = image::load_from_memory_with_format(&body, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((img.width(), img.height()), said);
    Ok(said)
}

// ---------------------------------------------------------------- fixtures

/// A PNG of `w`×`h` black RGB pixels, written row by row (9000² packs
/// into 236 KB, as in the issue; past that, faster compression).
fn zero_png(path: &Path, w: u32, h: u32) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut enc = png::Encoder::new(file, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_compression(if w <= 9000 {
        png::Compression::High
    } else {
        png::Compression::Fast
    });
    let mut writer = enc.write_header().unwrap();
    let mut rows = writer.stream_writer().unwrap();
    let row = vec![0u8; w as usize * 3];
    for _ in 0..h {
        rows.write_all(&row).unwrap();
    }
    rows.finish().unwrap();
}

/// A single-colour GIF of `w`×`h` (LZW packs it into little).
fn flat_gif(path: &Path, screen: (u16, u16), frame: (u16, u16)) {
    let mut out = Vec::new();
    {
        let mut enc =
            gif::Encoder::new(&mut out, screen.0, screen.1, &[0, 0, 0, 255, 0, 0]).unwrap();
        let px = vec![1u8; frame.0 as usize * frame.1 as usize];
        let f = gif::Frame::from_indexed_pixels(frame.0, frame.1, px, None);
        enc.write_frame(&f).unwrap();
    }
    std::fs::write(path, out).unwrap();
}

/// A `w`×`h` progressive 4:2:0 JPEG of a smooth gradient.
fn progressive_jpeg(path: &Path, w: u16, h: u16) {
    let mut px = Vec::with_capacity(w as usize * h as usize * 3);
    for y in 0..h as usize {
        for x in 0..w as usize {
            px.extend([(x / 32) as u8, (y / 32) as u8, ((x + y) / 64) as u8]);
        }
    }
    let mut enc = jpeg_encoder::Encoder::new_file(path, 90).unwrap();
    enc.set_progressive(true);
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    enc.encode(&px, w, h, jpeg_encoder::ColorType::Rgb).unwrap();
}

/// A 48 MP HEIC: 8064x6048, an 8x6 grid of 1024² HEVC tiles (48 coded
/// pictures, each its own item; iPhones use 512² tiles, 192 of them, more
/// properties than the test muxer's 7-bit `ipma` indexes hold), no `thmb`
/// (so both levels come from the grid).
fn grid_heic(path: &Path) {
    let (w, h, tile) = (8064, 6048, 1024);
    let rgb = heifmux::corners(w, h);
    let spec = heifmux::grid(
        &rgb,
        w,
        h,
        tile,
        h.div_ceil(tile) as u8,
        w.div_ceil(tile) as u8,
        heifmux::Codec::Hevc,
        false,
    );
    std::fs::write(path, heifmux::mux(&spec)).unwrap();
}

/// What lands in the library, and what the thumbnails must be.
struct Case {
    name: &'static str,
    what: &'static str,
    make: fn(&Path),
    want: [Result<(u32, u32), i64>; 2],
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "padded.jpg",
            what: "640x480 JPEG + 1 GiB of padding",
            make: |p| {
                let f = std::fs::File::create(p).unwrap();
                (&f).write_all(&jpeg(640, 480, 3, None)).unwrap();
                f.set_len(1 << 30).unwrap(); // sparse: no disk used
            },
            want: [Ok((160, 120)), Ok((640, 480))],
        },
        Case {
            name: "zeros9000.png",
            what: "9000x9000 zero-filled PNG",
            make: |p| zero_png(p, 9000, 9000),
            want: [Ok((160, 160)), Ok((800, 800))],
        },
        Case {
            name: "zeros20000.png",
            what: "20000x20000 zero-filled PNG",
            make: |p| zero_png(p, 20000, 20000),
            want: [Ok((160, 160)), Ok((800, 800))],
        },
        Case {
            name: "huge.jpg",
            what: "JPEG header claiming 65535x65535",
            make: |p| {
                let mut b = jpeg(64, 48, 3, None);
                let sof = b.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
                b[sof + 5..sof + 9].copy_from_slice(&[0xFF; 4]);
                std::fs::write(p, b).unwrap();
            },
            want: [Err(-10008), Err(-10008)],
        },
        Case {
            name: "bomb.gif",
            what: "GIF bomb: one 10000x10000 frame of one colour",
            make: |p| flat_gif(p, (10000, 10000), (10000, 10000)),
            want: [Err(-10008), Err(-10008)],
        },
        Case {
            name: "screen.gif",
            what: "GIF with a 65535x65535 screen, 1x1 frame",
            make: |p| flat_gif(p, (65535, 65535), (1, 1)),
            want: [Err(-10008), Err(-10008)],
        },
        Case {
            name: "progressive.jpg",
            what: "6000x4000 progressive JPEG (coefficients in memory)",
            make: |p| progressive_jpeg(p, 6000, 4000),
            want: [Ok((160, 107)), Ok((800, 533))],
        },
        Case {
            name: "photo12mp.jpg",
            what: "12 MP JPEG, cold",
            make: |p| std::fs::write(p, jpeg(4000, 3000, 3, None)).unwrap(),
            want: [Ok((160, 120)), Ok((800, 600))],
        },
        Case {
            name: "grid48mp.heic",
            what: "8064x6048 HEIC, 8x6 grid of 1024² HEVC tiles",
            make: grid_heic,
            want: [Ok((160, 120)), Ok((800, 600))],
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_file_takes_the_server_past_300_mb_and_a_restart_renders_none_again() {
    let mut server = server(tempfile::tempdir().unwrap());
    let root = server.dir.path().to_path_buf();
    start(&mut server);
    let api = login(&server).await;
    let mut ids = Vec::new();
    let mut report = Vec::new();
    for case in cases() {
        // Made aside, then moved in: the watcher sees a complete file.
        let staged = root.join(case.name);
        (case.make)(&staged);
        reset_peak(&server);
        let before = peak_rss(&server);
        std::fs::rename(&staged, root.join("media/lib").join(case.name)).unwrap();
        let id = listed(&api, case.name).await;
        let mut got = both_levels(&api, id).await;
        if case.name.ends_with(".heic") {
            // Its browser view too (`viewFile.icc`): the largest size
            // the render budget holds, within the same bound.
            got.push(view_size(&api, id).await);
        }
        settled(&server, id).await;
        let peak = peak_rss(&server);
        report.push(format!(
            "{:<52} peak {:>6.1} MB (from {:>5.1} MB)  {got:?}",
            case.what,
            peak as f64 / 1e6,
            before as f64 / 1e6
        ));
        assert_eq!(got[..2], case.want, "{}", case.what);
        if let Some(view) = got.get(2) {
            let (w, h) = view.unwrap_or_else(|e| panic!("{}: view refused: {e}", case.what));
            // Reduced (48 MP is past the budget at full size), not shrunk
            // to nothing: at least 3x the screen level, the aspect kept.
            assert!(
                (2400..8064).contains(&w) && (w * 3 / 4).abs_diff(h) <= 2,
                "view {w}x{h}"
            );
        }
        assert!(
            peak <= MAX_RSS_BYTES,
            "{}: peak RSS {} MB",
            case.what,
            peak >> 20
        );
        ids.push((case.name, id));
    }
    eprintln!("server peak RSS (VmHWM) per file, landing in the library and asked for:");
    for line in &report {
        eprintln!("  {line}");
    }

    // A restart: the first sweep visits every file again, renders nothing
    // (all cached or recorded as failed), and requests render nothing.
    stop(&mut server);
    let from = start(&mut server);
    let sweep = wait_for(&server, from, "the first sweep", |l| {
        l.contains("thumbnail pre-render sweep")
    });
    if !sweep.contains("added=0") {
        wait_for(&server, from, "the worker idle", |l| {
            l.contains("thumbnail pre-render idle")
        });
    }
    let api = login(&server).await;
    for (case, (name, id)) in cases().iter().zip(&ids) {
        assert_eq!(&both_levels(&api, *id).await, &case.want, "{name} again");
    }
    assert_eq!(
        server.lines().count(from, |l| render_started(l, None)),
        0,
        "rendered again after the restart"
    );
    stop(&mut server);
}

/// A render the server does not survive: the process is killed (as the
/// kernel kills it when out of memory) while it renders a large PNG. At
/// the next start that file is recorded as failed — answered −10008 at
/// once, left out by the pre-render sweep — until it changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_render_the_server_did_not_survive_is_not_tried_again_until_the_file_changes() {
    let mut server = server(tempfile::tempdir().unwrap());
    let photo = server.lib().join("slow.png");
    zero_png(&photo, 20000, 20000);
    start(&mut server);
    // Killed while the journal shows the render in progress.
    let deadline = Instant::now() + PATIENCE;
    let id = loop {
        if let Some(id) = rendering(&server).first() {
            break *id;
        }
        assert!(Instant::now() < deadline, "no render began");
        std::thread::sleep(Duration::from_millis(2));
    };
    server.kill9();

    let from = start(&mut server);
    let warned = wait_for(&server, from, "the interrupted render", |l| {
        l.contains("cut short") && l.contains(&format!("file_id={id}"))
    });
    assert!(warned.contains("slow.png"), "{warned}");
    let sweep = wait_for(&server, from, "the first sweep", |l| {
        l.contains("thumbnail pre-render sweep")
    });
    assert!(
        sweep.contains("added=0"),
        "the sweep takes it up again: {sweep}"
    );
    assert_eq!(thumb_status(&server, id), (1, 1));
    let api = login(&server).await;
    assert_eq!(listed(&api, "slow.png").await, id);
    for _ in 0..2 {
        assert_eq!(both_levels(&api, id).await, [Err(-10008), Err(-10008)]);
    }
    assert_eq!(
        server.lines().count(from, |l| render_started(l, Some(id))),
        0
    );
    assert!(rendering(&server).is_empty());

    // The file changes (a new mtime): the watcher's scan resets it, and the
    // pre-render worker takes it up again.
    let from = server.lines().len();
    let f = std::fs::File::options().write(true).open(&photo).unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(60))
        .unwrap();
    drop(f);
    wait_for(&server, from, "a render of the changed file", |l| {
        render_started(l, Some(id))
    });
    assert_eq!(thumb_status(&server, id), (0, 0));
    stop(&mut server);
}

// ---------------------------------------------------------------- idle

/// Context switches (voluntary and not) of every thread of process `pid`,
/// by thread id; with the thread's name.
fn wakeups(pid: u32) -> std::collections::BTreeMap<u32, (String, u64)> {
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let Ok(tid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // A thread may end between the listing and the read.
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
                .unwrap_or("")
                .to_string()
        };
        let switches = field("voluntary_ctxt_switches:")
            .parse::<u64>()
            .unwrap_or(0)
            + field("nonvoluntary_ctxt_switches:")
                .parse::<u64>()
                .unwrap_or(0);
        out.insert(tid, (field("Name:"), switches));
    }
    out
}

/// The threads that ran between two samples: a new thread, or one whose
/// count of context switches moved.
fn woke(
    before: &std::collections::BTreeMap<u32, (String, u64)>,
    after: &std::collections::BTreeMap<u32, (String, u64)>,
) -> Vec<String> {
    after
        .iter()
        .filter(|(tid, (_, n))| before.get(tid).is_none_or(|(_, m)| m != n))
        .map(|(tid, (name, n))| {
            let was = before.get(tid).map_or(0, |(_, m)| *m);
            format!("{name}[{tid}] +{}", n - was)
        })
        .collect()
}

/// README: "idle, the watcher costs nothing (no polling)". The real binary
/// with a watched library of 200 files, its initial scan done: within a
/// minute there is a 3 s window in which no thread of the server runs at all
/// (counted from the kernel's context switches per thread, so a watcher that
/// polled, or any timer ticking faster than that, fails the test). Then a
/// file written into the library is listed: the quiet server still watches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_server_watching_its_library_does_not_wake_at_all() {
    let mut server = server(tempfile::tempdir().unwrap());
    let lib = server.lib();
    for d in 0..10 {
        std::fs::create_dir_all(lib.join(format!("d{d}"))).unwrap();
        for f in 0..20 {
            std::fs::write(lib.join(format!("d{d}/note{f}.txt")), format!("{d}/{f}")).unwrap();
        }
    }
    let from = start(&mut server);
    wait_for(&server, from, "the initial scan", |l| {
        l.contains("initial scan: ")
    });
    let api = login(&server).await;
    assert_eq!(api.all_files().await.len(), 200);

    let pid = server.pid();
    let window = Duration::from_secs(3);
    let give_up = Instant::now() + Duration::from_secs(60);
    let mut windows = Vec::new();
    loop {
        let before = wakeups(pid);
        tokio::time::sleep(window).await;
        let ran = woke(&before, &wakeups(pid));
        if ran.is_empty() {
            break;
        }
        windows.push(ran.join(", "));
        assert!(
            Instant::now() < give_up,
            "no quiet {window:?} in a minute; the threads that ran, window by window:\n{}",
            windows.join("\n")
        );
    }
    eprintln!(
        "idle: quiet after {} busy window(s): {windows:?}",
        windows.len()
    );

    // Still watching: a new file is found without a scan being asked for.
    std::fs::write(lib.join("d3/late.txt"), "late").unwrap();
    listed(&api, "late.txt").await;
    stop(&mut server);
}

/// A password check (Argon2, a 7 MiB buffer) leaves nothing resident once
/// it is done: the server's anonymous memory after logins, a right and a
/// wrong password and an unknown name, is within 3 MiB of what it was
/// before them. glibc kept the buffer in the hashing thread's arena for as
/// long as the server idled (+7 MiB after one login) until large buffers
/// got their own mappings (`heap::give_large_buffers_their_own_mappings`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_leaves_no_password_hash_buffer_resident() {
    let mut server = server(tempfile::tempdir().unwrap());
    let from = start(&mut server);
    wait_for(&server, from, "the initial scan", |l| {
        l.contains("initial scan: ")
    });
    let anon = || status(&server, "RssAnon:");
    let before = anon();
    let bound = before + (3 << 20);
    // The hashing thread gives its memory back after the reply is sent:
    // a moment to do it in.
    let settles_under_bound = || async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while anon() > bound && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anon()
    };
    let api = login(&server).await;
    let after = settles_under_bound().await;
    assert!(
        after <= bound,
        "anonymous memory {before} bytes before the login, {after} after"
    );
    for (name, password) in [("alice", "a wrong password"), ("nobody", "whatever")] {
        let v = api
            .get_json(
                "/login.icc",
                json!({"userName": name, "password": password}),
            )
            .await;
        assert_ne!(v["code"], 0, "{v}");
    }
    login(&server).await;
    let after = settles_under_bound().await;
    assert!(
        after <= bound,
        "anonymous memory {before} bytes before the logins, {after} after four"
    );
    stop(&mut server);
}
