//! HEIF bench (`cargo bench --bench heif`): thumbnails of an iPhone-like
//! 4032x3024 HEIC (a 8x6 grid of 512² HEVC tiles with a 320x240 `thmb`,
//! made by `tests/it/common/heifmux.rs` from ffmpeg/libx265) and of the same
//! picture as one coded image (at crf 12, then with fewer bits at crf 28),
//! against Debian's `heif-convert` (libheif + libde265) decoding the same
//! file in the same run. Level 1 cold is one
//! full render (every tile decoded and scaled by one ffmpeg run); level 0
//! takes the embedded thumbnail; the browser view (`viewFile.icc`) decodes
//! every tile at full size, as heif-convert does. Cases are interleaved
//! round by round (A B C A B C …) so a change in the machine's load falls
//! on all of them; each prints its median wall time, its median CPU time
//! (this process and its children) and the ratio to heif-convert (goal
//! from issue 15: no slower). Then the single picture's level 1 in stages:
//! ffmpeg's start, its decode alone, the scale and the pipe, heif-convert's
//! start and decode alone.

mod common;
#[path = "../tests/it/common/heifmux.rs"]
mod heifmux;

use common::{median, SelfCpu};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use isync::media::probe::probe;
use isync::media::thumbs::render;
use isync::model::{FileType, ThumbLevel};

const W: u32 = 4032;
const H: u32 = 3024;
const TILE: u32 = 512;
const RUNS: usize = 7;

/// Runs every case once per round, `rounds` times, in order; returns each
/// case's median wall and CPU milliseconds.
fn interleaved(rounds: usize, cases: &mut [(&str, &mut dyn FnMut())]) -> Vec<(f64, f64)> {
    let mut wall = vec![Vec::new(); cases.len()];
    let mut cpu = vec![Vec::new(); cases.len()];
    for _ in 0..rounds {
        for (i, (_, f)) in cases.iter_mut().enumerate() {
            let c = SelfCpu::now();
            let t = Instant::now();
            f();
            wall[i].push(t.elapsed().as_secs_f64() * 1000.0);
            cpu[i].push(SelfCpu::since(c).total() * 1000.0);
        }
    }
    wall.iter()
        .zip(&cpu)
        .map(|(w, c)| (median(w), median(c)))
        .collect()
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A photo-like picture: gradients and hard edges.
fn picture(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let edge = if (x / 37 + y / 23) % 5 == 0 { 80 } else { 0 };
            out.extend_from_slice(&[
                (x * 255 / w) as u8 ^ edge,
                (y * 255 / h) as u8,
                ((x ^ y) % 251) as u8,
            ]);
        }
    }
    out
}

/// `c` as the Annex-B stream `heifdec` hands ffmpeg: parameter sets, then
/// the NAL units, each after a start code.
fn annex_b(c: &heifmux::Coded) -> Vec<u8> {
    let mut out = Vec::new();
    for nal in &c.config {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
    }
    let mut i = 0;
    while i < c.data.len() {
        let n = u32::from_be_bytes(c.data[i..i + 4].try_into().unwrap()) as usize;
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(&c.data[i + 4..i + 4 + n]);
        i += 4 + n;
    }
    out
}

fn have_heif_convert() -> bool {
    let have = Command::new("heif-convert").arg("--help").output().is_ok();
    if !have {
        println!("heif-convert not installed (apt-get install libheif-examples): no baseline");
    }
    have
}

