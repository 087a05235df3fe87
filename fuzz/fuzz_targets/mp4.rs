//! `media/mp4.rs`: the ISO-BMFF (MP4/MOV/M4A/3GP) box walker.
//!
//! Input: the file. Checks:
//! - the result is the same when every read returns only a few bytes
//!   (reads are never assumed to fill a buffer);
//! - what it reports is sane: rotation 0/90/180/270, a finite positive
//!   duration, a creation time after 1970, the type matching the tracks;
//! - it reads each byte of the file at most a bounded number of times and
//!   never more than a few times the file (a hostile box tree can't make
//!   it loop over the same data);
//! - the live heap stays small (it holds a 16 KiB read buffer).
#![no_main]

use std::io::{self, Cursor, Read, Seek, SeekFrom};

use isync::media::mp4::read_info;
use isync::model::FileType;
use libfuzzer_sys::fuzz_target;

/// A file whose reads return at most `step` bytes (cycling 1..=7), and
/// which counts the bytes read.
struct Trickle<'a> {
    inner: Cursor<&'a [u8]>,
    step: usize,
    read: u64,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.step = self.step % 7 + 1;
        let n = buf.len().min(self.step);
        let got = self.inner.read(&mut buf[..n])?;
        self.read += got as u64;
        Ok(got)
    }
}

impl Seek for Trickle<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.inner.seek(to)
    }
}

fuzz_target!(|data: &[u8]| {
    let plain = read_info(Cursor::new(data));
    let mut trickle = Trickle {
        inner: Cursor::new(data),
        step: 0,
        read: 0,
    };
    let slow = read_info(&mut trickle);
    assert_eq!(
        format!("{plain:?}"),
        format!("{slow:?}"),
        "short reads changed the result"
    );
    // Every box is visited once; a few small boxes are read twice (header,
    // then body), and the read-ahead buffer refills after a backward seek.
    assert!(
        trickle.read <= 4 * data.len() as u64 + 64 * 1024,
        "read {} bytes of a {}-byte file",
        trickle.read,
        data.len()
    );
    let Ok(info) = plain else { return };
    if let Some(d) = info.duration_secs {
        assert!(d.is_finite() && d > 0.0, "duration {d}");
    }
    if let Some(t) = info.creation_time {
        assert!(t > 0, "creation time {t}");
    }
    if let Some(v) = info.video {
        if let Some(r) = v.rotation_cw {
            assert!(matches!(r, 0 | 90 | 180 | 270), "rotation {r}");
        }
        assert_eq!(info.file_type(), FileType::Video);
    } else if info.has_audio {
        assert_eq!(info.file_type(), FileType::Audio);
    }
});
