//! Unit tests of probing audio and video: the native MP4 walker and
//! ffprobe, on files made by the real ffmpeg.

use super::super::ffprobe::probe_with_ffprobe;
use super::*;
use crate::media::process;
use std::process::Command;

#[test]
fn garbage_av_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "noise.mp4", &noise(10_000, 4));
    assert!(probe(&path, FileType::Video).is_err());
    let err = probe(&dir.path().join("gone.mkv"), FileType::Video).unwrap_err();
    assert!(matches!(err, ProbeError::Io { .. }), "{err}");
}

// ---- fixtures made by the real ffmpeg ----

/// Whether ffmpeg and ffprobe can run. Under `CI=true` their absence fails
/// the test; elsewhere the test is skipped with a note.
fn have_ffmpeg() -> bool {
    let runs = |p: PathBuf| {
        Command::new(p)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if runs(process::ffmpeg_path()) && runs(process::ffprobe_path()) {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "ffmpeg/ffprobe are required when CI=true (apt-get install ffmpeg)"
    );
    eprintln!("skipping: ffmpeg/ffprobe not found");
    false
}

/// Runs ffmpeg in `dir` with whitespace-separated `args`; file names are
/// relative to `dir`, so the temp path never needs quoting.
fn ffmpeg(dir: &Path, args: &str) {
    let out = Command::new(process::ffmpeg_path())
        .current_dir(dir)
        .args(["-v", "error", "-y"])
        .args(args.split_whitespace())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg {args}: {err}");
}

/// 2 s of 320x240 test pattern at 10 fps plus a sine tone.
const AV_INPUTS: &str = "-f lavfi -i testsrc=size=320x240:rate=10:duration=2 \
    -f lavfi -i sine=duration=2 -c:v mpeg4 -q:v 3 -c:a aac -shortest";
const TONE: &str = "-f lavfi -i sine=duration=2";

fn assert_secs(actual: Option<f64>, expect: f64) {
    let d = actual.expect("a duration");
    let close = (d - expect).abs() < 0.15;
    assert!(close, "duration {d}, expected ≈ {expect}");
}

#[test]
fn mp4_and_mov_are_read_natively() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let created = "-metadata creation_time=2020-05-17T10:20:30Z";
    for (name, extra) in [("a.mp4", created), ("a.mov", created), ("a.3gp", "")] {
        ffmpeg(dir.path(), &format!("{AV_INPUTS} {extra} {name}"));
        let path = dir.path().join(name);
        let native = mp4::read_info(File::open(&path).unwrap()).unwrap();
        let (kind, info) = probe(&path, FileType::Video).unwrap();
        let used_native = media_from_mp4(&native) == (kind, info.clone());
        assert!(
            used_native,
            "{name}: probe disagrees with the native reader"
        );
        assert_eq!(kind, FileType::Video, "{name}");
        assert_eq!(dims(&info), (Some(320), Some(240)), "{name}");
        assert_eq!(info.orientation, None, "{name}");
        assert_secs(info.duration, 2.0);
        let expect_time = (!extra.is_empty()).then_some(1_589_710_830);
        assert_eq!(info.capture_time, expect_time, "{name}");
        let (ff_kind, ff_info) = probe_with_ffprobe(&path).unwrap();
        let ff = (ff_kind, dims(&ff_info));
        assert_eq!(ff, (kind, dims(&info)), "ffprobe agrees on {name}");
    }
}

/// Mean absolute difference of two same-sized images, 0–255.
fn image_diff(a: &Path, b: &Path) -> f64 {
    let a = image::open(a).unwrap().to_rgb8();
    let b = image::open(b).unwrap().to_rgb8();
    assert_eq!(a.dimensions(), b.dimensions());
    let pairs = a.as_raw().iter().zip(b.as_raw());
    let total: u64 = pairs.map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
    total as f64 / a.as_raw().len() as f64
}

