//! The IO of one accepted connection as hyper sees it: the TCP stream,
//! reporting each read to the connection's [`Activity`] (a request head
//! starting is what starts the header-read timeout), and writing file
//! bodies with `sendfile` (see `http::sendfile`).
//!
//! A `sendfile` reads the file: from the page cache it is a copy, from the
//! USB disk a wait. So it runs on the blocking pool, like every other file
//! read, on a duplicate of the socket's descriptor (which a dropped
//! connection cannot close under it). The socket stays non-blocking: a
//! full send buffer ends the call early, and the task waits for the
//! socket to become writable on the runtime, holding no thread.
//!
//! Lingering close: a response that ends the connection (a refused upload,
//! `Connection: close`) may leave the client still sending a body nobody
//! reads. Closing a socket with unread input makes the kernel answer with a
//! reset, which can destroy the response before the client reads it: the
//! phone sees "connection reset" instead of −10014. So, as nginx does, a
//! connection whose sending side was shut down is kept a little after hyper
//! lets go of it: its input is read and dropped until the client closes,
//! for at most [`LINGER_TIME`] and [`LINGER_BYTES`], and at most
//! [`MAX_LINGERING`] at once (past that it closes at once, as before).

use crate::http::activity::{Activity, ConnStats};
use crate::http::sendfile::{marker_offset, Queue};
use rustix::io::Errno;
use std::fs::File;
use std::future::Future;
use std::io::IoSlice;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

pub(crate) struct ConnIo {
    stream: TcpStream,
    activity: Arc<Activity>,
    stats: Arc<ConnStats>,
    queue: Arc<Queue>,
    /// A duplicate of the socket for `sendfile` on the blocking pool.
    sock: Option<Arc<OwnedFd>>,
    job: Option<JoinHandle<std::io::Result<Sent>>>,
    /// The sending side was shut down: the response is complete and the
    /// connection ends (see lingering close above).
    shut: bool,
}

/// How long a closed connection drains the client's input at most.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(5);
/// How much of the client's input a closed connection drains at most.
pub(crate) const LINGER_BYTES: usize = 64 << 20;
/// How many closed connections drain at once at most.
pub(crate) const MAX_LINGERING: usize = 64;

/// What one blocking `sendfile` job did.
struct Sent {
    bytes: usize,
    /// The socket's send buffer filled up (`EAGAIN`).
    full: bool,
}

impl ConnIo {
    pub(crate) fn new(stream: TcpStream, activity: Arc<Activity>, stats: Arc<ConnStats>) -> ConnIo {
        ConnIo {
            stream,
            activity,
            stats,
            queue: Arc::new(Queue::default()),
            sock: None,
            job: None,
            shut: false,
        }
    }

    /// The queue [`crate::http::sendfile::adopt`] puts this connection's
    /// file regions on.
    pub(crate) fn sendfile_queue(&self) -> Arc<Queue> {
        self.queue.clone()
    }

    /// Sends (part of) the marker slice `buf`, which stands for bytes of
    /// the region at the head of the queue; returns how many were sent.
    fn poll_sendfile(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        loop {
            if let Some(job) = &mut self.job {
                let done = ready!(Pin::new(job).poll(cx));
                self.job = None;
                let sent = done.map_err(std::io::Error::other)??;
                if sent.full {
                    // The send buffer filled up in the other thread: make
                    // the runtime forget its stale "writable" so that the
                    // next wait is for real room (checked inside try_io,
                    // so an event arriving meanwhile is not lost).
                    let fd = self.stream.as_fd();
                    match self.stream.try_io(Interest::WRITABLE, || writable_now(fd)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                }
                if sent.bytes > 0 {
                    self.queue.sent(sent.bytes);
                    self.stats
                        .sendfile_bytes
                        .fetch_add(sent.bytes as u64, std::sync::atomic::Ordering::Relaxed);
                    return Poll::Ready(Ok(sent.bytes));
                }
                continue;
            }
            ready!(self.stream.poll_write_ready(cx))?;
            let at = marker_offset(buf).expect("a marker slice");
            let (file, offset, len) = self.queue.next(at, buf.len())?;
            let sock = match &self.sock {
                Some(s) => s.clone(),
                None => {
                    let s = Arc::new(self.stream.as_fd().try_clone_to_owned()?);
                    self.sock = Some(s.clone());
                    s
                }
            };
            self.job = Some(tokio::task::spawn_blocking(move || {
                send_region(&sock, &file, offset, len)
            }));
        }
    }
}

/// Whether the socket has room to write now (`poll` without waiting).
fn writable_now(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::OUT,
    )];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&zero))?;
    if fds[0].revents().contains(rustix::event::PollFlags::OUT) {
        Ok(())
    } else {
        Err(std::io::ErrorKind::WouldBlock.into())
    }
}

