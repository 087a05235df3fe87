//! Test support: a small HEIF/AVIF muxer. Pictures are encoded by the real
//! ffmpeg (libx265 → Annex-B HEVC, libaom-av1 → low-overhead OBUs) and
//! wrapped in the boxes an iPhone or libavif writes: a single image or a
//! grid of tiles, with `clap`/`irot`/`imir`, an Exif item and a `thmb`
//! thumbnail. Shared by the unit tests in `src/media/heif/` (through
//! `#[path]`) and the HTTP tests. No photos are committed: every fixture
//! is generated.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// The codec of an encoded picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Hevc,
    Av1,
}

/// One coded picture: the decoder configuration and the item's bytes.
#[derive(Debug, Clone)]
pub struct Coded {
    pub codec: Codec,
    /// HEVC VPS/SPS/PPS, or AV1 sequence-header OBUs.
    pub config: Vec<Vec<u8>>,
    /// Length-prefixed (4 bytes) NAL units, or OBUs.
    pub data: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub ten_bit: bool,
}

/// What the primary image is.
pub enum Primary {
    Single(Coded),
    Grid {
        rows: u8,
        cols: u8,
        width: u32,
        height: u32,
        tiles: Vec<Coded>,
    },
}

/// A file to write.
pub struct Spec {
    pub major_brand: [u8; 4],
    pub primary: Primary,
    pub irot: Option<u8>,
    pub imir: Option<u8>,
    /// `clap` as eight u32 (width N/D, height N/D, h-offset N/D, v-offset N/D).
    pub clap: Option<[u32; 8]>,
    /// A TIFF block, stored as an Exif item.
    pub exif: Option<Vec<u8>>,
    pub thumbnail: Option<Coded>,
}

impl Spec {
    pub fn single(c: Coded) -> Spec {
        let brand = if c.codec == Codec::Hevc {
            *b"heic"
        } else {
            *b"avif"
        };
        Spec {
            major_brand: brand,
            primary: Primary::Single(c),
            irot: None,
            imir: None,
            clap: None,
            exif: None,
            thumbnail: None,
        }
    }
}

