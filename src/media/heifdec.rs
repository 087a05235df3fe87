//! Decoding HEIF/AVIF stills for thumbnails: the coded pictures `heif`
//! finds are fed to the system ffmpeg as a raw elementary stream (HEVC
//! Annex-B or AV1 OBUs) on its standard input, every tile of a grid as one
//! frame of a single ffmpeg run, each preceded by its own decoder
//! configuration (tiles may differ in their parameter sets; libheif, too,
//! decodes each with its own), each scaled to its share of the box and
//! returned as raw RGB. The tiles are assembled, cropped to the grid's
//! output size and the `clap` aperture, and turned by `irot`/`imir` here,
//! so the raster handed back is upright.
//!
//! ffmpeg reads nothing but its standard input (`-protocol_whitelist
//! pipe`), runs under the usual timeout and memory cap (`process.rs`) and
//! with `-max_pixels`/`-max_alloc` bounds; what this process holds is
//! reserved in the render budget before anything is read.

use std::ffi::OsString;
use std::process::Command;

use super::budget::{Allowance, Lease};
use super::heif::{Codec, Heif, Layout, Picture, Tile};
use super::original::Original;
use super::process::{ffmpeg_path, run_with_input, FFMPEG_TIMEOUT};
use super::raster::{check_pixels, orient, post_cost, reserve, Raster, ThumbError};

/// Largest coded bitstream we hand to ffmpeg: a 48 MP HEIC is ~15 MB.
const MAX_BITSTREAM_BYTES: u64 = 64 << 20;
/// Largest side of one coded picture (HEVC level 6.2 allows 8,444 px;
/// AVIF tiles are usually ≤ 8,192).
const MAX_TILE_SIDE_PX: u32 = 16_384;
/// A single allocation ffmpeg may make: one 16K² 10-bit frame plane.
const FFMPEG_MAX_ALLOC: &str = "536870912";
/// An AV1 temporal delimiter OBU, which the `obu` demuxer expects before
/// each temporal unit (AVIF items carry none).
const AV1_TEMPORAL_DELIMITER: [u8; 2] = [0x12, 0x00];

