//! Probing audio and video with ffprobe, under a timeout, on the file we
//! opened and with the demuxer our sniffing chose; and reading its JSON
//! report.

use crate::media::container;
use crate::media::exifmeta;
use crate::media::process::{self, FFPROBE_TIMEOUT};
use crate::model::{FileType, MediaInfo};
use serde::Deserialize;
use std::collections::HashMap;
use std::fs::File;
use std::io::Seek;
use std::path::Path;
use std::process::Command;

#[cfg(test)]
use super::open_checked;
use super::{display_dims, orientation_for_rotation, ProbeError, STILL_CODECS};

/// Runs ffprobe on `path` and reads its JSON report. Blocking.
///
/// ffprobe reads the file we opened (its standard input; the last component
/// must not be a symlink) with the demuxer our sniffing of its first bytes
/// chose, never one it guesses: a playlist or `concat` script named `.mp4`
/// would otherwise make it open the files listed (`container.rs`).
#[cfg(test)]
pub(crate) fn probe_with_ffprobe(path: &Path) -> Result<(FileType, MediaInfo), ProbeError> {
    // O_NONBLOCK: a FIFO in its place must not hang the probe thread.
    ffprobe_file(open_checked(path, None)?, path)
}

/// [`probe_with_ffprobe`] of a regular file already opened.
pub(super) fn ffprobe_file(file: File, path: &Path) -> Result<(FileType, MediaInfo), ProbeError> {
    let unrecognized = |reason: String| ProbeError::Unrecognized {
        path: path.display().to_string(),
        reason,
    };
    (&file).rewind().map_err(|e| ProbeError::io(path, e))?;
    let mut head = [0u8; container::SNIFF_BYTES];
    let n = crate::media::original::read_at_most(&file, &mut head, 0)
        .map_err(|e| ProbeError::io(path, e))?;
    let Some((c, demuxer)) = container::sniff(&head[..n]).and_then(|c| Some((c, c.demuxer()?)))
    else {
        return Err(unrecognized(
            "not an audio or video format isync reads".into(),
        ));
    };
    let mut cmd = Command::new(process::ffprobe_path());
    cmd.args(["-v", "error", "-print_format", "json"])
        .args(["-show_format", "-show_streams"])
        .args(process::input_args(demuxer, c.demuxer_options()));
    let json =
        process::run_on_file(cmd, file, FFPROBE_TIMEOUT).map_err(|source| ProbeError::Ffprobe {
            path: path.display().to_string(),
            source,
        })?;
    parse_ffprobe_json(&json).map_err(unrecognized)
}

#[derive(Debug, Deserialize)]
struct FfReport {
    #[serde(default)]
    streams: Vec<FfStream>,
    #[serde(default)]
    format: FfFormat,
}

#[derive(Debug, Default, Deserialize)]
struct FfFormat {
    duration: Option<String>,
    #[serde(default)]
    tags: HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct FfStream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<i64>,
    height: Option<i64>,
    /// Pixel aspect ratio, `"4:3"` (`"0:1"` or absent: unknown, square).
    sample_aspect_ratio: Option<String>,
    duration: Option<String>,
    nb_frames: Option<String>,
    #[serde(default)]
    disposition: HashMap<String, i64>,
    #[serde(default)]
    tags: HashMap<String, String>,
    #[serde(default)]
    side_data_list: Vec<FfSideData>,
}

#[derive(Debug, Deserialize)]
struct FfSideData {
    side_data_type: Option<String>,
    rotation: Option<f64>,
}

impl FfStream {
    fn is(&self, kind: &str) -> bool {
        self.codec_type.as_deref() == Some(kind)
    }

