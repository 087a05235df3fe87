//! Unit tests of the box reader on whole files built in memory: headers,
//! tracks, fragments, sample entries, damaged and huge files.

use super::*;
use std::io::{Cursor, SeekFrom};

pub(super) fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
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

pub(super) fn mvhd_v0(timescale: u32, duration: u32) -> Vec<u8> {
    let mut b = vec![0u8; 96];
    b[12..16].copy_from_slice(&timescale.to_be_bytes());
    b[16..20].copy_from_slice(&duration.to_be_bytes());
    bx(b"mvhd", &b)
}

pub(super) fn tkhd(flags: u8, matrix: [i32; 4], w: u32, h: u32) -> Vec<u8> {
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

pub(super) fn hdlr(handler: &[u8; 4]) -> Vec<u8> {
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

pub(super) const IDENTITY: [i32; 4] = [0x10000, 0, 0, 0x10000];
const CW90: [i32; 4] = [0, 0x10000, -0x10000, 0];

pub(super) fn ftyp() -> Vec<u8> {
    bx(b"ftyp", b"isom\0\0\x02\0isomiso2")
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
