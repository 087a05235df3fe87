//! Unit tests of the HEIF parser on whole files: muxed by
//! `tests/it/common/heifmux.rs` from real ffmpeg output, or hand-built.

use super::heifmux::{self as mux, Codec as MuxCodec};
use super::*;
use std::io::Cursor;

fn have_ffmpeg() -> bool {
    super::super::testkit::have_ffmpeg()
}

fn parse(bytes: &[u8]) -> Result<Heif, HeifError> {
    read(&mut Cursor::new(bytes))
}

#[test]
fn single_hevc_with_transforms_exif_and_thumbnail() {
    if !have_ffmpeg() {
        return;
    }
    let c = mux::encode(&mux::corners(64, 48), 64, 48, MuxCodec::Hevc, false);
    let t = mux::encode(&mux::corners(32, 24), 32, 24, MuxCodec::Hevc, false);
    let mut spec = mux::Spec::single(c.clone());
    spec.irot = Some(1);
    spec.imir = Some(0);
    // 48x40 centred aperture.
    spec.clap = Some([48, 1, 40, 1, 0, 1, 0, 1]);
    spec.exif = Some(mux::exif_taken("2021:06:05 04:03:02"));
    spec.thumbnail = Some(t);
    let bytes = mux::mux(&spec);
    assert!(is_heif(&bytes));
    let h = parse(&bytes).unwrap();
    assert_eq!(&h.major_brand, b"heic");
    let p = &h.primary;
    assert_eq!(p.layout, Layout::Single(1));
    assert_eq!((p.width, p.height), (64, 48));
    assert_eq!(
        p.crop,
        Some(Crop {
            x: 8,
            y: 4,
            w: 48,
            h: 40
        })
    );
    assert_eq!((p.rotation_ccw, p.mirror), (1, Some(0)));
    assert_eq!(p.display_size(), (40, 48));
    assert_eq!(
        p.orientation(),
        5,
        "quarter left, then top↔bottom: transpose"
    );
    assert!(matches!(p.codec(), Codec::Hevc { nal_length: 4 }));
    assert_eq!(p.configs.len(), 1);
    assert_eq!(p.configs[0].units, c.config, "VPS/SPS/PPS from hvcC");
    let data = h.item_data(&mut Cursor::new(&bytes), 1, 1 << 20).unwrap();
    assert_eq!(data, c.data);
    let thumb = h.thumbnail.as_ref().expect("thmb");
    assert_eq!((thumb.width, thumb.height), (32, 24));
    let tiff = h.exif(&mut Cursor::new(&bytes)).expect("exif");
    let meta = crate::media::exifmeta::parse_tiff(&tiff).expect("tiff");
    assert!(meta.capture_time.is_some());
}

#[test]
fn grid_tiles_in_order_and_av1() {
    if !have_ffmpeg() {
        return;
    }
    let rgb = mux::corners(120, 100);
    let spec = mux::grid(&rgb, 120, 100, 64, 2, 2, MuxCodec::Hevc, true);
    let h = parse(&mux::mux(&spec)).unwrap();
    assert_eq!(
        h.primary.layout,
        Layout::Grid {
            rows: 2,
            cols: 2,
            width: 120,
            height: 100,
            tile_w: 64,
            tile_h: 64,
            tiles: (2..6).map(|id| Tile { id, config: 0 }).collect(),
        }
    );
    // Every tile points at one `hvcC` (the muxer shares equal boxes).
    assert_eq!(h.primary.configs.len(), 1);
    assert_eq!(h.primary.bit_depth, Some(10));
    assert_eq!(h.primary.display_size(), (120, 100));

    let a = mux::encode(&mux::corners(64, 48), 64, 48, MuxCodec::Av1, false);
    let mut spec = mux::Spec::single(a.clone());
    spec.irot = Some(3);
    let h = parse(&mux::mux(&spec)).unwrap();
    assert_eq!(&h.major_brand, b"avif");
    assert_eq!(h.primary.codec(), Codec::Av1);
    assert_eq!(h.primary.configs[0].units, vec![a.config.concat()]);
    assert_eq!(h.primary.display_size(), (48, 64));
    assert_eq!(h.primary.orientation(), 6);
}

