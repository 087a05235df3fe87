//! What the probe needs from still formats that `imagesize` and the EXIF
//! reader get wrong or never look at: a BMP's size from its own header (a
//! top-down BMP's height is negative, an OS/2 1.x header has 16-bit
//! sizes), and the orientation a PNG or WebP keeps outside a JPEG-style
//! EXIF segment — a PNG `eXIf` or WebP `EXIF` chunk, before or after the
//! pixels, an XMP packet's `tiff:Orientation` (PNG `iTXt`, compressed or
//! not, WebP `XMP ` chunk) — and a BigTIFF's size, which `imagesize` does
//! not read.
//!
//! Pure parsers of untrusted bytes: bounded reads, no allocation beyond
//! [`MAX_META_CHUNK_BYTES`], fuzzed through `fuzzing::still_meta`.

use std::io::{self, Read, Seek, SeekFrom};

use super::tiffdir::{self, FirstDirectory};

/// Largest EXIF or XMP chunk read from a WebP (Adobe's XMP of a heavily
/// edited photo runs to a few hundred KiB; anything past this is not a
/// packet we want to search).
pub const MAX_META_CHUNK_BYTES: u32 = 1 << 20;
/// Chunks a WebP walk looks at before giving up (a real file has < 10).
const MAX_WEBP_CHUNKS: usize = 64;

/// Stored width and height of a BMP from its headers, or `None` when they
/// make no sense (zero, or a header size no writer uses).
pub fn bmp_dims(head: &[u8]) -> Option<(i64, i64)> {
    let u16_at = |at: usize| {
        head.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let i32_at = |at: usize| {
        head.get(at..at + 4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if head.get(..2) != Some(b"BM") {
        return None;
    }
    let dib = i32_at(14)?;
    let (w, h) = match dib {
        // BITMAPCOREHEADER (Windows 2.x, OS/2 1.x): unsigned 16-bit sizes.
        12 => (i64::from(u16_at(18)?), i64::from(u16_at(20)?)),
        // BITMAPINFOHEADER and its successors, OS/2 2.x's 16- and 64-byte
        // headers: signed 32-bit, a negative height meaning rows stored
        // top first.
        16 | 40 | 52 | 56 | 64 | 108 | 124 => {
            let w = i64::from(i32_at(18)?);
            let h = i64::from(i32_at(22)?).abs();
            (w, h)
        }
        _ => return None,
    };
    (w > 0 && h > 0).then_some((w, h))
}

/// EXIF orientation (1–8) from an XMP packet's `tiff:Orientation`, as an
/// attribute (`tiff:Orientation="6"`) or an element
/// (`<tiff:Orientation>6</tiff:Orientation>`).
pub fn xmp_orientation(xmp: &[u8]) -> Option<u16> {
    const NAME: &[u8] = b"tiff:Orientation";
    let mut from = 0;
    while let Some(at) = find(&xmp[from..], NAME) {
        let mut i = from + at + NAME.len();
        from = i;
        let skip_ws = |mut i: usize| {
            while xmp.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
                i += 1;
            }
            i
        };
        i = skip_ws(i);
        match xmp.get(i) {
            Some(b'=') => {
                i = skip_ws(i + 1);
                if !matches!(xmp.get(i), Some(b'"' | b'\'')) {
                    continue;
                }
                i += 1;
            }
            Some(b'>') => i = skip_ws(i + 1),
            _ => continue, // the closing tag, or another name
        }
        let digit = xmp.get(i).filter(|c| (b'1'..=b'8').contains(c));
        let ends = xmp.get(i + 1).is_some_and(|c| !c.is_ascii_digit());
        if let (Some(d), true) = (digit, ends) {
            return Some(u16::from(d - b'0'));
        }
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Chunks a PNG walk looks at before giving up. libpng writes 8 KiB IDAT
/// chunks, so this walks a PNG of 8 GiB; the walk reads 8 bytes a chunk
/// (the thumbnail pre-render reads all of the file right after anyway).
const MAX_PNG_CHUNKS: usize = 1 << 20;
/// The longest chunk the PNG spec allows (2^31 − 1 bytes): a longer length
/// is damage, and ends the walk.
const MAX_PNG_CHUNK_LEN: u64 = (1 << 31) - 1;

/// The `eXIf` body and the XMP text (an `iTXt` chunk keyed
/// `XML:com.adobe.xmp`, inflated when compressed) of a PNG, wherever they
/// lie: before the pixels as most writers put them, or after, as some
/// editors and exiftool do. Chunks inside `head` (the file's first bytes)
/// are read from it; the walk goes on in `file`, seeking past each chunk
/// it does not want (the pixels' IDAT chunks, however large), so it costs
/// 8 bytes a chunk. Memory is bounded: a chunk over
/// [`MAX_META_CHUNK_BYTES`] is skipped unread, and a compressed XMP packet
/// is inflated to at most that much (a zlib bomb is dropped, not grown).
/// A file that ends or is damaged has what was found before.
pub fn png_meta<R: Read + Seek>(head: &[u8], file: &mut R) -> io::Result<MetaChunks> {
    if png_bytes(head, file, 0, 8)?.as_deref() != Some(b"\x89PNG\r\n\x1a\n") {
        return Ok((None, None));
    }
    let (mut exif, mut xmp) = (None, None);
    let mut at = 8u64;
    for _ in 0..MAX_PNG_CHUNKS {
        let Some(h) = png_bytes(head, file, at, 8)? else {
            break;
        };
        let len = u64::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]]));
        if len > MAX_PNG_CHUNK_LEN {
            break;
        }
        let slot = match &h[4..8] {
            b"eXIf" if exif.is_none() => Some(&mut exif),
            b"iTXt" if xmp.is_none() => Some(&mut xmp),
            b"IEND" => break,
            _ => None,
        };
        if let Some(slot) = slot.filter(|_| len <= u64::from(MAX_META_CHUNK_BYTES)) {
            let Some(body) = png_bytes(head, file, at + 8, len as usize)? else {
                break;
            };
            *slot = if &h[4..8] == b"eXIf" {
                Some(body)
            } else {
                xmp_of_itxt(&body)
            };
        }
        if exif.is_some() && xmp.is_some() {
            break;
        }
        at += 12 + len;
    }
    Ok((exif, xmp))
}

