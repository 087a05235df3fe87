//! Wiring: open the database, sync libraries, start the initial scan and the
//! watchdog, serve HTTP until cancelled, then shut down in order. `main.rs`
//! and the integration tests drive the same `start`.

use crate::auth::Sessions;
use crate::config::Config;
use crate::db::Db;
use crate::http::{self, state::AppState};
use crate::library::{self, control, watcher, Scanner};
use crate::media::thumbcache::ThumbCache;
use crate::status::{notify, notify_status, status_line};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long in-flight requests may take to finish after SIGTERM (below
/// systemd's default TimeoutStopSec of 90 s).
pub(crate) const DRAIN_DEADLINE: Duration = Duration::from_secs(20);

/// A running server.
pub struct Running {
    pub state: AppState,
    pub addr: std::net::SocketAddr,
    /// Becomes true when the initial scan has finished (or failed).
    pub scanned: watch::Receiver<bool>,
    /// The watcher's live figures (None when `watch.enabled = false`).
    pub watch: Option<Arc<watcher::WatchStats>>,
    /// Open, refused, evicted and timed-out connections.
    pub conns: Arc<http::activity::ConnStats>,
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    background: tokio_util::task::TaskTracker,
    /// Held while serving: `isync scan` asks us instead of writing itself.
    _lock: control::DataDirLock,
}

/// Runs `isync admin …` / `isync backup` commands sent over the control
/// socket, so the server's sessions see account changes at once.
fn op_handler(st: AppState) -> control::OpHandler {
    Arc::new(move |v: serde_json::Value| {
        let st = st.clone();
        Box::pin(async move {
            let reply = match serde_json::from_value::<crate::admin::Command>(v) {
                Ok(cmd) => {
                    let access = crate::admin::changes_access(&cmd);
                    let st2 = st.clone();
                    let restoring = matches!(cmd, crate::admin::Command::TrashRestore { .. });
                    let r = tokio::task::spawn_blocking(move || {
                        let ctx = crate::admin::Ctx {
                            db: &st2.db,
                            backups: &st2.backups,
                            cfg: &st2.cfg,
                            sessions: Some(&st2.sessions),
                        };
                        let mut r = crate::admin::execute(&ctx, cmd);
                        if let (Ok(out), true) = (&mut r, restoring) {
                            // List it again now, watcher or not: this
                            // server's own scanner, never a second one.
                            let req = control::ScanRequest {
                                path: None,
                                confirm_deletions: false,
                            };
                            match control::run_scan(&st2.scanner, &st2.plan, &req) {
                                Ok(rep) => out.push_str(&format!("\nscan: {rep}")),
                                Err(e) => out.push_str(&format!("\nrescan failed: {e}")),
                            }
                        }
                        notify_status(&st2.db, &st2.cfg);
                        r
                    })
                    .await
                    .unwrap_or_else(|e| Err(e.into()));
                    if access {
                        st.sessions.access_changed();
                    }
                    crate::admin::Reply::of(r)
                }
                Err(e) => crate::admin::Reply::of(Err(crate::error::Error::BadParam(format!(
                    "bad request: {e}"
                )))),
            };
            serde_json::to_value(reply).unwrap_or_default()
        })
    })
}

/// Opens everything and starts serving on `listener`. Returns once the
/// server accepts requests; the initial scan continues in the background.
///
/// The order is the contract: the data dir's lock, the database, the
/// libraries and interrupted uploads ([`open_store`]), the scanner, the
/// admin token, thumbnails and their pre-render worker, the state, HTTP,
/// the control socket and `READY=1` ([`announce_ready`]), then the
/// background work (watcher, initial scan, watchdog, housekeeping).
pub async fn start(cfg: Config, listener: TcpListener) -> anyhow::Result<Running> {
    let cfg = Arc::new(cfg);
    let lock = lock_data_dir(&cfg).await?;
    let (db, plan) = open_store(&cfg).await?;
    let scanner = new_scanner(&db, &cfg);
    announce_init_token(&db, &listener).await?;
    // Thumbnail renders run up to one per core for each level, level 0
    // first (media/lanes.rs); they are threads of their own, so the
    // async workers answering other requests are never taken.
    let thumbs = Arc::new(ThumbCache::with_stores(
        crate::media::thumbstore::Stores::new(
            cfg.thumbnails.location,
            cfg.thumb_dir(),
            crate::media::thumbstore::Bounds {
                limit_bytes: cfg.thumbnails.cache_mb << 20,
                reserve_bytes: cfg.upload.min_free_bytes,
            },
        ),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        cfg.thumbnails.memory_mb << 20,
    ));
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let background = tokio_util::task::TaskTracker::new();
    // Renders the last run did not survive are recorded as failed before
    // anything renders (or scans) again: no original crashes it in a loop.
    {
        let (db, thumbs) = (db.clone(), thumbs.clone());
        tokio::task::spawn_blocking(move || {
            crate::media::prerender::record_interrupted(&db, &thumbs)
        })
        .await?;
    }
    // Thumbnails of new and changed files are rendered after every scan on
    // low-priority threads, ahead of requests (media/prerender.rs). The app
    // owns the worker: the scanner and the upload handler get its handle.
    let prerender = crate::media::prerender::Prerender::start(
        db.clone(),
        thumbs.clone(),
        cfg.scan
            .prerender_threads
            .min(crate::media::prerender::default_threads()),
        &shutdown,
        &background,
    );
    let state = app_state(&cfg, &db, thumbs, prerender.clone(), scanner.clone(), plan);
    scanner.after_scan(move |since| prerender.request_sweep(since));

    let app = http::router(state.clone());
    let conns = Arc::new(http::activity::ConnStats::default());
    let server = tokio::spawn(http::serve::serve(
        listener,
        app,
        http::serve::Limits::from_config(&cfg.http).fit_descriptor_limit(),
        shutdown.clone(),
        conns.clone(),
    ));
    announce_ready(&state, addr, &shutdown, &background).await?;

    // Initial scan, in the background while requests are answered; the
    // watcher starts at once (nothing changed during the scan is missed) and
    // applies events once the scan is done.
    let (scanned_tx, scanned) = watch::channel(false);
    let watch = cfg.watch.enabled.then(|| {
        let parts = watcher::WatchParts {
            db: db.clone(),
            scanner: scanner.clone(),
            plan: state.plan.clone(),
            cfg: cfg.watch.clone(),
        };
        watcher::spawn(parts, scanned.clone(), shutdown.clone(), &background)
    });
    spawn_initial_scan(&state, scanned_tx, &shutdown, &background);
    spawn_watchdog(&db, &shutdown, &background);
    spawn_data_room_watch(&db, &cfg, &shutdown, &background);
    if cfg.thumbnails.location == crate::config::ThumbLocation::Library {
        spawn_thumb_move(&db, &cfg, &state.thumbs, &shutdown, &background);
    }
    // Stale partial uploads and expired trash go also when nobody is active.
    crate::trash::spawn_housekeeping(
        &db,
        &cfg,
        crate::trash::HOUSEKEEP_TIMER,
        shutdown.clone(),
        &background,
    );
    background.close();

    Ok(Running {
        state,
        addr,
        scanned,
        watch,
        conns,
        shutdown,
        server,
        background,
        _lock: lock,
    })
}

/// Takes the data dir's lock (held while serving: `isync scan` asks this
/// server instead of writing itself).
async fn lock_data_dir(cfg: &Config) -> anyhow::Result<control::DataDirLock> {
    let dir = cfg.data_dir.clone();
    tokio::task::spawn_blocking(move || {
        use anyhow::Context as _;
        control::lock(&dir).with_context(|| {
            format!(
                "cannot create or lock the data dir {} (set data_dir, or ISYNC_DATA_DIR, \
                 to a folder isync may write)",
                dir.display()
            )
        })
    })
    .await?
}

/// Opens the database, brings the configured libraries into it and
/// finishes the uploads a crash interrupted. Returns the database and the
/// library plan.
async fn open_store(cfg: &Arc<Config>) -> anyhow::Result<(Db, library::LibraryPlan)> {
    let db = {
        let path = cfg.db_path();
        tokio::task::spawn_blocking(move || Db::open(&path)).await??
    };
    let plan = {
        let (db, cfg) = (db.clone(), cfg.clone());
        tokio::task::spawn_blocking(move || library::sync_libraries(&db, &cfg)).await??
    };
    // Uploads a crash interrupted while their bytes moved are finished
    // before anything is served or scanned (upload/finish.rs); those of a
    // library offline now, by the scanner once it is back.
    {
        let (db, cfg) = (db.clone(), cfg.clone());
        tokio::task::spawn_blocking(move || crate::upload::recover(&db, &cfg)).await??;
    }
    Ok((db, plan))
}

/// The scanner, with the sweep of leftover staging files hooked in.
fn new_scanner(db: &Db, cfg: &Config) -> Arc<Scanner> {
    let scanner = Arc::new(Scanner::new(db.clone(), cfg.scan.clone()));
    scanner.keep_free(cfg.storage.data_min_free_bytes);
    // Leftover staging files are looked for once per library and run,
    // at its first scan that finds it online.
    let (db, thumbs) = (db.clone(), cfg.thumb_dir());
    let swept = std::sync::Mutex::new(std::collections::HashSet::new());
    scanner.before_walk(move |lib| {
        let first = swept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(lib.id);
        if let Err(e) = crate::upload::recover_library(&db, &thumbs, lib, first) {
            log::error!("library {}: unfinished uploads: {e}", lib.path);
        }
    });
    scanner
}

/// Makes the one-time registration token of a server with no admin yet,
/// and says how to use it.
async fn announce_init_token(db: &Db, listener: &TcpListener) -> anyhow::Result<()> {
    let db = db.clone();
    let port = listener.local_addr()?.port();
    if tokio::task::spawn_blocking(move || crate::accounts::ensure_init_token(&db)).await?? {
        log::warn!(
            "this server has no admin yet: claim it with the one-time registration token \
             `init` (open http://<this machine>:{port}/ or POST /api/v1/register \
             token=init&userName=…&password=…), or run `isync admin init NAME` on the console"
        );
    }
    Ok(())
}

/// The state every handler shares.
fn app_state(
    cfg: &Arc<Config>,
    db: &Db,
    thumbs: Arc<ThumbCache>,
    prerender: crate::media::prerender::Prerender,
    scanner: Arc<Scanner>,
    plan: library::LibraryPlan,
) -> AppState {
    let clock = crate::clock::Clock::default();
    AppState {
        db: db.clone(),
        cfg: cfg.clone(),
        sessions: Sessions::new(cfg.sessions.clone()).with_clock(clock.clone()),
        thumbs,
        prerender,
        scanner,
        plan: Arc::new(RwLock::new(plan)),
        started: Instant::now(),
        limiter: Arc::new(
            crate::ratelimit::LoginLimiter::new(crate::ratelimit::Limits {
                max_failures: cfg.login.max_failures,
                window: Duration::from_secs(cfg.login.window_secs),
            })
            .with_clock(clock.clone()),
        ),
        hasher: crate::auth::Hasher::new(cfg.login.max_pending_checks as usize),
        backups: Arc::new(crate::backup::Backups::new(
            db.clone(),
            cfg.clone(),
            cfg.file.clone(),
        )),
        clock,
    }
}

/// Opens the control socket (`isync scan`, `isync admin …`), then tells
/// systemd the server is ready and logs that it listens on `addr`.
async fn announce_ready(
    state: &AppState,
    addr: std::net::SocketAddr,
    shutdown: &CancellationToken,
    background: &tokio_util::task::TaskTracker,
) -> anyhow::Result<()> {
    let cfg = &state.cfg;
    let status = {
        let (db, cfg) = (state.db.clone(), state.cfg.clone());
        tokio::task::spawn_blocking(move || status_line(&db, &cfg)).await?
    };
    if let Err(e) = control::serve(
        &cfg.data_dir,
        state.scanner.clone(),
        state.plan.clone(),
        op_handler(state.clone()),
        shutdown.clone(),
        background,
    ) {
        log::warn!(
            "cannot open {} ({e}); `isync scan` will wait for this server to stop",
            control::socket_path(&cfg.data_dir).display()
        );
    }
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&format!("listening on {addr}; scanning; {status}")),
    ]);
    log::info!("isync {} listening on {addr}", env!("CARGO_PKG_VERSION"));
    Ok(())
}

