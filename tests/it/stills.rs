//! Still images other than JPEG and HEIF (issue 15, "a right thumbnail or
//! an honest refusal"): BMP variants listed with their real size and
//! thumbnailed, PNGs with a bad CRC or no IEND shown as browsers show them,
//! EXIF and XMP orientation in PNG and WebP applied to the listed size and
//! the pixels. Fixtures are written here byte by byte (BMP, PNG chunks,
//! WebP RIFF chunks around a lossless picture ffmpeg encodes), each from
//! one picture with a red top-left quarter, so where the red corner lands
//! in a thumbnail says how it was turned.

use crate::common;

use common::*;
use image::{DynamicImage, GenericImageView, RgbImage};
use serde_json::{json, Value};

const W: u32 = 80;
const H: u32 = 60;

/// The stored picture: a red top-left quarter on a blue-green gradient
/// that never looks red.
fn marked(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| image::Rgb(marked_at(x, y, w, h)))
}

fn marked_at(x: u32, y: u32, w: u32, h: u32) -> [u8; 3] {
    if x < w / 2 && y < h / 2 {
        [220, 20, 20]
    } else {
        [30, 90 + ((x + y) % 60) as u8, 160]
    }
}

fn is_red(img: &DynamicImage, fx: f64, fy: f64) -> bool {
    let (w, h) = img.dimensions();
    let x = ((w as f64 * fx) as u32).min(w - 1);
    let y = ((h as f64 * fy) as u32).min(h - 1);
    let p = img.get_pixel(x, y).0;
    p[0] > 170 && p[1] < 80 && p[2] < 80
}

/// Which display corner is red, asserting that exactly one is and that the
/// others have the fixture's background (blue well above red).
fn red_corner(img: &DynamicImage) -> &'static str {
    let corners = [
        ("tl", 0.125, 0.125),
        ("tr", 0.875, 0.125),
        ("bl", 0.125, 0.875),
        ("br", 0.875, 0.875),
    ];
    let mut red = Vec::new();
    for (name, fx, fy) in corners {
        if is_red(img, fx, fy) {
            red.push(name);
        } else {
            let (w, h) = img.dimensions();
            let p = img.get_pixel(
                ((w as f64 * fx) as u32).min(w - 1),
                ((h as f64 * fy) as u32).min(h - 1),
            );
            assert!(
                p.0[2] > 120 && p.0[0] < 80,
                "corner {name} is neither red nor the background: {:?}",
                p.0
            );
        }
    }
    assert_eq!(red.len(), 1, "expected one red corner, got {red:?}");
    red[0]
}

async fn thumb_ok(api: &Api, name: &str, id: i64, level: u8) -> DynamicImage {
    let r = api
        .get("/thumbnail.icc", json!({"id": id, "level": level}))
        .await;
    let status = r.status();
    let bytes = r.bytes().await.unwrap().to_vec();
    assert_eq!(
        status,
        200,
        "thumbnail of {name} level {level}: {}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
    );
    image::load_from_memory(&bytes).expect("thumbnail decodes")
}

fn dims(f: &Value) -> (i64, i64) {
    (
        f["width"].as_i64().unwrap_or(-1),
        f["height"].as_i64().unwrap_or(-1),
    )
}

/// Spawns a library holding `files` (name, bytes) for alice.
async fn library(files: &[(String, Vec<u8>)]) -> TestApp {
    let mut b = TestApp::builder()
        .user("alice")
        .library("photos", &["alice"])
        .prerender(false);
    for (name, bytes) in files {
        b = b.file(&format!("photos/{name}"), bytes);
    }
    b.spawn().await
}

/// Asserts a photo is listed `want` in size and that both thumbnail levels
/// have that shape with the red corner at `corner`.
async fn assert_shown(app: &TestApp, name: &str, want: (i64, i64), corner: &str) {
    let f = app.api.file_named(name).await;
    assert_eq!(f["type"], 1, "{name}: {f}");
    assert_eq!(dims(&f), want, "{name} listed size");
    for level in [0, 1] {
        let img = thumb_ok(&app.api, name, id(&f), level).await;
        let (w, h) = img.dimensions();
        assert_eq!(
            (i64::from(w), i64::from(h)),
            want,
            "{name} level {level} size"
        );
        assert_eq!(red_corner(&img), corner, "{name} level {level}");
    }
}

