//! Decoding a big baseline JPEG at reduced scale on several cores, with or
//! without restart markers (most cameras, phones and libjpeg with default
//! settings write none).
//!
//! A scaled decode's time is almost all entropy decoding (see `jpegscale`),
//! and a JPEG's entropy-coded data is one Huffman stream. With restart
//! intervals the coder resets at each RSTn marker, so ranges that start at
//! one are exact. Without, there is no marker to cut at. But Huffman codes
//! resynchronise: a decoder started at an
//! arbitrary bit decodes garbage for a while and then, almost always within
//! a few MCUs, lands on a true symbol boundary at the start of a true MCU,
//! after which it decodes exactly what a decoder from the beginning would —
//! except for the DC values, which are coded as differences and so are off
//! by one constant per component (Weißenberger & Schmidt, "Massively
//! parallel Huffman decoding on GPUs", ICPP 2018; the same property in
//! JPEG decoders for GPUs).
//!
//! So the data is cut into as many byte ranges as there are threads; each
//! thread decodes its range speculatively from its first byte, writing the
//! few low-frequency coefficients the output scale needs for every MCU and
//! recording the bit position and DC predictors at every MCU start. Then,
//! from the first range (which is decoded from the true start), each range's
//! decoder runs on into the next until it reaches an MCU start that the next
//! range's decoder also recorded: from there the next range is right, and
//! the difference of the DC predictors at that point corrects its DC values.
//! If the next range never synchronises, the decoder before it simply goes
//! on decoding it (correct, just not in parallel).
//!
//! The reduced-size IDCT (2×2 or 4×4 pixels per block from the matching
//! low-frequency coefficients, or 1×1 from DC: 1/4, 1/2 and 1/8 scale, as
//! libjpeg's `jidctred` does), chroma upsampling (libjpeg's "fancy"
//! triangle filter) and the YCbCr → RGB conversion then run in horizontal
//! bands on the same threads. The pixels agree with a one-piece decode by
//! jpeg-decoder to rounding (tests); a parallel decode agrees with a one-range
//! decode of this module exactly.
//!
//! Anything unusual (progressive or multi-scan files, 12-bit samples, CMYK
//! or RGB colour, sampling factors other than 1 and 2, a damaged stream or
//! misnumbered restart markers, a full-scale decode — `jpegbands` does
//! those at restart markers) returns `None` and the caller decodes the file
//! the usual way.

use super::raster::Raster;
use std::ops::Range;

/// Natural (row-major) index of the coefficient at each zigzag position.
const ZIGZAG: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// Bits the fast Huffman lookup resolves at once.
const LOOKUP: u32 = 10;
/// Fewest bytes of entropy-coded data per thread for a split to pay.
const MIN_RANGE_BYTES: usize = 64 * 1024;
/// Most blocks in one MCU the standard allows.
const MAX_BLOCKS: usize = 10;

/// A Huffman table: a `LOOKUP`-bit table for short codes (most of them),
/// canonical decoding for the rest.
struct Huffman {
    /// Bits 0–4: bits to consume (0: not in the table). Bit 5: an AC entry
    /// whose value is resolved too (then bits 6–9 hold the zero run and bits
    /// 16–31 the coefficient). Otherwise bits 8–15 hold the symbol.
    fast: Vec<u32>,
    /// Largest code of each length (-1: none), 1..=16.
    maxcode: [i32; 17],
    /// Index into `symbols` of a length's codes minus its smallest code.
    offset: [i32; 17],
    symbols: Vec<u8>,
}

const FAST_VALUE: u32 = 1 << 5;

impl Huffman {
    fn new(counts: &[u8; 16], symbols: &[u8], ac: bool) -> Option<Huffman> {
        let mut fast = vec![0u32; 1 << LOOKUP];
        let mut maxcode = [-1i32; 17];
        let mut offset = [0i32; 17];
        let mut code = 0u32;
        let mut k = 0usize;
        for len in 1..=16u32 {
            let n = usize::from(counts[len as usize - 1]);
            offset[len as usize] = k as i32 - code as i32;
            for _ in 0..n {
                if code >= 1 << len {
                    return None;
                }
                let symbol = *symbols.get(k)?;
                if len <= LOOKUP {
                    let (run, size) = (u32::from(symbol >> 4), u32::from(symbol & 15));
                    let entry = if ac && size != 0 && len + size <= LOOKUP {
                        None
                    } else {
                        Some(len | u32::from(symbol) << 8)
                    };
                    let shift = LOOKUP - len;
                    for low in 0..1u32 << shift {
                        let index = (code << shift | low) as usize;
                        fast[index] = entry.unwrap_or_else(|| {
                            // The value's bits follow the code in the index.
                            let bits = (low >> (shift - size)) & ((1 << size) - 1);
                            let value = extend(bits, size);
                            (len + size) | FAST_VALUE | run << 6 | (value as u16 as u32) << 16
                        });
                    }
                }
                code += 1;
                k += 1;
            }
            maxcode[len as usize] = if n > 0 { code as i32 - 1 } else { -1 };
            code <<= 1;
        }
        Some(Huffman {
            fast,
            maxcode,
            offset,
            symbols: symbols[..k].to_vec(),
        })
    }

    /// The symbol at the top of `peek` and its code's length; `None` for a
    /// bit pattern that is no code.
    #[inline]
    fn slow(&self, peek: u64) -> Option<(u8, u32)> {
        for len in LOOKUP + 1..=16 {
            let code = (peek >> (64 - len)) as i32;
            if code <= self.maxcode[len as usize] {
                let i = self.offset[len as usize] + code;
                return Some((*self.symbols.get(usize::try_from(i).ok()?)?, len));
            }
        }
        None
    }
}

/// The signed value of `size` extra bits (JPEG's EXTEND).
#[inline]
fn extend(bits: u32, size: u32) -> i32 {
    if size == 0 {
        0
    } else if bits < 1 << (size - 1) {
        bits as i32 - (1 << size) + 1
    } else {
        bits as i32
    }
}

/// One block of an MCU: its component and tables.
#[derive(Clone, Copy)]
struct Block {
    comp: usize,
    dc: usize,
    ac: usize,
    /// Position inside the component's blocks of this MCU.
    bx: u32,
    by: u32,
}

struct Component {
    h: u32,
    v: u32,
    /// Quantisation table, zigzag order.
    q: [u16; 64],
}

/// What the decode needs from the headers, and the unstuffed entropy data.
struct Frame {
    width: u32,
    height: u32,
    comps: Vec<Component>,
    hmax: u32,
    vmax: u32,
    mcus_x: u32,
    mcus_y: u32,
    blocks: Vec<Block>,
    dc: Vec<Option<Huffman>>,
    ac: Vec<Option<Huffman>>,
    /// Entropy-coded bytes with the stuffing removed, then zero padding.
    data: Vec<u8>,
    bits: usize,
    /// Restart interval in MCUs (0: none), and where each interval's
    /// bytes begin in `data` (the RST markers removed).
    restart: usize,
    intervals: Vec<usize>,
}

/// A frame header's component: id, sampling factors, quantisation table.
type FrameComponent = (u8, u32, u32, usize);

/// What the headers before the scan said.
struct Headers {
    q: [[u16; 64]; 4],
    dc: Vec<Option<Huffman>>,
    ac: Vec<Option<Huffman>>,
    sof: Option<(u32, u32, Vec<FrameComponent>)>,
    adobe_transform: Option<u8>,
    jfif: bool,
    restart: usize,
}

/// The big-endian u16 at `at`.
fn be16(jpeg: &[u8], at: usize) -> Option<usize> {
    Some(usize::from(u16::from_be_bytes([
        *jpeg.get(at)?,
        *jpeg.get(at + 1)?,
    ])))
}

/// Parses the headers up to the only scan. `None` unless this module can
/// decode the file (see the module doc).
fn parse(jpeg: &[u8]) -> Option<Frame> {
    parse_as(jpeg, false)
}

