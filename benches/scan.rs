//! Scan benchmark (issue 2): prints medians for
//! 1. a cold scan (fresh database, warm page cache) of 10,000 small JPEGs,
//! 2. a cold scan of a mixed 10,000-file tree (photos, 100 MP4/MOV videos,
//!    20 audio files, other files),
//! 3. a rescan of the unchanged 10,000-file library,
//! 4. a cold scan of 10,000 iPhone-like HEICs (issue 15: ≥ 10,000 files/s,
//!    no decode): copies of a few real 4032x3024 grid HEICs (48 HEVC
//!    tiles, a `thmb`, an Exif item; two of them) made by `tests/it/common/heifmux.rs`,
//!    scanned with `ffmpeg` and `ffprobe` on `PATH` replaced by wrappers
//!    that count their runs (must stay 0), and the bytes the process read
//!    (`rchar` of /proc/self/io) per file printed beside the file's size,
//!
//! each against a baseline measured in the same run: a bare walk + stat of
//! the same tree (the least any scanner must do).
//!
//! Then CPU per 1,000 files (issue 13: what a Pi pays): user + system of
//! this process (every scanner thread) and its children (ffprobe, if a file
//! needs it) per scan, against the bare walk's thread CPU, medians of
//! `RUNS`.
//! Run: `cargo bench --bench scan` (a few minutes; `-- heic` runs case 4
//! alone).

mod common;
#[path = "../tests/it/common/heifmux.rs"]
mod heifmux;

use common::{median, thread_cpu_secs, SelfCpu};
use isync::config::{Config, LibraryConfig, ScanConfig};
use isync::db::Db;
use isync::library::{sync_libraries, Scanner};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const FILES: usize = 10_000;
const RUNS: usize = 5;

fn ffmpeg(args: &[&str]) {
    let st = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .status()
        .expect("ffmpeg is required for the scan benchmark (apt-get install ffmpeg)");
    assert!(st.success(), "ffmpeg {args:?} failed");
}

