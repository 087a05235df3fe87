//! Thumbnail pre-rendering: after each scan (the initial one, the watcher's,
//! `isync scan`) a few background threads render both levels of new and
//! changed originals into the thumbnail cache, so that `thumbnail.icc` is a
//! cache hit by the time a family opens the photo (what Immich and
//! PhotoPrism do). A completed upload asks for its one file
//! ([`Prerender::request_file`]), ahead of the sweeps' backlog. A cold
//! request still renders on its own (`thumbcache`).
//!
//! The threads run at the lowest CPU priority (nice 19, set per thread), take
//! no render slot from requests (`lanes.rs`), ask for memory only when no
//! request waits for it (`budget.rs`), skip what is already cached or being
//! rendered by a request, leave offline libraries alone until they return,
//! and stop between two originals when the server shuts down. This is the
//! one part of `media` that reads the database: which originals to visit.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::raster::ThumbError;
use super::thumbcache::{ThumbCache, ThumbSource};
use crate::db::listing::{self, ThumbWork};
use crate::db::{files, libraries, Db, DbError};
use crate::model::{FileId, FileType, LibraryId, ThumbLevel};

/// How far before the previous sweep a sweep looks again, in seconds: rows
/// are stamped with their writer's clock before they commit, so a write in
/// flight while the last sweep read would otherwise be missed.
const SWEEP_OVERLAP_S: i64 = 60;
/// Nice value of the worker threads: the lowest priority there is, so
/// requests, scans and the watcher always come first.
const WORKER_NICE: i32 = 19;

/// What the worker has done; for tests, benches and the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrerenderStatus {
    /// Sweeps of the database completed.
    pub sweeps: u64,
    /// Originals looked at (cached ones included).
    pub visited: u64,
    /// Thumbnails written (one per level).
    pub written: u64,
    /// Originals whose thumbnails could not be made (damaged, unreadable).
    pub failed: u64,
    /// Whether a sweep or a render is pending or running.
    pub busy: bool,
    /// Worker threads still running: they end after a stop, once the
    /// render each has in hand is done.
    pub threads: usize,
}

/// Handle to the worker threads; cheap to clone. Dropping it does not stop
/// them: the shutdown token does.
#[derive(Clone)]
pub struct Prerender {
    shared: Arc<Shared>,
}

struct Shared {
    db: Db,
    cache: Arc<ThumbCache>,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    stop: bool,
    /// A sweep was asked for; `since` is the oldest `last_modify` it must
    /// cover (the start of the scans that asked).
    wanted: Option<i64>,
    sweeping: bool,
    /// Files asked for one by one (completed uploads), looked up and put
    /// at the head of the queue before anything else.
    files: Vec<FileId>,
    /// Where the next sweep starts when nothing older was asked for.
    next_since: i64,
    /// Libraries that were offline at the last sweep: on their return all
    /// their files are visited, whatever changed while they were away.
    offline: HashSet<LibraryId>,
    queue: VecDeque<ThumbWork>,
    queued: HashSet<i64>,
    /// Threads working outside the lock (rendering, or looking up `files`).
    active: usize,
    /// Threads started: with none, requests are not kept (nobody would
    /// serve them).
    workers: usize,
    status: PrerenderStatus,
}

impl State {
    fn busy(&self) -> bool {
        self.wanted.is_some()
            || self.sweeping
            || !self.files.is_empty()
            || !self.queue.is_empty()
            || self.active > 0
    }
}

