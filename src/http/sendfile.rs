//! Sending file bodies with `sendfile(2)`: the kernel copies from the page
//! cache to the socket, no read into a buffer of ours and no write from it
//! (issue #13: streaming through 64 KiB reads ran at 0.63–0.73× nginx).
//!
//! hyper owns the socket and only writes `Bytes` frames, so the file body
//! is handed over in two halves that meet in the connection's IO:
//!
//! 1. `stream::send_open` marks a response whose body is a region of an
//!    open file with a [`FileRegion`] extension (its streamed body stays
//!    in place for anything that does not go through [`adopt`]).
//! 2. The accept loop calls [`adopt`], which swaps that body for a
//!    [`SendfileBody`]: each of its frames is a slice of [`MARKER`] — a
//!    static, all-zero, never-touched buffer — of exactly the length of
//!    the file region it stands for, and the region is queued on the
//!    connection's [`Queue`].
//! 3. hyper queues frames without copying (`writev` strategy, forced in
//!    `serve`) and passes them to `ConnIo::poll_write_vectored` as
//!    `IoSlice`s. A slice pointing into [`MARKER`] is never written:
//!    `ConnIo` sends that many bytes of the queued region with `sendfile`
//!    instead, and reports them written. Headers, chunks of other bodies
//!    and everything else are written as they are.
//!
//! Content-Length, ranges, HEAD and conditional requests are decided before
//! (`stream::send_open`), so they are the same on both paths; memory stays
//! flat (nothing is buffered). A marker slice that does not match the head
//! of the queue is an error that closes the connection: zeros are never
//! sent in place of a file.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use std::collections::VecDeque;
use std::fs::File;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// Bytes one frame stands for. A frame larger than hyper's write buffer
/// limit (~400 KiB) is flushed before the next is asked for, so one region
/// at a time is queued per connection.
pub(crate) const MARKER_BYTES: usize = 2 << 20;

/// Stands for file bytes; never read, never written, never sent. A static
/// of zeros lives in `.bss`: it costs address space, no memory.
static MARKER: [u8; MARKER_BYTES] = [0; MARKER_BYTES];

/// Response extension: the body is exactly `len` bytes of `file` from
/// `offset` (set by `stream::send_open`).
#[derive(Clone, Debug)]
pub(crate) struct FileRegion {
    pub file: Arc<File>,
    pub offset: u64,
    pub len: u64,
}

/// The file bytes one marker frame stands for, and how many are sent.
#[derive(Debug)]
pub(crate) struct Region {
    pub file: Arc<File>,
    pub offset: u64,
    pub len: usize,
    pub sent: usize,
}

/// The regions of one connection's marker frames, in the order hyper
/// writes them (the order they were produced).
#[derive(Debug, Default)]
pub(crate) struct Queue(Mutex<VecDeque<Region>>);

impl Queue {
    fn push(&self, r: Region) {
        self.lock().push_back(r);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Region>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What a marker slice at `at..at + len` of [`MARKER`] stands for:
    /// (file, file offset, byte count), or an error when it is not the
    /// unsent rest of the region at the head of the queue.
    pub(crate) fn next(&self, at: usize, len: usize) -> std::io::Result<(Arc<File>, u64, usize)> {
        let q = self.lock();
        match q.front() {
            Some(r) if r.sent == at && at + len == r.len => {
                Ok((r.file.clone(), r.offset + at as u64, len))
            }
            other => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "sendfile: a body frame ({at}+{len}) does not match the queued region \
                     ({:?}); closing the connection",
                    other.map(|r| (r.sent, r.len))
                ),
            )),
        }
    }

    /// Records `n` bytes of the head region as sent.
    pub(crate) fn sent(&self, n: usize) {
        let mut q = self.lock();
        if let Some(r) = q.front_mut() {
            r.sent += n;
            if r.sent >= r.len {
                q.pop_front();
            }
        }
    }
}

/// Where `buf` lies in [`MARKER`], if it is a marker slice.
pub(crate) fn marker_offset(buf: &[u8]) -> Option<usize> {
    let base = MARKER.as_ptr() as usize;
    let p = buf.as_ptr() as usize;
    (!buf.is_empty() && p >= base && p + buf.len() <= base + MARKER_BYTES).then(|| p - base)
}

/// A body of marker frames for a file region (see the module doc).
struct SendfileBody {
    queue: Arc<Queue>,
    file: Arc<File>,
    offset: u64,
    left: u64,
}

impl http_body::Body for SendfileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(MARKER_BYTES as u64) as usize;
        self.queue.push(Region {
            file: self.file.clone(),
            offset: self.offset,
            len: n,
            sent: 0,
        });
        self.offset += n as u64;
        self.left -= n as u64;
        Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(
            &MARKER[..n],
        )))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

/// Gives a response marked with a [`FileRegion`] a sendfile body for the
/// connection whose IO serves `queue`; other responses pass unchanged.
///
/// Only the body of a 200 or 206 answering a request other than `HEAD`
/// (axum empties the body of a `HEAD` answered by a `GET` route but keeps
/// the extensions), whose `Content-Length` is still the region's length,
/// is replaced; anything else keeps the body it has.
pub(crate) fn adopt(mut resp: Response, queue: &Arc<Queue>, head: bool) -> Response {
    let Some(region) = resp.extensions_mut().remove::<FileRegion>() else {
        return resp;
    };
    let length = resp
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if head
        || region.len == 0
        || !matches!(resp.status().as_u16(), 200 | 206)
        || length != Some(region.len)
    {
        return resp;
    }
    let body = SendfileBody {
        queue: queue.clone(),
        file: region.file,
        offset: region.offset,
        left: region.len,
    };
    *resp.body_mut() = Body::new(body);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;

    #[test]
    fn frames_are_marker_slices_matched_by_the_queue_in_order() {
        let f = Arc::new(tempfile::tempfile().unwrap());
        let queue = Arc::new(Queue::default());
        let len = MARKER_BYTES as u64 + 10;
        let mut body = SendfileBody {
            queue: queue.clone(),
            file: f,
            offset: 5,
            left: len,
        };
        assert_eq!(body.size_hint().exact(), Some(len));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut frame = || match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(f))) => f.into_data().unwrap(),
            other => panic!("{other:?}"),
        };
        let a = frame();
        assert_eq!((marker_offset(&a), a.len()), (Some(0), MARKER_BYTES));
        let b = frame();
        assert_eq!((marker_offset(&b), b.len()), (Some(0), 10));
        assert!(body.is_end_stream());

        // The first region, sent in two parts, then the second.
        let (_, off, n) = queue.next(0, MARKER_BYTES).unwrap();
        assert_eq!((off, n), (5, MARKER_BYTES));
        queue.sent(1000);
        assert!(queue.next(0, MARKER_BYTES).is_err(), "already partly sent");
        let (_, off, _) = queue.next(1000, MARKER_BYTES - 1000).unwrap();
        assert_eq!(off, 1005);
        queue.sent(MARKER_BYTES - 1000);
        let (_, off, n) = queue.next(0, 10).unwrap();
        assert_eq!((off, n), (5 + MARKER_BYTES as u64, 10));
        // A slice that is not the whole unsent rest is refused.
        assert!(queue.next(0, 9).is_err());
        queue.sent(10);
        assert!(queue.next(0, 10).is_err(), "nothing queued");

        assert_eq!(marker_offset(b"plain bytes"), None);
        assert_eq!(marker_offset(&MARKER[7..9]), Some(7));
        assert_eq!(marker_offset(&MARKER[..0]), None);
    }
}
