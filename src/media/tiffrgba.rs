//! TIFFs the `tiff` crate refuses (`tiffdec`), rendered by libtiff's
//! `tiff2rgba` (Debian's libtiff-tools) in a child process: YCbCr JPEG and
//! old-style JPEG, CIELab, palettes and 1/2/4-bit grey, LZMA, WebP and
//! ZSTD compression — whatever libtiff's RGBA interface reads. Page 0 only.
//!
//! The child runs as ffmpeg does (`process.rs`): no shell, a timeout, the
//! memory cap, the render's lane. It reads the open original as its
//! standard input (`/dev/stdin`, never a path it would resolve) and writes
//! an uncompressed 8-bit RGB(A) TIFF into a memfd given as its standard
//! output; that file may not grow past page 0's size (`RLIMIT_FSIZE`), so
//! a multi-page file, of which `tiff2rgba` converts every page, is stopped
//! once page 0 is written. Page 0's size comes from the original's first
//! directory, checked against the pixel limit and reserved in the render
//! budget (the memfd, the decoded copy, what follows) before the child
//! starts. The memfd is read back with the `tiff` crate.
//!
//! libtiff's RGBA interface applies the flips of EXIF orientations 2–4
//! itself (and for 5–8 those of 2–4, without the transpose); they are
//! undone here, so the raster is as stored and the caller turns it by the
//! recorded orientation like every other TIFF. Blocking.
//!
//! May import: `budget`, `original`, `process`, `raster`, `tiffdir`. Called by the
//! renderer (`thumbs`) when `tiffdec` refuses a file.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::process::Command;
use std::time::Duration;

use image::codecs::tiff::TiffDecoder;
use image::{DynamicImage, ImageDecoder, Limits};

use super::budget::{Allowance, Lease};
use super::original::Original;
use super::process::{run_into_file, FileRun, ProcessError, CHILD_MAX_DATA_BYTES};
use super::raster::{check_pixels, orient, post_cost, reserve, Raster, ThumbError};
use super::tiffdir::FirstDirectory;

/// The converter, looked up on `PATH` (Debian: /usr/bin, libtiff-tools).
const TIFF2RGBA: &str = "tiff2rgba";
/// How long one conversion may take: an LZW-compressed 100 MP scan takes
/// a few seconds on a Pi.
const TIFF2RGBA_TIMEOUT: Duration = Duration::from_secs(30);
/// What the output holds besides its pixels: the header, the directory and
/// each strip's offset and length (at most one strip a row).
const OUTPUT_SLACK_BYTES: u64 = 64 << 10;

/// What the first directory of a TIFF says of page 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Page0 {
    width: u32,
    height: u32,
    /// The Orientation tag (1 when absent).
    orientation: u16,
    /// Extra samples (alpha) present: the output keeps its alpha channel.
    alpha: bool,
}

/// Page 0 of the TIFF `orig`, whole, as stored, by `tiff2rgba`.
pub(crate) fn decode<'a>(
    orig: &Original,
    edge: u32,
    allow: Allowance<'a>,
) -> Result<(Raster, Lease<'a>), ThumbError> {
    decode_with(OsStr::new(TIFF2RGBA), orig, edge, allow)
}

/// [`decode`] with the converter `program` (tests name a missing one).
fn decode_with<'a>(
    program: &OsStr,
    orig: &Original,
    edge: u32,
    allow: Allowance<'a>,
) -> Result<(Raster, Lease<'a>), ThumbError> {
    let failed = |e: &dyn std::fmt::Display| orig.failed(e);
    let page = first_page(&mut orig.reader(8 * 1024).map_err(|e| failed(&e))?)
        .map_err(|e| failed(&e))?
        .ok_or_else(|| failed(&"no TIFF directory with a width and height"))?;
    let (w, h) = (page.width, page.height);
    check_pixels(w, h).map_err(|e| failed(&e))?;
    let channels: u64 = if page.alpha { 4 } else { 3 };
    let pixels = u64::from(w) * u64::from(h);
    let max_output = pixels * channels + OUTPUT_SLACK_BYTES + 8 * u64::from(h);
    // The memfd, the decoded raster, the undoing of libtiff's flip (when
    // there is one), then scaling and encoding.
    let flip = libtiff_flip(page.orientation);
    let raster = pixels * channels;
    let cost =
        max_output + raster + u64::from(flip != 1) * raster + post_cost(w, h, edge, page.alpha);
    let lease = reserve(orig, allow, cost)?;

    let out = rustix::fs::memfd_create("isync-tiff2rgba", rustix::fs::MemfdFlags::CLOEXEC)
        .map(File::from)
        .map_err(|e| failed(&e))?;
    let mut cmd = Command::new(program);
    // The whole page at once: by blocks (`-b`), libtiff 4.5 turns pages
    // tagged 3 or 4 wrongly (one of them comes out blank). Its own
    // allocation limit (`-M`, 256 MiB by default) raised to the child's
    // memory cap, the one bound.
    let max_mib = (CHILD_MAX_DATA_BYTES >> 20).to_string();
    cmd.args(["-c", "none", "-M", &max_mib]);
    if !page.alpha {
        cmd.arg("-n");
    }
    cmd.args(["/dev/stdin", "/dev/stdout"]);
    let input = orig.stdin().map_err(|e| failed(&e))?;
    match run_into_file(cmd, input, &out, max_output, TIFF2RGBA_TIMEOUT) {
        Ok(FileRun::Done) => {}
        // Page 0 and its directory are written before the next page is
        // read: a multi-page file ends here, page 0 whole.
        Ok(FileRun::Full) => log::debug!(
            path:display = orig.label().display();
            "tiff2rgba stopped at page 0's size"
        ),
        Err(ProcessError::Spawn { source, .. }) => {
            log::warn!(
                path:display = orig.label().display();
                "cannot start {}: {source}; TIFFs the built-in decoder cannot read are refused \
                 until libtiff-tools is installed (`apt-get install libtiff-tools`)",
                program.to_string_lossy()
            );
            return Err(failed(&"tiff2rgba (libtiff-tools) is not installed"));
        }
        Err(e) => return Err(failed(&e)),
    }
    let img = read_output(&out, &page).map_err(|e| failed(&e))?;
    Ok((orient(Raster::from_dynamic(img), i64::from(flip)), lease))
}