fn heif_convert(src: &Path, out: &Path) -> Output {
    Command::new("heif-convert")
        .args(["-q", "80"])
        .arg(src)
        .arg(out)
        .output()
        .expect("run heif-convert")
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    println!("load at start: {}", load());
    let started = Instant::now();
    let rgb = picture(W, H);
    let (cols, rows) = (W.div_ceil(TILE) as u8, H.div_ceil(TILE) as u8);
    let mut spec = heifmux::grid(&rgb, W, H, TILE, rows, cols, heifmux::Codec::Hevc, false);
    let small = picture(320, 240);
    spec.thumbnail = Some(heifmux::encode(
        &small,
        320,
        240,
        heifmux::Codec::Hevc,
        false,
    ));
    let path = dir.path().join("IMG_0001.HEIC");
    std::fs::write(&path, heifmux::mux(&spec)).expect("write fixture");
    println!(
        "fixture in {:.1} s: {W}x{H} HEIC, {cols}x{rows} tiles of {TILE}², {:.1} MB",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&path).unwrap().len() as f64 / 1e6
    );

    // The scanner's cost per HEIC: the probe (boxes, Exif item; no decode),
    // the same file again and again (page cache hot, as a rescan sees it).
    let n = 10_000;
    let t = Instant::now();
    for _ in 0..n {
        let (kind, info) = probe(&path, FileType::Image).expect("probe");
        assert_eq!((kind, info.width), (FileType::Image, Some(i64::from(W))));
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    println!("probe: {rate:.0} HEIC files/s on one thread (goal >= 10,000)");

    let have = have_heif_convert();
    measure(&path, "grid", dir.path(), have);

    // The same picture as one coded image (no grid).
    let t = Instant::now();
    let coded = heifmux::encode(&rgb, W, H, heifmux::Codec::Hevc, false);
    let mut single = heifmux::Spec::single(coded.clone());
    single.thumbnail = spec.thumbnail.clone();
    let path1 = dir.path().join("IMG_0002.HEIC");
    std::fs::write(&path1, heifmux::mux(&single)).expect("write fixture");
    println!(
        "fixture in {:.1} s: {W}x{H} HEIC, one coded picture, {:.1} MB",
        t.elapsed().as_secs_f64(),
        std::fs::metadata(&path1).unwrap().len() as f64 / 1e6
    );
    measure(&path1, "single", dir.path(), have);

    // The same single picture with fewer bits (x265 crf 28): the decoders'
    // speeds differ with the bitrate.
    let t = Instant::now();
    let lean = heifmux::encode_crf(&rgb, W, H, heifmux::Codec::Hevc, false, 28);
    let mut single28 = heifmux::Spec::single(lean);
    single28.thumbnail = spec.thumbnail.clone();
    let path28 = dir.path().join("IMG_0003.HEIC");
    std::fs::write(&path28, heifmux::mux(&single28)).expect("write fixture");
    println!(
        "fixture in {:.1} s: {W}x{H} HEIC, one coded picture at crf 28, {:.1} MB",
        t.elapsed().as_secs_f64(),
        std::fs::metadata(&path28).unwrap().len() as f64 / 1e6
    );
    measure(&path28, "single crf 28", dir.path(), have);
    if have {
        let stream = dir.path().join("IMG_0002.hevc");
        std::fs::write(&stream, annex_b(&coded)).expect("write stream");
        stages(&path1, &stream, dir.path());
    }
}

/// isync's level 1 cold, level 0 and browser view of `path`, each
/// interleaved with heif-convert's full decode of the same file, and the
/// ratios.
fn measure(path: &Path, label: &str, dir: &Path, have: bool) {
    let out = dir.join("out.jpg");
    if have {
        let first = heif_convert(path, &out);
        if !first.status.success() {
            println!(
                "[{label}] heif-convert refuses the file: {}",
                String::from_utf8_lossy(&first.stderr).trim()
            );
            return;
        }
    }
    let mut level1 = || {
        render(path, FileType::Image, None, ThumbLevel::Screen).expect("level 1");
    };
    let mut level0 = || {
        render(path, FileType::Image, None, ThumbLevel::Small).expect("level 0");
    };
    let mut convert = || {
        if have {
            assert!(heif_convert(path, &out).status.success());
        }
    };
    let before = load();
    let t = interleaved(
        RUNS,
        &mut [
            ("level 1", &mut level1),
            ("heif-convert", &mut convert),
            ("level 0", &mut level0),
        ],
    );
    let (l1, hc, l0) = (t[0], t[1], t[2]);
    // The browser view (`viewFile.icc`): full size, or the largest size
    // the default render budget holds; against heif-convert again.
    let mut view_size = (0, 0);
    let mut view = || {
        let t = render(path, FileType::Image, None, ThumbLevel::View).expect("view");
        let s = imagesize::blob_size(&t.bytes).expect("a JPEG");
        view_size = (s.width, s.height);
    };
    let v = interleaved(
        3,
        &mut [("view", &mut view), ("heif-convert", &mut convert)],
    );
    let ratio = |a: f64, b: f64| {
        if have {
            format!("{:.2}", a / b)
        } else {
            "-".into()
        }
    };
    println!(
        "[{label}] load {before} -> {}; median wall / CPU (this process and its children)",
        load()
    );
    println!(
        "[{label}] isync level 1 cold:                   {:8.1} / {:7.1} ms  ratio {}",
        l1.0,
        l1.1,
        ratio(l1.0, hc.0)
    );
    println!(
        "[{label}] isync level 0 (embedded thumbnail):   {:8.1} / {:7.1} ms  ratio {}",
        l0.0,
        l0.1,
        ratio(l0.0, hc.0)
    );
    println!(
        "[{label}] heif-convert to JPEG q80 (same rounds): {:8.1} / {:7.1} ms",
        hc.0, hc.1
    );
    println!(
        "[{label}] isync browser view ({}x{} JPEG):    {:8.1} / {:7.1} ms  ratio {} (heif-convert {:.1} ms in its rounds)",
        view_size.0,
        view_size.1,
        v[0].0,
        v[0].1,
        ratio(v[0].0, v[1].0),
        v[1].0
    );
}

