//! Thumbnail bench (`cargo bench --bench thumbs`): renders from a 12 MP
//! camera-like JPEG and a 1080p H.264 clip it generates itself, against a
//! full-size decode with the `image` crate as baseline, and compares the
//! JPEG decoders the renderer could use. Runs in well under a minute.
//!
//! The machine is shared, so besides wall-clock medians it prints CPU time
//! per run: the whole process's plus its waited-for children's (ffmpeg), from
//! /proc/self/stat, averaged over the runs. That is what an idle machine
//! would spend; wall time there is at most that (jpeg-decoder runs its IDCT
//! on a helper thread, ffmpeg decodes with frame threads).

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use isync::media::thumbcache::{ThumbCache, ThumbKey, ThumbSource};
use isync::media::thumbs::render;
use isync::model::{FileType, ThumbLevel};

const PHOTO_W: u32 = 4000;
const PHOTO_H: u32 = 3000;
/// Stop measuring a case after this long even if it has fewer runs.
const CASE_BUDGET: Duration = Duration::from_secs(4);

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let fixtures = Fixtures::make(dir.path());
    println!(
        "fixtures in {:.1} s: {}x{} JPEG q90, {:.1} MB (+ {} B EXIF thumbnail); video: {}",
        started.elapsed().as_secs_f64(),
        PHOTO_W,
        PHOTO_H,
        fixtures.photo_len as f64 / 1e6,
        fixtures.exif_thumb_len,
        if fixtures.video.is_some() {
            "1080p 5 s H.264"
        } else {
            "none (no ffmpeg)"
        }
    );
    println!();
    println!(
        "{:<58} {:>4} {:>10} {:>9} {:>10}",
        "case", "runs", "median ms", "p95 ms", "cpu ms/run"
    );

    let with_exif = fixtures.photo_exif.clone();
    let plain = fixtures.photo.clone();
    let baseline = measure("baseline: image crate full decode (12 MP)", 10, || {
        image::open(&plain).expect("decode");
    });
    let level1 = measure(
        "level 1 cold render, orientation 6 (target < 40 ms)",
        20,
        || {
            render(&plain, FileType::Image, Some(6), ThumbLevel::Screen).expect("render");
        },
    );
    measure("level 1 cold render, upright", 20, || {
        render(&plain, FileType::Image, None, ThumbLevel::Screen).expect("render");
    });
    measure(
        "level 0 cold render via EXIF thumb (target < 10 ms)",
        40,
        || {
            render(&with_exif, FileType::Image, Some(6), ThumbLevel::Small).expect("render");
        },
    );
    measure(
        "level 0 cold render, no EXIF thumb (1/8 decode)",
        20,
        || {
            render(&plain, FileType::Image, Some(6), ThumbLevel::Small).expect("render");
        },
    );
    cache_hits(dir.path(), &plain);
    if let Some(video) = &fixtures.video {
        measure("video level 1 (ffmpeg, target < 300 ms)", 10, || {
            render(video, FileType::Video, None, ThumbLevel::Screen).expect("render");
        });
        measure("video level 0 (ffmpeg)", 10, || {
            render(video, FileType::Video, None, ThumbLevel::Small).expect("render");
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
        "level 1 render vs baseline full decode: {:.1}x faster (wall), {:.1}x (cpu)",
        baseline.wall / level1.wall,
        baseline.cpu / level1.cpu
    );
    println!("total bench time {:.1} s", started.elapsed().as_secs_f64());
}

struct Fixtures {
    photo: PathBuf,
    photo_exif: PathBuf,
    photo_len: usize,
    exif_thumb_len: usize,
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
        let photo_exif = dir.join("photo-exif.jpg");
        std::fs::write(&photo_exif, with_exif(&main, 6, &thumb)).expect("write photo");
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
            photo_len: main.len(),
            exif_thumb_len: thumb.len(),
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

fn cache_hits(dir: &Path, photo: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cache = ThumbCache::new(dir.join("cache"), 1);
    let key = ThumbKey {
        file_id: 1,
        level: ThumbLevel::Screen,
        fingerprint: 42,
    };
    let src = ThumbSource {
        path: photo.to_owned(),
        kind: FileType::Image,
        orientation: None,
    };
    rt.block_on(cache.get(key, src.clone()))
        .expect("fill cache");
    let mut wall = Vec::new();
    for _ in 0..500 {
        let t0 = Instant::now();
        rt.block_on(cache.get(key, src.clone())).expect("hit");
        wall.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    assert_eq!(cache.renders(), 1);
    let (med, p95) = median_p95(&mut wall);
    println!(
        "{:<58} {:>4} {med:>10.3} {p95:>9.3} {:>10}",
        "cache hit: ThumbCache::get (target < 2 ms)",
        wall.len(),
        "-"
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

/// `jpeg` with an APP1 Exif segment: IFD0 Orientation, IFD1 thumbnail.
fn with_exif(jpeg: &[u8], orientation: u16, thumb: &[u8]) -> Vec<u8> {
    let entry = |tiff: &mut Vec<u8>, tag: u16, typ: u16, value: u32| {
        tiff.extend_from_slice(&tag.to_le_bytes());
        tiff.extend_from_slice(&typ.to_le_bytes());
        tiff.extend_from_slice(&1u32.to_le_bytes());
        tiff.extend_from_slice(&value.to_le_bytes());
    };
    let ifd1_at: u32 = 8 + 2 + 12 + 4;
    let data_at = ifd1_at + 2 + 3 * 12 + 4;
    let mut tiff = b"II*\0".to_vec();
    tiff.extend_from_slice(&8u32.to_le_bytes());
    tiff.extend_from_slice(&1u16.to_le_bytes());
    entry(&mut tiff, 0x0112, 3, u32::from(orientation));
    tiff.extend_from_slice(&ifd1_at.to_le_bytes());
    tiff.extend_from_slice(&3u16.to_le_bytes());
    entry(&mut tiff, 0x0103, 3, 6);
    entry(&mut tiff, 0x0201, 4, data_at);
    entry(&mut tiff, 0x0202, 4, thumb.len() as u32);
    tiff.extend_from_slice(&0u32.to_le_bytes());
    tiff.extend_from_slice(thumb);
    let mut app1 = vec![0xFF, 0xE1];
    app1.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
    app1.extend_from_slice(b"Exif\0\0");
    app1.extend_from_slice(&tiff);
    let mut at = 2;
    if jpeg[2..4] == [0xFF, 0xE0] {
        at += 2 + usize::from(u16::from_be_bytes([jpeg[4], jpeg[5]]));
    }
    [&jpeg[..at], &app1, &jpeg[at..]].concat()
}