// ---- BMP ------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Bmp {
    /// BITMAPINFOHEADER, negative height: rows stored top first.
    TopDown24,
    /// OS/2 1.x BITMAPCOREHEADER (12 bytes, 16-bit sizes).
    Os2Core24,
    /// 32 bits a pixel, BI_BITFIELDS with masks in an unusual order
    /// (R G B X from the most significant byte), so masks must be read.
    Bitfields32,
}

fn le16(v: u16) -> [u8; 2] {
    v.to_le_bytes()
}
fn le32(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

fn bmp(img: &RgbImage, kind: Bmp) -> Vec<u8> {
    let (w, h) = img.dimensions();
    let bpp: u32 = if matches!(kind, Bmp::Bitfields32) {
        32
    } else {
        24
    };
    let mut dib = Vec::new();
    match kind {
        Bmp::Os2Core24 => {
            dib.extend(le32(12));
            dib.extend(le16(w as u16));
            dib.extend(le16(h as u16));
            dib.extend(le16(1));
            dib.extend(le16(24));
        }
        Bmp::TopDown24 | Bmp::Bitfields32 => {
            let top_down = matches!(kind, Bmp::TopDown24);
            let height = if top_down { -(h as i32) } else { h as i32 };
            let compression = if top_down { 0 } else { 3 };
            let row = (w * bpp / 8).div_ceil(4) * 4;
            dib.extend(le32(40));
            dib.extend((w as i32).to_le_bytes());
            dib.extend(height.to_le_bytes());
            dib.extend(le16(1));
            dib.extend(le16(bpp as u16));
            dib.extend(le32(compression));
            dib.extend(le32(row * h));
            dib.extend(le32(2835));
            dib.extend(le32(2835));
            dib.extend(le32(0));
            dib.extend(le32(0));
            if !top_down {
                dib.extend(le32(0xFF00_0000));
                dib.extend(le32(0x00FF_0000));
                dib.extend(le32(0x0000_FF00));
            }
        }
    }
    let mut pixels = Vec::new();
    let rows: Vec<u32> = if matches!(kind, Bmp::TopDown24) {
        (0..h).collect()
    } else {
        (0..h).rev().collect()
    };
    for y in rows {
        let start = pixels.len();
        for x in 0..w {
            let [r, g, b] = img.get_pixel(x, y).0;
            if bpp == 32 {
                let v = (u32::from(r) << 24) | (u32::from(g) << 16) | (u32::from(b) << 8);
                pixels.extend(le32(v));
            } else {
                pixels.extend([b, g, r]);
            }
        }
        while (pixels.len() - start) % 4 != 0 {
            pixels.push(0);
        }
    }
    let offset = 14 + dib.len() as u32;
    let mut out = b"BM".to_vec();
    out.extend(le32(offset + pixels.len() as u32));
    out.extend([0; 4]);
    out.extend(le32(offset));
    out.extend(dib);
    out.extend(pixels);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bmp_variants_are_listed_and_thumbnailed_right() {
    let img = marked(W, H);
    let files = [
        ("top_down.bmp", Bmp::TopDown24),
        ("os2.bmp", Bmp::Os2Core24),
        ("bitfields32.bmp", Bmp::Bitfields32),
    ]
    .map(|(n, k)| (n.to_string(), bmp(&img, k)));
    let app = library(&files).await;
    for (name, _) in &files {
        assert_shown(&app, name, (W as i64, H as i64), "tl").await;
    }
}

// ---- PNG ------------------------------------------------------------------

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

fn png_chunk(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    let start = out.len();
    out.extend(kind);
    out.extend(body);
    let crc = crc32(&out[start..]);
    out.extend(crc.to_be_bytes());
    out
}

fn png(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    DynamicImage::ImageRgb8(img.clone())
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// Offsets of the chunks of a PNG: (start of the length field, type).
fn png_chunks(png: &[u8]) -> Vec<(usize, [u8; 4])> {
    let mut at = 8;
    let mut out = Vec::new();
    while at + 8 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        out.push((at, png[at + 4..at + 8].try_into().unwrap()));
        at += 12 + len;
    }
    out
}

/// `png` with `chunk` inserted before its first IDAT.
fn png_with(png: &[u8], chunk: &[u8]) -> Vec<u8> {
    let idat = png_chunks(png)
        .into_iter()
        .find(|(_, k)| k == b"IDAT")
        .unwrap()
        .0;
    [&png[..idat], chunk, &png[idat..]].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pngs_with_a_bad_crc_or_no_iend_get_their_thumbnails() {
    let img = marked(W, H);
    let good = png(&img);
    let mut bad_crc = good.clone();
    let (idat, _) = png_chunks(&good)
        .into_iter()
        .find(|(_, k)| k == b"IDAT")
        .unwrap();
    let len = u32::from_be_bytes(good[idat..idat + 4].try_into().unwrap()) as usize;
    bad_crc[idat + 8 + len] ^= 0x5A; // first byte of the IDAT's CRC
    let iend = png_chunks(&good).last().unwrap().0;
    let no_iend = good[..iend].to_vec();
    // A bad CRC on an ancillary chunk too (a tEXt a tool wrote wrongly).
    let mut text = png_chunk(b"tEXt", b"Comment\0scanned");
    let n = text.len();
    text[n - 1] ^= 1;
    let bad_text = png_with(&good, &text);
    let files = [
        ("bad_crc.png", bad_crc),
        ("no_iend.png", no_iend),
        ("bad_text_crc.png", bad_text),
    ]
    .map(|(n, b)| (n.to_string(), b));
    let app = library(&files).await;
    for (name, _) in &files {
        assert_shown(&app, name, (W as i64, H as i64), "tl").await;
    }
}

// ---- orientation outside JPEG ---------------------------------------------

/// A big-endian TIFF (EXIF) block holding only `Orientation`.
fn tiff_orientation(o: u16) -> Vec<u8> {
    let mut t = b"MM\0\x2A".to_vec();
    t.extend(8u32.to_be_bytes());
    t.extend(1u16.to_be_bytes());
    t.extend(0x0112u16.to_be_bytes());
    t.extend(3u16.to_be_bytes());
    t.extend(1u32.to_be_bytes());
    t.extend(o.to_be_bytes());
    t.extend([0, 0]);
    t.extend(0u32.to_be_bytes());
    t
}

/// An XMP packet with `tiff:Orientation`, as an attribute (Adobe's short
/// form) or as an element.
fn xmp_orientation(o: u16, attribute: bool) -> String {
    let prop = if attribute {
        format!(
            r#"<rdf:Description rdf:about="" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="{o}"/>"#
        )
    } else {
        format!(
            r#"<rdf:Description rdf:about="" xmlns:tiff="http://ns.adobe.com/tiff/1.0/">
   <tiff:Orientation>{o}</tiff:Orientation>
  </rdf:Description>"#
        )
    };
    format!(
        r#"<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  {prop}
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"#
    )
}

fn png_xmp(png: &[u8], xmp: &str) -> Vec<u8> {
    let mut body = b"XML:com.adobe.xmp\0\0\0\0\0".to_vec();
    body.extend(xmp.as_bytes());
    png_with(png, &png_chunk(b"iTXt", &body))
}

/// A lossless WebP of `img` (ffmpeg's libwebp), rewrapped as an extended
/// (VP8X) file with the given EXIF and XMP chunks.
fn webp(dir: &std::path::Path, img: &RgbImage, exif: Option<&[u8]>, xmp: Option<&str>) -> Vec<u8> {
    let src = dir.join("src.png");
    let out = dir.join("out.webp");
    std::fs::write(&src, png(img)).unwrap();
    let ok = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(&src)
        .args(["-c:v", "libwebp", "-lossless", "1"])
        .arg(&out)
        .status()
        .expect("ffmpeg runs")
        .success();
    assert!(ok, "ffmpeg made no WebP");
    let simple = std::fs::read(&out).unwrap();
    assert_eq!(&simple[8..16], b"WEBPVP8L", "a simple lossless WebP");
    let chunk = |kind: &[u8; 4], body: &[u8]| {
        let mut c = kind.to_vec();
        c.extend((body.len() as u32).to_le_bytes());
        c.extend(body);
        if body.len() % 2 == 1 {
            c.push(0);
        }
        c
    };
    let (w, h) = img.dimensions();
    let mut vp8x = vec![0u8; 10];
    vp8x[0] = if exif.is_some() { 0x08 } else { 0 } | if xmp.is_some() { 0x04 } else { 0 };
    vp8x[4..7].copy_from_slice(&(w - 1).to_le_bytes()[..3]);
    vp8x[7..10].copy_from_slice(&(h - 1).to_le_bytes()[..3]);
    let mut body = b"WEBP".to_vec();
    body.extend(chunk(b"VP8X", &vp8x));
    body.extend(&simple[12..]); // the VP8L chunk as it was
    if let Some(e) = exif {
        body.extend(chunk(b"EXIF", e));
    }
    if let Some(x) = xmp {
        body.extend(chunk(b"XMP ", x.as_bytes()));
    }
    let mut out = b"RIFF".to_vec();
    out.extend((body.len() as u32).to_le_bytes());
    out.extend(body);
    out
}

/// An animated lossless WebP of `frames` (libwebp_anim), with an `EXIF`
/// chunk after the frames when `exif` is given (VP8X's flag set).
fn animated_webp(dir: &std::path::Path, frames: &[RgbImage], exif: Option<&[u8]>) -> Vec<u8> {
    for (i, f) in frames.iter().enumerate() {
        std::fs::write(dir.join(format!("frame{i}.png")), png(f)).unwrap();
    }
    let out = dir.join("anim.webp");
    let ok = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-framerate",
            "2",
            "-i",
        ])
        .arg(dir.join("frame%d.png"))
        .args(["-c:v", "libwebp_anim", "-lossless", "1", "-loop", "0"])
        .arg(&out)
        .status()
        .expect("ffmpeg runs")
        .success();
    assert!(ok, "ffmpeg made no animated WebP");
    let mut bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[12..16], b"VP8X", "an extended WebP");
    assert_ne!(bytes[20] & 0x02, 0, "with its animation flag");
    if let Some(e) = exif {
        bytes[20] |= 0x08;
        bytes.extend(b"EXIF");
        bytes.extend((e.len() as u32).to_le_bytes());
        bytes.extend(e);
        if e.len() % 2 == 1 {
            bytes.push(0);
        }
        let riff = bytes.len() as u32 - 8;
        bytes[4..8].copy_from_slice(&riff.to_le_bytes());
    }
    bytes
}

