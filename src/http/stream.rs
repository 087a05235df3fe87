//! Sending a file from disk (spec §7): whole (200) or one byte range (206),
//! 416 for a range starting past the end, `HEAD` with the same headers,
//! `ETag`/`Last-Modified` with `If-None-Match`/`If-Modified-Since` and
//! `If-Range`. Bodies are streamed in 64 KiB chunks, never buffered whole:
//! a 4 GB video streams on a 1 GB Pi with flat memory.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use http_range_header::{EndPosition, StartPosition};
use std::io::SeekFrom;
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

const CHUNK_BYTES: usize = 64 * 1024;

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No header, several ranges or an unparsable one: the whole file.
    Whole,
    Partial(RangeInclusive<u64>),
    Unsatisfiable,
}

/// Interprets one `Range` header value (syntax by `http-range-header`,
/// semantics per spec §7 / RFC 9110 §14).
pub fn range_for(value: Option<&str>, size: u64) -> RangeAnswer {
    let Some(value) = value else {
        return RangeAnswer::Whole;
    };
    let parsed = match http_range_header::parse_range_header(value) {
        Ok(p) => p,
        Err(http_range_header::RangeUnsatisfiableError::ZeroSuffix) => {
            return RangeAnswer::Unsatisfiable
        }
        Err(_) => return RangeAnswer::Whole,
    };
    if parsed.ranges.len() != 1 {
        return RangeAnswer::Whole;
    }
    let r = parsed.ranges[0];
    let (start, end) = match (r.start, r.end) {
        (StartPosition::Index(a), EndPosition::Index(b)) => {
            if b < a {
                return RangeAnswer::Whole;
            }
            (a, b)
        }
        (StartPosition::Index(a), EndPosition::LastByte) => (a, u64::MAX),
        (StartPosition::FromLast(n), _) => {
            if n == 0 || size == 0 {
                return RangeAnswer::Unsatisfiable;
            }
            (size.saturating_sub(n), u64::MAX)
        }
    };
    if start >= size {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Partial(start..=end.min(size - 1))
}

fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

/// Content type from the real file name's extension.
pub fn content_type_for(path: &Path) -> String {
    mime_guess::from_path(path)
        .first_raw()
        .unwrap_or("application/octet-stream")
        .to_string()
}

/// Errors opening the file, for the caller to map (gone vs other).
#[derive(Debug)]
pub enum OpenError {
    Missing,
    Io(std::io::Error),
}

/// Builds the response for sending `path`. `content_type` None = from the
/// extension.
pub async fn send_file(
    path: &Path,
    content_type: Option<&str>,
    method: &Method,
    req: &HeaderMap,
) -> Result<Response, OpenError> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(OpenError::Missing),
        Err(e) => return Err(OpenError::Io(e)),
    };
    let meta = file.metadata().await.map_err(OpenError::Io)?;
    if !meta.is_file() {
        return Err(OpenError::Missing);
    }
    let size = meta.len();
    let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
    let mtime_secs = mtime
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let etag = format!("\"{:x}-{:x}\"", size, mtime_secs);
    let last_modified = http_date(mtime);
    let ctype = content_type
        .map(str::to_owned)
        .unwrap_or_else(|| content_type_for(path));

    let mut h = HeaderMap::new();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&ctype) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&last_modified) {
        h.insert(header::LAST_MODIFIED, v);
    }

    let hdr = |name: header::HeaderName| req.get(name).and_then(|v| v.to_str().ok());
    let not_modified = match hdr(header::IF_NONE_MATCH) {
        Some(inm) => inm.split(',').any(|t| t.trim() == etag || t.trim() == "*"),
        // Not modified since a date at or after the file's (whole
        // seconds, as Last-Modified gives them); an invalid date is
        // ignored (RFC 9110 §13.1.3).
        None => hdr(header::IF_MODIFIED_SINCE)
            .and_then(|ims| httpdate::parse_http_date(ims).ok())
            .and_then(|ims| ims.duration_since(UNIX_EPOCH).ok())
            .is_some_and(|ims| mtime_secs <= ims.as_secs()),
    };
    if not_modified {
        return Ok((StatusCode::NOT_MODIFIED, h).into_response());
    }
    // If-Range: only honour the range when the validator still matches.
    let range_hdr = match hdr(header::IF_RANGE) {
        Some(ir) if ir != etag && ir != last_modified => None,
        _ => hdr(header::RANGE),
    };
    let (status, start, len) = match range_for(range_hdr, size) {
        RangeAnswer::Whole => (StatusCode::OK, 0, size),
        RangeAnswer::Partial(r) => {
            let v = format!("bytes {}-{}/{}", r.start(), r.end(), size);
            h.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&v).expect("ascii"),
            );
            (
                StatusCode::PARTIAL_CONTENT,
                *r.start(),
                r.end() - r.start() + 1,
            )
        }
        RangeAnswer::Unsatisfiable => {
            let v = format!("bytes */{size}");
            h.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&v).expect("ascii"),
            );
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, h).into_response());
        }
    };
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if method == Method::HEAD {
        return Ok((status, h).into_response());
    }
    if start > 0 {
        file.seek(SeekFrom::Start(start))
            .await
            .map_err(OpenError::Io)?;
    }
    let stream = ReaderStream::with_capacity(file.take(len), CHUNK_BYTES);
    Ok((status, h, Body::from_stream(stream)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_semantics() {
        use RangeAnswer::*;
        assert_eq!(range_for(None, 100), Whole);
        assert_eq!(range_for(Some("bytes=0-9"), 100), Partial(0..=9));
        assert_eq!(range_for(Some("bytes=0-1"), 100), Partial(0..=1));
        assert_eq!(range_for(Some("bytes=90-"), 100), Partial(90..=99));
        assert_eq!(range_for(Some("bytes=90-500"), 100), Partial(90..=99));
        assert_eq!(range_for(Some("bytes=-10"), 100), Partial(90..=99));
        assert_eq!(range_for(Some("bytes=-500"), 100), Partial(0..=99));
        assert_eq!(range_for(Some("bytes=99-99"), 100), Partial(99..=99));
        assert_eq!(range_for(Some("bytes=100-"), 100), Unsatisfiable);
        assert_eq!(range_for(Some("bytes=100-200"), 100), Unsatisfiable);
        assert_eq!(range_for(Some("bytes=-0"), 100), Unsatisfiable);
        assert_eq!(range_for(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(range_for(Some("bytes=0-1,5-6"), 100), Whole);
        assert_eq!(range_for(Some("bytes=5-2"), 100), Whole);
        assert_eq!(range_for(Some("items=0-1"), 100), Whole);
        assert_eq!(range_for(Some("garbage"), 100), Whole);
        assert_eq!(range_for(Some("bytes=abc-"), 100), Whole);
    }
}
