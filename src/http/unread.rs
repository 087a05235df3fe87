//! `Connection: close` on answers given before the request body was read to
//! its end (a refusal of a too-large form, an upload refused mid-body, an
//! unauthenticated POST). hyper then closes the connection after the answer
//! rather than read an unknown amount of body; without the header a client
//! that pooled the connection may send its next request into the closing
//! socket and see it fail (`IncompleteMessage`, a reset) through no fault
//! of its own.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

pub(crate) async fn close_if_unread(req: Request, next: Next) -> Response {
    let h = req.headers();
    let has_body = match h.get(header::CONTENT_LENGTH) {
        Some(v) => v.as_bytes() != b"0",
        None => h.contains_key(header::TRANSFER_ENCODING),
    };
    if !has_body {
        return next.run(req).await;
    }
    let ended = Arc::new(AtomicBool::new(false));
    let (parts, body) = req.into_parts();
    let body = Body::new(Tracked {
        inner: body,
        ended: ended.clone(),
    });
    let mut resp = next.run(Request::from_parts(parts, body)).await;
    if !ended.load(Ordering::Acquire) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// A request body that notes when it was read to its end.
struct Tracked {
    inner: Body,
    ended: Arc<AtomicBool>,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        // The end, or the last byte of a body of known length (a reader
        // that stops at its own end marker, like the multipart parser,
        // need not poll once more to leave the connection reusable).
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.ended.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            self.ended.store(true, Ordering::Release);
        }
        end
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
