//! The live library: an inotify watcher (through `notify`) that turns
//! file-system events into incremental scans while `serve` runs.
//!
//! - One watch per folder, never per file; watches are counted against
//!   `watch.max_watches` and the kernel's limit. A library that cannot be
//!   fully watched (or whose event queue overflowed) is rescanned
//!   periodically instead, after one warning that says how to raise the limit.
//! - Events only mark folders dirty. A folder is scanned once it has been
//!   quiet for `debounce_ms` (at most a second after its first change); a
//!   file still being written (modified, not yet closed) is left out of the
//!   scan until it is closed, so a 2 GB copy is probed once, when complete.
//! - Every dirty folder of a library is scanned in one pass, so a rename
//!   between two folders is seen whole and keeps its id.
//! - Scans go through the one [`Scanner`] (its lock serialises them with the
//!   initial scan and `isync scan` requests): one writer path, no races.
//! - A library root that vanishes, is moved, or whose mount changes is
//!   checked at once; an offline root is checked every
//!   `offline_check_secs` for the same disk's return (a cheap stat and marker
//!   read). Online and watched, the watcher does no work at all.

use super::roots::{check_root, LibraryPlan};
use super::scan::{ScanReport, Scanner};
use crate::config::WatchConfig;
use crate::db::{files, libraries, Db, DbError};
use crate::model::LibraryId;
use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind, RenameMode};
use notify::{Event, EventKind, INotifyWatcher, RecursiveMode, Watcher as _};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A folder that keeps changing is scanned at least this often.
const MAX_DELAY: Duration = Duration::from_secs(1);
/// A file modified but never closed is taken as written after this long
/// without a change (a writer that stalled or died).
const WRITE_STALL: Duration = Duration::from_secs(30);
/// Events queued between the notify thread and the watcher task; beyond it
/// the queue counts as overflowed (a full rescan follows).
const QUEUE_EVENTS: usize = 65_536;

/// What the watcher needs from the application.
#[derive(Clone)]
pub(crate) struct WatchParts {
    pub db: Db,
    pub scanner: Arc<Scanner>,
    pub plan: Arc<RwLock<LibraryPlan>>,
    pub cfg: WatchConfig,
}

/// Live figures, for the service status line and tests.
#[derive(Debug, Default)]
pub struct WatchStats {
    /// Folders watched now.
    pub watches: AtomicUsize,
    /// Libraries rescanned periodically because they cannot be fully watched.
    pub fallback: AtomicUsize,
    /// Incremental scans run for events.
    pub scans: AtomicUsize,
    /// Checks of offline roots done (every `offline_check_secs` while one
    /// is offline): how a test knows that one went by.
    pub offline_checks: AtomicUsize,
    pub running: AtomicBool,
}

fn plan_of(p: &RwLock<LibraryPlan>) -> LibraryPlan {
    p.read()
        .map(|p| p.clone())
        .unwrap_or_else(|p| p.into_inner().clone())
}

fn hidden(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// The watches, shared between the task and blocking jobs.
struct Watches {
    inner: Option<INotifyWatcher>,
    watched: HashSet<PathBuf>,
    max: usize,
}

/// Why a folder could not be watched.
enum Exhausted {
    Config(usize),
    Kernel(usize),
}

impl Watches {
    /// Watches `top` and every folder below it (skipping dot names, symlinks
    /// and `excluded`). Stops at the budget.
    fn add_tree(&mut self, top: &Path, excluded: &[PathBuf]) -> Result<(), Exhausted> {
        let Some(w) = self.inner.as_mut() else {
            return Ok(());
        };
        let it = walkdir::WalkDir::new(top)
            .follow_links(false)
            .into_iter()
            .filter_entry(|e| {
                e.depth() == 0
                    || (e.file_type().is_dir()
                        && !e.file_name().to_string_lossy().starts_with('.')
                        && !excluded.iter().any(|x| e.path() == x))
            });
        for e in it.flatten() {
            if !e.file_type().is_dir() || self.watched.contains(e.path()) {
                continue;
            }
            if self.watched.len() >= self.max {
                return Err(Exhausted::Config(self.max));
            }
            match w.watch(e.path(), RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(e.into_path());
                }
                Err(err) if matches!(err.kind, notify::ErrorKind::MaxFilesWatch) => {
                    return Err(Exhausted::Kernel(self.watched.len()));
                }
                // Gone meanwhile, or unreadable: the scan reports it.
                Err(err) => log::debug!("watch {}: {err}", e.path().display()),
            }
        }
        Ok(())
    }

    /// Forgets the watches of `top` and below. With `unwatch`, also removes
    /// them from inotify (notify already did for a folder moved or deleted
    /// inside a watched one).
    fn remove_tree(&mut self, top: &Path, unwatch: bool) {
        let gone: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|p| p.starts_with(top))
            .cloned()
            .collect();
        for p in gone {
            self.watched.remove(&p);
            if unwatch {
                if let Some(w) = self.inner.as_mut() {
                    let _ = w.unwatch(&p);
                }
            }
        }
    }
}