/// [`parse`], of a file that may be cut off (`cut`): then fewer restart
/// intervals than the frame needs are no damage.
fn parse_as(jpeg: &[u8], cut: bool) -> Option<Frame> {
    let mut h = Headers {
        q: [[0u16; 64]; 4],
        dc: (0..4).map(|_| None).collect(),
        ac: (0..4).map(|_| None).collect(),
        sof: None,
        adobe_transform: None,
        jfif: false,
        restart: 0,
    };
    for (marker, at, len) in super::jpegwalk::segments(jpeg) {
        let body = &jpeg[at + 2..at + len];
        match marker {
            0xDB => read_dqt(&mut h.q, body)?,
            0xC4 => read_dht(&mut h, body)?,
            0xC0 | 0xC1 => {
                let frame = read_sof(jpeg, at, body)?;
                // A second frame header: not a file jpeg-decoder or the
                // size checks before this module (which read the first)
                // accept either.
                if h.sof.replace(frame).is_some() {
                    return None;
                }
            }
            // Progressive, lossless, arithmetic, hierarchical.
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return None,
            0xDD => h.restart = be16(jpeg, at + 2)?,
            0xE0 if body.starts_with(b"JFIF\0") => h.jfif = true,
            0xEE if body.starts_with(b"Adobe") && body.len() >= 12 => {
                h.adobe_transform = Some(body[11]);
            }
            0xDA => return read_scan(jpeg, at, len, body, h, cut),
            0xD9 => return None,
            _ => {}
        }
    }
    None
}

/// A DQT segment's tables into `q`.
fn read_dqt(q: &mut [[u16; 64]; 4], body: &[u8]) -> Option<()> {
    let mut b = body;
    while !b.is_empty() {
        let (precision, id) = (b[0] >> 4, usize::from(b[0] & 15));
        let table = q.get_mut(id)?;
        if precision == 0 {
            for (t, &v) in table.iter_mut().zip(b.get(1..65)?) {
                *t = u16::from(v);
            }
            b = &b[65..];
        } else {
            let values = b.get(1..129)?;
            for (t, v) in table.iter_mut().zip(values.chunks(2)) {
                *t = u16::from_be_bytes([v[0], v[1]]);
            }
            b = &b[129..];
        }
    }
    Some(())
}

/// A DHT segment's tables into `h.dc` / `h.ac`.
fn read_dht(h: &mut Headers, body: &[u8]) -> Option<()> {
    let mut b = body;
    while !b.is_empty() {
        let (class, id) = (b[0] >> 4, usize::from(b[0] & 15));
        let counts: [u8; 16] = b.get(1..17)?.try_into().ok()?;
        let n: usize = counts.iter().map(|&c| usize::from(c)).sum();
        let symbols = b.get(17..17 + n)?;
        let table = Huffman::new(&counts, symbols, class == 1)?;
        match class {
            0 => *h.dc.get_mut(id)? = Some(table),
            1 => *h.ac.get_mut(id)? = Some(table),
            _ => return None,
        }
        b = &b[17 + n..];
    }
    Some(())
}

/// A baseline or extended 8-bit frame header: width, height, components.
fn read_sof(jpeg: &[u8], at: usize, body: &[u8]) -> Option<(u32, u32, Vec<FrameComponent>)> {
    if body.len() < 6 || body[0] != 8 {
        return None;
    }
    let height = be16(jpeg, at + 3)? as u32;
    let width = be16(jpeg, at + 5)? as u32;
    let n = usize::from(body[5]);
    let mut comps = Vec::new();
    for c in body.get(6..6 + 3 * n)?.chunks(3) {
        let (h, v) = (u32::from(c[1] >> 4), u32::from(c[1] & 15));
        comps.push((c[0], h, v, usize::from(c[2])));
    }
    Some((width, height, comps))
}

/// Whether a frame's three components are YCbCr: by their ids (RGB and
/// libjpeg-turbo's "big gamut" spaces are not), or without JFIF by an
/// Adobe segment: jpeg-decoder's and libjpeg's order.
fn is_ycc(frame: &[FrameComponent], h: &Headers) -> bool {
    let ids = [frame[0].0, frame[1].0, frame[2].0];
    match ids {
        [1, 2, 3] => true,
        [82, 71, 66] | [114, 103, 98] | [1, 34, 35] => false,
        _ => h.jfif || h.adobe_transform != Some(0),
    }
}

/// The start of scan at `at` (segment length `len`, `body`): the frame it
/// decodes, with its entropy-coded data.
fn read_scan(
    jpeg: &[u8],
    at: usize,
    len: usize,
    body: &[u8],
    h: Headers,
    cut: bool,
) -> Option<Frame> {
    let (width, height, frame) = h.sof.clone()?;
    let n = frame.len();
    if width == 0 || height == 0 || !matches!(n, 1 | 3) {
        return None;
    }
    if n == 3 && !is_ycc(&frame, &h) {
        return None;
    }
    let ns = usize::from(*body.first()?);
    let spectral = body.get(1 + 2 * ns..4 + 2 * ns)?;
    if ns != n || spectral != [0, 63, 0] {
        return None;
    }
    let mut comps = Vec::with_capacity(n);
    for &(_, ch, cv, tq) in &frame {
        let (ch, cv) = if n == 1 { (1, 1) } else { (ch, cv) };
        if !matches!(ch, 1 | 2) || !matches!(cv, 1 | 2) {
            return None;
        }
        comps.push(Component {
            h: ch,
            v: cv,
            q: *h.q.get(tq)?,
        });
    }
    let hmax = comps.iter().map(|c| c.h).max()?;
    let vmax = comps.iter().map(|c| c.v).max()?;
    let blocks = scan_blocks(body.get(1..1 + 2 * ns)?, &frame, &comps, &h)?;
    let (data, bits, intervals) = unstuff(jpeg.get(at + len..)?)?;
    let (mcus_x, mcus_y) = (width.div_ceil(8 * hmax), height.div_ceil(8 * vmax));
    // One interval per `restart` MCUs, or the file is damaged (the usual
    // decoder says how).
    let total = mcus_x as usize * mcus_y as usize;
    let expected = if h.restart == 0 {
        1
    } else {
        total.div_ceil(h.restart)
    };
    if intervals.len() != expected && !(cut && intervals.len() < expected) {
        return None;
    }
    Some(Frame {
        width,
        height,
        mcus_x,
        mcus_y,
        restart: h.restart,
        intervals,
        comps,
        hmax,
        vmax,
        blocks,
        dc: h.dc,
        ac: h.ac,
        data,
        bits,
    })
}

/// The blocks of one MCU in scan order, from the scan's component
/// selectors (each naming tables that must exist); at most `MAX_BLOCKS`.
fn scan_blocks(
    selectors: &[u8],
    frame: &[FrameComponent],
    comps: &[Component],
    h: &Headers,
) -> Option<Vec<Block>> {
    let mut blocks = Vec::new();
    for s in selectors.chunks(2) {
        let comp = frame.iter().position(|f| f.0 == s[0])?;
        let (td, ta) = (usize::from(s[1] >> 4), usize::from(s[1] & 15));
        h.dc.get(td)?.as_ref()?;
        h.ac.get(ta)?.as_ref()?;
        let c = &comps[comp];
        for by in 0..c.v {
            for bx in 0..c.h {
                blocks.push(Block {
                    comp,
                    dc: td,
                    ac: ta,
                    bx,
                    by,
                });
            }
        }
    }
    if blocks.len() > MAX_BLOCKS {
        return None;
    }
    Some(blocks)
}

/// The entropy-coded data up to the next marker with its stuffed zero bytes
/// and restart markers removed, padded with zeros; its length in bits; and
/// where each restart interval begins. `None` if the RST markers are not
/// numbered 0, 1, … 7, 0, … in order.
fn unstuff(scan: &[u8]) -> Option<(Vec<u8>, usize, Vec<usize>)> {
    let mut out = Vec::with_capacity(scan.len() + 16);
    let mut intervals = vec![0];
    let mut i = 0;
    while let Some(p) = memchr::memchr(0xFF, &scan[i..]) {
        let at = i + p;
        out.extend_from_slice(&scan[i..at]);
        match scan.get(at + 1) {
            Some(0x00) => {
                out.push(0xFF);
                i = at + 2;
            }
            // Fill bytes before a marker.
            Some(0xFF) => i = at + 1,
            Some(&m @ 0xD0..=0xD7) => {
                if usize::from(m - 0xD0) != (intervals.len() - 1) % 8 {
                    return None;
                }
                intervals.push(out.len());
                i = at + 2;
            }
            _ => {
                i = scan.len();
                break;
            }
        }
    }
    out.extend_from_slice(&scan[i..]);
    let bits = out.len() * 8;
    out.resize(out.len() + 16, 0);
    Some((out, bits, intervals))
}

