//! Unit tests of probing stills by content, and of what every probe
//! shares (opening the file the walk saw, typing by name).

use super::content::HEAD_BUF;
use super::gifwalk::walk_gif;
use super::*;
use crate::media::exifmeta;
use std::io::{Cursor, Read};
use std::path::PathBuf;
use std::time::Instant;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Security issue #12, finding 5 (the scanner's side): what the walk
/// saw is what gets probed. A listed file swapped for a symlink to an
/// outside photo, a folder on its path swapped for a symlink to an
/// outside folder, another file renamed over it, or a FIFO in its
/// place: an `Io` error (skipped), never the outside file's size, and
/// no wait on the FIFO.
#[test]
fn a_file_swapped_after_the_walk_is_not_probed() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(outside.join("album")).unwrap();
    std::fs::create_dir_all(lib.join("album")).unwrap();
    let gif = |w: u8| {
        let mut g = b"GIF89a".to_vec();
        g.extend_from_slice(&[w, 0, 7, 0, 0, 0, 0, 0x3b]);
        g
    };
    write(&outside, "secret.gif", &gif(99));
    write(&outside.join("album"), "a.gif", &gif(99));
    let a = write(&lib.join("album"), "a.gif", &gif(5));
    let seen = |p: &Path| {
        let m = std::fs::symlink_metadata(p).unwrap();
        (m.dev(), m.ino())
    };
    let walked = seen(&a);
    let (t, info) = probe_expecting(&a, FileType::Gif, Some(walked)).unwrap();
    assert_eq!(
        (t, info.width, info.height),
        (FileType::Gif, Some(5), Some(7))
    );
    let refused = |p: &Path, what: &str| match probe_expecting(p, FileType::Gif, Some(walked)) {
        Err(ProbeError::Io { .. }) => {}
        other => panic!("{what}: {other:?}"),
    };

    // The file itself swapped for a symlink.
    std::fs::rename(&a, lib.join("kept.gif")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.gif"), &a).unwrap();
    refused(&a, "symlink in place of the file");
    std::fs::remove_file(&a).unwrap();
    // The folder swapped for a symlink to an outside folder holding a
    // file of the same name.
    std::fs::rename(lib.join("album"), lib.join("album.old")).unwrap();
    std::os::unix::fs::symlink(outside.join("album"), lib.join("album")).unwrap();
    refused(&a, "symlink in place of the folder");
    std::fs::remove_file(lib.join("album")).unwrap();
    std::fs::rename(lib.join("album.old"), lib.join("album")).unwrap();
    // Another file renamed over it.
    let other = write(&lib, "other.gif", &gif(42));
    std::fs::rename(&other, &a).unwrap();
    refused(&a, "another file");
    // A FIFO: refused at once (the open does not wait for a writer).
    std::fs::remove_file(&a).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &a,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    for guess in [FileType::Gif, FileType::Video] {
        match probe_expecting(&a, guess, None) {
            Err(ProbeError::Io { .. }) => {}
            other => panic!("fifo as {guess:?}: {other:?}"),
        }
    }
}

/// A little-endian TIFF/Exif block with IFD0 (Orientation, Exif pointer)
/// and an Exif IFD (DateTimeOriginal, OffsetTimeOriginal).
fn tiff_exif(orientation: Option<u16>, taken: Option<&str>, offset: Option<&str>) -> Vec<u8> {
    type Entry = (u16, u16, Vec<u8>); // tag, TIFF type, value bytes
    let ascii = |s: &str| [s.as_bytes(), &[0]].concat();
    let mut ifd0: Vec<Entry> = Vec::new();
    if let Some(o) = orientation {
        ifd0.push((0x0112, 3, o.to_le_bytes().to_vec()));
    }
    let mut exif_ifd: Vec<Entry> = Vec::new();
    if let Some(t) = taken {
        exif_ifd.push((0x9003, 2, ascii(t)));
    }
    if let Some(o) = offset {
        exif_ifd.push((0x9011, 2, ascii(o)));
    }
    let ifd_len = |n: usize| 2 + 12 * n + 4;
    let exif_at = 8 + ifd_len(ifd0.len() + 1);
    ifd0.push((0x8769, 4, (exif_at as u32).to_le_bytes().to_vec()));
    let mut data_at = exif_at + ifd_len(exif_ifd.len());
    let mut out = b"II*\0\x08\0\0\0".to_vec();
    let mut data = Vec::new();
    for ifd in [&ifd0, &exif_ifd] {
        out.extend_from_slice(&(ifd.len() as u16).to_le_bytes());
        for (tag, typ, value) in ifd.iter() {
            let count = if *typ == 3 {
                value.len() / 2
            } else if *typ == 4 {
                1
            } else {
                value.len()
            };
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&typ.to_le_bytes());
            out.extend_from_slice(&(count as u32).to_le_bytes());
            if value.len() <= 4 {
                let mut inline = value.clone();
                inline.resize(4, 0);
                out.extend_from_slice(&inline);
            } else {
                out.extend_from_slice(&(data_at as u32).to_le_bytes());
                data_at += value.len();
                data.extend_from_slice(value);
            }
        }
        out.extend_from_slice(&[0; 4]);
    }
    out.extend_from_slice(&data);
    out
}

