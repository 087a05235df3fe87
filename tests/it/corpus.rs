//! The real-world corpus (issue 15): files that Pillow's source, Debian
//! packages and crates of our Cargo.lock ship, fetched through their
//! package clients by `tests/corpus/fetch.sh` into a cache under `target/`,
//! plus files made here (JPEG restart intervals, 16-bit PNG, lossless and
//! animated WebP, clips in odd containers and rotations). Every file goes
//! through a real server: its listing must give the type and the displayed
//! size, and its level-1 thumbnail must match a reference decoder's picture
//! of the same file, or be refused (−10008) where the table below says why.
//! Sources, versions and licences: `tests/corpus/README.md`.
//!
//! The reference for stills is Pillow (Debian's python3-pil), a decoder that
//! shares no code with ours (`image`, zune, our own TIFF and JPEG walkers,
//! ffmpeg for WebP), turning each picture by its EXIF orientation; for
//! videos, which Pillow cannot read, it is the ffmpeg command line's first
//! frame, turned upright by its autorotate. `tests/corpus/reference.py`
//! compares on a 16×16 grid; see there why. `tests/corpus/README.md` also
//! says what each kind of expectation in the table means.

use crate::common;

use common::*;
use image::{ImageBuffer, ImageEncoder, Rgb, RgbImage};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Type codes (spec §2.2).
const STILL: i64 = 1;
const GIF: i64 = 2;
const VIDEO: i64 = 4;
/// The level-1 box (spec §2.6).
const SCREEN_EDGE_PX: i64 = 800;
/// Mean absolute difference (0..255) over the 16×16 grid that still counts
/// as the same picture, and the most one grid cell may differ. Measured on
/// this corpus: right answers stay under 3.3 and 17.3 (rose.png, small and
/// sharp-edged); the hopper_orientation_* files shown as stored (a wrong
/// turn or mirror) give 42–67 and 149–174, a tRNS key ignored 62 and 127.
const MAX_MAD: f64 = 8.0;
const MAX_CELL: f64 = 40.0;

