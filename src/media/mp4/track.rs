//! One track (`trak`): its header, media header and handler, and from its
//! sample table the sample entry (codec, coded size, `pasp`, `colr`) and
//! where its first sample is.

use std::io::{Read, Seek};

use super::source::{BoxHeader, Source};
use super::{be32, be64, Colour, Mp4Error, STILL_IMAGE_CODECS};

/// One track's facts, gathered while walking `trak`.
#[derive(Debug, Default)]
pub(super) struct Track {
    pub(super) id: u32,
    pub(super) handler: [u8; 4],
    pub(super) enabled: bool,
    pub(super) tkhd_size: (u32, u32),
    pub(super) rotation_cw: Option<u16>,
    pub(super) codec: [u8; 4],
    pub(super) entry_size: (u32, u32),
    pub(super) sample_count: Option<u32>,
    pub(super) media_secs: Option<f64>,
    pub(super) timescale: u32,
    /// `mdhd` duration in `timescale` units (0: unknown or empty).
    pub(super) media_units: u64,
    pub(super) pixel_aspect: Option<(u32, u32)>,
    /// Whether the sample entry has a `pasp`, square or not (ffmpeg then
    /// takes the container's aspect over the stream's).
    pub(super) pasp_seen: bool,
    pub(super) colour: Option<Colour>,
    /// Where the first sample is: the first chunk's offset (`stco`,
    /// `co64`), if `stsc` puts a sample in that chunk...
    pub(super) first_chunk: Option<u64>,
    pub(super) first_chunk_has_samples: bool,
    /// ...and its size (`stsz`).
    pub(super) first_sample_size: Option<u32>,
    /// The pixel aspect the first H.263 picture header states, when the
    /// container states none (see [`super::h263_pixel_aspect`]).
    pub(super) coded_aspect: Option<(u32, u32)>,
}

impl Track {
    pub(super) fn is_video(&self) -> bool {
        if &self.handler != b"vide" {
            return false;
        }
        let still = STILL_IMAGE_CODECS.contains(&&self.codec);
        !(still && (!self.enabled || self.sample_count.is_some_and(|n| n <= 1)))
    }

    /// Presentation size: `tkhd`'s, which muxers write with the pixel
    /// aspect ratio applied; else the coded size, widened by `pasp`. An
    /// H.263 stream's own aspect (read only where the container states
    /// none) widens the coded size as `pasp` would.
    pub(super) fn stored_size(&self) -> (u32, u32) {
        if let Some((hs, vs)) = self.coded_aspect {
            let (w, h) = self.entry_size;
            let w = u64::from(w) * u64::from(hs) / u64::from(vs);
            return (u32::try_from(w).unwrap_or(u32::MAX), h);
        }
        match (self.tkhd_size, self.pixel_aspect) {
            ((w, h), _) if w > 0 && h > 0 => (w, h),
            ((_, _), Some((hs, vs))) => {
                let (w, h) = self.entry_size;
                let w = u64::from(w) * u64::from(hs) / u64::from(vs);
                (u32::try_from(w).unwrap_or(u32::MAX), h)
            }
            _ => self.entry_size,
        }
    }
}

