//! Unit tests: pixels against jpeg-decoder, ranges against one range,
//! ffmpeg's files, restart intervals, and the files left to the usual decoder.

use super::*;
use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

/// A photo-like JPEG: gradients, fine detail and noise, so that the
/// entropy-coded data is long and uses long codes too. (jpeg-encoder
/// writes optimised Huffman tables only in one scan per component,
/// which this module leaves alone; ffmpeg's are tested below.)
fn jpeg(w: u16, h: u16, gray: bool, sampling: Option<SamplingFactor>) -> Vec<u8> {
    let channels = if gray { 1 } else { 3 };
    let mut px = Vec::with_capacity(usize::from(w) * usize::from(h) * channels);
    let mut seed = 0x2545_f491_u32;
    for y in 0..u32::from(h) {
        for x in 0..u32::from(w) {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let noise = seed % 24;
            let v = [
                ((x * 255 / u32::from(w)) + noise).min(255) as u8,
                ((y * 255 / u32::from(h)) + noise / 2).min(255) as u8,
                (((x / 3) ^ (y / 5)) & 0xFF) as u8,
            ];
            px.extend_from_slice(&v[..channels]);
        }
    }
    let mut out = Vec::new();
    let mut enc = Encoder::new(&mut out, 90);
    if let Some(f) = sampling {
        enc.set_sampling_factor(f);
    }
    let ct = if gray {
        ColorType::Luma
    } else {
        ColorType::Rgb
    };
    enc.encode(&px, w, h, ct).unwrap();
    out
}

/// jpeg-decoder's one-piece decode at the same scale.
fn reference(data: &[u8], edge: u32) -> Raster {
    super::super::jpegscale::decode_scaled(data, edge, u64::MAX).unwrap()
}

/// Mean and largest difference per channel value.
fn difference(a: &Raster, b: &Raster) -> (f64, u8) {
    assert_eq!((a.width, a.height), (b.width, b.height));
    let mut sum = 0u64;
    let mut max = 0u8;
    for (x, y) in a.data.iter().zip(&b.data) {
        let d = x.abs_diff(*y);
        sum += u64::from(d);
        max = max.max(d);
    }
    (sum as f64 / a.data.len() as f64, max)
}

/// The same picture as jpeg-decoder's, to rounding, for every chroma
/// layout, odd sizes, grey, standard and optimised Huffman tables, and
/// every scale this module does.
#[test]
fn decodes_like_jpeg_decoder() {
    use SamplingFactor as F;
    let layouts = [
        (Some(F::F_2_2), false, "4:2:0"),
        (Some(F::F_2_1), false, "4:2:2"),
        (Some(F::F_1_2), false, "4:4:0"),
        (Some(F::F_1_1), false, "4:4:4"),
        (None, true, "grey"),
    ];
    for (sampling, gray, name) in layouts {
        for (w, h) in [(640u16, 480u16), (1003, 755), (333, 1001)] {
            let data = jpeg(w, h, gray, sampling);
            let long = u32::from(w.max(h));
            for edge in [long / 2, long / 4, long / 8, 20] {
                let got = decode_in(&data, edge, 1)
                    .unwrap_or_else(|| panic!("{name} {w}x{h} edge {edge}: not decoded"));
                let want = reference(&data, edge);
                let (mean, max) = difference(&got, &want);
                assert!(
                    mean < 1.2 && max <= 6,
                    "{name} {w}x{h} edge {edge}: mean {mean:.3}, max {max}"
                );
            }
        }
    }
}