/// What the server must do with a file.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Listed with this type and the reference's size; a level-1 thumbnail
    /// that matches the reference.
    Shown(i64),
    /// Listed with this type, thumbnail refused (−10008), for this reason.
    Refused(i64, &'static str),
    /// A damaged file (truncated, bad checksum) shown as far as it goes:
    /// judged as `Shown`, against what Pillow decodes of it when told to
    /// load truncated images.
    Lenient(i64, &'static str),
    /// A file damaged where decoders part ways (one shows garbage, one
    /// stops and fills, Pillow refuses): its type, listed size and
    /// thumbnail size are judged, not its pixels.
    Damaged(i64, &'static str),
    /// A known bug (listed in the report of issue 15): the case must still
    /// fail the way described, so a fix (or a new failure) is noticed.
    Known(i64, &'static str),
}
use Expect::*;

/// One file: where it comes from, the path in its package, what to expect.
struct Case {
    source: &'static str,
    path: &'static str,
    expect: Expect,
}

const fn case(source: &'static str, path: &'static str, expect: Expect) -> Case {
    Case {
        source,
        path,
        expect,
    }
}

const P: &str = "pillow";
const IM_DOC: &str = "deb:imagemagick-6-doc";
const DESKTOP: &str = "deb:desktop-base";

/// The fetched corpus. Pillow's test images are the bulk: real encoders'
/// output (cameras, Photoshop, ImageMagick, libtiff) collected from bug
/// reports.
const FETCHED: &[Case] = &[
    // ---- JPEG
    case(P, "Tests/images/hopper.jpg", Shown(STILL)),
    case(P, "Tests/images/hopper_orientation_2.jpg", Shown(STILL)),
    case(P, "Tests/images/hopper_orientation_3.jpg", Shown(STILL)),
    case(P, "Tests/images/hopper_orientation_4.jpg", Shown(STILL)),
    case(P, "Tests/images/hopper_orientation_5.jpg", Shown(STILL)),
    case(P, "Tests/images/hopper_orientation_6.jpg", Shown(STILL)),
    case(P, "Tests/images/hopper_orientation_7.jpg", Shown(STILL)),
    case(P, "Tests/images/hopper_orientation_8.jpg", Shown(STILL)),
    case(P, "Tests/images/orientation_rectangle.jpg", Shown(STILL)),
    case(P, "Tests/images/empty_gps_ifd.jpg", Shown(STILL)),
    case(P, "Tests/images/pil_sample_cmyk.jpg", Shown(STILL)),
    case(P, "Tests/images/app13-multiple.jpg", Shown(STILL)),
    case(P, "Tests/images/hopper_gray.jpg", Shown(STILL)),
    case(P, "Tests/images/hopper_16bit_qtables.jpg", Shown(STILL)),
    case(P, "Tests/images/flower.jpg", Shown(STILL)),
    case(P, "Tests/images/flower2.jpg", Shown(STILL)),
    case(P, "Tests/images/photoshop-200dpi.jpg", Shown(STILL)),
    case(P, "Tests/images/icc-after-SOF.jpg", Shown(STILL)),
    case(P, "Tests/images/junk_jpeg_header.jpg", Shown(STILL)),
    case(P, "Tests/images/jpeg_ff00_header.jpg", Shown(STILL)),
    case(P, "Tests/images/hopper_bad_exif.jpg", Damaged(STILL, "entropy data corrupt from a third down: libjpeg paints garbage, we stop and fill grey")),
    case(P, "Tests/images/invalid-exif.jpg", Shown(STILL)),
    case(P, "Tests/images/sugarshack.mpo", Shown(STILL)),
    case(P, "Tests/images/frozenpond.mpo", Shown(STILL)),
    case(
        P,
        "Tests/images/truncated_jpeg.jpg",
        Lenient(
            STILL,
            "progressive, cut 8 bytes short inside its last scan: shown from its complete \
             scans (src/media/jpegcut.rs), as libjpeg and browsers show it",
        ),
    ),
    case(
        P,
        "Tests/images/ultrahdr.jpg",
        Refused(
            STILL,
            "a phone's Ultra HDR photo cut to 48 kB by Pillow's test suite, right after its \
             start of scan: no picture data at all (a lenient Pillow shows uniform grey)",
        ),
    ),
    case(IM_DOC, "usr/share/doc/imagemagick-6-common/html/images/wizard.jpg", Shown(STILL)),
    case(IM_DOC, "usr/share/doc/imagemagick-6-common/html/images/rose.jpg", Shown(STILL)),
    case(IM_DOC, "usr/share/doc/imagemagick-6-common/html/images/bluebells_lin.jpg", Shown(STILL)),
    case(DESKTOP, "usr/share/desktop-base/lines-theme/login/sddm-preview.jpg", Shown(STILL)),
    case("crate:jpeg-decoder", "benches/tower_progressive.jpg", Shown(STILL)),
    case("crate:jpeg-decoder", "benches/tower_grayscale.jpg", Shown(STILL)),
    // ---- PNG
    case(P, "Tests/images/hopper.png", Shown(STILL)),
    case(P, "Tests/images/pil123p.png", Shown(STILL)),
    case(P, "Tests/images/pil123rgba.png", Shown(STILL)),
    case(P, "Tests/images/p_trns_single.png", Shown(STILL)),
    // tRNS grey key 0x00FF in a 1-bit PNG: masked to the depth, as libpng does.
    case(P, "Tests/images/1_trns.png", Shown(STILL)),
    case(P, "Tests/images/i_trns.png", Shown(STILL)),
    case(P, "Tests/images/l_trns.png", Shown(STILL)),
    case(P, "Tests/images/rgb_trns.png", Shown(STILL)),
    case(P, "Tests/images/uncompressed_la.png", Shown(STILL)),
    case(P, "Tests/images/exif_imagemagick_orientation.png", Shown(STILL)),
    case(P, "Tests/images/xmp_tags_orientation.png", Shown(STILL)),
    case(P, "Tests/images/transparent.png", Shown(STILL)),
    case(P, "Tests/images/test-card.png", Shown(STILL)),
    case(P, "Tests/images/radial_gradients.png", Shown(STILL)),
    case(P, "Tests/images/tiny.png", Shown(STILL)),
    case(P, "Tests/images/cross_scan_line.png", Shown(STILL)),
    case(P, "Tests/images/truncated_end_chunk.png", Damaged(STILL, "cut inside its last IDASTILL; Pillow refuses even when lenient")),
    case(P, "Tests/images/broken_data_stream.png", Refused(STILL, "corrupt zlib stream: the png crate stops (InsufficientInput); only a lenient Pillow shows a part")),
    case(P, "Tests/images/unknown_compression_method.png", Lenient(STILL, "its iCCP names compression method 1 and fails its CRC: strict Pillow refuses the file, the pixels are fine")),
    case(IM_DOC, "usr/share/doc/imagemagick-6-common/html/images/rose.png", Shown(STILL)),
    case(IM_DOC, "usr/share/doc/imagemagick-6-common/html/images/granite.png", Shown(STILL)),
    case(DESKTOP, "usr/share/desktop-base/softwaves-theme/grub/grub-16x9.png", Shown(STILL)),
    // ---- GIF
    case(P, "Tests/images/hopper.gif", Shown(GIF)),
    case(P, "Tests/images/chi.gif", Shown(GIF)),
    case(P, "Tests/images/iss634.gif", Shown(GIF)),
    case(P, "Tests/images/dispose_bgnd.gif", Shown(GIF)),
    case(P, "Tests/images/transparent.gif", Shown(GIF)),
    case(P, "Tests/images/no_palette.gif", Refused(GIF, "no colour table at all: the gif crate refuses the frame (Pillow assumes a grey ramp)")),
    case(P, "Tests/images/background_outside_palette.gif", Shown(GIF)),
    case(P, "Tests/images/zero_width.gif", Refused(GIF, "zero-width logical screen and frame: nothing to show")),
    case(P, "Tests/images/decompression_bomb.gif", Refused(GIF, "declares 4.3 Gpx: past every pixel limit")),
    case(IM_DOC, "usr/share/doc/imagemagick-6-common/html/images/smile.gif", Shown(GIF)),
    // ---- WebP
    case(P, "Tests/images/hopper.webp", Shown(STILL)),
    case(P, "Tests/images/flower.webp", Shown(STILL)),
    case(P, "Tests/images/transparent.webp", Shown(STILL)),
    case(P, "Tests/images/hopper_orientation_2.webp", Shown(STILL)),
    case(P, "Tests/images/hopper_orientation_3.webp", Shown(STILL)),
    case(P, "Tests/images/hopper_orientation_4.webp", Shown(STILL)),
    case(P, "Tests/images/hopper_orientation_5.webp", Shown(STILL)),
    case(P, "Tests/images/hopper_orientation_6.webp", Shown(STILL)),
    case(P, "Tests/images/hopper_orientation_7.webp", Shown(STILL)),
    case(P, "Tests/images/hopper_orientation_8.webp", Shown(STILL)),
    case(P, "Tests/images/iss634.webp", Shown(STILL)),
    // ---- TIFF
    case(P, "Tests/images/hopper.tif", Shown(STILL)),
    case(P, "Tests/images/hopper_lzw.tif", Shown(STILL)),
    case(P, "Tests/images/hopper_g4.tif", Shown(STILL)),
    case(P, "Tests/images/g4_orientation_3.tif", Shown(STILL)),
    case(P, "Tests/images/g4_orientation_5.tif", Shown(STILL)),
    case(P, "Tests/images/g4_orientation_6.tif", Shown(STILL)),
    case(P, "Tests/images/g4_orientation_8.tif", Shown(STILL)),
    case(P, "Tests/images/tiff_strip_cmyk_jpeg.tif", Shown(STILL)),
    case(P, "Tests/images/tiff_tiled_ycbcr_jpeg_2x2_sampling.tif", Shown(STILL)),
    case(P, "Tests/images/tiff_16bit_RGB.tiff", Shown(STILL)),
    case(P, "Tests/images/16bit.cropped.tif", Shown(STILL)),
    case(P, "Tests/images/tiff_strip_planar_lzw.tiff", Shown(STILL)),
    case(P, "Tests/images/hopper_bigtiff.tif", Shown(STILL)),
    case(P, "Tests/images/multipage.tiff", Shown(STILL)),
    case(P, "Tests/images/tiff_adobe_deflate.tif", Shown(STILL)),
    case(P, "Tests/images/hopper.Lab.tif", Known(STILL, "CIELab through libtiff's tiff2rgba: its Lab-to-RGB model is off by 11 from Pillow (14/9/18 per channel from hopper.tif, which this file was made from; Pillow 2.7); shown, with a colour cast")),
    case(P, "Tests/images/old-style-jpeg-compression.tif", Shown(STILL)),
    case(P, "Tests/images/hopper_lzma.tif", Shown(STILL)),
    case(P, "Tests/images/hopper_webp.tif", Shown(STILL)),
    case("crate:tiff", "tests/decodedata-rgb-3c-8b.tiff", Shown(STILL)),
    // ---- BMP
    case(P, "Tests/images/hopper.bmp", Shown(STILL)),
    case(P, "Tests/images/hopper_rle8.bmp", Shown(STILL)),
    case(P, "Tests/images/rgb32bf-rgba.bmp", Shown(STILL)),
];

/// A file made here: its name, bytes and expectation.
struct Made {
    name: &'static str,
    bytes: Vec<u8>,
    expect: Expect,
}

/// The picture the made files show: a gradient with a red top-left and a
/// green bottom-right block, so any turn or mirror moves colour.
fn marked(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        if x < w / 3 && y < h / 3 {
            Rgb([220, 30, 30])
        } else if x > w * 3 / 4 && y > h * 3 / 4 {
            Rgb([40, 200, 60])
        } else {
            Rgb([
                (x * 120 / w) as u8,
                (60 + y * 100 / h) as u8,
                (120 + (x + y) * 100 / (w + h)) as u8,
            ])
        }
    })
}

fn jpeg_with(img: &RgbImage, progressive: bool, restart: u16) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 88);
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    enc.set_progressive(progressive);
    enc.set_restart_interval(restart);
    let (w, h) = img.dimensions();
    enc.encode(
        img.as_raw(),
        w as u16,
        h as u16,
        jpeg_encoder::ColorType::Rgb,
    )
    .expect("encode jpeg");
    out
}