/// How long a `sendfile` job waits in its thread for room in a full send
/// buffer before handing the wait back to the runtime. A client reading at
/// full speed makes room within microseconds: waiting here keeps one job
/// per region instead of one per `EPOLLOUT` (a thread hand-off and a
/// wake-up each, which cost twice nginx's CPU per GB in `benches/edge.rs`);
/// a client that stopped reading holds the thread no longer than this.
const ROOM_WAIT_MS: i32 = 20;

/// Whether the socket gets room to write within [`ROOM_WAIT_MS`].
fn room_soon(sock: &OwnedFd) -> bool {
    let mut fds = [rustix::event::PollFd::new(
        sock,
        rustix::event::PollFlags::OUT,
    )];
    let wait = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: i64::from(ROOM_WAIT_MS) * 1_000_000,
    };
    matches!(rustix::event::poll(&mut fds, Some(&wait)), Ok(n) if n > 0)
        && fds[0].revents().contains(rustix::event::PollFlags::OUT)
}

/// Sends up to `len` bytes of `file` from `offset` to the non-blocking
/// socket `sock`, until done or the send buffer stays full (see [`ROOM_WAIT_MS`]). Where the file
/// system cannot `sendfile` (EINVAL, ENOSYS: some FUSE and network file
/// systems), it reads and writes instead. Blocking (a disk read).
fn send_region(sock: &OwnedFd, file: &File, offset: u64, len: usize) -> std::io::Result<Sent> {
    let mut sent = 0;
    let mut pos = offset;
    while sent < len {
        match rustix::fs::sendfile(sock, file, Some(&mut pos), len - sent) {
            Ok(0) => return Err(shrank()),
            Ok(n) => sent += n,
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) if room_soon(sock) => {}
            Err(Errno::AGAIN) => {
                return Ok(Sent {
                    bytes: sent,
                    full: true,
                })
            }
            Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                return copy_region(sock, file, offset + sent as u64, len - sent).map(|s| Sent {
                    bytes: sent + s.bytes,
                    full: s.full,
                })
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Sent {
        bytes: sent,
        full: false,
    })
}