/// Decoded in ranges on several threads: exactly the pixels of a
/// decode from the start alone, whatever the number of ranges.
#[test]
fn ranges_decode_to_the_same_pixels() {
    use SamplingFactor as F;
    for (w, h, sampling, gray) in [
        (2000u16, 1500u16, Some(F::F_2_2), false),
        (1601, 1203, Some(F::F_1_1), false),
        (1500, 2001, None, true),
        (1999, 1333, Some(F::F_2_1), false),
    ] {
        let data = jpeg(w, h, gray, sampling);
        for edge in [800, 400, 100] {
            let one = decode_in(&data, edge, 1).expect("decoded");
            for threads in 2..=5 {
                // Every range synchronised with the one before: each
                // supplies a stretch of the picture.
                let frame = parse(&data).unwrap();
                let scan = Scan::new(&frame, 2).unwrap();
                let total = (frame.mcus_x * frame.mcus_y) as usize;
                let mut runs = entropy(&scan, total, threads).unwrap();
                let segments = stitch(&scan, &mut runs, total).unwrap();
                assert_eq!(
                    segments.len(),
                    threads,
                    "{w}x{h}: ranges that never synchronised"
                );
                let got = decode_in(&data, edge, threads).expect("decoded");
                assert!(
                    got == one,
                    "{w}x{h} edge {edge}, {threads} ranges: pixels differ"
                );
            }
        }
    }
}

/// What ffmpeg (libavcodec) writes: optimised Huffman tables, 4:2:0 and
/// 4:2:2. Same pixels in ranges as from the start, and like
/// jpeg-decoder's.
#[test]
fn ffmpeg_jpegs_with_optimised_tables() {
    let dir = tempfile::tempdir().unwrap();
    for pix in ["yuvj420p", "yuvj422p"] {
        let path = dir.path().join(format!("{pix}.jpg"));
        let ok = std::process::Command::new(crate::media::process::ffmpeg_path())
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
            ])
            .arg("testsrc2=size=2000x1500,noise=alls=12:allf=t")
            .args(["-frames:v", "1", "-q:v", "3", "-pix_fmt", pix])
            .arg(&path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "ffmpeg");
        let data = std::fs::read(&path).unwrap();
        let one = decode_in(&data, 500, 1).expect("decoded");
        for threads in [2, 3] {
            let got = decode_in(&data, 500, threads).expect("decoded");
            assert!(got == one, "{pix}, {threads} ranges: pixels differ");
        }
        let (mean, max) = difference(&one, &reference(&data, 500));
        assert!(mean < 1.2 && max <= 6, "{pix}: mean {mean:.3}, max {max}");
    }
}

/// The thumbnail decoder takes this path for a big plain JPEG.
#[test]
fn the_thumbnail_decoder_uses_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.jpg");
    let data = jpeg(1600, 1200, false, Some(SamplingFactor::F_2_2));
    std::fs::write(&path, &data).unwrap();
    let level = crate::model::ThumbLevel::Screen;
    let got = super::super::jpegscale::decode_path(&path, level, 2)
        .unwrap()
        .expect("decoded");
    let want = decode_in(&data, level.max_edge_px(), 2).expect("decoded");
    assert!(got == want, "not this module's pixels");
}

/// A JPEG with restart intervals of `restart` MCUs.
fn with_restarts(w: u16, h: u16, restart: u16, sampling: SamplingFactor) -> Vec<u8> {
    let plain = jpeg(w, h, false, Some(sampling));
    let img = jpeg_decoder::Decoder::new(plain.as_slice())
        .decode()
        .unwrap();
    let mut out = Vec::new();
    let mut enc = Encoder::new(&mut out, 90);
    enc.set_restart_interval(restart);
    enc.set_sampling_factor(sampling);
    enc.encode(&img, w, h, ColorType::Rgb).unwrap();
    out
}