/// The orientation that undoes what libtiff's RGBA interface did to a
/// page tagged `orientation`: it mirrors (2, 4) or turns (3) the 1–4
/// kinds, and treats 5–8 as 1–4 (their transposes it leaves out). Each of
/// these is its own inverse.
fn libtiff_flip(orientation: u16) -> u16 {
    match orientation {
        2..=4 => orientation,
        6..=8 => orientation - 4,
        _ => 1,
    }
}

/// The converter's output: page 0, exactly `page`'s size, 8-bit RGB(A).
fn read_output(out: &File, page: &Page0) -> Result<DynamicImage, String> {
    let mut file = out;
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let decoder = TiffDecoder::new(BufReader::with_capacity(64 * 1024, file))
        .map_err(|e| format!("tiff2rgba's output: {e}"))?;
    let mut decoder = decoder;
    if decoder.dimensions() != (page.width, page.height) {
        return Err(format!(
            "tiff2rgba's output is {:?}, not {}x{}",
            decoder.dimensions(),
            page.width,
            page.height
        ));
    }
    let mut limits = Limits::default();
    // The raster and the tiff crate's own tables (a strip offset a row).
    limits.max_alloc = Some(2 * decoder.total_bytes() + (1 << 20));
    decoder.set_limits(limits).map_err(|e| e.to_string())?;
    let color = decoder.color_type();
    if !matches!(color, image::ColorType::Rgb8 | image::ColorType::Rgba8) {
        return Err(format!("tiff2rgba's output is {color:?}"));
    }
    DynamicImage::from_decoder(decoder).map_err(|e| format!("tiff2rgba's output: {e}"))
}

