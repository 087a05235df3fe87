//! Thumbnail bench (`cargo bench --bench thumbs`): renders from a 12 MP
//! camera-like JPEG (plain, with a 160 px EXIF thumbnail, and with a
//! 1920x1440 MPF preview as cameras and phones append) and a 1080p H.264
//! clip it generates itself, against a full-size decode with the `image`
//! crate as baseline; what a request costs after the pre-render worker ran
//! (a cache hit) and whether that worker, at nice 19, slows a request down;
//! and the JPEG decoders the renderer could use. Runs in about a minute.
//!
//! The machine is shared, so besides wall-clock medians it prints CPU time
//! per run: the whole process's plus its waited-for children's (ffmpeg), from
//! /proc/self/stat, averaged over the runs. That is what an idle machine
//! would spend; wall time there is at most that (jpeg-decoder runs its IDCT
//! on a helper thread, ffmpeg decodes with frame threads).
//!
//! First, CPU per cold 12 MP thumbnail (issue 13: what a Pi pays), medians
//! over batches, against the same file decoded and resized by the `image`
//! crate, by `ffmpeg -vf scale` and by libjpeg-turbo's `djpeg -scale 1/4`
//! (when installed: `apt-get install libjpeg-turbo-progs`).
//! `-- cpu` runs that part alone.

mod common;

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use isync::media::budget::Allowance;
use isync::media::original::Original;
use isync::media::thumbcache::{ThumbCache, ThumbSource};
use isync::media::thumbs::{render, render_both, render_original};
use isync::model::{FileType, ThumbLevel};

const PHOTO_W: u32 = 4000;
const PHOTO_H: u32 = 3000;
/// Stop measuring a case after this long even if it has fewer runs.
const CASE_BUDGET: Duration = Duration::from_secs(4);

