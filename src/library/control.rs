//! `isync scan` and a running `serve` never race: the server holds an
//! advisory lock on `<data_dir>/isync.lock` for its lifetime and answers scan
//! requests on a Unix socket `<data_dir>/isync.sock` (mode 0600). `isync
//! scan` asks the server when one runs — the scan then goes through the
//! server's one ingest path and its listings see the result at once — and
//! otherwise takes the lock itself, so a server starting meanwhile waits.
//!
//! The socket takes admin commands, so it is private from its first moment:
//! bound inside a fresh 0700 directory, made 0600, and only then renamed to
//! its public name (a umask set for the bind would be process-wide, and a
//! `chmod` after `bind` leaves a window). A request is one line of at most
//! [`MAX_REQUEST_BYTES`], read within [`REQUEST_READ_TIMEOUT`]; a reply at
//! most [`MAX_REPLY_BYTES`].

use super::roots::LibraryPlan;
use super::scan::{ScanOptions, ScanReport, Scanner};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) fn lock_path(data_dir: &Path) -> PathBuf {
    data_dir.join("isync.lock")
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("isync.sock")
}

/// Longest request line the server reads (a command with a password hash
/// and a few names is well under 1 KiB).
pub(crate) const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Longest reply line a client reads (a user or key list of thousands).
pub(crate) const MAX_REPLY_BYTES: usize = 16 << 20;
/// A connection that sends no complete request line within this is closed.
pub(crate) const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Creates the data dir (and any missing parent) private to this user
/// (0700) when it does not exist; an existing one keeps its mode (systemd's
/// `StateDirectoryMode=0750`, say). Blocking.
pub(crate) fn create_data_dir(data_dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
}

/// A scan asked of the running server.
#[derive(Debug, Serialize, Deserialize)]
pub struct ScanRequest {
    pub path: Option<PathBuf>,
    pub confirm_deletions: bool,
}

/// The server's answer: the report line, or why the scan failed.
#[derive(Debug, Serialize, Deserialize)]
pub struct ScanReply {
    pub ok: bool,
    pub report: String,
    pub offline: Vec<String>,
    pub held_back: usize,
    pub error: Option<String>,
}

impl ScanReply {
    fn of(r: Result<ScanReport, String>) -> ScanReply {
        match r {
            Ok(r) => ScanReply {
                ok: true,
                report: r.to_string(),
                offline: r.offline.clone(),
                held_back: r.held_back,
                error: None,
            },
            Err(e) => ScanReply {
                ok: false,
                report: String::new(),
                offline: Vec::new(),
                held_back: 0,
                error: Some(e),
            },
        }
    }
}

/// The exclusive advisory lock on `<data_dir>/isync.lock`; released on drop.
pub(crate) struct DataDirLock {
    _file: File,
}

/// Tries to take the data dir lock without waiting.
pub(crate) fn try_lock(data_dir: &Path) -> std::io::Result<Option<DataDirLock>> {
    create_data_dir(data_dir)?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(lock_path(data_dir))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(DataDirLock { _file: file })),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Takes the lock, waiting (and saying so once) while another isync holds
/// it. Blocking.
pub(crate) fn lock(data_dir: &Path) -> std::io::Result<DataDirLock> {
    let mut said = false;
    loop {
        if let Some(l) = try_lock(data_dir)? {
            return Ok(l);
        }
        if !said {
            log::info!(
                "another isync uses {} (an `isync scan`?); waiting for it to finish",
                data_dir.display()
            );
            said = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Asks a running server to scan. `Ok(None)` when no server answers.
/// Blocking; the reply comes when the scan is done.
pub fn request(data_dir: &Path, req: &ScanRequest) -> std::io::Result<Option<ScanReply>> {
    let mut s = match UnixStream::connect(socket_path(data_dir)) {
        Ok(s) => s,
        Err(e) if no_server(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let reply: ScanReply = serde_json::from_str(&read_reply(s)?)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(Some(reply))
}

/// Whether a failed connect to the socket means that no server runs: no
/// socket, nobody listening, or a data dir that does not exist as a folder
/// (the caller then fails on the data dir itself, naming it).
fn no_server(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
    ) || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error())
}

/// The server's one reply line, at most [`MAX_REPLY_BYTES`].
fn read_reply(s: UnixStream) -> std::io::Result<String> {
    let mut reply = String::new();
    BufReader::new(s.take(MAX_REPLY_BYTES as u64 + 1)).read_line(&mut reply)?;
    if !reply.ends_with('\n') && reply.len() > MAX_REPLY_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the server's reply is longer than {MAX_REPLY_BYTES} bytes"),
        ));
    }
    Ok(reply)
}