/// `x265` is appended to the libx265 parameters (`key=value:…`).
fn ffmpeg_encode(input: &Path, codec: Codec, ten_bit: bool, crf: u8, x265: &str, out: &Path) {
    let pix = if ten_bit { "yuv420p10le" } else { "yuv420p" };
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(input)
        .args(["-frames:v", "1", "-pix_fmt", pix]);
    let crf = crf.to_string();
    let mut x265_params =
        format!("log-level=error:keyint=1:repeat-headers=0:info=0:aud=0:lossless=0:crf={crf}");
    if !x265.is_empty() {
        x265_params = format!("{x265_params}:{x265}");
    }
    match codec {
        Codec::Hevc => cmd.args([
            "-c:v",
            "libx265",
            "-x265-params",
            x265_params.as_str(),
            "-f",
            "hevc",
        ]),
        Codec::Av1 => cmd.args([
            "-c:v",
            "libaom-av1",
            "-crf",
            crf.as_str(),
            "-cpu-used",
            "8",
            "-still-picture",
            "1",
            "-f",
            "obu",
        ]),
    };
    let o = cmd.arg(out).output().expect("run ffmpeg");
    assert!(
        o.status.success(),
        "ffmpeg encode: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Encodes an RGB picture (`width`×`height`, 3 bytes a pixel) with ffmpeg
/// at high quality (crf 12).
pub fn encode(rgb: &[u8], width: u32, height: u32, codec: Codec, ten_bit: bool) -> Coded {
    encode_crf(rgb, width, height, codec, ten_bit, 12)
}

/// [`encode`] at constant rate factor `crf` (lower: more bits).
pub fn encode_crf(
    rgb: &[u8],
    width: u32,
    height: u32,
    codec: Codec,
    ten_bit: bool,
    crf: u8,
) -> Coded {
    encode_with(rgb, width, height, codec, ten_bit, crf, "")
}

/// [`encode_crf`] with more libx265 parameters (`x265`, `key=value:…`),
/// which change the parameter sets: tiles of one grid that differ in them.
pub fn encode_with(
    rgb: &[u8],
    width: u32,
    height: u32,
    codec: Codec,
    ten_bit: bool,
    crf: u8,
    x265: &str,
) -> Coded {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("in.png");
    let img = image::RgbImage::from_raw(width, height, rgb.to_vec()).expect("rgb size");
    img.save(&png).unwrap();
    let out = dir.path().join("out.bin");
    ffmpeg_encode(&png, codec, ten_bit, crf, x265, &out);
    let stream = std::fs::read(&out).unwrap();
    let (config, data) = match codec {
        Codec::Hevc => split_annex_b(&stream),
        Codec::Av1 => split_obus(&stream),
    };
    Coded {
        codec,
        config,
        data,
        width,
        height,
        ten_bit,
    }
}

/// Annex-B → (parameter sets, 4-byte length-prefixed other NAL units).
fn split_annex_b(s: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= s.len() {
        if s[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut config = Vec::new();
    let mut data = Vec::new();
    for (k, &st) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(s.len(), |n| n - 3);
        while end > st && s[end - 1] == 0 {
            end -= 1; // the zero byte of a 4-byte start code
        }
        let nal = &s[st..end];
        let kind = (nal[0] >> 1) & 0x3F;
        match kind {
            32..=34 => config.push(nal.to_vec()),
            35 | 39 => {} // access unit delimiter, prefix SEI
            _ => {
                data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                data.extend_from_slice(nal);
            }
        }
    }
    (config, data)
}

fn leb128(s: &[u8], mut i: usize) -> (u64, usize) {
    let mut v = 0u64;
    for k in 0..8 {
        let b = s[i];
        i += 1;
        v |= u64::from(b & 0x7F) << (7 * k);
        if b & 0x80 == 0 {
            break;
        }
    }
    (v, i)
}

/// Low-overhead OBU stream → (sequence headers, OBUs without temporal
/// delimiters).
fn split_obus(s: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut config = Vec::new();
    let mut data = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let start = i;
        let h = s[i];
        let kind = (h >> 3) & 15;
        i += 1 + usize::from(h & 4 != 0);
        assert!(h & 2 != 0, "OBU without size field");
        let (len, at) = leb128(s, i);
        i = at + len as usize;
        let obu = &s[start..i];
        match kind {
            2 => {}
            1 => {
                config.push(obu.to_vec());
                data.extend_from_slice(obu);
            }
            _ => data.extend_from_slice(obu),
        }
    }
    (config, data)
}

fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    out
}

fn full(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut b = (u32::from(version) << 24 | flags).to_be_bytes().to_vec();
    b.extend_from_slice(body);
    bx(kind, &b)
}

fn hvcc(c: &Coded) -> Vec<u8> {
    let mut b = vec![1u8];
    b.push(if c.ten_bit { 2 } else { 1 }); // profile space 0, Main / Main 10
    b.extend_from_slice(&[0x60, 0, 0, 0]); // compatibility flags
    b.extend_from_slice(&[0x90, 0, 0, 0, 0, 0]); // constraint flags
    b.push(93); // level 3.1
    b.extend_from_slice(&[0xF0, 0, 0xFC, 0xFD]); // segmentation, parallelism, 4:2:0
    let depth = if c.ten_bit { 0xFA } else { 0xF8 };
    b.extend_from_slice(&[depth, depth, 0, 0]);
    b.push(0x0F); // 1 temporal layer, nested, 4-byte lengths
    b.push(c.config.len() as u8);
    for nal in &c.config {
        b.push(0x80 | ((nal[0] >> 1) & 0x3F));
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&(nal.len() as u16).to_be_bytes());
        b.extend_from_slice(nal);
    }
    bx(b"hvcC", &b)
}

fn av1c(c: &Coded) -> Vec<u8> {
    let mut b = vec![0x81, 0x08, if c.ten_bit { 0x4C } else { 0x0C }, 0];
    for obu in &c.config {
        b.extend_from_slice(obu);
    }
    bx(b"av1C", &b)
}

