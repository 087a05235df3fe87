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
//! `com.apple.quicktime.content.identifier`: read by [`meta::meta_content_id`]
//! from the one small `meta` box.
//!
//! H.263 (`s263`, 3GPP's; QuickTime's `h263`) states its pixel aspect in
//! each picture header, not in the container: 12:11 for the standard
//! formats. Where the container says nothing (no `pasp`, `tkhd` the coded
//! size), ffmpeg shows the picture at the aspect its decoder reads, so the
//! first picture header is read too ([`h263_pixel_aspect`]): a few bytes
//! at the first sample's offset (`stco`/`co64`, `stsc`, `stsz`).

use crate::model::FileType;
use std::io::{self, Read, Seek};

use source::Source;

mod fragments;
mod h263;
mod meta;
mod movie;
mod source;
mod track;

pub use h263::h263_pixel_aspect;

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
    /// The Live Photo content identifier (see [`meta::meta_content_id`]).
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

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    (u64::from(be32(b, at)) << 32) | u64::from(be32(b, at + 4))
}

#[cfg(test)]
mod tests;
