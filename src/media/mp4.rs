//! Native ISO-BMFF (MP4/MOV/M4A/3GP) header reader: hops from box header to
//! box header, reads only the few small boxes that say what the file holds
//! (mvhd, tkhd, mdhd, hdlr, stsd, stsz) and seeks over everything else, so a
//! 4 GB video with its `moov` at the end costs a handful of small reads.
//!
//! A fragmented file (what OBS, action cams and screen recorders write: an
//! empty `moov` with `mvex`, the samples in `moof`+`mdat` pairs) states no
//! duration in its `moov`; it is summed from the fragment headers
//! (`tfdt`/`trun`), hopping over each `mdat` as over any other box.
//!
//! An iPhone's Live Photo video names the photo it belongs to in its
//! QuickTime metadata (`moov/meta`: `hdlr` `mdta`, `keys`, `ilst`), key
//! `com.apple.quicktime.content.identifier`: read by [`meta_content_id`]
//! from the one small `meta` box.
//!
//! H.263 (`s263`, 3GPP's; QuickTime's `h263`) states its pixel aspect in
//! each picture header, not in the container: 12:11 for the standard
//! formats. Where the container says nothing (no `pasp`, `tkhd` the coded
//! size), ffmpeg shows the picture at the aspect its decoder reads, so the
//! first picture header is read too ([`h263_pixel_aspect`]): a few bytes
//! at the first sample's offset (`stco`/`co64`, `stsc`, `stsz`).

use crate::model::FileType;
use std::io::{self, BufReader, Read, Seek, SeekFrom};

/// Seconds from the ISO-BMFF epoch (1904-01-01) to the unix epoch.
const MP4_EPOCH_OFFSET_SECS: i64 = 2_082_844_800;
/// Caps the boxes visited in one container. Every box is at least 8 bytes so
/// the walk ends anyway; this bounds the work a hostile file can cause.
const MAX_BOXES_PER_CONTAINER: usize = 10_000;
/// Tracks beyond this many are ignored (real files have a handful).
const MAX_TRACKS: usize = 64;
/// Top-level boxes visited after the `moov` of a fragmented file: a moof
/// and an mdat per fragment, so 50,000 fragments (28 hours of a recording
/// cut every 2 s). Past it the duration is unknown rather than short.
const MAX_FRAGMENT_BOXES: usize = 100_000;
/// `trun` sample entries are read in slices of this many bytes: a fixed
/// buffer whatever the sample count a file claims.
const TRUN_CHUNK_BYTES: usize = 4 * 1024;
/// Read-ahead: large enough that a fast-start `moov` header region usually
/// arrives in one read, small enough that skipping costs nothing.
const READ_BUF_BYTES: usize = 16 * 1024;
/// A `meta` box larger than this is not read for the content identifier
/// (an iPhone's is under 2 KiB: a dozen keys and their values).
const MAX_META_BYTES: usize = 64 * 1024;
/// The QuickTime metadata key of a Live Photo video's content identifier.
const CONTENT_ID_KEY: &[u8] = b"com.apple.quicktime.content.identifier";

/// Box types a file may start with; anything else is not ISO-BMFF.
const FIRST_BOX_KINDS: [&[u8; 4]; 8] = [
    b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid",
];
/// Video codecs that carry still pictures: a track of these is cover art or
/// chapter images, not a video, unless it really plays (enabled, > 1 sample).
const STILL_IMAGE_CODECS: [&[u8; 4]; 5] = [b"jpeg", b"png ", b"gif ", b"tiff", b"bmp "];
/// H.263 sample entries: 3GPP's and QuickTime's.
const H263_CODECS: [&[u8; 4]; 2] = [b"s263", b"h263"];
/// Bytes of the first H.263 sample read for its picture header (at most
/// 14 bytes long after the start code) and the few bytes ffmpeg's
/// start-code search would skip before it.
const H263_HEADER_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum Mp4Error {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not an iso-bmff (mp4/mov) file")]
    NotIsoBmff,
    #[error("no moov box: the file is truncated or still being written")]
    NoMoov,
    #[error("malformed {0} box")]
    Malformed(&'static str),
}

/// What the container header says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mp4Info {
    /// Presentation duration in seconds, when the header states one.
    pub duration_secs: Option<f64>,
    /// `mvhd` creation time as unix seconds, when set.
    pub creation_time: Option<i64>,
    /// The main video track, if any.
    pub video: Option<VideoTrack>,
    /// Whether any sound track exists.
    pub has_audio: bool,
    /// The Live Photo content identifier (see [`meta_content_id`]).
    pub content_id: Option<String>,
}