/// A library as the watcher tracks it.
struct Lib {
    id: LibraryId,
    root: PathBuf,
    excluded: Vec<PathBuf>,
    /// Dirty folders, when and since when.
    dirty: HashSet<PathBuf>,
    full: bool,
    first: Option<Instant>,
    last: Option<Instant>,
    /// Rescanned periodically (cannot be fully watched).
    fallback: bool,
    next_fallback: Option<Instant>,
    offline: bool,
    next_offline_check: Option<Instant>,
    /// The last scan held removals back: rescan whole until it clears, so
    /// the held state always reflects the whole library.
    guarded: bool,
}

impl Lib {
    fn mark(&mut self, dir: PathBuf, now: Instant) {
        self.dirty.insert(dir);
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    fn mark_full(&mut self, now: Instant) {
        self.full = true;
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    fn due_at(&self, debounce: Duration) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        Some((last + debounce).min(first + MAX_DELAY))
    }
}

/// A file being written: last change, and whether data was written (a
/// created-only file, e.g. a hard link, is complete after the debounce).
struct Writing {
    last: Instant,
    modified: bool,
}

struct State {
    parts: WatchParts,
    debounce: Duration,
    libs: Vec<Lib>,
    writing: HashMap<PathBuf, Writing>,
    watches: Arc<Mutex<Watches>>,
    stats: Arc<WatchStats>,
    warned_limit: bool,
    warned_overflow: bool,
    /// Folders to start watching (created or moved in).
    to_watch: Vec<PathBuf>,
}

/// Starts the watcher on `tracker`; it stops when `token` is cancelled.
/// Events are collected from the start, and applied once `scanned` (the
/// initial scan) is done. Returns its live figures.
pub(crate) fn spawn(
    parts: WatchParts,
    scanned: watch::Receiver<bool>,
    token: CancellationToken,
    tracker: &TaskTracker,
) -> Arc<WatchStats> {
    let stats = Arc::new(WatchStats::default());
    let st = stats.clone();
    tracker.spawn(async move {
        if let Err(e) = run(parts, scanned, token, st.clone()).await {
            log::error!("watcher stopped: {e}; libraries are no longer watched (restart isync)");
        }
        st.running.store(false, Ordering::Relaxed);
    });
    stats
}

fn lock(w: &Mutex<Watches>) -> std::sync::MutexGuard<'_, Watches> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

async fn run(
    parts: WatchParts,
    mut scanned: watch::Receiver<bool>,
    token: CancellationToken,
    stats: Arc<WatchStats>,
) -> Result<(), DbError> {
    let (tx, mut rx) = mpsc::channel::<notify::Result<Event>>(QUEUE_EVENTS);
    let overflow = Arc::new(tokio::sync::Notify::new());
    let ov = overflow.clone();
    let inner = match INotifyWatcher::new(
        move |ev: notify::Result<Event>| {
            if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(ev) {
                ov.notify_one();
            }
        },
        notify::Config::default(),
    ) {
        Ok(w) => Some(w),
        Err(e) => {
            log::warn!(
                "cannot start the file watcher ({e}); every library is rescanned every \
                 watch.fallback_rescan_secs instead"
            );
            None
        }
    };
    let max = match parts.cfg.max_watches {
        0 => usize::MAX,
        n => n,
    };
    let has_inotify = inner.is_some();
    let watches = Arc::new(Mutex::new(Watches {
        inner,
        watched: HashSet::new(),
        max,
    }));
    let plan = plan_of(&parts.plan);
    let mut state = State {
        debounce: Duration::from_millis(parts.cfg.debounce_ms),
        libs: plan
            .scan
            .iter()
            .map(|(l, ex)| Lib {
                id: l.id,
                root: PathBuf::from(&l.path),
                excluded: ex.clone(),
                dirty: HashSet::new(),
                full: false,
                first: None,
                last: None,
                fallback: !has_inotify,
                next_fallback: None,
                offline: false,
                next_offline_check: None,
                guarded: false,
            })
            .collect(),
        parts,
        writing: HashMap::new(),
        watches,
        stats: stats.clone(),
        warned_limit: false,
        warned_overflow: false,
        to_watch: Vec::new(),
    };
    stats.running.store(true, Ordering::Relaxed);
    // Watch first, so nothing changed during the initial scan is missed.
    let online = state.online_now().await?;
    for i in 0..state.libs.len() {
        if online.get(i).copied().unwrap_or(false) {
            state.watch_library(i).await;
        } else {
            state.went_offline(i);
        }
    }
    let mut mounts = mount_changes();
    let mut initial_done = *scanned.borrow();
    loop {
        let now = Instant::now();
        let next = if initial_done {
            state.next_deadline()
        } else {
            None
        };
        tokio::select! {
            _ = token.cancelled() => break,
            ev = rx.recv() => match ev {
                Some(ev) => {
                    state.on_event(ev);
                    // Take what is queued in one go.
                    while let Ok(ev) = rx.try_recv() {
                        state.on_event(ev);
                    }
                }
                None => break,
            },
            _ = overflow.notified() => state.on_overflow(),
            r = scanned.changed(), if !initial_done => {
                initial_done = r.is_err() || *scanned.borrow();
                if initial_done {
                    state.after_initial_scan().await?;
                }
            }
            _ = mount_changed(&mut mounts) => {
                log::debug!("mount table changed: checking library roots");
                state.on_mount_change(now).await?;
            }
            _ = sleep_until(next) => {}
        }
        state.start_watching().await;
        if initial_done {
            state.run_due(&mut rx, &token).await?;
        }
    }
    Ok(())
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// `/proc/self/mountinfo` signals a change of the mount table with
/// POLLPRI: an unmount or a disk mounted again is noticed without polling.
fn mount_changes() -> Option<tokio::io::unix::AsyncFd<std::fs::File>> {
    let f = std::fs::File::open("/proc/self/mountinfo").ok()?;
    // `with_interest` is deprecated for types whose fd may be closed behind
    // the registration's back; a `File` owned by the `AsyncFd` cannot be,
    // and the replacement is `unsafe`, which this crate forbids.
    #[allow(deprecated)]
    let fd = tokio::io::unix::AsyncFd::with_interest(f, tokio::io::Interest::PRIORITY);
    match fd {
        Ok(fd) => Some(fd),
        Err(e) => {
            log::debug!("cannot follow mount changes ({e}); relying on folder events");
            None
        }
    }
}

async fn mount_changed(fd: &mut Option<tokio::io::unix::AsyncFd<std::fs::File>>) {
    match fd {
        Some(f) => match f.ready(tokio::io::Interest::PRIORITY).await {
            Ok(mut g) => g.clear_ready(),
            Err(_) => {
                *fd = None;
                std::future::pending::<()>().await
            }
        },
        None => std::future::pending().await,
    }
}

impl State {
    fn lib_of(&mut self, p: &Path) -> Option<&mut Lib> {
        self.libs
            .iter_mut()
            .filter(|l| p.starts_with(&l.root) && !l.excluded.iter().any(|x| p.starts_with(x)))
            .max_by_key(|l| l.root.as_os_str().len())
    }

    /// Marks the folder holding `p` dirty (or the whole library when `p` is
    /// its root).
    fn mark_parent(&mut self, p: &Path, now: Instant) {
        if let Some(l) = self.libs.iter_mut().find(|l| l.root == p) {
            l.mark_full(now);
            return;
        }
        let Some(dir) = p.parent() else { return };
        let dir = dir.to_path_buf();
        if let Some(l) = self.lib_of(&dir) {
            if !l.offline {
                l.mark(dir, now);
            }
        }
    }

    fn on_event(&mut self, ev: notify::Result<Event>) {
        let now = Instant::now();
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                self.on_overflow();
                return;
            }
            Err(e) => {
                log::debug!("watcher: {e}");
                return;
            }
        };
        if ev.need_rescan() {
            self.on_overflow();
            return;
        }
        for p in &ev.paths {
            let is_root = self.libs.iter().any(|l| &l.root == p);
            // Our own marker and staging live under dot names: not media.
            if hidden(p) && !is_root {
                continue;
            }
            match ev.kind {
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                    self.writing.remove(p);
                    self.mark_parent(p, now);
                }
                EventKind::Access(_) => {}
                EventKind::Create(CreateKind::Folder) => {
                    self.to_watch.push(p.clone());
                    self.mark_parent(p, now);
                }
                EventKind::Create(_) => {
                    self.writing.insert(
                        p.clone(),
                        Writing {
                            last: now,
                            modified: false,
                        },
                    );
                    self.mark_parent(p, now);
                }
                EventKind::Modify(ModifyKind::Data(_)) => {
                    self.writing.insert(
                        p.clone(),
                        Writing {
                            last: now,
                            modified: true,
                        },
                    );
                }
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {}
                EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
                    self.writing.remove(p);
                    if p.is_dir() {
                        self.to_watch.push(p.clone());
                    }
                    self.mark_parent(p, now);
                }
                EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_) => {
                    self.writing.remove(p);
                    let folder = matches!(
                        ev.kind,
                        EventKind::Remove(RemoveKind::Folder) | EventKind::Modify(_)
                    );
                    if folder {
                        // notify dropped the moved/deleted folder's watches;
                        // a moved root keeps watching its old inode elsewhere.
                        lock(&self.watches).remove_tree(p, is_root);
                        self.stats
                            .watches
                            .store(lock(&self.watches).watched.len(), Ordering::Relaxed);
                    }
                    self.mark_parent(p, now);
                }
                EventKind::Modify(_) => self.mark_parent(p, now),
                _ => {}
            }
        }
    }

    fn on_overflow(&mut self) {
        if !self.warned_overflow {
            self.warned_overflow = true;
            let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into());
            log::warn!(
                "file events arrived faster than isync could take them (inotify queue \
                 overflow, fs.inotify.max_queued_events = {limit}); rescanning every library \
                 so nothing is missed. If this repeats, raise the queue: \
                 `sudo sysctl fs.inotify.max_queued_events=65536` (persist it in \
                 /etc/sysctl.d/90-isync.conf)"
            );
        }
        let now = Instant::now();
        for l in self.libs.iter_mut() {
            if !l.offline {
                l.mark_full(now);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut take = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        for l in &self.libs {
            take(l.due_at(self.debounce));
            take(l.next_fallback.filter(|_| l.fallback && !l.offline));
            take(l.next_offline_check.filter(|_| l.offline));
        }
        for w in self.writing.values() {
            take(Some(w.last + self.stall(w)));
        }
        t
    }

    fn stall(&self, w: &Writing) -> Duration {
        if w.modified {
            WRITE_STALL
        } else {
            self.debounce
        }
    }

    /// Which libraries are online, by a cheap root check.
    async fn online_now(&self) -> Result<Vec<bool>, DbError> {
        let ids: Vec<LibraryId> = self.libs.iter().map(|l| l.id).collect();
        let db = self.parts.db.clone();
        tokio::task::spawn_blocking(move || {
            ids.iter()
                .map(|id| root_online(&db, *id))
                .collect::<Result<Vec<bool>, DbError>>()
        })
        .await
        .map_err(|e| DbError::Join(e.to_string()))?
    }

    /// Watches library `i` whole; falls back to periodic rescans when the
    /// watch budget runs out.
    async fn watch_library(&mut self, i: usize) {
        let (root, excluded) = (self.libs[i].root.clone(), self.libs[i].excluded.clone());
        let w = self.watches.clone();
        let r = tokio::task::spawn_blocking(move || {
            let mut w = lock(&w);
            let r = w.add_tree(&root, &excluded);
            (r, w.watched.len())
        })
        .await;
        let (r, n) = match r {
            Ok(x) => x,
            Err(e) => {
                log::error!("watcher: adding watches failed: {e}");
                return;
            }
        };
        self.stats.watches.store(n, Ordering::Relaxed);
        if let Err(why) = r {
            self.fall_back(i, why);
        }
    }

    fn fall_back(&mut self, i: usize, why: Exhausted) {
        let every = self.parts.cfg.fallback_rescan_secs;
        let l = &mut self.libs[i];
        if !l.fallback {
            l.fallback = true;
            l.next_fallback = Some(Instant::now() + Duration::from_secs(every));
            self.stats.fallback.fetch_add(1, Ordering::Relaxed);
        }
        let path = l.root.display().to_string();
        if self.warned_limit {
            log::info!("library {path}: not fully watched; rescanned every {every} s");
            return;
        }
        self.warned_limit = true;
        match why {
            Exhausted::Config(n) => log::warn!(
                "watch.max_watches = {n} folders reached: library {path} is not fully watched \
                 and is rescanned every {every} s (watch.fallback_rescan_secs) instead. Raise \
                 watch.max_watches (0 = up to the kernel limit) to watch it live"
            ),
            Exhausted::Kernel(n) => {
                let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "?".into());
                log::warn!(
                    "the kernel's inotify watch limit is reached (fs.inotify.max_user_watches = \
                     {limit}, {n} folders watched by isync): library {path} is not fully watched \
                     and is rescanned every {every} s (watch.fallback_rescan_secs) instead. To \
                     watch it live, raise the limit: `sudo sysctl \
                     fs.inotify.max_user_watches=524288` and persist it in \
                     /etc/sysctl.d/90-isync.conf"
                )
            }
        }
    }

    /// Adds watches for folders created or moved in.
    async fn start_watching(&mut self) {
        let dirs = std::mem::take(&mut self.to_watch);
        for d in dirs {
            let Some(i) = self
                .libs
                .iter()
                .position(|l| d.starts_with(&l.root) && !l.offline)
            else {
                continue;
            };
            let excluded = self.libs[i].excluded.clone();
            let w = self.watches.clone();
            let r = tokio::task::spawn_blocking(move || {
                let mut w = lock(&w);
                let r = w.add_tree(&d, &excluded);
                (r, w.watched.len())
            })
            .await;
            if let Ok((r, n)) = r {
                self.stats.watches.store(n, Ordering::Relaxed);
                if let Err(why) = r {
                    self.fall_back(i, why);
                }
            }
        }
    }

    /// Libraries the initial scan found offline are not watched (their
    /// root is checked periodically instead).
    async fn after_initial_scan(&mut self) -> Result<(), DbError> {
        let db = self.parts.db.clone();
        let online: Vec<(LibraryId, bool)> = db
            .read_async(|c| {
                Ok(libraries::list(c)?
                    .into_iter()
                    .map(|l| (l.id, l.online))
                    .collect())
            })
            .await?;
        for i in 0..self.libs.len() {
            let on = online
                .iter()
                .find(|(id, _)| *id == self.libs[i].id)
                .is_none_or(|(_, o)| *o);
            if !on {
                self.went_offline(i);
            } else if !lock(&self.watches).watched.contains(&self.libs[i].root) {
                // Came online during the initial scan: watch, then catch up.
                self.watch_library(i).await;
                self.libs[i].mark_full(Instant::now());
            }
        }
        Ok(())
    }

    fn went_offline(&mut self, i: usize) {
        let every = Duration::from_secs(self.parts.cfg.offline_check_secs);
        let l = &mut self.libs[i];
        if !l.offline {
            l.offline = true;
            l.dirty.clear();
            let root = l.root.clone();
            let mut w = lock(&self.watches);
            // Forget, not unwatch: an unmount already dropped the kernel's
            // watches (and a root moved away was unwatched when it moved).
            w.remove_tree(&root, false);
            self.stats.watches.store(w.watched.len(), Ordering::Relaxed);
        }
        self.libs[i].next_offline_check = Some(Instant::now() + every);
    }

    /// Runs whatever is due: scans of dirty libraries, fallback rescans,
    /// offline checks. Keeps taking events while a scan runs.
    async fn run_due(
        &mut self,
        rx: &mut mpsc::Receiver<notify::Result<Event>>,
        token: &CancellationToken,
    ) -> Result<(), DbError> {
        let now = Instant::now();
        // Writers that went quiet: their folder gets another look.
        let stalled: Vec<PathBuf> = self
            .writing
            .iter()
            .filter(|(_, w)| now >= w.last + self.stall(w))
            .map(|(p, _)| p.clone())
            .collect();
        for p in stalled {
            self.writing.remove(&p);
            self.mark_parent(&p, now);
        }
        for i in 0..self.libs.len() {
            if token.is_cancelled() {
                break;
            }
            let l = &mut self.libs[i];
            if l.offline {
                if l.next_offline_check.is_some_and(|t| now >= t) {
                    let online = self.check_offline(i).await?;
                    if !online {
                        self.went_offline(i);
                        continue;
                    }
                    // Back: watch it again first (so nothing changed during
                    // the scan is missed), then a full incremental scan.
                    self.libs[i].offline = false;
                    self.libs[i].next_offline_check = None;
                    self.watch_library(i).await;
                    self.libs[i].mark_full(now - MAX_DELAY);
                } else {
                    continue;
                }
            }
            let l = &mut self.libs[i];
            if l.fallback && l.next_fallback.is_some_and(|t| now >= t) {
                l.mark_full(now - MAX_DELAY);
                l.next_fallback =
                    Some(now + Duration::from_secs(self.parts.cfg.fallback_rescan_secs));
            }
            let Some(due) = l.due_at(self.debounce) else {
                continue;
            };
            if now < due {
                continue;
            }
            let full = std::mem::take(&mut l.full) || l.guarded;
            let dirs: Vec<PathBuf> = l.dirty.drain().collect();
            l.first = None;
            l.last = None;
            let busy: HashSet<PathBuf> = self
                .writing
                .keys()
                .filter(|p| p.starts_with(&l.root))
                .cloned()
                .collect();
            let report = self.scan(i, full, dirs, busy, rx).await?;
            if report.held_back > 0 {
                self.libs[i].guarded = true;
            } else if full {
                self.libs[i].guarded = false;
            }
            let was_watched = lock(&self.watches).watched.contains(&self.libs[i].root);
            if !report.offline.is_empty() {
                self.went_offline(i);
            } else if full && !was_watched && !self.libs[i].fallback {
                self.watch_library(i).await;
            }
        }
        Ok(())
    }

    /// A mount came or went: online roots that fail the cheap check are
    /// scanned (which takes them offline); offline ones are checked now.
    async fn on_mount_change(&mut self, now: Instant) -> Result<(), DbError> {
        let online = self.online_now().await?;
        for (l, on) in self.libs.iter_mut().zip(online) {
            if l.offline {
                l.next_offline_check = Some(now);
            } else if !on {
                l.mark_full(now);
            }
        }
        Ok(())
    }

    async fn check_offline(&self, i: usize) -> Result<bool, DbError> {
        let (db, id) = (self.parts.db.clone(), self.libs[i].id);
        let online = tokio::task::spawn_blocking(move || root_online(&db, id))
            .await
            .map_err(|e| DbError::Join(e.to_string()))?;
        self.stats.offline_checks.fetch_add(1, Ordering::Relaxed);
        online
    }

    async fn scan(
        &mut self,
        i: usize,
        full: bool,
        dirs: Vec<PathBuf>,
        busy: HashSet<PathBuf>,
        rx: &mut mpsc::Receiver<notify::Result<Event>>,
    ) -> Result<ScanReport, DbError> {
        let (scanner, plan, id) = (
            self.parts.scanner.clone(),
            plan_of(&self.parts.plan),
            self.libs[i].id,
        );
        let n_dirs = dirs.len();
        let job = tokio::task::spawn_blocking(move || {
            if full {
                scanner.scan_library_id(&plan, id)
            } else {
                scanner.scan_dirs(&plan, id, &dirs, &busy)
            }
        });
        tokio::pin!(job);
        let r = loop {
            tokio::select! {
                r = &mut job => break r,
                Some(ev) = rx.recv() => self.on_event(ev),
            }
        };
        self.stats.scans.fetch_add(1, Ordering::Relaxed);
        let report = r.map_err(|e| DbError::Join(e.to_string()))?;
        let kind = if full {
            "full rescan".to_string()
        } else {
            format!("{n_dirs} folders")
        };
        match &report {
            Ok(r) if r.changed_anything() || r.held_back > 0 => {
                log::info!("library {}: {r} ({kind})", self.libs[i].root.display())
            }
            Ok(r) => log::debug!("library {}: {r} ({kind})", self.libs[i].root.display()),
            Err(e) => log::error!(
                "library {}: scan after file events failed: {e}",
                self.libs[i].root.display()
            ),
        }
        // A failed scan is logged and retried with the next event.
        Ok(report.unwrap_or_default())
    }
}

/// A cheap check that library `id`'s root is there and is the same disk
/// (stat + marker read; no walk). Blocking.
pub(crate) fn root_online(db: &Db, id: LibraryId) -> Result<bool, DbError> {
    let (lib, marker, has_files) = db.read(|c| {
        Ok((
            libraries::by_id(c, id)?,
            libraries::marker(c, id)?,
            files::any_in_library(c, id)?,
        ))
    })?;
    Ok(lib.is_some_and(|l| check_root(&l, marker.as_deref(), has_files as usize).is_ok()))
}
