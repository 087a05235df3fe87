//! Walking a GIF's blocks for its logical screen size, frame count and
//! total delay, without decoding any image data.

use std::io::{self, BufRead, Read};

#[derive(Debug, Default)]
pub(super) struct GifWalk {
    /// Logical screen size.
    pub(super) screen: Option<(u16, u16)>,
    pub(super) frames: u32,
    /// Sum of frame delays in hundredths of a second.
    pub(super) delay_cs: u32,
    /// Why the walk stopped before the trailer, if it did.
    pub(super) error: Option<io::Error>,
}

/// Walks GIF blocks without decoding any image data. A truncated file keeps
/// what was counted so far (viewers show such files too).
pub(super) fn walk_gif<R: BufRead>(mut r: R) -> GifWalk {
    let mut walk = GifWalk::default();
    if let Err(e) = walk_gif_blocks(&mut r, &mut walk) {
        walk.error = Some(e);
    }
    walk
}

fn walk_gif_blocks<R: BufRead>(r: &mut R, walk: &mut GifWalk) -> io::Result<()> {
    let mut header = [0u8; 13];
    r.read_exact(&mut header)?;
    if !header.starts_with(b"GIF8") {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a gif"));
    }
    walk.screen = Some((
        u16::from_le_bytes([header[6], header[7]]),
        u16::from_le_bytes([header[8], header[9]]),
    ));
    skip_color_table(r, header[10])?;
    let mut pending_delay = 0u32;
    loop {
        match read_u8(r)? {
            // Trailer.
            0x3B => return Ok(()),
            // Extension: a graphic control extension carries the delay of
            // the image that follows it.
            0x21 => {
                let label = read_u8(r)?;
                if label == 0xF9 {
                    let len = read_u8(r)?;
                    let mut gce = [0u8; 4];
                    if len >= 4 {
                        r.read_exact(&mut gce)?;
                        skip(r, u64::from(len - 4))?;
                        pending_delay = u32::from(u16::from_le_bytes([gce[1], gce[2]]));
                    } else {
                        skip(r, u64::from(len))?;
                    }
                }
                skip_sub_blocks(r)?;
            }
            // Image descriptor, optional local palette, LZW data.
            0x2C => {
                let mut desc = [0u8; 9];
                r.read_exact(&mut desc)?;
                skip_color_table(r, desc[8])?;
                read_u8(r)?; // LZW minimum code size
                skip_sub_blocks(r)?;
                walk.frames += 1;
                walk.delay_cs = walk.delay_cs.saturating_add(pending_delay);
                pending_delay = 0;
            }
            // Junk after the last frame is common; stop counting there.
            _ => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "unknown block"));
            }
        }
    }
}

fn skip_color_table<R: BufRead>(r: &mut R, flags: u8) -> io::Result<()> {
    if flags & 0x80 != 0 {
        skip(r, 3u64 << ((flags & 7) + 1))?;
    }
    Ok(())
}

fn skip_sub_blocks<R: BufRead>(r: &mut R) -> io::Result<()> {
    loop {
        match read_u8(r)? {
            0 => return Ok(()),
            n => skip(r, u64::from(n))?,
        }
    }
}

fn read_u8<R: Read>(r: &mut R) -> io::Result<u8> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b)?;
    Ok(b[0])
}

fn skip<R: BufRead>(r: &mut R, n: u64) -> io::Result<()> {
    let skipped = io::copy(&mut r.take(n), &mut io::sink())?;
    if skipped < n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}