/// A fixture: name, bytes, listed size, display corner of the stored
/// top-left.
type Case = (&'static str, Vec<u8>, (i64, i64), &'static str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exif_and_xmp_orientation_in_png_and_still_or_animated_webp_is_applied() {
    if !ffmpeg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = marked(W, H);
    let turned = image::imageops::rotate180(&img);
    let plain = png(&img);
    let (w, h) = (W as i64, H as i64);
    // (name, bytes, listed size, where the stored top-left corner shows)
    let cases: Vec<Case> = vec![
        (
            "exif6.png",
            png_with(&plain, &png_chunk(b"eXIf", &tiff_orientation(6))),
            (h, w),
            "tr",
        ),
        (
            "xmp8.png",
            png_xmp(&plain, &xmp_orientation(8, true)),
            (h, w),
            "bl",
        ),
        (
            "xmp3_element.png",
            png_xmp(&plain, &xmp_orientation(3, false)),
            (w, h),
            "br",
        ),
        (
            "exif6.webp",
            webp(tmp.path(), &img, Some(&tiff_orientation(6)), None),
            (h, w),
            "tr",
        ),
        (
            "xmp8.webp",
            webp(tmp.path(), &img, None, Some(&xmp_orientation(8, false))),
            (h, w),
            "bl",
        ),
        (
            "exif3.webp",
            webp(tmp.path(), &img, Some(&tiff_orientation(3)), None),
            (w, h),
            "br",
        ),
        (
            "plain.webp",
            webp(tmp.path(), &img, None, None),
            (w, h),
            "tl",
        ),
        // The first frame, whose red quarter is top-left; the second has
        // it bottom-right, so showing another frame is seen.
        (
            "animated.webp",
            animated_webp(tmp.path(), &[img.clone(), turned.clone()], None),
            (w, h),
            "tl",
        ),
        (
            "animated_exif6.webp",
            animated_webp(
                tmp.path(),
                &[img.clone(), turned.clone()],
                Some(&tiff_orientation(6)),
            ),
            (h, w),
            "tr",
        ),
    ];
    let files: Vec<(String, Vec<u8>)> = cases
        .iter()
        .map(|(n, b, _, _)| (n.to_string(), b.clone()))
        .collect();
    let app = library(&files).await;
    for (name, _, want, corner) in &cases {
        assert_shown(&app, name, *want, corner).await;
    }
}

/// A PNG of `img` stored without compression (its IDAT as large as its
/// pixels: 360 KiB for 400×300), with `after` inserted after the pixels,
/// before IEND.
fn png_stored_with_after(img: &RgbImage, after: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, img.width(), img.height());
    enc.set_color(png::ColorType::Rgb);
    enc.set_compression(png::Compression::NoCompression);
    let mut w = enc.write_header().unwrap();
    w.write_image_data(img.as_raw()).unwrap();
    w.finish().unwrap();
    let iend = png_chunks(&out).last().unwrap().0;
    [&out[..iend], after, &out[iend..]].concat()
}