/// Which coefficients a reduced IDCT of `n`×`n` pixels per block uses:
/// for each zigzag position, its index in the block's `n`×`n` coefficients,
/// or `u8::MAX` for those it doesn't.
/// Positions past the block (a run too long, in a damaged stream) are
/// listed as not kept, so the decode loop needs no bounds check.
fn kept(n: usize) -> [u8; 80] {
    let mut keep = [u8::MAX; 80];
    for (k, &z) in ZIGZAG.iter().enumerate() {
        let (row, col) = (usize::from(z) / 8, usize::from(z) % 8);
        if row < n && col < n {
            keep[k] = (row * n + col) as u8;
        }
    }
    keep
}

/// The entropy decoder's fixed part.
struct Scan<'a> {
    frame: &'a Frame,
    keep: [u8; 80],
    /// Coefficients kept per block (`n`²) and per MCU.
    per_block: usize,
    per_mcu: usize,
    dc: Vec<&'a Huffman>,
    ac: Vec<&'a Huffman>,
}

/// What one thread decoded from its range.
#[derive(Default)]
struct Run {
    /// Kept coefficients (quantised), MCU after MCU; DC absolute but
    /// relative to predictors of 0 where the run started.
    coefs: Vec<i16>,
    /// Bit position of each MCU's start.
    starts: Vec<usize>,
    /// DC predictors at each MCU's start.
    preds: Vec<[i32; 3]>,
    /// MCUs that held a bit pattern that is no code or a run past the block.
    errors: Vec<usize>,
    /// State after the last MCU.
    pos: usize,
    pred: [i32; 3],
}

impl Run {
    fn count(&self) -> usize {
        self.starts.len()
    }
}

impl<'a> Scan<'a> {
    fn new(frame: &'a Frame, n: usize) -> Option<Scan<'a>> {
        let per_block = n * n;
        let mut dc = Vec::new();
        let mut ac = Vec::new();
        for b in &frame.blocks {
            dc.push(frame.dc.get(b.dc)?.as_ref()?);
            ac.push(frame.ac.get(b.ac)?.as_ref()?);
        }
        Some(Scan {
            frame,
            keep: kept(n),
            per_block,
            per_mcu: per_block * frame.blocks.len(),
            dc,
            ac,
        })
    }

    /// Decodes one MCU into `out` (zeroed, `per_mcu` long). Decodes garbage
    /// deterministically rather than stopping: a bit pattern that is no code
    /// ends its block after one bit, a run past the end of a block ends it;
    /// both make this an MCU with an error (`false`), as does reading past
    /// the end of the data.
    #[inline]
    fn mcu(&self, r: &mut Bits, pred: &mut [i32; 3], out: &mut [i16]) -> bool {
        let mut ok = true;
        for (i, block) in self.frame.blocks.iter().enumerate() {
            let out = &mut out[i * self.per_block..(i + 1) * self.per_block];
            // DC: a category, then that many bits of difference.
            let dc = self.dc[i];
            r.fill();
            let e = dc.fast[(r.buf >> (64 - LOOKUP)) as usize];
            let (size, len) = if e & 31 != 0 {
                (e >> 8 & 0xFF, e & 31)
            } else if let Some((s, len)) = dc.slow(r.buf) {
                (u32::from(s), len)
            } else {
                r.skip(1);
                ok = false;
                continue;
            };
            let size = size.min(16);
            let diff = if size == 0 {
                0
            } else {
                extend(((r.buf << len) >> (64 - size)) as u32, size)
            };
            r.skip(len + size);
            let p = &mut pred[block.comp];
            *p = p.wrapping_add(diff);
            out[0] = *p as i16;
            // AC: (zero run, size) symbols, then the value's bits.
            let ac = self.ac[i];
            let mut k = 1usize;
            while k < 64 {
                r.fill();
                let e = ac.fast[(r.buf >> (64 - LOOKUP)) as usize];
                if e & FAST_VALUE != 0 {
                    r.skip(e & 31);
                    k += (e >> 6 & 15) as usize;
                    let d = self.keep[k];
                    if d != u8::MAX {
                        out[usize::from(d)] = (e >> 16) as i16;
                    }
                    k += 1;
                    continue;
                }
                let (symbol, len) = if e & 31 != 0 {
                    ((e >> 8 & 0xFF) as u8, e & 31)
                } else if let Some(s) = ac.slow(r.buf) {
                    s
                } else {
                    r.skip(1);
                    ok = false;
                    break;
                };
                let (run, size) = (usize::from(symbol >> 4), u32::from(symbol & 15));
                if size == 0 {
                    r.skip(len);
                    if run == 15 {
                        k += 16;
                        continue;
                    }
                    k = 64; // end of block
                    break;
                }
                k += run;
                let value = extend(((r.buf << len) >> (64 - size)) as u32, size);
                r.skip(len + size);
                let d = self.keep[k];
                if d != u8::MAX {
                    out[usize::from(d)] = value as i16;
                }
                k += 1;
            }
            // A run past the last coefficient.
            ok &= k == 64;
        }
        // Reading past the data is a cut-off file, not zeros.
        ok && r.pos() <= self.frame.bits
    }

    /// Decodes the MCU at `r` onto the end of `run`, recording where it
    /// started, the predictors there, and whether it held an error.
    fn push_mcu(&self, r: &mut Bits, run: &mut Run) {
        run.starts.push(r.pos());
        run.preds.push(run.pred);
        let at = run.coefs.len();
        run.coefs.resize(at + self.per_mcu, 0);
        if !self.mcu(r, &mut run.pred, &mut run.coefs[at..]) {
            run.errors.push(run.count() - 1);
        }
    }

    /// Decodes MCUs from `run`'s state while `go` says so (asked before each
    /// MCU with its start position and how many the run has).
    fn decode(&self, run: &mut Run, mut go: impl FnMut(usize, usize) -> bool) {
        let mut r = Bits::at(&self.frame.data, run.pos);
        while go(r.pos(), run.count()) {
            self.push_mcu(&mut r, run);
        }
        run.pos = r.pos();
    }

    /// Decodes the MCUs `mcus` (starting at a restart interval) of a file
    /// with restart intervals: at each interval the predictors reset and
    /// the bits start at its first byte; the interval before must have
    /// ended in the byte before it.
    fn decode_intervals(&self, run: &mut Run, mcus: Range<usize>) {
        let (restart, intervals) = (self.frame.restart, &self.frame.intervals);
        let mut r = Bits::at(&self.frame.data, 0);
        for g in mcus.clone() {
            if g % restart == 0 {
                let at = intervals[g / restart];
                if g != mcus.start && r.pos().div_ceil(8) != at {
                    run.errors.push(run.count());
                }
                r = Bits::at(&self.frame.data, at * 8);
                run.pred = [0; 3];
            }
            self.push_mcu(&mut r, run);
        }
        // The last interval of the range ends where the next one begins.
        let end = intervals.get(mcus.end.div_ceil(restart)).copied();
        if mcus.end % restart == 0 && end.is_some_and(|end| r.pos().div_ceil(8) != end) {
            run.errors.push(run.count());
        }
        run.pos = r.pos();
    }
}

/// A big-endian bit reader with the next bits at the top of a register,
/// refilled 7 bytes at a time (Giesen's "variant 4"), so a symbol's decode
/// waits for one table lookup, not a load from memory.
struct Bits<'a> {
    data: &'a [u8],
    /// Byte the next refill loads from.
    next: usize,
    buf: u64,
    /// Valid bits at the top of `buf`.
    count: u32,
}

