//! The accept loop: hyper's HTTP/1 server on every accepted TCP connection,
//! with what `axum::serve` leaves out and a LAN appliance needs against one
//! misbehaving device (a slowloris, a port scanner, a stuck app):
//!
//! - a header-read timeout: a request head must be complete within
//!   `http.header_read_timeout_secs` of its first byte — and a new
//!   connection must have sent one within that time (half-open
//!   connections are closed);
//! - an idle keep-alive timeout: a connection waiting for its next request
//!   is closed after `http.keep_alive_timeout_secs`; a request in flight (a
//!   long download, a slow render) is never timed out by this;
//! - a connection cap, per client address and in total, so that one device
//!   cannot hold every socket (or every file descriptor: systemd's default
//!   soft limit is 1024). See [`Table`] for what happens at a cap;
//! - file bodies sent with `sendfile` (`http::sendfile`, `ConnIo`);
//! - `TCP_NODELAY` on every connection (a response's last small segment is
//!   not held back waiting for the client's delayed ACK: ~40 ms a request);
//! - graceful shutdown: on cancel, stop accepting, let requests in flight
//!   finish (hyper's `graceful_shutdown`), close idle connections, and
//!   return once every connection is gone (the caller bounds the wait).

use crate::http::activity::{Activity, ConnStats, InFlight};
use crate::http::conn_io::ConnIo;
use crate::http::sendfile;
use axum::extract::ConnectInfo;
use axum::Router;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The figures of `[http]` (see `config::HttpConfig`).
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub header_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
    pub max_connections: usize,
    pub max_per_address: usize,
    /// Off only in benchmarks measuring what it saves.
    pub nodelay: bool,
    /// Off only in benchmarks comparing the streamed body in the same run.
    pub sendfile: bool,
}

/// File descriptors kept free of connections: the database, thumbnail
/// renders, uploads, inotify, the control socket.
const RESERVED_FDS: u64 = 256;

impl Limits {
    pub(crate) fn from_config(c: &crate::config::HttpConfig) -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(c.header_read_timeout_secs),
            keep_alive_timeout: Duration::from_secs(c.keep_alive_timeout_secs),
            max_connections: c.max_connections,
            max_per_address: c.max_connections_per_address,
            // Benchmarks only (`benches/edge.rs`): leave Nagle's algorithm
            // on to measure, in the same run, what TCP_NODELAY saves.
            nodelay: std::env::var_os("ISYNC_BENCH_NAGLE").is_none(),
            // Benchmarks only: `ISYNC_BENCH_STREAMED=1` sends file bodies
            // through 64 KiB reads, the baseline of `sendfile`.
            sendfile: std::env::var_os("ISYNC_BENCH_STREAMED").is_none(),
        }
    }

    /// Raises the soft descriptor limit to the hard one (as Go's runtime
    /// does: the soft 1024 exists for `select(2)`, which nothing here
    /// uses), then lowers `max_connections` if even that cannot hold every
    /// connection plus a file each (a download) and [`RESERVED_FDS`].
    pub(crate) fn fit_descriptor_limit(mut self) -> Limits {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let mut lim = getrlimit(Resource::Nofile);
        if lim.current < lim.maximum {
            let raised = rustix::process::Rlimit {
                current: lim.maximum,
                maximum: lim.maximum,
            };
            if setrlimit(Resource::Nofile, raised).is_ok() {
                lim = raised;
            }
        }
        if let Some(soft) = lim.current {
            let fits = (soft.saturating_sub(RESERVED_FDS) / 2) as usize;
            if self.max_connections > fits {
                log::warn!(
                    "http.max_connections = {} needs {} file descriptors, the limit is {soft} \
                     (LimitNOFILE= in the systemd unit): serving at most {fits} connections",
                    self.max_connections,
                    self.max_connections as u64 * 2 + RESERVED_FDS
                );
                self.max_connections = fits.max(1);
                self.max_per_address = self.max_per_address.min(self.max_connections);
            }
        }
        self
    }
}