/// Answers a request other than a scan (`{"op": …}`: admin commands,
/// backups) with one JSON value.
pub(crate) type OpHandler = Arc<
    dyn Fn(
            serde_json::Value,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = serde_json::Value> + Send>>
        + Send
        + Sync,
>;

/// Sends an `{"op": …}` request to a running server. `Ok(None)` when no
/// server answers. Blocking; the reply comes when the work is done.
pub(crate) fn request_op(
    data_dir: &Path,
    req: &serde_json::Value,
) -> std::io::Result<Option<serde_json::Value>> {
    let mut s = match UnixStream::connect(socket_path(data_dir)) {
        Ok(s) => s,
        Err(e) if no_server(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    serde_json::from_str(&read_reply(s)?)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Serves scan requests (and, through `ops`, admin and backup requests) on
/// `<data_dir>/isync.sock` until `token` is cancelled. The caller holds the
/// data dir lock, so a socket file left by a crashed server is stale and
/// replaced.
pub(crate) fn serve(
    data_dir: &Path,
    scanner: Arc<Scanner>,
    plan: Arc<RwLock<LibraryPlan>>,
    ops: OpHandler,
    token: CancellationToken,
    tracker: &TaskTracker,
) -> std::io::Result<()> {
    let path = socket_path(data_dir);
    let listener = bind_private(&path)?;
    tracker.spawn(async move {
        loop {
            let conn = tokio::select! {
                _ = token.cancelled() => break,
                c = listener.accept() => c,
            };
            let Ok((stream, _)) = conn else { continue };
            let (scanner, plan, ops) = (scanner.clone(), plan.clone(), ops.clone());
            tokio::spawn(async move {
                let (rd, mut wr) = stream.into_split();
                let line = match read_request(rd).await {
                    Ok(line) => line,
                    Err(why) => {
                        log::warn!("control socket: request refused: {why}");
                        let mut out = serde_json::json!({
                            "ok": false,
                            "usage": true,
                            "output": why,
                            // The fields of a scan reply too, so either
                            // client reads the refusal.
                            "error": why,
                            "report": "",
                            "offline": [],
                            "held_back": 0,
                        })
                        .to_string();
                        out.push('\n');
                        let _ = wr.write_all(out.as_bytes()).await;
                        return;
                    }
                };
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if v.get("op").is_some() {
                        let mut out = ops(v).await.to_string();
                        out.push('\n');
                        let _ = wr.write_all(out.as_bytes()).await;
                        return;
                    }
                }
                let reply = match serde_json::from_str::<ScanRequest>(&line) {
                    Ok(req) => {
                        log::info!(
                            "`isync scan` asked for a scan{}{}",
                            req.path
                                .as_ref()
                                .map(|p| format!(" of {}", p.display()))
                                .unwrap_or_default(),
                            if req.confirm_deletions {
                                " confirming deletions"
                            } else {
                                ""
                            }
                        );
                        let r =
                            tokio::task::spawn_blocking(move || run_scan(&scanner, &plan, &req))
                                .await
                                .unwrap_or_else(|e| Err(e.to_string()));
                        if let Ok(r) = &r {
                            log::info!("scan asked by `isync scan`: {r}");
                        }
                        ScanReply::of(r)
                    }
                    Err(e) => ScanReply::of(Err(format!("bad request: {e}"))),
                };
                let mut out = serde_json::to_string(&reply).unwrap_or_default();
                out.push('\n');
                let _ = wr.write_all(out.as_bytes()).await;
            });
        }
        let _ = std::fs::remove_file(&path);
    });
    Ok(())
}

/// Reads one request line of at most [`MAX_REQUEST_BYTES`] within
/// [`REQUEST_READ_TIMEOUT`]; what is past the bound is never read.
async fn read_request(rd: tokio::net::unix::OwnedReadHalf) -> Result<String, String> {
    let mut rd = tokio::io::BufReader::new(rd.take(MAX_REQUEST_BYTES as u64 + 1));
    let mut buf = Vec::new();
    match tokio::time::timeout(REQUEST_READ_TIMEOUT, rd.read_until(b'\n', &mut buf)).await {
        Err(_) => return Err(format!("no request line within {REQUEST_READ_TIMEOUT:?}")),
        Ok(Err(e)) => return Err(format!("cannot read the request: {e}")),
        Ok(Ok(_)) => {}
    }
    if buf.last() != Some(&b'\n') {
        return Err(if buf.len() > MAX_REQUEST_BYTES {
            format!("request longer than {MAX_REQUEST_BYTES} bytes")
        } else {
            "incomplete request (no end of line)".into()
        });
    }
    String::from_utf8(buf).map_err(|_| "the request is not UTF-8".into())
}

/// Binds the listening socket at `path` so that nobody else can ever
/// connect: inside a fresh 0700 directory next to it, made 0600, then
/// renamed into place (replacing a stale socket of a crashed server).
fn bind_private(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let private = path.with_file_name(format!(".{name}.{}", std::process::id()));
    // Left by a crash of a process with our pid: ours to remove.
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let inside = private.join("s");
    let bound = tokio::net::UnixListener::bind(&inside).and_then(|l| {
        std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&inside, path)?;
        Ok(l)
    });
    let _ = std::fs::remove_dir_all(&private);
    bound
}

/// Runs the scan a request asks for. Blocking.
pub(crate) fn run_scan(
    scanner: &Scanner,
    plan: &RwLock<LibraryPlan>,
    req: &ScanRequest,
) -> Result<ScanReport, String> {
    let plan = plan
        .read()
        .map(|p| p.clone())
        .unwrap_or_else(|p| p.into_inner().clone());
    let opts = ScanOptions {
        confirm_deletions: req.confirm_deletions,
    };
    match &req.path {
        Some(p) => scanner.scan_subtree_with(&plan, p, opts),
        None => scanner.scan_plan_with(&plan, opts),
    }
    .map_err(|e| e.to_string())
}
