//! What a file is, from its first bytes, and which of ffmpeg's demuxers may
//! read it. ffmpeg left to guess takes a text file that starts `#EXTM3U`
//! for an HLS playlist whatever its name, and an HLS playlist, a `concat`
//! script or an `image2` pattern opens the files it lists: an uploaded
//! `.mp4` holding such a list made the thumbnailer decode another user's
//! video. So ffmpeg and ffprobe are only ever run on a container sniffed
//! here, named to them with `-f` from this fixed list; none of these
//! demuxers opens another file (the MOV one could follow external data
//! references, which stay off: `enable_drefs` 0).

/// A file format isync recognises by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    // Stills decoded in-process.
    Jpeg,
    Png,
    Gif,
    Bmp,
    Tiff,
    // Stills ffmpeg decodes.
    Webp,
    // Audio and video (and HEIF, an ISO-BMFF file).
    IsoBmff,
    Matroska,
    Avi,
    MpegTs,
    MpegPs,
    Flv,
    Asf,
    Ogg,
    Mp3,
    Aac,
    Flac,
    Wav,
    Aiff,
}

/// Bytes [`sniff`] needs to tell every container apart (an MPEG-TS packet
/// is 188 bytes; three of them, or of M2TS's 192).
pub(crate) const SNIFF_BYTES: usize = 580;

impl Container {
    /// The ffmpeg demuxer for this container (`-f`); `None` for the stills
    /// decoded in-process, which ffmpeg never sees.
    pub(crate) fn demuxer(self) -> Option<&'static str> {
        Some(match self {
            // ffmpeg 5.1 refuses 32-bit BI_BITFIELDS BMPs: the `image`
            // crate reads every BMP header and bit depth.
            // ffmpeg 5.1 renders most TIFF layouts wrong (`tiffdec`).
            Container::Jpeg
            | Container::Png
            | Container::Gif
            | Container::Bmp
            | Container::Tiff => return None,
            Container::Webp => "webp_pipe",
            Container::IsoBmff => "mov",
            Container::Matroska => "matroska",
            Container::Avi => "avi",
            Container::MpegTs => "mpegts",
            Container::MpegPs => "mpeg",
            Container::Flv => "flv",
            Container::Asf => "asf",
            Container::Ogg => "ogg",
            Container::Mp3 => "mp3",
            Container::Aac => "aac",
            Container::Flac => "flac",
            Container::Wav => "wav",
            Container::Aiff => "aiff",
        })
    }

    /// Demuxer options that keep it to the one file (`-opt value` pairs,
    /// given before `-i`).
    pub(crate) fn demuxer_options(self) -> &'static [&'static str] {
        match self {
            // Off by default; said explicitly because following an external
            // data reference is exactly what must never happen.
            Container::IsoBmff => &["-enable_drefs", "0", "-use_absolute_path", "0"],
            _ => &[],
        }
    }

    /// Whether it can hold moving video.
    pub(crate) fn is_video_container(self) -> bool {
        matches!(
            self,
            Container::IsoBmff
                | Container::Matroska
                | Container::Avi
                | Container::MpegTs
                | Container::MpegPs
                | Container::Flv
                | Container::Asf
                | Container::Ogg
        )
    }

    /// A still image format.
    #[cfg(test)]
    pub(crate) fn is_still(self) -> bool {
        matches!(
            self,
            Container::Jpeg
                | Container::Png
                | Container::Gif
                | Container::Webp
                | Container::Tiff
                | Container::Bmp
        )
    }
}