impl<'a> Bits<'a> {
    fn at(data: &'a [u8], pos: usize) -> Bits<'a> {
        let mut r = Bits {
            data,
            next: pos / 8,
            buf: 0,
            count: 0,
        };
        r.refill();
        r.skip((pos % 8) as u32);
        r
    }

    /// Bit position of the next unread bit.
    #[inline(always)]
    fn pos(&self) -> usize {
        self.next * 8 - self.count as usize
    }

    #[inline(always)]
    fn refill(&mut self) {
        let word = match self.data.get(self.next..self.next + 8) {
            Some(w) => u64::from_be_bytes(w.try_into().unwrap_or([0; 8])),
            None => 0, // past the end (and its padding): zeros
        };
        self.buf |= word >> self.count;
        self.next += ((63 - self.count) >> 3) as usize;
        self.count |= 56;
    }

    /// At least 32 valid bits: a code and its value's bits.
    #[inline(always)]
    fn fill(&mut self) {
        if self.count < 32 {
            self.refill();
        }
    }

    #[inline(always)]
    fn skip(&mut self, n: u32) {
        self.buf <<= n;
        self.count -= n;
    }
}

/// A stretch of the picture's MCUs taken from one run.
struct Segment {
    /// Global MCU indices.
    mcus: Range<usize>,
    run: usize,
    /// The run's index of the first of them.
    local: usize,
    /// Added to every DC value of the stretch, per component.
    dc: [i32; 3],
}

/// Decodes `jpeg` at the smallest DCT scale (1/2, 1/4 or 1/8) whose longer
/// side still covers `edge`, entropy decoding in up to `threads` ranges,
/// within `max_bytes` of memory (see [`memory_bound`]). `None` when this
/// module can't (see the module doc); the caller then decodes the file the
/// usual way.
pub(crate) fn decode(jpeg: &[u8], edge: u32, threads: usize, max_bytes: u64) -> Option<Raster> {
    if threads < 2 {
        return None;
    }
    decode_within(jpeg, edge, threads, MIN_RANGE_BYTES, max_bytes)
}

/// The most memory a decode in `ranges` ranges of a picture of `total`
/// MCUs of `blocks` 8x8 blocks each, at scale `n`/8 into `w`×`h` pixels,
/// can hold: each range holding up to a whole picture's MCUs
/// (coefficients, an i16 each, and a start and predictors per MCU, with
/// the vectors' growth room), the sample planes and the RGB output. Not
/// counted: its copy of the entropy-coded data (the file's size at most).
pub(crate) fn memory_bound(total: u64, blocks: u64, n: u32, ranges: usize, w: u32, h: u32) -> u64 {
    let per_mcu = blocks * u64::from(n * n);
    let runs_bytes = ranges as u64 * total * (per_mcu * 2 + 20) * 2;
    let out_bytes = total * per_mcu + u64::from(w) * u64::from(h) * 3;
    runs_bytes + out_bytes
}

/// `decode` with any number of ranges, one included, and no memory bound.
#[cfg(test)]
fn decode_in(jpeg: &[u8], edge: u32, threads: usize) -> Option<Raster> {
    decode_within(jpeg, edge, threads, MIN_RANGE_BYTES, u64::MAX)
}

/// `decode_in` with ranges of at least `min_range_bytes` (down to 1) and a
/// memory bound of `max_bytes`: the fuzz targets split small inputs the way
/// big photos are split.
pub(super) fn decode_split(
    jpeg: &[u8],
    edge: u32,
    threads: usize,
    min_range_bytes: usize,
    max_bytes: u64,
) -> Option<Raster> {
    decode_within(jpeg, edge, threads, min_range_bytes, max_bytes)
}

/// `decode` with any number of ranges, one included, each of at least
/// `min_range_bytes`, within `max_bytes`.
fn decode_within(
    jpeg: &[u8],
    edge: u32,
    threads: usize,
    min_range_bytes: usize,
    max_bytes: u64,
) -> Option<Raster> {
    let frame = parse(jpeg)?;
    // jpeg-decoder's choice of scale (`idct::choose_idct_size`), so the
    // result is the size the one-piece decode would give.
    let scaled = |len: u32, n: u32| (len * n).div_ceil(8);
    let n = [1u32, 2, 4, 8]
        .into_iter()
        .find(|&n| scaled(frame.width, n) >= edge || scaled(frame.height, n) >= edge)
        .unwrap_or(8);
    if n == 8 {
        return None;
    }
    let scan = Scan::new(&frame, n as usize)?;
    let total = (frame.mcus_x * frame.mcus_y) as usize;
    let (w, h) = (scaled(frame.width, n), scaled(frame.height, n));
    let ranges = threads.clamp(1, frame.bits / 8 / min_range_bytes.max(1) + 1);
    let bound = memory_bound(total as u64, frame.blocks.len() as u64, n, ranges, w, h);
    if bound + frame.data.len() as u64 > max_bytes {
        return None;
    }
    let (runs, segments) = if frame.restart == 0 {
        let mut runs = entropy(&scan, total, ranges)?;
        let segments = stitch(&scan, &mut runs, total)?;
        (runs, segments)
    } else {
        by_intervals(&scan, total, ranges)?
    };
    let planes = idct(&scan, &runs, &segments, n as usize, threads)?;
    colour(&frame, &planes, w, h, threads)
}

/// How much of a cut-off baseline JPEG is there: its MCUs decoded in
/// order, from the start (and each restart interval's first byte), until
/// the data runs out or holds an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Whole {
    /// MCUs before the first that is not wholly in the data.
    pub mcus: usize,
    /// MCUs of the picture, and per MCU row.
    pub total: usize,
    pub mcus_x: usize,
    /// An MCU's size in pixels.
    pub mcu_w: u32,
    pub mcu_h: u32,
    /// Restart interval in MCUs (0: none).
    pub restart: usize,
}

/// [`Whole`] for the JPEG `jpeg`, which may end anywhere in its scan.
/// `None` for a file this module can't decode (see the module doc): its
/// cut can't be measured. One pass of the Huffman decoder, DC only.
pub(crate) fn whole_mcus(jpeg: &[u8]) -> Option<Whole> {
    let frame = parse_as(jpeg, true)?;
    let scan = Scan::new(&frame, 1)?;
    let total = (frame.mcus_x * frame.mcus_y) as usize;
    let restart = frame.restart;
    let mut r = Bits::at(&frame.data, 0);
    let (mut pred, mut out) = ([0i32; 3], vec![0i16; scan.per_mcu]);
    let mut mcus = total;
    for g in 0..total {
        if restart > 0 && g % restart == 0 {
            let Some(&at) = frame.intervals.get(g / restart) else {
                mcus = g;
                break;
            };
            r = Bits::at(&frame.data, at * 8);
            pred = [0; 3];
        }
        if !scan.mcu(&mut r, &mut pred, &mut out) {
            mcus = g;
            break;
        }
    }
    Some(Whole {
        mcus,
        total,
        mcus_x: frame.mcus_x as usize,
        mcu_w: 8 * frame.hmax,
        mcu_h: 8 * frame.vmax,
        restart,
    })
}

/// Phase 1: every range decoded on its own thread, the first from the true
/// start.
fn entropy(scan: &Scan, total: usize, ranges: usize) -> Option<Vec<Run>> {
    let bytes = scan.frame.bits / 8;
    let start = |i: usize| bytes * i / ranges * 8;
    let end_bits = scan.frame.bits;
    let mut runs: Vec<Run> = (0..ranges)
        .map(|i| Run {
            pos: start(i),
            ..Run::default()
        })
        .collect();
    let mut spawned = true;
    std::thread::scope(|s| {
        let mut rest = runs.iter_mut().enumerate();
        let (_, first) = rest.next().expect("one range");
        for (i, run) in rest {
            let stop = if i + 1 == ranges {
                end_bits
            } else {
                start(i + 1)
            };
            // No range holds more MCUs than the picture: a stream of
            // 2-bit MCUs must not make a small file cost gigabytes.
            spawned &= spawn(s, move || {
                scan.decode(run, |pos, count| pos < stop && count < total)
            });
        }
        let stop = if ranges == 1 { end_bits } else { start(1) };
        scan.decode(first, |pos, count| pos < stop && count < total);
    });
    spawned.then_some(runs)
}