fn config_box(c: &Coded) -> Vec<u8> {
    match c.codec {
        Codec::Hevc => hvcc(c),
        Codec::Av1 => av1c(c),
    }
}

fn ispe(w: u32, h: u32) -> Vec<u8> {
    let mut b = w.to_be_bytes().to_vec();
    b.extend_from_slice(&h.to_be_bytes());
    full(b"ispe", 0, 0, &b)
}

fn pixi(ten_bit: bool) -> Vec<u8> {
    let d = if ten_bit { 10 } else { 8 };
    full(b"pixi", 0, 0, &[3, d, d, d])
}

/// An item description; `hidden` (flag 1) as iPhones mark grid tiles, so
/// readers do not list them as pictures of their own.
fn infe(id: u16, kind: &[u8; 4], hidden: bool) -> Vec<u8> {
    let mut b = id.to_be_bytes().to_vec();
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(kind);
    b.push(0); // empty name
    full(b"infe", 2, u32::from(hidden), &b)
}

/// The item payloads of a file: (id, type, bytes, in idat?).
struct Item {
    id: u16,
    kind: [u8; 4],
    data: Vec<u8>,
    idat: bool,
    hidden: bool,
    props: Vec<Vec<u8>>,
}

/// Writes the file `spec` describes.
pub fn mux(spec: &Spec) -> Vec<u8> {
    let mut items: Vec<Item> = Vec::new();
    let mut refs: Vec<(&[u8; 4], u16, Vec<u16>)> = Vec::new();
    let mut transforms = Vec::new();
    if let Some(c) = spec.clap {
        let b: Vec<u8> = c.iter().flat_map(|v| v.to_be_bytes()).collect();
        transforms.push(bx(b"clap", &b));
    }
    if let Some(r) = spec.irot {
        transforms.push(bx(b"irot", &[r]));
    }
    if let Some(m) = spec.imir {
        transforms.push(bx(b"imir", &[m]));
    }
    let coded_item = |id: u16, c: &Coded, extra: &[Vec<u8>]| {
        let kind = if c.codec == Codec::Hevc {
            *b"hvc1"
        } else {
            *b"av01"
        };
        let mut props = vec![config_box(c), ispe(c.width, c.height), pixi(c.ten_bit)];
        props.extend_from_slice(extra);
        Item {
            id,
            kind,
            data: c.data.clone(),
            idat: false,
            hidden: false,
            props,
        }
    };
    let mut next = match &spec.primary {
        Primary::Single(c) => {
            items.push(coded_item(1, c, &transforms));
            2
        }
        Primary::Grid {
            rows,
            cols,
            width,
            height,
            tiles,
        } => {
            let mut data = vec![0, 0, rows - 1, cols - 1];
            data.extend_from_slice(&(*width as u16).to_be_bytes());
            data.extend_from_slice(&(*height as u16).to_be_bytes());
            let mut props = vec![ispe(*width, *height), pixi(tiles[0].ten_bit)];
            props.extend_from_slice(&transforms);
            items.push(Item {
                id: 1,
                kind: *b"grid",
                data,
                idat: true,
                hidden: false,
                props,
            });
            let ids: Vec<u16> = (2..2 + tiles.len() as u16).collect();
            for (t, id) in tiles.iter().zip(&ids) {
                let mut tile = coded_item(*id, t, &[]);
                tile.hidden = true;
                items.push(tile);
            }
            refs.push((b"dimg", 1, ids));
            2 + tiles.len() as u16
        }
    };
    if let Some(t) = &spec.thumbnail {
        items.push(coded_item(next, t, &[]));
        refs.push((b"thmb", next, vec![1]));
        next += 1;
    }
    if let Some(tiff) = &spec.exif {
        let mut data = vec![0, 0, 0, 0];
        data.extend_from_slice(tiff);
        items.push(Item {
            id: next,
            kind: *b"Exif",
            data,
            idat: false,
            hidden: false,
            props: Vec::new(),
        });
        refs.push((b"cdsc", next, vec![1]));
    }

    let ftyp = {
        let mut b = spec.major_brand.to_vec();
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(b"mif1");
        b.extend_from_slice(&spec.major_brand);
        b.extend_from_slice(if spec.major_brand == *b"avif" {
            b"miaf"
        } else {
            b"heic"
        });
        bx(b"ftyp", &b)
    };
    let meta = |mdat_at: u32| -> Vec<u8> {
        let mut hdlr = vec![0u8; 4];
        hdlr.extend_from_slice(b"pict");
        hdlr.extend_from_slice(&[0; 13]);
        let mut body = full(b"hdlr", 0, 0, &hdlr);
        body.extend(full(b"pitm", 0, 0, &1u16.to_be_bytes()));
        let mut iinf = (items.len() as u16).to_be_bytes().to_vec();
        for it in &items {
            iinf.extend(infe(it.id, &it.kind, it.hidden));
        }
        body.extend(full(b"iinf", 0, 0, &iinf));
        if !refs.is_empty() {
            let mut iref = Vec::new();
            for (kind, from, to) in &refs {
                let mut b = from.to_be_bytes().to_vec();
                b.extend_from_slice(&(to.len() as u16).to_be_bytes());
                for t in to {
                    b.extend_from_slice(&t.to_be_bytes());
                }
                iref.extend(bx(kind, &b));
            }
            body.extend(full(b"iref", 0, 0, &iref));
        }
        // Properties: one copy of each distinct box, shared by the items
        // that have it, as iPhones write them (every tile of a grid points
        // at the same `hvcC` and `ispe`). `ipma` property indices are 7
        // bits unless flag 1 widens them to 15 (ISO/IEC 23008-12, 9.3.2);
        // libheif reads 7-bit ones past 127 as another property.
        let mut ipco: Vec<&[u8]> = Vec::new();
        let mut assoc: Vec<(u16, Vec<(usize, bool)>)> = Vec::new();
        for it in items.iter().filter(|i| !i.props.is_empty()) {
            let mut list = Vec::new();
            for p in &it.props {
                let index = match ipco.iter().position(|q| *q == p.as_slice()) {
                    Some(i) => i + 1,
                    None => {
                        ipco.push(p);
                        ipco.len()
                    }
                };
                // Essential: the config and the transforms.
                let essential = matches!(&p[4..8], b"hvcC" | b"av1C" | b"clap" | b"irot" | b"imir");
                list.push((index, essential));
            }
            assoc.push((it.id, list));
        }
        let wide = ipco.len() > 0x7F;
        assert!(ipco.len() <= 0x7FFF, "{} properties", ipco.len());
        let mut ipma = (assoc.len() as u32).to_be_bytes().to_vec();
        for (id, list) in &assoc {
            ipma.extend_from_slice(&id.to_be_bytes());
            ipma.push(list.len() as u8);
            for &(index, essential) in list {
                if wide {
                    let v = index as u16 | if essential { 0x8000 } else { 0 };
                    ipma.extend_from_slice(&v.to_be_bytes());
                } else {
                    ipma.push(index as u8 | if essential { 0x80 } else { 0 });
                }
            }
        }
        let ipco: Vec<u8> = ipco.concat();
        let mut iprp = bx(b"ipco", &ipco);
        iprp.extend(full(b"ipma", 0, u32::from(wide), &ipma));
        body.extend(bx(b"iprp", &iprp));
        // iloc v1: 4-byte offsets and lengths, no base offset.
        let mut iloc = vec![0x44, 0x00];
        iloc.extend_from_slice(&(items.len() as u16).to_be_bytes());
        let (mut file_at, mut idat_at) = (mdat_at, 0u32);
        let mut idat = Vec::new();
        for it in &items {
            iloc.extend_from_slice(&it.id.to_be_bytes());
            iloc.extend_from_slice(&u16::from(it.idat).to_be_bytes());
            iloc.extend_from_slice(&[0, 0, 0, 1]); // data ref 0, one extent
            let at = if it.idat { &mut idat_at } else { &mut file_at };
            iloc.extend_from_slice(&at.to_be_bytes());
            iloc.extend_from_slice(&(it.data.len() as u32).to_be_bytes());
            *at += it.data.len() as u32;
            if it.idat {
                idat.extend_from_slice(&it.data);
            }
        }
        body.extend(full(b"iloc", 1, 0, &iloc));
        if !idat.is_empty() {
            body.extend(bx(b"idat", &idat));
        }
        full(b"meta", 0, 0, &body)
    };
    let meta_len = meta(0).len();
    let mdat_at = (ftyp.len() + meta_len + 8) as u32;
    let mut out = ftyp;
    out.extend(meta(mdat_at));
    let payload: Vec<u8> = items
        .iter()
        .filter(|i| !i.idat)
        .flat_map(|i| i.data.clone())
        .collect();
    out.extend(bx(b"mdat", &payload));
    out
}

