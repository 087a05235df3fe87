//! The pixel aspect an H.263 picture header states (3GPP's `s263`,
//! QuickTime's `h263`), as ffmpeg's decoder reads it.

/// The pixel aspect (horizontal, vertical spacing, reduced) that ffmpeg's
/// H.263 decoder (`ff_h263_decode_picture_header`, libavcodec/ituh263dec.c)
/// gives the picture whose header starts `sample`; `None` when square,
/// unknown, or not a header that decoder takes. The start code (22 bits,
/// `0000 0000 0000 0000 1000 00`) is found at a byte boundary as it
/// searches; then the temporal reference and PTYPE:
/// - a standard source format (sub-QCIF…16CIF) in PTYPE (H.263 v1): 12:11;
/// - PLUSPTYPE (format 7) with an OPPTYPE (UFEP 1): a standard format is
///   12:11 too; a custom one (CPFMT) names its aspect in 4 bits, 1:1, 12:11,
///   10:11, 16:11, 40:33 (reserved: unknown), or 15, an extended PAR (two
///   bytes, width and height);
/// - PLUSPTYPE without an OPPTYPE (UFEP 0) repeats nothing: unknown.
///
/// Pure and bounded: every read is checked against `sample`.
pub fn h263_pixel_aspect(sample: &[u8]) -> Option<(u32, u32)> {
    /// `ff_h263_pixel_aspect`: CPFMT's aspect codes 1–5 ((0, _): unknown).
    const TABLE: [(u32, u32); 6] = [(0, 1), (1, 1), (12, 11), (10, 11), (16, 11), (40, 33)];
    // `ff_h263_format`'s formats with a size: sub-QCIF, QCIF, CIF, 4CIF, 16CIF.
    let standard = |format: u32| (1..=5).contains(&format);
    let start = sample
        .windows(3)
        .position(|w| w[0] == 0 && w[1] == 0 && w[2] & 0xFC == 0x80)?;
    let mut r = BitReader {
        b: sample,
        bit: start * 8 + 22,
    };
    r.get(8)?; // temporal reference
               // PTYPE: marker 1, H.263 id 0, split screen, camera, freeze, format.
    if r.get(2)? != 0b10 {
        return None;
    }
    r.get(3)?;
    let format = r.get(3)?;
    let aspect = if format != 7 && format != 6 {
        // H.263 v1: picture coding type, long vectors, then SAC (which
        // the decoder refuses).
        r.get(2)?;
        if !standard(format) || r.get(1)? != 0 {
            return None;
        }
        (12, 11)
    } else {
        // PLUSPTYPE: UFEP, then OPPTYPE (18 bits) only when 1.
        let ufep = r.get(3)?;
        if ufep != 1 {
            return None;
        }
        let format = r.get(3)?;
        r.get(15)?;
        // MPPTYPE: picture type (0–3 and 7 decode), 6 more bits.
        if !matches!(r.get(3)?, 0..=3 | 7) {
            return None;
        }
        r.get(7)?;
        if format == 6 {
            // CPFMT: aspect, width, marker, height (never 0 when decoded).
            let code = r.get(4)?;
            r.get(10)?;
            if r.get(9)? == 0 {
                return None;
            }
            match code {
                15 => (r.get(8)?, r.get(8)?),
                c => TABLE.get(c as usize).copied().unwrap_or((0, 1)),
            }
        } else if standard(format) {
            (12, 11)
        } else {
            return None;
        }
    };
    let (h, v) = aspect;
    if h == 0 || v == 0 || h == v {
        return None;
    }
    let g = gcd(h, v);
    Some((h / g, v / g))
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Reads big-endian bit fields of a byte slice; `None` past its end.
struct BitReader<'a> {
    b: &'a [u8],
    bit: usize,
}

