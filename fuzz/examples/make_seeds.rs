//! Writes the seed corpus of every fuzz target into `fuzz/seeds/<target>/`
//! (docs/fuzzing.md). Every seed is made here — JPEGs by jpeg-encoder with
//! the layouts cameras write (4:2:0, 4:2:2, 4:4:4, grey, restart intervals,
//! progressive, EXIF thumbnails, MPF previews), other pictures and MP4/MOV
//! files by ffmpeg from its built-in test sources, text by hand — so the
//! corpus carries no third-party file and can be rebuilt at any time:
//!
//!     cargo run --release --manifest-path fuzz/Cargo.toml --example make_seeds
//!
//! Seeds stay small (a few KiB each): the fuzzer mutates faster, and the
//! repository stays light. Files named `found-*` are inputs fuzzing found
//! (regressions of fixed bugs); they are kept.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "../../tests/it/common/fixtures.rs"]
mod fixtures;

use fixtures::with_mpf_preview;
use isync::media::exifwrite::exif_app1_with;
use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

/// `jpeg` with an APP1 Exif segment (orientation, IFD1 thumbnail) where
/// cameras put it: the demo library's EXIF builder, as the tests use it.
fn with_exif(jpeg: &[u8], orientation: Option<u16>, thumb: Option<&[u8]>) -> Vec<u8> {
    fixtures::with_app1(jpeg, &exif_app1_with(orientation, thumb))
}

fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds")
}

