//! The first directory (IFD 0) of a TIFF or BigTIFF, read entry by entry:
//! the one reader of it behind the probe's BigTIFF size
//! (`stillmeta::bigtiff_info`), the check of a TIFF before the `tiff` crate
//! decodes it (`stillmeta::tiff_directory_bounded`) and page 0's size for
//! `tiff2rgba` (`tiffrgba`).
//!
//! Classic TIFF (version 42: 4-byte offsets, 12-byte entries, a 2-byte
//! count) and BigTIFF (version 43: 8-byte offsets, 20-byte entries, an
//! 8-byte count), either byte order. A parser of untrusted bytes: the
//! directory's offset and its entries are checked against the file's
//! length, at most [`MAX_ENTRIES`] entries are read whatever the count
//! claims, and nothing is allocated from a count (an entry is read into a
//! fixed buffer). Imports nothing of the crate.

use std::io::{self, Read, Seek, SeekFrom};

/// Entries read from a directory at most: a real first directory has a
/// few dozen. Callers decide whether a larger count is a refusal
/// ([`FirstDirectory::declared`]) or is read up to this many.
pub(crate) const MAX_ENTRIES: u64 = 4096;

/// One directory entry, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) tag: u16,
    /// The field type (3 SHORT, 4 LONG, 16 LONG8...).
    pub(crate) kind: u16,
    /// How many values of that type.
    pub(crate) count: u64,
    /// The value field: the values themselves when they fit (4 bytes in a
    /// TIFF, 8 in a BigTIFF), their offset otherwise.
    field: [u8; 8],
    field_len: usize,
    little_endian: bool,
}

impl Entry {
    /// Bytes of one value of this entry's type; `None` for a type neither
    /// TIFF 6 nor BigTIFF defines.
    pub(crate) fn value_size(&self) -> Option<u64> {
        Some(match self.kind {
            1 | 2 | 6 | 7 => 1,
            3 | 8 => 2,
            4 | 9 | 11 | 13 => 4,
            5 | 10 | 12 | 16..=18 => 8,
            _ => return None,
        })
    }

    /// The first value of a SHORT, LONG or LONG8 entry whose values the
    /// entry holds itself (none when they lie elsewhere, or it has none).
    pub(crate) fn value(&self) -> Option<u64> {
        let size = match self.kind {
            3 => 2,
            4 => 4,
            16 => 8,
            _ => return None,
        };
        if self.count == 0 || self.count.saturating_mul(size as u64) > self.field_len as u64 {
            return None;
        }
        Some(number(&self.field[..size], self.little_endian))
    }
}

/// The first directory of a TIFF, its header read: [`Entry`]s come from
/// iterating it, each `Ok` or, once, the `Err` that ends it (an entry cut
/// short by the end of the file is `UnexpectedEof`).
#[derive(Debug)]
pub(crate) struct FirstDirectory<R> {
    r: R,
    big: bool,
    little_endian: bool,
    declared: u64,
    len: u64,
    /// Entries still to read (at most [`MAX_ENTRIES`] in all).
    left: u64,
}

impl<R: Read + Seek> FirstDirectory<R> {
    /// The first directory of the TIFF or BigTIFF in `r`, positioned at its
    /// first entry. `Ok(None)`: no TIFF (another signature, a file shorter
    /// than its header, a BigTIFF whose offsets are not 8 bytes).
    /// `UnexpectedEof` when the directory's offset or its count lies past
    /// the end of the file.
    pub(crate) fn open(mut r: R) -> io::Result<Option<FirstDirectory<R>>> {
        let len = r.seek(SeekFrom::End(0))?;
        r.seek(SeekFrom::Start(0))?;
        let mut h = [0u8; 16];
        let got = read_full(&mut r, &mut h)?;
        let (little_endian, big) = match &h[..4] {
            b"II*\0" => (true, false),
            b"MM\0*" => (false, false),
            b"II+\0" => (true, true),
            b"MM\0+" => (false, true),
            _ => return Ok(None),
        };
        let num = |b: &[u8]| number(b, little_endian);
        let first = match big {
            false if got >= 8 => num(&h[4..8]),
            // The offset size, always 8, then a reserved 0.
            true if got >= 16 && num(&h[4..6]) == 8 && num(&h[6..8]) == 0 => num(&h[8..16]),
            _ => return Ok(None),
        };
        let count_len = if big { 8 } else { 2 };
        if first.checked_add(count_len).is_none_or(|end| end > len) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("first directory at {first}, past the end of the file ({len} bytes)"),
            ));
        }
        r.seek(SeekFrom::Start(first))?;
        let mut n = [0u8; 8];
        r.read_exact(&mut n[..count_len as usize])?;
        let declared = num(&n[..count_len as usize]);
        Ok(Some(FirstDirectory {
            r,
            big,
            little_endian,
            declared,
            len,
            left: declared.min(MAX_ENTRIES),
        }))
    }
}

