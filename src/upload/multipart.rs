//! A streaming `multipart/form-data` reader (RFC 7578 / RFC 2046 §5.1) for
//! `uploadFile.icc`, built for throughput: a part's bytes are handed out as
//! slices of the chunks hyper received — never copied, never gathered — and
//! the boundary is found by probing one 8-byte word per `len − 7` bytes
//! (see [`Finder`]). Only a delimiter split between two chunks costs a copy,
//! of a few dozen bytes. (multer, used before, copies every chunk into a buffer
//! of its own: a full extra pass over a multi-GB body.)

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use std::pin::Pin;

/// Longest header block of one part, however the body is chunked.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Longest transport padding (spaces, tabs) after a boundary, however the
/// body is chunked.
pub const MAX_PADDING_BYTES: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum MultipartError {
    #[error("{0}")]
    Malformed(String),
    #[error("the body is larger than {0} bytes")]
    TooLarge(u64),
    #[error("{0}")]
    Body(String),
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Source = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>;

/// The boundary of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        // RFC 2046: 1 to 70 characters.
        (!v.is_empty() && v.len() <= 70).then(|| v.to_string())
    })
}

/// The `name` and `filename` of a part's `Content-Disposition`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PartHead {
    pub name: Option<String>,
    pub file_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Inside a part's data (or the preamble before the first part).
    Data,
    /// Just after a delimiter: `--` (the end) or a new part's headers.
    Delimiter,
    End,
}

pub struct Multipart {
    source: Source,
    /// A chunk taken from the source and not yet looked at.
    rest: Option<Bytes>,
    /// Received bytes not yet handed out.
    buf: Bytes,
    /// Finds `\r\n--boundary`.
    finder: Finder,
    at: At,
    eof: bool,
    received: u64,
    limit: u64,
}

