//! HEIF/AVIF stills (ISO/IEC 23008-12, ISO-BMFF): our own bounded parser
//! of the `meta` box, enough to list a photo (displayed size, capture time
//! from its Exif item) and to hand its coded pictures to a decoder.
//!
//! Debian 12's ffmpeg (5.1) cannot read HEIF stills and ignores AVIF's
//! `irot`/`imir`, so this module finds the primary item's bitstream (one
//! picture, or the tiles of a `grid`), its decoder configuration (`hvcC`
//! parameter sets, `av1C` OBUs) and the transforms (`clap`, `irot`, `imir`)
//! the decoder path (`heifdec.rs`) applies itself. EXIF orientation is
//! ignored for HEIF: `irot`/`imir` are authoritative, as iOS and libheif
//! treat them.
//!
//! Every length is checked against its parent; boxes nest only as the
//! format defines them (no general recursion); the `meta` box, the item
//! and property counts and the bytes read for one item are capped, so a
//! hostile file costs at most a few MiB and never panics.

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom};

use boxes::{children, find, Rd};
use items::{parse_iinf, parse_iloc, parse_iprp, parse_iref, parse_pitm, Location};

mod boxes;
mod items;
mod picture;

pub(crate) use boxes::HeadFile;

/// Largest `meta` box we read (an iPhone's is a few KiB).
const MAX_META_BYTES: u64 = 4 << 20;
/// Most items (`infe`/`iloc` entries) one file may declare: an iPhone HEIC
/// has ~50 (48 tiles of a 12 MP grid), a 100 MP grid of 512² tiles ~400.
pub(crate) const MAX_ITEMS: usize = 4096;
/// Most properties in `ipco` and associations per item.
const MAX_PROPERTIES: usize = 4096;
/// Most extents of one item.
const MAX_EXTENTS: usize = 256;
/// Largest grid: tiles (an 8K×8K picture of 256² tiles is 1024).
pub const MAX_TILES: usize = 1024;
/// Largest Exif item we read.
const MAX_EXIF_BYTES: u64 = 1 << 20;
/// Largest grid description (`grid` item data is 8 or 12 bytes).
const MAX_GRID_BYTES: u64 = 64;

/// ftyp brands that make an ISO-BMFF file a HEIF/AVIF still.
const STILL_BRANDS: [&[u8; 4]; 9] = [
    b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeifError {
    #[error("not a HEIF/AVIF file")]
    NotHeif,
    #[error("damaged HEIF: {0}")]
    Invalid(String),
    #[error("HEIF feature isync does not read: {0}")]
    Unsupported(String),
    #[error("reading HEIF: {0}")]
    Io(String),
}

fn bad(what: impl Into<String>) -> HeifError {
    HeifError::Invalid(what.into())
}

impl From<io::Error> for HeifError {
    fn from(e: io::Error) -> HeifError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            bad("truncated")
        } else {
            HeifError::Io(e.to_string())
        }
    }
}

/// The picture codec of the primary item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// `hvc1`: HEVC, NAL units with a `nal_length` byte length prefix.
    Hevc { nal_length: u8 },
    /// `av01`: AV1 OBUs.
    Av1,
}

/// A decoder configuration: what the decoder is given before a coded
/// picture's own data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub codec: Codec,
    /// HEVC VPS/SPS/PPS NAL units (without length or start code), or AV1
    /// configuration OBUs.
    pub units: Vec<Vec<u8>>,
}

/// One tile of a grid: its item, and which of the picture's
/// [`Picture::configs`] it is decoded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub id: u32,
    pub config: usize,
}

/// A crop rectangle in coded pixels (`clap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crop {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

/// What the primary image is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// One coded picture: this item.
    Single(u32),
    /// Tiles (row by row) of `tile_w`×`tile_h` pictures, cropped to
    /// `width`×`height` (the grid's output size). Every tile has that
    /// size (`ispe`): a grid whose tiles differ is refused, as libheif
    /// refuses it.
    Grid {
        rows: u32,
        cols: u32,
        width: u32,
        height: u32,
        tile_w: u32,
        tile_h: u32,
        tiles: Vec<Tile>,
    },
}