/// Decodes the primary image of `heif` (or, when it covers the `edge` box,
/// its embedded thumbnail) at no less than the box needs; upright.
pub(crate) fn decode<'a>(
    orig: &Original,
    heif: &Heif,
    edge: u32,
    allow: Allowance<'a>,
) -> Result<(Raster, Lease<'a>), ThumbError> {
    let pic = heif
        .thumbnail
        .as_ref()
        .filter(|t| {
            let (w, h) = t.display_size();
            w.max(h) >= edge && heif.coded_bytes(t) > 0
        })
        .unwrap_or(&heif.primary);
    let failed = |e: &dyn std::fmt::Display| orig.failed(e);
    let (w, h) = (pic.width, pic.height);
    check_pixels(w, h).map_err(|e| failed(&e))?;
    let (tiles, tile_w, tile_h, cols, rows) = match &pic.layout {
        Layout::Single(id) => (vec![Tile { id: *id, config: 0 }], w, h, 1, 1),
        Layout::Grid {
            rows,
            cols,
            tile_w,
            tile_h,
            tiles,
            ..
        } => (tiles.clone(), *tile_w, *tile_h, *cols, *rows),
    };
    if tile_w == 0 || tile_h == 0 || tile_w > MAX_TILE_SIDE_PX || tile_h > MAX_TILE_SIDE_PX {
        return Err(failed(&format!("coded picture of {tile_w}x{tile_h}")));
    }
    // Every tile scaled by the same factor, rounded up so the assembled
    // picture still covers the box, from what is shown: the clean aperture
    // when there is one (a 2:1 crop must not come out at half the box).
    let long = pic.crop.map_or(w.max(h), |c| c.w.max(c.h)).max(1);
    let scale = |side: u32| -> u32 {
        if long <= edge {
            side
        } else {
            (u64::from(side) * u64::from(edge))
                .div_ceil(u64::from(long))
                .max(1) as u32
        }
    };
    let (tw, th) = (scale(tile_w), scale(tile_h));
    let frame_bytes = u64::from(tw) * u64::from(th) * 3;
    let raw_bytes = frame_bytes * tiles.len() as u64;
    let canvas = (
        u64::from(tw) * u64::from(cols),
        u64::from(th) * u64::from(rows),
    );
    let coded = heif.coded_bytes(pic);
    if coded > MAX_BITSTREAM_BYTES {
        return Err(failed(&format!("{coded} bytes of coded picture")));
    }
    // The grid's output size, then the clean aperture, in scaled pixels.
    let sx = |v: u32| (u64::from(v) * u64::from(tw) / u64::from(tile_w)) as u32;
    let sy = |v: u32| (u64::from(v) * u64::from(th) / u64::from(tile_h)) as u32;
    let (x, y, cw, ch) = match pic.crop {
        Some(c) => (sx(c.x), sy(c.y), sx(c.w), sy(c.h)),
        None => (0, 0, sx(w), sy(h)),
    };
    let (cw, ch) = (cw.max(1), ch.max(1));
    // Copies of the picture this makes: the assembled canvas (a single
    // picture is its one frame, moved, not copied), the crop (none when
    // it is the whole canvas), the turn (none when upright). A 12 MP
    // single picture without `clap`/`irot` is thus costed at one frame,
    // not four, and its browser view fits the budget at full size.
    let whole = (x, y) == (0, 0) && (u64::from(cw), u64::from(ch)) == canvas;
    let copies = u64::from(tiles.len() > 1) + u64::from(!whole) + u64::from(pic.orientation() != 1);
    // The bitstream and its Annex-B copy, the raw frames, those copies
    // (each at most the canvas), then fitting and encoding.
    let cost =
        2 * coded + raw_bytes + copies * canvas.0 * canvas.1 * 3 + post_cost(tw, th, edge, false);
    let lease = reserve(orig, allow, cost)?;

    let stream = bitstream(orig, heif, pic, &tiles)?;
    // Shrunk to a quarter or less (level 1 of a 12 MP photo is a fifth),
    // HEVC's in-loop filters (deblocking, SAO) change little of what is
    // left: at 800x600, PSNR 51.5 dB against the filtered decode on a
    // crf-28 x265 picture, 78 dB at crf 12, against 44 dB between our
    // bicubic scale and a Lanczos one. A still has no later picture that
    // predicts from it, so nothing drifts; skipping them saves 3-13 % of
    // ffmpeg's CPU (docs/performance.md). Full-size views keep them.
    let shrunk = u64::from(long) >= 4 * u64::from(edge);
    let skip_loop_filter = shrunk && matches!(pic.codec(), Codec::Hevc { .. });
    let raw = run_ffmpeg(
        orig,
        pic.codec(),
        stream,
        tiles.len(),
        tw,
        th,
        skip_loop_filter,
    )?;
    if raw.len() as u64 != raw_bytes {
        return Err(failed(&format!(
            "ffmpeg decoded {} of {} tiles",
            raw.len() as u64 / frame_bytes,
            tiles.len()
        )));
    }
    let img = assemble(raw, tw, th, cols, rows);
    let img = crop(img, x, y, cw, ch).map_err(|e| failed(&e))?;
    Ok((orient(img, i64::from(pic.orientation())), lease))
}

/// The elementary stream ffmpeg reads: each tile as one picture, with its
/// decoder configuration before it (an HEVC decoder takes parameter sets
/// that arrive between pictures, as a stream's repeated headers, and
/// decodes the next picture with them).
fn bitstream(
    orig: &Original,
    heif: &Heif,
    pic: &Picture,
    tiles: &[Tile],
) -> Result<Vec<u8>, ThumbError> {
    let mut file = orig.file();
    let mut out = Vec::new();
    for tile in tiles {
        let data = heif
            .item_data(&mut file, tile.id, MAX_BITSTREAM_BYTES)
            .map_err(|e| orig.failed(e))?;
        let config = pic
            .configs
            .get(tile.config)
            .ok_or_else(|| orig.failed("tile without decoder configuration"))?;
        match config.codec {
            Codec::Hevc { nal_length } => {
                for nal in &config.units {
                    out.extend_from_slice(&[0, 0, 0, 1]);
                    out.extend_from_slice(nal);
                }
                annex_b(&data, nal_length, &mut out).map_err(|e| orig.failed(e))?;
            }
            Codec::Av1 => {
                out.extend_from_slice(&AV1_TEMPORAL_DELIMITER);
                // The sequence header, unless the item starts with its own.
                let has_header = data.first().is_some_and(|b| (b >> 3) & 15 == 1);
                if !has_header {
                    config.units.iter().for_each(|c| out.extend_from_slice(c));
                }
                out.extend_from_slice(&data);
            }
        }
    }
    Ok(out)
}

