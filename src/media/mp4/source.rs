//! The box reader: a file behind a read-ahead buffer with our own idea of
//! the position, box headers and the walk over a box's children.

use std::io::{self, BufReader, Read, Seek, SeekFrom};

use super::{Mp4Error, MAX_BOXES_PER_CONTAINER, READ_BUF_BYTES};

#[derive(Debug, Clone, Copy)]
pub(super) struct BoxHeader {
    pub(super) kind: [u8; 4],
    /// First byte after the header.
    pub(super) body: u64,
    /// One past the last byte of the box.
    pub(super) end: u64,
}

/// The file plus our own idea of the position, so forward hops inside the
/// read-ahead buffer cost no system call.
pub(super) struct Source<R> {
    r: BufReader<R>,
    pos: u64,
    pub(super) len: u64,
}

impl<R: Read + Seek> Source<R> {
    pub(super) fn new(mut inner: R) -> io::Result<Self> {
        let len = inner.seek(SeekFrom::End(0))?;
        inner.seek(SeekFrom::Start(0))?;
        Ok(Source {
            r: BufReader::with_capacity(READ_BUF_BYTES, inner),
            pos: 0,
            len,
        })
    }

    fn goto(&mut self, pos: u64) -> io::Result<()> {
        if pos != self.pos {
            // Both are ≤ the file length, which fits an i64 on every OS.
            let delta = pos as i128 - self.pos as i128;
            self.r.seek_relative(delta as i64)?;
            self.pos = pos;
        }
        Ok(())
    }

    pub(super) fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        self.goto(pos)?;
        self.r.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// Reads the box header at `pos` inside a parent ending at `parent_end`.
    /// `None` when fewer than 8 bytes remain (the end, or trailing padding).
    /// The returned `end` may exceed `parent_end`; callers decide.
    pub(super) fn header(
        &mut self,
        pos: u64,
        parent_end: u64,
    ) -> Result<Option<BoxHeader>, Mp4Error> {
        if parent_end.saturating_sub(pos) < 8 || pos >= self.len {
            return Ok(None);
        }
        let mut h = [0u8; 8];
        self.read_at(pos, &mut h)?;
        let kind = [h[4], h[5], h[6], h[7]];
        let size32 = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        let (body, size) = match size32 {
            // 64-bit size follows the type.
            1 => {
                if parent_end.saturating_sub(pos) < 16 {
                    return Err(Mp4Error::Malformed("64-bit size"));
                }
                let mut large = [0u8; 8];
                self.read_at(pos + 8, &mut large)?;
                (pos + 16, u64::from_be_bytes(large))
            }
            // Extends to the end of the enclosing box (or file).
            0 => (pos + 8, parent_end - pos),
            n => (pos + 8, u64::from(n)),
        };
        if size < body - pos {
            return Err(Mp4Error::Malformed("undersized"));
        }
        let end = pos
            .checked_add(size)
            .ok_or(Mp4Error::Malformed("oversized"))?;
        Ok(Some(BoxHeader { kind, body, end }))
    }

    /// Calls `visit` for each child box of `parent`, which must lie inside it.
    pub(super) fn children(
        &mut self,
        parent: &BoxHeader,
        mut visit: impl FnMut(&mut Self, &BoxHeader) -> Result<(), Mp4Error>,
    ) -> Result<(), Mp4Error> {
        let mut pos = parent.body;
        for _ in 0..MAX_BOXES_PER_CONTAINER {
            let Some(child) = self.header(pos, parent.end)? else {
                return Ok(());
            };
            if child.end > parent.end {
                return Err(Mp4Error::Malformed("child"));
            }
            visit(self, &child)?;
            pos = child.end;
        }
        Ok(())
    }

    /// Reads up to `buf.len()` bytes of a box body; returns how many.
    pub(super) fn body(&mut self, hdr: &BoxHeader, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min((hdr.end - hdr.body).try_into().unwrap_or(usize::MAX));
        self.read_at(hdr.body, &mut buf[..n])?;
        Ok(n)
    }
}