/// The initial scan of every library, on a blocking thread; `scanned_tx`
/// says when it is over (done, failed or cancelled).
fn spawn_initial_scan(
    state: &AppState,
    scanned_tx: watch::Sender<bool>,
    shutdown: &CancellationToken,
    background: &tokio_util::task::TaskTracker,
) {
    let (st, token) = (state.clone(), shutdown.clone());
    let st2 = state.clone();
    background.spawn(async move {
        let job = tokio::task::spawn_blocking(move || {
            let plan = st
                .plan
                .read()
                .map(|p| p.clone())
                .unwrap_or_else(|p| p.into_inner().clone());
            let r = st.scanner.scan_plan(&plan);
            st.sessions.access_changed();
            (r, status_line(&st.db, &st.cfg))
        });
        let watching = if st2.cfg.watch.enabled {
            "watching"
        } else {
            "not watching (watch.enabled = false)"
        };
        tokio::select! {
            r = job => match r {
                Ok((Ok(report), status)) => {
                    log::info!("initial scan: {report}");
                    notify(&[sd_notify::NotifyState::Status(&format!(
                        "{status}; scan done; {watching}"
                    ))]);
                }
                Ok((Err(e), _)) => log::error!("initial scan failed: {e}"),
                Err(e) => log::error!("initial scan task failed: {e}"),
            },
            _ = token.cancelled() => {}
        }
        let _ = scanned_tx.send(true);
    });
}