/// An `iTXt` chunk holding `xmp` zlib-compressed.
fn compressed_xmp_chunk(xmp: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(xmp).unwrap();
    let mut body = b"XML:com.adobe.xmp\0\x01\0\0\0".to_vec();
    body.extend(z.finish().unwrap());
    png_chunk(b"iTXt", &body)
}

/// EXIF and XMP a PNG keeps after its pixels (exiftool and some editors
/// write them there), past the probe's first read of 128 KiB, and XMP in a
/// compressed `iTXt` chunk, are found: the listed size and the thumbnail
/// are turned by them. Hostile chunks are ignored without the memory they
/// ask for: a length of 4 GiB ends the walk, a compressed XMP packet that
/// inflates past 1 MiB (a zlib bomb of 64 MiB) is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn png_metadata_after_the_pixels_or_compressed_is_applied() {
    let big = marked(400, 300);
    let exif6 = png_chunk(b"eXIf", &tiff_orientation(6));
    let after = png_stored_with_after(&big, &exif6);
    let idat = png_chunks(&after)
        .iter()
        .find(|(_, k)| k == b"eXIf")
        .unwrap()
        .0;
    assert!(idat > 300 << 10, "eXIf at {idat}: past the probe's head");
    let xmp8 = xmp_orientation(8, true);
    let plain = png(&marked(W, H));
    // A chunk claiming 4 GiB − 1 after the pixels, then the eXIf.
    let mut huge = 0xFFFF_FFFFu32.to_be_bytes().to_vec();
    huge.extend(b"zzZz");
    huge.extend([0; 16]);
    // 64 MiB of padding, then the orientation: compressed to ~64 KiB.
    let mut bomb = vec![b' '; 64 << 20];
    bomb.extend(xmp_orientation(6, true).as_bytes());
    let files = [
        ("exif6_after_pixels.png", after.clone()),
        (
            "xmp8_compressed_after_pixels.png",
            png_stored_with_after(&big, &compressed_xmp_chunk(xmp8.as_bytes())),
        ),
        (
            "xmp8_compressed.png",
            png_with(&plain, &compressed_xmp_chunk(xmp8.as_bytes())),
        ),
        (
            "huge_chunk.png",
            png_stored_with_after(&marked(W, H), &[&huge[..], &exif6].concat()),
        ),
        (
            "zlib_bomb.png",
            png_with(&plain, &compressed_xmp_chunk(&bomb)),
        ),
    ]
    .map(|(n, b)| (n.to_string(), b));
    let app = library(&files).await;
    let (w, h) = (W as i64, H as i64);
    assert_shown(&app, "xmp8_compressed.png", (h, w), "bl").await;
    assert_shown(&app, "huge_chunk.png", (w, h), "tl").await;
    assert_shown(&app, "zlib_bomb.png", (w, h), "tl").await;
    // The big ones at level 1, which keeps their 400×300 turned.
    for (name, corner) in [
        ("exif6_after_pixels.png", "tr"),
        ("xmp8_compressed_after_pixels.png", "bl"),
    ] {
        let f = app.api.file_named(name).await;
        assert_eq!(dims(&f), (300, 400), "{name} listed size");
        let img = thumb_ok(&app.api, name, id(&f), 1).await;
        assert_eq!(img.dimensions(), (300, 400), "{name} thumbnail");
        assert_eq!(red_corner(&img), corner, "{name}");
    }
}

