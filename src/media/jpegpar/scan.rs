//! The entropy decoder: one MCU at a time from any bit position, garbage
//! in garbage out but never a panic, recording where each MCU began and
//! the DC predictors there (what the ranges are stitched by).

use super::frame::Frame;
use super::huffman::{extend, Huffman, FAST_VALUE, LOOKUP};
use std::ops::Range;

/// Natural (row-major) index of the coefficient at each zigzag position.
const ZIGZAG: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// Which coefficients a reduced IDCT of `n`×`n` pixels per block uses:
/// for each zigzag position, its index in the block's `n`×`n` coefficients,
/// or `u8::MAX` for those it doesn't.
/// Positions past the block (a run too long, in a damaged stream) are
/// listed as not kept, so the decode loop needs no bounds check.
pub(super) fn kept(n: usize) -> [u8; 80] {
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
pub(super) struct Scan<'a> {
    pub(super) frame: &'a Frame,
    pub(super) keep: [u8; 80],
    /// Coefficients kept per block (`n`²) and per MCU.
    pub(super) per_block: usize,
    pub(super) per_mcu: usize,
    pub(super) dc: Vec<&'a Huffman>,
    pub(super) ac: Vec<&'a Huffman>,
}

/// What one thread decoded from its range.
#[derive(Default)]
pub(super) struct Run {
    /// Kept coefficients (quantised), MCU after MCU; DC absolute but
    /// relative to predictors of 0 where the run started.
    pub(super) coefs: Vec<i16>,
    /// Bit position of each MCU's start.
    pub(super) starts: Vec<usize>,
    /// DC predictors at each MCU's start.
    pub(super) preds: Vec<[i32; 3]>,
    /// MCUs that held a bit pattern that is no code or a run past the block.
    pub(super) errors: Vec<usize>,
    /// State after the last MCU.
    pub(super) pos: usize,
    pub(super) pred: [i32; 3],
}

impl Run {
    pub(super) fn count(&self) -> usize {
        self.starts.len()
    }
}

impl<'a> Scan<'a> {
    pub(super) fn new(frame: &'a Frame, n: usize) -> Option<Scan<'a>> {
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
    pub(super) fn mcu(&self, r: &mut Bits, pred: &mut [i32; 3], out: &mut [i16]) -> bool {
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
    pub(super) fn decode(&self, run: &mut Run, mut go: impl FnMut(usize, usize) -> bool) {
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
    pub(super) fn decode_intervals(&self, run: &mut Run, mcus: Range<usize>) {
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
pub(super) struct Bits<'a> {
    data: &'a [u8],
    /// Byte the next refill loads from.
    next: usize,
    buf: u64,
    /// Valid bits at the top of `buf`.
    count: u32,
}

impl<'a> Bits<'a> {
    pub(super) fn at(data: &'a [u8], pos: usize) -> Bits<'a> {
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
