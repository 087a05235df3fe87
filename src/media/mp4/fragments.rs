//! A fragmented movie's duration, summed from its fragment headers
//! (`moof`: `traf`, `tfhd`, `tfdt`, `trun`) or stated by `mehd`.

use std::io::{self, Read, Seek};

use super::source::{BoxHeader, Source};
use super::{be32, be64, Mp4Error, MAX_FRAGMENT_BOXES, TRUN_CHUNK_BYTES};

/// A track of a fragmented movie, in its own time units.
#[derive(Debug)]
pub(super) struct FragTrack {
    pub(super) id: u32,
    pub(super) timescale: u32,
    /// `trex` default sample duration, for fragments that state none.
    pub(super) default_duration: u32,
    /// Duration of the samples inside the moov itself.
    pub(super) in_moov: u64,
    /// Decode time of the first fragment.
    pub(super) start: Option<u64>,
    /// Decode time after the last sample seen so far.
    pub(super) end: u64,
}

/// Turns a malformed box or a short read into "the walk ends here":
/// for fragments, whose damaged tail should not cost the whole duration.
fn ended<T>(e: Mp4Error) -> Result<Option<T>, Mp4Error> {
    match e {
        Mp4Error::Malformed(_) => Ok(None),
        Mp4Error::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        e => Err(e),
    }
}

impl<R: Read + Seek> Source<R> {
    /// Duration of a fragmented movie in seconds: for each track the end
    /// of its last fragment (`tfdt` decode time, or the running sum where
    /// a fragment has none, plus its `trun` sample durations), the longest
    /// track winning. Walks the top-level boxes after the `moov` (reading
    /// `moof`s, skipping `mdat`s); a damaged or cut-off tail (a recording
    /// that crashed) ends the walk with what the whole fragments said.
    pub(super) fn fragments_secs(
        &mut self,
        from: u64,
        mut tracks: Vec<FragTrack>,
        moov_secs: Option<f64>,
    ) -> Result<Option<f64>, Mp4Error> {
        let mut pos = from;
        let mut visited = 0;
        while let Some(hdr) = self.header(pos, self.len).or_else(ended)? {
            if hdr.end > self.len {
                break;
            }
            visited += 1;
            if visited > MAX_FRAGMENT_BOXES {
                return Ok(None);
            }
            if &hdr.kind == b"moof" {
                let walked = self.children(&hdr, |src, child| {
                    if &child.kind == b"traf" {
                        src.traf(child, &mut tracks)?;
                    }
                    Ok(())
                });
                if let Err(e) = walked {
                    ended::<()>(e)?;
                    break;
                }
            }
            pos = hdr.end;
        }
        if tracks.iter().all(|t| t.start.is_none()) {
            return Ok(moov_secs); // no fragment after all
        }
        Ok(tracks
            .iter()
            .filter_map(|t| {
                // A recording cut from a live stream starts late: count from
                // its first fragment unless the moov holds samples itself.
                let start = if t.in_moov > 0 { 0 } else { t.start? };
                let units = t.end.checked_sub(start).filter(|&u| u > 0)?;
                Some(units as f64 / f64::from(t.timescale))
            })
            .max_by(|a, b| a.total_cmp(b)))
    }

    /// Adds one track fragment to its track's span.
    fn traf(&mut self, traf: &BoxHeader, tracks: &mut [FragTrack]) -> Result<(), Mp4Error> {
        let mut track: Option<usize> = None;
        let mut default_duration = None;
        let mut decode_time = None;
        let mut units: u64 = 0;
        self.children(traf, |src, child| {
            match &child.kind {
                b"tfhd" => {
                    // version/flags, track id, then optional fields in order:
                    // base data offset (8), description index (4), default
                    // sample duration (4)…
                    let mut b = [0u8; 24];
                    let n = src.body(child, &mut b)?;
                    if n < 8 {
                        return Err(Mp4Error::Malformed("tfhd"));
                    }
                    let flags = be32(&b, 0) & 0xFF_FFFF;
                    let id = be32(&b, 4);
                    track = tracks.iter().position(|t| t.id == id);
                    if flags & 0x8 != 0 {
                        let at = 8
                            + 8 * usize::from(flags & 0x1 != 0)
                            + 4 * usize::from(flags & 0x2 != 0);
                        if n < at + 4 {
                            return Err(Mp4Error::Malformed("tfhd"));
                        }
                        default_duration = Some(be32(&b, at));
                    }
                }
                b"tfdt" => {
                    let mut b = [0u8; 12];
                    let n = src.body(child, &mut b)?;
                    decode_time = Some(match b[0] {
                        1 if n >= 12 => be64(&b, 4),
                        0 if n >= 8 => u64::from(be32(&b, 4)),
                        _ => return Err(Mp4Error::Malformed("tfdt")),
                    });
                }
                b"trun" => {
                    let Some(t) = track else {
                        return Err(Mp4Error::Malformed("trun before tfhd"));
                    };
                    let default = default_duration.unwrap_or(tracks[t].default_duration);
                    units = units.saturating_add(src.trun(child, default)?);
                }
                _ => {}
            }
            Ok(())
        })?;
        let Some(t) = track else {
            return Ok(()); // a track the moov doesn't describe
        };
        let t = &mut tracks[t];
        let base = decode_time.unwrap_or(t.end);
        t.start.get_or_insert(base);
        t.end = t.end.max(base.saturating_add(units));
        Ok(())
    }

    /// Sum of the sample durations of one `trun`, in track time units.
    fn trun(&mut self, hdr: &BoxHeader, default_duration: u32) -> Result<u64, Mp4Error> {
        let mut b = [0u8; 16];
        let n = self.body(hdr, &mut b)?;
        if n < 8 {
            return Err(Mp4Error::Malformed("trun"));
        }
        let flags = be32(&b, 0) & 0xFF_FFFF;
        let count = u64::from(be32(&b, 4));
        // Data offset, first-sample flags, then per sample: duration, size,
        // flags, composition offset, each present or not.
        let header = 8 + 4 * u64::from(flags & 0x1 != 0) + 4 * u64::from(flags & 0x4 != 0);
        let entry = 4 * u64::from((flags >> 8 & 0xF).count_ones());
        let body_len = hdr.end - hdr.body;
        if header + count * entry > body_len {
            return Err(Mp4Error::Malformed("trun sample count"));
        }
        if flags & 0x100 == 0 {
            return Ok(count * u64::from(default_duration));
        }
        // Durations are the first field of each entry; read whole entries
        // a fixed-size slice at a time.
        let mut buf = [0u8; TRUN_CHUNK_BYTES];
        let per_chunk = (TRUN_CHUNK_BYTES as u64 / entry).max(1);
        let mut total: u64 = 0;
        let mut done = 0;
        while done < count {
            let take = per_chunk.min(count - done);
            let bytes = &mut buf[..(take * entry) as usize];
            self.read_at(hdr.body + header + done * entry, bytes)?;
            for e in bytes.chunks_exact(entry as usize) {
                total = total.saturating_add(u64::from(be32(e, 0)));
            }
            done += take;
        }
        Ok(total)
    }

    pub(super) fn mehd(&mut self, hdr: &BoxHeader) -> Result<u64, Mp4Error> {
        let mut b = [0u8; 12];
        let n = self.body(hdr, &mut b)?;
        match b[0] {
            1 if n >= 12 => Ok(be64(&b, 4)),
            0 if n >= 8 => Ok(u64::from(be32(&b, 4))),
            _ => Err(Mp4Error::Malformed("mehd")),
        }
    }
}