/// The ffmpeg command `heifdec` runs for one picture, reading `stream`,
/// with `extra` before the input and `out` (filter, format) after it.
fn ffmpeg(stream: &Path, threads: &str, extra: &[&str], out: &[&str]) -> Output {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-threads"])
        .arg(threads)
        .args(if threads == "1" {
            &[][..]
        } else {
            &["-thread_type", "slice"][..]
        })
        .args(extra)
        .args(["-f", "hevc", "-i", "pipe:0", "-map", "0:V:0"])
        .args(out)
        .stdin(Stdio::from(std::fs::File::open(stream).expect("stream")));
    let o = cmd.output().expect("run ffmpeg");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

/// A named stage of [`stages`] and what it runs.
type Stage<'a> = (&'a str, Box<dyn FnMut() + 'a>);

/// Level 1 of the single picture in stages, interleaved: ffmpeg's and
/// heif-convert's start alone, each decoder alone (ffmpeg to its null
/// muxer, heif-convert to Y4M: no colour conversion, no encoder), ffmpeg
/// as `heifdec` runs it (decode, bicubic scale to the 800x600 box, RGB
/// over the pipe) and variants of that, isync's whole level 1, and
/// heif-convert's JPEG.
fn stages(heic: &Path, stream: &Path, dir: &Path) {
    let box_scale = ["-vf", "scale=800:600:flags=bicubic"];
    let rgb = ["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"];
    let level1_args: Vec<&str> = box_scale.iter().chain(&rgb).copied().collect();
    let yuv_args: Vec<&str> = box_scale
        .iter()
        .chain(&["-f", "rawvideo", "-pix_fmt", "yuv420p", "pipe:1"])
        .copied()
        .collect();
    let full_args: Vec<&str> = rgb.to_vec();
    let null_args = ["-f", "null", "-"];
    let nolf = ["-skip_loop_filter", "all"];
    let (y4m, jpg) = (dir.join("stage.y4m"), dir.join("stage.jpg"));
    let mut filtered = Vec::new();
    let mut unfiltered = Vec::new();
    let mut cases: Vec<Stage> = vec![
        (
            "ffmpeg start (-version)",
            Box::new(|| {
                Command::new("ffmpeg").arg("-version").output().unwrap();
            }),
        ),
        (
            "ffmpeg decode only, 1 thread",
            Box::new(|| {
                ffmpeg(stream, "1", &[], &null_args);
            }),
        ),
        (
            "ffmpeg decode only, 2 slice threads",
            Box::new(|| {
                ffmpeg(stream, "2", &[], &null_args);
            }),
        ),
        (
            "ffmpeg level 1, loop filters kept (before)",
            Box::new(|| filtered = ffmpeg(stream, "2", &[], &level1_args).stdout),
        ),
        (
            "  the same, -skip_loop_filter all (now)",
            Box::new(|| unfiltered = ffmpeg(stream, "2", &nolf, &level1_args).stdout),
        ),
        (
            "  the same, yuv420p over the pipe",
            Box::new(|| {
                ffmpeg(stream, "2", &[], &yuv_args);
            }),
        ),
        (
            "ffmpeg full size rgb24 over the pipe",
            Box::new(|| {
                ffmpeg(stream, "2", &[], &full_args);
            }),
        ),
        (
            "isync level 1 cold",
            Box::new(|| {
                render(heic, FileType::Image, None, ThumbLevel::Screen).expect("level 1");
            }),
        ),
        (
            "heif-convert start (--help)",
            Box::new(|| {
                Command::new("heif-convert").arg("--help").output().unwrap();
            }),
        ),
        (
            "heif-convert decode only (Y4M)",
            Box::new(|| assert!(heif_convert(heic, &y4m).status.success())),
        ),
        (
            "heif-convert JPEG q80",
            Box::new(|| assert!(heif_convert(heic, &jpg).status.success())),
        ),
    ];
    let before = load();
    let mut refs: Vec<(&str, &mut dyn FnMut())> = cases
        .iter_mut()
        .map(|(n, f)| (*n, &mut **f as &mut dyn FnMut()))
        .collect();
    let t = interleaved(RUNS, &mut refs);
    let names: Vec<&str> = refs.iter().map(|(n, _)| *n).collect();
    drop(refs);
    drop(cases);
    println!(
        "[stages] single picture, level 1; load {before} -> {}; median wall / CPU",
        load()
    );
    let hc = t[names.len() - 1].0;
    for (name, (wall, cpu)) in names.iter().zip(&t) {
        println!(
            "[stages] {name:42} {wall:8.1} / {cpu:7.1} ms  ({:.2} of heif-convert JPEG)",
            wall / hc
        );
    }
    println!(
        "[stages] level 1 pixels, loop filters skipped vs kept: PSNR {:.1} dB",
        psnr(&filtered, &unfiltered)
    );
}

/// Peak signal-to-noise ratio of two 8-bit rasters of the same size.
fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let se: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum();
    let mse = se / a.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0 * 255.0 / mse).log10()
    }
}