/// Ground truth for the sign of rotation: ffmpeg applies the display
/// matrix when it decodes, so the frame it shows is compared with the
/// stored frame turned clockwise and counter-clockwise.
#[test]
fn video_rotation_matches_what_ffmpeg_displays() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (d, at) = (dir.path(), |n: &str| dir.path().join(n));
    ffmpeg(d, &format!("{AV_INPUTS} plain.mp4"));
    for (filter, out) in [("transpose=clock", "cw"), ("transpose=cclock", "ccw")] {
        ffmpeg(
            d,
            &format!("-i plain.mp4 -vf {filter} -frames:v 1 {out}.png"),
        );
    }
    ffmpeg(d, "-i plain.mp4 -vf hflip,vflip -frames:v 1 half.png");
    for tag in [90, 180, 270] {
        let name = format!("rot{tag}.mp4");
        ffmpeg(
            d,
            &format!("-i plain.mp4 -c copy -metadata:s:v:0 rotate={tag} {name}"),
        );
        ffmpeg(d, &format!("-i {name} -frames:v 1 shown{tag}.png"));
        let shown = at(&format!("shown{tag}.png"));
        let expect = if tag == 180 {
            assert!(image_diff(&shown, &at("half.png")) < 8.0);
            3
        } else {
            let cw = image_diff(&shown, &at("cw.png"));
            let ccw = image_diff(&shown, &at("ccw.png"));
            let clear = cw.min(ccw) < 8.0 && cw.max(ccw) > 30.0;
            assert!(clear, "cw {cw}, ccw {ccw}");
            if cw < ccw {
                6
            } else {
                8
            }
        };
        let (kind, info) = probe(&at(&name), FileType::Video).unwrap();
        assert_eq!(kind, FileType::Video);
        assert_eq!(info.orientation, Some(expect), "rotate={tag}");
        let want = if expect == 3 { (320, 240) } else { (240, 320) };
        assert_eq!(dims(&info), (Some(want.0), Some(want.1)), "rotate={tag}");
        let (_, ff) = probe_with_ffprobe(&at(&name)).unwrap();
        let same = (ff.orientation, dims(&ff)) == (info.orientation, dims(&info));
        assert!(
            same,
            "ffprobe disagrees for rotate={tag}: {ff:?} vs {info:?}"
        );
    }
}

#[test]
fn audio_files_are_audio() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ffmpeg(d, &format!("{TONE} -c:a aac a.m4a"));
    ffmpeg(d, &format!("{TONE} -c:a libmp3lame a.mp3"));
    // An MP3 with cover art: a video stream marked attached_pic.
    ffmpeg(d, "-f lavfi -i testsrc=size=64x64 -frames:v 1 cover.png");
    ffmpeg(
        d,
        &format!(
            "{TONE} -i cover.png -map 0 -map 1 -c:a libmp3lame -c:v png \
             -disposition:v attached_pic -id3v2_version 3 cover.mp3"
        ),
    );
    for name in ["a.m4a", "a.mp3", "cover.mp3"] {
        let (kind, info) = probe(&d.join(name), FileType::Audio).unwrap();
        assert_eq!(kind, FileType::Audio, "{name}");
        assert_eq!(
            (dims(&info), info.orientation),
            ((None, None), None),
            "{name}"
        );
        assert_secs(info.duration, 2.0);
    }
    // An m4a is read natively, without ffprobe.
    let native = mp4::read_info(File::open(d.join("a.m4a")).unwrap()).unwrap();
    assert_eq!(native.file_type(), FileType::Audio);
}

#[test]
fn other_containers_go_through_ffprobe() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ffmpeg(d, &format!("{AV_INPUTS} a.mkv"));
    let (kind, info) = probe(&d.join("a.mkv"), FileType::Video).unwrap();
    assert_eq!(
        (kind, dims(&info)),
        (FileType::Video, (Some(320), Some(240)))
    );
    assert_secs(info.duration, 2.0);
    // Motion JPEG without sound, as old compact cameras wrote.
    ffmpeg(
        d,
        "-f lavfi -i testsrc=size=320x240:rate=10:duration=2 -c:v mjpeg m.avi",
    );
    let (kind, info) = probe(&d.join("m.avi"), FileType::Video).unwrap();
    assert_eq!(
        (kind, dims(&info)),
        (FileType::Video, (Some(320), Some(240)))
    );
}

