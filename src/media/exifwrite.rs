//! Writing the few EXIF tags isync reads (`exifmeta.rs` reads them): the
//! demo library's rotated photos and the test fixtures are made with it.
//! Pure, no I/O.

/// An EXIF APP1 segment as cameras write it: little-endian TIFF with an
/// optional Orientation in IFD0 and an optional JPEG `thumb` as the IFD1
/// (JPEGInterchangeFormat) thumbnail, offsets counted from the TIFF header.
/// The one EXIF builder: behind the demo library's rotated photos and the
/// tests', benches' and fuzz seeds' fixtures (`tests/it/common/fixtures.rs`,
/// `media::testkit`).
pub fn exif_app1_with(orientation: Option<u16>, thumb: Option<&[u8]>) -> Vec<u8> {
    let entry = |tiff: &mut Vec<u8>, tag: u16, typ: u16, value: u32| {
        tiff.extend_from_slice(&tag.to_le_bytes());
        tiff.extend_from_slice(&typ.to_le_bytes());
        tiff.extend_from_slice(&1u32.to_le_bytes()); // count
        tiff.extend_from_slice(&value.to_le_bytes()); // SHORTs sit in the low bytes
    };
    let ifd0_entries = u16::from(orientation.is_some());
    // Header 8 + IFD0 (2 + 12n + 4), then IFD1 (2 + 3·12 + 4), then the data.
    let ifd1_at = 8 + 2 + 12 * u32::from(ifd0_entries) + 4;
    let data_at = ifd1_at + 2 + 3 * 12 + 4;
    let mut tiff = b"II*\0".to_vec();
    tiff.extend_from_slice(&8u32.to_le_bytes()); // IFD0 offset
    tiff.extend_from_slice(&ifd0_entries.to_le_bytes());
    if let Some(o) = orientation {
        entry(&mut tiff, 0x0112, 3, u32::from(o)); // Orientation, SHORT
    }
    let next_ifd = if thumb.is_some() { ifd1_at } else { 0 };
    tiff.extend_from_slice(&next_ifd.to_le_bytes());
    if let Some(t) = thumb {
        tiff.extend_from_slice(&3u16.to_le_bytes());
        entry(&mut tiff, 0x0103, 3, 6); // Compression: JPEG
        entry(&mut tiff, 0x0201, 4, data_at); // JPEGInterchangeFormat
        entry(&mut tiff, 0x0202, 4, t.len() as u32); // …Length
        tiff.extend_from_slice(&0u32.to_le_bytes());
        tiff.extend_from_slice(t);
    }
    let mut seg = vec![0xFF, 0xE1];
    let len = u16::try_from(2 + 6 + tiff.len()).expect("EXIF thumbnail fits one APP1 segment");
    seg.extend_from_slice(&len.to_be_bytes());
    seg.extend_from_slice(b"Exif\0\0");
    seg.extend_from_slice(&tiff);
    seg
}