fn main() {
    // `cargo test --benches` runs benches with --bench absent: stay quick.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let fixtures = Fixtures::make(dir.path());
    println!(
        "fixtures in {:.1} s: {}x{} JPEG q90, 4:4:4 {:.1} MB, 4:2:0 {:.1} MB (+ {} B EXIF \
         thumbnail, or + {} kB 1920x1440 MPF preview); video: {}",
        started.elapsed().as_secs_f64(),
        PHOTO_W,
        PHOTO_H,
        fixtures.photo_len as f64 / 1e6,
        fixtures.photo_420_len as f64 / 1e6,
        fixtures.exif_thumb_len,
        fixtures.preview_len / 1000,
        if fixtures.video.is_some() {
            "1080p 5 s H.264"
        } else {
            "none (no ffmpeg)"
        }
    );
    println!();
    cpu_per_thumbnail(&fixtures, dir.path());
    if std::env::args().any(|a| a == "cpu") {
        return;
    }
    println!();
    println!(
        "{:<58} {:>4} {:>10} {:>9} {:>10}",
        "case", "runs", "median ms", "p95 ms", "cpu ms/run"
    );

    let with_exif = fixtures.photo_exif.clone();
    let with_mpf = fixtures.photo_mpf.clone();
    let plain = fixtures.photo.clone();
    let baseline = measure("baseline: image crate full decode (12 MP)", 10, || {
        image::open(&plain).expect("decode");
    });
    println!("-- level 1 (800 px box), a request that finds nothing cached:");
    let level1_mpf = measure(
        "level 1 cold, MPF preview, orientation 6 (target < 40 ms)",
        30,
        || {
            render(&with_mpf, FileType::Image, Some(6), ThumbLevel::Screen).expect("render");
        },
    );
    let level1 = measure("level 1 cold, no preview, orientation 6", 20, || {
        render(&plain, FileType::Image, Some(6), ThumbLevel::Screen).expect("render");
    });
    measure("level 1 cold, no preview, upright", 20, || {
        render(&plain, FileType::Image, None, ThumbLevel::Screen).expect("render");
    });
    // The same picture as camera encoders often write it: a restart marker
    // after every MCU row, so it decodes in bands on every core; and the
    // plain file (no restart markers), whose entropy-coded data is decoded
    // in ranges that resynchronise. Baseline, same file, interleaved:
    // decoded in one piece.
    interleaved(
        "level 1 cold, restart markers, 4:2:0, in ranges",
        &fixtures.photo_restart,
        fixtures.photo_restart_len,
    );
    interleaved(
        "level 1 cold, no restart markers, 4:2:0, in ranges",
        &fixtures.photo_420,
        fixtures.photo_420_len,
    );
    interleaved(
        "level 1 cold, no restart markers, 4:4:4, in ranges",
        &plain,
        fixtures.photo_len,
    );
    println!("-- level 0 (160 px box):");
    measure("level 0 cold via EXIF thumb (target < 10 ms)", 40, || {
        render(&with_exif, FileType::Image, Some(6), ThumbLevel::Small).expect("render");
    });
    measure("level 0 cold via MPF preview (no EXIF thumb)", 40, || {
        render(&with_mpf, FileType::Image, Some(6), ThumbLevel::Small).expect("render");
    });
    measure("level 0 cold, no preview (1/8 decode)", 20, || {
        render(&plain, FileType::Image, Some(6), ThumbLevel::Small).expect("render");
    });
    println!("-- pre-render worker (both levels per original, one decode):");
    let both = measure(
        "render_both, no preview (worker, off the request path)",
        20,
        || {
            for t in render_both(&plain, FileType::Image, Some(6)) {
                t.expect("render");
            }
        },
    );
    measure("render_both, MPF preview", 30, || {
        for t in render_both(&with_mpf, FileType::Image, Some(6)) {
            t.expect("render");
        }
    });
    let hit = cache_hits(dir.path(), &plain);
    contention(&plain, &with_mpf);
    println!("-- bounded memory (media/pngstream.rs, media/journal.rs):");
    for side in [9000u32, 20000] {
        let png = zero_png(dir.path(), side);
        measure(
            &format!("PNG {side}x{side} zeros, level 1, row by row"),
            3,
            || {
                render(&png, FileType::Image, None, ThumbLevel::Screen).expect("render");
            },
        );
    }
    let journal = isync::media::journal::Journal::new(dir.path().join("journal"));
    measure(
        "journal: mark a render (write + fdatasync), clear",
        50,
        || {
            let mark = journal.begin(1, 2, &[ThumbLevel::Screen]).expect("journal");
            drop(mark);
        },
    );
    if let Some(video) = &fixtures.video {
        println!("-- video (1080p H.264, keyframe every 2 s):");
        // Same-run baseline: the bare first frame, `ffmpeg -frames:v 1` to
        // a JPEG of the same file (no seek, no scaling, no probe).
        let out = dir.path().join("bare-frame.jpg");
        let bare = measure(
            "bare `ffmpeg -i clip -frames:v 1 out.jpg` (baseline)",
            10,
            || {
                let st = Command::new(isync::media::process::ffmpeg_path())
                    .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
                    .arg(video)
                    .args(["-frames:v", "1"])
                    .arg(&out)
                    .status()
                    .expect("run ffmpeg");
                assert!(st.success(), "bare ffmpeg");
            },
        );
        let level1 = measure("video level 1 cold (ffmpeg, target < 300 ms)", 10, || {
            render(video, FileType::Video, None, ThumbLevel::Screen).expect("render");
        });
        println!(
            "{:<58} {:>4} {:>10.2}",
            "  ratio level 1 / bare ffmpeg (wall)",
            "",
            level1.wall / bare.wall
        );
        measure("video level 0 cold (ffmpeg)", 10, || {
            render(video, FileType::Video, None, ThumbLevel::Small).expect("render");
        });
        measure("video render_both (worker: one ffmpeg run)", 10, || {
            for t in render_both(video, FileType::Video, None) {
                t.expect("render");
            }
        });
    }

    println!();
    println!("codecs alone, same photo:");
    let bytes = std::fs::read(&plain).expect("read photo");
    for (denom, size) in [(4u16, "1000x750, for level 1"), (8, "500x375, for level 0")] {
        let edge = 4000 / denom;
        measure(
            &format!("jpeg-decoder (pure Rust) 1/{denom} -> {size}"),
            15,
            || {
                let mut d = jpeg_decoder::Decoder::new(bytes.as_slice());
                d.scale(edge, edge).expect("scale");
                d.decode().expect("decode");
            },
        );
        let num = 8 / denom as u8;
        measure(
            &format!("mozjpeg (libjpeg-turbo, no SIMD) {num}/8 -> {size}"),
            15,
            || {
                // mozjpeg reports libjpeg errors by panicking.
                std::panic::catch_unwind(|| {
                    let mut d = mozjpeg::Decompress::new_mem(&bytes).expect("header");
                    d.scale(num);
                    let mut s = d.rgb().expect("start");
                    let _: Vec<u8> = s.read_scanlines().expect("scanlines");
                })
                .expect("mozjpeg");
            },
        );
    }
    // Encoders for a level-1 thumbnail: an 800x600 crop of the 1/4 decode.
    let mut d = jpeg_decoder::Decoder::new(bytes.as_slice());
    d.scale(1000, 1000).expect("scale");
    let quarter = d.decode().expect("decode");
    let crop: Vec<u8> = quarter
        .chunks_exact(1000 * 3)
        .take(600)
        .flat_map(|row| row[..800 * 3].iter().copied())
        .collect();
    measure("encode 800x600 q80: image crate JpegEncoder", 20, || {
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
            .encode(&crop, 800, 600, image::ExtendedColorType::Rgb8)
            .expect("encode");
    });
    measure("encode 800x600 q80: jpeg-encoder (used)", 20, || {
        let mut out = Vec::new();
        let mut e = jpeg_encoder::Encoder::new(&mut out, 80);
        e.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
        e.encode(&crop, 800, 600, jpeg_encoder::ColorType::Rgb)
            .expect("encode");
    });
    measure("zune-jpeg via image, full size (no scaling)", 10, || {
        image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg).expect("decode");
    });

    println!();
    println!(
        "level 1 vs baseline full decode (wall): cold with MPF preview {:.1}x faster \
         ({:.1}x in cpu), cold without preview {:.1}x ({:.1}x in cpu), after pre-render \
         (cache hit) {:.0}x; pre-rendering both levels costs {:.2}x the baseline decode",
        baseline.wall / level1_mpf.wall,
        baseline.cpu / level1_mpf.cpu,
        baseline.wall / level1.wall,
        baseline.cpu / level1.cpu,
        baseline.wall / hit,
        both.wall / baseline.wall,
    );
    println!("total bench time {:.1} s", started.elapsed().as_secs_f64());
}