fn app_segment(marker: u8, body: &[u8]) -> Vec<u8> {
    let mut seg = vec![0xFF, marker];
    seg.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
    seg.extend_from_slice(body);
    seg
}

/// A real JPEG from the `image` crate with `segments` spliced in after SOI.
fn jpeg(w: u32, h: u32, segments: &[Vec<u8>]) -> Vec<u8> {
    let pixels: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
    let mut encoded = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut encoded, 80)
        .encode(&pixels, w, h, image::ExtendedColorType::Rgb8)
        .unwrap();
    [&encoded[..2], &segments.concat(), &encoded[2..]].concat()
}

fn exif_jpeg(w: u32, h: u32, orientation: Option<u16>, taken: Option<&str>) -> Vec<u8> {
    let body = [&b"Exif\0\0"[..], &tiff_exif(orientation, taken, None)].concat();
    jpeg(w, h, &[app_segment(0xE1, &body)])
}

fn gif(frames: &[u16]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        // 256 colours and noisy pixels, so frames don't compress away.
        let palette: Vec<u8> = (0..=255u8).flat_map(|i| [i, 255 - i, i / 2]).collect();
        let mut enc = gif::Encoder::new(&mut out, 30, 20, &palette).unwrap();
        enc.set_repeat(gif::Repeat::Infinite).unwrap();
        for (i, &delay) in frames.iter().enumerate() {
            let mut frame = gif::Frame {
                width: 30,
                height: 20,
                delay,
                buffer: std::borrow::Cow::Owned(noise(600, i as u32)),
                ..gif::Frame::default()
            };
            frame.make_lzw_pre_encoded();
            enc.write_lzw_pre_encoded_frame(&frame).unwrap();
        }
    }
    out
}

fn noise(len: usize, mut seed: u32) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 24) as u8
        })
        .collect()
}

fn dims(info: &MediaInfo) -> (Option<i64>, Option<i64>) {
    (info.width, info.height)
}

#[test]
fn classifies_by_extension_case_insensitively() {
    let c = |n: &str| classify_by_name(Path::new(n));
    assert_eq!(c("a/IMG_1.JPG"), FileType::Image);
    assert_eq!(c("x.heic"), FileType::Image);
    assert_eq!(c("x.Dng"), FileType::Image);
    assert_eq!(c("x.gif"), FileType::Gif);
    assert_eq!(c("x.MOV"), FileType::Video);
    assert_eq!(c("x.m2ts"), FileType::Video);
    assert_eq!(c("x.webm"), FileType::Video);
    assert_eq!(c("x.flac"), FileType::Audio);
    assert_eq!(c("x.M4A"), FileType::Audio);
    assert_eq!(c("x.txt"), FileType::Other);
    assert_eq!(c("README"), FileType::Other);
    assert_eq!(c(".jpg"), FileType::Other, "a dotfile has no extension");
}

#[test]
fn exif_orientation_gives_display_dimensions() {
    let dir = tempfile::tempdir().unwrap();
    for (o, expect) in [
        (1, (64, 48)),
        (3, (64, 48)),
        (5, (48, 64)),
        (6, (48, 64)),
        (8, (48, 64)),
    ] {
        let path = write(
            dir.path(),
            &format!("o{o}.jpg"),
            &exif_jpeg(64, 48, Some(o), None),
        );
        let (kind, info) = probe(&path, FileType::Image).unwrap();
        assert_eq!(kind, FileType::Image);
        assert_eq!(info.orientation, Some(i64::from(o)), "orientation {o}");
        assert_eq!(
            dims(&info),
            (Some(expect.0), Some(expect.1)),
            "orientation {o}"
        );
        assert_eq!(info.duration, None);
    }
    let plain = write(dir.path(), "plain.jpg", &jpeg(64, 48, &[]));
    let (_, info) = probe(&plain, FileType::Image).unwrap();
    assert_eq!(
        (dims(&info), info.orientation),
        ((Some(64), Some(48)), None)
    );
    assert_eq!(info.capture_time, None);
}