/// Phases 1 and 2 for a file with restart intervals: the decoder state
/// resets at each, so ranges that begin at an interval need no guessing.
/// Each range takes a share of the intervals and decodes them exactly.
fn by_intervals(scan: &Scan, total: usize, ranges: usize) -> Option<(Vec<Run>, Vec<Segment>)> {
    let frame = scan.frame;
    let count = frame.intervals.len();
    let ranges = ranges.min(count);
    let first_mcu = |r: usize| (count * r / ranges * frame.restart).min(total);
    let mut runs: Vec<Run> = (0..ranges).map(|_| Run::default()).collect();
    let mut spawned = true;
    std::thread::scope(|s| {
        let mut all = runs.iter_mut().enumerate();
        let (_, mine) = all.next().expect("one range");
        for (r, run) in all {
            let mcus = first_mcu(r)..first_mcu(r + 1);
            spawned &= spawn(s, move || scan.decode_intervals(run, mcus));
        }
        scan.decode_intervals(mine, first_mcu(0)..first_mcu(1));
    });
    if !spawned || runs.iter().any(|r| !r.errors.is_empty()) {
        return None;
    }
    let segments = (0..ranges)
        .map(|r| Segment {
            mcus: first_mcu(r)..first_mcu(r + 1),
            run: r,
            local: 0,
            dc: [0; 3],
        })
        .collect();
    Some((runs, segments))
}

/// Runs `f` on a thread of `s`; `false` if the system had none to give.
fn spawn<'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    f: impl FnOnce() + Send + 'scope,
) -> bool {
    std::thread::Builder::new().spawn_scoped(s, f).is_ok()
}

/// Phase 2: each run continues into the next until it meets an MCU start
/// the next one recorded. Returns which run supplies which MCUs.
fn stitch(scan: &Scan, runs: &mut [Run], total: usize) -> Option<Vec<Segment>> {
    let mut segments = Vec::new();
    // The run being extended, where its stretch began, and its corrections.
    let (mut cur, mut local, mut base, mut dc) = (0usize, 0usize, 0usize, [0i32; 3]);
    loop {
        // Find the first run after `cur` whose record meets `cur`'s decode.
        let mut next = cur + 1;
        let mut met = None;
        while next < runs.len() && met.is_none() {
            let (left, right) = runs.split_at_mut(next);
            let (run, target) = (&mut left[cur], &right[0]);
            let mut i = 0;
            // Before decoding on: does an MCU start we already have match?
            let mut found = |run: &Run, from: usize| -> Option<(usize, usize)> {
                for c in from..run.count() {
                    let p = run.starts[c];
                    while i < target.count() && target.starts[i] < p {
                        i += 1;
                    }
                    if i < target.count() && target.starts[i] == p {
                        return Some((c, i));
                    }
                }
                None
            };
            let from = local
                .max(run.starts.partition_point(|&p| {
                    p < target.starts.first().copied().unwrap_or(usize::MAX)
                }));
            met = found(run, from);
            let limit = target.pos;
            while met.is_none() && run.pos < limit && base + run.count() - local < total {
                let before = run.count();
                scan.decode(run, |_, count| count == before);
                met = found(run, before);
            }
            if met.is_none() {
                next += 1;
            }
        }
        let run = &runs[cur];
        // A meeting past the picture's last MCU (junk after it in the
        // scan): `cur` supplies the rest on its own.
        let met = met.filter(|&(end, _)| base + end - local < total);
        let Some((end, j)) = met else {
            // `cur` decoded the rest of the picture itself.
            let need = total - base;
            if run.count() - local < need
                || run.errors.iter().any(|&e| e >= local && e < local + need)
            {
                return None;
            }
            segments.push(Segment {
                mcus: base..total,
                run: cur,
                local,
                dc,
            });
            return Some(segments);
        };
        if run.errors.iter().any(|&e| e >= local && e < end) {
            return None;
        }
        segments.push(Segment {
            mcus: base..base + end - local,
            run: cur,
            local,
            dc,
        });
        let pred = run.preds[end];
        let theirs = runs[next].preds[j];
        for c in 0..3 {
            dc[c] = pred[c].wrapping_add(dc[c]).wrapping_sub(theirs[c]);
        }
        base += end - local;
        local = j;
        cur = next;
    }
}

/// The reduced IDCT's basis: `m[x][u]` for `n`-point output.
fn basis(n: usize) -> [[f32; 4]; 4] {
    let mut m = [[0f32; 4]; 4];
    for (x, row) in m.iter_mut().enumerate().take(n) {
        for (u, v) in row.iter_mut().enumerate().take(n) {
            let c = if u == 0 {
                std::f32::consts::FRAC_1_SQRT_2
            } else {
                1.0
            };
            *v = 0.5
                * c
                * ((2 * x + 1) as f32 * u as f32 * std::f32::consts::PI / (2 * n) as f32).cos();
        }
    }
    m
}