impl<R: Read + Seek> Source<R> {
    pub(super) fn trak(&mut self, trak: &BoxHeader) -> Result<Track, Mp4Error> {
        let mut track = Track::default();
        self.children(trak, |src, child| {
            match &child.kind {
                b"tkhd" => src.tkhd(child, &mut track)?,
                b"mdia" => src.mdia(child, &mut track)?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(track)
    }

    fn tkhd(&mut self, hdr: &BoxHeader, track: &mut Track) -> Result<(), Mp4Error> {
        let mut b = [0u8; 96];
        let n = self.body(hdr, &mut b)?;
        // Version 1 widens three time fields from 32 to 64 bits.
        let at = match b[0] {
            0 if n >= 84 => 0,
            1 if n >= 96 => 12,
            _ => return Err(Mp4Error::Malformed("tkhd")),
        };
        track.enabled = b[3] & 1 != 0;
        // Two (v0) or two 64-bit (v1) times precede the track id.
        track.id = be32(&b, if b[0] == 1 { 20 } else { 12 });
        let m = |i: usize| f64::from(be32(&b, at + 40 + 4 * i) as i32) / 65536.0;
        track.rotation_cw = rotation_cw(m(0), m(1), m(3), m(4));
        // 16.16 fixed point; the fraction is irrelevant for pixel sizes.
        track.tkhd_size = (be32(&b, at + 76) >> 16, be32(&b, at + 80) >> 16);
        Ok(())
    }

    fn mdia(&mut self, mdia: &BoxHeader, track: &mut Track) -> Result<(), Mp4Error> {
        self.children(mdia, |src, child| {
            match &child.kind {
                b"mdhd" => {
                    let (timescale, units) = src.mdhd(child)?;
                    let known =
                        timescale > 0 && ![0, u64::MAX, u64::from(u32::MAX)].contains(&units);
                    track.media_secs = known.then(|| units as f64 / f64::from(timescale));
                    track.timescale = timescale;
                    track.media_units = if known { units } else { 0 };
                }
                b"hdlr" => {
                    // version/flags, pre_defined (QuickTime: component type), handler.
                    let mut b = [0u8; 12];
                    if src.body(child, &mut b)? < 12 {
                        return Err(Mp4Error::Malformed("hdlr"));
                    }
                    track.handler = [b[8], b[9], b[10], b[11]];
                }
                b"minf" => src.children(child, |src, child| {
                    if &child.kind == b"stbl" {
                        src.stbl(child, track)?;
                    }
                    Ok(())
                })?,
                _ => {}
            }
            Ok(())
        })
    }

    /// (timescale, duration in its units) from `mdhd`.
    fn mdhd(&mut self, hdr: &BoxHeader) -> Result<(u32, u64), Mp4Error> {
        let mut b = [0u8; 32];
        let n = self.body(hdr, &mut b)?;
        match b[0] {
            1 if n >= 32 => Ok((be32(&b, 20), be64(&b, 24))),
            0 if n >= 20 => Ok((be32(&b, 12), u64::from(be32(&b, 16)))),
            _ => Err(Mp4Error::Malformed("mdhd")),
        }
    }

    /// Reads `pasp` and `colr` from the boxes after the 78-byte visual
    /// sample entry `entry_size` bytes long at the start of `stsd`'s table.
    /// A malformed extension is ignored: it costs the colour, not the file.
    fn visual_entry_extensions(
        &mut self,
        stsd: &BoxHeader,
        entry_size: u32,
        track: &mut Track,
    ) -> Result<(), Mp4Error> {
        const VISUAL_ENTRY_BYTES: u64 = 8 + 78;
        let start = stsd.body + 8; // version/flags, entry count
        let end = start + u64::from(entry_size);
        if end > stsd.end || u64::from(entry_size) < VISUAL_ENTRY_BYTES {
            return Ok(());
        }
        let extensions = BoxHeader {
            kind: *b"stsd",
            body: start + VISUAL_ENTRY_BYTES,
            end,
        };
        let walked = self.children(&extensions, |src, child| {
            let mut b = [0u8; 10];
            let n = src.body(child, &mut b)?;
            match &child.kind {
                b"pasp" if n >= 8 => {
                    track.pasp_seen = true;
                    let (h, v) = (be32(&b, 0), be32(&b, 4));
                    if h > 0 && v > 0 && h != v {
                        track.pixel_aspect = Some((h, v));
                    }
                }
                // `nclx` (ISO) and `nclc` (QuickTime) share the three code
                // points; `prof`/`rICC` (ICC profiles) say nothing we use.
                b"colr" if n >= 10 && matches!(&b[..4], b"nclx" | b"nclc") => {
                    track.colour = Some(Colour {
                        primaries: u16::from_be_bytes([b[4], b[5]]),
                        transfer: u16::from_be_bytes([b[6], b[7]]),
                        matrix: u16::from_be_bytes([b[8], b[9]]),
                    });
                }
                _ => {}
            }
            Ok(())
        });
        match walked {
            Err(Mp4Error::Malformed(_)) => Ok(()),
            other => other,
        }
    }

    fn stbl(&mut self, stbl: &BoxHeader, track: &mut Track) -> Result<(), Mp4Error> {
        self.children(stbl, |src, child| {
            match &child.kind {
                b"stsd" => {
                    // version/flags, entry count, then the first sample entry:
                    // size, format, 6 reserved, data ref index; a visual entry
                    // then has 16 bytes of pre_defined/reserved, width, height.
                    let mut b = [0u8; 44];
                    let n = src.body(child, &mut b)?;
                    if n >= 16 {
                        track.codec = [b[12], b[13], b[14], b[15]];
                    }
                    if n >= 44 && &track.handler == b"vide" {
                        let w = u16::from_be_bytes([b[40], b[41]]);
                        let h = u16::from_be_bytes([b[42], b[43]]);
                        track.entry_size = (u32::from(w), u32::from(h));
                        src.visual_entry_extensions(child, be32(&b, 8), track)?;
                    }
                }
                b"stsz" | b"stz2" => {
                    // version/flags, sample size (stz2: reserved, field
                    // size), count, then (stsz, size 0) the first size.
                    let mut b = [0u8; 16];
                    let n = src.body(child, &mut b)?;
                    if n >= 12 {
                        track.sample_count = Some(be32(&b, 8));
                    }
                    if &child.kind == b"stsz" && n >= 12 && be32(&b, 8) > 0 {
                        track.first_sample_size = match be32(&b, 4) {
                            0 if n >= 16 => Some(be32(&b, 12)),
                            0 => None,
                            all => Some(all),
                        };
                    }
                }
                b"stco" | b"co64" => {
                    // version/flags, count, the first chunk's offset.
                    let mut b = [0u8; 16];
                    let n = src.body(child, &mut b)?;
                    let wide = &child.kind == b"co64";
                    if n >= if wide { 16 } else { 12 } && be32(&b, 4) > 0 {
                        track.first_chunk = Some(if wide {
                            be64(&b, 8)
                        } else {
                            u64::from(be32(&b, 8))
                        });
                    }
                }
                b"stsc" => {
                    // version/flags, count, then (first chunk, samples per
                    // chunk, description): the first entry must start at
                    // chunk 1 and hold a sample.
                    let mut b = [0u8; 16];
                    let n = src.body(child, &mut b)?;
                    track.first_chunk_has_samples =
                        n >= 16 && be32(&b, 4) > 0 && be32(&b, 8) == 1 && be32(&b, 12) > 0;
                }
                _ => {}
            }
            Ok(())
        })
    }
}

/// Clockwise rotation of a track matrix `[a b u; c d v; x y w]` (points map as
/// `x' = a·x + c·y`, `y' = b·x + d·y`, screen y pointing down). A phone held
/// upright records `a=0 b=1 c=-1 d=0`: the stored landscape frame is shown
/// turned 90° clockwise. Mirrored or non-right-angle matrices give `None`.
fn rotation_cw(a: f64, b: f64, c: f64, d: f64) -> Option<u16> {
    if a * d - b * c <= 0.0 {
        return None;
    }
    let degrees = b.atan2(a).to_degrees();
    let quarter = (degrees / 90.0).round();
    if (degrees - quarter * 90.0).abs() > 1.0 {
        return None;
    }
    Some((quarter as i64).rem_euclid(4) as u16 * 90)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_rotations_are_clockwise_degrees() {
        assert_eq!(rotation_cw(1.0, 0.0, 0.0, 1.0), Some(0));
        assert_eq!(rotation_cw(0.0, 1.0, -1.0, 0.0), Some(90));
        assert_eq!(rotation_cw(-1.0, 0.0, 0.0, -1.0), Some(180));
        assert_eq!(rotation_cw(0.0, -1.0, 1.0, 0.0), Some(270));
        assert_eq!(rotation_cw(-1.0, 0.0, 0.0, 1.0), None, "mirror");
        assert_eq!(rotation_cw(0.0, 0.0, 0.0, 0.0), None, "zero matrix");
        assert_eq!(rotation_cw(0.7, 0.7, -0.7, 0.7), None, "45 degrees");
    }
}