// ---- TIFF -----------------------------------------------------------------

/// How one TIFF page lays out its samples.
#[derive(Clone)]
struct Page {
    w: u32,
    h: u32,
    bits: u16,
    spp: u16,
    photometric: u16,
    planar: bool,
    /// Tile edge (a multiple of 16), or strips of 16 rows.
    tile: Option<u32>,
    /// Samples of pixel (x, y), `spp` of them at full scale for `bits`.
    px: fn(u32, u32, u32, u32) -> [u16; 4],
    /// Extra tags (tag, type, count, little-endian payload).
    extra: Vec<(u16, u16, u32, Vec<u8>)>,
    /// Replaces the sample data with one JPEG strip (compression 7).
    jpeg: Option<Vec<u8>>,
}

/// The marked picture as 8-bit RGB samples.
fn rgb8(x: u32, y: u32, w: u32, h: u32) -> [u16; 4] {
    let [r, g, b] = marked_at(x, y, w, h);
    [r.into(), g.into(), b.into(), 0]
}
fn rgb16(x: u32, y: u32, w: u32, h: u32) -> [u16; 4] {
    rgb8(x, y, w, h).map(|v| v * 257)
}
fn cmyk8(x: u32, y: u32, w: u32, h: u32) -> [u16; 4] {
    let [r, g, b, _] = rgb8(x, y, w, h);
    [255 - r, 255 - g, 255 - b, 0]
}
/// Grey: the top-left quarter black, the rest white, at 2 or 4 bits.
fn grey2(x: u32, y: u32, w: u32, h: u32) -> [u16; 4] {
    [if x < w / 2 && y < h / 2 { 0 } else { 3 }, 0, 0, 0]
}
fn grey4(x: u32, y: u32, w: u32, h: u32) -> [u16; 4] {
    [if x < w / 2 && y < h / 2 { 0 } else { 15 }, 0, 0, 0]
}
/// Palette indices: 0 the red quarter, 1 the background.
fn index8(x: u32, y: u32, w: u32, h: u32) -> [u16; 4] {
    [u16::from(!(x < w / 2 && y < h / 2)), 0, 0, 0]
}
/// CIELab (L 0–255, a and b signed): the red quarter and a blue-green
/// background, the fixture's colours as Lab (sRGB, D50).
fn lab8(x: u32, y: u32, w: u32, h: u32) -> [u16; 4] {
    let [l, a, b]: [i8; 3] = if x < w / 2 && y < h / 2 {
        [121u8 as i8, 71, 56]
    } else {
        [119u8 as i8, -16, -29]
    };
    [l, a, b, 0].map(|v| u16::from(v as u8))
}
fn green8(_: u32, _: u32, _: u32, _: u32) -> [u16; 4] {
    [0, 200, 0, 0]
}