struct Fixtures {
    photo: PathBuf,
    photo_exif: PathBuf,
    photo_mpf: PathBuf,
    photo_restart: PathBuf,
    photo_restart_len: usize,
    photo_420: PathBuf,
    photo_420_len: usize,
    photo_len: usize,
    exif_thumb_len: usize,
    preview_len: usize,
    video: Option<PathBuf>,
}

impl Fixtures {
    fn make(dir: &Path) -> Fixtures {
        let img = photo_like(PHOTO_W, PHOTO_H);
        let main = jpeg(&img, 90);
        let small = image::imageops::resize(&img, 160, 120, image::imageops::FilterType::Triangle);
        let thumb = jpeg(&small, 85);
        let photo = dir.join("photo.jpg");
        std::fs::write(&photo, &main).expect("write photo");
        // Chroma 4:2:0 as cameras write it (jpeg-encoder would pick 4:4:4
        // at q90), with EXIF orientation 6, optionally a restart interval.
        let camera_420 = |restart: Option<u16>| {
            let mut out = Vec::new();
            let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
            if let Some(r) = restart {
                enc.set_restart_interval(r);
            }
            enc.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
            enc.encode(
                img.as_raw(),
                PHOTO_W as u16,
                PHOTO_H as u16,
                jpeg_encoder::ColorType::Rgb,
            )
            .expect("encode");
            common::with_exif(&out, Some(6), None)
        };
        // Restart interval: one MCU row (4000 px / 16 px MCUs).
        let photo_restart = dir.join("photo-restart.jpg");
        let restart = camera_420(Some((PHOTO_W / 16) as u16));
        std::fs::write(&photo_restart, &restart).expect("write photo");
        // Without restart markers (most cameras and phones).
        let photo_420 = dir.join("photo-420.jpg");
        let plain_420 = camera_420(None);
        std::fs::write(&photo_420, &plain_420).expect("write photo");
        let photo_exif = dir.join("photo-exif.jpg");
        let tagged = common::with_exif(&main, Some(6), Some(&thumb));
        std::fs::write(&photo_exif, &tagged).expect("write photo");
        // What phones and cameras write: EXIF with orientation, no IFD1
        // thumbnail here (so level 0 must use the preview too), and a
        // 1920x1440 "large thumbnail" (MPF type 0x010002) after the photo.
        let preview = jpeg(
            &image::imageops::resize(&img, 1920, 1440, image::imageops::FilterType::Triangle),
            85,
        );
        let photo_mpf = dir.join("photo-mpf.jpg");
        let oriented = common::with_exif(&main, Some(6), None);
        let mpf = common::fixtures::with_mpf_preview(&oriented, &preview, 0x01_0002);
        std::fs::write(&photo_mpf, mpf).expect("write photo");
        let video = dir.join("clip.mp4");
        let made = Command::new(isync::media::process::ffmpeg_path())
            .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
            .args(["-i", "testsrc2=size=1920x1080:rate=30:duration=5"])
            .args([
                "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "60",
            ])
            .arg(&video)
            .status()
            .is_ok_and(|s| s.success());
        if !made {
            eprintln!("ffmpeg unavailable: video cases skipped");
        }
        Fixtures {
            photo,
            photo_exif,
            photo_mpf,
            photo_restart,
            photo_restart_len: restart.len(),
            photo_420,
            photo_420_len: plain_420.len(),
            photo_len: main.len(),
            exif_thumb_len: thumb.len(),
            preview_len: preview.len(),
            video: made.then_some(video),
        }
    }
}