impl<R> FirstDirectory<R> {
    /// Entries the directory claims to have (more than are read when over
    /// [`MAX_ENTRIES`]).
    pub(crate) fn declared(&self) -> u64 {
        self.declared
    }

    /// The length of the file, in bytes.
    pub(crate) fn file_len(&self) -> u64 {
        self.len
    }

    /// A BigTIFF (version 43) rather than a classic TIFF.
    pub(crate) fn is_big(&self) -> bool {
        self.big
    }
}

impl<R: Read> Iterator for FirstDirectory<R> {
    type Item = io::Result<Entry>;

    fn next(&mut self) -> Option<io::Result<Entry>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let (entry_len, field_at) = if self.big { (20, 12) } else { (12, 8) };
        let mut e = [0u8; 20];
        if let Err(err) = self.r.read_exact(&mut e[..entry_len]) {
            self.left = 0; // nothing after a failed read
            return Some(Err(err));
        }
        let num = |b: &[u8]| number(b, self.little_endian);
        let mut field = [0u8; 8];
        field[..entry_len - field_at].copy_from_slice(&e[field_at..entry_len]);
        Some(Ok(Entry {
            tag: num(&e[0..2]) as u16,
            kind: num(&e[2..4]) as u16,
            count: num(&e[4..field_at]),
            field,
            field_len: entry_len - field_at,
            little_endian: self.little_endian,
        }))
    }
}

