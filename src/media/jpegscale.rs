//! JPEG fast paths for thumbnails: the previews cameras embed — the EXIF
//! IFD1 thumbnail (level 0, and level 1 when it is that large) and the
//! Multi-Picture (MPF, CIPA DC-007) "large thumbnail" phones and cameras
//! append after the photo (usually 1620–1920 px: level 1 from ~0.5 MB of
//! JPEG instead of 4 MB) — and otherwise decoding at 1/2, 1/4 or 1/8 scale
//! inside the IDCT, so a 12 MP photo never exists at full size.
//!
//! Decoder choice (measured with `benches/thumbs.rs` on a 4.1 MB 12 MP
//! q90 photo, CPU per decode): jpeg-decoder 1/4 scale 89 ms, mozjpeg
//! (libjpeg-turbo, no SIMD) 2/8 78 ms; at 1/8, 85 vs 54 ms; zune-jpeg can't
//! scale (full decode 111 ms). The Huffman pass over the whole file
//! dominates, so no single-threaded option reaches 40 ms; jpeg-decoder is
//! within ~12% at level 1, pure Rust (no C to cross-build) and returns
//! errors where mozjpeg panics, which would need panic=unwind and
//! catch_unwind. Photos of 1 MP and up are therefore decoded on every core
//! when their structure allows: in ranges of the Huffman stream, cut at
//! restart markers or where the code resynchronises, by this crate's own
//! baseline decoder (`jpegpar`, at 1/2 scale and below); at full scale in
//! bands at restart markers through jpeg-decoder (`jpegbands`); jpeg-decoder
//! in one piece takes everything else.

use std::io::{self, Read, Seek};

use super::budget::{Allowance, Budget, BudgetError, Lease};
use super::jpegwalk::{is_sof, segments, Step, Walker};
use super::original::Original;
// `decode_scaled` lives in `raster`, below `jpegcut` and this module alike.
pub(crate) use super::raster::decode_scaled;
use super::raster::{check_pixels, fit_size, post_cost, reserve, Raster, ThumbError};

/// Most header bytes we read looking for the frame header. APP segments are
/// at most 64 KiB each; real files put SOF within the first ~70 KiB.
const MAX_HEAD_BYTES: u64 = 1024 * 1024;
/// Most bytes of entropy-coded data per pixel and component we read looking
/// for the end of the picture. Huffman coding of 8-bit samples costs at
/// most 27 bits per coefficient (a 16-bit code and 11 bits of value), 3.4
/// bytes per sample; quality-100 noise takes under 2. A file longer than
/// this before its end marker is not a picture of that size.
const MAX_BYTES_PER_SAMPLE: u64 = 4;
/// … plus this for the headers (APP segments: EXIF, ICC, XMP) before it.
const MAX_HEADER_BYTES: u64 = 4 << 20;

/// What the markers before the frame header tell us.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JpegHead {
    pub width: u32,
    pub height: u32,
    pub components: u8,
    pub precision: u8,
    /// SOF0/SOF1 (sequential) or SOF2 (progressive) Huffman coding: the
    /// processes the scaled decoder handles.
    pub huffman_dct: bool,
    pub progressive: bool,
    /// Horizontal and vertical sampling factors of each component.
    pub sampling: Vec<(u8, u8)>,
    /// The APP1 Exif payload from its TIFF header on, if any.
    pub exif: Option<Vec<u8>>,
    /// The APP2 MPF payload from its MP header on, and the file offset of
    /// that header (MP entry offsets count from it).
    pub mpf: Option<(u64, Vec<u8>)>,
}

impl JpegHead {
    /// Whether the scaled decoders here handle it (not CMYK, 12-bit,
    /// lossless or arithmetic-coded).
    fn scalable(&self) -> bool {
        self.huffman_dct && self.precision == 8 && matches!(self.components, 1 | 3)
    }

    /// Most bytes of the file a decode of the picture reads (see
    /// [`MAX_BYTES_PER_SAMPLE`]).
    fn max_bytes(&self) -> u64 {
        let samples = u64::from(self.width) * u64::from(self.height) * u64::from(self.components);
        samples * MAX_BYTES_PER_SAMPLE + MAX_HEADER_BYTES
    }

    /// The IDCT scale (n/8) the decoders use for the `edge` box, and the
    /// decoded size: jpeg-decoder's choice (`idct::choose_idct_size`).
    fn scale_for(&self, edge: u32) -> (u32, u32, u32) {
        let scaled = |len: u32, n: u32| (len * n).div_ceil(8);
        let n = [1u32, 2, 4, 8]
            .into_iter()
            .find(|&n| scaled(self.width, n) >= edge || scaled(self.height, n) >= edge)
            .unwrap_or(8);
        (n, scaled(self.width, n), scaled(self.height, n))
    }