    /// A video stream that moves: not cover art, not a lone picture.
    fn is_moving_video(&self) -> bool {
        if !self.is("video") || self.disposition.get("attached_pic") == Some(&1) {
            return false;
        }
        let still_codec = self
            .codec_name
            .as_deref()
            .is_some_and(|c| STILL_CODECS.contains(&c));
        let frames = self
            .nb_frames
            .as_deref()
            .and_then(|n| n.parse::<u64>().ok());
        // Motion-JPEG AVIs from old cameras are real videos with many frames.
        !(still_codec && frames.is_none_or(|n| n <= 1))
    }

    /// Width as displayed before rotation: anamorphic video (pixel aspect
    /// ratio ≠ 1) is shown `width·sar` wide, as the MP4 `tkhd` says it.
    fn display_width(&self, width: i64) -> i64 {
        let sar = self.sample_aspect_ratio.as_deref().and_then(|r| {
            let (n, d) = r.split_once(':')?;
            let (n, d) = (n.parse::<i64>().ok()?, d.parse::<i64>().ok()?);
            (n > 0 && d > 0 && n != d).then_some((n, d))
        });
        match sar {
            Some((n, d)) => {
                let w = (i128::from(width) * i128::from(n) + i128::from(d) / 2) / i128::from(d);
                i64::try_from(w).unwrap_or(width).max(1)
            }
            None => width,
        }
    }

    /// Clockwise display rotation. ffmpeg's display matrix angle is
    /// counter-clockwise (a phone held upright reports -90); the old
    /// `rotate` tag is already clockwise.
    fn rotation_cw(&self) -> Option<i64> {
        let matrix = self
            .side_data_list
            .iter()
            .filter(|s| s.side_data_type.as_deref() == Some("Display Matrix"))
            .find_map(|s| s.rotation)
            .filter(|r| r.is_finite())
            .map(|r| -(r.round() as i64));
        matrix.or_else(|| self.tags.get("rotate")?.trim().parse::<i64>().ok())
    }
}

/// Maps ffprobe's `-show_format -show_streams` JSON to our type and info.
fn parse_ffprobe_json(json: &[u8]) -> Result<(FileType, MediaInfo), String> {
    let report: FfReport =
        serde_json::from_slice(json).map_err(|e| format!("unexpected ffprobe output: {e}"))?;
    let video = report.streams.iter().find(|s| s.is_moving_video());
    let has_audio = report.streams.iter().any(|s| s.is("audio"));
    let kind = match (video, has_audio) {
        (Some(_), _) => FileType::Video,
        (None, true) => FileType::Audio,
        (None, false) => FileType::Other,
    };
    let seconds = |s: &Option<String>| {
        s.as_deref()
            .and_then(|d| d.trim().parse::<f64>().ok())
            .filter(|d| d.is_finite() && *d > 0.0)
    };
    let duration = seconds(&report.format.duration).or_else(|| {
        report
            .streams
            .iter()
            .filter_map(|s| seconds(&s.duration))
            .max_by(|a, b| a.total_cmp(b))
    });
    let capture_time = report
        .format
        .tags
        .get("creation_time")
        .or_else(|| video.and_then(|v| v.tags.get("creation_time")))
        .and_then(|t| parse_utc_timestamp(t));
    // ffmpeg reports QuickTime `mdta` keys as format tags by name.
    let content_id = report
        .format
        .tags
        .get("com.apple.quicktime.content.identifier")
        .and_then(|t| exifmeta::content_id_text(t.as_bytes()));
    let mut info = MediaInfo {
        duration,
        capture_time,
        content_id,
        ..MediaInfo::default()
    };
    if let Some(v) = video {
        info.orientation = v.rotation_cw().and_then(orientation_for_rotation);
        if let (Some(w), Some(h)) = (v.width, v.height) {
            if w > 0 && h > 0 {
                (info.width, info.height) = display_dims(v.display_width(w), h, info.orientation);
            }
        }
    }
    Ok((kind, info))
}