/// `len` bytes of a file at `at`: from `head` when it holds them, else
/// read from `file`; `None` when the file ends first.
fn png_bytes<R: Read + Seek>(
    head: &[u8],
    file: &mut R,
    at: u64,
    len: usize,
) -> io::Result<Option<Vec<u8>>> {
    let end = at.saturating_add(len as u64);
    if let Some(b) = usize::try_from(at)
        .ok()
        .zip(usize::try_from(end).ok())
        .and_then(|(a, e)| head.get(a..e))
    {
        return Ok(Some(b.to_vec()));
    }
    file.seek(SeekFrom::Start(at))?;
    let mut out = Vec::new();
    file.take(len as u64).read_to_end(&mut out)?;
    Ok((out.len() == len).then_some(out))
}

/// The XMP packet of an `iTXt` chunk's body, when it is one: keyword,
/// compression flag and method, language tag and translated keyword (each
/// ended by a NUL), then the text, zlib-compressed when the flag says so.
fn xmp_of_itxt(body: &[u8]) -> Option<Vec<u8>> {
    const XMP_KEY: &[u8] = b"XML:com.adobe.xmp\0";
    let rest = body.strip_prefix(XMP_KEY)?;
    let (&compressed, rest) = rest.split_first()?;
    let (&method, mut text) = rest.split_first()?;
    for _ in 0..2 {
        let nul = text.iter().position(|&c| c == 0)?;
        text = &text[nul + 1..];
    }
    match (compressed, method) {
        (0, _) => Some(text.to_vec()),
        (1, 0) => inflate_bounded(text, MAX_META_CHUNK_BYTES as usize),
        _ => None,
    }
}