#[test]
fn exif_capture_time_with_and_without_offset() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (None, Some(1_623_760_496)),
        (Some("+02:00"), Some(1_623_760_496 - 7200)),
        (Some("-05:30"), Some(1_623_760_496 + 19_800)),
        (Some("bogus!"), Some(1_623_760_496)),
    ];
    for (i, (offset, expect)) in cases.into_iter().enumerate() {
        let tiff = tiff_exif(Some(1), Some("2021:06:15 12:34:56"), offset);
        let body = [&b"Exif\0\0"[..], &tiff].concat();
        let path = write(
            dir.path(),
            &format!("t{i}.jpg"),
            &jpeg(8, 8, &[app_segment(0xE1, &body)]),
        );
        let (_, info) = probe(&path, FileType::Image).unwrap();
        assert_eq!(info.capture_time, expect, "offset {offset:?}");
    }
    let blank = write(
        dir.path(),
        "z.jpg",
        &exif_jpeg(8, 8, None, Some("0000:00:00 00:00:00")),
    );
    let (_, info) = probe(&blank, FileType::Image).unwrap();
    assert_eq!((info.capture_time, info.orientation), (None, None));
}

#[test]
fn exif_and_frame_header_beyond_the_first_read() {
    let dir = tempfile::tempdir().unwrap();
    // XMP first, then three 60 KB APP2 segments push both the Exif
    // segment and the frame header past the 128 KiB head.
    let mut segments = vec![app_segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x/>")];
    segments.extend((0..3).map(|_| app_segment(0xE2, &vec![0x5A; 60_000])));
    let body = [
        &b"Exif\0\0"[..],
        &tiff_exif(Some(6), Some("2001:02:03 04:05:06"), None),
    ]
    .concat();
    segments.push(app_segment(0xE1, &body));
    let path = write(dir.path(), "big.jpg", &jpeg(40, 30, &segments));
    let (kind, info) = probe(&path, FileType::Image).unwrap();
    assert_eq!(kind, FileType::Image);
    assert_eq!(info.orientation, Some(6));
    assert_eq!(dims(&info), (Some(30), Some(40)));
    assert_eq!(
        info.capture_time,
        exifmeta::unix_from_civil(2001, 2, 3, 4, 5, 6)
    );
    HEAD_BUF.with(|b| assert_eq!(b.borrow().len(), HEAD_BYTES, "head buffer shrinks back"));
}

#[test]
fn images_are_typed_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let mut png = Vec::new();
    image::RgbImage::new(33, 17)
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    for name in ["a.png", "png-named.jpg", "noext"] {
        let path = write(dir.path(), name, &png);
        let (kind, info) = probe(&path, classify_by_name(&path)).unwrap();
        assert_eq!(
            (kind, dims(&info)),
            (FileType::Image, (Some(33), Some(17))),
            "{name}"
        );
    }
    let gif_named_jpg = write(dir.path(), "anim.jpg", &gif(&[5, 5]));
    assert_eq!(
        probe(&gif_named_jpg, FileType::Image).unwrap().0,
        FileType::Gif
    );
    for (name, bytes) in [
        ("text.jpg", b"hello, not an image".to_vec()),
        ("empty.jpg", Vec::new()),
        ("noise.jpg", noise(5000, 1)),
        ("noise.gif", noise(5000, 2)),
        ("noise.png", noise(300_000, 3)),
    ] {
        let path = write(dir.path(), name, &bytes);
        let (kind, info) = probe(&path, classify_by_name(&path)).unwrap();
        assert_eq!(
            (kind, info),
            (FileType::Other, MediaInfo::default()),
            "{name}"
        );
    }
    let err = probe(&dir.path().join("missing.jpg"), FileType::Image).unwrap_err();
    assert!(matches!(err, ProbeError::Io { .. }), "{err}");
    assert!(err.to_string().contains("missing.jpg"), "{err}");
}

#[test]
fn damaged_jpegs_do_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let good = exif_jpeg(64, 48, Some(6), Some("2021:06:15 12:34:56"));
    for cut in (0..good.len()).step_by(7) {
        let path = write(dir.path(), "cut.jpg", &good[..cut]);
        let _ = probe(&path, FileType::Image).unwrap();
    }
    for seed in 0..50 {
        let mut bad = good.clone();
        let junk = noise(200, seed);
        let at = 20 + (seed as usize * 13) % 200;
        bad[at..at + 200].copy_from_slice(&junk);
        let path = write(dir.path(), "bad.jpg", &bad);
        let _ = probe(&path, FileType::Image).unwrap();
    }
}