/// What OBS, action cams and screen recorders write: an empty moov,
/// the samples in moof+mdat fragments. ffprobe is the reference.
#[test]
fn fragmented_mp4s_list_their_duration() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let long = "-f lavfi -i testsrc=size=320x240:rate=10:duration=5 \
        -f lavfi -i sine=duration=5 -c:v libx264 -preset ultrafast -g 10 -c:a aac -shortest";
    for (name, flags) in [
        ("frag.mp4", "frag_keyframe+empty_moov"),
        ("frag.mov", "frag_keyframe+empty_moov+default_base_moof"),
        // The first fragment inside the moov itself.
        ("hybrid.mp4", "frag_keyframe"),
    ] {
        ffmpeg(d, &format!("{long} -movflags {flags} {name}"));
        let path = d.join(name);
        let native = mp4::read_info(File::open(&path).unwrap()).unwrap();
        let (kind, info) = probe(&path, FileType::Video).unwrap();
        assert_eq!(media_from_mp4(&native), (kind, info.clone()), "{name}");
        assert_eq!(kind, FileType::Video, "{name}");
        assert_eq!(dims(&info), (Some(320), Some(240)), "{name}");
        let (_, ff) = probe_with_ffprobe(&path).unwrap();
        let (ours, theirs) = (info.duration.unwrap(), ff.duration.unwrap());
        assert!(
            (ours - theirs).abs() < 0.1,
            "{name}: {ours} vs ffprobe {theirs}"
        );
        assert_secs(info.duration, 5.0);
    }
}

/// Anamorphic video (non-square pixels) is listed at the size it is
/// shown, by the native reader (tkhd) and through ffprobe (mkv) alike.
#[test]
fn anamorphic_video_lists_its_display_size() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = "-f lavfi -i testsrc=size=480x360:rate=10:duration=1 -c:v libx264 -preset ultrafast";
    for name in ["wide.mp4", "wide.mkv"] {
        ffmpeg(d, &format!("{src} -vf setsar=4/3 {name}"));
        let (kind, info) = probe(&d.join(name), FileType::Video).unwrap();
        assert_eq!(kind, FileType::Video);
        assert_eq!(dims(&info), (Some(640), Some(360)), "{name}");
    }
    ffmpeg(d, &format!("{src} -vf setsar=3/4 tall.mkv"));
    let (_, info) = probe(&d.join("tall.mkv"), FileType::Video).unwrap();
    assert_eq!(dims(&info), (Some(360), Some(360)));
}

#[test]
fn truncated_mp4s() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // moov at the end: cutting the file loses it, and ffprobe agrees.
    ffmpeg(d, &format!("{AV_INPUTS} tail.mp4"));
    let tail = std::fs::read(d.join("tail.mp4")).unwrap();
    let cut = write(d, "cut.mp4", &tail[..tail.len() / 2]);
    assert!(mp4::read_info(File::open(&cut).unwrap()).is_err());
    assert!(probe(&cut, FileType::Video).is_err());
    // moov first: a file cut inside mdat still has a complete header.
    ffmpeg(d, &format!("{AV_INPUTS} -movflags +faststart front.mp4"));
    let front = std::fs::read(d.join("front.mp4")).unwrap();
    let cut = write(d, "cut2.mp4", &front[..front.len() * 2 / 3]);
    let native = mp4::read_info(File::open(&cut).unwrap()).unwrap();
    assert_eq!(native.file_type(), FileType::Video);
    let (kind, info) = probe(&cut, FileType::Video).unwrap();
    assert_eq!(
        (kind, dims(&info)),
        (FileType::Video, (Some(320), Some(240)))
    );
}