/// `data` inflated from zlib, when it holds at most `cap` bytes and no
/// error; the output never grows past `cap` + 1 bytes.
fn inflate_bounded(data: &[u8], cap: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .ok()?;
    (out.len() <= cap).then_some(out)
}

/// A WebP's EXIF (TIFF block) and XMP packet, when it has them.
pub(crate) type MetaChunks = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The `EXIF` and `XMP ` chunks of an extended (VP8X) WebP, read from `r`
/// wherever they are (writers put them after the pixels), when its VP8X
/// flags say it has them. The EXIF body is the TIFF block (a leading
/// `Exif\0\0`, which some writers add, is removed).
pub fn webp_meta<R: Read + Seek>(r: &mut R) -> io::Result<MetaChunks> {
    let mut riff = [0u8; 30];
    r.seek(SeekFrom::Start(0))?;
    r.read_exact(&mut riff)?;
    if &riff[..4] != b"RIFF" || &riff[8..16] != b"WEBPVP8X" {
        return Ok((None, None));
    }
    let flags = riff[20];
    let (want_exif, want_xmp) = (flags & 0x08 != 0, flags & 0x04 != 0);
    if !want_exif && !want_xmp {
        return Ok((None, None));
    }
    let end = 8 + u64::from(u32::from_le_bytes([riff[4], riff[5], riff[6], riff[7]]));
    let (mut exif, mut xmp) = (None, None);
    let mut at = 12u64;
    for _ in 0..MAX_WEBP_CHUNKS {
        if at + 8 > end {
            break;
        }
        r.seek(SeekFrom::Start(at))?;
        let mut h = [0u8; 8];
        if r.read_exact(&mut h).is_err() {
            break; // cut short: what we have
        }
        let size = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let slot = match &h[..4] {
            b"EXIF" if want_exif && exif.is_none() => Some(&mut exif),
            b"XMP " if want_xmp && xmp.is_none() => Some(&mut xmp),
            _ => None,
        };
        if let Some(slot) = slot.filter(|_| size <= MAX_META_CHUNK_BYTES) {
            let mut body = Vec::new();
            r.by_ref().take(u64::from(size)).read_to_end(&mut body)?;
            if body.starts_with(b"Exif\0\0") {
                body.drain(..6);
            }
            *slot = Some(body);
        }
        if (exif.is_some() || !want_exif) && (xmp.is_some() || !want_xmp) {
            break;
        }
        at += 8 + u64::from(size) + u64::from(size & 1);
    }
    Ok((exif, xmp))
}

/// Whether `head` starts a BigTIFF (version 43, 8-byte offsets), which
/// `imagesize` does not know.
pub(crate) fn is_bigtiff(head: &[u8]) -> bool {
    head.starts_with(b"II+\0") || head.starts_with(b"MM\0+")
}

/// Values one TIFF directory entry may hold before a file is refused
/// ([`tiff_directory_bounded`]): a strip or tile offset table of the
/// largest picture thumbnails accept has far fewer.
pub(crate) const MAX_TIFF_VALUES: u64 = 1 << 20;

