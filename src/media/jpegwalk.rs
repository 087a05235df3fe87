//! The one walk over a JPEG's marker segments, from SOI to the start of
//! the scan: each segment's header (marker, where its length field is, that
//! length) is reported before its body, so a caller reading a file bit by
//! bit (the probe's head, `jpegscale::read_head`) learns how much to read
//! next, and a caller holding the whole file (`segments`, for the
//! decoders) takes the bodies straight from the slice.
//!
//! Lenient where libjpeg is: any bytes between segments that are not a
//! marker (Photoshop and some phone apps leave garbage, zero bytes or
//! 0xFF fill there) are skipped up to the next 0xFF that starts a marker,
//! as libjpeg's `next_marker` does; so a file browsers and iOS show gets
//! its size, its Exif and a thumbnail here too.

/// A marker segment's header: its marker code, the offset of its length
/// field and that length (which counts the field itself, so the body is
/// `at + 2 .. at + len`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub marker: u8,
    pub at: usize,
    pub len: usize,
}

impl Header {
    /// The offset of the first byte after the segment.
    pub(crate) fn end(&self) -> usize {
        self.at + self.len
    }
}

/// One step of the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// The next segment's header (its body may lie beyond the data).
    Header(Header),
    /// The data ends before the next header is whole: give at least this
    /// many bytes (always more than were given) and call again.
    NeedMore(usize),
    /// No more segments: past the start of scan, at the end of image, a
    /// length below 2, or no SOI at all.
    End,
}

/// Whether `marker` starts a frame header (SOF0–SOF15 but DHT, JPG, DAC).
pub(crate) fn is_sof(marker: u8) -> bool {
    matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

/// Where a walk is. It holds no data, so the caller may grow its buffer
/// between steps (the offsets stay those of the same bytes).
#[derive(Debug, Default)]
pub(crate) struct Walker {
    /// The next byte to look at; 0 until the SOI has been checked.
    at: usize,
    done: bool,
}

impl Walker {
    pub(crate) fn new() -> Walker {
        Walker::default()
    }

    /// The next segment header in `data` (the file from its SOI on).
    pub(crate) fn step(&mut self, data: &[u8]) -> Step {
        if self.done {
            return Step::End;
        }
        if self.at == 0 {
            match data.get(..2) {
                None => return Step::NeedMore(2),
                Some([0xFF, 0xD8]) => self.at = 2,
                Some(_) => return self.end(),
            }
        }
        loop {
            // Anything but 0xFF here is garbage between segments.
            let Some(p) = memchr::memchr(0xFF, data.get(self.at..).unwrap_or_default()) else {
                self.at = self.at.max(data.len());
                return Step::NeedMore(self.at + 4);
            };
            let ff = self.at + p;
            // Any number of 0xFF fill bytes may precede a marker code.
            let mut m = ff + 1;
            while data.get(m) == Some(&0xFF) {
                m += 1;
            }
            let Some(&marker) = data.get(m) else {
                self.at = ff;
                return Step::NeedMore(m + 3);
            };
            match marker {
                // 0xFF 0x00 is no marker (libjpeg skips it as garbage too).
                0x00 => self.at = m + 1,
                // Stand-alone markers carry no length.
                0x01 | 0xD0..=0xD7 => self.at = m + 1,
                0xD9 => return self.end(),
                _ => {
                    let Some(len) = data.get(m + 1..m + 3) else {
                        self.at = ff;
                        return Step::NeedMore(m + 3);
                    };
                    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                    if len < 2 {
                        return self.end();
                    }
                    let header = Header {
                        marker,
                        at: m + 1,
                        len,
                    };
                    self.at = header.end();
                    // What follows a start of scan is entropy-coded data.
                    self.done = marker == 0xDA;
                    return Step::Header(header);
                }
            }
        }
    }

    fn end(&mut self) -> Step {
        self.done = true;
        Step::End
    }
}

/// The whole marker segments of a JPEG held in memory, after its SOI and
/// up to and including its start of scan: `(marker, offset of the length
/// field, length)`. Ends at the first segment not wholly in `data`.
pub(crate) fn segments(data: &[u8]) -> impl Iterator<Item = (u8, usize, usize)> + '_ {
    let mut walk = Walker::new();
    std::iter::from_fn(move || match walk.step(data) {
        Step::Header(h) if h.end() <= data.len() => Some((h.marker, h.at, h.len)),
        _ => None,
    })
}

