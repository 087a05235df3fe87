//! Videos as cameras, phones and recorders write them, through the API
//! (issue 15): a fragmented MP4 (OBS, action cams, screen recorders) lists
//! its duration; an anamorphic video lists and thumbnails at its display
//! shape; an iPhone-style HDR HEVC MOV (HLG, 10-bit, turned by its display
//! matrix) gets an upright, tone-mapped thumbnail. Fixtures are made by the
//! system ffmpeg at test time; the server is the real one over HTTP.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::*;
use image::{DynamicImage, GenericImageView};
use serde_json::json;

/// `FileType::Video` on the wire.
const TYPE_VIDEO: i64 = 4;

/// The tone map a thumbnail of HDR video is expected to match, written out
/// here (not taken from the server's code).
const REFERENCE_TONE_MAP: &str = "zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,\
    tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv,format=yuv420p";

/// Runs ffmpeg in `dir` with `args` (file names relative to `dir`).
fn ffmpeg(dir: &Path, args: &[&str]) {
    let out = Command::new("ffmpeg")
        .current_dir(dir)
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("run ffmpeg");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg {args:?}: {err}");
}

/// ffprobe's idea of a file's duration, the reference for ours.
fn ffprobe_duration(path: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration"])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().expect("ffprobe duration")
}

/// Mean red, green, blue.
fn mean_rgb(img: &DynamicImage) -> [f64; 3] {
    let rgb = img.to_rgb8();
    let n = f64::from(rgb.width() * rgb.height());
    let mut sum = [0.0; 3];
    for p in rgb.pixels() {
        for (s, v) in sum.iter_mut().zip(p.0) {
            *s += f64::from(v);
        }
    }
    sum.map(|s| s / n)
}

fn farthest(a: [f64; 3], b: [f64; 3]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Mean colour of the first frame ffmpeg makes of `name` through `filters`.
fn reference_mean(dir: &Path, name: &str, filters: &str, out: &str) -> [f64; 3] {
    ffmpeg(dir, &["-i", name, "-vf", filters, "-frames:v", "1", out]);
    mean_rgb(&image::open(dir.join(out)).expect("reference frame"))
}

async fn thumbnail(api: &Api, id: i64, level: i64) -> DynamicImage {
    let r = api
        .get("/thumbnail.icc", json!({"id": id, "level": level}))
        .await;
    let status = r.status();
    let ctype = header(&r, "content-type");
    let bytes = r.bytes().await.expect("thumbnail body");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(ctype, "image/jpeg");
    image::load_from_memory(&bytes).expect("thumbnail decodes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_camera_and_iphone_videos() {
    if !ffmpeg_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // OBS-style: empty moov, a fragment per keyframe (every second), sound.
    ffmpeg(
        d,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25:duration=5",
            "-f",
            "lavfi",
            "-i",
            "sine=duration=5",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-c:a",
            "aac",
            "-shortest",
            "-movflags",
            "frag_keyframe+empty_moov",
            "obs.mp4",
        ],
    );
    // HDV-style: 480×360 stored, 4:3 pixels (shown 640×360); red left
    // half, blue right half.
    ffmpeg(
        d,
        &[
            "-f",
            "lavfi",
            "-i",
            "color=c=red:s=240x360:r=25:d=2[l];color=c=blue:s=240x360:r=25:d=2[r];[l][r]hstack",
            "-vf",
            "setsar=4/3",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "hdv.mp4",
        ],
    );
    // iPhone-style: HLG BT.2020 10-bit HEVC in a MOV, held upright (a
    // quarter-turn display matrix on a landscape frame).
    ffmpeg(
        d,
        &[
            "-f",
            "lavfi",
            "-i",
            "color=c=0xA08060:s=320x240:r=25:d=2",
            "-vf",
            "format=yuv420p10le",
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "log-level=error",
            "-tag:v",
            "hvc1",
            "-pix_fmt",
            "yuv420p10le",
            "-color_primaries",
            "bt2020",
            "-color_trc",
            "arib-std-b67",
            "-colorspace",
            "bt2020nc",
            "flat.mov",
        ],
    );
    ffmpeg(
        d,
        &[
            "-i",
            "flat.mov",
            "-c",
            "copy",
            "-metadata:s:v:0",
            "rotate=90",
            "hdr.mov",
        ],
    );
    let read = |n: &str| std::fs::read(d.join(n)).expect("fixture");
    let app = TestApp::builder()
        .user("alice")
        .library("lib", &["alice"])
        .file("lib/obs.mp4", &read("obs.mp4"))
        .file("lib/hdv.mp4", &read("hdv.mp4"))
        .file("lib/hdr.mov", &read("hdr.mov"))
        .spawn()
        .await;

    // The fragmented recording: typed, sized, and its duration ffprobe's.
    let obs = app.api.file_named("obs.mp4").await;
    assert_eq!(obs["type"], TYPE_VIDEO, "{obs}");
    assert_eq!((&obs["width"], &obs["height"]), (&json!(320), &json!(240)));
    let listed = obs["duration"].as_f64().expect("a duration is listed");
    let reference = ffprobe_duration(&d.join("obs.mp4"));
    assert!(
        (listed - reference).abs() < 0.1 && (listed - 5.0).abs() < 0.1,
        "listed {listed} s, ffprobe {reference} s"
    );
    let img = thumbnail(&app.api, id(&obs), 0).await;
    assert_eq!(img.dimensions(), (160, 120));

    // The anamorphic video: listed and thumbnailed at its display shape,
    // the colour split still in the middle.
    let hdv = app.api.file_named("hdv.mp4").await;
    assert_eq!((&hdv["width"], &hdv["height"]), (&json!(640), &json!(360)));
    let img = thumbnail(&app.api, id(&hdv), 1).await.to_rgb8();
    assert_eq!(img.dimensions(), (640, 360));
    for (x, red) in [(20, true), (300, true), (340, false), (620, false)] {
        let p = img.get_pixel(x, 180).0;
        let is_red = p[0] > 180 && p[2] < 80;
        let is_blue = p[2] > 180 && p[0] < 80;
        assert!(if red { is_red } else { is_blue }, "x {x}: {p:?}");
    }
    let img = thumbnail(&app.api, id(&hdv), 0).await;
    assert_eq!(img.dimensions(), (160, 90));

    // The HDR phone video: upright (portrait) and tone-mapped, not washed out.
    let hdr = app.api.file_named("hdr.mov").await;
    assert_eq!((&hdr["width"], &hdr["height"]), (&json!(240), &json!(320)));
    let img = thumbnail(&app.api, id(&hdr), 0).await;
    assert_eq!(img.dimensions(), (120, 160), "turned upright");
    let thumb = mean_rgb(&img);
    let tone_mapped = reference_mean(
        d,
        "flat.mov",
        &format!("scale=160:120,{REFERENCE_TONE_MAP}"),
        "tone_mapped.png",
    );
    let naive = reference_mean(d, "flat.mov", "scale=160:120", "naive.png");
    assert!(
        farthest(thumb, tone_mapped) < 8.0,
        "thumbnail {thumb:?}, tone-mapped reference {tone_mapped:?}"
    );
    assert!(
        farthest(naive, tone_mapped) > 15.0,
        "fixture does not tell them apart: naive {naive:?}, tone-mapped {tone_mapped:?}"
    );
    app.stop().await;
}
