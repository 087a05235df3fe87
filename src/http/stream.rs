//! Sending a file from disk (spec §7): whole (200) or one byte range (206),
//! 416 for a range starting past the end, `HEAD` with the same headers,
//! `ETag`/`Last-Modified` with `If-None-Match`/`If-Modified-Since` and
//! `If-Range`. Bodies are never buffered whole (a 4 GB video streams on a
//! 1 GB Pi with flat memory): the accept loop sends them with `sendfile`
//! (`http::sendfile`); elsewhere they stream in 64 KiB reads.

use crate::http::sendfile::FileRegion;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_range_header::{EndPosition, StartPosition};
use std::ops::RangeInclusive;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

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
pub(crate) fn content_type_for(path: &Path) -> String {
    mime_guess::from_path(path)
        .first_raw()
        .unwrap_or("application/octet-stream")
        .to_string()
}

/// Errors opening the file, for the caller to map (gone vs other).
#[derive(Debug)]
pub(crate) enum OpenError {
    Missing,
    Io(std::io::Error),
}

/// Builds the response for sending `path`. `content_type` None = from the
/// extension.
pub(crate) async fn send_file(
    path: &Path,
    content_type: Option<&str>,
    method: &Method,
    req: &HeaderMap,
) -> Result<Response, OpenError> {
    let p = path.to_path_buf();
    let opened = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&p)?;
        let meta = file.metadata()?;
        Ok::<_, std::io::Error>((file, meta))
    })
    .await
    .map_err(|e| OpenError::Io(std::io::Error::other(e)))?;
    let (file, meta) = match opened {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(OpenError::Missing),
        Err(e) => return Err(OpenError::Io(e)),
    };
    if !meta.is_file() {
        return Err(OpenError::Missing);
    }
    let ctype = content_type
        .map(str::to_owned)
        .unwrap_or_else(|| content_type_for(path));
    Ok(send_open(file, &meta, &ctype, method, req))
}

/// Builds the response for sending an already open regular file (`meta` is
/// its metadata): validators, conditional requests, `Range`, `HEAD`. The
/// body reads from `file` itself, so what is sent is what was opened,
/// whatever the path names meanwhile.
pub(crate) fn send_open(
    file: std::fs::File,
    meta: &std::fs::Metadata,
    ctype: &str,
    method: &Method,
    req: &HeaderMap,
) -> Response {
    let size = meta.len();
    let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
    let mtime_secs = mtime
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let etag = format!("\"{:x}-{:x}\"", size, mtime_secs);
    let last_modified = http_date(mtime);

    let mut h = HeaderMap::new();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(ctype) {
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
        return (StatusCode::NOT_MODIFIED, h).into_response();
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
            return (StatusCode::RANGE_NOT_SATISFIABLE, h).into_response();
        }
    };
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if method == Method::HEAD {
        return (status, h).into_response();
    }
    let file = Arc::new(file);
    let mut resp = (status, h, file_body(file.clone(), start, len)).into_response();
    // The accept loop sends this region with sendfile instead of the
    // streamed body (http/sendfile.rs).
    resp.extensions_mut().insert(FileRegion {
        file,
        offset: start,
        len,
    });
    resp
}

/// `len` bytes of `file` from `offset`, read in [`CHUNK_BYTES`] pieces on
/// the blocking pool as the client takes them (positional reads: nothing
/// happens before the first poll, and memory stays one chunk per
/// connection). A file that shrank while being sent ends the body with an
/// error, so the client sees a short, failed transfer rather than
/// silently truncated data.
fn file_body(file: Arc<std::fs::File>, offset: u64, len: u64) -> Body {
    let chunks =
        futures_util::stream::try_unfold((file, offset, len), |(file, offset, left)| async move {
            if left == 0 {
                return Ok(None);
            }
            let want = left.min(CHUNK_BYTES as u64) as usize;
            let f = file.clone();
            let buf = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0; want];
                let n = f.read_at(&mut buf, offset)?;
                buf.truncate(n);
                Ok::<_, std::io::Error>(buf)
            })
            .await
            .map_err(std::io::Error::other)??;
            if buf.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file shrank while it was being sent",
                ));
            }
            let n = buf.len() as u64;
            Ok(Some((Bytes::from(buf), (file, offset + n, left - n))))
        });
    Body::from_stream(chunks)
}