/// The frame size (width, height) from the first frame header of `data`;
/// `Err(n)` when the walk needs `n` bytes (more than `data` holds) to
/// get there. `Ok(None)`: no frame header before the scan or the end.
pub(crate) fn frame_size(data: &[u8]) -> Result<Option<(u32, u32)>, usize> {
    let mut walk = Walker::new();
    loop {
        match walk.step(data) {
            Step::Header(h) if is_sof(h.marker) => {
                // Precision, then height and width.
                let Some(b) = data.get(h.at + 3..h.at + 7) else {
                    return Err(h.at + 7);
                };
                let height = u32::from(u16::from_be_bytes([b[0], b[1]]));
                let width = u32::from(u16::from_be_bytes([b[2], b[3]]));
                return Ok(Some((width, height)));
            }
            Step::Header(_) => {}
            Step::NeedMore(n) => return Err(n),
            Step::End => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A segment: marker, length, body.
    fn seg(marker: u8, body: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&(body.len() as u16 + 2).to_be_bytes());
        s.extend_from_slice(body);
        s
    }

    fn sof(w: u16, h: u16) -> Vec<u8> {
        let mut body = vec![8];
        body.extend_from_slice(&h.to_be_bytes());
        body.extend_from_slice(&w.to_be_bytes());
        body.extend_from_slice(&[1, 1, 0x11, 0]);
        seg(0xC0, &body)
    }

    fn markers(data: &[u8]) -> Vec<u8> {
        segments(data).map(|s| s.0).collect()
    }

    #[test]
    fn walks_whole_segments_up_to_the_scan() {
        let file = [
            &[0xFF, 0xD8][..],
            &seg(0xE0, b"JFIF\0abcdefghi"),
            &[0xFF, 0xD0],       // a stand-alone marker
            &[0xFF, 0xFF, 0xFF], // fill bytes before the next marker
            &seg(0xE1, b"Exif\0\0II*\0"),
            &sof(640, 480),
            &seg(0xDA, &[1, 1, 0, 0, 63, 0]),
            &[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xE2, 0, 4, 0, 0], // entropy data
            &[0xFF, 0xD9],
        ]
        .concat();
        assert_eq!(markers(&file), [0xE0, 0xE1, 0xC0, 0xDA]);
        assert_eq!(frame_size(&file), Ok(Some((640, 480))));
        let (m, at, len) = segments(&file).nth(1).unwrap();
        assert_eq!((m, &file[at + 2..at + len]), (0xE1, &b"Exif\0\0II*\0"[..]));
        // Not a JPEG, a length below 2, EOI: the end.
        assert!(markers(b"GIF89a").is_empty());
        assert!(markers(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 1, 0xFF, 0xC0]).is_empty());
        assert_eq!(frame_size(&[0xFF, 0xD8, 0xFF, 0xD9]), Ok(None));
    }

    /// Garbage, zero bytes and 0xFF 0x00 between segments are skipped, as
    /// libjpeg does (Photoshop files): the same segments as without.
    #[test]
    fn stray_bytes_between_segments_are_skipped() {
        let clean = [
            &[0xFF, 0xD8][..],
            &seg(0xE1, b"Exif\0\0MM\0*"),
            &sof(300, 200),
            &seg(0xDA, &[1, 1, 0, 0, 63, 0]),
        ]
        .concat();
        let stray: &[&[u8]] = &[b"\0\0\0\0", b"garbage", &[0xFF, 0x00, 0x13], &[0xFF; 9]];
        for junk in stray {
            let dirty = [&clean[..2], junk, &clean[2..16], junk, &clean[16..]].concat();
            let got: Vec<_> = segments(&dirty).map(|s| (s.0, s.2)).collect();
            let want: Vec<_> = segments(&clean).map(|s| (s.0, s.2)).collect();
            assert_eq!(got, want, "junk {junk:?}");
            assert_eq!(frame_size(&dirty), Ok(Some((300, 200))));
        }
    }

    /// On a prefix the walk asks for more, past what it was given, and
    /// resumes where it stopped once the buffer has grown.
    #[test]
    fn a_cut_off_walk_asks_for_more_and_resumes() {
        let file = [
            &[0xFF, 0xD8][..],
            b"junk",
            &seg(0xE2, &[7; 300]),
            &[0xFF, 0xFF],
            &sof(64, 48),
        ]
        .concat();
        for cut in 0..file.len() {
            match frame_size(&file[..cut]) {
                Err(n) => assert!(n > cut, "needs {n} of {cut}"),
                // Width and height are in: the rest of the header may not be.
                Ok(size) => assert_eq!(size, Some((64, 48)), "cut {cut}"),
            }
            // One walker, fed a growing buffer.
            let mut walk = Walker::new();
            let mut seen = Vec::new();
            let mut len = cut;
            loop {
                match walk.step(&file[..len]) {
                    Step::Header(h) => seen.push(h.marker),
                    Step::NeedMore(n) if len < file.len() => len = n.min(file.len()),
                    _ => break,
                }
            }
            assert_eq!(seen, [0xE2, 0xC0], "cut {cut}");
        }
        assert_eq!(frame_size(&file), Ok(Some((64, 48))));
    }
}
