//! Shared by every feature module of the integration tests: the harness
//! (`TestApp`, in `app`), the client (`Api`), wire codes, and fixtures
//! generated in code (images with the `image`/`gif` crates, audio and video
//! with ffmpeg's lavfi); the real binary as a subprocess (`process`).

pub mod api;
pub mod app;
pub mod fixtures;
pub mod heifmux;
pub mod mount;
pub mod process;
pub mod upload;

pub use api::*;
pub use app::{serve, tmpfs, until, TestApp};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Password of every user a test creates unless it says otherwise.
pub const PASSWORD: &str = "correct horse";

/// Wire codes (spec §2.1) the tests assert on.
pub const OK: i64 = 0;
pub const BAD_LOGIN: i64 = -10000;
pub const NEED_LOGIN: i64 = -10001;
pub const NO_PERMISSION: i64 = -10002;
pub const BAD_PARAM: i64 = -10003;
pub const NOT_FOUND: i64 = -10004;
pub const WRONG_FILE_TYPE: i64 = -10005;
pub const FILE_GONE: i64 = -10006;
/// isync extension: the file's library is offline.
pub const LIBRARY_OFFLINE: i64 = -10011;
/// isync extension: past the free-space reserve or the uploader's quota.
pub const STORAGE_FULL: i64 = -10014;

/// The id of the first root catalog `api` sees.
pub async fn root_id(api: &Api) -> i64 {
    id(&api.catalogs("-1").await[0])
}

// ---------------------------------------------------------------- fixtures

pub fn write_file(path: &Path, bytes: &[u8]) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).expect("create parent");
    }
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A `w`×`h` JPEG with a red top-left quarter, optionally EXIF-rotated.
pub fn jpeg(w: u32, h: u32, seed: u8, orientation: Option<u16>) -> Vec<u8> {
    isync::demo::jpeg_bytes(w, h, seed, orientation)
}

/// An animated GIF of `frames` frames of `w`×`h`, each shown `delay_cs`
/// hundredths of a second (duration = frames × delay).
pub fn gif(w: u16, h: u16, frames: u8, delay_cs: u16) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = gif::Encoder::new(&mut out, w, h, &[]).expect("gif encoder");
        enc.set_repeat(gif::Repeat::Infinite).expect("gif repeat");
        for i in 0..frames {
            let px: Vec<u8> = (0..w as usize * h as usize)
                .flat_map(|n| [(n % 256) as u8, i.wrapping_mul(40), 200])
                .collect();
            let mut frame = gif::Frame::from_rgb(w, h, &px);
            frame.delay = delay_cs;
            enc.write_frame(&frame).expect("gif frame");
        }
    }
    out
}

/// Sets a file's mtime and atime to `secs` since the epoch (its ctime stays
/// now, so the scanner's createTime — the earliest of the three — is `secs`).
pub fn set_mtime(path: &Path, secs: u64) {
    let t = UNIX_EPOCH + Duration::from_secs(secs);
    let f = std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t))
        .expect("set file times");
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Whether ffmpeg can run. Under `CI=true` its absence fails the test
/// loudly; elsewhere the caller skips with a message.
pub fn ffmpeg_available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    let ok = *OK.get_or_init(|| {
        Command::new("ffmpeg")
            .arg("-version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("ffmpeg is required when CI=true (apt-get install ffmpeg)");
        }
        eprintln!("skipping: ffmpeg not found");
    }
    ok
}

/// Audio/video fixtures made once per test run (one binary) with ffmpeg's lavfi.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Av {
    /// 320×240, 2 s, H.264 + AAC.
    Mp4,
    /// 320×240 stored, 2 s, H.264, blue with a red top-left quarter-by-quarter
    /// corner (so a thumbnail shows which way it was turned), with a display
    /// matrix turning it a quarter (displayed 240×320); see
    /// [`av_orientation`] for which way.
    Mp4Rotated,
    /// 1.5 s AAC in MP4.
    M4a,
    /// 1.5 s MP3.
    Mp3,
}

fn ffmpeg(dir: &Path, args: &str) {
    let st = Command::new("ffmpeg")
        .current_dir(dir)
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args.split_whitespace())
        .status()
        .expect("run ffmpeg");
    assert!(st.success(), "ffmpeg {args} failed");
}

fn make_av(kind: Av) -> Vec<u8> {
    const VIDEO_IN: &str = "-f lavfi -i testsrc=size=320x240:rate=10:duration=2";
    const H264: &str = "-c:v libx264 -preset ultrafast -pix_fmt yuv420p";
    const TONE: &str = "-f lavfi -i sine=frequency=440:duration=1.5";
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let name = match kind {
        Av::Mp4 => {
            ffmpeg(
                d,
                &format!(
                    "{VIDEO_IN} -f lavfi -i sine=frequency=440:duration=2 {H264} -c:a aac \
                     -shortest -movflags +faststart out.mp4"
                ),
            );
            "out.mp4"
        }
        Av::Mp4Rotated => {
            // The rotate tag only becomes a display matrix on a stream copy.
            const MARKED: &str = "-f lavfi -i color=c=blue:s=320x240:r=10:d=2,\
                                  drawbox=x=0:y=0:w=80:h=60:color=red:t=fill";
            ffmpeg(d, &format!("{MARKED} {H264} plain.mp4"));
            ffmpeg(d, "-i plain.mp4 -c copy -metadata:s:v:0 rotate=90 out.mp4");
            "out.mp4"
        }
        Av::M4a => {
            ffmpeg(d, &format!("{TONE} -c:a aac out.m4a"));
            "out.m4a"
        }
        Av::Mp3 => {
            ffmpeg(d, &format!("{TONE} -c:a libmp3lame out.mp3"));
            "out.mp3"
        }
    };
    std::fs::read(d.join(name)).expect("read ffmpeg output")
}

/// The bytes of an audio/video fixture, or None (after a message) when
/// ffmpeg is missing outside CI.
pub fn av(kind: Av) -> Option<&'static [u8]> {
    type Made = Vec<(Av, &'static [u8])>;
    static CACHE: OnceLock<std::sync::Mutex<Made>> = OnceLock::new();
    if !ffmpeg_available() {
        return None;
    }
    let cache = CACHE.get_or_init(Default::default);
    let mut g = cache.lock().expect("fixture cache");
    if let Some((_, b)) = g.iter().find(|(k, _)| *k == kind) {
        return Some(b);
    }
    // Leaked on purpose: one small buffer per kind for the whole test run.
    let bytes: &'static [u8] = Box::leak(make_av(kind).into_boxed_slice());
    g.push((kind, bytes));
    Some(bytes)
}

/// The orientation (spec §2.4) a video fixture's display matrix calls for,
/// as ffprobe reads it (its `rotation` is counter-clockwise degrees). The
/// direction ffmpeg gives a `rotate` tag changed between versions, so the
/// tests ask ffprobe rather than assume.
pub fn av_orientation(bytes: &[u8]) -> Option<i64> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v.mp4");
    std::fs::write(&path, bytes).expect("write fixture");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream_side_data=rotation",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .expect("run ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    let ccw: i64 = text.trim().trim_end_matches(',').parse().ok()?;
    match ccw.rem_euclid(360) {
        90 => Some(8),
        180 => Some(3),
        270 => Some(6),
        _ => None,
    }
}