/// A response body that holds its request's [`InFlight`].
struct Tracked<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B: http_body::Body + Unpin> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The open connections by client address.
///
/// At a cap, a new connection is not simply refused — that would let one
/// device that opened many connections first lock every other device out.
/// Instead room is made by closing an idle connection (one with no request
/// in flight: half-open, sending a head slowly, or kept alive between
/// requests), the one idle longest:
/// - over `max_connections_per_address`, one of that same address's own;
/// - over `max_connections`, one of the address holding the most.
///
/// A slowloris from one device therefore only ever recycles its own
/// sockets, and a flood from many addresses recycles the biggest holder's,
/// while a device's request in flight is never cut. Only when every
/// candidate is busy is the new connection closed at once.
pub(crate) struct Table {
    limits: Limits,
    epoch: Instant,
    by_addr: Mutex<HashMap<IpAddr, Vec<Arc<Activity>>>>,
    stats: Arc<ConnStats>,
}

impl Table {
    pub(crate) fn new(limits: Limits, stats: Arc<ConnStats>) -> Table {
        Table {
            limits,
            epoch: Instant::now(),
            by_addr: Mutex::new(HashMap::new()),
            stats,
        }
    }

    /// Makes room for a connection from `ip` and registers it; None when
    /// there is no room.
    fn admit(&self, ip: IpAddr) -> Option<Arc<Activity>> {
        let mut map = self.by_addr.lock().unwrap_or_else(|p| p.into_inner());
        let own = map.get(&ip).map_or(0, Vec::len);
        if own >= self.limits.max_per_address && !Self::evict_from(&mut map, ip, &self.stats) {
            return None;
        }
        let total: usize = map.values().map(Vec::len).sum();
        if total >= self.limits.max_connections {
            // The biggest holders first; among equals, any.
            let mut addrs: Vec<(usize, IpAddr)> = map.iter().map(|(a, v)| (v.len(), *a)).collect();
            addrs.sort_by_key(|a| std::cmp::Reverse(a.0));
            if !addrs
                .iter()
                .any(|(_, a)| Self::evict_from(&mut map, *a, &self.stats))
            {
                return None;
            }
        }
        let a = Arc::new(Activity::new(self.epoch));
        map.entry(ip).or_default().push(a.clone());
        Some(a)
    }