fn png16(w: u32, h: u32) -> Vec<u8> {
    // Full 16-bit range, so a decoder that keeps the low byte shows noise.
    let pic = marked(w, h);
    let img: ImageBuffer<Rgb<u16>, Vec<u16>> = ImageBuffer::from_fn(w, h, |x, y| {
        let m = pic.get_pixel(x, y).0;
        Rgb(m.map(|v| (u16::from(v) * 257).saturating_add(x as u16 % 7)))
    });
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(
            ne_bytes(img.as_raw()).as_slice(),
            w,
            h,
            image::ExtendedColorType::Rgb16,
        )
        .expect("encode png16");
    out
}

/// `image` wants 16-bit samples as native-endian bytes.
fn ne_bytes(v: &[u16]) -> Vec<u8> {
    v.iter().flat_map(|s| s.to_ne_bytes()).collect()
}

/// Runs ffmpeg in `dir` (arguments split on spaces) and returns the bytes
/// of `out`.
fn ffmpeg_made(dir: &Path, args: &str, out: &str) -> Vec<u8> {
    let st = Command::new("ffmpeg")
        .current_dir(dir)
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args.split_whitespace())
        .arg(out)
        .status()
        .expect("run ffmpeg");
    assert!(st.success(), "ffmpeg {args} {out} failed");
    std::fs::read(dir.join(out)).expect("read ffmpeg output")
}