fn put(target: &str, name: &str, bytes: &[u8]) {
    let dir = seeds_dir().join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// A `w`×`h` picture with gradients and a few hard edges, so every
/// coefficient band carries something.
fn pixels(w: u16, h: u16, grey: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for y in 0..u32::from(h) {
        for x in 0..u32::from(w) {
            let edge = if (x / 7 + y / 5) % 3 == 0 { 90 } else { 0 };
            let r = (x * 255 / u32::from(w)) as u8 ^ edge;
            let g = (y * 255 / u32::from(h)) as u8;
            let b = ((x * y) % 251) as u8;
            if grey {
                out.push(r / 2 + g / 2);
            } else {
                out.extend_from_slice(&[r, g, b]);
            }
        }
    }
    out
}

struct Jpeg {
    w: u16,
    h: u16,
    grey: bool,
    sampling: SamplingFactor,
    restart: Option<u16>,
    progressive: bool,
    optimise: bool,
    quality: u8,
}

impl Jpeg {
    fn new(w: u16, h: u16) -> Jpeg {
        Jpeg {
            w,
            h,
            grey: false,
            sampling: SamplingFactor::F_2_2,
            restart: None,
            progressive: false,
            optimise: false,
            quality: 80,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = Encoder::new(&mut out, self.quality);
        enc.set_sampling_factor(self.sampling);
        enc.set_progressive(self.progressive);
        enc.set_optimized_huffman_tables(self.optimise);
        if let Some(r) = self.restart {
            enc.set_restart_interval(r);
        }
        let colour = if self.grey {
            ColorType::Luma
        } else {
            ColorType::Rgb
        };
        enc.encode(&pixels(self.w, self.h, self.grey), self.w, self.h, colour)
            .unwrap();
        out
    }
}

fn with_prefix(prefix: &[u8], body: &[u8]) -> Vec<u8> {
    [prefix, body].concat()
}

fn jpeg_seeds() {
    use SamplingFactor as F;
    let plain = |w, h, sampling| Jpeg {
        sampling,
        ..Jpeg::new(w, h)
    };
    let cases: Vec<(&str, Jpeg)> = vec![
        ("420", plain(120, 90, F::F_2_2)),
        ("422", plain(100, 75, F::F_2_1)),
        ("440", plain(90, 121, F::F_1_2)),
        ("444", plain(77, 51, F::F_1_1)),
        (
            "grey",
            Jpeg {
                grey: true,
                ..Jpeg::new(96, 64)
            },
        ),
        (
            "optimised",
            Jpeg {
                optimise: true,
                ..Jpeg::new(128, 96)
            },
        ),
        (
            "rst-row",
            Jpeg {
                restart: Some(8),
                ..Jpeg::new(128, 96)
            },
        ),
        (
            "rst-1",
            Jpeg {
                restart: Some(1),
                quality: 60,
                ..Jpeg::new(64, 64)
            },
        ),
        (
            "rst-3-444",
            Jpeg {
                restart: Some(3),
                sampling: F::F_1_1,
                ..Jpeg::new(72, 40)
            },
        ),
        (
            "rst-grey",
            Jpeg {
                restart: Some(4),
                grey: true,
                ..Jpeg::new(64, 48)
            },
        ),
        (
            "progressive",
            Jpeg {
                progressive: true,
                ..Jpeg::new(80, 60)
            },
        ),
    ];
    for (name, j) in &cases {
        let bytes = j.encode();
        // jpegpar: edge, threads, smallest range; a few combinations.
        for (i, p) in [[0u8, 0, 0], [3, 1, 2], [5, 2, 0]].iter().enumerate() {
            put(
                "jpegpar",
                &format!("{name}-{i}.bin"),
                &with_prefix(p, &bytes),
            );
        }
        // jpegbands: edge, bands.
        for (i, p) in [[1u8, 0], [4, 1], [7, 2]].iter().enumerate() {
            put(
                "jpegbands",
                &format!("{name}-{i}.bin"),
                &with_prefix(p, &bytes),
            );
        }
        put(
            "jpegscale",
            &format!("{name}.bin"),
            &with_prefix(&[0], &bytes),
        );
    }

    // Thumbnail sources as cameras write them: an EXIF IFD1 thumbnail, an
    // MPF large thumbnail, both.
    let photo = Jpeg::new(240, 180).encode();
    let thumb = Jpeg::new(160, 120).encode();
    let small = Jpeg::new(40, 30).encode();
    let exif = with_exif(&photo, Some(6), Some(&thumb));
    put("jpegscale", "exif-thumb-0.bin", &with_prefix(&[0], &exif));
    put("jpegscale", "exif-thumb-1.bin", &with_prefix(&[1], &exif));
    let big = Jpeg {
        quality: 40,
        ..Jpeg::new(480, 360)
    }
    .encode();
    let preview = Jpeg::new(200, 150).encode();
    let mpf = with_mpf_preview(&with_exif(&big, Some(1), Some(&small)), &preview, 0x01_0001);
    put("jpegscale", "mpf-0.bin", &with_prefix(&[0], &mpf));
    put("jpegscale", "mpf-1.bin", &with_prefix(&[1], &mpf));

    // The Exif and MPF readers: whole files and bare TIFF structures.
    put(
        "exif",
        "exif-orientation.jpg",
        &with_exif(&small, Some(8), None),
    );
    put(
        "exif",
        "exif-thumb.jpg",
        &with_exif(&small, Some(3), Some(&small)),
    );
    put(
        "exif",
        "mpf.jpg",
        &with_mpf_preview(&small, &small, 0x01_0002),
    );
    let tiff = tiff_with_dates();
    put("exif", "dates.tiff", &tiff);
    let mut app1 = vec![0xFF, 0xD8, 0xFF, 0xE1];
    app1.extend_from_slice(&((tiff.len() + 8) as u16).to_be_bytes());
    app1.extend_from_slice(b"Exif\0\0");
    app1.extend_from_slice(&tiff);
    app1.extend_from_slice(&small[2..]);
    put("exif", "dates.jpg", &app1);
    put("exif", "dates.png", &png_with_exif(&tiff));
    put("exif", "dates.webp", &webp_with_exif(&tiff));
    put(
        "exif",
        "thumb-ifd.tiff",
        &exif_app1_with(Some(5), Some(&small))[10..],
    );

    put("probe", "photo.jpg", &app1);
    put("probe", "rotated.jpg", &with_exif(&small, Some(6), None));
    put("probe", "progressive.jpg", &cases[10].1.encode());
}

/// A little-endian TIFF: IFD0 with Orientation and an Exif IFD pointer;
/// the Exif IFD with DateTimeOriginal, OffsetTimeOriginal and
/// DateTimeDigitized.
fn tiff_with_dates() -> Vec<u8> {
    let mut t = b"II*\0".to_vec();
    t.extend_from_slice(&8u32.to_le_bytes());
    let field = |t: &mut Vec<u8>, tag: u16, typ: u16, count: u32, value: u32| {
        t.extend_from_slice(&tag.to_le_bytes());
        t.extend_from_slice(&typ.to_le_bytes());
        t.extend_from_slice(&count.to_le_bytes());
        t.extend_from_slice(&value.to_le_bytes());
    };
    // IFD0 at 8: 2 entries → ends at 8 + 2 + 24 + 4 = 38.
    let exif_ifd = 38u32;
    t.extend_from_slice(&2u16.to_le_bytes());
    field(&mut t, 0x0112, 3, 1, 6);
    field(&mut t, 0x8769, 4, 1, exif_ifd);
    t.extend_from_slice(&0u32.to_le_bytes());
    // Exif IFD at 38: 3 entries → data at 38 + 2 + 36 + 4 = 80.
    let data = 80u32;
    t.extend_from_slice(&3u16.to_le_bytes());
    field(&mut t, 0x9003, 2, 20, data);
    field(&mut t, 0x9004, 2, 20, data + 20);
    field(&mut t, 0x9011, 2, 7, data + 40);
    t.extend_from_slice(&0u32.to_le_bytes());
    t.extend_from_slice(b"2021:07:04 18:30:05\0");
    t.extend_from_slice(b"2021:07:04 18:30:06\0");
    t.extend_from_slice(b"+02:00\0");
    t
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A 1×1 grey PNG with an `eXIf` chunk.
fn png_with_exif(tiff: &[u8]) -> Vec<u8> {
    let chunk = |out: &mut Vec<u8>, kind: &[u8; 4], body: &[u8]| {
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    };
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]);
    chunk(&mut out, b"eXIf", tiff);
    // zlib stream of one filter byte and one pixel, stored.
    chunk(
        &mut out,
        b"IDAT",
        &[
            0x78, 0x01, 0x01, 0x02, 0x00, 0xFD, 0xFF, 0x00, 0x80, 0x00, 0x81, 0x00, 0x81,
        ],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A WebP (VP8X) container with an `EXIF` chunk and no image data: enough
/// for the container readers.
fn webp_with_exif(tiff: &[u8]) -> Vec<u8> {
    let mut body = b"WEBP".to_vec();
    let chunk = |out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]| {
        out.extend_from_slice(kind);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(0);
        }
    };
    // Flags: EXIF present; canvas 16×16 (stored minus one, 24-bit).
    chunk(&mut body, b"VP8X", &[0x08, 0, 0, 0, 15, 0, 0, 15, 0, 0]);
    chunk(&mut body, b"EXIF", tiff);
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Runs ffmpeg and returns the bytes of what it wrote.
fn ffmpeg(args: &[&str], ext: &str) -> Vec<u8> {
    let out = std::env::temp_dir().join(format!("isync-seed-{}.{ext}", std::process::id()));
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .arg(&out)
        .status()
        .expect("run ffmpeg (apt-get install ffmpeg)");
    assert!(status.success(), "ffmpeg {args:?}");
    let bytes = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    bytes
}

fn ffmpeg_seeds() {
    let video = [
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=32x24:rate=5:duration=0.4",
    ];
    let audio = ["-f", "lavfi", "-i", "sine=frequency=440:duration=0.2"];
    let v = |extra: &[&'static str]| -> Vec<&'static str> {
        [&video[..], &["-c:v", "mpeg4"], extra].concat()
    };
    let mp4 = ffmpeg(&v(&[]), "mp4");
    let mov = ffmpeg(&v(&["-metadata:s:v", "rotate=90"]), "mov");
    let frag = ffmpeg(&v(&["-movflags", "frag_keyframe+empty_moov"]), "mp4");
    let m4a = ffmpeg(
        &[&audio[..], &["-c:a", "aac", "-b:a", "16k"]].concat(),
        "m4a",
    );
    let both = ffmpeg(
        &[
            &video[..],
            &audio[..],
            &["-c:v", "mpeg4", "-c:a", "aac", "-b:a", "16k", "-shortest"],
        ]
        .concat(),
        "mov",
    );
    let threegp = ffmpeg(
        &[&video[..], &["-c:v", "h263", "-s", "128x96"]].concat(),
        "3gp",
    );
    for (name, bytes) in [
        ("video.mp4", &mp4),
        ("rotated.mov", &mov),
        ("fragmented.mp4", &frag),
        ("audio.m4a", &m4a),
        ("both.mov", &both),
        ("h263.3gp", &threegp),
    ] {
        put("mp4", name, bytes);
    }
    put("probe", "video.mp4", &mp4);

    let still = [
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=24x16:rate=1",
        "-frames:v",
        "1",
    ];
    put("probe", "still.png", &ffmpeg(&still, "png"));
    put("probe", "still.bmp", &ffmpeg(&still, "bmp"));
    put("probe", "still.tiff", &ffmpeg(&still, "tiff"));
    // The in-process still decoders (level byte first), 16-bit and
    // planar-capable TIFF layouts as ffmpeg writes them.
    for (name, ext, extra) in [
        ("still.png", "png", &[][..]),
        ("still.bmp", "bmp", &[]),
        ("still.tiff", "tiff", &[]),
        ("rgb48.tiff", "tiff", &["-pix_fmt", "rgb48le"]),
        ("gbrp.tiff", "tiff", &["-pix_fmt", "gbrp"]),
        ("lzw.tiff", "tiff", &["-compression_algo", "lzw"]),
    ] {
        let bytes = ffmpeg(&[&still[..], extra].concat(), ext);
        put("stills", &format!("{name}.bin"), &with_prefix(&[1], &bytes));
    }
    let gif = [
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=16x12:rate=4:duration=0.75",
    ];
    put("probe", "animated.gif", &ffmpeg(&gif, "gif"));
}

fn text_seeds() {
    let multipart: &[(&str, &str)] = &[
        (
            "upload",
            "multipart/form-data; boundary=xYz-42\n\
             --xYz-42\r\nContent-Disposition: form-data; name=\"fileId\"\r\n\r\n17\r\n\
             --xYz-42\r\nContent-Disposition: form-data; name=\"origin\"; filename=\"a.jpg\"\r\n\
             Content-Type: image/jpeg\r\n\r\n\u{ff}\u{d8}data\r\n--xYz-4\r\n\
             --xYz-42--\r\nepilogue",
        ),
        (
            "quoted",
            "Multipart/Form-Data; charset=utf-8; boundary=\"a b\"\n\
             preamble\r\n--a b  \t\r\ncontent-disposition: form-data; name=\"x\\\"y\"; filename=z\r\n\r\n\
             \r\n--a b\r\n\r\nno headers\r\n--a b--",
        ),
        ("empty", "multipart/form-data; boundary=b\n--b--\r\n"),
        (
            "webkit",
            "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW\n\
             ------WebKitFormBoundary7MA4YWxkTrZu0gW\r\nContent-Disposition: form-data; name=\"thumb\"; filename=\"t\"\r\n\r\n\
             \r\n\r\n--\r\n------WebKitFormBoundary7MA4YWxkTrZu0g\r\n\
             ------WebKitFormBoundary7MA4YWxkTrZu0gW--",
        ),
        (
            "cut",
            "multipart/form-data; boundary=q\n--q\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nabc",
        ),
    ];
    for (name, text) in multipart {
        put("multipart", name, text.as_bytes());
    }

    let size = |n: u64| n.to_le_bytes();
    for (i, (n, value)) in [
        (1000u64, "bytes=0-499"),
        (1000, "bytes=500-"),
        (1000, "bytes=-200"),
        (10, "bytes=5-2"),
        (0, "bytes=0-"),
        (u64::MAX, "bytes=18446744073709551614-"),
        (100, "bytes=0-1,5-6"),
        (100, "bytes = 1 - 2"),
        (100, "Bytes=-0"),
    ]
    .into_iter()
    .enumerate()
    {
        put(
            "range",
            &format!("{i}"),
            &[&size(n)[..], value.as_bytes()].concat(),
        );
    }

    for (name, text) in [
        (
            "query",
            "\0ids=1,2,%203&name=caf%C3%A9&memo=&time=1500000000.9\n",
        ),
        ("form", "\0id=1\nid=2&name=x+y&maxPerPage=-7"),
        (
            "json",
            "\x01name=q\n{\"name\":\"json\",\"id\":5,\"ok\":true,\"n\":null,\"l\":[1],\"f\":1e400}",
        ),
        ("json-bad", "\x01\n[1,2]"),
        (
            "float",
            "\0lat=-0.5e3&time=-62135596800&ids=9223372036854775807,-1\n",
        ),
    ] {
        put("params", name, text.as_bytes());
    }

    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../isync.example.toml"),
    )
    .unwrap();
    put("config", "example.toml", example.as_bytes());
    put(
        "config",
        "minimal.toml",
        b"listen = \"127.0.0.1:5000\"\ndata_dir = \"/srv/isync\"\n",
    );
    put(
        "config",
        "libraries.toml",
        b"[[library]]\npath = \"/media/isync/photos\"\nusers = [\"anna\", \"ben\"]\n\n\
          [[library]]\npath = \"/media/isync/photos/\"\n\n[scan]\nmax_delete_share = 0.25\n",
    );
    put(
        "config",
        "bad.toml",
        b"listen = 5000\n[nope]\nx = 1\n[trash]\nretention_days = 0\n",
    );
}

fn main() {
    // Inputs a run found (`found-*`, fixed bugs' regressions) are kept.
    let dir = seeds_dir();
    for target in std::fs::read_dir(&dir).into_iter().flatten() {
        for f in std::fs::read_dir(target.unwrap().path()).unwrap() {
            let f = f.unwrap().path();
            if !f
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("found-")
            {
                std::fs::remove_file(f).unwrap();
            }
        }
    }
    jpeg_seeds();
    ffmpeg_seeds();
    text_seeds();
    let mut total = 0;
    for target in std::fs::read_dir(&dir).unwrap() {
        let target = target.unwrap().path();
        let files: Vec<_> = std::fs::read_dir(&target).unwrap().collect();
        let bytes: u64 = files
            .iter()
            .map(|f| f.as_ref().unwrap().metadata().unwrap().len())
            .sum();
        total += bytes;
        println!(
            "{:>10}: {:>3} seeds, {:>7} bytes",
            target.file_name().unwrap().to_string_lossy(),
            files.len(),
            bytes
        );
    }
    println!("{total} bytes in all");
}