#[test]
fn orientation_table_matches_composed_transforms() {
    // Compose irot (ccw) then imir on a 2x3 labelled grid and compare
    // with what each EXIF orientation does (thumbs::orient).
    use super::super::raster::{orient, Raster};
    let (w, h) = (2u32, 3u32);
    let src = Raster {
        width: w,
        height: h,
        alpha: false,
        data: (0..w * h).flat_map(|i| [i as u8, 0, 0]).collect(),
    };
    let rot_ccw = |r: &Raster| {
        // display (x, y) of a ccw turn takes stored (w-1-y, x)
        let mut d = Vec::new();
        for y in 0..r.width {
            for x in 0..r.height {
                let (sx, sy) = (r.width - 1 - y, x);
                let i = ((sy * r.width + sx) * 3) as usize;
                d.extend_from_slice(&r.data[i..i + 3]);
            }
        }
        Raster {
            width: r.height,
            height: r.width,
            alpha: false,
            data: d,
        }
    };
    let mirror = |r: &Raster, axis: u8| {
        let mut d = Vec::new();
        for y in 0..r.height {
            for x in 0..r.width {
                // mode 0: top↔bottom; 1: left↔right.
                let (sx, sy) = if axis == 1 {
                    (r.width - 1 - x, y)
                } else {
                    (x, r.height - 1 - y)
                };
                let i = ((sy * r.width + sx) * 3) as usize;
                d.extend_from_slice(&r.data[i..i + 3]);
            }
        }
        Raster { data: d, ..*r }
    };
    for rot in 0..4u8 {
        for m in [None, Some(0u8), Some(1)] {
            let mut want = src.clone();
            for _ in 0..rot {
                want = rot_ccw(&want);
            }
            if let Some(axis) = m {
                want = mirror(&want, axis);
            }
            let mut p = placeholder();
            p.rotation_ccw = rot;
            p.mirror = m;
            let got = orient(src.clone(), i64::from(p.orientation()));
            assert_eq!(got, want, "irot {rot} imir {m:?}");
        }
    }
}

/// A minimal HEIF with `n` declared items, hand-built (no ffmpeg).
fn synthetic(items: u32, ispe: (u32, u32), iloc_len: u32) -> Vec<u8> {
    let bx = |k: &[u8; 4], b: &[u8]| {
        let mut o = ((b.len() + 8) as u32).to_be_bytes().to_vec();
        o.extend_from_slice(k);
        o.extend_from_slice(b);
        o
    };
    let full = |k: &[u8; 4], v: u8, b: &[u8]| {
        let mut x = vec![v, 0, 0, 0];
        x.extend_from_slice(b);
        bx(k, &x)
    };
    let mut hdlr = vec![0u8; 4];
    hdlr.extend_from_slice(b"pict");
    hdlr.extend_from_slice(&[0; 13]);
    let mut meta = full(b"hdlr", 0, &hdlr);
    meta.extend(full(b"pitm", 0, &1u16.to_be_bytes()));
    let mut iinf = items.to_be_bytes().to_vec();
    let mut iloc = vec![0x44, 0x00];
    iloc.extend_from_slice(&items.to_be_bytes());
    for id in 1..=items {
        let mut e = id.to_be_bytes().to_vec();
        e.extend_from_slice(&[0, 0]);
        e.extend_from_slice(b"hvc1");
        e.push(0);
        iinf.extend(full(b"infe", 3, &e));
        iloc.extend_from_slice(&id.to_be_bytes());
        iloc.extend_from_slice(&[0, 0, 0, 0, 0, 1]);
        iloc.extend_from_slice(&100u32.to_be_bytes());
        iloc.extend_from_slice(&iloc_len.to_be_bytes());
    }
    meta.extend(full(b"iinf", 1, &iinf));
    let mut hvcc = vec![1u8; 21];
    hvcc.extend_from_slice(&[0x0F, 0]);
    let mut ispe_b = ispe.0.to_be_bytes().to_vec();
    ispe_b.extend_from_slice(&ispe.1.to_be_bytes());
    let mut ipco = bx(b"hvcC", &hvcc);
    ipco.extend(full(b"ispe", 0, &ispe_b));
    let mut iprp = bx(b"ipco", &ipco);
    iprp.extend(full(b"ipma", 0, &[0, 0, 0, 1, 0, 1, 2, 0x81, 2]));
    meta.extend(bx(b"iprp", &iprp));
    meta.extend(full(b"iloc", 2, &iloc));
    let mut out = bx(b"ftyp", b"heic\0\0\0\0mif1heic");
    out.extend(full(b"meta", 0, &meta));
    out.extend(bx(b"mdat", &[0u8; 200]));
    out
}