impl Multipart {
    /// Reads `body`, failing once more than `limit` bytes arrived.
    pub fn new<S, E>(body: S, boundary: &str, limit: u64) -> Multipart
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        Multipart {
            source: Box::pin(body.map(|r| r.map_err(Into::into))),
            rest: None,
            // The first delimiter may open the body without a CRLF before
            // it: reading as if one were there finds both forms.
            buf: Bytes::from_static(b"\r\n"),
            finder: Finder::new(format!("\r\n--{boundary}").into_bytes()),
            at: At::Data,
            eof: false,
            received: 0,
            limit,
        }
    }

    fn find(&self, hay: &[u8]) -> Option<usize> {
        self.finder.find(hay)
    }

    fn delim_len(&self) -> usize {
        self.finder.needle.len()
    }

    /// Where the bytes that could still begin a delimiter start at the end
    /// of `hay` (`hay.len()` when none could).
    fn held_from(&self, hay: &[u8]) -> usize {
        let d = &self.finder.needle;
        let from = hay.len().saturating_sub(d.len() - 1);
        (from..hay.len())
            .find(|&p| hay[p] == b'\r' && d.starts_with(&hay[p..]))
            .unwrap_or(hay.len())
    }

    /// The next chunk of the source; `None` at its end.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, MultipartError> {
        if let Some(r) = self.rest.take() {
            return Ok(Some(r));
        }
        if self.eof {
            return Ok(None);
        }
        loop {
            match self.source.next().await {
                Some(Ok(b)) => {
                    self.received += b.len() as u64;
                    if self.received > self.limit {
                        return Err(MultipartError::TooLarge(self.limit));
                    }
                    if !b.is_empty() {
                        return Ok(Some(b));
                    }
                }
                Some(Err(e)) => return Err(MultipartError::Body(e.to_string())),
                None => {
                    self.eof = true;
                    return Ok(None);
                }
            }
        }
    }

    /// Appends more input to `buf`. With bytes held in `buf`, only `want`
    /// bytes of the next chunk are joined to them (a small copy), the rest
    /// is kept for later; an empty `buf` takes the chunk as it is.
    async fn fill(&mut self, want: usize) -> Result<bool, MultipartError> {
        let Some(mut chunk) = self.next_chunk().await? else {
            return Ok(false);
        };
        if self.buf.is_empty() {
            self.buf = chunk;
            return Ok(true);
        }
        let take = want.min(chunk.len());
        let mut joined = BytesMut::with_capacity(self.buf.len() + take);
        joined.extend_from_slice(&self.buf);
        joined.extend_from_slice(&chunk[..take]);
        chunk.advance(take);
        if !chunk.is_empty() {
            self.rest = Some(chunk);
        }
        self.buf = joined.freeze();
        Ok(true)
    }

    fn incomplete(&self) -> MultipartError {
        MultipartError::Malformed("the body ended inside a part".into())
    }

    /// The next piece of the current part's data; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, MultipartError> {
        loop {
            if self.at != At::Data {
                return Ok(None);
            }
            if let Some(i) = self.find(&self.buf) {
                let data = self.buf.split_to(i);
                self.buf.advance(self.delim_len());
                self.at = At::Delimiter;
                return Ok((!data.is_empty()).then_some(data));
            }
            let cut = self.held_from(&self.buf);
            if cut > 0 {
                return Ok(Some(self.buf.split_to(cut)));
            }
            if !self.fill(self.delim_len()).await? {
                return Err(self.incomplete());
            }
        }
    }

    /// Reads and drops what is left of the body, up to `max` bytes (a
    /// refused request, so the client reads the reply; see the caller).
    pub(crate) async fn drain(&mut self, max: u64) {
        let mut n = self.buf.len() as u64;
        self.buf.clear();
        self.at = At::End;
        while n < max {
            match self.next_chunk().await {
                Ok(Some(b)) => n += b.len() as u64,
                _ => break,
            }
        }
    }

    /// Skips what is left of the current part and reads the next part's
    /// headers; `None` after the closing delimiter.
    pub async fn next_part(&mut self) -> Result<Option<PartHead>, MultipartError> {
        while self.chunk().await?.is_some() {}
        if self.at == At::End {
            return Ok(None);
        }
        // After the delimiter: `--` closes the body; otherwise optional
        // transport padding and a CRLF, then the headers up to a blank line.
        loop {
            let b = &self.buf[..];
            if b.starts_with(b"--") {
                self.at = At::End;
                return Ok(None);
            }
            let pad = b.iter().take_while(|c| **c == b' ' || **c == b'\t').count();
            if pad > MAX_PADDING_BYTES {
                return Err(MultipartError::Malformed(format!(
                    "a boundary line is followed by more than {MAX_PADDING_BYTES} bytes of padding"
                )));
            }
            if b.len() >= pad + 2 {
                if &b[pad..pad + 2] != b"\r\n" {
                    return Err(MultipartError::Malformed(
                        "a boundary line is followed by something else than a line end".into(),
                    ));
                }
                self.buf.advance(pad + 2);
                break;
            }
            if !self.fill(MAX_HEADER_BYTES).await? {
                return Err(self.incomplete());
            }
        }
        // Where the search for the blank line goes on: the bytes before it
        // were searched already (a body trickling in a byte at a time must
        // not cost a rescan of the whole block each time).
        let mut searched = 0;
        let end = loop {
            if self.buf.starts_with(b"\r\n") {
                break 0; // no headers at all
            }
            let found = self.buf[searched..]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|i| searched + i);
            // The block is `i` bytes long when found, else at least all but
            // the last 3 bytes held: the same verdict whether it arrived in
            // one chunk or byte by byte.
            let len = found.unwrap_or(self.buf.len().saturating_sub(3));
            if len > MAX_HEADER_BYTES {
                return Err(MultipartError::Malformed(format!(
                    "the headers of a part are longer than {MAX_HEADER_BYTES} bytes"
                )));
            }
            if let Some(i) = found {
                break i;
            }
            searched = self.buf.len().saturating_sub(3);
            if !self.fill(MAX_HEADER_BYTES).await? {
                return Err(self.incomplete());
            }
        };
        let head = self.buf.split_to(end);
        self.buf.advance(if end == 0 { 2 } else { 4 });
        self.at = At::Data;
        let text = std::str::from_utf8(&head)
            .map_err(|_| MultipartError::Malformed("part headers are not UTF-8".into()))?;
        Ok(Some(parse_head(text)))
    }
}