impl Page {
    fn rgb(px: fn(u32, u32, u32, u32) -> [u16; 4], bits: u16) -> Page {
        Page {
            w: W,
            h: H,
            bits,
            spp: 3,
            photometric: 2,
            planar: false,
            tile: None,
            px,
            extra: Vec::new(),
            jpeg: None,
        }
    }

    /// Rows `y0..y1`, columns `x0..x1` (pixels outside the picture are 0)
    /// of the given channels, each row packed to whole bytes.
    fn pack(&self, (x0, x1): (u32, u32), (y0, y1): (u32, u32), chans: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        for y in y0..y1 {
            let (mut acc, mut nbits) = (0u32, 0u32);
            for x in x0..x1 {
                let s = if x < self.w && y < self.h {
                    (self.px)(x, y, self.w, self.h)
                } else {
                    [0; 4]
                };
                for &c in chans {
                    match self.bits {
                        8 => out.push(s[c] as u8),
                        16 => out.extend(s[c].to_le_bytes()),
                        b => {
                            acc = (acc << b) | u32::from(s[c]);
                            nbits += u32::from(b);
                            if nbits == 8 {
                                out.push(acc as u8);
                                (acc, nbits) = (0, 0);
                            }
                        }
                    }
                }
            }
            if nbits > 0 {
                out.push((acc << (8 - nbits)) as u8);
            }
        }
        out
    }

    /// The strips or tiles, plane by plane when planar.
    fn blocks(&self) -> Vec<Vec<u8>> {
        if let Some(j) = &self.jpeg {
            return vec![j.clone()];
        }
        let all: Vec<usize> = (0..self.spp as usize).collect();
        let planes: Vec<Vec<usize>> = if self.planar {
            all.iter().map(|&c| vec![c]).collect()
        } else {
            vec![all]
        };
        let mut out = Vec::new();
        for chans in &planes {
            match self.tile {
                Some(t) => {
                    for ty in 0..self.h.div_ceil(t) {
                        for tx in 0..self.w.div_ceil(t) {
                            let xs = (tx * t, tx * t + t);
                            out.push(self.pack(xs, (ty * t, ty * t + t), chans));
                        }
                    }
                }
                None => {
                    for s in 0..self.h.div_ceil(16) {
                        let ys = (s * 16, (s * 16 + 16).min(self.h));
                        out.push(self.pack((0, self.w), ys, chans));
                    }
                }
            }
        }
        out
    }
}