/// The made half of the corpus.
fn made() -> Vec<Made> {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pic = marked(300, 200);
    pic.save(d.join("marked.png")).expect("save marked.png");
    // A 2 s still clip of the marked picture: the frame a server picks does
    // not matter, its orientation does.
    const CLIP: &str = "-loop 1 -framerate 10 -t 2 -i marked.png";
    const H264: &str = "-c:v libx264 -preset ultrafast -pix_fmt yuv420p";
    let mut m = vec![
        Made {
            name: "restart_420.jpg",
            bytes: jpeg_with(&pic, false, 3),
            expect: Shown(STILL),
        },
        Made {
            name: "progressive_restart.jpg",
            bytes: jpeg_with(&pic, true, 1),
            expect: Shown(STILL),
        },
        Made {
            name: "rgb16.png",
            bytes: png16(300, 200),
            expect: Shown(STILL),
        },
        Made {
            name: "lossless.webp",
            bytes: ffmpeg_made(d, "-i marked.png -c:v libwebp -lossless 1", "lossless.webp"),
            expect: Shown(STILL),
        },
        Made {
            name: "animated.webp",
            bytes: ffmpeg_made(
                d,
                // Frames differ (hue turns), else libwebp writes one still.
                &format!("{CLIP} -vf fps=2,hue=h=t*90 -c:v libwebp_anim -loop 0"),
                "animated.webp",
            ),
            expect: Shown(STILL),
        },
        Made {
            name: "animated.png",
            bytes: ffmpeg_made(
                d,
                &format!("{CLIP} -vf fps=2 -f apng -plays 0"),
                "animated.png",
            ),
            expect: Shown(STILL),
        },
    ];
    // Clips: containers and codecs a family's phones, cameras and old
    // camcorders leave behind, and display matrices turning them.
    ffmpeg_made(d, &format!("{CLIP} {H264}"), "plain.mp4");
    let rotated = |deg: u32, out: &str| -> Vec<u8> {
        // The rotate tag becomes a display matrix on a stream copy only.
        ffmpeg_made(
            d,
            &format!("-i plain.mp4 -c copy -metadata:s:v:0 rotate={deg}"),
            out,
        )
    };
    let videos = [
        ("rot90.mp4", rotated(90, "rot90.mp4")),
        ("rot180.mov", rotated(180, "rot180.mov")),
        ("rot270.mp4", rotated(270, "rot270.mp4")),
        (
            "vp9.webm",
            ffmpeg_made(
                d,
                &format!("{CLIP} -c:v libvpx-vp9 -deadline realtime -cpu-used 8"),
                "vp9.webm",
            ),
        ),
        (
            "theora.mkv",
            ffmpeg_made(d, &format!("{CLIP} -c:v libtheora"), "theora.mkv"),
        ),
        (
            "mjpeg.avi",
            ffmpeg_made(
                d,
                &format!("{CLIP} -c:v mjpeg -pix_fmt yuvj420p"),
                "mjpeg.avi",
            ),
        ),
        (
            "mpeg2.mpg",
            ffmpeg_made(d, &format!("{CLIP} -c:v mpeg2video"), "mpeg2.mpg"),
        ),
        (
            "h264.mts",
            ffmpeg_made(d, &format!("{CLIP} {H264} -f mpegts"), "h264.mts"),
        ),
        // Anamorphic, as HDV camcorders store 1920×1080 in 1440×1080:
        // displayed 300×200.
        (
            "anamorphic.mp4",
            ffmpeg_made(
                d,
                &format!("{CLIP} -vf scale=240:200,setsar=5/4 {H264}"),
                "anamorphic.mp4",
            ),
        ),
        (
            "h263_par.3gp",
            ffmpeg_made(
                d,
                &format!("{CLIP} -vf scale=176:144 -c:v h263"),
                "h263_par.3gp",
            ),
        ),
        (
            "h263.3gp",
            ffmpeg_made(
                d,
                &format!("{CLIP} -vf scale=176:144,setsar=1 -c:v h263"),
                "h263.3gp",
            ),
        ),
    ];
    for (name, bytes) in videos {
        // h263_par.3gp: H.263 at 12:11 pixels, no pasp box; listed 192×144
        // as ffmpeg shows it (the probe reads the first picture header).
        let expect = Shown(VIDEO);
        m.push(Made {
            name,
            bytes,
            expect,
        });
    }
    m
}

