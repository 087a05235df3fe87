//! The movie header (`moov`): its tracks summed up into what the file
//! holds, its duration and creation time; the first H.263 picture header
//! read where the container states no aspect.

use std::io::{Read, Seek};

use super::fragments::FragTrack;
use super::h263::h263_pixel_aspect;
use super::source::{BoxHeader, Source};
use super::track::Track;
use super::{be32, be64, Mp4Error, Mp4Info, VideoTrack};
use super::{H263_CODECS, H263_HEADER_BYTES, MAX_TRACKS, MP4_EPOCH_OFFSET_SECS};

impl<R: Read + Seek> Source<R> {
    /// The movie header's facts, and for a fragmented file whose `moov`
    /// states no overall duration (`mehd`) the tracks whose fragments are
    /// to be summed.
    pub(super) fn moov(
        &mut self,
        moov: &BoxHeader,
    ) -> Result<(Mp4Info, Option<Vec<FragTrack>>), Mp4Error> {
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
}
