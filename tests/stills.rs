//! Still images other than JPEG and HEIF (issue 15, "a right thumbnail or
//! an honest refusal"): BMP variants listed with their real size and
//! thumbnailed, PNGs with a bad CRC or no IEND shown as browsers show them,
//! EXIF and XMP orientation in PNG and WebP applied to the listed size and
//! the pixels. Fixtures are written here byte by byte (BMP, PNG chunks,
//! WebP RIFF chunks around a lossless picture ffmpeg encodes), each from
//! one picture with a red top-left quarter, so where the red corner lands
//! in a thumbnail says how it was turned.

mod common;

use common::*;
use image::{DynamicImage, GenericImageView, RgbImage};
use serde_json::{json, Value};

const W: u32 = 80;
const H: u32 = 60;

/// The stored picture: a red top-left quarter on a blue-green gradient
/// that never looks red.
fn marked(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        if x < w / 2 && y < h / 2 {
            image::Rgb([220, 20, 20])
        } else {
            image::Rgb([30, 90 + (x + y) as u8 % 60, 160])
        }
    })
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exif_and_xmp_orientation_in_png_and_webp_is_applied() {
    if !ffmpeg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = marked(W, H);
    let plain = png(&img);
    let (w, h) = (W as i64, H as i64);
    // (name, bytes, listed size, where the stored top-left corner shows)
    let cases: Vec<(&str, Vec<u8>, (i64, i64), &str)> = vec![
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