// ---- tools -----------------------------------------------------------------

/// Fails under `CI=true`, else tells why the test is skipped.
fn missing(what: &str) -> bool {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} (CI=true: `make test` installs and fetches it)");
    }
    eprintln!("skipping the corpus test: {what}");
    true
}

/// A python3 that has Pillow: the first of PATH's and Debian's.
fn python_with_pil() -> Option<String> {
    ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|py| {
            Command::new(py)
                .args(["-c", "import PIL.Image, PIL.ImageOps"])
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(String::from)
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the fetched corpus is kept between runs: `target/corpus-cache`.
fn cache_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("target"))
        .join("corpus-cache")
}

/// Fetches whatever of [`FETCHED`] the cache lacks; false after a message
/// when that failed outside CI.
fn fetch() -> bool {
    let list: String = FETCHED
        .iter()
        .map(|c| format!("{} {}\n", c.source, c.path))
        .collect();
    let mut child = Command::new("bash")
        .arg(manifest_dir().join("tests/corpus/fetch.sh"))
        .arg(cache_dir())
        .stdin(Stdio::piped())
        .spawn()
        .expect("run tests/corpus/fetch.sh");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(list.as_bytes())
        .expect("write the fetch list");
    let ok = child.wait().expect("wait for fetch.sh").success();
    ok || !missing("tests/corpus/fetch.sh could not fetch the corpus (network? see its output)")
}