/// One coded image (the primary or its thumbnail), ready to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    /// Decoder configurations: a single picture's one; each distinct one
    /// a grid's tiles name, in the order first named (one, when every
    /// tile points at the same `hvcC` as iPhones write them). Never empty,
    /// and of one codec.
    pub configs: Vec<Config>,
    pub layout: Layout,
    /// Coded size (the grid's output size for a grid).
    pub width: u32,
    pub height: u32,
    pub crop: Option<Crop>,
    /// Counter-clockwise quarter turns (`irot`), applied after the crop.
    pub rotation_ccw: u8,
    /// `imir`, applied after the rotation: `Some(0)` swaps top and bottom,
    /// `Some(1)` left and right. That is the `mode` of HEIF amendment 2,
    /// which renamed the 2017 text's ambiguous `axis` to match what iPhones,
    /// libheif and ImageMagick had always done (MPEGGroup/FileFormat#22,
    /// libavif#665); `heif-convert` agrees (`tests/it/heif.rs`).
    pub mirror: Option<u8>,
    /// Bits per channel (`pixi`), when given.
    pub bit_depth: Option<u8>,
}

impl Picture {
    /// The codec of its coded pictures (of the first configuration, for
    /// HEVC its NAL length size; tiles may differ in that).
    pub fn codec(&self) -> Codec {
        self.configs.first().map_or(Codec::Av1, |c| c.codec)
    }

    /// Size after the crop and the rotation: what a viewer shows.
    pub fn display_size(&self) -> (u32, u32) {
        let (w, h) = self.crop.map_or((self.width, self.height), |c| (c.w, c.h));
        if self.rotation_ccw % 2 == 1 {
            (h, w)
        } else {
            (w, h)
        }
    }

    /// The EXIF orientation (§2.4) equivalent to `irot` then `imir`.
    pub fn orientation(&self) -> u8 {
        // irot counter-clockwise: 0 → 1, 90 → 8, 180 → 3, 270 → 6; then a
        // top↔bottom mirror (mode 0) turns those into 4, 5, 2, 7, and a
        // left↔right one (mode 1; = top↔bottom after another 180°) into
        // 2, 7, 4, 5.
        const PLAIN: [u8; 4] = [1, 8, 3, 6];
        const MIRROR_LR: [u8; 4] = [2, 7, 4, 5];
        const MIRROR_TB: [u8; 4] = [4, 5, 2, 7];
        let r = usize::from(self.rotation_ccw % 4);
        match self.mirror {
            None => PLAIN[r],
            Some(0) => MIRROR_TB[r],
            Some(_) => MIRROR_LR[r],
        }
    }
}

/// A parsed HEIF/AVIF file: its `meta` box, interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heif {
    pub major_brand: [u8; 4],
    pub primary: Picture,
    /// The primary's thumbnail (`thmb`), when it is one we can decode.
    pub thumbnail: Option<Picture>,
    /// The Exif item describing the primary (`cdsc`), if any.
    exif: Option<u32>,
    locations: HashMap<u32, Location>,
    idat: Vec<u8>,
    file_len: u64,
}

/// Whether `head` (a file's first bytes) is an ISO-BMFF file with a HEIF or
/// AVIF still-image brand, major or compatible.
pub(crate) fn is_heif(head: &[u8]) -> bool {
    let Some(size) = head.get(..4) else {
        return false;
    };
    if head.get(4..8) != Some(b"ftyp") {
        return false;
    }
    let size = u32::from_be_bytes([size[0], size[1], size[2], size[3]]) as usize;
    let Some(ftyp) = head.get(8..size.min(head.len()).max(8)) else {
        return false;
    };
    brands_say_still(ftyp)
}

fn brands_say_still(ftyp: &[u8]) -> bool {
    // major brand, minor version, compatible brands
    let major = ftyp.get(..4);
    let compatible = ftyp.get(8..).unwrap_or_default().chunks_exact(4);
    major
        .into_iter()
        .chain(compatible)
        .any(|b| STILL_BRANDS.iter().any(|s| &s[..] == b))
}