/// One sample plane per component at the output scale (whole MCUs).
struct Plane {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

/// Phase 3: dequantise and inverse-transform every block into its
/// component's plane, in bands of MCU rows on `threads` threads.
fn idct(
    scan: &Scan,
    runs: &[Run],
    segments: &[Segment],
    n: usize,
    threads: usize,
) -> Option<Vec<Plane>> {
    let frame = scan.frame;
    let mut planes: Vec<Plane> = frame
        .comps
        .iter()
        .map(|c| {
            let width = frame.mcus_x as usize * c.h as usize * n;
            let height = frame.mcus_y as usize * c.v as usize * n;
            Plane {
                width,
                height,
                data: vec![0; width * height],
            }
        })
        .collect();
    // Dequantisation factors in the order the coefficients are kept.
    let keep = kept(n);
    let quant: Vec<Vec<f32>> = frame
        .comps
        .iter()
        .map(|c| {
            let mut q = vec![0f32; n * n];
            for (k, &d) in keep.iter().enumerate() {
                if d != u8::MAX {
                    q[usize::from(d)] = f32::from(c.q[k]);
                }
            }
            q
        })
        .collect();
    let m = basis(n);
    let rows = frame.mcus_y as usize;
    let mut spawned = true;
    let bands = threads.clamp(1, rows);
    // Each band's rows of every plane.
    let mut slices: Vec<Vec<&mut [u8]>> = (0..bands).map(|_| Vec::new()).collect();
    for (c, plane) in planes.iter_mut().enumerate() {
        let row_bytes = plane.width * frame.comps[c].v as usize * n;
        let mut rest: &mut [u8] = &mut plane.data;
        for (b, band) in slices.iter_mut().enumerate() {
            let count = rows * (b + 1) / bands - rows * b / bands;
            let (mine, tail) = rest.split_at_mut(count * row_bytes);
            band.push(mine);
            rest = tail;
        }
    }
    std::thread::scope(|s| {
        for (b, mut band) in slices.into_iter().enumerate() {
            let (quant, m) = (&quant, &m);
            let first = rows * b / bands;
            let last = rows * (b + 1) / bands;
            let mut work = move || {
                let mcus_x = frame.mcus_x as usize;
                let mut seg = 0;
                for my in first..last {
                    for mx in 0..mcus_x {
                        let g = my * mcus_x + mx;
                        while segments[seg].mcus.end <= g {
                            seg += 1;
                        }
                        let sg = &segments[seg];
                        let at = (sg.local + g - sg.mcus.start) * scan.per_mcu;
                        let coefs = &runs[sg.run].coefs[at..at + scan.per_mcu];
                        for (i, block) in frame.blocks.iter().enumerate() {
                            let c = block.comp;
                            let comp = &frame.comps[c];
                            let width = mcus_x * comp.h as usize * n;
                            let x0 = (mx * comp.h as usize + block.bx as usize) * n;
                            let y0 = ((my - first) * comp.v as usize + block.by as usize) * n;
                            let mut f = [0f32; 16];
                            let src = &coefs[i * scan.per_block..(i + 1) * scan.per_block];
                            for (j, (&v, &q)) in src.iter().zip(&quant[c]).enumerate() {
                                f[j] = f32::from(v) * q;
                            }
                            // DC modulo 2^16: right whatever a speculative
                            // run's predictors drifted to before it synced.
                            let dc = i32::from(src[0]).wrapping_add(sg.dc[c]) as i16;
                            f[0] = f32::from(dc) * quant[c][0];
                            block_idct(&f, n, m, &mut band[c][y0 * width + x0..], width);
                        }
                    }
                }
            };
            if b + 1 == bands {
                work();
            } else {
                spawned &= spawn(s, work);
            }
        }
    });
    spawned.then_some(planes)
}

/// `n`×`n` pixels from `n`×`n` dequantised coefficients (row-major).
#[inline]
fn block_idct(f: &[f32; 16], n: usize, m: &[[f32; 4]; 4], out: &mut [u8], stride: usize) {
    let px = |v: f32| (v + 128.5).clamp(0.0, 255.0) as u8;
    match n {
        1 => out[0] = px(f[0] / 8.0),
        // Both basis functions are ±1/(2√2) at the two sample points: the
        // four pixels are sums and differences of the four coefficients.
        2 => {
            let (a, b) = (f[0] + f[2], f[0] - f[2]);
            let (c, d) = (f[1] + f[3], f[1] - f[3]);
            out[0] = px((a + c) / 8.0);
            out[1] = px((a - c) / 8.0);
            out[stride] = px((b + d) / 8.0);
            out[stride + 1] = px((b - d) / 8.0);
        }
        _ => {
            // Rows: tmp[v][x] = Σu f[v][u] m[x][u]; then columns.
            let mut tmp = [0f32; 16];
            for v in 0..n {
                for x in 0..n {
                    let mut s = 0.0;
                    for u in 0..n {
                        s += f[v * n + u] * m[x][u];
                    }
                    tmp[v * n + x] = s;
                }
            }
            for y in 0..n {
                let row = &mut out[y * stride..y * stride + n];
                for (x, o) in row.iter_mut().enumerate() {
                    let mut s = 0.0;
                    for v in 0..n {
                        s += m[y][v] * tmp[v * n + x];
                    }
                    *o = px(s);
                }
            }
        }
    }
}

/// Phase 4: upsample chroma and convert to RGB, in bands of rows.
fn colour(frame: &Frame, planes: &[Plane], w: u32, h: u32, threads: usize) -> Option<Raster> {
    let (w, h) = (w as usize, h as usize);
    let mut spawned = true;
    let mut data = vec![0u8; w * h * 3];
    let bands = threads.clamp(1, h);
    let mut rest: &mut [u8] = &mut data;
    let mut parts = Vec::new();
    for b in 0..bands {
        let count = h * (b + 1) / bands - h * b / bands;
        let (mine, tail) = rest.split_at_mut(count * w * 3);
        parts.push((h * b / bands, mine));
        rest = tail;
    }
    std::thread::scope(|s| {
        let count = parts.len();
        for (i, (y0, out)) in parts.into_iter().enumerate() {
            let mut work = move || {
                let mut rows: Vec<Vec<u16>> = planes.iter().map(|_| vec![0u16; w]).collect();
                let mut scratch = Vec::new();
                for (dy, line) in out.chunks_exact_mut(w * 3).enumerate() {
                    let y = y0 + dy;
                    for ((plane, comp), row) in planes.iter().zip(&frame.comps).zip(&mut rows) {
                        let (fx, fy) = (frame.hmax / comp.h, frame.vmax / comp.v);
                        upsample_row(plane, y, fx, fy, &mut scratch, row);
                    }
                    if let [l] = &rows[..] {
                        for (o, &l) in line.chunks_exact_mut(3).zip(l) {
                            let v = ((l + 8) >> 4) as u8;
                            o.copy_from_slice(&[v, v, v]);
                        }
                    } else if let [y, cb, cr] = &rows[..] {
                        for (o, ((&y, &cb), &cr)) in
                            line.chunks_exact_mut(3).zip(y.iter().zip(cb).zip(cr))
                        {
                            o.copy_from_slice(&ycc_to_rgb(y, cb, cr));
                        }
                    }
                }
            };
            if i + 1 == count {
                work();
            } else {
                spawned &= spawn(s, work);
            }
        }
    });
    spawned.then_some(Raster {
        width: w as u32,
        height: h as u32,
        alpha: false,
        data,
    })
}

/// Output row `y` of a plane upsampled by `fx`×`fy` (1 or 2) with libjpeg's
/// "fancy" triangle filter (¾ of the nearer sample, ¼ of the next; edges
/// repeated), in 1/16ths.
fn upsample_row(plane: &Plane, y: usize, fx: u32, fy: u32, v: &mut Vec<u16>, out: &mut [u16]) {
    let row = |r: usize| &plane.data[r.min(plane.height - 1) * plane.width..][..plane.width];
    v.clear();
    if fy == 2 {
        let i = y / 2;
        let j = if y % 2 == 0 {
            i.saturating_sub(1)
        } else {
            i + 1
        };
        v.extend(
            row(i)
                .iter()
                .zip(row(j))
                .map(|(&a, &b)| 3 * u16::from(a) + u16::from(b)),
        );
    } else {
        v.extend(row(y).iter().map(|&a| 4 * u16::from(a)));
    }
    let last = v.len() - 1;
    if fx == 2 {
        for (i, pair) in out.chunks_mut(2).enumerate() {
            let c = 3 * v[i];
            pair[0] = c + v[i.saturating_sub(1)];
            if let Some(o) = pair.get_mut(1) {
                *o = c + v[(i + 1).min(last)];
            }
        }
    } else {
        for (o, &a) in out.iter_mut().zip(v.iter()) {
            *o = 4 * a;
        }
    }
}

/// JFIF YCbCr (in 1/16ths) to RGB.
#[inline]
fn ycc_to_rgb(y: u16, cb: u16, cr: u16) -> [u8; 3] {
    // 16.16 fixed point on values scaled by 16.
    let y = i32::from(y) << 12;
    let cb = i32::from(cb) - 128 * 16;
    let cr = i32::from(cr) - 128 * 16;
    let half = 1 << 15;
    let c = |v: i32| ((v + half) >> 16).clamp(0, 255) as u8;
    [
        c(y + 5743 * cr),
        c(y - 1410 * cb - 2925 * cr),
        c(y + 7258 * cb),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

    /// A photo-like JPEG: gradients, fine detail and noise, so that the
    /// entropy-coded data is long and uses long codes too. (jpeg-encoder
    /// writes optimised Huffman tables only in one scan per component,
    /// which this module leaves alone; ffmpeg's are tested below.)
    fn jpeg(w: u16, h: u16, gray: bool, sampling: Option<SamplingFactor>) -> Vec<u8> {
        let channels = if gray { 1 } else { 3 };
        let mut px = Vec::with_capacity(usize::from(w) * usize::from(h) * channels);
        let mut seed = 0x2545_f491_u32;
        for y in 0..u32::from(h) {
            for x in 0..u32::from(w) {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let noise = seed % 24;
                let v = [
                    ((x * 255 / u32::from(w)) + noise).min(255) as u8,
                    ((y * 255 / u32::from(h)) + noise / 2).min(255) as u8,
                    (((x / 3) ^ (y / 5)) & 0xFF) as u8,
                ];
                px.extend_from_slice(&v[..channels]);
            }
        }
        let mut out = Vec::new();
        let mut enc = Encoder::new(&mut out, 90);
        if let Some(f) = sampling {
            enc.set_sampling_factor(f);
        }
        let ct = if gray {
            ColorType::Luma
        } else {
            ColorType::Rgb
        };
        enc.encode(&px, w, h, ct).unwrap();
        out
    }

    /// jpeg-decoder's one-piece decode at the same scale.
    fn reference(data: &[u8], edge: u32) -> Raster {
        super::super::jpegscale::decode_scaled(data, edge, u64::MAX).unwrap()
    }

    /// Mean and largest difference per channel value.
    fn difference(a: &Raster, b: &Raster) -> (f64, u8) {
        assert_eq!((a.width, a.height), (b.width, b.height));
        let mut sum = 0u64;
        let mut max = 0u8;
        for (x, y) in a.data.iter().zip(&b.data) {
            let d = x.abs_diff(*y);
            sum += u64::from(d);
            max = max.max(d);
        }
        (sum as f64 / a.data.len() as f64, max)
    }

    /// The same picture as jpeg-decoder's, to rounding, for every chroma
    /// layout, odd sizes, grey, standard and optimised Huffman tables, and
    /// every scale this module does.
    #[test]
    fn decodes_like_jpeg_decoder() {
        use SamplingFactor as F;
        let layouts = [
            (Some(F::F_2_2), false, "4:2:0"),
            (Some(F::F_2_1), false, "4:2:2"),
            (Some(F::F_1_2), false, "4:4:0"),
            (Some(F::F_1_1), false, "4:4:4"),
            (None, true, "grey"),
        ];
        for (sampling, gray, name) in layouts {
            for (w, h) in [(640u16, 480u16), (1003, 755), (333, 1001)] {
                let data = jpeg(w, h, gray, sampling);
                let long = u32::from(w.max(h));
                for edge in [long / 2, long / 4, long / 8, 20] {
                    let got = decode_in(&data, edge, 1)
                        .unwrap_or_else(|| panic!("{name} {w}x{h} edge {edge}: not decoded"));
                    let want = reference(&data, edge);
                    let (mean, max) = difference(&got, &want);
                    assert!(
                        mean < 1.2 && max <= 6,
                        "{name} {w}x{h} edge {edge}: mean {mean:.3}, max {max}"
                    );
                }
            }
        }
    }

    /// Decoded in ranges on several threads: exactly the pixels of a
    /// decode from the start alone, whatever the number of ranges.
    #[test]
    fn ranges_decode_to_the_same_pixels() {
        use SamplingFactor as F;
        for (w, h, sampling, gray) in [
            (2000u16, 1500u16, Some(F::F_2_2), false),
            (1601, 1203, Some(F::F_1_1), false),
            (1500, 2001, None, true),
            (1999, 1333, Some(F::F_2_1), false),
        ] {
            let data = jpeg(w, h, gray, sampling);
            for edge in [800, 400, 100] {
                let one = decode_in(&data, edge, 1).expect("decoded");
                for threads in 2..=5 {
                    // Every range synchronised with the one before: each
                    // supplies a stretch of the picture.
                    let frame = parse(&data).unwrap();
                    let scan = Scan::new(&frame, 2).unwrap();
                    let total = (frame.mcus_x * frame.mcus_y) as usize;
                    let mut runs = entropy(&scan, total, threads).unwrap();
                    let segments = stitch(&scan, &mut runs, total).unwrap();
                    assert_eq!(
                        segments.len(),
                        threads,
                        "{w}x{h}: ranges that never synchronised"
                    );
                    let got = decode_in(&data, edge, threads).expect("decoded");
                    assert!(
                        got == one,
                        "{w}x{h} edge {edge}, {threads} ranges: pixels differ"
                    );
                }
            }
        }
    }

    /// What ffmpeg (libavcodec) writes: optimised Huffman tables, 4:2:0 and
    /// 4:2:2. Same pixels in ranges as from the start, and like
    /// jpeg-decoder's.
    #[test]
    fn ffmpeg_jpegs_with_optimised_tables() {
        let dir = tempfile::tempdir().unwrap();
        for pix in ["yuvj420p", "yuvj422p"] {
            let path = dir.path().join(format!("{pix}.jpg"));
            let ok = std::process::Command::new(crate::media::process::ffmpeg_path())
                .args([
                    "-hide_banner",
                    "-loglevel",
                    "error",
                    "-y",
                    "-f",
                    "lavfi",
                    "-i",
                ])
                .arg("testsrc2=size=2000x1500,noise=alls=12:allf=t")
                .args(["-frames:v", "1", "-q:v", "3", "-pix_fmt", pix])
                .arg(&path)
                .status()
                .unwrap()
                .success();
            assert!(ok, "ffmpeg");
            let data = std::fs::read(&path).unwrap();
            let one = decode_in(&data, 500, 1).expect("decoded");
            for threads in [2, 3] {
                let got = decode_in(&data, 500, threads).expect("decoded");
                assert!(got == one, "{pix}, {threads} ranges: pixels differ");
            }
            let (mean, max) = difference(&one, &reference(&data, 500));
            assert!(mean < 1.2 && max <= 6, "{pix}: mean {mean:.3}, max {max}");
        }
    }

    /// The thumbnail decoder takes this path for a big plain JPEG.
    #[test]
    fn the_thumbnail_decoder_uses_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.jpg");
        let data = jpeg(1600, 1200, false, Some(SamplingFactor::F_2_2));
        std::fs::write(&path, &data).unwrap();
        let level = crate::model::ThumbLevel::Screen;
        let got = super::super::jpegscale::decode_path(&path, level, 2)
            .unwrap()
            .expect("decoded");
        let want = decode_in(&data, level.max_edge_px(), 2).expect("decoded");
        assert!(got == want, "not this module's pixels");
    }

    /// A JPEG with restart intervals of `restart` MCUs.
    fn with_restarts(w: u16, h: u16, restart: u16, sampling: SamplingFactor) -> Vec<u8> {
        let plain = jpeg(w, h, false, Some(sampling));
        let img = jpeg_decoder::Decoder::new(plain.as_slice())
            .decode()
            .unwrap();
        let mut out = Vec::new();
        let mut enc = Encoder::new(&mut out, 90);
        enc.set_restart_interval(restart);
        enc.set_sampling_factor(sampling);
        enc.encode(&img, w, h, ColorType::Rgb).unwrap();
        out
    }

    /// With restart intervals, ranges start at intervals (no guessing):
    /// the same pixels from any number of ranges, like jpeg-decoder's, for
    /// intervals that do and don't divide a row or the picture.
    #[test]
    fn restart_intervals_split_exactly() {
        use SamplingFactor as F;
        for (w, h, restart, f) in [
            (1600u16, 1200u16, 100u16, F::F_2_2),
            (1999, 1333, 7, F::F_2_2),
            (1203, 1001, 1, F::F_1_1),
            (1500, 1000, 333, F::F_2_1),
        ] {
            let data = with_restarts(w, h, restart, f);
            for edge in [600, 300] {
                let one = decode_in(&data, edge, 1).expect("decoded");
                let (mean, max) = difference(&one, &reference(&data, edge));
                assert!(
                    mean < 1.2 && max <= 6,
                    "{w}x{h} ri {restart}: mean {mean:.3}, max {max}"
                );
                for threads in [2, 3, 4] {
                    let got = decode_in(&data, edge, threads).expect("decoded");
                    assert!(
                        got == one,
                        "{w}x{h} ri {restart}, {threads} ranges: pixels differ"
                    );
                }
            }
        }
        // A restart marker missing or misnumbered: left to the usual decoder.
        let data = with_restarts(1600, 1200, 10, F::F_2_2);
        let rst = data
            .windows(2)
            .position(|w| w[0] == 0xFF && (0xD0..=0xD7).contains(&w[1]))
            .unwrap();
        let mut missing = data.clone();
        missing.drain(rst..rst + 2);
        let mut misnumbered = data.clone();
        misnumbered[rst + 1] = 0xD5;
        for bad in [missing, misnumbered] {
            for threads in [1, 2] {
                assert!(decode_in(&bad, 400, threads).is_none());
            }
        }
    }

    /// The offset of the first `marker` segment (its 0xFF).
    fn segment(data: &[u8], marker: u8) -> usize {
        data.windows(2).position(|w| w == [0xFF, marker]).unwrap()
    }

    /// RGB by its component ids (what libjpeg writes for RGB): not YCbCr,
    /// so left to jpeg-decoder, whatever a JFIF segment says.
    #[test]
    fn rgb_by_component_ids_is_left_to_the_usual_decoder() {
        let mut data = jpeg(1200, 900, false, Some(SamplingFactor::F_1_1));
        assert!(decode_in(&data, 300, 2).is_some());
        let sof = segment(&data, 0xC0);
        let sos = segment(&data, 0xDA);
        for (i, id) in [82u8, 71, 66].into_iter().enumerate() {
            data[sof + 10 + 3 * i] = id;
            data[sos + 5 + 2 * i] = id;
        }
        assert!(jpeg_decoder::Decoder::new(data.as_slice()).decode().is_ok());
        assert!(decode_in(&data, 300, 2).is_none());
    }

    /// A second frame header (the size checks before this module read the
    /// first one): refused.
    #[test]
    fn a_second_frame_header_is_refused() {
        let data = jpeg(1200, 900, false, Some(SamplingFactor::F_2_2));
        let sof = segment(&data, 0xC0);
        let len = usize::from(u16::from_be_bytes([data[sof + 2], data[sof + 3]]));
        let sos = segment(&data, 0xDA);
        let mut two = data[..sos].to_vec();
        let mut big = data[sof..sof + 2 + len].to_vec();
        big[5..9].copy_from_slice(&[0xFF, 0xF0, 0xFF, 0xF0]);
        two.extend_from_slice(&big);
        two.extend_from_slice(&data[sos..]);
        assert!(parse(&data).is_some());
        assert!(parse(&two).is_none());
        assert!(decode_in(&two, 300, 2).is_none());
    }

    /// A stream of 2-bit MCUs (one-code Huffman tables) far longer than the
    /// picture: no range records more MCUs than the picture has, so a small
    /// file can't cost gigabytes.
    #[test]
    fn no_range_holds_more_than_the_picture() {
        let mut f = vec![0xFF, 0xD8];
        f.extend_from_slice(&[0xFF, 0xDB, 0, 67, 0]);
        f.extend_from_slice(&[1; 64]);
        f.extend_from_slice(&[0xFF, 0xC0, 0, 11, 8, 4, 0, 8, 0, 1, 1, 0x11, 0]);
        for class in [0x00, 0x10] {
            f.extend_from_slice(&[0xFF, 0xC4, 0, 20, class, 1]);
            f.extend_from_slice(&[0; 15]);
            f.push(0); // the one symbol: DC category 0, or end of block
        }
        f.extend_from_slice(&[0xFF, 0xDA, 0, 8, 1, 1, 0x00, 0, 63, 0]);
        f.extend(std::iter::repeat_n(0u8, 1 << 20));
        f.extend_from_slice(&[0xFF, 0xD9]);
        let frame = parse(&f).expect("parsed");
        let total = (frame.mcus_x * frame.mcus_y) as usize;
        assert_eq!(total, 256 * 128);
        let scan = Scan::new(&frame, 1).unwrap();
        let runs = entropy(&scan, total, 3).unwrap();
        for run in &runs {
            assert!(run.count() <= total, "{} MCUs recorded", run.count());
        }
    }

    /// Damaged and unsupported files: `None` (the usual decoder then
    /// reports or conceals the damage), never a panic, never a picture made
    /// up from a cut-off stream.
    #[test]
    fn damaged_or_unsupported_files_are_left_to_the_usual_decoder() {
        let data = jpeg(1200, 900, false, Some(SamplingFactor::F_2_2));
        let scan_end = data.len() - 2;
        // Cut short anywhere in the entropy-coded data.
        for cut in [scan_end / 2, scan_end * 3 / 4, scan_end - 100] {
            let mut cut_off = data[..cut].to_vec();
            cut_off.extend_from_slice(&[0xFF, 0xD9]);
            for threads in [1, 2, 3] {
                assert!(decode_in(&cut_off, 400, threads).is_none(), "cut at {cut}");
            }
        }
        // Headers only, garbage, nothing.
        for bad in [&data[..200], b"not a jpeg at all".as_slice(), &[]] {
            assert!(decode_in(bad, 400, 2).is_none());
        }
        // Flipped bytes: no panic whatever comes out.
        let mut seed = 7u32;
        for _ in 0..50 {
            let mut d = data.clone();
            for _ in 0..8 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let at = 600 + (seed as usize >> 8) % (d.len() - 602);
                d[at] ^= (seed >> 3) as u8 | 1;
            }
            let _ = decode_in(&d, 400, 2);
        }
        // Progressive and full-scale decodes are the usual decoder's.
        let mut out = Vec::new();
        let mut enc = Encoder::new(&mut out, 90);
        enc.set_progressive(true);
        enc.encode(&vec![128u8; 640 * 480 * 3], 640, 480, ColorType::Rgb)
            .unwrap();
        assert!(decode_in(&out, 200, 2).is_none(), "progressive");
        assert!(decode_in(&data, 1200, 2).is_none(), "full scale");
        assert!(
            decode(&data, 400, 1, u64::MAX).is_none(),
            "one thread: not this module's job"
        );
    }
}