fn short(tag: u16, v: &[u16]) -> (u16, u16, u32, Vec<u8>) {
    (
        tag,
        3,
        v.len() as u32,
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}
fn long(tag: u16, v: &[u32]) -> (u16, u16, u32, Vec<u8>) {
    (
        tag,
        4,
        v.len() as u32,
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

/// A little-endian TIFF (BigTIFF when `big`) of `pages`, in order.
fn tiff(pages: &[Page], big: bool) -> Vec<u8> {
    let mut out = b"II".to_vec();
    let mut next_at;
    if big {
        out.extend(43u16.to_le_bytes());
        out.extend(8u16.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        next_at = out.len();
        out.extend(0u64.to_le_bytes());
    } else {
        out.extend(42u16.to_le_bytes());
        next_at = out.len();
        out.extend(0u32.to_le_bytes());
    }
    for p in pages {
        let blocks = p.blocks();
        let mut offsets = Vec::new();
        for b in &blocks {
            if out.len() % 2 == 1 {
                out.push(0);
            }
            offsets.push(out.len() as u32);
            out.extend(b);
        }
        let counts: Vec<u32> = blocks.iter().map(|b| b.len() as u32).collect();
        let compression = if p.jpeg.is_some() { 7 } else { 1 };
        let mut tags = vec![
            long(256, &[p.w]),
            long(257, &[p.h]),
            short(258, &vec![p.bits; p.spp as usize]),
            short(259, &[compression]),
            short(262, &[p.photometric]),
            short(277, &[p.spp]),
            short(284, &[if p.planar { 2 } else { 1 }]),
        ];
        match p.tile {
            Some(t) => tags.extend([
                long(322, &[t]),
                long(323, &[t]),
                long(324, &offsets),
                long(325, &counts),
            ]),
            None => {
                let rps = if p.jpeg.is_some() { p.h } else { 16 };
                tags.extend([long(273, &offsets), long(278, &[rps]), long(279, &counts)])
            }
        }
        tags.extend(p.extra.iter().cloned());
        tags.sort_by_key(|t| t.0);
        while out.len() % 8 != 0 {
            out.push(0);
        }
        let ifd = out.len() as u64;
        if big {
            out[next_at..next_at + 8].copy_from_slice(&ifd.to_le_bytes());
        } else {
            out[next_at..next_at + 4].copy_from_slice(&(ifd as u32).to_le_bytes());
        }
        let (count_len, entry_len, inline) = if big { (8, 20, 8) } else { (2, 12, 4) };
        let mut area_at = ifd as usize + count_len + tags.len() * entry_len + inline;
        let mut area = Vec::new();
        if big {
            out.extend((tags.len() as u64).to_le_bytes());
        } else {
            out.extend((tags.len() as u16).to_le_bytes());
        }
        for (tag, typ, count, payload) in &tags {
            out.extend(tag.to_le_bytes());
            out.extend(typ.to_le_bytes());
            if big {
                out.extend(u64::from(*count).to_le_bytes());
            } else {
                out.extend(count.to_le_bytes());
            }
            if payload.len() <= inline {
                let mut v = payload.clone();
                v.resize(inline, 0);
                out.extend(v);
            } else {
                if big {
                    out.extend((area_at as u64).to_le_bytes());
                } else {
                    out.extend((area_at as u32).to_le_bytes());
                }
                area.extend(payload);
                if payload.len() % 2 == 1 {
                    area.push(0);
                }
                area_at += payload.len() + payload.len() % 2;
            }
        }
        next_at = out.len();
        out.extend(vec![0u8; inline]);
        out.extend(area);
    }
    out
}

/// Which corners of a grey thumbnail are dark: the fixture's top-left
/// quarter is black, the rest white.
fn dark_corners(img: &DynamicImage) -> Vec<&'static str> {
    let (w, h) = img.dimensions();
    let mut dark = Vec::new();
    for (name, fx, fy) in [
        ("tl", 0.125, 0.125),
        ("tr", 0.875, 0.125),
        ("bl", 0.125, 0.875),
        ("br", 0.875, 0.875),
    ] {
        let p = img
            .get_pixel(
                ((w as f64 * fx) as u32).min(w - 1),
                ((h as f64 * fy) as u32).min(h - 1),
            )
            .0;
        let luma = (u32::from(p[0]) + u32::from(p[1]) + u32::from(p[2])) / 3;
        assert!(
            !(40..=215).contains(&luma),
            "corner {name} is grey noise: {p:?}"
        );
        if luma < 40 {
            dark.push(name);
        }
    }
    dark
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiff_classes_give_the_right_pixels() {
    let rgb = Page::rgb(rgb8, 8);
    let tiled = Page {
        tile: Some(16),
        ..rgb.clone()
    };
    let planar = Page {
        planar: true,
        ..rgb.clone()
    };
    let planar_tiled = Page {
        planar: true,
        ..tiled.clone()
    };
    let cmyk = Page {
        spp: 4,
        photometric: 5,
        px: cmyk8,
        extra: vec![short(332, &[1])],
        ..rgb.clone()
    };
    let grey = |bits, px| Page {
        bits,
        spp: 1,
        photometric: 1,
        px,
        ..rgb.clone()
    };
    let mut colormap = vec![0u16; 3 * 256];
    for (i, c) in [[220u16, 20, 20], [30, 120, 160]].iter().enumerate() {
        for k in 0..3 {
            colormap[k * 256 + i] = c[k] * 257;
        }
    }
    let palette = Page {
        spp: 1,
        photometric: 3,
        px: index8,
        extra: vec![short(320, &colormap)],
        ..rgb.clone()
    };
    let second_page = Page {
        w: 50,
        h: 90,
        px: green8,
        ..rgb.clone()
    };
    let mut jpeg = Vec::new();
    DynamicImage::ImageRgb8(marked(W, H))
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    let jpeg_tiff = Page {
        photometric: 6,
        jpeg: Some(jpeg),
        // As the `image` crate codes it: chroma at full resolution.
        extra: vec![short(530, &[1, 1])],
        ..rgb.clone()
    };
    let lab = Page {
        photometric: 8,
        px: lab8,
        ..rgb.clone()
    };
    let turned = |page: &Page, o: u16| Page {
        extra: [page.extra.clone(), vec![short(274, &[o])]].concat(),
        ..page.clone()
    };
    // Name, bytes, and where the red (grey: dark) quarter shows.
    let files: Vec<(String, Vec<u8>, &str)> = [
        ("strips.tif", tiff(std::slice::from_ref(&rgb), false), "tl"),
        ("tiled.tif", tiff(&[tiled], false), "tl"),
        ("planar.tif", tiff(&[planar], false), "tl"),
        ("planar_tiled.tif", tiff(&[planar_tiled], false), "tl"),
        ("rgb16.tif", tiff(&[Page::rgb(rgb16, 16)], false), "tl"),
        ("cmyk.tif", tiff(&[cmyk], false), "tl"),
        (
            "multi_page.tif",
            tiff(&[rgb.clone(), second_page], false),
            "tl",
        ),
        ("big.tif", tiff(std::slice::from_ref(&rgb), true), "tl"),
        // From here on, what the tiff crate refuses and libtiff renders
        // (`tiffrgba`), turned by their orientation like any other TIFF.
        ("jpeg.tif", tiff(&[jpeg_tiff], false), "tl"),
        (
            "palette.tif",
            tiff(std::slice::from_ref(&palette), false),
            "tl",
        ),
        ("palette_o3.tif", tiff(&[turned(&palette, 3)], false), "br"),
        ("palette_o2.tif", tiff(&[turned(&palette, 2)], false), "tr"),
        ("lab.tif", tiff(&[lab], false), "tl"),
        ("grey2.tif", tiff(&[grey(2, grey2)], false), "tl"),
        ("grey4.tif", tiff(&[grey(4, grey4)], false), "tl"),
        (
            "grey4_o6.tif",
            tiff(&[turned(&grey(4, grey4), 6)], false),
            "tr",
        ),
    ]
    .into_iter()
    .map(|(n, b, corner)| (n.to_string(), b, corner))
    .collect();
    let app = library(
        &files
            .iter()
            .map(|(n, b, _)| (n.clone(), b.clone()))
            .collect::<Vec<_>>(),
    )
    .await;
    for (name, _, corner) in &files {
        let f = app.api.file_named(name).await;
        assert_eq!(f["type"], 1, "{name} is a photo: {f}");
        // Orientations 5–8 swap the displayed sides.
        let (w, h) = if name.ends_with("_o6.tif") {
            (H, W)
        } else {
            (W, H)
        };
        assert_eq!(dims(&f), (w as i64, h as i64), "{name} listed size");
        for level in [0, 1] {
            let img = thumb_ok(&app.api, name, id(&f), level).await;
            assert_eq!(img.dimensions(), (w, h), "{name} level {level}");
            if name.starts_with("grey") {
                assert_eq!(dark_corners(&img), [*corner], "{name} level {level}");
            } else {
                assert_eq!(red_corner(&img), *corner, "{name} level {level}");
            }
        }
    }
}