#[test]
fn hostile_inputs_are_errors_not_panics() {
    let ok = synthetic(1, (640, 480), 50);
    let h = parse(&ok).unwrap();
    assert_eq!(h.primary.display_size(), (640, 480));
    assert_eq!(
        h.item_data(&mut Cursor::new(&ok), 1, 1 << 20)
            .unwrap()
            .len(),
        50
    );
    // iloc past the end of the file: the item cannot be read.
    let past = synthetic(1, (640, 480), 1 << 30);
    let h = parse(&past).unwrap();
    assert!(h.item_data(&mut Cursor::new(&past), 1, u64::MAX).is_err());
    // Huge ispe parses (the decoder refuses it against its limits).
    let huge = parse(&synthetic(1, (u32::MAX, u32::MAX), 50)).unwrap();
    assert_eq!(huge.primary.width, u32::MAX);
    // 10,000 items: refused.
    assert!(matches!(
        parse(&synthetic(10_000, (64, 64), 10)),
        Err(HeifError::Invalid(_))
    ));
    // Every truncation and a sweep of single-byte corruptions.
    for n in 0..ok.len() {
        let _ = parse(&ok[..n]);
    }
    for i in 0..ok.len() {
        for v in [0u8, 0xFF, 0x80, 1] {
            let mut b = ok.clone();
            b[i] = v;
            if let Ok(h) = parse(&b) {
                let _ = h.item_data(&mut Cursor::new(&b), 1, 1 << 20);
                let _ = h.exif(&mut Cursor::new(&b));
            }
        }
    }
    // Not HEIF at all.
    assert_eq!(
        parse(b"\0\0\0\x10ftypmp42\0\0\0\0"),
        Err(HeifError::NotHeif)
    );
    assert!(!is_heif(b"\0\0\0\x10ftypmp42\0\0\0\0"));
}

/// A reader that counts the system calls a `File` would make.
struct Counted<'a> {
    inner: Cursor<&'a [u8]>,
    calls: usize,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        self.inner.read(buf)
    }
}

impl Seek for Counted<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.calls += 1;
        self.inner.seek(to)
    }
}

#[test]
fn a_head_in_memory_gives_the_same_answer_with_no_further_read() {
    let mut bytes = synthetic(3, (640, 480), 50);
    bytes.resize(bytes.len().max(200), 7);
    let want = parse(&bytes).unwrap();
    let want_item = want
        .item_data(&mut Cursor::new(&bytes), 1, 1 << 20)
        .unwrap();
    let len = bytes.len() as u64;
    // Every split between the head and the rest of the file.
    for k in 0..=bytes.len() {
        let mut file = Counted {
            inner: Cursor::new(&bytes),
            calls: 0,
        };
        let mut src = HeadFile::new(&bytes[..k], &mut file, len);
        let got = read(&mut src).unwrap();
        assert_eq!(got, want, "head of {k} bytes");
        assert_eq!(got.item_data(&mut src, 1, 1 << 20).unwrap(), want_item);
        if k == bytes.len() {
            assert_eq!(file.calls, 0, "the whole file was in the head");
        }
    }
    // A head longer than the file's stated length is cut to it.
    let mut file = Cursor::new(&bytes);
    let mut src = HeadFile::new(&bytes, &mut file, 10);
    assert!(read(&mut src).is_err());
}

/// Writes the `heif` fuzz target's seeds (docs/fuzzing.md):
/// `cargo test --lib media::heif::tests::write_fuzz_seeds -- --ignored`.
#[test]
#[ignore = "writes fuzz/seeds/heif; run by hand"]
fn write_fuzz_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/heif");
    std::fs::create_dir_all(&dir).unwrap();
    let put = |name: &str, spec: &mux::Spec| {
        std::fs::write(dir.join(name), mux::mux(spec)).unwrap();
    };
    let c = mux::encode(&mux::corners(48, 40), 48, 40, MuxCodec::Hevc, false);
    let t = mux::encode(&mux::corners(32, 32), 32, 32, MuxCodec::Hevc, false);
    let mut spec = mux::Spec::single(c);
    spec.irot = Some(1);
    spec.imir = Some(1);
    spec.clap = Some([24, 1, 20, 1, 2, 1, 0, 1]);
    spec.exif = Some(mux::exif_taken("2021:06:05 04:03:02"));
    spec.thumbnail = Some(t);
    put("single.heic", &spec);
    let rgb = mux::corners(40, 40);
    put(
        "grid.heic",
        &mux::grid(&rgb, 40, 40, 32, 2, 2, MuxCodec::Hevc, true),
    );
    let a = mux::encode(&mux::corners(32, 24), 32, 24, MuxCodec::Av1, false);
    let mut spec = mux::Spec::single(a);
    spec.irot = Some(3);
    put("rotated.avif", &spec);
    std::fs::write(dir.join("synthetic.heic"), synthetic(3, (640, 480), 50)).unwrap();
}