#[cfg(test)]
mod fuzz {
    /// A photo-like `w`×`h` 4:2:0 JPEG with a restart interval of 5 MCUs
    /// (the layout this module splits at).
    fn with_restarts(w: u16, h: u16) -> Vec<u8> {
        let px: Vec<u8> = (0..usize::from(w) * usize::from(h) * 3)
            .map(|i| (i * 7 % 251) as u8 ^ (i / 4801) as u8)
            .collect();
        let mut out = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
        enc.set_restart_interval(5);
        enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
        enc.encode(&px, w, h, jpeg_encoder::ColorType::Rgb).unwrap();
        out
    }

    /// `rounds` damaged variants of each of `files` (bytes overwritten, the
    /// file cut short, a run of bytes removed, in turn, from a fixed seed),
    /// each decoded in every `(edge, threads)` shape: returns only if none
    /// panics.
    fn damage(files: &[Vec<u8>], rounds: usize, shapes: &[(u32, usize)]) {
        let mut seed = 0x9e37_79b9_u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as usize
        };
        for data in files {
            for round in 0..rounds {
                let mut d = data.clone();
                match round % 3 {
                    0 => {
                        for _ in 0..1 + next() % 16 {
                            let at = next() % d.len();
                            d[at] = next() as u8;
                        }
                    }
                    1 => d.truncate(next() % d.len()),
                    _ => {
                        let at = next() % d.len();
                        let len = (next() % 4096).min(d.len() - at);
                        d.drain(at..at + len);
                    }
                }
                for &(edge, threads) in shapes {
                    let _ = super::decode_in(&d, edge, threads);
                }
            }
        }
    }

    /// The short loop that runs with every `cargo test`: a small file with
    /// restart intervals, which this module splits (checked first, so the
    /// damage reaches the split decoder rather than an early refusal), 240
    /// damaged variants in four shapes. The long loop below is the same
    /// with a bigger file, more rounds and files of one's own.
    #[test]
    fn damaged_streams_never_panic_short() {
        let data = with_restarts(480, 320);
        let shapes = [(240, 2), (120, 3), (60, 4), (480, 1)];
        for &(edge, threads) in &shapes[..3] {
            assert!(
                super::decode_in(&data, edge, threads).is_some(),
                "undamaged file split at edge {edge}, {threads} threads"
            );
        }
        damage(&[data], 240, &shapes);
    }

    /// Many damaged variants of a few files, every decode shape: no panic
    /// (release builds abort on one). `cargo test --release -- --ignored fuzz`
    /// (`JPEGS=a.jpg:b.jpg` adds files, `ROUNDS=` sets the rounds).
    #[test]
    #[ignore = "slow; run by hand after changing the decoder"]
    fn damaged_streams_never_panic() {
        let mut files: Vec<Vec<u8>> = std::env::var("JPEGS")
            .unwrap_or_default()
            .split(':')
            .filter(|p| !p.is_empty())
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        // And one with restart intervals.
        let restart = with_restarts(1600, 1200);
        assert!(super::decode_in(&restart, 400, 2).is_some());
        files.push(restart);
        let rounds: usize = std::env::var("ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(200);
        damage(&files, rounds, &[(800, 2), (200, 3), (1500, 1), (100, 4)]);
    }
}