impl BitReader<'_> {
    /// The next `n` (≤ 32) bits.
    fn get(&mut self, n: usize) -> Option<u32> {
        let mut v: u32 = 0;
        for _ in 0..n {
            let byte = *self.b.get(self.bit / 8)?;
            v = (v << 1) | u32::from((byte >> (7 - self.bit % 8)) & 1);
            self.bit += 1;
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::super::read_info;
    use super::super::tests::{bx, hdlr, mvhd_v0, tkhd, IDENTITY};
    use super::*;
    use std::io::Cursor;

    /// Writes big-endian bit fields (H.263 picture headers).
    #[derive(Default)]
    struct Bits {
        b: Vec<u8>,
        n: usize,
    }

    impl Bits {
        fn put(mut self, width: usize, v: u32) -> Self {
            for i in (0..width).rev() {
                if self.n % 8 == 0 {
                    self.b.push(0);
                }
                let bit = ((v >> i) & 1) as u8;
                *self.b.last_mut().unwrap() |= bit << (7 - self.n % 8);
                self.n += 1;
            }
            self
        }
        /// Start code, temporal reference, PTYPE up to the format.
        fn picture(format: u32) -> Self {
            Bits::default()
                .put(22, 0x20)
                .put(8, 0)
                .put(2, 0b10)
                .put(3, 0)
                .put(3, format)
        }
        /// PLUSPTYPE with an OPPTYPE naming `format`, an I picture.
        fn plus(format: u32) -> Self {
            Bits::picture(7)
                .put(3, 1)
                .put(3, format)
                .put(15, 0b000_0000_0001_0000)
                .put(3, 0)
                .put(7, 0b000_1000)
        }
        /// CPFMT: aspect code, 176×144.
        fn custom(code: u32) -> Self {
            Bits::plus(6)
                .put(4, code)
                .put(9, 176 / 4 - 1)
                .put(1, 1)
                .put(9, 144 / 4)
        }
        fn bytes(self) -> Vec<u8> {
            // The rest of a picture: quantiser and data.
            self.put(16, 0xA5A5).b
        }
    }

    #[test]
    fn h263_picture_headers_give_the_decoders_pixel_aspect() {
        // The first picture ffmpeg 5.1's h263 encoder wrote for a QCIF clip.
        let made = [0x00, 0x00, 0x80, 0x02, 0x08, 0x04, 0x26, 0x20, 0x20, 0x20];
        assert_eq!(h263_pixel_aspect(&made), Some((12, 11)));
        let v1 = |format| Bits::picture(format).put(3, 0).bytes();
        for format in 1..=5 {
            assert_eq!(h263_pixel_aspect(&v1(format)), Some((12, 11)), "{format}");
        }
        assert_eq!(h263_pixel_aspect(&v1(0)), None, "forbidden format");
        // SAC, which the decoder refuses.
        let sac = Bits::picture(2).put(3, 0b001).bytes();
        assert_eq!(h263_pixel_aspect(&sac), None);
        // A bad marker or H.263 id.
        let bad = Bits::default()
            .put(22, 0x20)
            .put(8, 0)
            .put(2, 0b11)
            .put(9, 0x40);
        assert_eq!(h263_pixel_aspect(&bad.bytes()), None);

        // PLUSPTYPE: a standard format, then custom formats' aspect codes.
        assert_eq!(h263_pixel_aspect(&Bits::plus(2).bytes()), Some((12, 11)));
        assert_eq!(h263_pixel_aspect(&Bits::plus(0).bytes()), None);
        let custom = |code| h263_pixel_aspect(&Bits::custom(code).bytes());
        assert_eq!(custom(1), None, "1:1");
        assert_eq!(custom(2), Some((12, 11)));
        assert_eq!(custom(3), Some((10, 11)));
        assert_eq!(custom(4), Some((16, 11)));
        assert_eq!(custom(5), Some((40, 33)));
        assert_eq!(custom(0), None, "forbidden");
        assert_eq!(custom(9), None, "reserved");
        let extended = |h, v| h263_pixel_aspect(&Bits::custom(15).put(8, h).put(8, v).bytes());
        assert_eq!(extended(54, 44), Some((27, 22)), "reduced");
        assert_eq!(extended(0, 11), None);
        assert_eq!(extended(7, 7), None);
        // Height 0: the decoder refuses the picture.
        let flat = Bits::plus(6).put(4, 2).put(9, 43).put(1, 1).put(9, 0);
        assert_eq!(h263_pixel_aspect(&flat.bytes()), None);
        // UFEP 0 repeats no format; other values are reserved.
        for ufep in [0, 2, 7] {
            let b = Bits::picture(7).put(3, ufep).put(20, 0).put(20, 0);
            assert_eq!(h263_pixel_aspect(&b.bytes()), None, "ufep {ufep}");
        }
        // A picture type the decoder refuses.
        let b = Bits::picture(7)
            .put(3, 1)
            .put(3, 2)
            .put(15, 0b000_0000_0001_0000)
            .put(3, 5);
        assert_eq!(h263_pixel_aspect(&b.bytes()), None);

        // Junk before the start code is skipped, byte by byte, as ffmpeg does.
        let mut late = vec![0xFF, 0x12, 0x34];
        late.extend_from_slice(&made);
        assert_eq!(h263_pixel_aspect(&late), Some((12, 11)));
        // Cut short anywhere before the aspect is known: nothing, no panic.
        let whole = Bits::custom(15).put(8, 27).put(8, 22).b;
        for cut in 0..whole.len() {
            assert_eq!(h263_pixel_aspect(&whole[..cut]), None, "cut at {cut}");
        }
        // Garbage never panics.
        let mut x = 0x2545_f491_u32;
        for _ in 0..2000 {
            let junk: Vec<u8> = (0..24)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    // Often a start code, so the fields after it are fuzzed.
                    if x % 7 == 0 {
                        0
                    } else {
                        x as u8
                    }
                })
                .collect();
            let _ = h263_pixel_aspect(&junk);
        }
    }

    /// A 3GP with one H.263 track, its one sample (`sample`) in an `mdat`
    /// before the `moov`; `extra` goes into the sample entry (`pasp`...),
    /// `offset_shift` moves the `stco` offset.
    fn h263_3gp(tkhd_w: u32, extra: &[u8], sample: &[u8], stsz: u32, offset_shift: i64) -> Vec<u8> {
        let head = [
            bx(b"ftyp", b"3gp4\0\0\x02\x003gp4isom"),
            bx(b"mdat", sample),
        ]
        .concat();
        let offset = (head.len() - sample.len()) as i64 + offset_shift;
        let mut entry = vec![0u8; 78];
        entry[24..26].copy_from_slice(&176u16.to_be_bytes());
        entry[26..28].copy_from_slice(&144u16.to_be_bytes());
        entry.extend_from_slice(extra);
        let stsd = bx(
            b"stsd",
            &[&[0, 0, 0, 0, 0, 0, 0, 1][..], &bx(b"s263", &entry)].concat(),
        );
        let u32s = |v: &[u32]| v.iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<u8>>();
        let stsc = bx(b"stsc", &u32s(&[0, 1, 1, 1, 1]));
        let stsz = bx(b"stsz", &u32s(&[0, 0, 1, stsz]));
        let stco = bx(b"stco", &u32s(&[0, 1, offset as u32]));
        let stbl = bx(b"stbl", &[stsd, stsc, stsz, stco].concat());
        let mdia = bx(b"mdia", &[hdlr(b"vide"), bx(b"minf", &stbl)].concat());
        let trak = bx(b"trak", &[tkhd(3, IDENTITY, tkhd_w, 144), mdia].concat());
        [head, bx(b"moov", &[mvhd_v0(1000, 2000), trak].concat())].concat()
    }

    #[test]
    fn h263_without_pasp_is_widened_as_its_picture_header_says() {
        let made = [0x00, 0x00, 0x80, 0x02, 0x08, 0x04, 0x26, 0x20, 0x20, 0x20];
        let size = |file: Vec<u8>| {
            let v = read_info(Cursor::new(file)).unwrap().video.unwrap();
            (v.width, v.height, v.pixel_aspect)
        };
        let n = made.len() as u32;
        assert_eq!(
            size(h263_3gp(176, &[], &made, n, 0)),
            (192, 144, Some((12, 11)))
        );
        // A custom format's extended PAR, tkhd left at 0.
        let custom = Bits::custom(15).put(8, 27).put(8, 22).bytes();
        let c = custom.len() as u32;
        assert_eq!(
            size(h263_3gp(0, &[], &custom, c, 0)),
            (216, 144, Some((27, 22)))
        );
        // The container speaks: a pasp, even square, or a tkhd of another
        // size (ffmpeg takes the stream's aspect from either).
        let square = bx(b"pasp", &[0, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(size(h263_3gp(176, &square, &made, n, 0)), (176, 144, None));
        assert_eq!(size(h263_3gp(200, &[], &made, n, 0)), (200, 144, None));
        // Tables that point wrong, a sample too short to say: the coded size.
        assert_eq!(size(h263_3gp(176, &[], &made, 4, 0)), (176, 144, None));
        assert_eq!(size(h263_3gp(176, &[], &made, n, 3)), (176, 144, None));
        assert_eq!(size(h263_3gp(176, &[], &made, 0, 0)), (176, 144, None));
        let past_end = h263_3gp(176, &[], &made, n, 100_000);
        assert_eq!(size(past_end), (176, 144, None));
        // Garbage where the picture should be.
        assert_eq!(
            size(h263_3gp(176, &[], &[0xAB; 10], 10, 0)),
            (176, 144, None)
        );
        // Cut anywhere: an error or an answer, never a panic.
        let file = h263_3gp(176, &[], &made, n, 0);
        for cut in 0..file.len() {
            let _ = read_info(Cursor::new(&file[..cut]));
        }
    }
}