/// Page 0's size, orientation and alpha from the first directory of the
/// TIFF or BigTIFF in `r` (its first 4,096 entries); `None` when it is no
/// TIFF or names no size. An orientation out of 1–8 is kept as it is
/// ([`libtiff_flip`] leaves such a page as stored).
fn first_page<R: Read + Seek>(r: &mut R) -> std::io::Result<Option<Page0>> {
    let Some(dir) = FirstDirectory::open(r)? else {
        return Ok(None);
    };
    let (mut width, mut height, mut orientation, mut alpha) = (None, None, 1, false);
    for entry in dir {
        let e = entry?;
        if e.tag == 338 && matches!(e.kind, 3 | 4 | 16) {
            // ExtraSamples: any count (its values lie elsewhere when more
            // than fit the entry); libtiff makes the first one alpha.
            alpha = true;
            continue;
        }
        let Some(value) = e.value() else {
            continue;
        };
        match e.tag {
            256 => width = u32::try_from(value).ok(),
            257 => height = u32::try_from(value).ok(),
            274 => orientation = u16::try_from(value).unwrap_or(1),
            _ => {}
        }
    }
    Ok(match (width, height) {
        (Some(width), Some(height)) => Some(Page0 {
            width,
            height,
            orientation,
            alpha,
        }),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::budget::Allowance;

    /// A little-endian TIFF of one uncompressed strip: `tags` (tag, type,
    /// one inline value) besides the strip's own, `data` its samples.
    fn tiff(tags: &[Entry], data: &[u8]) -> Vec<u8> {
        tiff_pages(&[(tags, data)])
    }

    /// A directory entry: tag, type, one inline value.
    type Entry = (u16, u16, u32);

    /// [`tiff`] of several pages (entries, samples), in order.
    fn tiff_pages(pages: &[(&[Entry], &[u8])]) -> Vec<u8> {
        let mut out = b"II*\0".to_vec();
        let mut next_at = out.len();
        out.extend(0u32.to_le_bytes());
        for (tags, data) in pages {
            let strip_at = out.len() as u32;
            out.extend(*data);
            let ifd = out.len() as u32;
            out[next_at..next_at + 4].copy_from_slice(&ifd.to_le_bytes());
            let mut tags = tags.to_vec();
            tags.extend([(273, 4, strip_at), (279, 4, data.len() as u32)]);
            tags.sort_by_key(|t| t.0);
            out.extend((tags.len() as u16).to_le_bytes());
            for (tag, typ, value) in tags {
                out.extend(tag.to_le_bytes());
                out.extend(typ.to_le_bytes());
                out.extend(1u32.to_le_bytes());
                out.extend(value.to_le_bytes());
            }
            next_at = out.len();
            out.extend(0u32.to_le_bytes());
        }
        out
    }

    /// The tags of a `w`x`h` 8-bit grey page in one strip.
    fn grey_tags(w: u32, h: u32, orientation: u32) -> Vec<Entry> {
        vec![
            (256, 4, w),
            (257, 4, h),
            (258, 3, 8),
            (259, 3, 1),
            (262, 3, 1),
            (274, 3, orientation),
            (277, 3, 1),
            (278, 4, h),
        ]
    }

    /// A 4x2 8-bit grey TIFF tagged with `orientation`: the top-left pixel
    /// black, the rest white.
    fn grey(orientation: u32) -> Vec<u8> {
        tiff(
            &grey_tags(4, 2, orientation),
            &[0, 255, 255, 255, 255, 255, 255, 255],
        )
    }

    fn original(bytes: &[u8]) -> (tempfile::TempDir, Original) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.tif");
        std::fs::write(&path, bytes).unwrap();
        let orig = Original::open_path(&path).unwrap();
        (dir, orig)
    }

    fn have_tiff2rgba() -> bool {
        let ok = Command::new("sh")
            .args(["-c", "command -v tiff2rgba"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "tiff2rgba is required under CI (apt-get install libtiff-tools)"
            );
            eprintln!("skipping: tiff2rgba not installed");
        }
        ok
    }

    #[test]
    fn the_first_directory_gives_size_orientation_and_alpha() {
        let (_d, orig) = original(&grey(6));
        let page = first_page(&mut orig.reader(4096).unwrap()).unwrap();
        let want = Page0 {
            width: 4,
            height: 2,
            orientation: 6,
            alpha: false,
        };
        assert_eq!(page, Some(want));
        let with_alpha = tiff(&[(256, 3, 1), (257, 3, 1), (338, 3, 2)], &[0; 4]);
        let page = first_page(&mut std::io::Cursor::new(with_alpha))
            .unwrap()
            .unwrap();
        assert!(page.alpha && page.orientation == 1);
        assert_eq!(
            first_page(&mut std::io::Cursor::new(b"GIF89a.....")).unwrap(),
            None
        );
    }

    #[test]
    fn pages_come_back_as_stored_whatever_their_orientation() {
        if !have_tiff2rgba() {
            return;
        }
        for o in 1..=8 {
            let (_d, orig) = original(&grey(o));
            let (r, _lease) = decode(&orig, 800, Allowance::standalone()).unwrap();
            assert_eq!(
                (r.width, r.height, r.alpha),
                (4, 2, false),
                "orientation {o}"
            );
            let dark: Vec<usize> = (0..8).filter(|i| r.data[i * 3] < 128).collect();
            assert_eq!(
                dark,
                [0],
                "orientation {o}: only the stored top-left is dark"
            );
        }
    }

    #[test]
    fn of_many_pages_the_first_is_shown_and_the_child_stopped_past_it() {
        if !have_tiff2rgba() {
            return;
        }
        // A page 1 far larger than page 0 and the output's slack: the
        // child is stopped at the bound while writing it.
        let big = vec![0u8; 400 * 400];
        let page0 = grey_tags(4, 2, 1);
        let page1 = grey_tags(400, 400, 1);
        let pixels = [0, 255, 255, 255, 255, 255, 255, 255];
        let (_d, orig) = original(&tiff_pages(&[(&page0, &pixels), (&page1, &big)]));
        let (r, _lease) = decode(&orig, 800, Allowance::standalone()).unwrap();
        assert_eq!((r.width, r.height), (4, 2));
        let dark: Vec<usize> = (0..8).filter(|i| r.data[i * 3] < 128).collect();
        assert_eq!(dark, [0]);
    }

    #[test]
    fn a_huge_size_is_refused_before_the_child_runs() {
        let tags = [
            (256, 4, 100_000),
            (257, 4, 100_000),
            (262, 3, 3),
            (258, 3, 8),
        ];
        let (_d, orig) = original(&tiff(&tags, &[0; 16]));
        // A converter that is not there: had it been started, the error
        // would say so.
        let program = OsStr::new("/nonexistent/tiff2rgba");
        match decode_with(program, &orig, 800, Allowance::standalone()) {
            Err(ThumbError::Failed(why)) => assert!(why.contains("pixels"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_or_failing_converter_is_a_refusal() {
        let (_d, orig) = original(&grey(1));
        for (program, says) in [
            ("/nonexistent/tiff2rgba", "not installed"),
            ("false", "failed"),
        ] {
            match decode_with(OsStr::new(program), &orig, 800, Allowance::standalone()) {
                Err(ThumbError::Failed(why)) => assert!(why.contains(says), "{program}: {why}"),
                other => panic!("{program}: {other:?}"),
            }
        }
    }
}