/// How long a stop waits for the renders in progress.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl Prerender {
    /// Starts `threads` worker threads (0: none; the cache is then filled by
    /// requests alone) that stop when `shutdown` is cancelled. The first
    /// sweep covers every file; call [`Prerender::request_sweep`] to start it.
    pub(crate) fn start(
        db: Db,
        cache: Arc<ThumbCache>,
        threads: usize,
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
    ) -> Prerender {
        let shared = Arc::new(Shared {
            db,
            cache,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let mut handles = Vec::new();
        for n in 0..threads {
            let shared = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("isync-prerender-{n}"))
                .spawn(move || shared.work());
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => log::warn!("cannot start a thumbnail pre-render thread: {e}"),
            }
        }
        {
            let mut st = shared.lock();
            st.workers = handles.len();
            st.status.threads = handles.len();
        }
        if !handles.is_empty() {
            // Wakes idle threads on shutdown, and lets `Running::stop` wait
            // (briefly) for the render in progress to finish. The guard also
            // stops them when the runtime drops this task unpolled.
            let stopper = StopOnDrop(Arc::clone(&shared));
            let token = shutdown.clone();
            tracker.spawn(async move {
                token.cancelled().await;
                drop(stopper);
                // Bounded well below systemd's stop timeout: at nice 19 on a
                // busy machine one render can take seconds, and leaving it
                // is safe (cache files are written under a temp name and
                // renamed; a render cut off by the exit leaves no file).
                let joined = tokio::task::spawn_blocking(move || {
                    for h in handles {
                        let _ = h.join();
                    }
                });
                if tokio::time::timeout(STOP_WAIT, joined).await.is_err() {
                    log::info!(
                        "shutdown: a thumbnail pre-render still running after {STOP_WAIT:?}; leaving it"
                    );
                }
            });
        }
        Prerender { shared }
    }

    /// Asks for a sweep of the files whose record changed at or after
    /// `since` (unix seconds; the start of the scan that calls). Returns at
    /// once; requests arriving while one runs fold into one more sweep.
    pub(crate) fn request_sweep(&self, since: i64) {
        let mut st = self.shared.lock();
        st.wanted = Some(st.wanted.map_or(since, |w| w.min(since)));
        self.shared.publish(&mut st);
        drop(st);
        self.shared.wake.notify_all();
    }

    /// Asks for the thumbnails of one file whose original just became
    /// complete (an upload), before the rest of the backlog. Returns at once;
    /// the worker looks the file up, and skips it when the server makes no
    /// thumbnail of it or they are cached already.
    pub(crate) fn request_file(&self, id: FileId) {
        let mut st = self.shared.lock();
        if st.workers == 0 || st.files.contains(&id) {
            return;
        }
        st.files.push(id);
        self.shared.publish(&mut st);
        drop(st);
        self.shared.wake.notify_all();
    }

    /// What the worker has done so far.
    pub fn status(&self) -> PrerenderStatus {
        self.shared.lock().status.clone()
    }

    /// Blocks until nothing is pending or running (or `timeout` passes);
    /// returns the status then. For tests and benches.
    pub fn wait_idle(&self, timeout: std::time::Duration) -> PrerenderStatus {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        while st.busy() && !st.stop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .shared
                .wake
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        st.status.clone()
    }
}

struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.lock().stop = true;
        self.0.wake.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, st: &mut State) {
        st.status.busy = st.busy();
    }

    /// One worker thread: sweeps when asked, renders what the sweeps found.
    fn work(&self) {
        lower_priority();
        let mut st = self.lock();
        loop {
            if st.stop {
                st.status.threads -= 1;
                break;
            }
            if !st.files.is_empty() {
                let ids = std::mem::take(&mut st.files);
                st.active += 1;
                drop(st);
                let found = self.db.read(|c| {
                    let mut work = Vec::new();
                    for id in &ids {
                        work.extend(listing::thumbnail_work_of(c, *id)?);
                    }
                    Ok(work)
                });
                st = self.lock();
                st.active -= 1;
                match found {
                    Ok(work) => {
                        // Ahead of the backlog, in the order asked; moved
                        // there when a sweep queued it already.
                        for w in work.into_iter().rev() {
                            if !st.queued.insert(w.id.0) {
                                st.queue.retain(|q| q.id != w.id);
                            }
                            st.queue.push_front(w);
                        }
                    }
                    Err(e) => log::warn!("thumbnail pre-render: cannot read the library: {e}"),
                }
                self.publish(&mut st);
                self.wake.notify_all();
                continue;
            }
            if let (Some(asked), false) = (st.wanted, st.sweeping) {
                let since = asked.min(st.next_since) - SWEEP_OVERLAP_S;
                let offline = st.offline.clone();
                st.wanted = None;
                st.sweeping = true;
                drop(st);
                let started = unix_now();
                let found = self.sweep(since.max(0), &offline);
                st = self.lock();
                st.sweeping = false;
                match found {
                    Ok((work, offline)) => {
                        st.next_since = started;
                        st.offline = offline;
                        let mut added = 0;
                        for w in work {
                            if st.queued.insert(w.id.0) {
                                st.queue.push_back(w);
                                added += 1;
                            }
                        }
                        st.status.sweeps += 1;
                        log::debug!(since, added; "thumbnail pre-render sweep");
                    }
                    Err(e) => log::warn!("thumbnail pre-render: cannot read the library: {e}"),
                }
                self.publish(&mut st);
                self.wake.notify_all();
                continue;
            }
            if let Some(w) = st.queue.pop_front() {
                st.queued.remove(&w.id.0);
                st.active += 1;
                drop(st);
                let outcome = self.visit(&w);
                st = self.lock();
                st.active -= 1;
                st.status.visited += 1;
                match outcome {
                    Ok(n) => st.status.written += n as u64,
                    Err(()) => st.status.failed += 1,
                }
                self.publish(&mut st);
                if !st.busy() {
                    // The last render of a burst: give back the decode
                    // buffers this thread's malloc arena would keep (about
                    // 2 MB idle, docs/performance.md "Memory"), then wake
                    // `wait_idle`, so that a waiter sees the memory freed.
                    let s = &st.status;
                    log::info!(
                        visited = s.visited, written = s.written, failed = s.failed;
                        "thumbnail pre-render idle"
                    );
                    drop(st);
                    crate::heap::release_free_memory();
                    st = self.lock();
                    self.wake.notify_all();
                }
                continue;
            }
            st = self.wake.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The originals to visit: changed since `since`, plus every file of a
    /// library that came back online; and which libraries are offline now.
    fn sweep(
        &self,
        since: i64,
        was_offline: &HashSet<LibraryId>,
    ) -> Result<(Vec<ThumbWork>, HashSet<LibraryId>), DbError> {
        self.db.read(|c| {
            let libs = libraries::list(c)?;
            let mut work = listing::thumbnail_work(c, since, None)?;
            for lib in libs
                .iter()
                .filter(|l| l.online && was_offline.contains(&l.id))
            {
                work.extend(listing::thumbnail_work(c, 0, Some(lib.id))?);
            }
            let offline = libs.iter().filter(|l| !l.online).map(|l| l.id).collect();
            Ok((work, offline))
        })
    }

    /// Renders the missing levels of one original. `Err` when it fails for
    /// a reason worth counting (a vanished original is not: its library
    /// may have gone offline, or a scan will remove it; nor a busy memory
    /// budget: the next sweep visits it again). A failure is recorded
    /// (sticky status 1, as a request's would be): neither the next sweep
    /// nor a request tries the file again until it changes.
    fn visit(&self, w: &ThumbWork) -> Result<usize, ()> {
        let levels: Vec<ThumbLevel> =
            [(w.small, ThumbLevel::Small), (w.screen, ThumbLevel::Screen)]
                .into_iter()
                .filter_map(|(want, level)| want.then_some(level))
                .collect();
        let Some(kind) = FileType::from_bits(w.file_type) else {
            return Ok(0);
        };
        let src = ThumbSource {
            root: PathBuf::from(&w.root),
            path: PathBuf::from(&w.path),
            inode: w.inode,
            kind,
            orientation: w.orientation,
        };
        let started = Instant::now();
        let rendered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.cache.prerender_blocking(w.id.0, &src, &levels)
        }))
        .unwrap_or_else(|_| Err(ThumbError::Failed(format!("{}: render panicked", w.path))));
        match rendered {
            Ok(0) => Ok(0),
            Ok(n) => {
                log::debug!(
                    file_id = w.id.0, written = n, ms = started.elapsed().as_millis() as u64;
                    "thumbnails pre-rendered"
                );
                // Deleted meanwhile: its thumbnails were removed before ours
                // landed, so remove them here (deletion removes after the
                // row is gone, so one of the two always runs last).
                if matches!(self.db.read(|c| files::by_id(c, w.id)), Ok(None)) {
                    let _ = self.cache.remove_file(w.id.0);
                }
                Ok(n)
            }
            Err(ThumbError::SourceMissing(_) | ThumbError::Unsupported) => Ok(0),
            Err(ThumbError::Busy(why)) => {
                log::debug!(file_id = w.id.0; "thumbnail pre-render put off: {why}");
                Ok(0)
            }
            Err(e @ ThumbError::Io { .. }) => {
                log::warn!("thumbnail pre-render of file {}: {e}", w.id.0);
                Err(())
            }
            Err(e) => {
                log::info!(
                    "thumbnails of file {} ({}) cannot be built: {e}",
                    w.id.0,
                    w.path
                );
                if let Err(e) = self
                    .db
                    .write(|tx| files::mark_thumbs_failed(tx, w.id, &levels))
                {
                    log::warn!("thumbnail pre-render: cannot record a failure: {e}");
                }
                Err(())
            }
        }
    }
}