/// What every original (`downFile`, `shareFile`) is sent with, whoever
/// put it in the library: the browser must never run it as a page of this
/// server's origin, where it could call `/api/v1/*` with the viewer's
/// session (stored XSS through an uploaded `.html` or `.svg`).
///
/// - `X-Content-Type-Options: nosniff`: the declared type is final (no
///   HTML sniffed out of a "JPEG").
/// - `Content-Security-Policy: sandbox; default-src 'none'; …`: even
///   rendered, the document gets a unique opaque origin, no scripts, no
///   plugins, no forms, and may load nothing; pictures, video and sound
///   still display (the image or media document loads itself, `'self'`).
/// - `Content-Disposition`: `inline` only for pictures, video and sound
///   that cannot script (not SVG); anything else (HTML, SVG, PDF, text,
///   unknown) is `attachment`, saved rather than shown. The name follows
///   RFC 6266: an ASCII `filename` fallback and the exact name as UTF-8 in
///   `filename*`.
pub(crate) fn original_headers(name: &str, ctype: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(ORIGINAL_CSP),
    );
    let kind = if displays_inline(ctype) {
        "inline"
    } else {
        "attachment"
    };
    if let Ok(v) = HeaderValue::from_str(&content_disposition(kind, name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h
}

/// The policy of [`original_headers`].
pub(crate) const ORIGINAL_CSP: &str =
    "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; \
     style-src 'unsafe-inline'";

/// Pictures, video and sound, which a browser shows without running
/// anything; SVG is a document that can carry scripts.
pub(crate) fn displays_inline(ctype: &str) -> bool {
    let essence = ctype
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let media = ["image/", "video/", "audio/"]
        .iter()
        .any(|p| essence.starts_with(p));
    media && !essence.contains("svg") && !essence.contains("xml")
}

/// `<kind>; filename="<ascii fallback>"; filename*=UTF-8''<pct-encoded>`
/// (RFC 6266 §4.3, RFC 8187). The fallback keeps printable ASCII but for
/// `"` `\` `/` (each becomes `_`, as do non-ASCII characters and
/// controls); `filename*` carries every character, percent-encoded outside
/// RFC 8187's `attr-char`.
pub(crate) fn content_disposition(kind: &str, name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| match c {
            '"' | '\\' | '/' => '_',
            c if c.is_ascii_graphic() || c == ' ' => c,
            _ => '_',
        })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        let attr_char = b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b);
        if attr_char {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pictures_video_and_sound_display_inline() {
        for t in [
            "image/jpeg",
            "image/png",
            "image/gif",
            "image/heic",
            "video/mp4",
            "video/quicktime",
            "audio/mpeg",
            "IMAGE/JPEG; charset=x",
        ] {
            assert!(displays_inline(t), "{t}");
        }
        for t in [
            "image/svg+xml",
            "text/html",
            "application/xhtml+xml",
            "text/plain",
            "application/pdf",
            "application/octet-stream",
            "text/xml",
            "image/x-svg",
            "",
        ] {
            assert!(!displays_inline(t), "{t}");
        }
    }

    #[test]
    fn content_disposition_has_an_ascii_fallback_and_the_exact_utf8_name() {
        assert_eq!(
            content_disposition("inline", "IMG_0001.JPG"),
            "inline; filename=\"IMG_0001.JPG\"; filename*=UTF-8''IMG_0001.JPG"
        );
        assert_eq!(
            content_disposition("attachment", "Été \"x\"\\/a;b\r\n.html"),
            "attachment; filename=\"_t_ _x___a;b__.html\"; \
             filename*=UTF-8''%C3%89t%C3%A9%20%22x%22%5C%2Fa%3Bb%0D%0A.html"
        );
        // Every header built from a hostile name is a valid header value.
        let h = original_headers("a\u{0}\n\u{7f}é.svg", "image/svg+xml");
        let cd = h[header::CONTENT_DISPOSITION].to_str().unwrap();
        assert!(cd.starts_with("attachment; "), "{cd}");
        assert!(cd.is_ascii() && !cd.contains('\n'));
    }

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