/// Reads the top-level boxes of `file` up to and including `meta`, then
/// interprets it. The file position afterwards is unspecified.
pub fn read<R: Read + Seek>(file: &mut R) -> Result<Heif, HeifError> {
    let file_len = file.seek(SeekFrom::End(0))?;
    let mut pos = 0u64;
    let mut ftyp = None;
    let mut meta = None;
    // Top-level boxes: ftyp first, meta somewhere before or after mdat.
    for _ in 0..64 {
        if pos + 8 > file_len || meta.is_some() {
            break;
        }
        file.seek(SeekFrom::Start(pos))?;
        let mut h = [0u8; 16];
        file.read_exact(&mut h[..8])?;
        let mut size = u64::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]]));
        let kind: [u8; 4] = h[4..8].try_into().expect("4 bytes");
        let mut header = 8;
        if size == 1 {
            file.read_exact(&mut h[8..16])?;
            size = u64::from_be_bytes(h[8..16].try_into().expect("8 bytes"));
            header = 16;
        } else if size == 0 {
            size = file_len - pos;
        }
        if size < header || pos.checked_add(size).is_none_or(|end| end > file_len) {
            return Err(bad(format!(
                "top-level box {} past the end of the file",
                String::from_utf8_lossy(&kind)
            )));
        }
        let body_len = size - header;
        if &kind == b"ftyp" || &kind == b"meta" {
            if body_len > MAX_META_BYTES {
                return Err(bad("meta box larger than isync reads"));
            }
            let mut body = vec![0u8; body_len as usize];
            file.read_exact(&mut body)?;
            if &kind == b"ftyp" {
                ftyp = Some(body);
            } else {
                meta = Some(body);
            }
        } else if ftyp.is_none() {
            return Err(HeifError::NotHeif);
        }
        pos += size;
    }
    let ftyp = ftyp.ok_or(HeifError::NotHeif)?;
    if !brands_say_still(&ftyp) {
        return Err(HeifError::NotHeif);
    }
    let meta = meta.ok_or_else(|| bad("no meta box"))?;
    let mut heif = parse_meta(&ftyp, &meta, file_len)?;
    heif.resolve_grids(file)?;
    Ok(heif)
}

/// Interprets the `meta` payload (`ftyp`'s payload for the brand).
fn parse_meta(ftyp: &[u8], meta: &[u8], file_len: u64) -> Result<Heif, HeifError> {
    let major_brand: [u8; 4] = ftyp
        .get(..4)
        .ok_or_else(|| bad("short ftyp"))?
        .try_into()
        .expect("4 bytes");
    let mut rd = Rd::new(meta);
    rd.full()?;
    let boxes = children(&meta[rd.pos..])?;
    let hdlr = find(&boxes, b"hdlr").ok_or_else(|| bad("no hdlr"))?;
    if hdlr.get(8..12) != Some(b"pict") {
        return Err(HeifError::NotHeif);
    }
    let primary = parse_pitm(find(&boxes, b"pitm").ok_or_else(|| bad("no primary item"))?)?;
    let infos = parse_iinf(find(&boxes, b"iinf").ok_or_else(|| bad("no iinf"))?)?;
    let locations = parse_iloc(find(&boxes, b"iloc").ok_or_else(|| bad("no iloc"))?)?;
    let refs = match find(&boxes, b"iref") {
        Some(b) => parse_iref(b)?,
        None => Vec::new(),
    };
    let props = match find(&boxes, b"iprp") {
        Some(b) => parse_iprp(b)?,
        None => HashMap::new(),
    };
    let idat = find(&boxes, b"idat").unwrap_or_default().to_vec();
    let heif = Heif {
        major_brand,
        primary: placeholder(),
        thumbnail: None,
        exif: None,
        locations,
        idat,
        file_len,
    };
    heif.build(primary, &infos, &refs, &props)
}

fn placeholder() -> Picture {
    Picture {
        configs: Vec::new(),
        layout: Layout::Single(0),
        width: 0,
        height: 0,
        crop: None,
        rotation_ccw: 0,
        mirror: None,
        bit_depth: None,
    }
}

#[cfg(test)]
#[allow(unreachable_pub)] // shared with tests/it, where it is `pub`
#[path = "../../../tests/it/common/heifmux.rs"]
mod heifmux;

#[cfg(test)]
mod tests;
