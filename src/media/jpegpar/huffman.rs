//! The Huffman tables of a baseline scan: a fast lookup for short codes,
//! canonical decoding for the rest, and JPEG's EXTEND of a value's bits.

/// Bits the fast Huffman lookup resolves at once.
pub(super) const LOOKUP: u32 = 10;

/// A Huffman table: a `LOOKUP`-bit table for short codes (most of them),
/// canonical decoding for the rest.
pub(super) struct Huffman {
    /// Bits 0–4: bits to consume (0: not in the table). Bit 5: an AC entry
    /// whose value is resolved too (then bits 6–9 hold the zero run and bits
    /// 16–31 the coefficient). Otherwise bits 8–15 hold the symbol.
    pub(super) fast: Vec<u32>,
    /// Largest code of each length (-1: none), 1..=16.
    pub(super) maxcode: [i32; 17],
    /// Index into `symbols` of a length's codes minus its smallest code.
    pub(super) offset: [i32; 17],
    pub(super) symbols: Vec<u8>,
}

pub(super) const FAST_VALUE: u32 = 1 << 5;

impl Huffman {
    pub(super) fn new(counts: &[u8; 16], symbols: &[u8], ac: bool) -> Option<Huffman> {
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
    pub(super) fn slow(&self, peek: u64) -> Option<(u8, u32)> {
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
pub(super) fn extend(bits: u32, size: u32) -> i32 {
    if size == 0 {
        0
    } else if bits < 1 << (size - 1) {
        bits as i32 - (1 << size) + 1
    } else {
        bits as i32
    }
}