    /// MCUs of the picture and 8x8 blocks per MCU, from the sampling factors.
    fn mcus(&self) -> (u64, u64) {
        let hmax = self
            .sampling
            .iter()
            .map(|s| u32::from(s.0))
            .max()
            .unwrap_or(1)
            .max(1);
        let vmax = self
            .sampling
            .iter()
            .map(|s| u32::from(s.1))
            .max()
            .unwrap_or(1)
            .max(1);
        let mcus_x = u64::from(self.width.div_ceil(8 * hmax));
        let mcus_y = u64::from(self.height.div_ceil(8 * vmax));
        let blocks: u64 = self
            .sampling
            .iter()
            .map(|(h, v)| u64::from(*h) * u64::from(*v))
            .sum();
        (mcus_x * mcus_y, blocks.max(1))
    }

    /// Peak memory of a decode at the `edge` box besides the file's bytes,
    /// with the decoder that gets it: jpeg-decoder (the sample planes at the
    /// reduced scale, the RGB result and its grey-to-RGB copy; every
    /// coefficient of the full picture when progressive), or this crate's
    /// range decoder (`jpegpar::memory_bound`, plus its copy of the
    /// entropy-coded data) or band decoder (a copy of the data) when
    /// `threads` > 1.
    fn decode_cost(&self, edge: u32, threads: usize, data: u64) -> u64 {
        let (n, sw, sh) = self.scale_for(edge);
        let (total, blocks) = self.mcus();
        let out = u64::from(sw) * u64::from(sh) * 3;
        let planes = total * blocks * u64::from(n * n);
        let mut cost = planes + 2 * out + (1 << 20);
        if self.progressive {
            cost += total * blocks * 64 * 2;
        }
        if threads > 1 && !self.progressive {
            let split = super::jpegpar::memory_bound(total, blocks, n, threads, sw, sh);
            cost = cost.max(split + data).max(planes + 2 * out + data);
        }
        cost
    }
}

/// MP entry image types that are a downscaled copy of the primary image
/// (CIPA DC-007 §5.2.3.3.1): large thumbnail classes 1 (VGA) and 2 (full
/// HD). Other types — multi-view frames, panorama parts, and the "undefined"
/// type of Ultra HDR gain maps — are different pictures.
const MPF_LARGE_THUMBNAIL_TYPES: [u32; 2] = [0x01_0001, 0x01_0002];
/// Largest embedded preview we read into memory.
const MAX_PREVIEW_BYTES: u32 = 16 * 1024 * 1024;

/// Decodes the JPEG `orig` no smaller than the `edge` box needs, with the
/// lease covering it and what follows (scaling, encoding), or `None` when
/// this path can't handle the file (CMYK, 12-bit, lossless) and the general
/// decoder should try.
///
/// Each attempt — the EXIF thumbnail, an MPF preview, the photo — reserves
/// its own peak before it reads or decodes, and gives it back before the
/// next one starts. The photo is read up to its end marker, never past it
/// (a camera's preview or a phone's motion-photo video after it, or a
/// gigabyte of padding, stay on disk), and at most what its dimensions can
/// take.
pub(crate) fn decode<'a>(
    orig: &Original,
    edge: u32,
    allow: Allowance<'a>,
) -> Result<Option<(Raster, Lease<'a>)>, ThumbError> {
    let failed = |e: &dyn std::fmt::Display| orig.failed(e);
    // 64 KiB covers a whole APP1 segment in one read, so the EXIF thumbnail
    // path touches only the head of the file: cheap even on a USB disk.
    let mut reader = orig.reader(64 * 1024).map_err(|e| failed(&e))?;
    let head = read_head(&mut reader).map_err(|e| failed(&e))?;
    check_pixels(head.width, head.height).map_err(|e| failed(&e))?;
    if !head.scalable() {
        return Ok(None);
    }
    let label = orig.label();
    // An embedded preview large enough for the box: no decode of the photo.
    let blocking = |bytes: u64| allow.budget.reserve(bytes, allow.class).ok();
    if let Some(found) = head
        .exif
        .as_deref()
        .and_then(|tiff| exif_thumbnail(tiff, head.width, head.height, edge, &blocking))
    {
        log::debug!(path:display = label.display(), edge; "thumbnail from the EXIF thumbnail");
        return Ok(Some(found));
    }
    if let Some(found) = mpf_preview(&mut reader, &head, edge, orig, allow) {
        log::debug!(path:display = label.display(), edge; "thumbnail from the MPF preview");
        return Ok(Some(found));
    }
    // On several cores when the encoder wrote restart markers (and the
    // photo is big enough for threads to pay: 1 MP and up).
    let bands = if u64::from(head.width) * u64::from(head.height) >= 1_000_000 {
        super::jpegbands::bands_for(allow.decode_bands)
    } else {
        1
    };
    let cap = head.max_bytes();
    let data_len = orig.len.min(cap);
    let decode_cost = head.decode_cost(edge, bands, data_len);
    let (_, sw, sh) = head.scale_for(edge);
    let lease = reserve(
        orig,
        allow,
        data_len + decode_cost + post_cost(sw, sh, edge, false),
    )?;
    // The photo up to its end marker, in memory: jpeg-decoder reads the
    // entropy-coded data a byte at a time, which costs +50% CPU through a
    // BufReader, and the split decoders need it whole.
    reader.rewind().map_err(|e| failed(&e))?;
    let data = read_to_eoi(&mut reader, cap).map_err(|e| failed(&e))?;
    let data = match data {
        Picture::Whole(data) => data,
        // The file ends first: shown as far as it goes when that is far
        // enough (`jpegcut` says what is).
        Picture::Cut(data) => {
            // Measuring the cut takes a copy of the entropy-coded data
            // (`jpegpar`), beside what the lease covers: taken only if free
            // at once, as a render holding a lease must not wait.
            let _copy = allow
                .budget
                .try_reserve(data.len() as u64)
                .ok_or_else(|| ThumbError::from_budget(label, BudgetError::Busy))?;
            let raster =
                super::jpegcut::decode(&data, edge, decode_cost).map_err(|e| failed(&e))?;
            log::debug!(path:display = label.display(), edge; "a cut-off JPEG shown as far as it goes");
            return Ok(Some((raster, lease)));
        }
        Picture::TooLong => {
            return Err(failed(&format_args!(
                "no end of picture within {} MB, more than a {}x{} JPEG holds",
                cap / 1_000_000,
                head.width,
                head.height
            )))
        }
    };
    // The entropy-coded data in ranges, cut at restart markers or where
    // the Huffman code resynchronises (`jpegpar`, at 1/2 scale and below);
    // a full-scale decode in bands at restart markers (`jpegbands`).
    if let Some(raster) = super::jpegpar::decode(&data, edge, bands, decode_cost) {
        log::debug!(path:display = label.display(), edge; "decoded in ranges");
        return Ok(Some((raster, lease)));
    }
    if let Some(raster) = super::jpegbands::decode(&data, edge, bands) {
        log::debug!(path:display = label.display(), edge; "decoded in bands at restart markers");
        return Ok(Some((raster, lease)));
    }
    match decode_scaled(data.as_slice(), edge, decode_cost) {
        Ok(raster) => Ok(Some((raster, lease))),
        // jpeg-decoder wants each RST marker right where an interval's
        // data ends and numbered in turn; libjpeg looks for it past stray
        // bytes and takes a misnumbered one for the one expected. With
        // every marker there, the general decoder (zune-jpeg, which looks
        // for it the same way) gives libjpeg's pixels; with one missing
        // the file is damaged and refused.
        Err(e) if e.contains("where RST") && every_interval_has_its_marker(&data, &head) => {
            log::debug!(path:display = label.display(); "{e}: left to the general decoder");
            Ok(None)
        }
        Err(e) => Err(failed(&e)),
    }
}