/// [`send_region`] by read and write, 256 KiB at a time.
fn copy_region(sock: &OwnedFd, file: &File, offset: u64, len: usize) -> std::io::Result<Sent> {
    let mut buf = vec![0u8; len.min(256 << 10)];
    let mut sent = 0;
    while sent < len {
        let want = (len - sent).min(buf.len());
        let n = file.read_at(&mut buf[..want], offset + sent as u64)?;
        if n == 0 {
            return Err(shrank());
        }
        let mut done = 0;
        while done < n {
            match rustix::io::write(sock, &buf[done..n]) {
                Ok(w) => done += w,
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) if room_soon(sock) => {}
                Err(Errno::AGAIN) => {
                    return Ok(Sent {
                        bytes: sent + done,
                        full: true,
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
        sent += n;
    }
    Ok(Sent {
        bytes: sent,
        full: false,
    })
}

fn shrank() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the file shrank while it was being sent",
    )
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut me.stream).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            me.activity.bytes_read();
        }
        r
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        if marker_offset(buf).is_some() {
            return me.poll_sendfile(cx, buf);
        }
        Pin::new(&mut me.stream).poll_write(cx, buf)
    }

    /// Plain slices are written together with `writev`, up to the first
    /// marker slice; a marker slice first in line is sent with `sendfile`.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        match bufs.iter().position(|b| marker_offset(b).is_some()) {
            None => Pin::new(&mut me.stream).poll_write_vectored(cx, bufs),
            Some(0) => me.poll_sendfile(cx, &bufs[0]),
            Some(k) => Pin::new(&mut me.stream).poll_write_vectored(cx, &bufs[..k]),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.stream).poll_shutdown(cx);
        if matches!(r, Poll::Ready(Ok(()))) {
            me.shut = true;
        }
        r
    }
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        if self.shut {
            linger(&self.stream, &self.stats);
        }
    }
}

/// Keeps a closed connection's socket (a duplicate of its descriptor) on a
/// task that drains the client's input; see lingering close above.
fn linger(stream: &TcpStream, stats: &Arc<ConnStats>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if stats.lingering.fetch_add(1, Ordering::AcqRel) >= MAX_LINGERING {
        stats.lingering.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let dup = stream
        .as_fd()
        .try_clone_to_owned()
        .map(std::net::TcpStream::from)
        .and_then(TcpStream::from_std);
    let Ok(mut dup) = dup else {
        stats.lingering.fetch_sub(1, Ordering::AcqRel);
        return;
    };
    stats.lingered.fetch_add(1, Ordering::Relaxed);
    let stats = stats.clone();
    rt.spawn(async move {
        let drain = async {
            let mut buf = vec![0u8; 64 << 10];
            let mut left = LINGER_BYTES;
            while let Ok(n @ 1..) = dup.read(&mut buf).await {
                left = left.saturating_sub(n);
                if left == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drain).await;
        drop(dup);
        stats.lingering.fetch_sub(1, Ordering::AcqRel);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A file of `n` patterned bytes and a connected socket pair whose
    /// sending end is non-blocking (as a hyper connection's is).
    fn setup(n: usize) -> (File, OwnedFd, std::os::unix::net::UnixStream, Vec<u8>) {
        let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&data).unwrap();
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        (f, OwnedFd::from(a), b, data)
    }

    #[test]
    fn both_ways_send_the_region_and_stop_at_a_full_buffer() {
        for copy in [false, true] {
            let (f, sock, mut peer, data) = setup(8 << 20);
            let send = |off: u64, len: usize| {
                if copy {
                    copy_region(&sock, &f, off, len).unwrap()
                } else {
                    send_region(&sock, &f, off, len).unwrap()
                }
            };
            // More than a socket buffer holds: stops early, says so.
            let first = send(1000, 6 << 20);
            assert!(first.full && first.bytes > 0 && first.bytes < 6 << 20);
            let mut got = vec![0u8; first.bytes];
            peer.read_exact(&mut got).unwrap();
            assert_eq!(got, data[1000..1000 + first.bytes], "copy={copy}");
            // A small region fits.
            let small = send(7 << 20, 5000);
            assert_eq!((small.bytes, small.full), (5000, false));
            let mut got = vec![0u8; 5000];
            peer.read_exact(&mut got).unwrap();
            assert_eq!(got, data[7 << 20..(7 << 20) + 5000]);
            // Past the end of the file: an error, never short data.
            let e = if copy {
                copy_region(&sock, &f, (8 << 20) - 10, 20)
            } else {
                send_region(&sock, &f, (8 << 20) - 10, 20)
            };
            assert_eq!(
                e.err().map(|e| e.kind()),
                Some(std::io::ErrorKind::UnexpectedEof)
            );
        }
    }
}
