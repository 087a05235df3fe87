//! `upload/multipart.rs`: the streaming `multipart/form-data` reader of
//! `uploadFile.icc`, and the boundary parameter of its content type.
//!
//! Input: a `Content-Type` value, `\n`, then the body. Checks:
//! - `boundary()`: 1 to 70 bytes, and a quoted form of it parses back to it;
//! - the body read in one chunk, byte by byte, and in chunks of sizes drawn
//!   from the input gives the same parts, data and error: how hyper happens
//!   to cut a body must never change what is stored or accepted;
//! - that result equals the one of a plain reference reader over the whole
//!   body (below), so no part data swallows a delimiter and no delimiter is
//!   invented;
//! - the reader never holds more than a bounded copy (heap cap).
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use isync::upload::multipart::{self, Multipart, PartHead, MAX_HEADER_BYTES, MAX_PADDING_BYTES};
use libfuzzer_sys::fuzz_target;

type Parts = Vec<(PartHead, Vec<u8>)>;
/// A part's raw header block and its data.
type RawPart = (Vec<u8>, Vec<u8>);

/// The outcome: every part read, then how the body ended.
#[derive(Debug, PartialEq)]
struct Outcome {
    parts: Parts,
    end: Result<(), String>,
}

/// Polls a future whose source is always ready (an in-memory stream).
fn run<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("an in-memory body never waits"),
    }
}

fn read(chunks: Vec<Bytes>, boundary: &str) -> Outcome {
    let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
    let mut mp = Multipart::new(stream, boundary, u64::MAX);
    let mut parts = Vec::new();
    let end = run(async {
        while let Some(head) = mp.next_part().await.map_err(|e| e.to_string())? {
            let mut data = Vec::new();
            while let Some(c) = mp.chunk().await.map_err(|e| e.to_string())? {
                assert!(!c.is_empty(), "an empty chunk is no data");
                data.extend_from_slice(&c);
            }
            parts.push((head, data));
        }
        Ok(())
    });
    Outcome { parts, end }
}

/// Chunks of the sizes `sizes` cycles through.
fn cut(body: &[u8], sizes: &[usize]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let (mut at, mut i) = (0, 0);
    while at < body.len() {
        let n = sizes[i % sizes.len()].clamp(1, body.len() - at);
        out.push(Bytes::copy_from_slice(&body[at..at + n]));
        at += n;
        i += 1;
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// RFC 2046 §5.1 over the whole body, written for clarity: the data and
/// raw header block of each part, or whether it failed. Errors are compared
/// by kind only (the streaming reader's messages are checked against each
/// other above).
fn reference(body: &[u8], boundary: &str) -> Result<Vec<RawPart>, ()> {
    let mut buf = b"\r\n".to_vec();
    buf.extend_from_slice(body);
    let delim = format!("\r\n--{boundary}").into_bytes();
    let mut pos = find(&buf, &delim).ok_or(())? + delim.len();
    let mut parts = Vec::new();
    loop {
        let rest = &buf[pos..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        let pad = rest
            .iter()
            .take_while(|c| matches!(c, b' ' | b'\t'))
            .count();
        if pad > MAX_PADDING_BYTES || rest.get(pad..pad + 2) != Some(b"\r\n") {
            return Err(());
        }
        pos += pad + 2;
        let rest = &buf[pos..];
        let (head, skip) = if rest.starts_with(b"\r\n") {
            (&rest[..0], 2)
        } else {
            let end = find(rest, b"\r\n\r\n").ok_or(())?;
            (&rest[..end], end + 4)
        };
        if head.len() > MAX_HEADER_BYTES || std::str::from_utf8(head).is_err() {
            return Err(());
        }
        let head = head.to_vec();
        pos += skip;
        let len = find(&buf[pos..], &delim).ok_or(())?;
        parts.push((head, buf[pos..pos + len].to_vec()));
        pos += len + delim.len();
    }
}

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (ctype, body) = (&data[..split], data.get(split + 1..).unwrap_or(&[]));
    let Ok(ctype) = std::str::from_utf8(ctype) else {
        return;
    };
    let boundary = match multipart::boundary(ctype) {
        Some(b) => {
            assert!((1..=70).contains(&b.len()), "boundary {b:?}");
            let quoted = format!("multipart/form-data; boundary=\"{b}\"");
            assert_eq!(multipart::boundary(&quoted).as_deref(), Some(b.as_str()));
            b
        }
        None => "xYz-42".to_string(),
    };

    let whole = read(vec![Bytes::copy_from_slice(body)], &boundary);
    // Byte by byte is quadratic in nothing but slow for big inputs: cap it.
    if body.len() <= 4096 {
        let bytes = read(cut(body, &[1]), &boundary);
        assert_eq!(whole, bytes, "one chunk vs byte by byte");
    }
    let sizes: Vec<usize> = ctype.bytes().map(|b| usize::from(b % 37) + 1).collect();
    let odd = read(
        cut(body, if sizes.is_empty() { &[3] } else { &sizes }),
        &boundary,
    );
    assert_eq!(whole, odd, "one chunk vs chunks of {sizes:?}");

    match (reference(body, &boundary), &whole.end) {
        (Ok(parts), Ok(())) => {
            assert_eq!(parts.len(), whole.parts.len(), "part count");
            for ((_, want), (_, got)) in parts.iter().zip(&whole.parts) {
                assert_eq!(want, got, "part data");
            }
        }
        (Err(()), Err(_)) => {}
        (want, got) => panic!("reference {want:?}, reader {got:?}"),
    }
});