/// The unsigned number `b` (at most 8 bytes) holds in the given order.
fn number(b: &[u8], little_endian: bool) -> u64 {
    let mut a = [0u8; 8];
    if little_endian {
        a[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(a)
    } else {
        a[8 - b.len()..].copy_from_slice(b);
        u64::from_be_bytes(a)
    }
}

/// Reads into `buf` until it is full or the input ends; how many bytes.
pub(crate) fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// An entry to write: tag, type, count, the value field's bytes as a
    /// number (written in the file's byte order and field width).
    type Spec = (u16, u16, u64, u64);

    /// A TIFF (`big`: BigTIFF) in the given byte order whose first
    /// directory, after 8 bytes of pixel data, holds `entries`.
    fn tiff(little_endian: bool, big: bool, entries: &[Spec]) -> Vec<u8> {
        let put = |out: &mut Vec<u8>, v: u64, n: usize| {
            if little_endian {
                out.extend_from_slice(&v.to_le_bytes()[..n]);
            } else {
                out.extend_from_slice(&v.to_be_bytes()[8 - n..]);
            }
        };
        let mut out = if little_endian { b"II" } else { b"MM" }.to_vec();
        let (offset_len, count_len) = if big { (8, 8) } else { (4, 2) };
        if big {
            put(&mut out, 43, 2);
            put(&mut out, 8, 2);
            put(&mut out, 0, 2);
        } else {
            put(&mut out, 42, 2);
        }
        let first = out.len() + offset_len + 8;
        put(&mut out, first as u64, offset_len);
        out.extend_from_slice(&[0xAA; 8]);
        put(&mut out, entries.len() as u64, count_len);
        for &(tag, kind, count, value) in entries {
            put(&mut out, u64::from(tag), 2);
            put(&mut out, u64::from(kind), 2);
            put(&mut out, count, offset_len);
            put(&mut out, value, offset_len);
        }
        put(&mut out, 0, offset_len); // no next directory
        out
    }

    fn entries(file: &[u8]) -> io::Result<Option<Vec<Entry>>> {
        match FirstDirectory::open(Cursor::new(file))? {
            Some(dir) => dir.collect::<io::Result<Vec<_>>>().map(Some),
            None => Ok(None),
        }
    }

    /// The value each entry holds itself, by tag.
    fn values(file: &[u8]) -> Vec<(u16, Option<u64>)> {
        let found = entries(file).unwrap().expect("a TIFF");
        found.iter().map(|e| (e.tag, e.value())).collect()
    }

    #[test]
    fn short_long_and_long8_values_in_both_byte_orders_and_both_kinds() {
        // A SHORT sits in the field's first bytes, in the file's order.
        let short = |le: bool, big: bool, v: u64| match (le, big) {
            (true, _) => v,
            (false, false) => v << 16,
            (false, true) => v << 48,
        };
        let long = |le: bool, big: bool, v: u64| if le || !big { v } else { v << 32 };
        for le in [true, false] {
            for big in [false, true] {
                let mut spec = vec![
                    (256, 4, 1, long(le, big, 5000)),
                    (257, 3, 1, short(le, big, 3000)),
                    (274, 3, 1, short(le, big, 6)),
                ];
                if big {
                    spec.push((258, 16, 1, 1 << 40));
                }
                let file = tiff(le, big, &spec);
                let dir = FirstDirectory::open(Cursor::new(&file)).unwrap().unwrap();
                assert_eq!((dir.is_big(), dir.declared()), (big, spec.len() as u64));
                assert_eq!(dir.file_len(), file.len() as u64);
                let mut want = vec![(256, Some(5000)), (257, Some(3000)), (274, Some(6))];
                if big {
                    want.push((258, Some(1 << 40)));
                }
                assert_eq!(values(&file), want, "little-endian {le}, BigTIFF {big}");
            }
        }
    }

    #[test]
    fn values_held_elsewhere_or_of_other_types_are_not_taken_for_one() {
        let file = tiff(
            true,
            false,
            &[
                // Three SHORTs do not fit 4 bytes: the field is an offset.
                (256, 3, 3, 0x10),
                // Two SHORTs do: the first is the value.
                (257, 3, 2, 0x0009_0007),
                // No value at all.
                (258, 4, 0, 12),
                // LONG8 in a classic TIFF does not fit its 4 bytes.
                (259, 16, 1, 5),
                // RATIONAL, ASCII: not a number held in the entry.
                (282, 5, 1, 40),
                (270, 2, 4, u64::from(u32::from_le_bytes(*b"abc\0"))),
            ],
        );
        assert_eq!(
            values(&file),
            [
                (256, None),
                (257, Some(7)),
                (258, None),
                (259, None),
                (282, None),
                (270, None)
            ]
        );
        let sizes: Vec<_> = entries(&file)
            .unwrap()
            .unwrap()
            .iter()
            .map(Entry::value_size)
            .collect();
        assert_eq!(
            sizes,
            [Some(2), Some(2), Some(4), Some(8), Some(8), Some(1)]
        );
    }

    #[test]
    fn a_file_cut_at_any_byte_is_no_tiff_or_an_end_of_file_never_a_panic() {
        for big in [false, true] {
            let file = tiff(true, big, &[(256, 4, 1, 64), (257, 4, 1, 48)]);
            let header = if big { 16 } else { 8 };
            let count_end = header + 8 + if big { 8 } else { 2 };
            let entry_len = if big { 20 } else { 12 };
            for cut in 0..file.len() {
                let got = entries(&file[..cut]);
                match cut {
                    // Shorter than its header: no TIFF.
                    c if c < header => assert!(matches!(got, Ok(None)), "cut {cut}: {got:?}"),
                    // The directory's offset or count past the end, or an
                    // entry cut short.
                    c if c < count_end + 2 * entry_len => {
                        let err = got.expect_err(&format!("cut {cut}"));
                        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "cut {cut}");
                    }
                    // Both entries whole; the next-directory offset is
                    // not read.
                    _ => assert_eq!(got.unwrap().unwrap().len(), 2, "cut {cut}"),
                }
            }
        }
    }

    #[test]
    fn a_directory_past_the_end_is_an_error_before_any_read() {
        for first in [64u64, u64::from(u32::MAX), u64::MAX] {
            let mut file = tiff(true, true, &[(256, 4, 1, 64)]);
            file[8..16].copy_from_slice(&first.to_le_bytes());
            let err = FirstDirectory::open(Cursor::new(&file)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "offset {first}");
            assert!(err.to_string().contains("past the end"), "{err}");
        }
        let mut file = tiff(false, false, &[(256, 4, 1, 64)]);
        file[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(FirstDirectory::open(Cursor::new(&file)).is_err());
    }

    #[test]
    fn a_huge_entry_count_reads_at_most_max_entries_and_allocates_nothing_for_it() {
        // A BigTIFF claiming 2^64 - 1 entries, with 5,000 real ones: the
        // count is reported, 4,096 entries are read, the rest ignored.
        let spec: Vec<Spec> = (0..5000).map(|i| (i as u16, 3, 1, 1)).collect();
        let mut file = tiff(false, true, &spec);
        file[24..32].copy_from_slice(&u64::MAX.to_be_bytes());
        let dir = FirstDirectory::open(Cursor::new(&file)).unwrap().unwrap();
        assert_eq!(dir.declared(), u64::MAX);
        let read = dir.collect::<io::Result<Vec<_>>>().unwrap();
        assert_eq!(read.len() as u64, MAX_ENTRIES);
        // The same count with no entries behind it: one end of file, then
        // nothing.
        let mut bare = tiff(false, true, &[]);
        bare[24..32].copy_from_slice(&u64::MAX.to_be_bytes());
        let mut dir = FirstDirectory::open(Cursor::new(&bare)).unwrap().unwrap();
        // The next-directory offset reads as one entry's first 8 bytes.
        let first = dir.next().unwrap();
        assert_eq!(first.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert!(dir.next().is_none());
    }

    #[test]
    fn other_signatures_and_odd_bigtiff_headers_are_no_tiff() {
        for head in [
            &b"GIF89a......"[..],
            b"II*",
            b"",
            b"MM\0+\0\x04\0\0\0\0\0\0\0\0\0\x10",
            b"II+\0\x08\0\x01\0\x10\0\0\0\0\0\0\0",
        ] {
            assert!(
                matches!(FirstDirectory::open(Cursor::new(head)), Ok(None)),
                "{head:?}"
            );
        }
    }
}