/// With restart intervals, ranges start at intervals (no guessing):
/// the same pixels from any number of ranges, like jpeg-decoder's, for
/// intervals that do and don't divide a row or the picture.
#[test]
fn restart_intervals_split_exactly() {
    use SamplingFactor as F;
    for (w, h, restart, f) in [
        (1600u16, 1200u16, 100u16, F::F_2_2),
        (1999, 1333, 7, F::F_2_2),
        (1203, 1001, 1, F::F_1_1),
        (1500, 1000, 333, F::F_2_1),
    ] {
        let data = with_restarts(w, h, restart, f);
        for edge in [600, 300] {
            let one = decode_in(&data, edge, 1).expect("decoded");
            let (mean, max) = difference(&one, &reference(&data, edge));
            assert!(
                mean < 1.2 && max <= 6,
                "{w}x{h} ri {restart}: mean {mean:.3}, max {max}"
            );
            for threads in [2, 3, 4] {
                let got = decode_in(&data, edge, threads).expect("decoded");
                assert!(
                    got == one,
                    "{w}x{h} ri {restart}, {threads} ranges: pixels differ"
                );
            }
        }
    }
    // A restart marker missing or misnumbered: left to the usual decoder.
    let data = with_restarts(1600, 1200, 10, F::F_2_2);
    let rst = data
        .windows(2)
        .position(|w| w[0] == 0xFF && (0xD0..=0xD7).contains(&w[1]))
        .unwrap();
    let mut missing = data.clone();
    missing.drain(rst..rst + 2);
    let mut misnumbered = data.clone();
    misnumbered[rst + 1] = 0xD5;
    for bad in [missing, misnumbered] {
        for threads in [1, 2] {
            assert!(decode_in(&bad, 400, threads).is_none());
        }
    }
}

/// The offset of the first `marker` segment (its 0xFF).
fn segment(data: &[u8], marker: u8) -> usize {
    data.windows(2).position(|w| w == [0xFF, marker]).unwrap()
}

/// RGB by its component ids (what libjpeg writes for RGB): not YCbCr,
/// so left to jpeg-decoder, whatever a JFIF segment says.
#[test]
fn rgb_by_component_ids_is_left_to_the_usual_decoder() {
    let mut data = jpeg(1200, 900, false, Some(SamplingFactor::F_1_1));
    assert!(decode_in(&data, 300, 2).is_some());
    let sof = segment(&data, 0xC0);
    let sos = segment(&data, 0xDA);
    for (i, id) in [82u8, 71, 66].into_iter().enumerate() {
        data[sof + 10 + 3 * i] = id;
        data[sos + 5 + 2 * i] = id;
    }
    assert!(jpeg_decoder::Decoder::new(data.as_slice()).decode().is_ok());
    assert!(decode_in(&data, 300, 2).is_none());
}

/// A second frame header (the size checks before this module read the
/// first one): refused.
#[test]
fn a_second_frame_header_is_refused() {
    let data = jpeg(1200, 900, false, Some(SamplingFactor::F_2_2));
    let sof = segment(&data, 0xC0);
    let len = usize::from(u16::from_be_bytes([data[sof + 2], data[sof + 3]]));
    let sos = segment(&data, 0xDA);
    let mut two = data[..sos].to_vec();
    let mut big = data[sof..sof + 2 + len].to_vec();
    big[5..9].copy_from_slice(&[0xFF, 0xF0, 0xFF, 0xF0]);
    two.extend_from_slice(&big);
    two.extend_from_slice(&data[sos..]);
    assert!(parse(&data).is_some());
    assert!(parse(&two).is_none());
    assert!(decode_in(&two, 300, 2).is_none());
}

/// A stream of 2-bit MCUs (one-code Huffman tables) far longer than the
/// picture: no range records more MCUs than the picture has, so a small
/// file can't cost gigabytes.
#[test]
fn no_range_holds_more_than_the_picture() {
    let mut f = vec![0xFF, 0xD8];
    f.extend_from_slice(&[0xFF, 0xDB, 0, 67, 0]);
    f.extend_from_slice(&[1; 64]);
    f.extend_from_slice(&[0xFF, 0xC0, 0, 11, 8, 4, 0, 8, 0, 1, 1, 0x11, 0]);
    for class in [0x00, 0x10] {
        f.extend_from_slice(&[0xFF, 0xC4, 0, 20, class, 1]);
        f.extend_from_slice(&[0; 15]);
        f.push(0); // the one symbol: DC category 0, or end of block
    }
    f.extend_from_slice(&[0xFF, 0xDA, 0, 8, 1, 1, 0x00, 0, 63, 0]);
    f.extend(std::iter::repeat_n(0u8, 1 << 20));
    f.extend_from_slice(&[0xFF, 0xD9]);
    let frame = parse(&f).expect("parsed");
    let total = (frame.mcus_x * frame.mcus_y) as usize;
    assert_eq!(total, 256 * 128);
    let scan = Scan::new(&frame, 1).unwrap();
    let runs = entropy(&scan, total, 3).unwrap();
    for run in &runs {
        assert!(run.count() <= total, "{} MCUs recorded", run.count());
    }
}

