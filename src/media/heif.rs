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

/// Where an item's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Location {
    /// 0: offsets into the file; 1: into the `idat` box.
    method: u8,
    extents: Vec<(u64, u64)>,
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

/// A child box: its type and payload.
type BoxRef<'a> = ([u8; 4], &'a [u8]);

/// A byte reader over one box's payload: every read is bounds-checked.
struct Rd<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Rd<'a> {
    fn new(buf: &'a [u8]) -> Rd<'a> {
        Rd { buf, pos: 0 }
    }
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], HeifError> {
        if n > self.left() {
            return Err(bad("box shorter than its fields"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, HeifError> {
        Ok(self.bytes(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, HeifError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, HeifError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, HeifError> {
        let b = self.bytes(8)?;
        Ok(u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }
    /// An unsigned integer of 0, 4 or 8 bytes (`iloc` field sizes).
    fn sized(&mut self, size: u8) -> Result<u64, HeifError> {
        match size {
            0 => Ok(0),
            4 => Ok(u64::from(self.u32()?)),
            8 => self.u64(),
            n => Err(bad(format!("iloc field size {n}"))),
        }
    }
    /// Version and flags of a full box.
    fn full(&mut self) -> Result<(u8, u32), HeifError> {
        let v = self.u32()?;
        Ok(((v >> 24) as u8, v & 0xFF_FFFF))
    }
    /// The next child box: (type, payload).
    fn child(&mut self) -> Result<Option<BoxRef<'a>>, HeifError> {
        if self.left() == 0 {
            return Ok(None);
        }
        let size = u64::from(self.u32()?);
        let kind: [u8; 4] = self.bytes(4)?.try_into().expect("4 bytes");
        let header = if size == 1 { 16 } else { 8 };
        let size = match size {
            0 => (self.left() + 8) as u64,
            1 => self.u64()?,
            s => s,
        };
        if size < header {
            return Err(bad("box smaller than its header"));
        }
        let body = usize::try_from(size - header).map_err(|_| bad("box too large"))?;
        Ok(Some((kind, self.bytes(body)?)))
    }
}

/// The boxes of `buf`, in order.
fn children(buf: &[u8]) -> Result<Vec<BoxRef<'_>>, HeifError> {
    let mut rd = Rd::new(buf);
    let mut out = Vec::new();
    while let Some(b) = rd.child()? {
        if out.len() >= MAX_PROPERTIES + 16 {
            return Err(bad("too many boxes"));
        }
        out.push(b);
    }
    Ok(out)
}

fn find<'a>(boxes: &[BoxRef<'a>], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes.iter().find(|(k, _)| k == kind).map(|(_, b)| *b)
}

/// A file whose first bytes are already in memory (the probe's head read):
/// reads inside `head` are served from it, the rest from `file`, so parsing
/// `meta` (and the Exif item, when it lies early) costs no further system
/// call. For a scan of 10,000 iPhone HEICs that is the difference between
/// one read per file and eight (seek and read of each top-level box
/// header, `meta`, the grid description and the Exif item).
pub(crate) struct HeadFile<'a, R> {
    head: &'a [u8],
    file: &'a mut R,
    len: u64,
    pos: u64,
    /// Where `file`'s own position is, when known (saves a seek).
    file_pos: Option<u64>,
}

impl<'a, R: Read + Seek> HeadFile<'a, R> {
    /// `head`: the file's bytes from offset 0; `len`: the file's length.
    pub(crate) fn new(head: &'a [u8], file: &'a mut R, len: u64) -> HeadFile<'a, R> {
        let head = &head[..head.len().min(usize::try_from(len).unwrap_or(usize::MAX))];
        HeadFile {
            head,
            file,
            len,
            pos: 0,
            file_pos: None,
        }
    }
}

impl<R: Read + Seek> Read for HeadFile<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let in_head = usize::try_from(self.pos)
            .ok()
            .and_then(|p| self.head.get(p..))
            .filter(|rest| !rest.is_empty());
        let n = match in_head {
            Some(rest) => {
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                n
            }
            None => {
                if self.file_pos != Some(self.pos) {
                    self.file.seek(SeekFrom::Start(self.pos))?;
                }
                let n = self.file.read(buf)?;
                self.file_pos = Some(self.pos + n as u64);
                n
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for HeadFile<'_, R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
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

/// Properties of one item, resolved from `ipma`.
#[derive(Default, Clone)]
struct Props<'a> {
    hvcc: Option<&'a [u8]>,
    av1c: Option<&'a [u8]>,
    /// Which `ipco` properties `hvcc` and `av1c` are (1-based).
    config_properties: (Option<usize>, Option<usize>),
    ispe: Option<(u32, u32)>,
    clap: Option<[u32; 8]>,
    irot: Option<u8>,
    imir: Option<u8>,
    pixi: Option<u8>,
}

struct Info {
    kind: [u8; 4],
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

fn parse_pitm(b: &[u8]) -> Result<u32, HeifError> {
    let mut rd = Rd::new(b);
    let (v, _) = rd.full()?;
    if v == 0 {
        Ok(u32::from(rd.u16()?))
    } else {
        rd.u32()
    }
}

fn parse_iinf(b: &[u8]) -> Result<HashMap<u32, Info>, HeifError> {
    let mut rd = Rd::new(b);
    let (v, _) = rd.full()?;
    let count = if v == 0 {
        u32::from(rd.u16()?)
    } else {
        rd.u32()?
    };
    if count as usize > MAX_ITEMS {
        return Err(bad(format!("{count} items, more than isync reads")));
    }
    let mut out = HashMap::new();
    for (kind, body) in children(&b[rd.pos..])? {
        if &kind != b"infe" {
            continue;
        }
        if out.len() >= MAX_ITEMS {
            return Err(bad("too many items"));
        }
        let mut rd = Rd::new(body);
        let (v, _) = rd.full()?;
        if v < 2 {
            continue; // old form without an item type: nothing we decode
        }
        let id = if v == 2 {
            u32::from(rd.u16()?)
        } else {
            rd.u32()?
        };
        let _protection = rd.u16()?;
        let kind: [u8; 4] = rd.bytes(4)?.try_into().expect("4 bytes");
        out.insert(id, Info { kind });
    }
    Ok(out)
}

fn parse_iloc(b: &[u8]) -> Result<HashMap<u32, Location>, HeifError> {
    let mut rd = Rd::new(b);
    let (v, _) = rd.full()?;
    if v > 2 {
        return Err(HeifError::Unsupported(format!("iloc version {v}")));
    }
    let sizes = rd.u8()?;
    let (offset_size, length_size) = (sizes >> 4, sizes & 15);
    let sizes = rd.u8()?;
    let base_size = sizes >> 4;
    let index_size = if v >= 1 { sizes & 15 } else { 0 };
    let count = if v < 2 {
        u32::from(rd.u16()?)
    } else {
        rd.u32()?
    };
    if count as usize > MAX_ITEMS {
        return Err(bad(format!(
            "{count} item locations, more than isync reads"
        )));
    }
    let mut out = HashMap::new();
    for _ in 0..count {
        let id = if v < 2 {
            u32::from(rd.u16()?)
        } else {
            rd.u32()?
        };
        let method = if v >= 1 { (rd.u16()? & 15) as u8 } else { 0 };
        let data_ref = rd.u16()?;
        let base = rd.sized(base_size)?;
        let n = rd.u16()? as usize;
        if n > MAX_EXTENTS {
            return Err(bad(format!("item {id} in {n} pieces")));
        }
        let mut extents = Vec::with_capacity(n);
        for _ in 0..n {
            rd.sized(index_size)?;
            let off = rd.sized(offset_size)?;
            let len = rd.sized(length_size)?;
            let off = base
                .checked_add(off)
                .ok_or_else(|| bad("extent offset overflows"))?;
            extents.push((off, len));
        }
        // Another file (data_ref ≠ 0) or item-to-item construction: never
        // followed; such an item simply has no location. Nor has one whose
        // extents include a length 0 ("to the end of the source") beside
        // others: that means the rest of the file once per such extent
        // (fuzzing found an Exif item of three, read as three copies).
        let to_end_among_several = n > 1 && extents.iter().any(|&(_, len)| len == 0);
        if data_ref == 0 && method <= 1 && !to_end_among_several {
            out.insert(id, Location { method, extents });
        }
    }
    Ok(out)
}

/// `(type, from, [to…])` references.
type Ref = ([u8; 4], u32, Vec<u32>);

fn parse_iref(b: &[u8]) -> Result<Vec<Ref>, HeifError> {
    let mut rd = Rd::new(b);
    let (v, _) = rd.full()?;
    let mut out = Vec::new();
    let mut total = 0usize;
    for (kind, body) in children(&b[rd.pos..])? {
        let mut rd = Rd::new(body);
        let id = |rd: &mut Rd| -> Result<u32, HeifError> {
            if v == 0 {
                Ok(u32::from(rd.u16()?))
            } else {
                rd.u32()
            }
        };
        let from = id(&mut rd)?;
        let n = rd.u16()? as usize;
        total += n;
        if total > MAX_ITEMS {
            return Err(bad("too many item references"));
        }
        let to = (0..n).map(|_| id(&mut rd)).collect::<Result<Vec<_>, _>>()?;
        out.push((kind, from, to));
    }
    Ok(out)
}

fn parse_iprp(b: &[u8]) -> Result<HashMap<u32, Props<'_>>, HeifError> {
    let boxes = children(b)?;
    let ipco = children(find(&boxes, b"ipco").ok_or_else(|| bad("no ipco"))?)?;
    let mut out: HashMap<u32, Props> = HashMap::new();
    for (kind, ipma) in boxes.iter().filter(|(k, _)| k == b"ipma") {
        let _ = kind;
        let mut rd = Rd::new(ipma);
        let (v, flags) = rd.full()?;
        let count = rd.u32()? as usize;
        if count > MAX_ITEMS {
            return Err(bad("too many property associations"));
        }
        for _ in 0..count {
            let id = if v < 1 {
                u32::from(rd.u16()?)
            } else {
                rd.u32()?
            };
            let n = rd.u8()?;
            let props = out.entry(id).or_default();
            for _ in 0..n {
                let index = if flags & 1 == 1 {
                    usize::from(rd.u16()? & 0x7FFF)
                } else {
                    usize::from(rd.u8()? & 0x7F)
                };
                if index == 0 {
                    continue;
                }
                let Some((pk, body)) = ipco.get(index - 1) else {
                    return Err(bad(format!("property {index} does not exist")));
                };
                apply_property(props, pk, body)?;
                match pk {
                    b"hvcC" => props.config_properties.0 = Some(index),
                    b"av1C" => props.config_properties.1 = Some(index),
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

fn apply_property<'a>(p: &mut Props<'a>, kind: &[u8; 4], body: &'a [u8]) -> Result<(), HeifError> {
    let mut rd = Rd::new(body);
    match kind {
        b"hvcC" => p.hvcc = Some(body),
        b"av1C" => p.av1c = Some(body),
        b"ispe" => {
            rd.full()?;
            p.ispe = Some((rd.u32()?, rd.u32()?));
        }
        b"clap" => {
            let mut v = [0u32; 8];
            for x in &mut v {
                *x = rd.u32()?;
            }
            p.clap = Some(v);
        }
        b"irot" => p.irot = Some(rd.u8()? & 3),
        b"imir" => p.imir = Some(rd.u8()? & 1),
        b"pixi" => {
            rd.full()?;
            let n = rd.u8()?;
            if n > 0 {
                p.pixi = Some(rd.u8()?);
            }
        }
        _ => {}
    }
    Ok(())
}

/// HEVC parameter-set NAL units from `hvcC`, and the NAL length size.
fn parse_hvcc(b: &[u8]) -> Result<(Vec<Vec<u8>>, u8), HeifError> {
    let mut rd = Rd::new(b);
    rd.bytes(21)?;
    let nal_length = (rd.u8()? & 3) + 1;
    if nal_length == 3 {
        return Err(bad("hvcC NAL length size 3"));
    }
    let arrays = rd.u8()?;
    let mut nals = Vec::new();
    for _ in 0..arrays {
        rd.u8()?;
        let n = rd.u16()?;
        for _ in 0..n {
            let len = rd.u16()? as usize;
            if nals.len() >= 64 {
                return Err(bad("too many parameter sets"));
            }
            nals.push(rd.bytes(len)?.to_vec());
        }
    }
    Ok((nals, nal_length))
}

impl Heif {
    /// Builds the primary picture and its thumbnail from the parsed boxes.
    fn build(
        mut self,
        primary: u32,
        infos: &HashMap<u32, Info>,
        refs: &[Ref],
        props: &HashMap<u32, Props>,
    ) -> Result<Heif, HeifError> {
        let empty = Props::default();
        let props_of = |id: u32| props.get(&id).unwrap_or(&empty);
        let info = infos
            .get(&primary)
            .ok_or_else(|| bad(format!("primary item {primary} not described")))?;
        self.primary = picture(primary, info, props_of(primary), infos, refs, &props_of)?;
        self.thumbnail = refs
            .iter()
            .filter(|(k, _, to)| k == b"thmb" && to.contains(&primary))
            .filter_map(|(_, from, _)| {
                let info = infos.get(from)?;
                picture(*from, info, props_of(*from), infos, refs, &props_of).ok()
            })
            .filter(|p| matches!(p.layout, Layout::Single(_)))
            .max_by_key(|p| p.width.max(p.height));
        self.exif = refs
            .iter()
            .filter(|(k, _, to)| k == b"cdsc" && to.contains(&primary))
            .map(|(_, from, _)| *from)
            .find(|from| infos.get(from).is_some_and(|i| &i.kind == b"Exif"));
        Ok(self)
    }

    /// Reads the `grid` descriptions, which live in item data.
    fn resolve_grids<R: Read + Seek>(&mut self, file: &mut R) -> Result<(), HeifError> {
        if let Layout::Grid { tiles, .. } = &self.primary.layout {
            let grid_id = tiles[0].id;
            // The grid item's id was parked as the first "tile" by `picture`.
            let data = self.item_data(file, grid_id, MAX_GRID_BYTES)?;
            let tiles = tiles[1..].to_vec();
            let mut rd = Rd::new(&data);
            rd.u8()?; // version
            let flags = rd.u8()?;
            let rows = u32::from(rd.u8()?) + 1;
            let cols = u32::from(rd.u8()?) + 1;
            let (width, height) = if flags & 1 == 1 {
                (rd.u32()?, rd.u32()?)
            } else {
                (u32::from(rd.u16()?), u32::from(rd.u16()?))
            };
            if (rows * cols) as usize != tiles.len() {
                return Err(bad(format!(
                    "grid of {rows}x{cols} with {} tiles",
                    tiles.len()
                )));
            }
            let Layout::Grid { tile_w, tile_h, .. } = self.primary.layout else {
                unreachable!()
            };
            if u64::from(tile_w) * u64::from(cols) < u64::from(width)
                || u64::from(tile_h) * u64::from(rows) < u64::from(height)
                || width == 0
                || height == 0
            {
                return Err(bad("grid tiles do not cover its output size"));
            }
            if self.primary.width != 0
                && (self.primary.width, self.primary.height) != (width, height)
            {
                log::debug!("grid ispe differs from its output size; using the grid's");
            }
            // The crop was placed against `ispe`; a grid whose output size
            // differs must still hold it whole.
            if let Some(c) = self.primary.crop {
                if u64::from(c.x) + u64::from(c.w) > u64::from(width)
                    || u64::from(c.y) + u64::from(c.h) > u64::from(height)
                {
                    return Err(bad("clap rectangle outside the grid's output size"));
                }
            }
            self.primary.width = width;
            self.primary.height = height;
            self.primary.layout = Layout::Grid {
                rows,
                cols,
                width,
                height,
                tile_w,
                tile_h,
                tiles,
            };
        }
        Ok(())
    }

    /// The bytes of item `id`, at most `max` of them.
    pub fn item_data<R: Read + Seek>(
        &self,
        file: &mut R,
        id: u32,
        max: u64,
    ) -> Result<Vec<u8>, HeifError> {
        let loc = self
            .locations
            .get(&id)
            .ok_or_else(|| bad(format!("item {id} has no location")))?;
        let (source_len, idat) = match loc.method {
            0 => (self.file_len, None),
            _ => (self.idat.len() as u64, Some(&self.idat)),
        };
        let mut total = 0u64;
        let mut out = Vec::new();
        for &(off, len) in &loc.extents {
            let len = extent_len(off, len, source_len);
            let end = off
                .checked_add(len)
                .filter(|&e| e <= source_len)
                .ok_or_else(|| bad(format!("item {id} lies past the end of the file")))?;
            total = total.saturating_add(len);
            if total > max {
                return Err(bad(format!(
                    "item {id} larger than isync reads ({max} bytes)"
                )));
            }
            match idat {
                Some(idat) => out.extend_from_slice(&idat[off as usize..end as usize]),
                None => {
                    file.seek(SeekFrom::Start(off))?;
                    let start = out.len();
                    out.resize(start + len as usize, 0);
                    file.read_exact(&mut out[start..])?;
                }
            }
        }
        Ok(out)
    }

    /// Total bytes of the coded data of `pic` (its tiles), from `iloc`.
    pub(crate) fn coded_bytes(&self, pic: &Picture) -> u64 {
        let ids: Vec<u32> = match &pic.layout {
            Layout::Single(id) => vec![*id],
            Layout::Grid { tiles, .. } => tiles.iter().map(|t| t.id).collect(),
        };
        ids.iter()
            .filter_map(|id| self.locations.get(id))
            .flat_map(|l| {
                let source_len = match l.method {
                    0 => self.file_len,
                    _ => self.idat.len() as u64,
                };
                l.extents
                    .iter()
                    .map(move |&(off, len)| extent_len(off, len, source_len))
            })
            .fold(0u64, u64::saturating_add)
    }

    /// The Exif item's TIFF payload (after its 4-byte header offset field).
    pub fn exif<R: Read + Seek>(&self, file: &mut R) -> Option<Vec<u8>> {
        let data = self.item_data(file, self.exif?, MAX_EXIF_BYTES).ok()?;
        let skip = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
        data.get(4usize.checked_add(skip)?..).map(<[u8]>::to_vec)
    }
}

/// The picture item `id` is, with the properties that describe it.
fn picture<'p, 'b>(
    id: u32,
    info: &Info,
    p: &'p Props<'b>,
    infos: &HashMap<u32, Info>,
    refs: &[Ref],
    props_of: &dyn Fn(u32) -> &'p Props<'b>,
) -> Result<Picture, HeifError> {
    let (configs, layout) = match &info.kind {
        b"hvc1" | b"av01" => (vec![config_of(p)?], Layout::Single(id)),
        b"grid" => {
            let tiles = refs
                .iter()
                .find(|(k, from, _)| k == b"dimg" && *from == id)
                .map(|(_, _, to)| to.clone())
                .ok_or_else(|| bad("grid without tiles"))?;
            if tiles.is_empty() || tiles.len() > MAX_TILES {
                return Err(bad(format!("grid of {} tiles", tiles.len())));
            }
            let kind = infos.get(&tiles[0]).map(|i| i.kind);
            if tiles.iter().any(|t| infos.get(t).map(|i| i.kind) != kind) {
                return Err(bad("grid tiles of different types or missing"));
            }
            let (tile_w, tile_h) = props_of(tiles[0])
                .ispe
                .ok_or_else(|| bad("tile without ispe"))?;
            let (configs, tiles) = grid_tiles(&tiles, (tile_w, tile_h), props_of)?;
            // The grid item id goes first; `resolve_grids` reads its data.
            let mut all = vec![Tile { id, config: 0 }];
            all.extend(tiles);
            (
                configs,
                Layout::Grid {
                    rows: 0,
                    cols: 0,
                    width: 0,
                    height: 0,
                    tile_w,
                    tile_h,
                    tiles: all,
                },
            )
        }
        other => {
            return Err(HeifError::Unsupported(format!(
                "primary item of type {}",
                String::from_utf8_lossy(other)
            )))
        }
    };
    let coded_pixi = match &layout {
        Layout::Single(_) => p.pixi,
        Layout::Grid { tiles, .. } => tiles.get(1).and_then(|t| props_of(t.id).pixi),
    };
    let (width, height) = match (&layout, p.ispe) {
        (Layout::Grid { .. }, ispe) => ispe.unwrap_or((0, 0)),
        (_, Some(s)) => s,
        (_, None) => return Err(bad("picture without ispe")),
    };
    if matches!(layout, Layout::Single(_)) && (width == 0 || height == 0) {
        return Err(bad("picture of zero size"));
    }
    let mut pic = Picture {
        configs,
        layout,
        width,
        height,
        crop: None,
        rotation_ccw: p.irot.unwrap_or(0),
        mirror: p.imir,
        bit_depth: p.pixi.or(coded_pixi),
    };
    if let Some(c) = p.clap {
        pic.crop = Some(clap_crop(&c, width, height)?);
    }
    Ok(pic)
}

/// The decoder configuration a coded picture's properties give.
fn config_of(p: &Props) -> Result<Config, HeifError> {
    if let Some(h) = p.hvcc {
        let (units, nal_length) = parse_hvcc(h)?;
        Ok(Config {
            codec: Codec::Hevc { nal_length },
            units,
        })
    } else if let Some(a) = p.av1c {
        Ok(Config {
            codec: Codec::Av1,
            units: vec![a.get(4..).unwrap_or_default().to_vec()],
        })
    } else {
        Err(bad("picture without decoder configuration"))
    }
}

/// The tiles `ids` of a grid, each with its own decoder configuration, as
/// libheif decodes each tile with its own: a tile is never decoded with
/// another's parameter sets. Every tile must be `size` (its `ispe`, that
/// of the first tile) and of the first tile's codec; a configuration
/// shared by several tiles (one `ipco` property) is parsed once.
fn grid_tiles<'p, 'b>(
    ids: &[u32],
    size: (u32, u32),
    props_of: &dyn Fn(u32) -> &'p Props<'b>,
) -> Result<(Vec<Config>, Vec<Tile>), HeifError> {
    let mut configs: Vec<Config> = Vec::new();
    // The `ipco` property a tile is decoded with (its `hvcC`, or its
    // `av1C` when it has none, as `config_of` chooses) → its index in
    // `configs`. Each property is parsed once, so all the configurations
    // together are no larger than the `meta` box, however many tiles.
    let mut parsed: HashMap<Option<usize>, usize> = HashMap::new();
    let mut tiles = Vec::with_capacity(ids.len());
    for (n, &id) in ids.iter().enumerate() {
        let p = props_of(id);
        match p.ispe {
            Some(s) if s == size => {}
            Some((w, h)) => {
                return Err(bad(format!(
                    "grid tile {} is {w}x{h}, its first tile {}x{}: tiles of a grid are all \
                     one size",
                    n + 1,
                    size.0,
                    size.1
                )))
            }
            None => return Err(bad("tile without ispe")),
        }
        let property = if p.hvcc.is_some() {
            p.config_properties.0
        } else {
            p.config_properties.1
        };
        let config = match parsed.get(&property) {
            Some(&at) => at,
            None => {
                let c = config_of(p)?;
                let same_codec = configs.first().is_none_or(|first| {
                    std::mem::discriminant(&first.codec) == std::mem::discriminant(&c.codec)
                });
                if !same_codec {
                    return Err(bad("grid tiles of different codecs"));
                }
                configs.push(c);
                parsed.insert(property, configs.len() - 1);
                configs.len() - 1
            }
        };
        tiles.push(Tile { id, config });
    }
    Ok((configs, tiles))
}

/// An `iloc` extent's length in bytes: its length, or for 0 the rest of its
/// source (the file, or `idat`) from `off`.
fn extent_len(off: u64, len: u64, source_len: u64) -> u64 {
    match len {
        0 => source_len.saturating_sub(off),
        len => len,
    }
}

/// The `clap` rectangle in whole pixels, inside `w`×`h` (when the grid size
/// is not known yet, checked again by the decoder against what it gets).
fn clap_crop(c: &[u32; 8], w: u32, h: u32) -> Result<Crop, HeifError> {
    let frac = |n: u32, d: u32, signed: bool| -> Result<f64, HeifError> {
        if d == 0 {
            return Err(bad("clap with a zero denominator"));
        }
        let n = if signed {
            f64::from(n as i32)
        } else {
            f64::from(n)
        };
        Ok(n / f64::from(d))
    };
    let cw = frac(c[0], c[1], false)?.round();
    let ch = frac(c[2], c[3], false)?.round();
    // Centre of the aperture relative to the picture's centre.
    let cx = frac(c[4], c[5], true)? + (f64::from(w) - 1.0) / 2.0;
    let cy = frac(c[6], c[7], true)? + (f64::from(h) - 1.0) / 2.0;
    let x = (cx - (cw - 1.0) / 2.0).round();
    let y = (cy - (ch - 1.0) / 2.0).round();
    let inside = cw >= 1.0
        && ch >= 1.0
        && x >= 0.0
        && y >= 0.0
        && x + cw <= f64::from(w)
        && y + ch <= f64::from(h);
    if !inside {
        return Err(bad("clap rectangle outside the picture"));
    }
    Ok(Crop {
        x: x as u32,
        y: y as u32,
        w: cw as u32,
        h: ch as u32,
    })
}

#[cfg(test)]
#[allow(unreachable_pub)] // shared with tests/it, where it is `pub`
#[path = "../../tests/it/common/heifmux.rs"]
mod heifmux;

#[cfg(test)]
mod tests {
    use super::heifmux::{self as mux, Codec as MuxCodec};
    use super::*;

    /// `iloc` (version 1, 4-byte offsets and lengths, no base or index) of
    /// items `(id, extents)`, all in this file.
    fn iloc_v1(items: &[(u16, &[(u32, u32)])]) -> Vec<u8> {
        let mut b = vec![1, 0, 0, 0, 0x44, 0x00];
        b.extend((items.len() as u16).to_be_bytes());
        for (id, extents) in items {
            b.extend(id.to_be_bytes());
            b.extend([0, 0, 0, 0]); // construction method 0, data reference 0
            b.extend((extents.len() as u16).to_be_bytes());
            for (off, len) in *extents {
                b.extend(off.to_be_bytes());
                b.extend(len.to_be_bytes());
            }
        }
        b
    }

    #[test]
    fn a_to_the_end_extent_counts_once_and_only_alone() {
        let locs = parse_iloc(&iloc_v1(&[
            (1, &[(0, 0), (0, 0), (0, 0)]),
            (2, &[(8, 0)]),
            (3, &[(8, 4), (20, 0)]),
            (4, &[(8, 4), (20, 6)]),
        ]))
        .unwrap();
        // Several extents, one of them "to the end": no location.
        assert!(!locs.contains_key(&1) && !locs.contains_key(&3));
        assert_eq!(locs[&2].extents, vec![(8, 0)]);
        assert_eq!(extent_len(8, 0, 100), 92);
        assert_eq!(extent_len(200, 0, 100), 0);
        assert_eq!(extent_len(8, 4, 100), 4);
        assert_eq!(locs[&4].extents, vec![(8, 4), (20, 6)]);
    }
    use std::io::Cursor;

    fn have_ffmpeg() -> bool {
        super::super::testkit::have_ffmpeg()
    }

    fn parse(bytes: &[u8]) -> Result<Heif, HeifError> {
        read(&mut Cursor::new(bytes))
    }

    #[test]
    fn single_hevc_with_transforms_exif_and_thumbnail() {
        if !have_ffmpeg() {
            return;
        }
        let c = mux::encode(&mux::corners(64, 48), 64, 48, MuxCodec::Hevc, false);
        let t = mux::encode(&mux::corners(32, 24), 32, 24, MuxCodec::Hevc, false);
        let mut spec = mux::Spec::single(c.clone());
        spec.irot = Some(1);
        spec.imir = Some(0);
        // 48x40 centred aperture.
        spec.clap = Some([48, 1, 40, 1, 0, 1, 0, 1]);
        spec.exif = Some(mux::exif_taken("2021:06:05 04:03:02"));
        spec.thumbnail = Some(t);
        let bytes = mux::mux(&spec);
        assert!(is_heif(&bytes));
        let h = parse(&bytes).unwrap();
        assert_eq!(&h.major_brand, b"heic");
        let p = &h.primary;
        assert_eq!(p.layout, Layout::Single(1));
        assert_eq!((p.width, p.height), (64, 48));
        assert_eq!(
            p.crop,
            Some(Crop {
                x: 8,
                y: 4,
                w: 48,
                h: 40
            })
        );
        assert_eq!((p.rotation_ccw, p.mirror), (1, Some(0)));
        assert_eq!(p.display_size(), (40, 48));
        assert_eq!(
            p.orientation(),
            5,
            "quarter left, then top↔bottom: transpose"
        );
        assert!(matches!(p.codec(), Codec::Hevc { nal_length: 4 }));
        assert_eq!(p.configs.len(), 1);
        assert_eq!(p.configs[0].units, c.config, "VPS/SPS/PPS from hvcC");
        let data = h.item_data(&mut Cursor::new(&bytes), 1, 1 << 20).unwrap();
        assert_eq!(data, c.data);
        let thumb = h.thumbnail.as_ref().expect("thmb");
        assert_eq!((thumb.width, thumb.height), (32, 24));
        let tiff = h.exif(&mut Cursor::new(&bytes)).expect("exif");
        let meta = crate::media::exifmeta::parse_tiff(&tiff).expect("tiff");
        assert!(meta.capture_time.is_some());
    }

    #[test]
    fn grid_tiles_in_order_and_av1() {
        if !have_ffmpeg() {
            return;
        }
        let rgb = mux::corners(120, 100);
        let spec = mux::grid(&rgb, 120, 100, 64, 2, 2, MuxCodec::Hevc, true);
        let h = parse(&mux::mux(&spec)).unwrap();
        assert_eq!(
            h.primary.layout,
            Layout::Grid {
                rows: 2,
                cols: 2,
                width: 120,
                height: 100,
                tile_w: 64,
                tile_h: 64,
                tiles: (2..6).map(|id| Tile { id, config: 0 }).collect(),
            }
        );
        // Every tile points at one `hvcC` (the muxer shares equal boxes).
        assert_eq!(h.primary.configs.len(), 1);
        assert_eq!(h.primary.bit_depth, Some(10));
        assert_eq!(h.primary.display_size(), (120, 100));

        let a = mux::encode(&mux::corners(64, 48), 64, 48, MuxCodec::Av1, false);
        let mut spec = mux::Spec::single(a.clone());
        spec.irot = Some(3);
        let h = parse(&mux::mux(&spec)).unwrap();
        assert_eq!(&h.major_brand, b"avif");
        assert_eq!(h.primary.codec(), Codec::Av1);
        assert_eq!(h.primary.configs[0].units, vec![a.config.concat()]);
        assert_eq!(h.primary.display_size(), (48, 64));
        assert_eq!(h.primary.orientation(), 6);
    }

    #[test]
    fn orientation_table_matches_composed_transforms() {
        // Compose irot (ccw) then imir on a 2x3 labelled grid and compare
        // with what each EXIF orientation does (thumbs::orient).
        use super::super::raster::{orient, Raster};
        let (w, h) = (2u32, 3u32);
        let src = Raster {
            width: w,
            height: h,
            alpha: false,
            data: (0..w * h).flat_map(|i| [i as u8, 0, 0]).collect(),
        };
        let rot_ccw = |r: &Raster| {
            // display (x, y) of a ccw turn takes stored (w-1-y, x)
            let mut d = Vec::new();
            for y in 0..r.width {
                for x in 0..r.height {
                    let (sx, sy) = (r.width - 1 - y, x);
                    let i = ((sy * r.width + sx) * 3) as usize;
                    d.extend_from_slice(&r.data[i..i + 3]);
                }
            }
            Raster {
                width: r.height,
                height: r.width,
                alpha: false,
                data: d,
            }
        };
        let mirror = |r: &Raster, axis: u8| {
            let mut d = Vec::new();
            for y in 0..r.height {
                for x in 0..r.width {
                    // mode 0: top↔bottom; 1: left↔right.
                    let (sx, sy) = if axis == 1 {
                        (r.width - 1 - x, y)
                    } else {
                        (x, r.height - 1 - y)
                    };
                    let i = ((sy * r.width + sx) * 3) as usize;
                    d.extend_from_slice(&r.data[i..i + 3]);
                }
            }
            Raster { data: d, ..*r }
        };
        for rot in 0..4u8 {
            for m in [None, Some(0u8), Some(1)] {
                let mut want = src.clone();
                for _ in 0..rot {
                    want = rot_ccw(&want);
                }
                if let Some(axis) = m {
                    want = mirror(&want, axis);
                }
                let mut p = placeholder();
                p.rotation_ccw = rot;
                p.mirror = m;
                let got = orient(src.clone(), i64::from(p.orientation()));
                assert_eq!(got, want, "irot {rot} imir {m:?}");
            }
        }
    }

    /// A minimal HEIF with `n` declared items, hand-built (no ffmpeg).
    fn synthetic(items: u32, ispe: (u32, u32), iloc_len: u32) -> Vec<u8> {
        let bx = |k: &[u8; 4], b: &[u8]| {
            let mut o = ((b.len() + 8) as u32).to_be_bytes().to_vec();
            o.extend_from_slice(k);
            o.extend_from_slice(b);
            o
        };
        let full = |k: &[u8; 4], v: u8, b: &[u8]| {
            let mut x = vec![v, 0, 0, 0];
            x.extend_from_slice(b);
            bx(k, &x)
        };
        let mut hdlr = vec![0u8; 4];
        hdlr.extend_from_slice(b"pict");
        hdlr.extend_from_slice(&[0; 13]);
        let mut meta = full(b"hdlr", 0, &hdlr);
        meta.extend(full(b"pitm", 0, &1u16.to_be_bytes()));
        let mut iinf = items.to_be_bytes().to_vec();
        let mut iloc = vec![0x44, 0x00];
        iloc.extend_from_slice(&items.to_be_bytes());
        for id in 1..=items {
            let mut e = id.to_be_bytes().to_vec();
            e.extend_from_slice(&[0, 0]);
            e.extend_from_slice(b"hvc1");
            e.push(0);
            iinf.extend(full(b"infe", 3, &e));
            iloc.extend_from_slice(&id.to_be_bytes());
            iloc.extend_from_slice(&[0, 0, 0, 0, 0, 1]);
            iloc.extend_from_slice(&100u32.to_be_bytes());
            iloc.extend_from_slice(&iloc_len.to_be_bytes());
        }
        meta.extend(full(b"iinf", 1, &iinf));
        let mut hvcc = vec![1u8; 21];
        hvcc.extend_from_slice(&[0x0F, 0]);
        let mut ispe_b = ispe.0.to_be_bytes().to_vec();
        ispe_b.extend_from_slice(&ispe.1.to_be_bytes());
        let mut ipco = bx(b"hvcC", &hvcc);
        ipco.extend(full(b"ispe", 0, &ispe_b));
        let mut iprp = bx(b"ipco", &ipco);
        iprp.extend(full(b"ipma", 0, &[0, 0, 0, 1, 0, 1, 2, 0x81, 2]));
        meta.extend(bx(b"iprp", &iprp));
        meta.extend(full(b"iloc", 2, &iloc));
        let mut out = bx(b"ftyp", b"heic\0\0\0\0mif1heic");
        out.extend(full(b"meta", 0, &meta));
        out.extend(bx(b"mdat", &[0u8; 200]));
        out
    }

    #[test]
    fn hostile_inputs_are_errors_not_panics() {
        let ok = synthetic(1, (640, 480), 50);
        let h = parse(&ok).unwrap();
        assert_eq!(h.primary.display_size(), (640, 480));
        assert_eq!(
            h.item_data(&mut Cursor::new(&ok), 1, 1 << 20)
                .unwrap()
                .len(),
            50
        );
        // iloc past the end of the file: the item cannot be read.
        let past = synthetic(1, (640, 480), 1 << 30);
        let h = parse(&past).unwrap();
        assert!(h.item_data(&mut Cursor::new(&past), 1, u64::MAX).is_err());
        // Huge ispe parses (the decoder refuses it against its limits).
        let huge = parse(&synthetic(1, (u32::MAX, u32::MAX), 50)).unwrap();
        assert_eq!(huge.primary.width, u32::MAX);
        // 10,000 items: refused.
        assert!(matches!(
            parse(&synthetic(10_000, (64, 64), 10)),
            Err(HeifError::Invalid(_))
        ));
        // Every truncation and a sweep of single-byte corruptions.
        for n in 0..ok.len() {
            let _ = parse(&ok[..n]);
        }
        for i in 0..ok.len() {
            for v in [0u8, 0xFF, 0x80, 1] {
                let mut b = ok.clone();
                b[i] = v;
                if let Ok(h) = parse(&b) {
                    let _ = h.item_data(&mut Cursor::new(&b), 1, 1 << 20);
                    let _ = h.exif(&mut Cursor::new(&b));
                }
            }
        }
        // Not HEIF at all.
        assert_eq!(
            parse(b"\0\0\0\x10ftypmp42\0\0\0\0"),
            Err(HeifError::NotHeif)
        );
        assert!(!is_heif(b"\0\0\0\x10ftypmp42\0\0\0\0"));
    }

    /// A reader that counts the system calls a `File` would make.
    struct Counted<'a> {
        inner: Cursor<&'a [u8]>,
        calls: usize,
    }

    impl Read for Counted<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.calls += 1;
            self.inner.read(buf)
        }
    }

    impl Seek for Counted<'_> {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            self.calls += 1;
            self.inner.seek(to)
        }
    }

    #[test]
    fn a_head_in_memory_gives_the_same_answer_with_no_further_read() {
        let mut bytes = synthetic(3, (640, 480), 50);
        bytes.resize(bytes.len().max(200), 7);
        let want = parse(&bytes).unwrap();
        let want_item = want
            .item_data(&mut Cursor::new(&bytes), 1, 1 << 20)
            .unwrap();
        let len = bytes.len() as u64;
        // Every split between the head and the rest of the file.
        for k in 0..=bytes.len() {
            let mut file = Counted {
                inner: Cursor::new(&bytes),
                calls: 0,
            };
            let mut src = HeadFile::new(&bytes[..k], &mut file, len);
            let got = read(&mut src).unwrap();
            assert_eq!(got, want, "head of {k} bytes");
            assert_eq!(got.item_data(&mut src, 1, 1 << 20).unwrap(), want_item);
            if k == bytes.len() {
                assert_eq!(file.calls, 0, "the whole file was in the head");
            }
        }
        // A head longer than the file's stated length is cut to it.
        let mut file = Cursor::new(&bytes);
        let mut src = HeadFile::new(&bytes, &mut file, 10);
        assert!(read(&mut src).is_err());
    }

    /// Writes the `heif` fuzz target's seeds (docs/fuzzing.md):
    /// `cargo test --lib media::heif::tests::write_fuzz_seeds -- --ignored`.
    #[test]
    #[ignore = "writes fuzz/seeds/heif; run by hand"]
    fn write_fuzz_seeds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/heif");
        std::fs::create_dir_all(&dir).unwrap();
        let put = |name: &str, spec: &mux::Spec| {
            std::fs::write(dir.join(name), mux::mux(spec)).unwrap();
        };
        let c = mux::encode(&mux::corners(48, 40), 48, 40, MuxCodec::Hevc, false);
        let t = mux::encode(&mux::corners(32, 32), 32, 32, MuxCodec::Hevc, false);
        let mut spec = mux::Spec::single(c);
        spec.irot = Some(1);
        spec.imir = Some(1);
        spec.clap = Some([24, 1, 20, 1, 2, 1, 0, 1]);
        spec.exif = Some(mux::exif_taken("2021:06:05 04:03:02"));
        spec.thumbnail = Some(t);
        put("single.heic", &spec);
        let rgb = mux::corners(40, 40);
        put(
            "grid.heic",
            &mux::grid(&rgb, 40, 40, 32, 2, 2, MuxCodec::Hevc, true),
        );
        let a = mux::encode(&mux::corners(32, 24), 32, 24, MuxCodec::Av1, false);
        let mut spec = mux::Spec::single(a);
        spec.irot = Some(3);
        put("rotated.avif", &spec);
        std::fs::write(dir.join("synthetic.heic"), synthetic(3, (640, 480), 50)).unwrap();
    }

    #[test]
    fn a_crop_outside_the_grids_output_size_is_refused() {
        if !have_ffmpeg() {
            return;
        }
        // A 64x64 grid whose `ispe` claims 128x128: the centred 48x48
        // `clap` fits the claim (at 40,40) but not the grid's real output.
        let rgb = mux::corners(64, 64);
        let mut spec = mux::grid(&rgb, 64, 64, 32, 2, 2, MuxCodec::Hevc, false);
        spec.clap = Some([48, 1, 48, 1, 0, 1, 0, 1]);
        let bytes = mux::mux(&spec);
        assert!(parse(&bytes).is_ok(), "the honest file parses");
        let mut ispe = b"ispe\0\0\0\0".to_vec();
        ispe.extend_from_slice(&64u32.to_be_bytes());
        ispe.extend_from_slice(&64u32.to_be_bytes());
        let at = bytes
            .windows(ispe.len())
            .position(|w| w == ispe)
            .expect("the grid's ispe");
        let mut lying = bytes.clone();
        lying[at + 8..at + 16].copy_from_slice(&[0, 0, 0, 128, 0, 0, 0, 128]);
        let err = parse(&lying).expect_err("a crop outside the picture");
        assert!(err.to_string().contains("clap"), "{err}");
    }

    #[test]
    fn grid_with_a_missing_tile_is_refused() {
        if !have_ffmpeg() {
            return;
        }
        let rgb = mux::corners(64, 64);
        let mut spec = mux::grid(&rgb, 64, 64, 32, 2, 2, MuxCodec::Hevc, false);
        if let mux::Primary::Grid { rows, .. } = &mut spec.primary {
            *rows = 1; // says 1x2 but references 4 tiles
        }
        assert!(parse(&mux::mux(&spec)).is_err());
    }

    #[test]
    fn grid_tiles_keep_their_own_decoder_configuration() {
        if !have_ffmpeg() {
            return;
        }
        // Odd tiles without SAO and wavefronts, with a chroma QP offset:
        // other SPS and PPS than the even ones.
        let rgb = mux::corners(120, 100);
        let spec = mux::grid_with(&rgb, 120, 100, 64, 2, 2, |i, t| {
            let x265 = if i % 2 == 1 {
                "sao=0:wpp=0:cbqpoffs=-6:crqpoffs=6"
            } else {
                ""
            };
            mux::encode_with(t, 64, 64, MuxCodec::Hevc, false, 12, x265)
        });
        let mux::Primary::Grid { tiles: coded, .. } = &spec.primary else {
            unreachable!()
        };
        assert_ne!(
            coded[0].config, coded[1].config,
            "the fixture's tiles differ"
        );
        let h = parse(&mux::mux(&spec)).unwrap();
        let p = &h.primary;
        let Layout::Grid { tiles, .. } = &p.layout else {
            panic!("{:?}", p.layout)
        };
        let ids: Vec<u32> = tiles.iter().map(|t| t.id).collect();
        assert_eq!(ids, [2, 3, 4, 5]);
        // Two configurations, each tile naming its own.
        assert_eq!(p.configs.len(), 2);
        for (t, c) in tiles.iter().zip(coded) {
            assert_eq!(p.configs[t.config].units, c.config, "tile {}", t.id);
        }
        assert_eq!(
            tiles.iter().map(|t| t.config).collect::<Vec<_>>(),
            [0, 1, 0, 1]
        );
    }

    #[test]
    fn a_grid_whose_tiles_differ_in_size_is_refused() {
        if !have_ffmpeg() {
            return;
        }
        // The last tile 64x48 where the others are 64x64: libheif refuses
        // such a grid; decoding it as 64x64 would misplace or stretch it.
        let rgb = mux::corners(120, 100);
        let spec = mux::grid_with(&rgb, 120, 100, 64, 2, 2, |i, t| {
            let h = if i == 3 { 48 } else { 64 };
            mux::encode(&t[..(64 * h * 3) as usize], 64, h, MuxCodec::Hevc, false)
        });
        match parse(&mux::mux(&spec)) {
            Err(HeifError::Invalid(why)) => {
                assert!(why.contains("grid tile 4 is 64x48"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }
}