impl Mp4Info {
    /// Type by content (spec §12.1): any video → video, sound only → audio.
    pub fn file_type(&self) -> FileType {
        if self.video.is_some() {
            FileType::Video
        } else if self.has_audio {
            FileType::Audio
        } else {
            FileType::Other
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoTrack {
    /// Stored (pre-rotation) size in pixels; 0 when the header does not say.
    pub width: u32,
    pub height: u32,
    /// Clockwise display rotation from the track matrix: 0, 90, 180 or 270.
    /// `None` when the matrix is not a plain rotation (mirrored, skewed).
    pub rotation_cw: Option<u16>,
    /// Pixel aspect ratio (`pasp`: horizontal, vertical spacing) when it is
    /// not square: anamorphic video is shown wider or narrower than stored.
    pub pixel_aspect: Option<(u32, u32)>,
    /// Colour description of the sample entry (`colr`, `nclx`/`nclc`).
    pub colour: Option<Colour>,
}

/// ISO/IEC 23091-2 code points, as the `colr` box and ffmpeg name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Colour {
    pub primaries: u16,
    pub transfer: u16,
    pub matrix: u16,
}

impl Colour {
    /// BT.2020 colour primaries.
    pub(crate) const PRIMARIES_BT2020: u16 = 9;
    /// SMPTE ST 2084 (PQ): HDR10, Dolby Vision 8.1.
    pub(crate) const TRANSFER_PQ: u16 = 16;
    /// ARIB STD-B67 (HLG): iPhone HDR video, Dolby Vision 8.4.
    pub(crate) const TRANSFER_HLG: u16 = 18;

    /// The HDR transfer function, if this is HDR video (PQ or HLG).
    pub(crate) fn hdr_transfer(&self) -> Option<u16> {
        [Self::TRANSFER_PQ, Self::TRANSFER_HLG]
            .contains(&self.transfer)
            .then_some(self.transfer)
    }
}

/// Reads the header of an ISO-BMFF file. Errors on anything that is not a
/// complete, well-formed header; never panics, never reads media data.
pub fn read_info<R: Read + Seek>(inner: R) -> Result<Mp4Info, Mp4Error> {
    let mut src = Source::new(inner)?;
    let file_end = src.len;
    let mut pos = 0;
    let mut seen = 0usize;
    while let Some(hdr) = src.header(pos, file_end)? {
        if seen == 0 && !FIRST_BOX_KINDS.contains(&&hdr.kind) {
            return Err(Mp4Error::NotIsoBmff);
        }
        seen += 1;
        if hdr.end > file_end {
            // A cut-off box at the top level: fine if it is `mdat` and the
            // movie header came first, fatal otherwise.
            return Err(if &hdr.kind == b"moov" {
                Mp4Error::Malformed("moov")
            } else {
                Mp4Error::NoMoov
            });
        }
        if &hdr.kind == b"moov" {
            let (mut info, fragmented) = src.moov(&hdr)?;
            if let Some(tracks) = fragmented {
                let moov_secs = info.duration_secs;
                info.duration_secs = src.fragments_secs(hdr.end, tracks, moov_secs)?;
            }
            return Ok(info);
        }
        if seen >= MAX_BOXES_PER_CONTAINER {
            break;
        }
        pos = hdr.end;
    }
    Err(if seen == 0 {
        Mp4Error::NotIsoBmff
    } else {
        Mp4Error::NoMoov
    })
}

#[derive(Debug, Clone, Copy)]
struct BoxHeader {
    kind: [u8; 4],
    /// First byte after the header.
    body: u64,
    /// One past the last byte of the box.
    end: u64,
}

/// One track's facts, gathered while walking `trak`.
#[derive(Debug, Default)]
struct Track {
    id: u32,
    handler: [u8; 4],
    enabled: bool,
    tkhd_size: (u32, u32),
    rotation_cw: Option<u16>,
    codec: [u8; 4],
    entry_size: (u32, u32),
    sample_count: Option<u32>,
    media_secs: Option<f64>,
    timescale: u32,
    /// `mdhd` duration in `timescale` units (0: unknown or empty).
    media_units: u64,
    pixel_aspect: Option<(u32, u32)>,
    /// Whether the sample entry has a `pasp`, square or not (ffmpeg then
    /// takes the container's aspect over the stream's).
    pasp_seen: bool,
    colour: Option<Colour>,
    /// Where the first sample is: the first chunk's offset (`stco`,
    /// `co64`), if `stsc` puts a sample in that chunk...
    first_chunk: Option<u64>,
    first_chunk_has_samples: bool,
    /// ...and its size (`stsz`).
    first_sample_size: Option<u32>,
    /// The pixel aspect the first H.263 picture header states, when the
    /// container states none (see [`h263_pixel_aspect`]).
    coded_aspect: Option<(u32, u32)>,
}

impl Track {
    fn is_video(&self) -> bool {
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
    fn stored_size(&self) -> (u32, u32) {
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

/// A track of a fragmented movie, in its own time units.
#[derive(Debug)]
struct FragTrack {
    id: u32,
    timescale: u32,
    /// `trex` default sample duration, for fragments that state none.
    default_duration: u32,
    /// Duration of the samples inside the moov itself.
    in_moov: u64,
    /// Decode time of the first fragment.
    start: Option<u64>,
    /// Decode time after the last sample seen so far.
    end: u64,
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

/// The file plus our own idea of the position, so forward hops inside the
/// read-ahead buffer cost no system call.
struct Source<R> {
    r: BufReader<R>,
    pos: u64,
    len: u64,
}

impl<R: Read + Seek> Source<R> {
    fn new(mut inner: R) -> io::Result<Self> {
        let len = inner.seek(SeekFrom::End(0))?;
        inner.seek(SeekFrom::Start(0))?;
        Ok(Source {
            r: BufReader::with_capacity(READ_BUF_BYTES, inner),
            pos: 0,
            len,
        })
    }

    fn goto(&mut self, pos: u64) -> io::Result<()> {
        if pos != self.pos {
            // Both are ≤ the file length, which fits an i64 on every OS.
            let delta = pos as i128 - self.pos as i128;
            self.r.seek_relative(delta as i64)?;
            self.pos = pos;
        }
        Ok(())
    }

    fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        self.goto(pos)?;
        self.r.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// Reads the box header at `pos` inside a parent ending at `parent_end`.
    /// `None` when fewer than 8 bytes remain (the end, or trailing padding).
    /// The returned `end` may exceed `parent_end`; callers decide.
    fn header(&mut self, pos: u64, parent_end: u64) -> Result<Option<BoxHeader>, Mp4Error> {
        if parent_end.saturating_sub(pos) < 8 || pos >= self.len {
            return Ok(None);
        }
        let mut h = [0u8; 8];
        self.read_at(pos, &mut h)?;
        let kind = [h[4], h[5], h[6], h[7]];
        let size32 = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        let (body, size) = match size32 {
            // 64-bit size follows the type.
            1 => {
                if parent_end.saturating_sub(pos) < 16 {
                    return Err(Mp4Error::Malformed("64-bit size"));
                }
                let mut large = [0u8; 8];
                self.read_at(pos + 8, &mut large)?;
                (pos + 16, u64::from_be_bytes(large))
            }
            // Extends to the end of the enclosing box (or file).
            0 => (pos + 8, parent_end - pos),
            n => (pos + 8, u64::from(n)),
        };
        if size < body - pos {
            return Err(Mp4Error::Malformed("undersized"));
        }
        let end = pos
            .checked_add(size)
            .ok_or(Mp4Error::Malformed("oversized"))?;
        Ok(Some(BoxHeader { kind, body, end }))
    }

    /// Calls `visit` for each child box of `parent`, which must lie inside it.
    fn children(
        &mut self,
        parent: &BoxHeader,
        mut visit: impl FnMut(&mut Self, &BoxHeader) -> Result<(), Mp4Error>,
    ) -> Result<(), Mp4Error> {
        let mut pos = parent.body;
        for _ in 0..MAX_BOXES_PER_CONTAINER {
            let Some(child) = self.header(pos, parent.end)? else {
                return Ok(());
            };
            if child.end > parent.end {
                return Err(Mp4Error::Malformed("child"));
            }
            visit(self, &child)?;
            pos = child.end;
        }
        Ok(())
    }

    /// Reads up to `buf.len()` bytes of a box body; returns how many.
    fn body(&mut self, hdr: &BoxHeader, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min((hdr.end - hdr.body).try_into().unwrap_or(usize::MAX));
        self.read_at(hdr.body, &mut buf[..n])?;
        Ok(n)
    }

    /// The movie header's facts, and for a fragmented file whose `moov`
    /// states no overall duration (`mehd`) the tracks whose fragments are
    /// to be summed.
    fn moov(&mut self, moov: &BoxHeader) -> Result<(Mp4Info, Option<Vec<FragTrack>>), Mp4Error> {
        let mut mvhd: Option<(u32, u64, u64)> = None; // timescale, duration, created
        let mut fragment_duration = None;
        let mut tracks: Vec<Track> = Vec::new();
        // trex per track: (track id, default sample duration).
        let mut trex: Option<Vec<(u32, u32)>> = None;
        let mut content_id = None;
        self.children(moov, |src, child| {
            match &child.kind {
                b"mvhd" => mvhd = Some(src.mvhd(child)?),
                // iPhones put it in `moov`, some writers in `moov/udta`.
                b"meta" if content_id.is_none() => content_id = src.content_id(child)?,
                b"udta" if content_id.is_none() => src.children(child, |src, child| {
                    if &child.kind == b"meta" && content_id.is_none() {
                        content_id = src.content_id(child)?;
                    }
                    Ok(())
                })?,
                b"trak" if tracks.len() < MAX_TRACKS => tracks.push(src.trak(child)?),
                b"mvex" => {
                    let defaults = trex.get_or_insert_with(Vec::new);
                    src.children(child, |src, child| {
                        match &child.kind {
                            b"mehd" => fragment_duration = Some(src.mehd(child)?),
                            b"trex" if defaults.len() < MAX_TRACKS => {
                                // version/flags, track id, description index,
                                // default duration.
                                let mut b = [0u8; 16];
                                if src.body(child, &mut b)? == 16 {
                                    defaults.push((be32(&b, 4), be32(&b, 12)));
                                }
                            }
                            _ => {}
                        }
                        Ok(())
                    })?
                }
                _ => {}
            }
            Ok(())
        })?;
        // Without `mehd`, `mvhd` covers only the samples inside the moov
        // (none, for an empty moov): the fragments say the rest.
        let fragmented = trex.filter(|_| fragment_duration.is_none()).map(|trex| {
            tracks
                .iter()
                .filter(|t| t.timescale > 0)
                .map(|t| FragTrack {
                    id: t.id,
                    timescale: t.timescale,
                    default_duration: trex
                        .iter()
                        .find(|(id, _)| *id == t.id)
                        .map_or(0, |&(_, d)| d),
                    in_moov: t.media_units,
                    start: None,
                    end: t.media_units,
                })
                .collect()
        });
        let (timescale, duration, created) =
            mvhd.ok_or(Mp4Error::Malformed("moov without mvhd"))?;
        let movie_secs = [Some(duration), fragment_duration]
            .into_iter()
            .flatten()
            .find(|&d| d != 0 && d != u64::MAX && d != u64::from(u32::MAX))
            .filter(|_| timescale > 0)
            .map(|d| d as f64 / f64::from(timescale));
        // Fall back to the longest track when the movie header says nothing.
        let duration_secs = movie_secs.or_else(|| {
            tracks
                .iter()
                .filter_map(|t| t.media_secs)
                .max_by(|a, b| a.total_cmp(b))
        });
        let creation_time = i64::try_from(created)
            .ok()
            .map(|t| t - MP4_EPOCH_OFFSET_SECS)
            .filter(|&t| t > 0);
        // Prefer an enabled video track: disabled ones are alternates.
        let main = tracks
            .iter_mut()
            .filter(|t| t.is_video())
            .max_by_key(|t| t.enabled);
        let video = main.map(|t| {
            t.coded_aspect = self.h263_aspect(t);
            let (width, height) = t.stored_size();
            VideoTrack {
                width,
                height,
                rotation_cw: t.rotation_cw,
                pixel_aspect: t.pixel_aspect.or(t.coded_aspect),
                colour: t.colour,
            }
        });
        let info = Mp4Info {
            duration_secs,
            creation_time,
            video,
            has_audio: tracks.iter().any(|t| &t.handler == b"soun"),
            content_id,
        };
        Ok((info, fragmented))
    }

    /// The pixel aspect of H.263 track `t`'s first picture header, when the
    /// container states none: no `pasp` (ffmpeg's mov demuxer sets the
    /// stream's aspect from it, even 1:1) and `tkhd` zero or the coded size
    /// (a different one sets it too). ffmpeg then shows the decoder's.
    /// At most [`H263_HEADER_BYTES`] are read; a sample that is not where
    /// the tables say, or cut short, says nothing (never an error).
    fn h263_aspect(&mut self, t: &Track) -> Option<(u32, u32)> {
        let (w, h) = t.tkhd_size;
        let tkhd_says = w > 0 && h > 0 && t.tkhd_size != t.entry_size;
        if !H263_CODECS.contains(&&t.codec) || t.pasp_seen || tkhd_says {
            return None;
        }
        let at = t.first_chunk.filter(|_| t.first_chunk_has_samples)?;
        let size = t.first_sample_size.filter(|&n| n > 0)?;
        let n = (size as usize)
            .min(H263_HEADER_BYTES)
            .min(usize::try_from(self.len.checked_sub(at)?).unwrap_or(usize::MAX));
        let mut b = [0u8; H263_HEADER_BYTES];
        self.read_at(at, &mut b[..n]).ok()?;
        h263_pixel_aspect(&b[..n])
    }

    /// The content identifier of one `meta` box, read whole when small
    /// (see [`meta_content_id`]); a larger one is skipped.
    fn content_id(&mut self, meta: &BoxHeader) -> Result<Option<String>, Mp4Error> {
        let len = meta.end - meta.body;
        if len > MAX_META_BYTES as u64 {
            return Ok(None);
        }
        let mut body = vec![0u8; len as usize];
        self.body(meta, &mut body)?;
        Ok(meta_content_id(&body))
    }

    /// Duration of a fragmented movie in seconds: for each track the end
    /// of its last fragment (`tfdt` decode time, or the running sum where
    /// a fragment has none, plus its `trun` sample durations), the longest
    /// track winning. Walks the top-level boxes after the `moov` (reading
    /// `moof`s, skipping `mdat`s); a damaged or cut-off tail (a recording
    /// that crashed) ends the walk with what the whole fragments said.
    fn fragments_secs(
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

    /// (timescale, duration, creation time since 1904) from `mvhd`.
    fn mvhd(&mut self, hdr: &BoxHeader) -> Result<(u32, u64, u64), Mp4Error> {
        let mut b = [0u8; 32];
        let n = self.body(hdr, &mut b)?;
        let b = &b[..n];
        match b.first() {
            Some(1) if n >= 32 => Ok((be32(b, 20), be64(b, 24), be64(b, 4))),
            Some(0) if n >= 20 => Ok((be32(b, 12), u64::from(be32(b, 16)), u64::from(be32(b, 4)))),
            _ => Err(Mp4Error::Malformed("mvhd")),
        }
    }

    fn mehd(&mut self, hdr: &BoxHeader) -> Result<u64, Mp4Error> {
        let mut b = [0u8; 12];
        let n = self.body(hdr, &mut b)?;
        match b[0] {
            1 if n >= 12 => Ok(be64(&b, 4)),
            0 if n >= 8 => Ok(u64::from(be32(&b, 4))),
            _ => Err(Mp4Error::Malformed("mehd")),
        }
    }

    fn trak(&mut self, trak: &BoxHeader) -> Result<Track, Mp4Error> {
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

/// The Live Photo content identifier in the body of a QuickTime `meta` box
/// (ffmpeg's `mov_read_meta`/`mov_read_keys`/`mov_read_ilst` read the same
/// layout): an `hdlr` of type `mdta`, a `keys` box (version and flags, a
/// count, then per key its size including 8 header bytes, a namespace and
/// the name) and an `ilst` whose children are named by 1-based key index,
/// each holding a `data` box (type, locale, value). QuickTime's `meta` has
/// no version and flags, ISO's has: both are accepted, as ffmpeg does.
/// Pure and bounded: sizes are checked against `body` and a value that is
/// not printable ASCII is none (`exifmeta::content_id_text`).
pub(crate) fn meta_content_id(body: &[u8]) -> Option<String> {
    let hdlr_at = [0, 4]
        .into_iter()
        .find(|&at| body.get(at + 4..at + 8) == Some(b"hdlr"))?;
    let boxes = slice_boxes(&body[hdlr_at..]);
    let (_, hdlr) = boxes.iter().find(|(k, _)| k == b"hdlr")?;
    // version/flags, pre-defined, then the handler type.
    if hdlr.get(8..12) != Some(b"mdta") {
        return None;
    }
    let (_, keys) = boxes.iter().find(|(k, _)| k == b"keys")?;
    let count = keys.get(4..8).map(|b| be32(b, 0))?;
    let mut at = 8usize;
    let mut index = None;
    for i in 1..=count {
        let size = usize::try_from(be32(keys.get(at..at + 4)?, 0)).ok()?;
        let key = keys.get(at + 8..at.checked_add(size)?)?;
        if size < 8 {
            return None;
        }
        if key == CONTENT_ID_KEY {
            index = Some(i);
            break;
        }
        at += size;
    }
    let index = index?.to_be_bytes();
    let (_, ilst) = boxes.iter().find(|(k, _)| k == b"ilst")?;
    let (_, item) = slice_boxes(ilst).into_iter().find(|(k, _)| *k == index)?;
    let (_, data) = slice_boxes(item).into_iter().find(|(k, _)| k == b"data")?;
    // Type 1: UTF-8 text; then a 4-byte locale.
    if data.get(..4).map(|b| be32(b, 0)) != Some(1) {
        return None;
    }
    super::exifmeta::content_id_text(data.get(8..)?)
}

/// The boxes laid end to end in `b` as (type, body), up to the first that
/// does not fit (or a 64-bit or to-the-end size, which small metadata
/// boxes never use).
fn slice_boxes(b: &[u8]) -> Vec<([u8; 4], &[u8])> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(head) = b.get(at..at + 8) {
        let size = be32(head, 0) as usize;
        let Some(body) = b.get(at + 8..at.saturating_add(size)) else {
            break;
        };
        if size < 8 || out.len() >= MAX_BOXES_PER_CONTAINER {
            break;
        }
        out.push(([head[4], head[5], head[6], head[7]], body));
        at += size;
    }
    out
}

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

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    (u64::from(be32(b, at)) << 32) | u64::from(be32(b, at + 4))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    fn mvhd_v1(timescale: u32, duration: u64, created: u64) -> Vec<u8> {
        let mut b = vec![1, 0, 0, 0];
        b.extend_from_slice(&created.to_be_bytes());
        b.extend_from_slice(&created.to_be_bytes());
        b.extend_from_slice(&timescale.to_be_bytes());
        b.extend_from_slice(&duration.to_be_bytes());
        b.resize(108, 0);
        bx(b"mvhd", &b)
    }

    fn mvhd_v0(timescale: u32, duration: u32) -> Vec<u8> {
        let mut b = vec![0u8; 96];
        b[12..16].copy_from_slice(&timescale.to_be_bytes());
        b[16..20].copy_from_slice(&duration.to_be_bytes());
        bx(b"mvhd", &b)
    }

    fn tkhd(flags: u8, matrix: [i32; 4], w: u32, h: u32) -> Vec<u8> {
        let mut b = vec![0u8; 84];
        b[3] = flags;
        let [a, bb, c, d] = matrix;
        for (i, v) in [a, bb, 0, c, d, 0, 0, 0, 0x4000_0000].iter().enumerate() {
            b[40 + 4 * i..44 + 4 * i].copy_from_slice(&v.to_be_bytes());
        }
        b[76..80].copy_from_slice(&(w << 16).to_be_bytes());
        b[80..84].copy_from_slice(&(h << 16).to_be_bytes());
        bx(b"tkhd", &b)
    }

    fn hdlr(handler: &[u8; 4]) -> Vec<u8> {
        let mut b = vec![0u8; 8];
        b.extend_from_slice(handler);
        b.extend_from_slice(&[0; 13]);
        bx(b"hdlr", &b)
    }

    fn stsd_visual(codec: &[u8; 4], w: u16, h: u16) -> Vec<u8> {
        let mut b = vec![0, 0, 0, 0, 0, 0, 0, 1];
        let mut entry = vec![0u8; 78];
        entry[24..26].copy_from_slice(&w.to_be_bytes());
        entry[26..28].copy_from_slice(&h.to_be_bytes());
        b.extend_from_slice(&bx(codec, &entry));
        bx(b"stsd", &b)
    }

    fn trak(tkhd_box: Vec<u8>, handler: &[u8; 4], stsd: Vec<u8>) -> Vec<u8> {
        let stbl = bx(b"stbl", &stsd);
        let minf = bx(b"minf", &stbl);
        let mdia = bx(b"mdia", &[hdlr(handler), minf].concat());
        bx(b"trak", &[tkhd_box, mdia].concat())
    }

    const IDENTITY: [i32; 4] = [0x10000, 0, 0, 0x10000];
    const CW90: [i32; 4] = [0, 0x10000, -0x10000, 0];

    fn ftyp() -> Vec<u8> {
        bx(b"ftyp", b"isom\0\0\x02\0isomiso2")
    }

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

    #[test]
    fn reads_v1_header_64bit_sizes_and_size_zero_mdat() {
        // ftyp, a 64-bit-size free box, moov, then mdat running to EOF (size 0).
        let mut free = vec![0, 0, 0, 1];
        free.extend_from_slice(b"free");
        free.extend_from_slice(&24u64.to_be_bytes());
        free.extend_from_slice(&[0xAB; 8]);
        let created = 2_082_844_800 + 1_600_000_000;
        let video = trak(
            tkhd(3, CW90, 1920, 1080),
            b"vide",
            stsd_visual(b"avc1", 1920, 1080),
        );
        let audio = trak(tkhd(3, IDENTITY, 0, 0), b"soun", bx(b"stsd", &[0; 8]));
        let moov = bx(
            b"moov",
            &[mvhd_v1(1000, 12_500, created), video, audio].concat(),
        );
        let mut file = [ftyp(), free, moov].concat();
        file.extend_from_slice(&[0, 0, 0, 0]);
        file.extend_from_slice(b"mdat");
        file.extend_from_slice(&[0x55; 100]);
        let info = read_info(Cursor::new(file)).unwrap();
        assert_eq!(info.duration_secs, Some(12.5));
        assert_eq!(info.creation_time, Some(1_600_000_000));
        assert!(info.has_audio);
        assert_eq!(
            info.video,
            Some(VideoTrack {
                width: 1920,
                height: 1080,
                rotation_cw: Some(90),
                pixel_aspect: None,
                colour: None,
            })
        );
        assert_eq!(info.file_type(), FileType::Video);
    }

    #[test]
    fn sample_entry_size_fills_in_for_zero_tkhd_and_audio_only_is_audio() {
        let video = trak(
            tkhd(3, IDENTITY, 0, 0),
            b"vide",
            stsd_visual(b"mp4v", 640, 480),
        );
        let moov = bx(b"moov", &[mvhd_v0(600, 1200), video].concat());
        let info = read_info(Cursor::new([ftyp(), moov].concat())).unwrap();
        let v = info.video.unwrap();
        assert_eq!((v.width, v.height, v.rotation_cw), (640, 480, Some(0)));
        assert_eq!(info.duration_secs, Some(2.0));
        assert_eq!(info.creation_time, None);

        let audio = trak(tkhd(3, IDENTITY, 0, 0), b"soun", bx(b"stsd", &[0; 8]));
        let moov = bx(b"moov", &[mvhd_v0(600, 1200), audio].concat());
        let info = read_info(Cursor::new([ftyp(), moov].concat())).unwrap();
        assert_eq!(info.file_type(), FileType::Audio);
        assert_eq!(info.video, None);
    }

    #[test]
    fn disabled_chapter_image_track_is_not_video() {
        let chapters = trak(
            tkhd(2, IDENTITY, 300, 300),
            b"vide",
            stsd_visual(b"jpeg", 300, 300),
        );
        let audio = trak(tkhd(3, IDENTITY, 0, 0), b"soun", bx(b"stsd", &[0; 8]));
        let moov = bx(b"moov", &[mvhd_v0(600, 1200), audio, chapters].concat());
        let info = read_info(Cursor::new([ftyp(), moov].concat())).unwrap();
        assert_eq!(info.file_type(), FileType::Audio);
    }

    const UUID: &str = "FFCBAC24-E547-4BBC-AF47-38B1A3D845E3";

    /// A QuickTime `meta` box as an iPhone writes it (no version and flags
    /// unless `iso`): `hdlr` mdta, `keys`, `ilst`, the content identifier
    /// under key `at` (1-based) among `keys`.
    fn meta(iso: bool, keys: &[&str], values: &[&str]) -> Vec<u8> {
        let mut hdlr = vec![0; 8];
        hdlr.extend_from_slice(b"mdta");
        hdlr.extend_from_slice(&[0; 13]);
        let mut k = vec![0, 0, 0, 0];
        k.extend_from_slice(&(keys.len() as u32).to_be_bytes());
        for key in keys {
            k.extend_from_slice(&(key.len() as u32 + 8).to_be_bytes());
            k.extend_from_slice(b"mdta");
            k.extend_from_slice(key.as_bytes());
        }
        let mut ilst = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let mut data = vec![0, 0, 0, 1, 0, 0, 0, 0];
            data.extend_from_slice(v.as_bytes());
            ilst.extend(bx(&(i as u32 + 1).to_be_bytes(), &bx(b"data", &data)));
        }
        let mut body = if iso { vec![0; 4] } else { Vec::new() };
        body.extend([bx(b"hdlr", &hdlr), bx(b"keys", &k), bx(b"ilst", &ilst)].concat());
        bx(b"meta", &body)
    }

    const KEY: &str = "com.apple.quicktime.content.identifier";

    #[test]
    fn a_live_photo_video_names_its_content_identifier() {
        let keys = ["com.apple.quicktime.make", KEY, "com.apple.quicktime.model"];
        let values = ["Apple", &UUID.to_lowercase(), "iPhone 15"];
        // iPhone: moov/meta without version; ffmpeg: moov/udta/meta, ISO.
        let iphone = bx(
            b"moov",
            &[mvhd_v0(600, 1200), meta(false, &keys, &values)].concat(),
        );
        let info = read_info(Cursor::new([ftyp(), iphone].concat())).unwrap();
        assert_eq!(info.content_id.as_deref(), Some(UUID));
        assert_eq!(info.duration_secs, Some(2.0));
        let udta = bx(b"udta", &meta(true, &[KEY], &[UUID]));
        let ffmpeg = bx(b"moov", &[udta, mvhd_v0(600, 1200)].concat());
        let info = read_info(Cursor::new([ftyp(), ffmpeg].concat())).unwrap();
        assert_eq!(info.content_id.as_deref(), Some(UUID));
        // Other keys only, or no meta: none.
        let other = bx(
            b"moov",
            &[mvhd_v0(600, 1200), meta(false, &keys[..1], &values[..1])].concat(),
        );
        assert_eq!(
            read_info(Cursor::new([ftyp(), other].concat()))
                .unwrap()
                .content_id,
            None
        );
    }

    /// Fuzz safety of the `meta` parser: every truncation and every byte
    /// changed of a real layout, and noise, give an identifier or none,
    /// never a panic or a read outside the box; the movie itself still
    /// reads when only its `meta` is damaged.
    #[test]
    fn damaged_meta_boxes_never_panic() {
        let good = meta(false, &["com.apple.quicktime.make", KEY], &["Apple", UUID]);
        let body = &good[8..];
        assert_eq!(meta_content_id(body).as_deref(), Some(UUID));
        for len in 0..body.len() {
            if let Some(id) = meta_content_id(&body[..len]) {
                assert!(UUID.starts_with(&id), "cut at {len}: {id}");
            }
        }
        for at in 0..body.len() {
            for v in [0x00, 0x07, 0x80, 0xFF] {
                let mut bad = body.to_vec();
                bad[at] = v;
                if let Some(id) = meta_content_id(&bad) {
                    assert!(id.is_ascii() && id.len() <= 64, "byte {at} = {v}: {id}");
                }
                let moov = bx(b"moov", &[mvhd_v0(600, 1200), bx(b"meta", &bad)].concat());
                let info = read_info(Cursor::new([ftyp(), moov].concat())).unwrap();
                assert_eq!(info.duration_secs, Some(2.0));
            }
        }
        // A key count of 2^32-1, a key size of 2^32-1.
        let mut many = body.to_vec();
        let keys_at = many.windows(4).position(|w| w == b"keys").unwrap();
        many[keys_at + 8..keys_at + 12].copy_from_slice(&[0xFF; 4]);
        let _ = meta_content_id(&many);
        many[keys_at + 12..keys_at + 16].copy_from_slice(&[0xFF; 4]);
        assert_eq!(meta_content_id(&many), None);
        let mut seed = 0x9E37_79B9_u32;
        for n in [0usize, 4, 8, 12, 40, 300] {
            let mut noise = b"\0\0\0\x21hdlr".to_vec();
            for _ in 0..n {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                noise.push((seed >> 24) as u8);
            }
            let _ = meta_content_id(&noise);
        }
    }

    #[test]
    fn broken_files_are_errors_not_panics() {
        let moov = bx(b"moov", &[mvhd_v0(600, 1200)].concat());
        let good = [ftyp(), moov].concat();
        // Every truncation of a valid file: error or (for a cut after moov) ok.
        for cut in 0..good.len() {
            assert!(
                read_info(Cursor::new(&good[..cut])).is_err(),
                "cut at {cut}"
            );
        }
        assert!(matches!(
            read_info(Cursor::new(b"GIF89a garbage".to_vec())),
            Err(Mp4Error::NotIsoBmff)
        ));
        assert!(matches!(
            read_info(Cursor::new([ftyp(), bx(b"mdat", &[0; 64])].concat())),
            Err(Mp4Error::NoMoov)
        ));
        // A child claiming to be larger than its parent, an undersized box,
        // a 64-bit size of 2^64-1, a version-2 mvhd.
        let mut liar = bx(b"moov", &mvhd_v0(600, 1200));
        liar[8..12].copy_from_slice(&1000u32.to_be_bytes());
        assert!(read_info(Cursor::new([ftyp(), liar].concat())).is_err());
        let mut tiny = ftyp();
        tiny.extend_from_slice(&[0, 0, 0, 4, b'm', b'o', b'o', b'v']);
        assert!(read_info(Cursor::new(tiny)).is_err());
        let mut huge = ftyp();
        huge.extend_from_slice(&[0, 0, 0, 1, b'm', b'd', b'a', b't']);
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(read_info(Cursor::new(huge)).is_err());
        let mut v2 = mvhd_v0(600, 1200);
        v2[8] = 2;
        assert!(read_info(Cursor::new([ftyp(), bx(b"moov", &v2)].concat())).is_err());
        // Pseudo-random bytes behind a valid ftyp.
        let mut seed = 0x1234_5678_u32;
        for _ in 0..200 {
            let mut file = ftyp();
            for _ in 0..256 {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                file.push((seed >> 24) as u8);
            }
            let _ = read_info(Cursor::new(file));
        }
    }

    /// A file of `prefix`, `hole` bytes nobody should read, then `suffix`;
    /// counts the bytes actually read.
    struct SparseFile {
        prefix: Vec<u8>,
        hole: u64,
        suffix: Vec<u8>,
        pos: u64,
        bytes_read: std::rc::Rc<std::cell::Cell<u64>>,
    }

    impl Read for SparseFile {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let p = self.prefix.len() as u64;
            let n = if self.pos < p {
                let src = &self.prefix[self.pos as usize..];
                let n = src.len().min(buf.len());
                buf[..n].copy_from_slice(&src[..n]);
                n
            } else if self.pos < p + self.hole {
                let n = (p + self.hole - self.pos).min(buf.len() as u64) as usize;
                buf[..n].fill(0);
                n
            } else {
                let at = (self.pos - p - self.hole) as usize;
                let src = self.suffix.get(at..).unwrap_or(&[]);
                let n = src.len().min(buf.len());
                buf[..n].copy_from_slice(&src[..n]);
                n
            };
            self.pos += n as u64;
            self.bytes_read.set(self.bytes_read.get() + n as u64);
            Ok(n)
        }
    }

    impl Seek for SparseFile {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            let len = self.prefix.len() as u64 + self.hole + self.suffix.len() as u64;
            self.pos = match to {
                SeekFrom::Start(p) => p,
                SeekFrom::End(d) => len.checked_add_signed(d).unwrap(),
                SeekFrom::Current(d) => self.pos.checked_add_signed(d).unwrap(),
            };
            Ok(self.pos)
        }
    }

    fn full_box(kind: &[u8; 4], version: u8, flags: u32, rest: &[u8]) -> Vec<u8> {
        let mut b = (flags | u32::from(version) << 24).to_be_bytes().to_vec();
        b.extend_from_slice(rest);
        bx(kind, &b)
    }

    /// A video track with id `id` and media timescale `timescale`, whose
    /// moov holds no samples (mdhd duration 0), with `extensions` after its
    /// visual sample entry.
    fn frag_trak(id: u32, timescale: u32, extensions: &[u8]) -> Vec<u8> {
        let mut tk = tkhd(3, IDENTITY, 0, 0);
        tk[8 + 12..8 + 16].copy_from_slice(&id.to_be_bytes());
        let mut mdhd = vec![0u8; 24];
        mdhd[12..16].copy_from_slice(&timescale.to_be_bytes());
        let mut entry = vec![0u8; 78];
        entry[24..26].copy_from_slice(&1440u16.to_be_bytes());
        entry[26..28].copy_from_slice(&1080u16.to_be_bytes());
        entry.extend_from_slice(extensions);
        let stsd = bx(
            b"stsd",
            &[vec![0, 0, 0, 0, 0, 0, 0, 1], bx(b"hvc1", &entry)].concat(),
        );
        let minf = bx(b"minf", &bx(b"stbl", &stsd));
        let mdia = bx(b"mdia", &[bx(b"mdhd", &mdhd), hdlr(b"vide"), minf].concat());
        bx(b"trak", &[tk, mdia].concat())
    }

    /// A moov for fragments: mvhd with no duration, one track, trex.
    fn frag_moov(id: u32, timescale: u32, trex_duration: u32, extensions: &[u8]) -> Vec<u8> {
        let mut trex = id.to_be_bytes().to_vec();
        trex.extend_from_slice(&1u32.to_be_bytes());
        trex.extend_from_slice(&trex_duration.to_be_bytes());
        trex.extend_from_slice(&[0; 8]);
        let mvex = bx(b"mvex", &full_box(b"trex", 0, 0, &trex));
        bx(
            b"moov",
            &[mvhd_v0(1000, 0), frag_trak(id, timescale, extensions), mvex].concat(),
        )
    }

    /// A moof with one traf: tfhd (with a default duration when given),
    /// tfdt (when given), a trun of `durations` (per sample when given,
    /// else `count` samples of the default) with sizes, then an mdat.
    fn fragment(
        id: u32,
        default: Option<u32>,
        decode_time: Option<u64>,
        count: u32,
        durations: Option<&[u32]>,
    ) -> Vec<u8> {
        let mut tfhd = id.to_be_bytes().to_vec();
        let mut tfhd_flags = 0x2_0000; // default-base-is-moof
        if let Some(d) = default {
            tfhd_flags |= 0x8;
            tfhd.extend_from_slice(&d.to_be_bytes());
        }
        let mut traf = full_box(b"tfhd", 0, tfhd_flags, &tfhd);
        if let Some(t) = decode_time {
            traf.extend(full_box(b"tfdt", 1, 0, &t.to_be_bytes()));
        }
        // data offset + per-sample (duration?) size
        let mut trun = count.to_be_bytes().to_vec();
        trun.extend_from_slice(&0u32.to_be_bytes());
        let mut trun_flags = 0x1 | 0x200;
        for i in 0..count as usize {
            if let Some(d) = durations {
                trun_flags |= 0x100;
                trun.extend_from_slice(&d[i].to_be_bytes());
            }
            trun.extend_from_slice(&100u32.to_be_bytes());
        }
        traf.extend(full_box(b"trun", 0, trun_flags, &trun));
        let moof = bx(
            b"moof",
            &[full_box(b"mfhd", 0, 0, &[0, 0, 0, 1]), bx(b"traf", &traf)].concat(),
        );
        [moof, bx(b"mdat", &vec![0x11; 100 * count as usize])].concat()
    }

    #[test]
    fn fragmented_movie_duration_is_summed_from_the_fragments() {
        let ts = 90_000;
        let per_sample = vec![3000u32; 30]; // 30 × 1/30 s
        let file = [
            ftyp(),
            frag_moov(1, ts, 3600, &[]),
            // 25 samples of trex's default (1 s), no tfdt: starts at 0.
            fragment(1, None, None, 25, None),
            // tfhd's default (1/30 s) for 30 samples: 1 s more.
            fragment(1, Some(3000), None, 30, None),
            // Per-sample durations at an explicit decode time.
            fragment(1, Some(1), Some(2 * 90_000), 30, Some(&per_sample)),
            // A fragment of a track the moov doesn't know: ignored.
            fragment(7, Some(90_000), None, 30, None),
        ]
        .concat();
        let info = read_info(Cursor::new(&file)).unwrap();
        assert_eq!(info.duration_secs, Some(3.0));
        assert_eq!(info.file_type(), FileType::Video);
        // A recording that crashed: the last mdat is cut off, and a trun
        // claiming more samples than its box holds ends the walk too.
        let cut = &file[..file.len() - 50];
        assert_eq!(
            read_info(Cursor::new(cut)).unwrap().duration_secs,
            Some(3.0)
        );
        let mut liar = fragment(1, Some(3000), None, 2, None);
        let at = liar.windows(4).position(|w| w == b"trun").unwrap() + 8;
        liar[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        let file = [
            ftyp(),
            frag_moov(1, ts, 3600, &[]),
            fragment(1, None, None, 25, None),
            liar,
        ]
        .concat();
        assert_eq!(
            read_info(Cursor::new(&file)).unwrap().duration_secs,
            Some(1.0)
        );
        // A stream cut from a live recording counts from its first fragment.
        let file = [
            ftyp(),
            frag_moov(1, ts, 3600, &[]),
            fragment(1, None, Some(1_000 * 90_000), 50, None),
        ]
        .concat();
        assert_eq!(
            read_info(Cursor::new(&file)).unwrap().duration_secs,
            Some(2.0)
        );
        // No fragments at all (an empty recording): no duration, no error.
        let file = [ftyp(), frag_moov(1, ts, 3600, &[])].concat();
        assert_eq!(read_info(Cursor::new(&file)).unwrap().duration_secs, None);
        // With mehd, the moov's word is taken and no fragment is read.
        let mehd = full_box(b"mehd", 0, 0, &4500u32.to_be_bytes());
        let mut moov = frag_moov(1, ts, 3600, &[]);
        let mvex = moov.windows(4).position(|w| w == b"mvex").unwrap() - 4;
        moov.splice(mvex + 8..mvex + 8, mehd.iter().copied());
        let grow = |v: &mut Vec<u8>, at: usize| {
            let n = u32::from_be_bytes(v[at..at + 4].try_into().unwrap()) + mehd.len() as u32;
            v[at..at + 4].copy_from_slice(&n.to_be_bytes());
        };
        grow(&mut moov, mvex);
        grow(&mut moov, 0);
        let file = [ftyp(), moov, fragment(1, None, None, 25, None)].concat();
        assert_eq!(
            read_info(Cursor::new(&file)).unwrap().duration_secs,
            Some(4.5)
        );
    }

    #[test]
    fn sample_entry_colour_and_pixel_aspect() {
        let colr = bx(b"colr", b"nclx\0\x09\0\x10\0\x09\x80");
        let pasp = bx(b"pasp", &[0, 0, 0, 4, 0, 0, 0, 3]);
        let moov = frag_moov(1, 600, 20, &[bx(b"hvcC", &[0; 23]), colr, pasp].concat());
        let v = read_info(Cursor::new([ftyp(), moov].concat()))
            .unwrap()
            .video
            .unwrap();
        let colour = Colour {
            primaries: 9,
            transfer: 16,
            matrix: 9,
        };
        assert_eq!(v.colour, Some(colour));
        assert_eq!(colour.hdr_transfer(), Some(Colour::TRANSFER_PQ));
        assert_eq!(v.pixel_aspect, Some((4, 3)));
        // No tkhd size: the coded 1440 is shown 4/3 as wide.
        assert_eq!((v.width, v.height), (1920, 1080));
        // QuickTime's nclc, HLG; SDR BT.709 is not HDR; an ICC profile and a
        // square pasp say nothing; a broken extension costs only itself.
        let colr = bx(b"colr", b"nclc\0\x09\0\x12\0\x09");
        let moov = frag_moov(1, 600, 20, &colr);
        let v = read_info(Cursor::new([ftyp(), moov].concat()))
            .unwrap()
            .video
            .unwrap();
        assert_eq!(
            v.colour.and_then(|c| c.hdr_transfer()),
            Some(Colour::TRANSFER_HLG)
        );
        let sdr = Colour {
            primaries: 1,
            transfer: 1,
            matrix: 1,
        };
        assert_eq!(sdr.hdr_transfer(), None);
        let extensions = [
            bx(b"colr", b"prof\0\0\0\0\0\0"),
            bx(b"pasp", &[0, 0, 0, 1, 0, 0, 0, 1]),
        ]
        .concat();
        let moov = frag_moov(1, 600, 20, &extensions);
        let v = read_info(Cursor::new([ftyp(), moov].concat()))
            .unwrap()
            .video
            .unwrap();
        assert_eq!((v.colour, v.pixel_aspect, v.width), (None, None, 1440));
        let mut broken = bx(b"colr", b"nclx\0\x09\0\x10\0\x09\x80");
        broken[3] = 200; // larger than the sample entry
        let moov = frag_moov(1, 600, 20, &broken);
        let v = read_info(Cursor::new([ftyp(), moov].concat()))
            .unwrap()
            .video
            .unwrap();
        assert_eq!((v.colour, v.width), (None, 1440));
    }

    #[test]
    fn four_gigabyte_mdat_is_skipped_not_read() {
        let hole = 4u64 << 30;
        let mut prefix = ftyp();
        prefix.extend_from_slice(&[0, 0, 0, 1]);
        prefix.extend_from_slice(b"mdat");
        prefix.extend_from_slice(&(hole + 16).to_be_bytes());
        let video = trak(
            tkhd(3, IDENTITY, 3840, 2160),
            b"vide",
            stsd_visual(b"hvc1", 3840, 2160),
        );
        let suffix = bx(b"moov", &[mvhd_v0(90_000, 90_000 * 600), video].concat());
        let bytes_read = std::rc::Rc::new(std::cell::Cell::new(0));
        let file = SparseFile {
            prefix,
            hole,
            suffix,
            pos: 0,
            bytes_read: bytes_read.clone(),
        };
        let info = read_info(file).unwrap();
        assert_eq!(info.duration_secs, Some(600.0));
        assert_eq!(info.video.unwrap().width, 3840);
        assert!(
            bytes_read.get() < 64 * 1024,
            "read {} bytes",
            bytes_read.get()
        );
    }

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