/// Checks the first directory of a TIFF or BigTIFF in `r` before a decoder
/// reads it: `Err` with the reason when an entry claims more values than
/// [`MAX_TIFF_VALUES`] or more bytes than the file has, or the directory
/// more than [`tiffdir::MAX_ENTRIES`] entries. The `tiff` crate allocates
/// a vector for an entry's values by its count before reading them (a
/// 2 KiB file asked for 245 MB); a count the file cannot hold is a lie,
/// and nothing is allocated for it. `Ok` for anything else, a file that is
/// no TIFF or is cut short included (the decoder refuses those itself).
pub(crate) fn tiff_directory_bounded<R: Read + Seek>(r: &mut R) -> io::Result<Result<(), String>> {
    let dir = match FirstDirectory::open(r) {
        Ok(Some(dir)) => dir,
        Ok(None) => return Ok(Ok(())),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Ok(())),
        Err(e) => return Err(e),
    };
    let (entries, len) = (dir.declared(), dir.file_len());
    if entries > tiffdir::MAX_ENTRIES {
        return Ok(Err(format!("its first directory claims {entries} entries")));
    }
    for entry in dir {
        let e = match entry {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        };
        let Some(size) = e.value_size() else {
            continue;
        };
        if e.count > MAX_TIFF_VALUES || e.count.saturating_mul(size) > len {
            return Ok(Err(format!(
                "tag {} claims {} values, more than the file ({len} bytes) can hold \
                 or than {MAX_TIFF_VALUES}",
                e.tag, e.count
            )));
        }
    }
    Ok(Ok(()))
}