/// Parses ffmpeg's `creation_time` (`2020-05-17T10:20:30.000000Z`); the epoch
/// of an unset MP4 field (1904/1970) counts as unknown.
fn parse_utc_timestamp(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<u32>().ok();
    let t = exifmeta::unix_from_civil(
        i64::from(num(0..4)?),
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    )?;
    (t > 0).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(info: &MediaInfo) -> (Option<i64>, Option<i64>) {
        (info.width, info.height)
    }

    #[test]
    fn ffprobe_json_maps_streams_rotation_and_times() {
        let json = br#"{"streams":[
            {"codec_type":"video","codec_name":"h264","width":1920,"height":1080,
             "nb_frames":"300","disposition":{"default":1,"attached_pic":0},
             "side_data_list":[{"side_data_type":"Display Matrix","rotation":-90}]},
            {"codec_type":"audio","codec_name":"aac"}],
            "format":{"duration":"10.010000","tags":{"creation_time":"2020-05-17T10:20:30.000000Z"}}}"#;
        let (kind, info) = parse_ffprobe_json(json).unwrap();
        assert_eq!(kind, FileType::Video);
        assert_eq!(
            info.orientation,
            Some(6),
            "-90 in the matrix is 90° clockwise"
        );
        assert_eq!(dims(&info), (Some(1080), Some(1920)));
        assert_eq!(info.duration, Some(10.01));
        assert_eq!(info.capture_time, Some(1_589_710_830));

        let rotate_tag = br#"{"streams":[{"codec_type":"video","codec_name":"mpeg4","width":4,"height":2,"tags":{"rotate":"270"}}],"format":{}}"#;
        let (_, info) = parse_ffprobe_json(rotate_tag).unwrap();
        assert_eq!(
            (info.orientation, dims(&info)),
            (Some(8), (Some(2), Some(4)))
        );
        let half_turn = br#"{"streams":[{"codec_type":"video","width":4,"height":2,"side_data_list":[{"side_data_type":"Display Matrix","rotation":180}]}]}"#;
        assert_eq!(
            parse_ffprobe_json(half_turn).unwrap().1.orientation,
            Some(3)
        );

        let mp3_with_cover = br#"{"streams":[{"codec_type":"audio","codec_name":"mp3","duration":"3.5"},
            {"codec_type":"video","codec_name":"png","width":500,"height":500,"disposition":{"attached_pic":1}}],
            "format":{"duration":"N/A"}}"#;
        let (kind, info) = parse_ffprobe_json(mp3_with_cover).unwrap();
        assert_eq!(
            (kind, info.width, info.duration),
            (FileType::Audio, None, Some(3.5))
        );

        let lone_picture = br#"{"streams":[{"codec_type":"video","codec_name":"mjpeg","width":8,"height":8,"nb_frames":"1"}]}"#;
        assert_eq!(parse_ffprobe_json(lone_picture).unwrap().0, FileType::Other);
        let mjpeg_avi = br#"{"streams":[{"codec_type":"video","codec_name":"mjpeg","width":640,"height":480,"nb_frames":"900"}]}"#;
        assert_eq!(parse_ffprobe_json(mjpeg_avi).unwrap().0, FileType::Video);
        assert_eq!(
            parse_ffprobe_json(b"{}").unwrap(),
            (FileType::Other, MediaInfo::default())
        );
        assert!(parse_ffprobe_json(b"not json").is_err());
    }

    #[test]
    fn utc_timestamps_parse_and_epochs_are_unknown() {
        assert_eq!(
            parse_utc_timestamp("2020-05-17T10:20:30Z"),
            Some(1_589_710_830)
        );
        assert_eq!(
            parse_utc_timestamp("2020-05-17 10:20:30"),
            Some(1_589_710_830)
        );
        assert_eq!(parse_utc_timestamp("1970-01-01T00:00:00.000000Z"), None);
        assert_eq!(parse_utc_timestamp("1904-01-01T00:00:00.000000Z"), None);
        assert_eq!(parse_utc_timestamp("yesterday"), None);
    }
}