/// A little-endian TIFF block whose Exif IFD holds `DateTimeOriginal`.
pub fn exif_taken(taken: &str) -> Vec<u8> {
    let mut value = taken.as_bytes().to_vec();
    value.push(0);
    let mut out = b"II*\0\x08\0\0\0".to_vec();
    // IFD0: one entry, the Exif IFD pointer.
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&0x8769u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&26u32.to_le_bytes()); // 8 + 18
    out.extend_from_slice(&[0; 4]);
    // Exif IFD at 26: DateTimeOriginal, its text at 26 + 18.
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&0x9003u16.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(&44u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&value);
    out
}

/// A `w`×`h` RGB picture: blue, with a red block in the top-left corner
/// (a quarter of each side) and a green one in the top-right.
pub fn corners(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let top = y < h / 4;
            let c = if top && x < w / 4 {
                [255, 0, 0]
            } else if top && x >= w - w / 4 {
                [0, 255, 0]
            } else {
                [0, 0, 255]
            };
            out.extend_from_slice(&c);
        }
    }
    out
}

/// The `x0..x1`×`y0..y1` part of a `w`-wide RGB picture.
pub fn crop(rgb: &[u8], w: u32, x0: u32, y0: u32, x1: u32, y1: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for y in y0..y1 {
        let row = (y * w * 3) as usize;
        out.extend_from_slice(&rgb[row + (x0 * 3) as usize..row + (x1 * 3) as usize]);
    }
    out
}