/// Whether the single-scan JPEG `data` has a restart interval and one RST
/// marker between each two intervals of it, whatever bytes precede a
/// marker or how it is numbered.
fn every_interval_has_its_marker(data: &[u8], head: &JpegHead) -> bool {
    let (mut restart, mut scan_at) = (0u64, None);
    for (marker, at, len) in segments(data) {
        match marker {
            0xDD if len >= 4 => {
                restart = u64::from(u16::from_be_bytes([data[at + 2], data[at + 3]]))
            }
            0xDA => scan_at = Some(at + len),
            _ => {}
        }
    }
    let Some(mut i) = scan_at else {
        return false;
    };
    if restart == 0 || head.progressive {
        return false;
    }
    // A one-component scan is not interleaved: its MCU is one block.
    let mcus = if head.components == 1 {
        u64::from(head.width.div_ceil(8)) * u64::from(head.height.div_ceil(8))
    } else {
        head.mcus().0
    };
    let mut markers = 0u64;
    while let Some(p) = memchr::memchr(0xFF, &data[i..]) {
        let at = i + p;
        match data.get(at + 1) {
            Some(0x00 | 0xFF) => i = at + 1,
            Some(0xD0..=0xD7) => {
                markers += 1;
                i = at + 2;
            }
            _ => break,
        }
    }
    markers + 1 == mcus.div_ceil(restart)
}

/// [`decode`] of the file at `path` with the shared default budget and
/// `bands` as the decode-bands setting, the raster alone: for the
/// decoders' tests.
#[cfg(test)]
pub(crate) fn decode_path(
    path: &std::path::Path,
    level: crate::model::ThumbLevel,
    bands: usize,
) -> Result<Option<Raster>, ThumbError> {
    let orig = Original::open_path(path)?;
    let allow = Allowance::standalone().with_decode_bands(bands);
    Ok(decode(&orig, level.max_edge_px(), allow)?.map(|(r, _)| r))
}

/// What [`read_to_eoi`] found.
#[derive(Debug, PartialEq)]
enum Picture {
    /// From the SOI up to and including the EOI.
    Whole(Vec<u8>),
    /// The file ended first: all of it.
    Cut(Vec<u8>),
    /// No end within what a picture of its size can hold.
    TooLong,
}