    /// Closes the longest-idle connection of `ip`, if it has an idle one.
    fn evict_from(
        map: &mut HashMap<IpAddr, Vec<Arc<Activity>>>,
        ip: IpAddr,
        stats: &ConnStats,
    ) -> bool {
        let Some(list) = map.get_mut(&ip) else {
            return false;
        };
        let victim = list
            .iter()
            .enumerate()
            .filter(|(_, a)| a.idle())
            .min_by_key(|(_, a)| a.since_ms.load(Ordering::Acquire))
            .map(|(i, _)| i);
        let Some(i) = victim else {
            return false;
        };
        // Out of the table now (the room is taken at once); its task sees
        // the token and drops the connection.
        let a = list.swap_remove(i);
        if list.is_empty() {
            map.remove(&ip);
        }
        a.evict.cancel();
        stats.evicted.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn remove(&self, ip: IpAddr, a: &Arc<Activity>) {
        let mut map = self.by_addr.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = map.get_mut(&ip) {
            list.retain(|x| !Arc::ptr_eq(x, a));
            if list.is_empty() {
                map.remove(&ip);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled and every
/// connection has finished.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
    stats: Arc<ConnStats>,
) -> std::io::Result<()> {
    let table = Arc::new(Table::new(limits.clone(), stats.clone()));
    let tracker = TaskTracker::new();
    let mut last_warning: Option<Instant> = None;
    let mut warn = |what: std::fmt::Arguments| {
        // At most one a minute: a flood must not flood the journal too.
        if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
            log::warn!("{what}");
            last_warning = Some(Instant::now());
        }
    };
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: wait for descriptors to free up
                    // instead of spinning on the error.
                    warn(format_args!("cannot accept a connection: {e}"));
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let Some(activity) = table.admit(peer.ip()) else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            warn(format_args!(
                "connection cap reached and every connection busy: refused {peer} \
                 (http.max_connections = {}, per address {})",
                limits.max_connections, limits.max_per_address
            ));
            continue;
        };
        if let Err(e) = stream.set_nodelay(limits.nodelay) {
            log::debug!("TCP_NODELAY on {peer}: {e}");
        }
        let conn = Conn {
            app: app.clone(),
            peer,
            activity,
            limits: limits.clone(),
            shutdown: shutdown.clone(),
            table: table.clone(),
            stats: stats.clone(),
        };
        tracker.spawn(conn.run(stream));
    }
    // Stop accepting at once: new connections are refused by the kernel.
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// How a connection ended.
enum End {
    Closed(Result<(), hyper::Error>),
    Evicted,
    TimedOut { header: bool },
}

struct Conn {
    app: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
    limits: Limits,
    shutdown: CancellationToken,
    table: Arc<Table>,
    stats: Arc<ConnStats>,
}

impl Conn {
    async fn run(self, stream: tokio::net::TcpStream) {
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        let (peer, activity) = (self.peer, self.activity.clone());
        let io = ConnIo::new(stream, activity.clone(), self.stats.clone());
        let queue = self.limits.sendfile.then(|| io.sendfile_queue());
        let app = self.app.clone();
        let svc =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                let in_flight = activity.request_started();
                // For the handlers that want the peer (the login limiter).
                req.extensions_mut().insert(ConnectInfo(peer));
                let (app, queue) = (app.clone(), queue.clone());
                let head = req.method() == hyper::Method::HEAD;
                async move {
                    let resp = app
                        .oneshot(req.map(axum::body::Body::new))
                        .await
                        .unwrap_or_else(|never| match never {});
                    // File bodies go out with sendfile (http/sendfile.rs).
                    let resp = match &queue {
                        Some(q) => sendfile::adopt(resp, q, head),
                        None => resp,
                    };
                    Ok::<_, std::convert::Infallible>(resp.map(|inner| Tracked {
                        inner,
                        _in_flight: in_flight,
                    }))
                }
            });
        let conn = hyper::server::conn::http1::Builder::new()
            // Our own timeouts below; hyper's would also start at the end
            // of each response, conflating idle and slow heads.
            .header_read_timeout(None)
            // Body frames are queued, not copied, and reach ConnIo as they
            // are: how sendfile's marker frames are recognised.
            .writev(true)
            .serve_connection(hyper_util::rt::TokioIo::new(io), svc);
        let end = self.drive(conn).await;
        match end {
            End::Closed(Ok(())) => {}
            End::Closed(Err(e)) => log::debug!("connection from {peer}: {e}"),
            End::Evicted => log::debug!("connection from {peer} closed to make room"),
            End::TimedOut { header: true } => {
                self.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                log::debug!("connection from {peer}: no complete request head in time");
            }
            End::TimedOut { header: false } => {
                self.stats.idle_timeouts.fetch_add(1, Ordering::Relaxed);
                log::debug!("connection from {peer}: idle past the keep-alive timeout");
            }
        }
        self.table.remove(peer.ip(), &self.activity);
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Polls the connection, and after each poll (where reads, requests
    /// and finished responses change the activity) re-arms the one timer
    /// for the deadline that now applies.
    async fn drive<C>(&self, conn: C) -> End
    where
        C: Future<Output = Result<(), hyper::Error>> + GracefulShutdown,
    {
        let mut conn = std::pin::pin!(conn);
        let mut timer = std::pin::pin!(tokio::time::sleep(Duration::ZERO));
        let mut armed: Option<Instant> = None;
        let mut stop = std::pin::pin!(self.shutdown.cancelled());
        let mut evict = std::pin::pin!(self.activity.evict.cancelled());
        let mut graceful = false;
        std::future::poll_fn(|cx| {
            if !graceful && stop.as_mut().poll(cx).is_ready() {
                // Finish what is in flight, then close; idle ones close now.
                conn.as_mut().graceful_shutdown();
                graceful = true;
            }
            if let Poll::Ready(r) = conn.as_mut().poll(cx) {
                return Poll::Ready(End::Closed(r));
            }
            if evict.as_mut().poll(cx).is_ready() && self.activity.idle() {
                return Poll::Ready(End::Evicted);
            }
            if let Some((at, header)) = self.activity.deadline(
                self.limits.header_read_timeout,
                self.limits.keep_alive_timeout,
            ) {
                if armed != Some(at) {
                    timer.as_mut().reset(at);
                    armed = Some(at);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(End::TimedOut { header });
                }
            }
            Poll::Pending
        })
        .await
    }
}

/// hyper's graceful shutdown, behind a trait so [`Conn::drive`] takes the
/// connection future by type.
trait GracefulShutdown {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> GracefulShutdown for hyper::server::conn::http1::Connection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http1::Connection::graceful_shutdown(self)
    }
}