fn cached(c: &Case) -> PathBuf {
    cache_dir()
        .join("files")
        .join(c.source.replace(':', "_"))
        .join(c.path)
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

// ---- the test ----------------------------------------------------------------

/// One file of the corpus as the server showed it.
struct Seen {
    name: String,
    folder: &'static str,
    original: PathBuf,
    expect: Expect,
    listed: Value,
    /// The level-1 thumbnail's bytes, or the error code.
    thumb: Result<Vec<u8>, i64>,
}

async fn level1(api: &Api, id: i64) -> Result<Vec<u8>, i64> {
    let r = api
        .get("/thumbnail.icc", json!({"id": id, "level": 1}))
        .await;
    let ctype = header(&r, "content-type");
    let bytes = r.bytes().await.expect("thumbnail body").to_vec();
    if ctype.starts_with("image/") {
        return Ok(bytes);
    }
    let v: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("thumbnail reply neither image nor JSON ({e}): {ctype}"));
    Err(v["code"].as_i64().unwrap_or(0))
}

/// The size a level-1 thumbnail of a `w`×`h` picture has: fitted into the
/// box, never enlarged.
fn fitted(w: i64, h: i64) -> (i64, i64) {
    let long = w.max(h);
    if long <= SCREEN_EDGE_PX {
        return (w, h);
    }
    let scale = |v: i64| ((v * SCREEN_EDGE_PX) as f64 / long as f64).round().max(1.0) as i64;
    (scale(w), scale(h))
}

/// The reference frame of a clip: ffmpeg's first frame, turned upright by
/// its autorotate. The made clips show one still picture, so the frame the
/// server picks (about 1 s in, spec §10) shows the same.
fn video_reference(original: &Path, out: &Path) {
    let st = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(original)
        // Square pixels, as a screen shows a clip of non-square ones.
        .args(["-vf", "scale=iw*sar:ih,setsar=1", "-frames:v", "1"])
        .arg(out)
        .status()
        .expect("run ffmpeg");
    assert!(st.success(), "reference frame of {}", original.display());
}

/// What `reference.py` compares: an original (or a clip's reference
/// frame) and our thumbnail of it.
struct Job {
    original: PathBuf,
    thumb: Option<PathBuf>,
    lenient: bool,
}

