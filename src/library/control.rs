//! `isync scan` and a running `serve` never race: the server holds an
//! advisory lock on `<data_dir>/isync.lock` for its lifetime and answers scan
//! requests on a Unix socket `<data_dir>/isync.sock` (mode 0600). `isync
//! scan` asks the server when one runs — the scan then goes through the
//! server's one ingest path and its listings see the result at once — and
//! otherwise takes the lock itself, so a server starting meanwhile waits.

use super::roots::LibraryPlan;
use super::scan::{ScanOptions, ScanReport, Scanner};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub fn lock_path(data_dir: &Path) -> PathBuf {
    data_dir.join("isync.lock")
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("isync.sock")
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
pub struct DataDirLock {
    _file: File,
}

/// Tries to take the data dir lock without waiting.
pub fn try_lock(data_dir: &Path) -> std::io::Result<Option<DataDirLock>> {
    std::fs::create_dir_all(data_dir)?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path(data_dir))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(DataDirLock { _file: file })),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Takes the lock, waiting (and saying so once) while another isync holds
/// it. Blocking.
pub fn lock(data_dir: &Path) -> std::io::Result<DataDirLock> {
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
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply)?;
    let reply: ScanReply = serde_json::from_str(&reply)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(Some(reply))
}

/// Answers a request other than a scan (`{"op": …}`: admin commands,
/// backups) with one JSON value.
pub type OpHandler = Arc<
    dyn Fn(
            serde_json::Value,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = serde_json::Value> + Send>>
        + Send
        + Sync,
>;

/// Sends an `{"op": …}` request to a running server. `Ok(None)` when no
/// server answers. Blocking; the reply comes when the work is done.
pub fn request_op(
    data_dir: &Path,
    req: &serde_json::Value,
) -> std::io::Result<Option<serde_json::Value>> {
    let mut s = match UnixStream::connect(socket_path(data_dir)) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply)?;
    serde_json::from_str(&reply)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Serves scan requests (and, through `ops`, admin and backup requests) on
/// `<data_dir>/isync.sock` until `token` is cancelled. The caller holds the
/// data dir lock, so a socket file left by a crashed server is stale and
/// replaced.
pub fn serve(
    data_dir: &Path,
    scanner: Arc<Scanner>,
    plan: Arc<RwLock<LibraryPlan>>,
    ops: OpHandler,
    token: CancellationToken,
    tracker: &TaskTracker,
) -> std::io::Result<()> {
    let path = socket_path(data_dir);
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
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
                let mut line = String::new();
                let mut rd = tokio::io::BufReader::new(rd);
                if rd.read_line(&mut line).await.is_err() {
                    return;
                }
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

/// Runs the scan a request asks for. Blocking.
pub fn run_scan(
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