/// The container `head` (the first bytes of a file, ideally
/// [`SNIFF_BYTES`]) starts, or `None` for anything else — text, playlists,
/// scripts, damaged files.
pub(crate) fn sniff(head: &[u8]) -> Option<Container> {
    let at = |i: usize, magic: &[u8]| head.get(i..i + magic.len()) == Some(magic);
    let riff = |kind: &[u8]| at(0, b"RIFF") && at(8, kind);
    Some(if at(0, &[0xFF, 0xD8, 0xFF]) {
        Container::Jpeg
    } else if at(0, b"\x89PNG\r\n\x1a\n") {
        Container::Png
    } else if at(0, b"GIF87a") || at(0, b"GIF89a") {
        Container::Gif
    } else if riff(b"WEBP") {
        Container::Webp
    } else if at(0, b"II*\0") || at(0, b"MM\0*") || at(0, b"II+\0") || at(0, b"MM\0+") {
        // Classic TIFF, or BigTIFF (version 43).
        Container::Tiff
    } else if at(0, b"BM") && bmp_header(head) {
        Container::Bmp
    } else if is_isobmff(head) {
        Container::IsoBmff
    } else if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        Container::Matroska
    } else if riff(b"AVI ") {
        Container::Avi
    } else if riff(b"WAVE") {
        Container::Wav
    } else if at(0, b"FORM") && (at(8, b"AIFF") || at(8, b"AIFC")) {
        Container::Aiff
    } else if is_transport_stream(head) {
        Container::MpegTs
    } else if at(0, &[0, 0, 1, 0xBA]) {
        Container::MpegPs
    } else if at(0, b"FLV\x01") {
        Container::Flv
    } else if at(
        0,
        &[
            0x30, 0x26, 0xB2, 0x75, 0x8E, 0x66, 0xCF, 0x11, 0xA6, 0xD9, 0x00, 0xAA, 0x00, 0x62,
            0xCE, 0x6C,
        ],
    ) {
        Container::Asf
    } else if at(0, b"OggS") {
        Container::Ogg
    } else if at(0, b"fLaC") {
        Container::Flac
    } else if at(0, b"ID3") || is_mpeg_audio_frame(head) {
        Container::Mp3
    } else if is_adts(head) {
        Container::Aac
    } else {
        return None;
    })
}

/// A BMP file header: the size field is not checked (writers get it
/// wrong), the reserved fields are zero and the pixel offset lies past the
/// headers.
fn bmp_header(head: &[u8]) -> bool {
    let Some(h) = head.get(..18) else {
        return false;
    };
    let reserved = &h[6..10];
    let offset = u32::from_le_bytes([h[10], h[11], h[12], h[13]]);
    let dib = u32::from_le_bytes([h[14], h[15], h[16], h[17]]);
    reserved == [0, 0, 0, 0] && matches!(dib, 12 | 40 | 52 | 56 | 64 | 108 | 124) && offset >= 26
}

/// ISO base media (MP4, MOV, 3GP, M4A, HEIF): a first box with a known
/// type and a plausible size.
fn is_isobmff(head: &[u8]) -> bool {
    let Some(b) = head.get(..8) else {
        return false;
    };
    let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    // 0: to the end of the file; 1: a 64-bit size follows.
    let size_ok = size == 0 || size == 1 || size >= 8;
    // QuickTime files from old cameras may open with any of these.
    let kinds: [&[u8]; 7] = [
        b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot",
    ];
    size_ok && kinds.contains(&&b[4..8])
}

/// MPEG transport stream: a sync byte every 188 bytes, or every 192 in
/// M2TS (AVCHD `.mts`/`.m2ts`, after a 4-byte time code); three in a row.
fn is_transport_stream(head: &[u8]) -> bool {
    let synced =
        |first: usize, step: usize| (0..3).all(|i| head.get(first + i * step) == Some(&0x47));
    synced(0, 188) || synced(4, 192)
}

/// An MPEG-1/2 audio frame header (MP3 without an ID3 tag): 11 sync bits,
/// a version other than "reserved", layer I–III, a usable bitrate and rate.
fn is_mpeg_audio_frame(head: &[u8]) -> bool {
    let Some(h) = head.get(..4) else {
        return false;
    };
    let layer = (h[1] >> 1) & 0b11;
    let version = (h[1] >> 3) & 0b11;
    let bitrate = h[2] >> 4;
    let rate = (h[2] >> 2) & 0b11;
    h[0] == 0xFF && h[1] & 0xE0 == 0xE0 && layer != 0 && version != 1 && bitrate != 0xF && rate != 3
}