/// Length-prefixed NAL units → start-code-prefixed ones.
fn annex_b(data: &[u8], nal_length: u8, out: &mut Vec<u8>) -> Result<(), String> {
    let n = usize::from(nal_length);
    let mut i = 0;
    while i < data.len() {
        let len_bytes = data.get(i..i + n).ok_or("truncated NAL length")?;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        i += n;
        let nal = data
            .get(i..i.checked_add(len).ok_or("NAL length overflows")?)
            .ok_or("NAL unit past the end of its item")?;
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
        i += len;
    }
    Ok(())
}

fn run_ffmpeg(
    orig: &Original,
    codec: Codec,
    stream: Vec<u8>,
    frames: usize,
    tw: u32,
    th: u32,
    skip_loop_filter: bool,
) -> Result<Vec<u8>, ThumbError> {
    // Tiles are frames: two decoded at once (frame threads). One picture
    // has no second frame, but x265 and most encoders write wavefront
    // rows, which slice threads decode in parallel: 12 MP in 1.03 s
    // instead of 1.30 s on the 2 cores here (ffmpeg 5.1; the default
    // "slice+frame" picks frame threads).
    let thread_type = if frames > 1 { "frame" } else { "slice" };
    let demuxer = match codec {
        Codec::Hevc { .. } => "hevc",
        Codec::Av1 => "obu",
    };
    let max_pixels = (u64::from(MAX_TILE_SIDE_PX) * u64::from(MAX_TILE_SIDE_PX)).to_string();
    let mut args: Vec<OsString> = [
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-max_alloc",
        FFMPEG_MAX_ALLOC,
        "-threads",
        "2",
        "-thread_type",
        thread_type,
        "-max_pixels",
        &max_pixels,
    ]
    .map(OsString::from)
    .into();
    if skip_loop_filter {
        args.extend(["-skip_loop_filter", "all"].map(OsString::from));
    }
    args.extend(
        [
            "-protocol_whitelist",
            "pipe",
            "-f",
            demuxer,
            "-i",
            "pipe:0",
            "-map",
            "0:V:0",
            "-fps_mode",
            "passthrough",
            "-vf",
        ]
        .map(OsString::from),
    );
    // Exactly this size: every tile alike, whatever its aspect.
    args.push(format!("scale={tw}:{th}:flags=bicubic").into());
    args.extend(["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"].map(OsString::from));
    let mut cmd = Command::new(ffmpeg_path());
    cmd.args(args);
    run_with_input(cmd, stream, FFMPEG_TIMEOUT).map_err(|e| orig.failed(e))
}

/// `cols`×`rows` frames of `tw`×`th` RGB, row by row, as one picture; one
/// frame is the picture itself (moved, not copied).
fn assemble(raw: Vec<u8>, tw: u32, th: u32, cols: u32, rows: u32) -> Raster {
    if cols == 1 && rows == 1 {
        return Raster {
            width: tw,
            height: th,
            alpha: false,
            data: raw,
        };
    }
    // usize throughout: the budget already bounded the canvas, but the
    // arithmetic must not depend on that.
    let (tw_u, th_u, cols_u) = (tw as usize, th as usize, cols as usize);
    let (w, h) = (tw_u * cols_u, th_u * rows as usize);
    let row_bytes = tw_u * 3;
    let mut data = vec![0u8; w * h * 3];
    for (i, frame) in raw.chunks_exact(row_bytes * th_u).enumerate() {
        let (c, r) = (i % cols_u, i / cols_u);
        for (y, line) in frame.chunks_exact(row_bytes).enumerate() {
            let at = ((r * th_u + y) * w + c * tw_u) * 3;
            data[at..at + row_bytes].copy_from_slice(line);
        }
    }
    Raster {
        width: tw * cols,
        height: th * rows,
        alpha: false,
        data,
    }
}

/// The `w`×`h` rectangle at (`x`, `y`) of `src` (RGB), which must hold it.
fn crop(src: Raster, x: u32, y: u32, w: u32, h: u32) -> Result<Raster, String> {
    if u64::from(x) + u64::from(w) > u64::from(src.width)
        || u64::from(y) + u64::from(h) > u64::from(src.height)
    {
        return Err(format!(
            "crop {w}x{h}+{x}+{y} outside the decoded {}x{}",
            src.width, src.height
        ));
    }
    if (x, y, w, h) == (0, 0, src.width, src.height) {
        return Ok(src);
    }
    let (x, w, sw) = (x as usize, w as usize, src.width as usize);
    let mut data = Vec::with_capacity(w * h as usize * 3);
    for row in y as usize..(y + h) as usize {
        let at = (row * sw + x) * 3;
        data.extend_from_slice(&src.data[at..at + w * 3]);
    }
    Ok(Raster {
        width: w as u32,
        height: h,
        alpha: false,
        data,
    })
}