/// Runs `reference.py` over (original, thumbnail) pairs; one answer each.
fn reference(python: &str, jobs: &[Job]) -> Vec<Value> {
    let mut child = Command::new(python)
        .arg(manifest_dir().join("tests/corpus/reference.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run reference.py");
    let input: String = jobs
        .iter()
        .map(|j| {
            let line = json!({"original": j.original, "thumb": j.thumb, "lenient": j.lenient});
            format!("{line}\n")
        })
        .collect();
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("reference.py output");
    writer.join().expect("writer").expect("write jobs");
    assert!(out.status.success(), "reference.py failed");
    let answers: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("reference.py answer"))
        .collect();
    assert_eq!(answers.len(), jobs.len(), "one answer a job");
    answers
}

/// What is wrong with how the server showed `s`, given the reference's
/// answer; None when it is right.
fn judge(s: &Seen, want_type: i64, r: &Value) -> Option<String> {
    let f = &s.listed;
    if f["type"] != want_type {
        return Some(format!("listed as type {} (want {want_type})", f["type"]));
    }
    if let Some(e) = r["ref_error"].as_str() {
        return Some(format!(
            "the reference cannot read it ({e}); the table must say what to expect"
        ));
    }
    let (rw, rh) = (r["ref_size"][0].as_i64()?, r["ref_size"][1].as_i64()?);
    let listed = (
        f["width"].as_i64().unwrap_or(-1),
        f["height"].as_i64().unwrap_or(-1),
    );
    if listed != (rw, rh) {
        return Some(format!(
            "listed {}×{}, displayed {rw}×{rh}",
            listed.0, listed.1
        ));
    }
    let thumb = match &s.thumb {
        Ok(_) => (r["thumb_size"][0].as_i64()?, r["thumb_size"][1].as_i64()?),
        Err(code) => return Some(format!("thumbnail refused with {code}")),
    };
    let want = fitted(rw, rh);
    if (thumb.0 - want.0).abs() > 1 || (thumb.1 - want.1).abs() > 1 {
        return Some(format!(
            "thumbnail {}×{}, want {}×{}",
            thumb.0, thumb.1, want.0, want.1
        ));
    }
    let (mad, worst) = (r["mad"].as_f64()?, r["worst"].as_f64()?);
    if mad > MAX_MAD || worst > MAX_CELL {
        return Some(format!(
            "thumbnail pixels differ: mean {mad:.1}, worst cell {worst:.1}"
        ));
    }
    None
}