/// An AAC ADTS frame header: 12 sync bits and layer 0.
fn is_adts(head: &[u8]) -> bool {
    let Some(h) = head.get(..2) else {
        return false;
    };
    h[0] == 0xFF && h[1] & 0xF6 == 0xF0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_container_by_its_magic() {
        let mut ts = vec![0u8; 600];
        for i in 0..3 {
            ts[i * 188] = 0x47;
        }
        let mut m2ts = vec![0u8; 600];
        for i in 0..3 {
            m2ts[4 + i * 192] = 0x47;
        }
        let mut bmp = b"BM\x36\x00\x0c\x00\0\0\0\0\x36\0\0\0\x28\0\0\0".to_vec();
        bmp.resize(64, 0);
        let cases: Vec<(Vec<u8>, Option<Container>)> = vec![
            (
                b"\xFF\xD8\xFF\xE0\0\x10JFIF".to_vec(),
                Some(Container::Jpeg),
            ),
            (
                b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(),
                Some(Container::Png),
            ),
            (b"GIF89a\x01\0\x01\0".to_vec(), Some(Container::Gif)),
            (b"RIFF\0\0\0\0WEBPVP8 ".to_vec(), Some(Container::Webp)),
            (b"RIFF\0\0\0\0AVI LIST".to_vec(), Some(Container::Avi)),
            (b"RIFF\0\0\0\0WAVEfmt ".to_vec(), Some(Container::Wav)),
            (b"II*\0\x08\0\0\0".to_vec(), Some(Container::Tiff)),
            (bmp, Some(Container::Bmp)),
            (b"\0\0\0\x18ftypmp42".to_vec(), Some(Container::IsoBmff)),
            (b"\0\0\0\x18ftypheic".to_vec(), Some(Container::IsoBmff)),
            (b"\0\0\x01\0moov".to_vec(), Some(Container::IsoBmff)),
            (b"\x1A\x45\xDF\xA3\x9f".to_vec(), Some(Container::Matroska)),
            (ts, Some(Container::MpegTs)),
            (m2ts, Some(Container::MpegTs)),
            (b"\0\0\x01\xBA\x44".to_vec(), Some(Container::MpegPs)),
            (b"FLV\x01\x05".to_vec(), Some(Container::Flv)),
            (b"OggS\0\x02".to_vec(), Some(Container::Ogg)),
            (b"fLaC\0\0\0\x22".to_vec(), Some(Container::Flac)),
            (b"ID3\x04\0\0".to_vec(), Some(Container::Mp3)),
            (b"\xFF\xFB\x90\x64".to_vec(), Some(Container::Mp3)),
            (b"\xFF\xF1\x50\x80".to_vec(), Some(Container::Aac)),
            (b"FORM\0\0\0\0AIFF".to_vec(), Some(Container::Aiff)),
        ];
        for (head, want) in cases {
            assert_eq!(sniff(&head), want, "{head:?}");
        }
    }

    #[test]
    fn playlists_scripts_and_junk_are_nothing() {
        for head in [
            &b"#EXTM3U\n#EXT-X-VERSION:3\n#EXTINF:2.0,\n/srv/other/secret.mp4\n"[..],
            b"ffconcat version 1.0\nfile '/etc/passwd'\n",
            b"<?xml version=\"1.0\"?><MPD",
            b"",
            b"\0\0\0\0\0\0\0\0",
            b"\0\0\0\x04ftyp", // box too small to be one
            b"BM not a bitmap at all, just text starting with BM",
            b"\xFF\xFF\xFF\xFF",
        ] {
            assert_eq!(sniff(head), None, "{:?}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn only_listed_demuxers_none_that_opens_other_files() {
        let all = [
            Container::Jpeg,
            Container::Png,
            Container::Gif,
            Container::Webp,
            Container::Tiff,
            Container::Bmp,
            Container::IsoBmff,
            Container::Matroska,
            Container::Avi,
            Container::MpegTs,
            Container::MpegPs,
            Container::Flv,
            Container::Asf,
            Container::Ogg,
            Container::Mp3,
            Container::Aac,
            Container::Flac,
            Container::Wav,
            Container::Aiff,
        ];
        for c in all {
            if let Some(d) = c.demuxer() {
                assert!(
                    !["hls", "concat", "image2", "dash", "tee", "data"].contains(&d),
                    "{c:?} -> {d}"
                );
            } else {
                assert!(c.is_still(), "{c:?}");
            }
        }
    }
}