#[test]
fn a_crop_outside_the_grids_output_size_is_refused() {
    if !have_ffmpeg() {
        return;
    }
    // A 64x64 grid whose `ispe` claims 128x128: the centred 48x48
    // `clap` fits the claim (at 40,40) but not the grid's real output.
    let rgb = mux::corners(64, 64);
    let mut spec = mux::grid(&rgb, 64, 64, 32, 2, 2, MuxCodec::Hevc, false);
    spec.clap = Some([48, 1, 48, 1, 0, 1, 0, 1]);
    let bytes = mux::mux(&spec);
    assert!(parse(&bytes).is_ok(), "the honest file parses");
    let mut ispe = b"ispe\0\0\0\0".to_vec();
    ispe.extend_from_slice(&64u32.to_be_bytes());
    ispe.extend_from_slice(&64u32.to_be_bytes());
    let at = bytes
        .windows(ispe.len())
        .position(|w| w == ispe)
        .expect("the grid's ispe");
    let mut lying = bytes.clone();
    lying[at + 8..at + 16].copy_from_slice(&[0, 0, 0, 128, 0, 0, 0, 128]);
    let err = parse(&lying).expect_err("a crop outside the picture");
    assert!(err.to_string().contains("clap"), "{err}");
}

#[test]
fn grid_with_a_missing_tile_is_refused() {
    if !have_ffmpeg() {
        return;
    }
    let rgb = mux::corners(64, 64);
    let mut spec = mux::grid(&rgb, 64, 64, 32, 2, 2, MuxCodec::Hevc, false);
    if let mux::Primary::Grid { rows, .. } = &mut spec.primary {
        *rows = 1; // says 1x2 but references 4 tiles
    }
    assert!(parse(&mux::mux(&spec)).is_err());
}

#[test]
fn grid_tiles_keep_their_own_decoder_configuration() {
    if !have_ffmpeg() {
        return;
    }
    // Odd tiles without SAO and wavefronts, with a chroma QP offset:
    // other SPS and PPS than the even ones.
    let rgb = mux::corners(120, 100);
    let spec = mux::grid_with(&rgb, 120, 100, 64, 2, 2, |i, t| {
        let x265 = if i % 2 == 1 {
            "sao=0:wpp=0:cbqpoffs=-6:crqpoffs=6"
        } else {
            ""
        };
        mux::encode_with(t, 64, 64, MuxCodec::Hevc, false, 12, x265)
    });
    let mux::Primary::Grid { tiles: coded, .. } = &spec.primary else {
        unreachable!()
    };
    assert_ne!(
        coded[0].config, coded[1].config,
        "the fixture's tiles differ"
    );
    let h = parse(&mux::mux(&spec)).unwrap();
    let p = &h.primary;
    let Layout::Grid { tiles, .. } = &p.layout else {
        panic!("{:?}", p.layout)
    };
    let ids: Vec<u32> = tiles.iter().map(|t| t.id).collect();
    assert_eq!(ids, [2, 3, 4, 5]);
    // Two configurations, each tile naming its own.
    assert_eq!(p.configs.len(), 2);
    for (t, c) in tiles.iter().zip(coded) {
        assert_eq!(p.configs[t.config].units, c.config, "tile {}", t.id);
    }
    assert_eq!(
        tiles.iter().map(|t| t.config).collect::<Vec<_>>(),
        [0, 1, 0, 1]
    );
}

#[test]
fn a_grid_whose_tiles_differ_in_size_is_refused() {
    if !have_ffmpeg() {
        return;
    }
    // The last tile 64x48 where the others are 64x64: libheif refuses
    // such a grid; decoding it as 64x64 would misplace or stretch it.
    let rgb = mux::corners(120, 100);
    let spec = mux::grid_with(&rgb, 120, 100, 64, 2, 2, |i, t| {
        let h = if i == 3 { 48 } else { 64 };
        mux::encode(&t[..(64 * h * 3) as usize], 64, h, MuxCodec::Hevc, false)
    });
    match parse(&mux::mux(&spec)) {
        Err(HeifError::Invalid(why)) => {
            assert!(why.contains("grid tile 4 is 64x48"), "{why}");
        }
        other => panic!("{other:?}"),
    }
}
