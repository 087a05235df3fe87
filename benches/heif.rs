//! HEIF bench (`cargo bench --bench heif`): thumbnails of an iPhone-like
//! 4032x3024 HEIC (a 8x6 grid of 512² HEVC tiles with a 320x240 `thmb`,
//! made by `tests/it/common/heifmux.rs` from ffmpeg/libx265) against Debian's
//! `heif-convert` (libheif + libde265) decoding the same file in the same
//! run. Level 1 cold is one full render (every tile decoded and scaled by
//! one ffmpeg run); level 0 takes the embedded thumbnail; the browser view
//! (`viewFile.icc`) decodes every tile at full size, as heif-convert does.
//! Prints medians and the ratio to heif-convert (goal from issue 15: no
//! slower).

mod common;
#[path = "../tests/it/common/heifmux.rs"]
mod heifmux;

use common::median;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use isync::media::probe::probe;
use isync::media::thumbs::render;
use isync::model::{FileType, ThumbLevel};

const W: u32 = 4032;
const H: u32 = 3024;
const TILE: u32 = 512;
const RUNS: usize = 7;

fn time(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f();
        v.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    median(&v)
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

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
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

    measure(&path, "grid", dir.path());

    // The same picture as one coded image (no grid): what heif-convert
    // reads where it refuses the muxer's grid.
    let t = Instant::now();
    let mut single =
        heifmux::Spec::single(heifmux::encode(&rgb, W, H, heifmux::Codec::Hevc, false));
    single.thumbnail = spec.thumbnail.clone();
    let path1 = dir.path().join("IMG_0002.HEIC");
    std::fs::write(&path1, heifmux::mux(&single)).expect("write fixture");
    println!(
        "fixture in {:.1} s: {W}x{H} HEIC, one coded picture, {:.1} MB",
        t.elapsed().as_secs_f64(),
        std::fs::metadata(&path1).unwrap().len() as f64 / 1e6
    );
    measure(&path1, "single", dir.path());
}

/// isync's level 1 cold, level 0 and browser view of `path`, then
/// heif-convert's full decode of the same file, and the ratios.
fn measure(path: &Path, label: &str, dir: &Path) {
    let level1 = time(RUNS, || {
        render(path, FileType::Image, None, ThumbLevel::Screen).expect("level 1");
    });
    let level0 = time(RUNS, || {
        render(path, FileType::Image, None, ThumbLevel::Small).expect("level 0");
    });
    // The browser view (`viewFile.icc`): full size, or the largest size
    // the default render budget holds.
    let mut view_size = (0, 0);
    let view = time(3, || {
        let t = render(path, FileType::Image, None, ThumbLevel::View).expect("view");
        let s = imagesize::blob_size(&t.bytes).expect("a JPEG");
        view_size = (s.width, s.height);
    });
    println!("[{label}] isync level 1 cold (all tiles):      median {level1:8.1} ms");
    println!("[{label}] isync level 0 (embedded thumbnail):  median {level0:8.1} ms");
    println!(
        "[{label}] isync browser view ({}x{} JPEG): median {view:8.1} ms",
        view_size.0, view_size.1
    );

    let have = Command::new("heif-convert").arg("--help").output().is_ok();
    if !have {
        println!("heif-convert not installed (apt-get install libheif-examples): no baseline");
        return;
    }
    let out = dir.join("out.jpg");
    let convert = |p: &Path| {
        Command::new("heif-convert")
            .args(["-q", "80"])
            .arg(p)
            .arg(&out)
            .output()
            .expect("run heif-convert")
    };
    let first = convert(path);
    if !first.status.success() {
        println!(
            "[{label}] heif-convert refuses the file: {}",
            String::from_utf8_lossy(&first.stderr).trim()
        );
        return;
    }
    let baseline = time(RUNS, || {
        assert!(convert(path).status.success());
    });
    println!("[{label}] heif-convert full decode to JPEG:    median {baseline:8.1} ms");
    println!(
        "[{label}] ratio to heif-convert: level 1 {:.2}, level 0 {:.2}, view {:.2} (< 1 is faster)",
        level1 / baseline,
        level0 / baseline,
        view / baseline
    );
}
