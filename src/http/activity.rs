//! Connection figures and one connection's activity: the counters tests and
//! the status line read ([`ConnStats`]), and what the accept loop's
//! timeouts judge a connection by ([`Activity`]: requests in flight, when
//! its current wait began). Written by `conn_io` (bytes read) and `serve`
//! (requests started and finished); it imports neither.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Live connection figures, for tests and the status line.
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Connections open now.
    pub open: AtomicUsize,
    pub accepted: AtomicU64,
    /// Closed at once because a cap was reached and nothing was idle.
    pub refused: AtomicU64,
    /// Idle connections closed to make room for a new one.
    pub evicted: AtomicU64,
    /// Closed by the header-read timeout (a head too slow, or none).
    pub header_timeouts: AtomicU64,
    /// Closed by the keep-alive timeout.
    pub idle_timeouts: AtomicU64,
    /// Body bytes sent with `sendfile` (or its read-and-write fallback).
    pub sendfile_bytes: AtomicU64,
    /// Closed connections kept now to drain what the client still sends
    /// (`http::conn_io`, lingering close).
    pub lingering: AtomicUsize,
    /// Connections that lingered so.
    pub lingered: AtomicU64,
}

/// Milliseconds since the table was made: a clock an atomic can hold.
fn ms_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}

/// One connection's state as the accept loop and the timeouts see it,
/// updated by its IO (bytes read), its service (request started) and its
/// response bodies (request finished).
#[derive(Debug)]
pub(crate) struct Activity {
    epoch: Instant,
    /// Requests whose response has not been sent (or dropped) yet.
    in_flight: AtomicUsize,
    /// When the current wait began: accept, or the end of the last
    /// response, or the first byte of a request head (ms since `epoch`).
    pub(super) since_ms: AtomicU64,
    /// Bytes of a request head arrived while nothing was in flight.
    reading_head: AtomicBool,
    /// At least one request was answered (the wait is a keep-alive one).
    served: AtomicBool,
    /// Set when the connection was chosen to make room.
    pub(super) evict: CancellationToken,
}

impl Activity {
    pub(super) fn new(epoch: Instant) -> Activity {
        Activity {
            epoch,
            in_flight: AtomicUsize::new(0),
            since_ms: AtomicU64::new(ms_since(epoch)),
            reading_head: AtomicBool::new(false),
            served: AtomicBool::new(false),
            evict: CancellationToken::new(),
        }
    }

    /// Called by the connection's IO after it read `n` > 0 bytes.
    pub(crate) fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 && !self.reading_head.load(Ordering::Acquire)
        {
            self.since_ms.store(ms_since(self.epoch), Ordering::Release);
            self.reading_head.store(true, Ordering::Release);
        }
    }

    pub(super) fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.reading_head.store(false, Ordering::Release);
        InFlight(self.clone())
    }

    pub(super) fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// When the connection times out as things stand, and which timeout
    /// that is (true: header read), given the header-read and keep-alive
    /// timeouts.
    pub(super) fn deadline(
        &self,
        header_read_timeout: Duration,
        keep_alive_timeout: Duration,
    ) -> Option<(Instant, bool)> {
        if !self.idle() {
            return None;
        }
        let since = self.epoch + Duration::from_millis(self.since_ms.load(Ordering::Acquire));
        let head =
            self.reading_head.load(Ordering::Acquire) || !self.served.load(Ordering::Acquire);
        Some(if head {
            (since + header_read_timeout, true)
        } else {
            (since + keep_alive_timeout, false)
        })
    }
}

/// A request in flight on its connection; dropped with the response body
/// (sent, or abandoned by a client that went away) or with the handler
/// (cancelled).
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        if a.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            a.since_ms.store(ms_since(a.epoch), Ordering::Release);
            a.served.store(true, Ordering::Release);
        }
    }
}