/// Records as failed the thumbnails whose render the last run did not
/// survive (see `journal.rs`), so that no original crashes the server in a
/// loop; returns how many originals. Call at start, before renders and
/// scans. Blocking.
pub(crate) fn record_interrupted(db: &Db, cache: &ThumbCache) -> usize {
    let found = match cache.take_interrupted() {
        Ok(found) => found,
        Err(e) => {
            log::warn!(
                "thumbnail journal unreadable ({e}); renders interrupted by a crash are not known"
            );
            return 0;
        }
    };
    for i in &found {
        let id = FileId(i.file_id);
        let path = db
            .read(|c| files::by_id(c, id))
            .ok()
            .flatten()
            .map(|r| r.path)
            .unwrap_or_default();
        log::warn!(
            file_id = i.file_id;
            "the thumbnail render of {path} was cut short by the server's end (out of memory, \
             killed, crashed); its thumbnails are recorded as failed and not tried again until \
             the file changes"
        );
        if let Err(e) = db.write(|tx| files::mark_thumbs_failed(tx, id, &i.levels)) {
            log::warn!(
                "cannot record the failed thumbnails of file {}: {e}",
                i.file_id
            );
        }
    }
    found.len()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Puts the calling thread (Linux: nice is per thread) at the lowest CPU
/// priority; ffmpeg children it starts inherit it.
fn lower_priority() {
    if let Err(e) = rustix::process::setpriority_process(None, WORKER_NICE) {
        log::debug!("thumbnail pre-render thread keeps its priority: {e}");
    }
}

/// Default number of worker threads: one per core but one, at least one.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Nice values of this process's pre-render threads, read from /proc.
    fn worker_nices() -> Vec<i64> {
        let mut out = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if !comm.starts_with("isync-prerende") {
                continue;
            }
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // Field 19 (nice), counted after the parenthesised name (field 2).
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            if let Some(nice) = after.split_whitespace().nth(16) {
                out.push(nice.parse().unwrap());
            }
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn workers_run_at_the_lowest_priority_and_stop_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let cache = Arc::new(ThumbCache::new(
            dir.path().join("thumbs"),
            1,
            crate::media::budget::DEFAULT_BUDGET_BYTES,
        ));
        let (token, tracker) = (CancellationToken::new(), TaskTracker::new());
        let worker = Prerender::start(db, Arc::clone(&cache), 2, &token, &tracker);
        tracker.close();
        // The app holds the worker's handle; the cache holds none.
        let shared = Arc::downgrade(&worker.shared);
        assert!(!worker.status().busy);
        worker.request_sweep(0);
        let w = worker.clone();
        let status = tokio::task::spawn_blocking(move || w.wait_idle(Duration::from_secs(20)))
            .await
            .unwrap();
        assert_eq!(
            (status.sweeps, status.visited, status.busy),
            (1, 0, false),
            "an empty library: one sweep, nothing to do"
        );
        // Both threads started, at nice 19 (threads of other tests aside).
        // A thread names itself and sets its nice when it first runs: on a
        // loaded machine the idle one may not have run yet.
        let mut nices = worker_nices();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while (nices.len() < 2 || nices.iter().any(|n| *n != 19))
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
            nices = worker_nices();
        }
        assert!(
            nices.len() >= 2 && nices.iter().all(|n| *n == 19),
            "{nices:?}"
        );
        token.cancel();
        tokio::time::timeout(Duration::from_secs(5), tracker.wait())
            .await
            .expect("workers stop promptly on shutdown");
        // The stop waits for the threads only up to STOP_WAIT; at nice 19
        // on a loaded machine even idle ones may take longer to be
        // scheduled and exit, but exit they must.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !worker_nices().is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(worker_nices().is_empty(), "threads ended");
        drop(worker);
        assert!(shared.upgrade().is_none(), "nothing holds the worker now");
    }
}