/// Damaged and unsupported files: `None` (the usual decoder then
/// reports or conceals the damage), never a panic, never a picture made
/// up from a cut-off stream.
#[test]
fn damaged_or_unsupported_files_are_left_to_the_usual_decoder() {
    let data = jpeg(1200, 900, false, Some(SamplingFactor::F_2_2));
    let scan_end = data.len() - 2;
    // Cut short anywhere in the entropy-coded data.
    for cut in [scan_end / 2, scan_end * 3 / 4, scan_end - 100] {
        let mut cut_off = data[..cut].to_vec();
        cut_off.extend_from_slice(&[0xFF, 0xD9]);
        for threads in [1, 2, 3] {
            assert!(decode_in(&cut_off, 400, threads).is_none(), "cut at {cut}");
        }
    }
    // Headers only, garbage, nothing.
    for bad in [&data[..200], b"not a jpeg at all".as_slice(), &[]] {
        assert!(decode_in(bad, 400, 2).is_none());
    }
    // Flipped bytes: no panic whatever comes out.
    let mut seed = 7u32;
    for _ in 0..50 {
        let mut d = data.clone();
        for _ in 0..8 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let at = 600 + (seed as usize >> 8) % (d.len() - 602);
            d[at] ^= (seed >> 3) as u8 | 1;
        }
        let _ = decode_in(&d, 400, 2);
    }
    // Progressive and full-scale decodes are the usual decoder's.
    let mut out = Vec::new();
    let mut enc = Encoder::new(&mut out, 90);
    enc.set_progressive(true);
    enc.encode(&vec![128u8; 640 * 480 * 3], 640, 480, ColorType::Rgb)
        .unwrap();
    assert!(decode_in(&out, 200, 2).is_none(), "progressive");
    assert!(decode_in(&data, 1200, 2).is_none(), "full scale");
    assert!(
        decode(&data, 400, 1, u64::MAX).is_none(),
        "one thread: not this module's job"
    );
}

/// A damaged file whose scan goes on past its last MCU decodes in ranges
/// exactly as in one. Found by the `jpegpar` fuzz target (the input is
/// its seed `ranges_vs_one.bin`: 3 parameter bytes, then a 96×64 grey
/// JPEG whose 1.2 kB of entropy-coded data hold far more than its 96
/// MCUs): in 3 ranges the last one, started mid-stream, used up its cap
/// of 96 MCUs on garbage before it met the run before it, 92 MCUs in,
/// and the decode gave nothing where one range gave the picture.
#[test]
fn a_last_range_capped_short_of_the_data_decodes_on() {
    let input = include_bytes!("../../../fuzz/seeds/jpegpar/ranges_vs_one.bin");
    let jpeg = &input[3..];
    let one = decode_split(jpeg, 20, 1, 33, u64::MAX).expect("one range decodes it");
    assert_eq!((one.width, one.height), (24, 16));
    for threads in 2..=4 {
        for min_range in [1, 33, 200] {
            let split = decode_split(jpeg, 20, threads, min_range, u64::MAX);
            assert_eq!(
                split.as_ref(),
                Some(&one),
                "{threads} ranges of at least {min_range} bytes"
            );
        }
    }
}