#[test]
fn gif_duration_is_the_sum_of_frame_delays() {
    let dir = tempfile::tempdir().unwrap();
    let anim = gif(&[10, 20, 30]);
    let path = write(dir.path(), "a.gif", &anim);
    let (kind, info) = probe(&path, FileType::Gif).unwrap();
    assert_eq!(kind, FileType::Gif);
    assert_eq!(dims(&info), (Some(30), Some(20)));
    assert_eq!(info.duration, Some(0.6));

    let still = write(dir.path(), "s.gif", &gif(&[0]));
    let (kind, info) = probe(&still, FileType::Gif).unwrap();
    assert_eq!((kind, info.duration), (FileType::Gif, Some(0.0)));

    // Cut inside the last frame: the first two frames still count.
    let walk = walk_gif(&anim[..anim.len() - 10]);
    assert_eq!((walk.frames, walk.delay_cs), (2, 30));
    assert!(walk.error.is_some());
    let cut = write(dir.path(), "cut.gif", &anim[..anim.len() / 2]);
    let (kind, info) = probe(&cut, FileType::Gif).unwrap();
    assert_eq!((kind, dims(&info)), (FileType::Gif, (Some(30), Some(20))));
    // Noise after a valid header.
    let junk = [&anim[..13], &noise(4000, 9)].concat();
    let path = write(dir.path(), "junk.gif", &junk);
    assert_eq!(probe(&path, FileType::Gif).unwrap().0, FileType::Gif);
}

/// Found by fuzz/fuzz_targets/exif.rs: a file ending within 6 bytes of
/// a too-short APP1 segment (22 bytes here: SOI, a comment, APP1 of
/// length 4, 2 bytes) made the probe loop forever, holding a scanner
/// thread at 100% CPU.
#[test]
fn a_jpeg_ending_in_a_short_app1_segment_probes() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "short.jpg",
        b"\xFF\xD8\xFF\xFE\x00\x0A12345678\xFF\xE1\x00\x04\x00\x01\x00\x00",
    );
    let (kind, info) = probe(&path, FileType::Image).unwrap();
    assert_eq!((kind, info.orientation), (FileType::Image, None));
}

/// Found by fuzz/fuzz_targets/probe.rs: a GIF whose logical screen is
/// 0 wide came back with a height and no width.
#[test]
fn a_gif_with_a_zero_side_has_no_size() {
    let dir = tempfile::tempdir().unwrap();
    for (w, h) in [(0u16, 65535u16), (7, 0), (0, 0)] {
        let mut bytes = gif(&[10]);
        bytes[6..8].copy_from_slice(&w.to_le_bytes());
        bytes[8..10].copy_from_slice(&h.to_le_bytes());
        let path = write(dir.path(), "zero.gif", &bytes);
        let (kind, info) = probe(&path, FileType::Image).unwrap();
        assert_eq!(
            (kind, dims(&info)),
            (FileType::Gif, (None, None)),
            "{w}x{h}"
        );
        assert_eq!(info.duration, Some(0.1));
    }
}

#[test]
fn gif_walk_reads_past_the_head_buffer() {
    // Enough frames that the block walk continues into the file after
    // the first 128 KiB read.
    let dir = tempfile::tempdir().unwrap();
    let big = gif(&[2; 300]);
    assert!(big.len() > HEAD_BYTES, "fixture is {} bytes", big.len());
    let path = write(dir.path(), "big.gif", &big);
    let (_, info) = probe(&path, FileType::Gif).unwrap();
    assert_eq!(info.duration, Some(6.0));
}

/// Micro-measurement of the image fast path. Run with
/// `cargo test --release --lib media::probe::tests::jpeg_probe_speed -- --ignored --nocapture`.
#[test]
#[ignore = "timing, not a check"]
fn jpeg_probe_speed() {
    let dir = tempfile::tempdir().unwrap();
    for (w, h) in [(64, 48), (640, 480), (2000, 1500)] {
        let files: Vec<PathBuf> = (0..200)
            .map(|i| {
                let bytes = exif_jpeg(w, h, Some(6), Some("2021:06:15 12:34:56"));
                write(dir.path(), &format!("{w}-{i}.jpg"), &bytes)
            })
            .collect();
        let size = std::fs::metadata(&files[0]).unwrap().len();
        let rounds = 100;
        let start = Instant::now();
        for _ in 0..rounds {
            for f in &files {
                let (kind, _) = probe(f, FileType::Image).unwrap();
                assert_eq!(kind, FileType::Image);
            }
        }
        let per_file = start.elapsed() / (rounds * files.len() as u32);
        // Baseline: just the open and the one head read.
        let mut buf = vec![0u8; HEAD_BYTES];
        let start = Instant::now();
        for _ in 0..rounds {
            for f in &files {
                let n = File::open(f).unwrap().read(&mut buf).unwrap();
                assert!(n > 0);
            }
        }
        let io = start.elapsed() / (rounds * files.len() as u32);
        eprintln!(
            "{w}x{h} JPEG ({size} bytes, Exif): {per_file:?} per probe, {io:?} of it open+read"
        );
    }
}

mod av;