/// Medians of one case.
struct Stats {
    wall: f64,
    cpu: f64,
}

fn measure(name: &str, runs: usize, mut f: impl FnMut()) -> Stats {
    f(); // warm the page cache and allocator; the render itself is still cold
    let begun = Instant::now();
    let cpu0 = process_cpu_ms();
    let mut wall = Vec::new();
    while wall.len() < runs && (begun.elapsed() < CASE_BUDGET || wall.len() < 3) {
        let t0 = Instant::now();
        f();
        wall.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let cpu = (process_cpu_ms() - cpu0) / wall.len() as f64;
    let (wall_med, wall_p95) = median_p95(&mut wall);
    println!(
        "{name:<58} {:>4} {wall_med:>10.2} {wall_p95:>9.2} {cpu:>10.1}",
        wall.len()
    );
    Stats {
        wall: wall_med,
        cpu,
    }
}

/// Batches per case of [`cpu_per_thumbnail`].
const CPU_BATCHES: usize = 5;

/// CPU milliseconds per call of `f`, this process's (every thread) and its
/// reaped children's (ffmpeg, djpeg): the median over [`CPU_BATCHES`]
/// batches of `per_batch` calls each, since /proc counts in 10 ms ticks.
fn cpu_per_op(name: &str, per_batch: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm the page cache and allocator
    let per_op: Vec<f64> = (0..CPU_BATCHES)
        .map(|_| {
            let c0 = common::SelfCpu::now();
            for _ in 0..per_batch {
                f();
            }
            common::SelfCpu::since(c0).total() * 1e3 / per_batch as f64
        })
        .collect();
    let med = common::median(&per_op);
    println!(
        "{name:<62} {:>4} {med:>8.1} {:>8.1} {:>8.1}",
        per_op.len() * per_batch,
        common::pct(&per_op, 0.0),
        common::pct(&per_op, 1.0)
    );
    med
}

/// Issue 13: CPU per cold 12 MP thumbnail, the camera file (4:2:0, EXIF
/// orientation 6, no preview) and the phone file (MPF preview), against
/// three other ways to make the same level-1 picture from the same file.
fn cpu_per_thumbnail(fx: &Fixtures, dir: &Path) {
    println!(
        "CPU per cold thumbnail, ms (user + system, with ffmpeg/djpeg children; median of \
         {CPU_BATCHES} batches, min, max):"
    );
    println!(
        "{:<62} {:>4} {:>8} {:>8} {:>8}",
        "case", "runs", "median", "min", "max"
    );
    let cam = fx.photo_420.clone();
    let level1 = cpu_per_op(
        "isync level 1 (800 px), camera 4:2:0, no preview",
        8,
        || {
            render(&cam, FileType::Image, Some(6), ThumbLevel::Screen).expect("render");
        },
    );
    cpu_per_op("isync level 1, phone file with MPF preview", 10, || {
        render(&fx.photo_mpf, FileType::Image, Some(6), ThumbLevel::Screen).expect("render");
    });
    cpu_per_op(
        "isync level 0 (160 px), camera 4:2:0, no preview",
        8,
        || {
            render(&cam, FileType::Image, Some(6), ThumbLevel::Small).expect("render");
        },
    );
    cpu_per_op(
        "isync render_both (pre-render, both levels), camera",
        6,
        || {
            for t in render_both(&cam, FileType::Image, Some(6)) {
                t.expect("render");
            }
        },
    );
    println!("  baselines, same file to an 800 px JPEG:");
    let image_crate = cpu_per_op(
        "image crate: full decode, resize (triangle), q80 encode",
        3,
        || {
            let img = image::open(&cam).expect("decode");
            let small = img.resize(800, 800, image::imageops::FilterType::Triangle);
            let mut out = Cursor::new(Vec::new());
            small
                .write_to(&mut out, image::ImageFormat::Jpeg)
                .expect("encode");
        },
    );
    let out = dir.join("cpu-baseline.jpg");
    let ffmpeg = cpu_per_op("ffmpeg -i photo.jpg -vf scale=800:-2 out.jpg", 3, || {
        let st = Command::new(isync::media::process::ffmpeg_path())
            .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
            .arg(&cam)
            .args(["-vf", "scale=800:-2", "-q:v", "3"])
            .arg(&out)
            .status()
            .expect("run ffmpeg");
        assert!(st.success(), "ffmpeg scale");
    });
    // libjpeg-turbo (SIMD) decoding at 1/4 scale as isync does, then
    // cjpeg; the pipe between them is the shell's.
    let djpeg = Command::new("djpeg").arg("-version").output().is_ok();
    let turbo = djpeg.then(|| {
        cpu_per_op(
            "djpeg -scale 1/4 photo.jpg | cjpeg -quality 80 (libjpeg-turbo)",
            8,
            || {
                let st = Command::new("sh")
                    .arg("-c")
                    .arg(r#"djpeg -scale 1/4 "$1" | cjpeg -quality 80 > "$2""#)
                    .args([std::ffi::OsStr::new("sh"), cam.as_os_str(), out.as_os_str()])
                    .status()
                    .expect("run djpeg");
                assert!(st.success(), "djpeg | cjpeg");
            },
        )
    });
    if !djpeg {
        println!("  (djpeg not installed: apt-get install libjpeg-turbo-progs)");
    }
    if let Some(video) = &fx.video {
        cpu_per_op("isync video level 1 cold (1080p H.264, ffmpeg)", 4, || {
            render(video, FileType::Video, None, ThumbLevel::Screen).expect("render");
        });
    }
    println!(
        "  isync level 1 (camera file) uses {:.2}x the CPU of the image crate, {:.2}x ffmpeg's{}",
        level1 / image_crate,
        level1 / ffmpeg,
        turbo.map_or(String::new(), |t| format!(
            ", {:.2}x djpeg | cjpeg's",
            level1 / t
        ))
    );
}

/// A request after the pre-render worker ran: `ThumbCache::get` finding
/// the file. Returns the median in ms.
fn cache_hits(dir: &Path, photo: &Path) -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cache = ThumbCache::new(
        dir.join("cache"),
        1,
        isync::media::budget::DEFAULT_BUDGET_BYTES,
    );
    let src = ThumbSource {
        root: photo.parent().expect("in a folder").to_owned(),
        path: photo.to_owned(),
        inode: None,
        kind: FileType::Image,
        orientation: None,
    };
    rt.block_on(cache.get(1, ThumbLevel::Screen, src.clone()))
        .expect("fill cache");
    let mut wall = Vec::new();
    for _ in 0..500 {
        let t0 = Instant::now();
        rt.block_on(cache.get(1, ThumbLevel::Screen, src.clone()))
            .expect("hit");
        wall.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    assert_eq!(cache.renders(), 1);
    let (med, p95) = median_p95(&mut wall);
    println!(
        "{:<58} {:>4} {med:>10.3} {p95:>9.3} {:>10}",
        "level 1 after pre-render: cache hit (ThumbCache::get)",
        wall.len(),
        "-"
    );
    med
}

/// Whether the pre-render worker slows requests: the cold MPF render a
/// request would do, with and without a thread at nice 19 (the worker's
/// priority, set the same way) rendering full 12 MP photos nonstop,
/// alternating in rounds so that the machine's other load hits both alike.
fn contention(plain: &Path, with_mpf: &Path) {
    let request = || {
        let t0 = Instant::now();
        render(with_mpf, FileType::Image, Some(6), ThumbLevel::Screen).expect("render");
        t0.elapsed().as_secs_f64() * 1e3
    };
    let (mut alone, mut during, mut renders) = (Vec::new(), Vec::new(), 0u32);
    for _round in 0..4 {
        alone.extend((0..8).map(|_| request()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let busy = {
            let (stop, plain) = (stop.clone(), plain.to_owned());
            std::thread::spawn(move || {
                rustix::process::setpriority_process(None, 19).expect("nice 19");
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let [a, b] = render_both(&plain, FileType::Image, Some(6));
                    a.and(b).expect("render");
                    n += 1;
                }
                n
            })
        };
        std::thread::sleep(Duration::from_millis(50)); // the worker is decoding
        during.extend((0..8).map(|_| request()));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        renders += busy.join().expect("pre-render thread");
    }
    let (alone_med, alone_p95) = median_p95(&mut alone);
    let (during_med, during_p95) = median_p95(&mut during);
    for (name, n, med, p95) in [
        (
            "  that request, no pre-render running",
            alone.len(),
            alone_med,
            alone_p95,
        ),
        (
            "  that request while a nice-19 thread pre-renders",
            during.len(),
            during_med,
            during_p95,
        ),
    ] {
        println!("{name:<58} {n:>4} {med:>10.2} {p95:>9.2} {:>10}", "-");
    }
    println!(
        "  -> {:.2}x with the worker busy ({renders} originals pre-rendered meanwhile)",
        during_med / alone_med
    );
}

/// A cold level 1 of `photo` decoded on every core, against the same file
/// decoded in one piece, alternately.
fn interleaved(name: &str, photo: &Path, len: usize) {
    let (mut split, mut one) = (Vec::new(), Vec::new());
    let t0 = Instant::now();
    for i in 0..40 {
        if t0.elapsed() > 2 * CASE_BUDGET && i >= 10 {
            break;
        }
        let whole = i % 2 == 1;
        let allow = Allowance::standalone().with_decode_bands(if whole { 1 } else { 0 });
        let t = Instant::now();
        let orig = Original::open_path(photo).expect("open");
        render_original(&orig, FileType::Image, Some(6), ThumbLevel::Screen, allow)
            .expect("render");
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if whole { &mut one } else { &mut split }.push(ms);
    }
    let (sm, sp) = median_p95(&mut split);
    let (om, op) = median_p95(&mut one);
    println!(
        "{:<58} {:>4} {:>10.2} {:>9.2} {:>10}",
        name,
        split.len(),
        sm,
        sp,
        "-"
    );
    println!(
        "{:<58} {:>4} {:>10.2} {:>9.2} {:>10}",
        "  same file in one piece (baseline, interleaved)",
        one.len(),
        om,
        op,
        "-"
    );
    println!(
        "  {:.2}x faster ({} cores; {:.1} MB file)",
        om / sm.max(1e-6),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        len as f64 / 1e6
    );
}

fn median_p95(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let p95 = ((v.len() * 95).div_ceil(100)).clamp(1, v.len()) - 1;
    (v[v.len() / 2], v[p95])
}

/// CPU time of this process and its reaped children (ffmpeg), in ms.
fn process_cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime is field 14.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    ticks as f64 * 1000.0 / clock_ticks_per_s()
}

fn clock_ticks_per_s() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn jpeg(img: &image::RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(img)
        .expect("encode");
    out.into_inner()
}

/// A camera-like picture: smooth lighting gradients, multi-octave value
/// noise for texture at every scale, and per-pixel sensor grain, which is
/// what makes real 12 MP photos 3–6 MB at quality 90.
fn photo_like(w: u32, h: u32) -> image::RgbImage {
    fn hash(mut x: u32) -> u32 {
        x ^= x >> 16;
        x = x.wrapping_mul(0x7feb_352d);
        x ^= x >> 15;
        x = x.wrapping_mul(0x846c_a68b);
        x ^ (x >> 16)
    }
    fn noise(x: f32, y: f32, seed: u32) -> f32 {
        let (xi, yi) = (x.floor() as i32, y.floor() as i32);
        let (fx, fy) = (x - xi as f32, y - yi as f32);
        let at = |a: i32, b: i32| {
            let h = hash(
                (a as u32).wrapping_mul(73_856_093) ^ (b as u32).wrapping_mul(19_349_663) ^ seed,
            );
            (h & 0xffff) as f32 / 65535.0
        };
        let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
        let top = at(xi, yi) + (at(xi + 1, yi) - at(xi, yi)) * sx;
        let bottom = at(xi, yi + 1) + (at(xi + 1, yi + 1) - at(xi, yi + 1)) * sx;
        top + (bottom - top) * sy
    }
    image::RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let (mut n, mut amp, mut freq) = (0.0, 0.5, 1.0 / 300.0);
        for octave in 0..7 {
            n += amp * noise(x as f32 * freq, y as f32 * freq, octave);
            amp *= 0.55;
            freq *= 2.1;
        }
        let grain = (hash(x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) & 0xff) as f32
            / 255.0
            - 0.5;
        let r = 255.0 * (0.25 + 0.5 * fx) * (0.4 + 0.9 * n) + 26.0 * grain;
        let g = 255.0 * (0.6 - 0.3 * fy) * (0.4 + 0.9 * n) + 26.0 * grain;
        let b =
            255.0 * (0.3 + 0.4 * fy) * (0.5 + 0.7 * noise(x as f32 / 90.0, y as f32 / 90.0, 99))
                + 26.0 * grain;
        image::Rgb([
            r.clamp(0.0, 255.0) as u8,
            g.clamp(0.0, 255.0) as u8,
            b.clamp(0.0, 255.0) as u8,
        ])
    })
}

/// A `side`² PNG of black RGB pixels, written row by row.
fn zero_png(dir: &Path, side: u32) -> PathBuf {
    let path = dir.join(format!("zeros{side}.png"));
    let file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    let mut enc = png::Encoder::new(file, side, side);
    enc.set_color(png::ColorType::Rgb);
    enc.set_compression(png::Compression::Fast);
    let mut writer = enc.write_header().expect("header");
    let mut rows = writer.stream_writer().expect("rows");
    let row = vec![0u8; side as usize * 3];
    for _ in 0..side {
        std::io::Write::write_all(&mut rows, &row).expect("row");
    }
    rows.finish().expect("finish");
    path
}
