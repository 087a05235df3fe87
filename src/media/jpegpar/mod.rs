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
//!
//! Here: `frame` reads the headers, `huffman` the tables, `scan` decodes
//! MCUs, `ranges` runs phases 1–2 (decode in ranges, stitch), `pixels`
//! phases 3–4 (IDCT, upsampling, colour).

use super::raster::Raster;
use frame::{parse, parse_as};
use pixels::{colour, idct};
use ranges::{by_intervals, entropy, stitch};
use scan::{Bits, Scan};

mod frame;
#[cfg(test)]
mod fuzz;
mod huffman;
mod pixels;
mod ranges;
mod scan;
#[cfg(test)]
mod tests;

/// Fewest bytes of entropy-coded data per thread for a split to pay.
const MIN_RANGE_BYTES: usize = 64 * 1024;

/// Decodes `jpeg` at the smallest DCT scale (1/2, 1/4 or 1/8) whose longer
/// side still covers `edge`, entropy decoding in up to `threads` ranges,
/// within `max_bytes` of memory (see [`memory_bound`]). `None` when this
/// module can't (see the module doc); the caller then decodes the file the
/// usual way.
pub(crate) fn decode(jpeg: &[u8], edge: u32, threads: usize, max_bytes: u64) -> Option<Raster> {
    if threads < 2 {
        return None;
    }
    decode_split(jpeg, edge, threads, MIN_RANGE_BYTES, max_bytes)
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
    decode_split(jpeg, edge, threads, MIN_RANGE_BYTES, u64::MAX)
}

/// `decode` with any number of ranges, one included, each of at least
/// `min_range_bytes` (down to 1), within `max_bytes`: the fuzz targets
/// split small inputs the way big photos are split.
pub(super) fn decode_split(
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