/// Width, height and EXIF orientation (when tagged, 1–8) of a BigTIFF's
/// first page, from its first directory wherever it lies in `r`: `None`
/// for a classic TIFF or no TIFF, or when either side is missing or 0.
pub fn bigtiff_info<R: Read + Seek>(r: &mut R) -> io::Result<Option<(i64, i64, Option<u16>)>> {
    let Some(dir) = FirstDirectory::open(r)?.filter(|d| d.is_big()) else {
        return Ok(None);
    };
    let (mut w, mut hgt, mut orientation) = (None, None, None);
    for entry in dir {
        let e = entry?;
        let Some(value) = e.value() else {
            continue;
        };
        match e.tag {
            256 => w = i64::try_from(value).ok(),
            257 => hgt = i64::try_from(value).ok(),
            274 => orientation = u16::try_from(value).ok().filter(|o| (1..=8).contains(o)),
            _ => {}
        }
    }
    Ok(match (w, hgt) {
        (Some(w), Some(h)) if w > 0 && h > 0 => Some((w, h, orientation)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A classic little-endian TIFF whose first directory has one entry
    /// `tag` of BYTE values, `count` of them, at offset 8.
    fn tiff_with_entry(tag: u16, count: u32) -> Vec<u8> {
        let mut f = b"II*\0".to_vec();
        f.extend_from_slice(&8u32.to_le_bytes());
        f.extend_from_slice(&1u16.to_le_bytes());
        f.extend_from_slice(&tag.to_le_bytes());
        f.extend_from_slice(&1u16.to_le_bytes());
        f.extend_from_slice(&count.to_le_bytes());
        f.extend_from_slice(&26u32.to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.resize(f.len() + 64, 0);
        f
    }

    #[test]
    fn tiff_entries_claiming_more_than_the_file_are_refused() {
        // What the fuzzer found: a 2 KiB file whose entry made the tiff
        // crate reserve 245 MB for its values.
        let lying = tiff_with_entry(273, 8 << 20);
        let why = tiff_directory_bounded(&mut Cursor::new(&lying)).unwrap();
        assert!(why.unwrap_err().contains("tag 273 claims 8388608 values"));
        // As many values as the file holds: fine.
        let honest = tiff_with_entry(273, 64);
        assert_eq!(
            tiff_directory_bounded(&mut Cursor::new(&honest)).unwrap(),
            Ok(())
        );
        // Not a TIFF, or cut short: left to the decoder.
        assert_eq!(
            tiff_directory_bounded(&mut Cursor::new(b"GIF89a")).unwrap(),
            Ok(())
        );
        let cut = &lying[..12];
        assert_eq!(
            tiff_directory_bounded(&mut Cursor::new(cut)).unwrap(),
            Ok(())
        );
        // More entries than any real directory: refused before reading them.
        let mut many = lying.clone();
        many[8..10].copy_from_slice(&5000u16.to_le_bytes());
        let why = tiff_directory_bounded(&mut Cursor::new(&many)).unwrap();
        assert!(why.unwrap_err().contains("5000 entries"));
    }

    fn bmp_head(dib: u32, w: &[u8], h: &[u8]) -> Vec<u8> {
        let mut b = b"BM".to_vec();
        b.extend([0; 12]);
        b.extend(dib.to_le_bytes());
        b.extend(w);
        b.extend(h);
        b.extend([0; 40]);
        b
    }

    #[test]
    fn bmp_sizes_from_every_header_kind() {
        let top_down = bmp_head(40, &640i32.to_le_bytes(), &(-480i32).to_le_bytes());
        assert_eq!(bmp_dims(&top_down), Some((640, 480)));
        let bottom_up = bmp_head(124, &640i32.to_le_bytes(), &480i32.to_le_bytes());
        assert_eq!(bmp_dims(&bottom_up), Some((640, 480)));
        let os2 = bmp_head(12, &640u16.to_le_bytes(), &480u16.to_le_bytes());
        assert_eq!(bmp_dims(&os2), Some((640, 480)));
        let zero = bmp_head(40, &0i32.to_le_bytes(), &480i32.to_le_bytes());
        assert_eq!(bmp_dims(&zero), None);
        let odd = bmp_head(41, &640i32.to_le_bytes(), &480i32.to_le_bytes());
        assert_eq!(bmp_dims(&odd), None);
        let min = bmp_head(40, &1i32.to_le_bytes(), &i32::MIN.to_le_bytes());
        assert_eq!(bmp_dims(&min), Some((1, 1 << 31)));
        assert_eq!(bmp_dims(&top_down[..20]), None);
    }

    #[test]
    fn bigtiff_size_and_orientation_from_its_first_directory() {
        let entry = |tag: u16, typ: u16, v: u64| {
            let mut e = tag.to_le_bytes().to_vec();
            e.extend(typ.to_le_bytes());
            e.extend(1u64.to_le_bytes());
            e.extend(v.to_le_bytes());
            e
        };
        let mut t = b"II+\0\x08\0\0\0".to_vec();
        t.extend(64u64.to_le_bytes());
        t.resize(64, 0xAA); // pixel data before the directory
        t.extend(3u64.to_le_bytes());
        t.extend(entry(256, 4, 5000));
        t.extend(entry(257, 16, 3000));
        t.extend(entry(274, 3, 6));
        t.extend(0u64.to_le_bytes());
        assert!(is_bigtiff(&t));
        let info = bigtiff_info(&mut std::io::Cursor::new(&t)).unwrap();
        assert_eq!(info, Some((5000, 3000, Some(6))));
        // Cut short or pointing nowhere: an error or nothing, no panic.
        for cut in 0..t.len() {
            let _ = bigtiff_info(&mut std::io::Cursor::new(&t[..cut]));
        }
        t[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(bigtiff_info(&mut std::io::Cursor::new(&t)).is_err());
    }

    #[test]
    fn xmp_orientation_as_attribute_or_element() {
        let attr = br#"<rdf:Description tiff:Orientation = '6' exif:X="1"/>"#;
        assert_eq!(xmp_orientation(attr), Some(6));
        let elem = b"<tiff:Orientation>\n 8 </tiff:Orientation>";
        assert_eq!(xmp_orientation(elem), Some(8));
        // Out of range, a longer number, other names: none.
        assert_eq!(xmp_orientation(b"tiff:Orientation=\"9\""), None);
        assert_eq!(xmp_orientation(b"tiff:Orientation=\"16\""), None);
        assert_eq!(xmp_orientation(b"tiff:OrientationX=\"6\""), None);
        assert_eq!(xmp_orientation(b"tiff:Orientation"), None);
        // A first mention without a value, then the real one.
        let two = b"<!-- tiff:Orientation --> tiff:Orientation=\"3\"";
        assert_eq!(xmp_orientation(two), Some(3));
    }

    #[test]
    fn png_and_webp_chunks_are_found_and_bounded() {
        let chunk = |kind: &[u8], body: &[u8]| {
            let mut c = (body.len() as u32).to_be_bytes().to_vec();
            c.extend(kind);
            c.extend(body);
            c.extend([0; 4]);
            c
        };
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(chunk(b"IHDR", &[0; 13]));
        png.extend(chunk(
            b"iTXt",
            b"XML:com.adobe.xmp\0\0\0\0\0<x tiff:Orientation='5'/>",
        ));
        png.extend(chunk(b"eXIf", b"MM\0*"));
        let found = |png: &[u8], head: usize| {
            png_meta(&png[..head.min(png.len())], &mut Cursor::new(png)).unwrap()
        };
        for head in [png.len(), 40, 8] {
            let (exif, xmp) = found(&png, head);
            assert_eq!(exif.as_deref(), Some(&b"MM\0*"[..]), "head {head}");
            assert_eq!(xmp.as_deref().and_then(xmp_orientation), Some(5));
        }
        // A chunk running past the end of the file ends the walk.
        let mut cut = png[..33].to_vec();
        cut.extend(999u32.to_be_bytes());
        cut.extend(b"eXIf");
        assert_eq!(found(&cut, 1000), (None, None));
        assert_eq!(found(b"GIF89a", 6), (None, None));
        // A compressed XMP packet is inflated, within the cap: a packet
        // of 1 MiB + 1 (a bomb, however it goes on) is dropped whole.
        let z = |text: &[u8]| {
            use std::io::Write;
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(text).unwrap();
            e.finish().unwrap()
        };
        let packet = b"<x tiff:Orientation='6'/>";
        let itxt = [&b"XML:com.adobe.xmp\0\x01\0en\0\0"[..], &z(packet)].concat();
        assert_eq!(xmp_of_itxt(&itxt).as_deref(), Some(&packet[..]));
        let cap = MAX_META_CHUNK_BYTES as usize;
        assert_eq!(
            inflate_bounded(&z(&vec![b' '; cap]), cap).map(|v| v.len()),
            Some(cap)
        );
        assert_eq!(inflate_bounded(&z(&vec![b' '; cap + 1]), cap), None);
        // Damaged zlib data, an unknown method: none.
        assert_eq!(inflate_bounded(b"\x78\x9c\xff\xff", cap), None);
        let other = [&b"XML:com.adobe.xmp\0\x01\x01\0\0"[..], &z(packet)].concat();
        assert_eq!(xmp_of_itxt(&other), None);

        let mut webp = b"RIFF\0\0\0\0WEBPVP8X".to_vec();
        webp.extend(10u32.to_le_bytes());
        webp.extend([0x0C, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        webp.extend(b"VP8L\x03\0\0\0abc\0");
        webp.extend(b"EXIF\x0a\0\0\0Exif\0\0MM\0*");
        webp.extend(b"XMP \x04\0\0\0<x/>");
        let n = webp.len() as u32 - 8;
        webp[4..8].copy_from_slice(&n.to_le_bytes());
        let (exif, xmp) = webp_meta(&mut std::io::Cursor::new(&webp)).unwrap();
        assert_eq!(exif.as_deref(), Some(&b"MM\0*"[..]));
        assert_eq!(xmp.as_deref(), Some(&b"<x/>"[..]));
        // No flags: nothing read; cut short: no panic.
        let mut plain = webp.clone();
        plain[20] = 0;
        assert_eq!(
            webp_meta(&mut std::io::Cursor::new(&plain)).unwrap(),
            (None, None)
        );
        for cut in 0..webp.len() {
            let _ = webp_meta(&mut std::io::Cursor::new(&webp[..cut]));
        }
    }
}