/// Substring search for one needle of 8 bytes or more, built for long
/// haystacks where it is rare. Any occurrence, `m` bytes long, contains a
/// whole 8-byte word starting at a multiple of `m − 7`; so only those words
/// are read, each checked against a 4096-bit set of the needle's own 8-byte
/// windows (one multiply and one bit test, and the steps do not depend on
/// each other, so the CPU overlaps them), and only a word in the set is
/// verified. The delimiter never overlaps itself (`\r` only opens it), so
/// the first probe that verifies gives the first occurrence.
struct Finder {
    needle: Vec<u8>,
    /// Which hashes the needle's 8-byte windows have.
    set: [u64; 64],
}

impl Finder {
    fn new(needle: Vec<u8>) -> Finder {
        let mut set = [0u64; 64];
        for w in needle.windows(8) {
            let h = Self::hash(Self::word(w));
            set[h >> 6] |= 1 << (h & 63);
        }
        Finder { needle, set }
    }

    fn word(b: &[u8]) -> u64 {
        u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
    }

    fn hash(w: u64) -> usize {
        (w.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as usize
    }

    fn find(&self, hay: &[u8]) -> Option<usize> {
        let n = &self.needle;
        let m = n.len();
        if m < 8 {
            return hay.windows(m).position(|w| w == n);
        }
        let step = m - 7;
        let mut i = 0;
        while i + 8 <= hay.len() {
            let h = Self::hash(Self::word(&hay[i..]));
            if self.set[h >> 6] & (1 << (h & 63)) != 0 {
                // Which window of the needle could this be? Earliest start.
                let hit = (0..=m - 8)
                    .filter(|&k| k <= i && hay[i..i + 8] == n[k..k + 8])
                    .map(|k| i - k)
                    .filter(|&j| j + m <= hay.len() && &hay[j..j + m] == n.as_slice())
                    .min();
                if hit.is_some() {
                    return hit;
                }
            }
            i += step;
        }
        None
    }
}

/// `name` and `filename` from the `Content-Disposition` line of `headers`.
fn parse_head(headers: &str) -> PartHead {
    let mut head = PartHead::default();
    for line in headers.split("\r\n") {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if !k.trim().eq_ignore_ascii_case("content-disposition") {
            continue;
        }
        let mut rest = v;
        // Skip the disposition type (`form-data`).
        rest = rest.split_once(';').map_or("", |(_, r)| r);
        while !rest.is_empty() {
            let Some((key, after)) = rest.split_once('=') else {
                break;
            };
            let key = key
                .trim()
                .trim_start_matches(';')
                .trim()
                .to_ascii_lowercase();
            let after = after.trim_start();
            let (value, next) = if let Some(q) = after.strip_prefix('"') {
                quoted(q)
            } else {
                match after.split_once(';') {
                    Some((v, n)) => (v.trim().to_string(), n),
                    None => (after.trim().to_string(), ""),
                }
            };
            match key.as_str() {
                "name" => head.name = Some(value),
                "filename" => head.file_name = Some(value),
                _ => {}
            }
            rest = next;
        }
    }
    head
}

/// A quoted string's value (after the opening quote) and what follows it.
fn quoted(s: &str) -> (String, &str) {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, e)) = chars.next() {
                    out.push(e);
                }
            }
            '"' => {
                let next = &s[i + 1..];
                return (out, next.split_once(';').map_or("", |(_, n)| n));
            }
            c => out.push(c),
        }
    }
    (out, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[(&str, &[u8])], boundary: &str) -> Vec<u8> {
        let mut b = b"preamble\r\n".to_vec();
        for (head, data) in parts {
            b.extend_from_slice(format!("--{boundary}\r\n{head}\r\n\r\n").as_bytes());
            b.extend_from_slice(data);
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(format!("--{boundary}--\r\nepilogue").as_bytes());
        b
    }

    /// Reads every part, with the body cut into chunks of `size` bytes.
    fn read_all(b: &[u8], boundary: &str, size: usize) -> Result<Vec<(PartHead, Vec<u8>)>, String> {
        let chunks: Vec<Result<Bytes, std::io::Error>> = b
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut mp = Multipart::new(futures_util::stream::iter(chunks), boundary, 1 << 30);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut out = Vec::new();
            while let Some(h) = mp.next_part().await.map_err(|e| e.to_string())? {
                let mut data = Vec::new();
                while let Some(c) = mp.chunk().await.map_err(|e| e.to_string())? {
                    data.extend_from_slice(&c);
                }
                out.push((h, data));
            }
            Ok(out)
        })
    }

    #[test]
    fn parts_survive_any_chunking() {
        let bnd = "xYz-42";
        // Data full of near-delimiters.
        let tricky = b"\r\n--xYz-4\r\n--xY\r\r\n-\r\n--xYz-43".repeat(50);
        let b = body(
            &[
                (
                    "Content-Disposition: form-data; name=\"file\"; filename=\"origin\"",
                    &tricky,
                ),
                ("content-disposition: form-data; name=note", b"hello"),
                ("Content-Disposition: form-data; name=\"e\"", b""),
            ],
            bnd,
        );
        for size in [1, 2, 3, 7, 13, 64, 1000, b.len()] {
            let got = read_all(&b, bnd, size).unwrap();
            assert_eq!(got.len(), 3, "chunks of {size}");
            assert_eq!(got[0].0.name.as_deref(), Some("file"));
            assert_eq!(got[0].0.file_name.as_deref(), Some("origin"));
            assert_eq!(got[0].1, tricky, "chunks of {size}");
            assert_eq!(got[1].0.name.as_deref(), Some("note"));
            assert_eq!(got[1].0.file_name, None);
            assert_eq!(got[1].1, b"hello");
            assert_eq!(got[2].1, b"");
        }
    }

    #[test]
    fn a_body_starting_with_the_boundary_and_odd_inputs() {
        let b = b"--b\r\nContent-Disposition: form-data; name=\"a\\\"b\"\r\n\r\nx\r\n--b--";
        let got = read_all(b, "b", 4).unwrap();
        assert_eq!(got[0].0.name.as_deref(), Some("a\"b"));
        assert_eq!(got[0].1, b"x");
        // Cut inside a part; no boundary at all; junk after a boundary.
        assert!(read_all(b"--b\r\n\r\nabc", "b", 3).is_err());
        assert!(read_all(b"garbage without a boundary line", "b", 5).is_err());
        assert!(read_all(b"--bjunk\r\n\r\n", "b", 5).is_err());
        // An empty body (only the closing delimiter) has no parts.
        assert!(read_all(b"--b--\r\n", "b", 2).unwrap().is_empty());
    }

    /// A part whose header block is exactly `n` bytes long.
    fn head_of(n: usize) -> String {
        let mut h = String::from("Content-Disposition: form-data; name=\"f\"; filename=\"origin\"");
        h.push_str("\r\nX-Pad: ");
        let pad = n.checked_sub(h.len()).expect("room for the padding");
        h.push_str(&"p".repeat(pad));
        assert_eq!(h.len(), n);
        h
    }

    #[test]
    fn the_header_limit_holds_however_the_body_is_cut() {
        let bnd = "lim";
        let at_limit = body(&[(&head_of(MAX_HEADER_BYTES), b"data")], bnd);
        let over = body(&[(&head_of(MAX_HEADER_BYTES + 1), b"data")], bnd);
        let far_over = body(&[(&head_of(MAX_HEADER_BYTES * 4), b"data")], bnd);
        // One chunk for the whole body, byte by byte, and sizes around the
        // limit.
        for size in [
            usize::MAX,
            1,
            3,
            4096,
            MAX_HEADER_BYTES,
            MAX_HEADER_BYTES + 5,
        ] {
            let got = read_all(&at_limit, bnd, size.min(at_limit.len()))
                .unwrap_or_else(|e| panic!("chunks of {size}: {e}"));
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].0.file_name.as_deref(), Some("origin"));
            assert_eq!(got[0].1, b"data");
            for b in [&over, &far_over] {
                let e = read_all(b, bnd, size.min(b.len())).unwrap_err();
                assert!(
                    e.contains("longer than 16384 bytes"),
                    "chunks of {size}: {e}"
                );
            }
        }
    }

    /// Found by fuzz/fuzz_targets/multipart.rs: a header block or padding
    /// over its limit was refused when it arrived in small chunks and
    /// accepted when it arrived in one.
    #[test]
    fn limits_hold_whatever_the_chunking() {
        let long_head = format!(
            "--b\r\nContent-Disposition: form-data; name=\"f\"\r\nX-Pad: {}\r\n\r\nx\r\n--b--",
            "a".repeat(MAX_HEADER_BYTES)
        );
        let just_fits = format!("--b\r\n{}\r\n\r\nx\r\n--b--", "a".repeat(MAX_HEADER_BYTES));
        let long_pad = format!("--b{}\r\n\r\nx\r\n--b--", " ".repeat(MAX_PADDING_BYTES + 1));
        let pad_fits = format!("--b{}\r\n\r\nx\r\n--b--", " ".repeat(MAX_PADDING_BYTES));
        for size in [1, 5, 100, 1 << 20] {
            let err = read_all(long_head.as_bytes(), "b", size).unwrap_err();
            assert!(err.contains("longer than"), "chunks of {size}: {err}");
            let got = read_all(just_fits.as_bytes(), "b", size).unwrap();
            assert_eq!(got[0].1, b"x", "chunks of {size}");
            let err = read_all(long_pad.as_bytes(), "b", size).unwrap_err();
            assert!(err.contains("padding"), "chunks of {size}: {err}");
            let got = read_all(pad_fits.as_bytes(), "b", size).unwrap();
            assert_eq!(got[0].1, b"x", "chunks of {size}");
        }
    }

    #[test]
    fn the_finder_finds_the_first_occurrence_anywhere() {
        let mut x: u64 = 0x1234_5678_9ABC_DEF1;
        let mut noise = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly bytes of the needle, to make near misses common.
            b"\r\n--ab-"[(x % 7) as usize]
        };
        for m in [5usize, 8, 9, 12, 40] {
            let needle: Vec<u8> = format!(
                "\r\n--{}",
                "ab-".repeat(m).chars().take(m - 4).collect::<String>()
            )
            .into_bytes();
            let f = Finder::new(needle.clone());
            for len in [0usize, 3, 7, 8, 50, 300] {
                for at in [0usize, 1, 5, 17, 200] {
                    let mut hay: Vec<u8> = (0..len).map(|_| noise()).collect();
                    if at + needle.len() <= len {
                        hay[at..at + needle.len()].copy_from_slice(&needle);
                    }
                    let naive = hay
                        .windows(needle.len())
                        .position(|w| w == needle.as_slice());
                    assert_eq!(f.find(&hay), naive, "m {m} len {len} at {at}");
                }
            }
        }
    }

    #[test]
    fn boundaries_from_content_types() {
        assert_eq!(
            boundary("multipart/form-data; boundary=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            boundary("Multipart/Form-Data; charset=x; boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(boundary("application/octet-stream; boundary=x"), None);
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={}", "x".repeat(71))),
            None
        );
    }
}