/// A grid file of `rows`×`cols` tiles of `tile`² pixels cut from `rgb`
/// (`width`×`height`, smaller than the tiles cover: the last row and
/// column are padded by repeating the edge).
#[allow(clippy::too_many_arguments)] // a fixture's knobs, all named at the call
pub fn grid(
    rgb: &[u8],
    width: u32,
    height: u32,
    tile: u32,
    rows: u8,
    cols: u8,
    codec: Codec,
    ten_bit: bool,
) -> Spec {
    grid_with(rgb, width, height, tile, rows, cols, |_, t| {
        encode(t, tile, tile, codec, ten_bit)
    })
}

/// [`grid`] with each tile encoded by `encode_tile(index, rgb)` (row by
/// row from 0; `rgb` is the tile's `tile`² pixels): tiles that differ in
/// their parameter sets or size.
pub fn grid_with(
    rgb: &[u8],
    width: u32,
    height: u32,
    tile: u32,
    rows: u8,
    cols: u8,
    encode_tile: impl Fn(usize, &[u8]) -> Coded,
) -> Spec {
    let mut tiles = Vec::new();
    for r in 0..u32::from(rows) {
        for c in 0..u32::from(cols) {
            let mut t = Vec::with_capacity((tile * tile * 3) as usize);
            for y in 0..tile {
                for x in 0..tile {
                    let sx = (c * tile + x).min(width - 1);
                    let sy = (r * tile + y).min(height - 1);
                    let i = ((sy * width + sx) * 3) as usize;
                    t.extend_from_slice(&rgb[i..i + 3]);
                }
            }
            tiles.push(encode_tile(tiles.len(), &t));
        }
    }
    let mut spec = Spec::single(tiles[0].clone());
    spec.primary = Primary::Grid {
        rows,
        cols,
        width,
        height,
        tiles,
    };
    spec
}
