//! The headers before the only scan (DQT, DHT, SOF, DRI, JFIF/Adobe) read
//! into the `Frame` the decode needs, refusing any layout this module
//! doesn't decode, and the scan's entropy-coded data unstuffed.

use super::huffman::Huffman;

/// Most blocks in one MCU the standard allows.
const MAX_BLOCKS: usize = 10;

/// One block of an MCU: its component and tables.
#[derive(Clone, Copy)]
pub(super) struct Block {
    pub(super) comp: usize,
    pub(super) dc: usize,
    pub(super) ac: usize,
    /// Position inside the component's blocks of this MCU.
    pub(super) bx: u32,
    pub(super) by: u32,
}

pub(super) struct Component {
    pub(super) h: u32,
    pub(super) v: u32,
    /// Quantisation table, zigzag order.
    pub(super) q: [u16; 64],
}

/// What the decode needs from the headers, and the unstuffed entropy data.
pub(super) struct Frame {
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) comps: Vec<Component>,
    pub(super) hmax: u32,
    pub(super) vmax: u32,
    pub(super) mcus_x: u32,
    pub(super) mcus_y: u32,
    pub(super) blocks: Vec<Block>,
    pub(super) dc: Vec<Option<Huffman>>,
    pub(super) ac: Vec<Option<Huffman>>,
    /// Entropy-coded bytes with the stuffing removed, then zero padding.
    pub(super) data: Vec<u8>,
    pub(super) bits: usize,
    /// Restart interval in MCUs (0: none), and where each interval's
    /// bytes begin in `data` (the RST markers removed).
    pub(super) restart: usize,
    pub(super) intervals: Vec<usize>,
}

/// A frame header's component: id, sampling factors, quantisation table.
pub(super) type FrameComponent = (u8, u32, u32, usize);

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
pub(super) fn parse(jpeg: &[u8]) -> Option<Frame> {
    parse_as(jpeg, false)
}

/// [`parse`], of a file that may be cut off (`cut`): then fewer restart
/// intervals than the frame needs are no damage.
pub(super) fn parse_as(jpeg: &[u8], cut: bool) -> Option<Frame> {
    let mut h = Headers {
        q: [[0u16; 64]; 4],
        dc: (0..4).map(|_| None).collect(),
        ac: (0..4).map(|_| None).collect(),
        sof: None,
        adobe_transform: None,
        jfif: false,
        restart: 0,
    };
    for (marker, at, len) in super::super::jpegwalk::segments(jpeg) {
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