/// What is wrong with a damaged file's listing and thumbnail size, pixels
/// aside; None when they agree.
fn judge_sizes(s: &Seen, want_type: i64) -> Option<String> {
    let f = &s.listed;
    if f["type"] != want_type {
        return Some(format!("listed as type {} (want {want_type})", f["type"]));
    }
    let (w, h) = (
        f["width"].as_i64().unwrap_or(-1),
        f["height"].as_i64().unwrap_or(-1),
    );
    if w < 1 || h < 1 {
        return Some(format!("listed {w}×{h}"));
    }
    let bytes = match &s.thumb {
        Ok(b) => b,
        Err(code) => return Some(format!("thumbnail refused with {code}")),
    };
    let thumb = match image::load_from_memory(bytes) {
        Ok(t) => (i64::from(t.width()), i64::from(t.height())),
        Err(e) => return Some(format!("thumbnail does not decode: {e}")),
    };
    let want = fitted(w, h);
    ((thumb.0 - want.0).abs() > 1 || (thumb.1 - want.1).abs() > 1).then(|| {
        format!(
            "thumbnail {}×{}, want {}×{}",
            thumb.0, thumb.1, want.0, want.1
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_file_is_listed_and_thumbnailed_like_the_reference_decoder() {
    if !ffmpeg_available() {
        return;
    }
    let Some(python) = python_with_pil() else {
        missing("no python3 with Pillow (apt-get install python3-pil)");
        return;
    };
    if !fetch() {
        return;
    }

    // Every file under its source's folder; names must not collide.
    let mut b = TestApp::builder()
        .user("alice")
        .library("corpus", &["alice"])
        .prerender(false);
    let mut files: Vec<(String, &'static str, Expect, Vec<u8>)> = Vec::new();
    for c in FETCHED {
        let bytes =
            std::fs::read(cached(c)).unwrap_or_else(|e| panic!("{} {}: {e}", c.source, c.path));
        let folder = c.source.split(':').next_back().unwrap_or(c.source);
        files.push((basename(c.path).to_string(), folder, c.expect, bytes));
    }
    for m in made() {
        files.push((m.name.to_string(), "made", m.expect, m.bytes));
    }
    let mut names = BTreeSet::new();
    for (name, folder, _, bytes) in &files {
        assert!(names.insert(name.clone()), "two corpus files named {name}");
        b = b.file(&format!("corpus/{folder}/{name}"), bytes);
    }
    let app = b.spawn().await;
    let media = app.media().join("corpus");

    let listed: BTreeMap<String, Value> = app
        .api
        .all_files()
        .await
        .into_iter()
        .map(|f| (f["name"].as_str().unwrap_or("").to_string(), f))
        .collect();
    let mut seen = Vec::new();
    let mut failures = Vec::new();
    for (name, folder, expect, _) in files {
        let Some(f) = listed.get(&name) else {
            failures.push(format!("{folder}/{name}: not listed"));
            continue;
        };
        let thumb = level1(&app.api, id(f)).await;
        seen.push(Seen {
            original: media.join(folder).join(&name),
            name,
            folder,
            expect,
            listed: f.clone(),
            thumb,
        });
    }

    // The reference's view of each original and our thumbnail of it.
    let work = tempfile::tempdir().expect("tempdir");
    if std::env::var_os("ISYNC_CORPUS_KEEP").is_some() {
        // For a look at what failed: originals' reference frames and our
        // thumbnails stay, numbered in table order.
        eprintln!("keeping thumbnails in {}", work.path().display());
    }
    let jobs: Vec<Job> = seen
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let original = if s.listed["type"] == VIDEO {
                let frame = work.path().join(format!("{i}-ref.png"));
                video_reference(&s.original, &frame);
                frame
            } else {
                s.original.clone()
            };
            let thumb = s.thumb.as_ref().ok().map(|bytes| {
                let p = work.path().join(format!("{i}-{}-thumb", s.name));
                std::fs::write(&p, bytes).expect("write thumbnail");
                p
            });
            Job {
                original,
                thumb,
                lenient: matches!(s.expect, Lenient(..) | Known(..)),
            }
        })
        .collect();
    let answers = reference(&python, &jobs);
    if std::env::var_os("ISYNC_CORPUS_KEEP").is_some() {
        let _ = work.keep();
    }

    for (s, r) in seen.iter().zip(&answers) {
        let at = format!("{}/{}", s.folder, s.name);
        let problem = match s.expect {
            Shown(t) => judge(s, t, r).map(|why| format!("{why} [reference {r}]")),
            Lenient(t, damage) => judge(s, t, r)
                .map(|why| format!("{why} [damaged: {damage}; lenient reference {r}]")),
            Refused(t, reason) => {
                if s.listed["type"] != t {
                    Some(format!("listed as type {} (want {t})", s.listed["type"]))
                } else if s.thumb != Err(-10008) {
                    let got = s.thumb.as_ref().map(|b| b.len());
                    Some(format!(
                        "want −10008 ({reason}), got {got:?} bytes [reference {r}]"
                    ))
                } else {
                    None
                }
            }
            Damaged(t, damage) => judge_sizes(s, t).map(|why| format!("{why} [damaged: {damage}]")),
            Known(t, bug) => judge(s, t, r)
                .is_none()
                .then(|| format!("known bug \"{bug}\" no longer shows: mark it Shown")),
        };
        if let Some(p) = problem {
            failures.push(format!("{at}: {p}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus files are wrong:\n{}",
        failures.len(),
        seen.len(),
        failures.join("\n")
    );
}