/// Reads a JPEG from its SOI up to and including its EOI marker, walking
/// the marker segments and the entropy-coded data between them (where an
/// 0xFF is always followed by a stuffed zero, a restart marker or the next
/// marker). Stops at the end of the file too (a cut-off photo may still
/// show what it has); gives up when `cap` bytes pass without the end.
fn read_to_eoi<R: Read>(reader: R, cap: u64) -> io::Result<Picture> {
    const CHUNK: u64 = 256 * 1024;
    let mut r = reader.take(cap);
    let mut data = Vec::new();
    let mut walk = EoiWalk::default();
    loop {
        let n = (&mut r).take(CHUNK).read_to_end(&mut data)?;
        if let Some(end) = walk.advance(&data) {
            data.truncate(end);
            data.shrink_to_fit();
            return Ok(Picture::Whole(data));
        }
        if n == 0 {
            // The end of the file, or of what a picture this size can hold.
            return Ok(if r.limit() > 0 {
                Picture::Cut(data)
            } else {
                Picture::TooLong
            });
        }
    }
}

/// Where [`read_to_eoi`] is in the file: resumable as more bytes arrive.
#[derive(Default)]
struct EoiWalk {
    at: usize,
    in_scan: bool,
}

impl EoiWalk {
    /// The length of the picture once its EOI is in `d`.
    fn advance(&mut self, d: &[u8]) -> Option<usize> {
        if self.at == 0 {
            self.at = 2; // past the SOI the caller checked
        }
        loop {
            if self.at >= d.len() {
                return None;
            }
            if self.in_scan {
                let Some(p) = memchr::memchr(0xFF, &d[self.at..]) else {
                    self.at = d.len();
                    return None;
                };
                let ff = self.at + p;
                match *d.get(ff + 1)? {
                    0x00 | 0xD0..=0xD7 => self.at = ff + 2,
                    0xFF => self.at = ff + 1,
                    _ => {
                        self.in_scan = false;
                        self.at = ff;
                    }
                }
                continue;
            }
            if d[self.at] != 0xFF {
                // Garbage between segments: look for the next marker.
                self.in_scan = true;
                continue;
            }
            match *d.get(self.at + 1)? {
                0xFF => self.at += 1,
                0xD9 => return Some(self.at + 2),
                0x01 | 0xD0..=0xD8 => self.at += 2,
                marker => {
                    let len = d.get(self.at + 2..self.at + 4)?;
                    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                    self.in_scan = marker == 0xDA || len < 2;
                    self.at += 2 + len.max(2);
                }
            }
        }
    }
}

/// The smallest MPF large thumbnail of the photo that covers `edge` (or is
/// as large as the photo) and has its shape, decoded at the smallest scale
/// that still covers `edge`, with its lease. `None` when there is none, it
/// is damaged or its memory is not granted: the caller decodes the photo.
fn mpf_preview<'a, R: Read + Seek>(
    reader: &mut R,
    head: &JpegHead,
    edge: u32,
    orig: &Original,
    allow: Allowance<'a>,
) -> Option<(Raster, Lease<'a>)> {
    let (base, mpf) = head.mpf.as_ref()?;
    let mut previews: Vec<MpEntry> = mp_entries(mpf)?
        .into_iter()
        .filter(|e| {
            e.format == 0
                && MPF_LARGE_THUMBNAIL_TYPES.contains(&e.kind)
                && e.offset > 0
                && (1..=MAX_PREVIEW_BYTES).contains(&e.size)
        })
        .collect();
    // Fewest bytes first: the cheapest to decode that is large enough wins.
    previews.sort_by_key(|e| e.size);
    let photo_long = head.width.max(head.height);
    for e in previews {
        let at = base + u64::from(e.offset);
        // Its header first (a bounded read), to know what decoding it costs.
        let ph = reader
            .seek(io::SeekFrom::Start(at))
            .and_then(|_| read_head(&mut reader.by_ref().take(u64::from(e.size))));
        let Ok(ph) = ph else {
            log::debug!(offset = e.offset; "MPF preview is not a JPEG");
            continue;
        };
        let (pw, phh) = (ph.width, ph.height);
        let usable = ph.scalable()
            && pw.max(phh) >= edge.min(photo_long)
            && u64::from(pw) * u64::from(phh) < u64::from(head.width) * u64::from(head.height)
            && same_shape(head.width, head.height, pw, phh);
        if !usable {
            log::debug!(pw, ph = phh, edge; "MPF preview unusable for this box");
            continue;
        }
        let decode_cost = ph.decode_cost(edge, 1, 0);
        let (_, sw, sh) = ph.scale_for(edge);
        let need = u64::from(e.size) + decode_cost + post_cost(sw, sh, edge, false);
        let Ok(lease) = reserve(orig, allow, need) else {
            continue;
        };
        let bytes = read_at(reader, at, e.size).ok()?;
        match decode_scaled(bytes.as_slice(), edge, decode_cost) {
            Ok(raster) => return Some((raster, lease)),
            Err(e) => log::debug!("MPF preview does not decode: {e}"),
        }
    }
    None
}