/// How often the data dir's free space is read for the status line.
const DATA_ROOM_EVERY: Duration = Duration::from_secs(5);

/// Watches the data dir's disk (the SD card) against its reserve: when it
/// goes below or back above, says so once in the log (warn / info) and in
/// the status line. The refusals themselves are the writers' checks
/// ([`crate::upload::space::Reserve`]); this only tells the operator.
fn spawn_data_room_watch(
    db: &Db,
    cfg: &Arc<Config>,
    shutdown: &CancellationToken,
    background: &tokio_util::task::TaskTracker,
) {
    use crate::freespace::DataRoom;
    let (db, cfg, token) = (db.clone(), cfg.clone(), shutdown.clone());
    background.spawn(async move {
        let mut tick = tokio::time::interval(DATA_ROOM_EVERY);
        let mut was_low = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = token.cancelled() => break,
            }
            let (db, cfg) = (db.clone(), cfg.clone());
            let changed = tokio::task::spawn_blocking(move || {
                let room = DataRoom::of(&cfg.data_dir, cfg.data_reserve()).ok()?;
                if room.low() == was_low {
                    return Some(was_low);
                }
                match room.note() {
                    Some(n) => log::warn!("{n} ({}); free space there", cfg.data_dir.display()),
                    None => log::info!(
                        "SD card ({}) back above its reserve: {} bytes free, uploads to it resume",
                        cfg.data_dir.display(),
                        room.free
                    ),
                }
                notify_status(&db, &cfg);
                Some(room.low())
            })
            .await;
            if let Ok(Some(low)) = changed {
                was_low = low;
            }
        }
    });
}