/// 10,000 small JPEGs (each distinct, EXIF on every 5th) in 100 folders.
fn make_jpeg_tree(root: &Path, n: usize) {
    let base: Vec<Vec<u8>> = (0..8u8)
        .map(|i| isync::demo::jpeg_bytes(96, 72, i * 30, (i % 5 == 0).then_some(6)))
        .collect();
    for i in 0..n {
        let dir = root.join(format!("album_{:03}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&dir).unwrap();
        }
        let mut bytes = base[i % base.len()].clone();
        // Make every file unique (a comment segment after SOI).
        let tag = format!("isync-bench-{i}");
        let mut com = vec![0xFF, 0xFE];
        com.extend_from_slice(&((tag.len() + 2) as u16).to_be_bytes());
        com.extend_from_slice(tag.as_bytes());
        bytes.splice(2..2, com);
        std::fs::write(dir.join(format!("IMG_{i:05}.jpg")), bytes).unwrap();
    }
}

/// Photos, 100 videos (MP4 and MOV), 20 audio files (M4A and MP3), others.
fn make_mixed_tree(root: &Path, scratch: &Path) {
    let videos = 100;
    let audio = 20;
    let others = 380;
    make_jpeg_tree(root, FILES - videos - audio - others);
    let v_mp4 = scratch.join("v.mp4");
    let v_mov = scratch.join("v.mov");
    let a_m4a = scratch.join("a.m4a");
    let a_mp3 = scratch.join("a.mp3");
    let src = [
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=10:duration=1",
    ];
    let snd = ["-f", "lavfi", "-i", "sine=duration=1"];
    ffmpeg(
        &[
            &src[..],
            &snd[..],
            &["-pix_fmt", "yuv420p", "-shortest", v_mp4.to_str().unwrap()],
        ]
        .concat(),
    );
    ffmpeg(
        &[
            &src[..],
            &snd[..],
            &["-pix_fmt", "yuv420p", "-shortest", v_mov.to_str().unwrap()],
        ]
        .concat(),
    );
    ffmpeg(&[&snd[..], &["-c:a", "aac", a_m4a.to_str().unwrap()]].concat());
    ffmpeg(&[&snd[..], &["-c:a", "libmp3lame", a_mp3.to_str().unwrap()]].concat());
    let vdir = root.join("videos");
    let adir = root.join("audio");
    let odir = root.join("documents");
    for d in [&vdir, &adir, &odir] {
        std::fs::create_dir_all(d).unwrap();
    }
    for i in 0..videos {
        let (src, ext) = if i % 2 == 0 {
            (&v_mp4, "mp4")
        } else {
            (&v_mov, "mov")
        };
        std::fs::copy(src, vdir.join(format!("clip_{i:03}.{ext}"))).unwrap();
    }
    for i in 0..audio {
        let (src, ext) = if i % 2 == 0 {
            (&a_m4a, "m4a")
        } else {
            (&a_mp3, "mp3")
        };
        std::fs::copy(src, adir.join(format!("song_{i:03}.{ext}"))).unwrap();
    }
    for i in 0..others {
        std::fs::write(odir.join(format!("note_{i:03}.txt")), format!("note {i}\n")).unwrap();
    }
}

/// `n` HEICs in 100 folders: copies of two distinct iPhone-like files
/// (4032x3024, a 8x6 grid of 512² HEVC tiles, a 320x240 `thmb`, an Exif
/// item with the capture time), each a real file of its own. Returns the
/// size of one.
fn make_heic_tree(root: &Path, scratch: &Path, n: usize) -> u64 {
    let (w, h, tile) = (4032u32, 3024u32, 512u32);
    let (cols, rows) = (w.div_ceil(tile) as u8, h.div_ceil(tile) as u8);
    // Two distinct files (each takes 48 x265 runs to make).
    let bases: Vec<PathBuf> = (0..2u8)
        .map(|i| {
            // Flat colour blocks encode fast and small; the boxes (what the
            // scan reads) are those of a real photo.
            let rgb: Vec<u8> = (0..w * h)
                .flat_map(|p| {
                    let (x, y) = (p % w, p / w);
                    [(x / 500) as u8 * 30 + i, (y / 500) as u8 * 40, 90]
                })
                .collect();
            let mut spec = heifmux::grid(&rgb, w, h, tile, rows, cols, heifmux::Codec::Hevc, false);
            let small = heifmux::corners(320, 240);
            spec.thumbnail = Some(heifmux::encode(
                &small,
                320,
                240,
                heifmux::Codec::Hevc,
                false,
            ));
            spec.exif = Some(heifmux::exif_taken(&format!("2024:05:0{} 10:11:12", i + 1)));
            let path = scratch.join(format!("base{i}.heic"));
            std::fs::write(&path, heifmux::mux(&spec)).unwrap();
            path
        })
        .collect();
    for i in 0..n {
        let dir = root.join(format!("DCIM_{:03}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&dir).unwrap();
        }
        std::fs::copy(
            &bases[i % bases.len()],
            dir.join(format!("IMG_{i:05}.HEIC")),
        )
        .unwrap();
    }
    std::fs::metadata(&bases[0]).unwrap().len()
}

/// Puts `ffmpeg` and `ffprobe` wrappers first on this process's `PATH`:
/// each appends a line to `<dir>/runs` and runs the real program. Returns
/// the file counting the runs.
fn count_media_runs(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let runs = dir.join("runs");
    std::fs::write(&runs, "").unwrap();
    for tool in ["ffmpeg", "ffprobe"] {
        let real = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{tool} on PATH"));
        let wrapper = dir.join(tool);
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho {tool} >> '{}'\nexec '{}' \"$@\"\n",
                runs.display(),
                real.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(std::env::split_paths(&path));
    // Set before any thread of the scan starts (the fixtures are made).
    std::env::set_var("PATH", std::env::join_paths(dirs).unwrap());
    runs
}

/// Bytes this process has read through read(2) and friends so far
/// (`rchar` of /proc/self/io: page-cache hits included).
fn read_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("rchar in /proc/self/io")
}

fn config(data: &Path, lib: &Path) -> Config {
    Config {
        data_dir: data.to_path_buf(),
        scan: ScanConfig::default(),
        libraries: vec![LibraryConfig {
            path: lib.to_path_buf(),
            users: vec![],
            merge: true,
        }],
        ..Config::default()
    }
}

/// Baseline: walk + lstat every entry, nothing else.
fn bare_walk(root: &Path) -> (Duration, usize) {
    let t = Instant::now();
    let mut n = 0;
    for e in walkdir::WalkDir::new(root).into_iter().flatten() {
        if e.metadata().map(|m| m.is_file()).unwrap_or(false) {
            n += 1;
        }
    }
    (t.elapsed(), n)
}

/// CPU seconds of one bare walk + stat (it runs on this thread alone).
fn walk_cpu(root: &Path) -> f64 {
    let c0 = thread_cpu_secs();
    let (_, n) = bare_walk(root);
    // The library's own `.isync` folder may hold a file once scanned.
    assert!((FILES..FILES + 10).contains(&n), "{n} files walked");
    thread_cpu_secs() - c0
}

/// Cold scans: a fresh database each run; wall time and CPU seconds (this
/// process and its children).
fn cold_scans(work: &Path, lib: &Path) -> Vec<(Duration, f64)> {
    (0..RUNS)
        .map(|run| {
            let data: PathBuf = work.join(format!(
                "data-{}-{run}",
                lib.file_name().unwrap().to_string_lossy()
            ));
            let cfg = config(&data, lib);
            let db = Db::open(&cfg.db_path()).unwrap();
            let plan = sync_libraries(&db, &cfg).unwrap();
            let scanner = Scanner::new(db, cfg.scan.clone());
            let (t, c0) = (Instant::now(), SelfCpu::now());
            let r = scanner.scan_plan(&plan).unwrap();
            let (el, cpu) = (t.elapsed(), SelfCpu::since(c0).total());
            assert_eq!(r.added, FILES, "every file recorded: {r}");
            (el, cpu)
        })
        .collect()
}

fn report(label: &str, scan: Duration, walk: Duration, files: usize, target: &str) {
    println!(
        "{label:<44} median {:>8.1} ms  {:>8.0} files/s  (bare walk {:>6.1} ms, ratio {:>5.1}x)  target: {target}",
        scan.as_secs_f64() * 1e3,
        files as f64 / scan.as_secs_f64(),
        walk.as_secs_f64() * 1e3,
        scan.as_secs_f64() / walk.as_secs_f64().max(1e-9),
    );
}

fn main() {
    // `cargo test --benches` runs benches with --bench absent: stay quick.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let jpegs = work.path().join("jpegs");
    let mixed = work.path().join("mixed");
    let heics = work.path().join("heics");
    let t = Instant::now();
    if std::env::args().any(|a| a == "heic") {
        // `cargo bench --bench scan -- heic`: case 4 alone.
        let heic_bytes = make_heic_tree(&heics, work.path(), FILES);
        println!(
            "fixtures: {FILES} HEICs made in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let _ = bare_walk(&heics);
        heic_scans(work.path(), &heics, heic_bytes);
        return;
    }
    make_jpeg_tree(&jpegs, FILES);
    make_mixed_tree(&mixed, work.path());
    let heic_bytes = make_heic_tree(&heics, work.path(), FILES);
    println!(
        "fixtures: {FILES} JPEGs + {FILES} mixed files + {FILES} HEICs ({:.0} KB each) made in \
         {:.1} s; {} cores",
        heic_bytes as f64 / 1e3,
        t.elapsed().as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    // Warm the page cache.
    let _ = bare_walk(&jpegs);
    let _ = bare_walk(&mixed);
    let _ = bare_walk(&heics);

    let walks: Vec<Duration> = (0..RUNS).map(|_| bare_walk(&jpegs).0).collect();
    let walk_j = median(&walks);
    let cold_j = cold_scans(work.path(), &jpegs);
    let scan_j = median(&cold_j.iter().map(|r| r.0).collect::<Vec<_>>());
    let cpu_j = median(&cold_j.iter().map(|r| r.1).collect::<Vec<_>>());
    let walk_cpu_j = median(&(0..RUNS).map(|_| walk_cpu(&jpegs)).collect::<Vec<_>>());
    report(
        "cold scan, 10,000 small JPEGs",
        scan_j,
        walk_j,
        FILES,
        ">= 20,000 files/s",
    );

    let walks: Vec<Duration> = (0..RUNS).map(|_| bare_walk(&mixed).0).collect();
    let walk_m = median(&walks);
    let cold_m = cold_scans(work.path(), &mixed);
    let scan_m = median(&cold_m.iter().map(|r| r.0).collect::<Vec<_>>());
    let cpu_m = median(&cold_m.iter().map(|r| r.1).collect::<Vec<_>>());
    let walk_cpu_m = median(&(0..RUNS).map(|_| walk_cpu(&mixed)).collect::<Vec<_>>());
    report(
        "cold scan, 10,000 mixed files",
        scan_m,
        walk_m,
        FILES,
        "< 2 s",
    );

    // Rescan of the unchanged mixed library.
    let data = work.path().join("data-rescan");
    let cfg = config(&data, &mixed);
    let db = Db::open(&cfg.db_path()).unwrap();
    let plan = sync_libraries(&db, &cfg).unwrap();
    let scanner = Scanner::new(db, cfg.scan.clone());
    scanner.scan_plan(&plan).unwrap();
    let rescans: Vec<(Duration, f64)> = (0..RUNS)
        .map(|_| {
            let (t, c0) = (Instant::now(), SelfCpu::now());
            let r = scanner.scan_plan(&plan).unwrap();
            let (el, cpu) = (t.elapsed(), SelfCpu::since(c0).total());
            assert_eq!(r.added + r.updated + r.removed, 0, "unchanged: {r}");
            (el, cpu)
        })
        .collect();
    report(
        "rescan, unchanged 10,000-file library",
        median(&rescans.iter().map(|r| r.0).collect::<Vec<_>>()),
        walk_m,
        FILES,
        "< 0.5 s",
    );
    let cpu_r = median(&rescans.iter().map(|r| r.1).collect::<Vec<_>>());

    heic_scans(work.path(), &heics, heic_bytes);

    // Issue 13: CPU per 1,000 files. Scans are multi-threaded and measured
    // in ticks (10 ms) over 0.1–2 s; the walk runs on this thread and is
    // measured to the nanosecond.
    let thousands = FILES as f64 / 1000.0;
    println!("CPU-s per 1,000 files (user + system, median of {RUNS}; baseline bare walk + stat):");
    for (label, cpu, walk) in [
        ("cold scan, 10,000 small JPEGs", cpu_j, walk_cpu_j),
        ("cold scan, 10,000 mixed files", cpu_m, walk_cpu_m),
        ("rescan, unchanged 10,000-file library", cpu_r, walk_cpu_m),
    ] {
        println!(
            "  {label:<42} {:>7.4} CPU-s/1000 files  (bare walk {:>7.4}, ratio {:>5.1}x)",
            cpu / thousands,
            walk / thousands,
            cpu / walk.max(1e-9)
        );
    }
}

/// Case 4: cold scans of the 10,000 HEICs; every file recorded with its
/// size and capture time, no ffmpeg or ffprobe run, and the bytes read
/// per file.
fn heic_scans(work: &Path, heics: &Path, heic_bytes: u64) {
    let walks: Vec<Duration> = (0..RUNS).map(|_| bare_walk(heics).0).collect();
    let walk_h = median(&walks);
    let runs = count_media_runs(&work.join("tools"));
    let read0 = read_bytes();
    let cold_h = cold_scans(work, heics);
    let read = (read_bytes() - read0) as f64 / (RUNS * FILES) as f64;
    let media_runs = std::fs::read_to_string(&runs).unwrap().lines().count();
    report(
        "cold scan, 10,000 HEICs (4032x3024 grids)",
        median(&cold_h.iter().map(|r| r.0).collect::<Vec<_>>()),
        walk_h,
        FILES,
        ">= 10,000 files/s",
    );
    println!(
        "  HEIC scan: {media_runs} ffmpeg/ffprobe runs in {RUNS} scans; {read:.0} bytes read \
         per file (the file: {heic_bytes} bytes; database writes included)"
    );
    assert_eq!(media_runs, 0, "the scan ran ffmpeg/ffprobe");
    // The probe saw the photos: size and capture time of a copy.
    let data = work.join("data-heic-check");
    let cfg = config(&data, heics);
    let db = Db::open(&cfg.db_path()).unwrap();
    let plan = sync_libraries(&db, &cfg).unwrap();
    Scanner::new(db, cfg.scan.clone()).scan_plan(&plan).unwrap();
    let c = rusqlite::Connection::open(cfg.db_path()).unwrap();
    let (w, h, taken): (i64, i64, Option<i64>) = c
        .query_row(
            "SELECT width, height, create_time FROM files WHERE name LIKE 'IMG_00001%'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((w, h), (4032, 3024));
    assert!(taken.is_some(), "capture time from the Exif item");
}