/// `len` bytes of `reader` from `offset`, all or an error.
fn read_at<R: Read + Seek>(reader: &mut R, offset: u64, len: u32) -> io::Result<Vec<u8>> {
    reader.seek(io::SeekFrom::Start(offset))?;
    let mut out = Vec::with_capacity(len as usize);
    reader.take(u64::from(len)).read_to_end(&mut out)?;
    if out.len() != len as usize {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(out)
}

/// Whether a `tw`×`th` preview has the shape of a `w`×`h` photo, within
/// rounding (1% of the long side): a letterboxed or cropped preview does not.
fn same_shape(w: u32, h: u32, tw: u32, th: u32) -> bool {
    let long = tw.max(th);
    let (ew, eh) = fit_size(w, h, long);
    let tolerance = 1 + long / 100;
    ew.abs_diff(tw) <= tolerance && eh.abs_diff(th) <= tolerance
}

/// One entry of the MP Index IFD's MPEntry table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MpEntry {
    /// Image data format (bits 24–26 of the attribute): 0 = JPEG.
    pub format: u32,
    /// Image type code (low 24 bits of the attribute).
    pub kind: u32,
    pub size: u32,
    /// From the MP header; 0 for the primary image.
    pub offset: u32,
}

/// The MPEntry table of an MPF payload (`mpf` starts at the MP header's
/// byte-order mark). `None` when the structure is damaged.
pub(super) fn mp_entries(mpf: &[u8]) -> Option<Vec<MpEntry>> {
    let le = match mpf.get(..4)? {
        b"II*\0" => true,
        b"MM\0*" => false,
        _ => return None,
    };
    let u16_at = |at: usize| {
        let b: [u8; 2] = mpf.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if le {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    };
    let u32_at = |at: usize| {
        let b: [u8; 4] = mpf.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let ifd = u32_at(4)? as usize;
    let count = usize::from(u16_at(ifd)?);
    let (mut table, mut table_len) = (None, 0usize);
    for i in 0..count {
        let at = ifd + 2 + 12 * i;
        if u16_at(at)? == 0xB002 {
            // MPEntry: UNDEFINED, 16 bytes per image, always stored by offset.
            table_len = u32_at(at + 4)? as usize;
            table = Some(u32_at(at + 8)? as usize);
        }
    }
    let table = table?;
    let entries = (0..table_len / 16)
        .map(|i| {
            let at = table + 16 * i;
            let attr = u32_at(at)?;
            Some(MpEntry {
                format: (attr >> 24) & 0x7,
                kind: attr & 0x00FF_FFFF,
                size: u32_at(at + 4)?,
                offset: u32_at(at + 8)?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(entries)
}

/// The EXIF thumbnail of the JPEG `orig` when it can stand in for the photo
/// at `edge` (see [`exif_thumbnail`]); reads only the file's head. For a
/// render that already holds a lease: its memory is taken only if free at
/// once.
pub(crate) fn exif_thumbnail_of<'a>(
    orig: &Original,
    edge: u32,
    budget: &'a Budget,
) -> Option<(Raster, Lease<'a>)> {
    let head = read_head(&mut orig.reader(64 * 1024).ok()?).ok()?;
    exif_thumbnail(
        head.exif.as_deref()?,
        head.width,
        head.height,
        edge,
        &|bytes| budget.try_reserve(bytes),
    )
}

/// A JPEG held in memory (e.g. a video frame from ffmpeg), decoded at the
/// smallest scale that covers `edge`. Small by construction (the caller's
/// lease covers it): a frame ffmpeg scaled into the box.
pub(crate) fn decode_bytes(jpeg: &[u8], edge: u32) -> Result<Raster, String> {
    let head = read_head(&mut &jpeg[..]).map_err(|e| e.to_string())?;
    check_pixels(head.width, head.height)?;
    decode_scaled(jpeg, edge, head.decode_cost(edge, 1, 0))
}

/// The embedded IFD1 thumbnail, decoded, with its lease, when it can stand
/// in for the photo at `edge`: at least `edge` on its longest side (or as
/// large as the photo), and the photo's aspect ratio. Some cameras
/// letterbox a 4:3 thumbnail for a 3:2 or 16:9 photo; those black bars must
/// not reach the client. `reserve` grants its memory, or not (then `None`).
fn exif_thumbnail<'a>(
    tiff: &[u8],
    width: u32,
    height: u32,
    edge: u32,
    reserve: &dyn Fn(u64) -> Option<Lease<'a>>,
) -> Option<(Raster, Lease<'a>)> {
    let exif = exif::Reader::new().read_raw(tiff.to_vec()).ok()?;
    let field = |tag| {
        exif.get_field(tag, exif::In::THUMBNAIL)
            .and_then(|f| f.value.get_uint(0))
    };
    let offset = field(exif::Tag::JPEGInterchangeFormat)? as usize;
    let len = field(exif::Tag::JPEGInterchangeFormatLength)? as usize;
    let bytes = tiff.get(offset..offset.checked_add(len)?)?;
    // Size first, from the header: a 160 px thumbnail asked for level 1 is
    // rejected without decoding it.
    let th_head = read_head(&mut &bytes[..]).ok()?;
    let (tw, th) = (th_head.width, th_head.height);
    let big_enough = tw.max(th) >= edge.min(width.max(height));
    if !big_enough || !same_shape(width, height, tw, th) || !th_head.scalable() {
        log::debug!(tw, th, width, height, edge; "EXIF thumbnail unusable");
        return None;
    }
    // Its decode can cost more than its 64 KiB suggest (a progressive one
    // keeps every coefficient): reserved from its header.
    let decode_cost = th_head.decode_cost(edge, 1, 0);
    let (_, sw, sh) = th_head.scale_for(edge);
    let lease = reserve(decode_cost + post_cost(sw, sh, edge, false))?;
    // A large EXIF preview for level 0: decode it scaled, like the photo.
    decode_scaled(bytes, edge, decode_cost)
        .ok()
        .map(|raster| (raster, lease))
}

/// Reads markers up to the frame header (SOFn), keeping the Exif and MPF
/// payloads: the `jpegwalk` walk over what has been read, reading on only
/// as far as the next header or body it needs (at most
/// [`MAX_HEAD_BYTES`]). Stray bytes between segments are skipped.
pub(crate) fn read_head<R: Read>(reader: &mut R) -> io::Result<JpegHead> {
    let bad =
        |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("not a JPEG: {what}"));
    let mut r = reader.take(MAX_HEAD_BYTES);
    let mut buf = Vec::new();
    // Reads until `buf` holds `want` bytes: all of them or an error, as
    // `read_exact` (a cut-off header is an error).
    let mut fill = |buf: &mut Vec<u8>, want: usize| -> io::Result<()> {
        if want > buf.len() {
            let more = (want - buf.len()) as u64;
            if (&mut r).take(more).read_to_end(buf)? as u64 != more {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    };
    fill(&mut buf, 2)?;
    if buf[..2] != [0xFF, 0xD8] {
        return Err(bad("no SOI marker"));
    }
    let (mut exif, mut mpf) = (None, None);
    let mut walk = Walker::new();
    loop {
        let h = match walk.step(&buf) {
            Step::Header(h) => h,
            Step::NeedMore(n) => {
                fill(&mut buf, n)?;
                continue;
            }
            Step::End => return Err(bad("scan or end before the frame header")),
        };
        if h.marker == 0xDA {
            return Err(bad("scan before the frame header"));
        }
        // The walk goes on past the body: read it, as the reader can't seek.
        fill(&mut buf, h.end())?;
        let body = &buf[h.at + 2..h.end()];
        match h.marker {
            0xE1 if exif.is_none() && body.starts_with(b"Exif\0\0") => {
                exif = Some(body[6..].to_vec());
            }
            0xE2 if mpf.is_none() && body.starts_with(b"MPF\0") => {
                // MP entry offsets count from the MP header, after "MPF\0".
                mpf = Some(((h.at + 6) as u64, body[4..].to_vec()));
            }
            marker if is_sof(marker) => {
                if body.len() < 6 {
                    return Err(bad("short frame header"));
                }
                let sampling = body[6..]
                    .chunks_exact(3)
                    .take(usize::from(body[5]))
                    .map(|c| (c[1] >> 4, c[1] & 0x0F))
                    .collect();
                return Ok(JpegHead {
                    precision: body[0],
                    height: u32::from(u16::from_be_bytes([body[1], body[2]])),
                    width: u32::from(u16::from_be_bytes([body[3], body[4]])),
                    components: body[5],
                    sampling,
                    huffman_dct: matches!(marker, 0xC0..=0xC2),
                    progressive: marker == 0xC2,
                    exif,
                    mpf,
                });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{self, *};
    use super::super::thumbs::{render, CONTENT_TYPE_JPEG};
    use super::*;
    use crate::model::{FileType, ThumbLevel};
    use std::path::Path;

    /// A blue photo whose embedded thumbnail is red: the colour tells which
    /// one a level-0 thumbnail came from.
    fn photo(
        dir: &Path,
        name: &str,
        w: u32,
        h: u32,
        thumb: Option<(u32, u32)>,
        o: Option<u16>,
    ) -> std::path::PathBuf {
        let main = jpeg_bytes(&solid(w, h, BLUE), 90);
        let thumb = thumb.map(|(tw, th)| jpeg_bytes(&solid(tw, th, RED), 85));
        write(dir, name, &with_exif(&main, o, thumb.as_deref()))
    }

    fn level0(path: &Path, o: Option<i64>) -> image::RgbaImage {
        let thumb = render(path, FileType::Image, o, ThumbLevel::Small).unwrap();
        assert_eq!(thumb.content_type, CONTENT_TYPE_JPEG);
        testkit::decode(&thumb.bytes)
    }

    #[test]
    fn level_0_uses_the_exif_thumbnail() {
        let dir = tempfile::tempdir().unwrap();
        let path = photo(dir.path(), "cam.jpg", 2000, 1500, Some((160, 120)), Some(1));
        let img = level0(&path, Some(1));
        assert_eq!(img.dimensions(), (160, 120));
        assert!(
            near(&img, 80, 60, RED, 30),
            "EXIF thumbnail expected, got {:?}",
            img.get_pixel(80, 60)
        );
        // Level 1 needs more pixels than the thumbnail has: the photo itself.
        let thumb = render(&path, FileType::Image, Some(1), ThumbLevel::Screen).unwrap();
        let img = testkit::decode(&thumb.bytes);
        assert_eq!(img.dimensions(), (800, 600));
        assert!(near(&img, 400, 300, BLUE, 30));
    }

    #[test]
    fn exif_thumbnail_is_oriented_and_downscaled() {
        let dir = tempfile::tempdir().unwrap();
        let path = photo(dir.path(), "rot.jpg", 4000, 3000, Some((320, 240)), Some(6));
        let img = level0(&path, Some(6));
        assert_eq!(
            img.dimensions(),
            (120, 160),
            "320x240 thumbnail, turned and fitted"
        );
        assert!(near(&img, 60, 80, RED, 30));
    }

    /// The EXIF thumbnail (level 0) and the MPF preview (level 1) are
    /// turned by the photo's orientation, checked by pixels: each embedded
    /// picture is stored as a camera would store the quadrant picture for
    /// orientation `o`, and the thumbnail must show it upright (a quarter
    /// turn the wrong way has the right size but the wrong corners). The
    /// photo itself is solid blue, so falling back to it fails as well.
    #[test]
    fn embedded_previews_are_turned_by_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let photo = jpeg_bytes(&solid(2000, 1500, BLUE), 90);
        for o in 1..=8i64 {
            let turned = o >= 5;
            let upright = |w: u32, h: u32| {
                if turned {
                    quadrants(h, w)
                } else {
                    quadrants(w, h)
                }
            };
            let thumb = jpeg_bytes(&stored_for(&upright(320, 240), o), 85);
            let preview = jpeg_bytes(&stored_for(&upright(1600, 1200), o), 85);
            let main = with_exif(&photo, Some(o as u16), Some(&thumb));
            let bytes = with_mpf_preview(&main, &preview, 0x01_0002);
            let path = write(dir.path(), &format!("o{o}.jpg"), &bytes);

            let img = level0(&path, Some(o));
            let want = if turned { (120, 160) } else { (160, 120) };
            assert_eq!(img.dimensions(), want, "EXIF thumbnail, orientation {o}");
            assert_upright(&img, &format!("EXIF thumbnail, orientation {o}"));

            let thumb = render(&path, FileType::Image, Some(o), ThumbLevel::Screen).unwrap();
            let img = testkit::decode(&thumb.bytes);
            let want = if turned { (600, 800) } else { (800, 600) };
            assert_eq!(img.dimensions(), want, "MPF preview, orientation {o}");
            assert_upright(&img, &format!("MPF preview, orientation {o}"));
        }
    }

    #[test]
    fn unusable_exif_thumbnails_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        // Too small for the box.
        let small = photo(dir.path(), "small.jpg", 2000, 1500, Some((80, 60)), None);
        // Letterboxed: a 4:3 thumbnail for a 16:9 photo.
        let boxed = photo(dir.path(), "boxed.jpg", 1600, 900, Some((160, 120)), None);
        // Not a JPEG at all.
        let main = jpeg_bytes(&solid(1000, 750, BLUE), 90);
        let junk = write(
            dir.path(),
            "junk.jpg",
            &with_exif(&main, None, Some(b"\xFF\xD8 nope")),
        );
        for path in [small, boxed, junk] {
            let img = level0(&path, None);
            let (w, h) = img.dimensions();
            assert!(
                near(&img, w / 2, h / 2, BLUE, 30),
                "{}: photo expected",
                path.display()
            );
        }
        // A thumbnail as large as a small photo is good enough.
        let tiny = photo(dir.path(), "tiny.jpg", 120, 90, Some((120, 90)), None);
        let img = level0(&tiny, None);
        assert_eq!(img.dimensions(), (120, 90));
        assert!(near(&img, 60, 45, RED, 30));
    }

    #[test]
    fn head_parsing() {
        let main = jpeg_bytes(&solid(300, 200, BLUE), 90);
        let head = read_head(&mut main.as_slice()).unwrap();
        assert_eq!(
            (head.width, head.height, head.components, head.precision),
            (300, 200, 3, 8)
        );
        assert!(head.huffman_dct && !head.progressive && head.exif.is_none());
        let tagged = with_exif(&main, Some(8), None);
        let head = read_head(&mut tagged.as_slice()).unwrap();
        assert!(head.exif.unwrap().starts_with(b"II*\0"));
        for bad in [
            &b""[..],
            b"\xFF\xD8",
            b"GIF89a",
            b"\xFF\xD8\xFF\xDA\x00\x02",
            b"\xFF\xD8\xFF\xC0\x00\x01",
        ] {
            assert!(read_head(&mut &bad[..]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn grayscale_jpeg() {
        let dir = tempfile::tempdir().unwrap();
        let gray = image::GrayImage::from_pixel(1000, 500, image::Luma([128]));
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
            .encode_image(&gray)
            .unwrap();
        let path = write(dir.path(), "gray.jpg", &bytes);
        let img = testkit::decode(
            &render(&path, FileType::Image, None, ThumbLevel::Small)
                .unwrap()
                .bytes,
        );
        assert_eq!(img.dimensions(), (160, 80));
        assert!(near(&img, 80, 40, [128, 128, 128], 6));
    }

    /// A blue `w`×`h` photo carrying a `pw`×`ph` green MPF preview of type
    /// `kind` (and optionally a red EXIF thumbnail): the colour of a
    /// thumbnail tells which picture it came from.
    fn mpf_photo(
        dir: &Path,
        name: &str,
        (w, h): (u32, u32),
        (pw, ph): (u32, u32),
        kind: u32,
    ) -> PathBuf {
        let main = jpeg_bytes(&solid(w, h, BLUE), 90);
        let thumb = jpeg_bytes(&solid(160, 160 * h / w, RED), 85);
        let main = with_exif(&main, Some(1), Some(&thumb));
        let preview = jpeg_bytes(&solid(pw, ph, GREEN), 85);
        write(dir, name, &with_mpf_preview(&main, &preview, kind))
    }

    use std::path::PathBuf;

    #[test]
    fn mpf_large_thumbnail_makes_level_1() {
        let dir = tempfile::tempdir().unwrap();
        let path = mpf_photo(dir.path(), "cam.jpg", (4000, 3000), (1600, 1200), 0x01_0002);
        let head = read_head(&mut std::fs::File::open(&path).unwrap()).unwrap();
        let (base, mpf) = head.mpf.clone().expect("MPF segment found");
        let entries = mp_entries(&mpf).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].kind, entries[0].offset), (0x03_0000, 0));
        // The preview's offset, counted from the MP header, lands on its SOI.
        let bytes = std::fs::read(&path).unwrap();
        let at = (base + u64::from(entries[1].offset)) as usize;
        assert_eq!(&bytes[at..at + 3], &[0xFF, 0xD8, 0xFF]);
        assert_eq!(at + entries[1].size as usize, bytes.len());

        for o in [1, 6] {
            let thumb = render(&path, FileType::Image, Some(o), ThumbLevel::Screen).unwrap();
            let img = testkit::decode(&thumb.bytes);
            let want = if o == 6 { (600, 800) } else { (800, 600) };
            assert_eq!(img.dimensions(), want, "orientation {o}");
            assert!(
                near(&img, want.0 / 2, want.1 / 2, GREEN, 30),
                "MPF preview expected, got {:?}",
                img.get_pixel(want.0 / 2, want.1 / 2)
            );
        }
        // Level 0 still prefers the (cheaper) EXIF thumbnail.
        let img = level0(&path, None);
        assert!(near(&img, 80, 60, RED, 30));
    }

    #[test]
    fn unusable_mpf_images_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            // Too small for the 800 px box.
            ("small.jpg", (4000, 3000), (640, 480), 0x01_0001),
            // Letterboxed: 4:3 preview of a 16:9 photo.
            ("boxed.jpg", (3200, 1800), (1600, 1200), 0x01_0002),
            // Not a preview: an Ultra HDR gain map or a multi-view frame.
            ("gainmap.jpg", (4000, 3000), (1600, 1200), 0x00_0000),
            ("multiview.jpg", (4000, 3000), (1600, 1200), 0x02_0002),
        ];
        for (name, photo, preview, kind) in cases {
            let path = mpf_photo(dir.path(), name, photo, preview, kind);
            let img = testkit::decode(
                &render(&path, FileType::Image, None, ThumbLevel::Screen)
                    .unwrap()
                    .bytes,
            );
            let (w, h) = img.dimensions();
            assert!(
                near(&img, w / 2, h / 2, BLUE, 30),
                "{name}: the photo itself"
            );
        }
        // A preview offset pointing past the end of the file (a file cut
        // short): the photo is decoded instead, no error.
        let path = mpf_photo(dir.path(), "cut.jpg", (1600, 1200), (1000, 750), 0x01_0001);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 500]).unwrap();
        let img = testkit::decode(
            &render(&path, FileType::Image, None, ThumbLevel::Screen)
                .unwrap()
                .bytes,
        );
        assert!(near(&img, 400, 300, BLUE, 30));
        // Damaged MP headers parse to nothing rather than panicking.
        for junk in [
            &b""[..],
            b"II*\0",
            b"II*\0\xFF\xFF\xFF\x7F",
            b"MM\0*\0\0\0\x08\0\x01\xB0\x02",
        ] {
            assert!(mp_entries(junk).is_none_or(|e| e.is_empty()), "{junk:?}");
        }
    }

    #[test]
    fn a_large_exif_thumbnail_makes_level_1() {
        let dir = tempfile::tempdir().unwrap();
        // 960x720 fits an APP1 segment (64 KiB) at low quality, as some
        // cameras do.
        let main = jpeg_bytes(&solid(4000, 3000, BLUE), 90);
        let big = jpeg_bytes(&solid(960, 720, RED), 30);
        assert!(big.len() < 60_000, "{} bytes", big.len());
        let path = write(
            dir.path(),
            "big.jpg",
            &with_exif(&main, Some(8), Some(&big)),
        );
        let img = testkit::decode(
            &render(&path, FileType::Image, Some(8), ThumbLevel::Screen)
                .unwrap()
                .bytes,
        );
        assert_eq!(img.dimensions(), (600, 800));
        assert!(near(&img, 300, 400, RED, 30));
    }
}