/// Thumbnails an older installation cached in the data dir, and the
/// client thumbnails its uploads stored there, move to their libraries'
/// disks, beside the requests (thumbmove.rs).
fn spawn_thumb_move(
    db: &Db,
    cfg: &Arc<Config>,
    thumbs: &Arc<ThumbCache>,
    shutdown: &CancellationToken,
    background: &tokio_util::task::TaskTracker,
) {
    let (db, cfg, thumbs, stop) = (db.clone(), cfg.clone(), thumbs.clone(), shutdown.clone());
    background.spawn_blocking(move || {
        let done = crate::thumbmove::move_old_cache(&db, &thumbs, &stop);
        if done != Default::default() {
            log::info!(
                moved = done.moved, dropped = done.dropped, left = done.left;
                "thumbnail cache moved to the library disks"
            );
        }
        let done = crate::thumbmove::move_client_thumbs(&db, &cfg, &stop);
        if done != Default::default() {
            log::info!(
                moved = done.moved, dropped = done.dropped, left = done.left;
                "client thumbnails of older uploads moved to the library disks"
            );
        }
    });
}

/// Watchdog (when systemd asks for one): ping only when the runtime
/// schedules us and the DB answers.
fn spawn_watchdog(
    db: &Db,
    shutdown: &CancellationToken,
    background: &tokio_util::task::TaskTracker,
) {
    let mut usec = 0u64;
    if !(sd_notify::watchdog_enabled(false, &mut usec) && usec > 0) {
        return;
    }
    let (db, token) = (db.clone(), shutdown.clone());
    let every = Duration::from_micros(usec / 2);
    background.spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = token.cancelled() => break,
            }
            let db = db.clone();
            let alive =
                tokio::time::timeout(every, tokio::task::spawn_blocking(move || db.ping())).await;
            match alive {
                Ok(Ok(Ok(()))) => notify(&[sd_notify::NotifyState::Watchdog]),
                other => log::warn!("watchdog: database did not answer in time: {other:?}"),
            }
        }
    });
}

impl Running {
    /// Waits until the initial scan is finished.
    pub async fn wait_scanned(&mut self) {
        let _ = self.scanned.wait_for(|done| *done).await;
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, drains in-flight requests (bounded by
    /// [`DRAIN_DEADLINE`]), stops background work.
    pub async fn stop(self) -> anyhow::Result<()> {
        notify(&[sd_notify::NotifyState::Stopping]);
        self.shutdown.cancel();
        match tokio::time::timeout(DRAIN_DEADLINE, self.server).await {
            Ok(r) => r??,
            Err(_) => log::warn!(
                "shutdown: requests still running after {DRAIN_DEADLINE:?}; leaving them"
            ),
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.background.wait()).await;
        // A thumbnail render the stop leaves running is not one that killed
        // the server: the next start must not record it as failed.
        let thumbs = self.state.thumbs.clone();
        let _ = tokio::task::spawn_blocking(move || thumbs.end_of_run()).await;
        log::info!("isync stopped");
        Ok(())
    }
}

/// Runs until `stop` is cancelled (SIGTERM/SIGINT in `main`).
pub(crate) async fn run(
    cfg: Config,
    listener: TcpListener,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let running = start(cfg, listener).await?;
    let server_token = running.shutdown_token();
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = server_token.cancelled() => {}
    }
    running.stop().await
}
