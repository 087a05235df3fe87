//! The scanner: walks a library (whole, a sub-tree, or the set of folders
//! the watcher names), recognises renamed or moved folders and files by
//! inode (keeping every id), probes new or changed files in parallel and
//! writes the differences in batched transactions. A rescan touches only what
//! changed (size/mtime), removes records of files that are really gone —
//! never under an offline root, and never more than the mass-deletion guard
//! allows without confirmation.
//!
//! One library's scan is load (its records) → walk (the disk) → diff (a
//! pure plan, in `diff`) → guard (the mass-deletion thresholds, also in
//! `diff`) → apply (the writes, SQL in `db`).

use super::diff::{self, folder_name, parent_key, Plan, SeenDir, SeenEntry, WalkSeen};
use super::live;
use super::roots::{self, check_root, earliest_time, path_key, set_online, LibraryPlan, Offline};
use super::walk::{SeenFile, Walk};
use crate::config::ScanConfig;
use crate::db::{self, catalogs, files, libraries, Db, DbError};
use crate::media::probe;
use crate::model::{CatalogId, FileId, FileType, Library, LibraryId, MediaInfo};
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Default, Clone)]
pub struct ScanReport {
    pub libraries: usize,
    pub offline: Vec<String>,
    pub files_seen: usize,
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
    /// Files renamed or moved on disk, recognised by inode (ids kept).
    pub moved: usize,
    pub catalogs_added: usize,
    pub catalogs_removed: usize,
    /// Folders renamed or moved on disk (catalog ids and all below kept).
    pub catalogs_moved: usize,
    /// Removals held back by the mass-deletion guard.
    pub held_back: usize,
    pub skipped: usize,
    pub elapsed: Duration,
    /// Ids whose original changed or went away (their cached thumbnails are
    /// stale).
    pub changed_ids: Vec<FileId>,
}

impl ScanReport {
    fn absorb(&mut self, o: ScanReport) {
        self.libraries += o.libraries;
        self.offline.extend(o.offline);
        self.files_seen += o.files_seen;
        self.added += o.added;
        self.updated += o.updated;
        self.removed += o.removed;
        self.moved += o.moved;
        self.catalogs_added += o.catalogs_added;
        self.catalogs_removed += o.catalogs_removed;
        self.catalogs_moved += o.catalogs_moved;
        self.held_back += o.held_back;
        self.skipped += o.skipped;
        self.changed_ids.extend(o.changed_ids);
    }

    pub(crate) fn files_per_sec(&self) -> f64 {
        self.files_seen as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Whether the scan changed any record.
    pub fn changed_anything(&self) -> bool {
        self.added
            + self.updated
            + self.removed
            + self.moved
            + self.catalogs_added
            + self.catalogs_removed
            + self.catalogs_moved
            > 0
    }
}

impl std::fmt::Display for ScanReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} libraries ({} offline), {} files seen: {} added, {} updated, {} removed, \
             {} moved; catalogs {} added, {} removed, {} moved; {} skipped; {:.3} s, {:.0} files/s",
            self.libraries,
            self.offline.len(),
            self.files_seen,
            self.added,
            self.updated,
            self.removed,
            self.moved,
            self.catalogs_added,
            self.catalogs_removed,
            self.catalogs_moved,
            self.skipped,
            self.elapsed.as_secs_f64(),
            self.files_per_sec()
        )?;
        if self.held_back > 0 {
            write!(
                f,
                "; {} removals held back (confirm with `isync scan --confirm-deletions`)",
                self.held_back
            )?;
        }
        Ok(())
    }
}

/// How a scan may act.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ScanOptions {
    /// Apply removals the mass-deletion guard would hold back, and adopt a
    /// root whose identity marker is missing or different.
    pub confirm_deletions: bool,
}

/// A probed file and the id it updates (`None` = new), or nothing when it
/// could not be read.
type Probed = Option<(Option<FileId>, files::ScannedFile)>;

/// What one library scan looks at.
enum Scope<'a> {
    Whole,
    Subtree(&'a Path),
    /// These folders, not recursively (new sub-folders whole); files in
    /// `busy` are still being written and are left alone.
    Dirs {
        dirs: &'a [PathBuf],
        busy: &'a HashSet<PathBuf>,
    },
}

/// Scans with a configuration; one scanner per process (scans serialise on
/// its lock so a rescan never races another, nor the watcher's ingest).
pub struct Scanner {
    db: Db,
    cfg: ScanConfig,
    lock: Mutex<()>,
    /// Held-back removal counts already logged, per library (log once).
    guard_logged: Mutex<HashMap<LibraryId, usize>>,
    /// Told the start time (unix s) of each finished library scan: the
    /// thumbnail pre-render worker sweeps what changed (see `after_scan`).
    after_scan: std::sync::OnceLock<Box<dyn Fn(i64) + Send + Sync>>,
    /// Called before an online library is walked (see `before_walk`).
    before_walk: std::sync::OnceLock<BeforeWalk>,
    /// Free bytes the database's disk keeps (`storage.data_min_free_bytes`,
    /// see [`Scanner::keep_free`]); 0 = none.
    data_reserve: std::sync::atomic::AtomicU64,
}

/// A file's mtime in nanoseconds, as recorded in `files.mtime_ns`.
pub(crate) fn mtime_ns(m: &std::fs::Metadata) -> i64 {
    m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec()
}

fn ext_of(name: &str) -> String {
    Path::new(name)
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default()
}

/// One lock per library (per database: tests run several servers in one
/// process) between the scanner and uploads that move an original into or
/// out of a catalog folder (completing, or re-uploading a completed one).
/// An upload holds it across its rename and database write; a scan holds it
/// while it reads the records and walks the disk, and again while it writes,
/// so it never sees one half of such a move (a file on disk with no record
/// yet, or a record whose file just left for staging) and never takes an
/// upload's file for a new one or an upload's record for a deleted file.
/// Probing (the slow part) runs without it.
pub(crate) fn library_lock(db: &Db, library: &str) -> Arc<Mutex<()>> {
    db.locks().library(library)
}

/// Takes a [`library_lock`].
pub(crate) fn hold(lock: &Mutex<()>) -> std::sync::MutexGuard<'_, ()> {
    lock.lock().unwrap_or_else(|p| p.into_inner())
}

/// See [`Scanner::before_walk`].
type BeforeWalk = Box<dyn Fn(&Library) + Send + Sync>;

/// What the database knows of a library when its scan starts.
struct Known {
    lib: Library,
    marker: Option<String>,
    folders: Vec<catalogs::KnownFolder>,
    files: Vec<files::KnownFile>,
}

/// What applying a plan writes against.
struct Ctx<'a> {
    lib: &'a Library,
    root_id: CatalogId,
    /// The time the scan's writes are stamped with.
    now: i64,
    known: &'a Known,
    walk: &'a Walk,
}

/// Reads the disk for `scope` of the library rooted at `root`, whose known
/// folders are `folders`. Blocking.
fn walk_scope(
    root: &Path,
    folders: &[catalogs::KnownFolder],
    scope: &Scope,
    excluded: &[PathBuf],
) -> Result<Walk, DbError> {
    let known: HashSet<&str> = folders.iter().map(|f| f.path.as_str()).collect();
    let is_known = |p: &Path| known.contains(path_key(p).as_str());
    let mut w = Walk::default();
    match scope {
        Scope::Whole => w.walk_tree(root, excluded),
        Scope::Subtree(top) => {
            if !is_known(top) {
                return Err(DbError::Open {
                    path: top.display().to_string(),
                    msg: "not a known folder of the library; run a full `isync scan` first".into(),
                });
            }
            w.walk_tree(top, excluded);
        }
        Scope::Dirs { dirs, .. } => {
            // A folder the database does not know yet is seen (and walked
            // whole) through its nearest known ancestor, unless it vanished
            // (then its record, if any, is gone or moved).
            let mut inside: Vec<PathBuf> = dirs
                .iter()
                .filter(|d| d.starts_with(root))
                .filter(|d| !excluded.iter().any(|x| d.starts_with(x)))
                .map(|d| {
                    d.ancestors()
                        .take_while(|a| a.starts_with(root))
                        .find(|a| is_known(a) || !a.exists())
                        .unwrap_or(root)
                        .to_path_buf()
                })
                .collect();
            inside.sort();
            inside.dedup();
            w.list_dirs(&inside, excluded, is_known);
        }
    }
    Ok(w)
}

/// What the diff needs of a walk: path keys, inodes, sizes and mtimes, and
/// which files are `busy` (being written).
fn seen_of<'w>(w: &'w Walk, busy: &HashSet<PathBuf>) -> WalkSeen<'w> {
    let keys = |v: &[PathBuf]| v.iter().map(|p| path_key(p)).collect::<HashSet<String>>();
    WalkSeen {
        dirs: w
            .dirs
            .iter()
            .map(|(p, m)| SeenDir {
                path: path_key(p),
                ino: m.ino(),
                create_time: earliest_time(m),
            })
            .collect(),
        files: w
            .files
            .iter()
            .map(|f| SeenEntry {
                dir: path_key(&f.dir),
                name: &f.name,
                ino: f.meta.ino() as i64,
                size: f.meta.len() as i64,
                mtime_ns: mtime_ns(&f.meta),
                busy: !busy.is_empty() && busy.contains(&f.path()),
            })
            .collect(),
        listed: keys(&w.listed),
        vanished: keys(&w.vanished),
        unreadable: keys(&w.unreadable),
        busy: busy.clone(),
    }
}

impl Scanner {
    pub fn new(db: Db, cfg: ScanConfig) -> Scanner {
        Scanner {
            db,
            cfg,
            lock: Mutex::new(()),
            guard_logged: Mutex::new(HashMap::new()),
            after_scan: std::sync::OnceLock::new(),
            before_walk: std::sync::OnceLock::new(),
            data_reserve: Default::default(),
        }
    }

    /// New files are recorded only while the database's disk (the SD card)
    /// keeps `bytes` free: a batch that finds it below stops the scan with
    /// SQLite's own "full" error (what it would say a little later, with
    /// the card full and everything else failing too), and nothing is
    /// removed on a scan that did not finish.
    pub(crate) fn keep_free(&self, bytes: u64) {
        self.data_reserve
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// `Err` (SQLITE_FULL) when the database's disk is below its reserve.
    fn check_data_reserve(&self, new_rows: usize) -> Result<(), DbError> {
        let reserve = self.data_reserve.load(std::sync::atomic::Ordering::Relaxed);
        let Some(dir) = self.db.path().parent().filter(|_| reserve > 0) else {
            return Ok(());
        };
        let Ok(free) = crate::freespace::free_bytes(dir) else {
            return Ok(());
        };
        let room = crate::freespace::DataRoom { free, reserve };
        match room.note() {
            None => Ok(()),
            Some(note) => Err(DbError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                Some(format!(
                    "{note}: {new_rows} new files not recorded, the scan stopped; free space \
                     in {}, then scan again (`isync scan`)",
                    dir.display()
                )),
            ))),
        }
    }

    /// Registers `f` (quick, non-blocking) to be called after every library
    /// scan, online or not, with the time its writes are stamped from.
    pub(crate) fn after_scan(&self, f: impl Fn(i64) + Send + Sync + 'static) {
        let _ = self.after_scan.set(Box::new(f));
    }

    /// Registers `f` to be called before a library found online is walked,
    /// holding its [`library_lock`] (so `f` must not take it): the upload
    /// moves a crash left while the library was offline are finished there
    /// before the walk could take a moved original for a new file.
    pub(crate) fn before_walk(&self, f: impl Fn(&Library) + Send + Sync + 'static) {
        let _ = self.before_walk.set(Box::new(f));
    }

    fn threads(&self) -> usize {
        if self.cfg.threads > 0 {
            self.cfg.threads
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        }
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Scans every library of `plan`. Blocking.
    pub fn scan_plan(&self, plan: &LibraryPlan) -> Result<ScanReport, DbError> {
        self.scan_plan_with(plan, ScanOptions::default())
    }

    pub(crate) fn scan_plan_with(
        &self,
        plan: &LibraryPlan,
        opts: ScanOptions,
    ) -> Result<ScanReport, DbError> {
        let _guard = self.locked();
        let start = Instant::now();
        let mut total = ScanReport::default();
        for (lib, excluded) in &plan.scan {
            let r = self.scan_library(lib, Scope::Whole, excluded, opts)?;
            total.absorb(r);
        }
        total.elapsed = start.elapsed();
        Ok(total)
    }

    /// Full incremental scan of one library of `plan`. Blocking.
    pub(crate) fn scan_library_id(
        &self,
        plan: &LibraryPlan,
        id: LibraryId,
    ) -> Result<ScanReport, DbError> {
        let _guard = self.locked();
        let start = Instant::now();
        let Some((lib, excluded)) = plan.scan.iter().find(|(l, _)| l.id == id) else {
            return Ok(ScanReport::default());
        };
        let mut r = self.scan_library(lib, Scope::Whole, excluded, ScanOptions::default())?;
        r.elapsed = start.elapsed();
        Ok(r)
    }

    /// The watcher's scan: the folders `dirs` of library `id`, each listed
    /// once (not recursively; sub-folders the database does not know are
    /// walked whole), in one pass so a file or folder moved between two of
    /// them keeps its id. Files in `busy` are being written: neither probed
    /// nor taken for deleted. Blocking.
    pub(crate) fn scan_dirs(
        &self,
        plan: &LibraryPlan,
        id: LibraryId,
        dirs: &[PathBuf],
        busy: &HashSet<PathBuf>,
    ) -> Result<ScanReport, DbError> {
        let _guard = self.locked();
        let start = Instant::now();
        let Some((lib, excluded)) = plan.scan.iter().find(|(l, _)| l.id == id) else {
            return Ok(ScanReport::default());
        };
        let scope = Scope::Dirs { dirs, busy };
        let mut r = self.scan_library(lib, scope, excluded, ScanOptions::default())?;
        r.elapsed = start.elapsed();
        Ok(r)
    }

    /// Incremental scan of one known folder (a catalog's real path) and
    /// everything below it. Blocking.
    pub fn scan_subtree(&self, plan: &LibraryPlan, dir: &Path) -> Result<ScanReport, DbError> {
        self.scan_subtree_with(plan, dir, ScanOptions::default())
    }

    pub(crate) fn scan_subtree_with(
        &self,
        plan: &LibraryPlan,
        dir: &Path,
        opts: ScanOptions,
    ) -> Result<ScanReport, DbError> {
        let _guard = self.locked();
        let start = Instant::now();
        let key = path_key(dir);
        let (lib, excluded) = plan
            .scan
            .iter()
            .filter(|(l, _)| Path::new(&key).starts_with(&l.path))
            .max_by_key(|(l, _)| l.path.len())
            .ok_or_else(|| DbError::Open {
                path: key.clone(),
                msg: "not inside any configured library".into(),
            })?;
        let mut r = self.scan_library(lib, Scope::Subtree(Path::new(&key)), excluded, opts)?;
        r.elapsed = start.elapsed();
        Ok(r)
    }

    /// Logs a held-back removal once per library and count.
    fn log_guard(&self, lib: &Library, held: Option<(usize, &str)>) {
        let mut logged = self.guard_logged.lock().unwrap_or_else(|p| p.into_inner());
        match held {
            Some((n, why)) => {
                if logged.insert(lib.id, n) != Some(n) {
                    log::error!(
                        "library {}: not removing anything: {why}. A disk failing or a folder \
                         unmounted looks like this. If the files really are gone, apply the \
                         removals with `isync scan --confirm-deletions`; records are kept until \
                         then (additions and moves still apply)",
                        lib.path
                    );
                }
            }
            None => {
                if logged.remove(&lib.id).is_some() {
                    log::info!("library {}: no removals held back any more", lib.path);
                }
            }
        }
    }

    /// Scans one library: load → walk → diff → guard → apply.
    fn scan_library(
        &self,
        planned: &Library,
        scope: Scope,
        excluded: &[PathBuf],
        opts: ScanOptions,
    ) -> Result<ScanReport, DbError> {
        let mut report = ScanReport {
            libraries: 1,
            ..Default::default()
        };
        let transit = library_lock(&self.db, &planned.path);
        let walking = hold(&transit);
        let known = self.load(planned)?;
        let lib = &known.lib;
        let Some(root_id) = lib.root_id else {
            // Its root catalog was deleted through the API a moment ago and
            // is not re-created yet: nothing to file records under.
            log::debug!("library {}: no root catalog; not scanned", lib.path);
            return Ok(report);
        };
        let Some((dev, marker)) = self.check_online(&known, opts)? else {
            report.offline.push(lib.path.clone());
            self.scanned(db::now());
            return Ok(report);
        };
        if let Some(f) = self.before_walk.get() {
            f(lib);
        }

        let root = Path::new(&lib.path);
        let no_busy = HashSet::new();
        let (busy, dirs_only) = match &scope {
            Scope::Dirs { busy, .. } => (*busy, true),
            _ => (&no_busy, false),
        };
        let w = walk_scope(root, &known.folders, &scope, excluded)?;
        report.skipped += w.skipped;
        let now = db::now();
        let seen = seen_of(&w, busy);
        let mut plan = diff::diff(&known.folders, &known.files, &path_key(root), &seen);
        report.files_seen += plan.files_seen;
        drop(seen);

        // The mass-deletion guard.
        let held = if opts.confirm_deletions {
            None
        } else {
            diff::guard(&self.cfg, &mut plan, known.files.len())
        };
        self.log_guard(lib, held.as_deref().map(|why| (plan.held_back, why)));

        let cx = Ctx {
            lib,
            root_id,
            now,
            known: &known,
            walk: &w,
        };
        let _writing = self.apply(&cx, plan, &transit, walking, &mut report)?;
        self.finish(&cx, marker.is_none(), dev, dirs_only, &report)?;
        self.scanned(now);
        Ok(report)
    }

    /// The library's records. The plan's copy of the library is from
    /// startup: online state and device come fresh.
    fn load(&self, planned: &Library) -> Result<Known, DbError> {
        let lib_id = planned.id;
        let (lib, marker, folders, files) = self.db.read(|c| {
            Ok((
                libraries::by_id(c, lib_id)?.unwrap_or_else(|| planned.clone()),
                libraries::marker(c, lib_id)?,
                catalogs::folders_of_library(c, lib_id)?,
                files::known_in_library(c, lib_id)?,
            ))
        })?;
        Ok(Known {
            lib,
            marker,
            folders,
            files,
        })
    }

    /// Checks the library's root (see [`check_root`]) and records whether it
    /// is online. When it is: its device, and the identity marker the scan
    /// goes on with (none when a confirmed scan adopts the folder as it is).
    fn check_online(
        &self,
        known: &Known,
        opts: ScanOptions,
    ) -> Result<Option<(i64, Option<String>)>, DbError> {
        let lib = &known.lib;
        let mut marker = known.marker.clone();
        let mut state = check_root(lib, marker.as_deref(), known.files.len());
        if let (Err(why), true) = (&state, opts.confirm_deletions) {
            if !matches!(why, Offline::Missing(_) | Offline::NotADirectory) {
                // The operator confirmed: this tree is the library now.
                log::warn!("library {}: adopting the folder as it is ({why})", lib.path);
                marker = None;
                state = std::fs::metadata(Path::new(&lib.path))
                    .map(|m| m.dev() as i64)
                    .map_err(|e| Offline::Missing(e.to_string()));
            }
        }
        set_online(&self.db, lib, &state)?;
        Ok(state.ok().map(|dev| (dev, marker)))
    }

    /// Writes `plan`: folder moves and new folders, learned folder inodes,
    /// moved files, then (probed without the library lock, which is taken
    /// again after) new and changed files, then removals. Returns the lock.
    fn apply<'l>(
        &self,
        cx: &Ctx,
        mut plan: Plan,
        transit: &'l Mutex<()>,
        walking: std::sync::MutexGuard<'l, ()>,
        report: &mut ScanReport,
    ) -> Result<std::sync::MutexGuard<'l, ()>, DbError> {
        let mut cats = std::mem::take(&mut plan.catalogs);
        self.apply_folders(cx, &plan, &mut cats, report)?;

        // Files moved on disk: same id, memo, help info, share links.
        for chunk in plan.moved_files.chunks(self.cfg.batch_size.max(1)) {
            self.db.write(|tx| {
                for &(k, s) in chunk {
                    let f = &cx.walk.files[s];
                    if let Some(&cat) = cats.get(&path_key(&f.dir)) {
                        let k = &cx.known.files[k];
                        files::moved(tx, k, cat, cx.root_id, &f.name, cx.now)?;
                    }
                }
                Ok(())
            })?;
        }
        report.moved = plan.moved_files.len();

        // Probe new and changed files; write in batches.
        let ids = plan.changed.iter().map(|(id, s)| (Some(*id), *s));
        let to_probe: Vec<(Option<FileId>, CatalogId, &SeenFile)> = ids
            .chain(plan.fresh.iter().map(|s| (None, *s)))
            .filter_map(|(id, s)| {
                let f = &cx.walk.files[s];
                let cat = *cats.get(&path_key(&f.dir))?;
                Some((id, cat, f))
            })
            .collect();
        let backfill = backfill_items(cx, &plan, &cats);
        drop(walking);
        let probed = self.probe_all(&to_probe, cx.root_id);
        let backfill_probed = self.probe_all(&backfill, cx.root_id);
        let writing = hold(transit);
        let mut batch: Vec<(Option<FileId>, files::ScannedFile)> = Vec::new();
        for item in probed.into_iter().flatten() {
            batch.push(item);
            if batch.len() >= self.cfg.batch_size {
                self.write_batch(&mut batch, report, cx.now)?;
            }
        }
        self.write_batch(&mut batch, report, cx.now)?;
        report.skipped += to_probe.len().saturating_sub(report.added + report.updated);
        self.write_content_ids(&backfill, &backfill_probed)?;

        // Removals (none when the guard held them back).
        report.held_back = plan.held_back;
        if !plan.gone_files.is_empty() || !plan.gone_catalogs.is_empty() {
            self.db.write(|tx| {
                for id in &plan.gone_files {
                    files::delete(tx, *id)?;
                }
                for id in &plan.gone_catalogs {
                    catalogs::delete_gone(tx, *id, cx.root_id)?;
                }
                Ok(())
            })?;
            report.removed += plan.gone_files.len();
            report.catalogs_removed += plan.gone_catalogs.len();
        }

        // Live Photos of every folder a file came to, changed in or left.
        let mut touched: Vec<CatalogId> = to_probe.iter().map(|(_, cat, _)| *cat).collect();
        touched.extend(backfill.iter().map(|(_, cat, _)| *cat));
        for &(k, s) in &plan.moved_files {
            touched.push(cx.known.files[k].real_catalog_id);
            touched.extend(cats.get(&path_key(&cx.walk.files[s].dir)).copied());
        }
        if !plan.gone_files.is_empty() {
            let gone: HashSet<FileId> = plan.gone_files.iter().copied().collect();
            let left = cx.known.files.iter().filter(|k| gone.contains(&k.id));
            touched.extend(left.map(|k| k.real_catalog_id));
        }
        touched.sort_unstable();
        touched.dedup();
        if !touched.is_empty() {
            self.db.write(|tx| live::pair_folders(tx, &touched))?;
        }
        report.changed_ids.extend(plan.gone_files);
        Ok(writing)
    }

    /// Records the content identifier of unchanged files recorded before
    /// Live Photos were known (`Plan::backfill`), probed again (headers
    /// only, as any probe, without the library lock): only `content_id` is
    /// written — empty when the probe found none or failed, so each file is
    /// probed once.
    fn write_content_ids(
        &self,
        items: &[(Option<FileId>, CatalogId, &SeenFile)],
        probed: &[Probed],
    ) -> Result<(), DbError> {
        let pairs: Vec<_> = items.iter().zip(probed).collect();
        for chunk in pairs.chunks(self.cfg.batch_size.max(1)) {
            self.db.write(|tx| {
                for ((id, _, _), p) in chunk {
                    let cid = p
                        .as_ref()
                        .and_then(|(_, sf)| sf.info.content_id.as_deref())
                        .unwrap_or("");
                    files::set_content_id(tx, id.expect("backfill ids are known"), cid)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Folder moves and new folders, in one transaction (`cats` gains the
    /// new folders); then the inodes of folders recorded without one.
    fn apply_folders(
        &self,
        cx: &Ctx,
        plan: &Plan,
        cats: &mut HashMap<String, CatalogId>,
        report: &mut ScanReport,
    ) -> Result<(), DbError> {
        let (moves, root_id, now) = (&plan.folder_moves, cx.root_id, cx.now);
        if !moves.is_empty() || !plan.new_dirs.is_empty() {
            let added = self.db.write(|tx| {
                for m in moves {
                    catalogs::move_tree(tx, m.id, &m.old, &m.new)?;
                }
                let mut added: Vec<(String, CatalogId)> = Vec::new();
                let lookup = |added: &[(String, CatalogId)], k: &str| {
                    cats.get(k)
                        .copied()
                        .or_else(|| added.iter().find(|(p, _)| p == k).map(|(_, id)| *id))
                };
                for d in &plan.new_dirs {
                    let p = d.path.as_str();
                    let parent = lookup(&added, parent_key(p)).unwrap_or(root_id);
                    // An API call may have recorded the folder meanwhile.
                    let id = match catalogs::by_path(tx, p)? {
                        Some(c) => c.id,
                        None => catalogs::insert(
                            tx,
                            &catalogs::NewCatalog {
                                root_id: Some(root_id),
                                parent_id: Some(parent),
                                library_id: cx.lib.id,
                                path: p,
                                name: folder_name(p),
                                create_time: d.create_time,
                                now,
                            },
                        )?,
                    };
                    catalogs::set_inode(tx, id, d.ino as i64)?;
                    added.push((d.path.clone(), id));
                }
                for m in moves {
                    let parent = lookup(&added, parent_key(&m.new)).unwrap_or(root_id);
                    let name = m.rename.then(|| folder_name(&m.new));
                    catalogs::set_parent_and_name(tx, m.id, parent, name, now)?;
                }
                Ok(added)
            })?;
            report.catalogs_added = added.len();
            report.catalogs_moved = moves.len();
            cats.extend(added);
        }
        if !plan.learn_inodes.is_empty() {
            self.db.write(|tx| {
                for (id, ino) in &plan.learn_inodes {
                    catalogs::set_inode(tx, *id, *ino)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Identity and scan state: records the device and writes the marker
    /// once the library has files (an empty mount point is never "the"
    /// disk); stamps the scan.
    fn finish(
        &self,
        cx: &Ctx,
        no_marker: bool,
        dev: i64,
        dirs_only: bool,
        report: &ScanReport,
    ) -> Result<(), DbError> {
        let lib = cx.lib;
        let has_files = !cx.known.files.is_empty() || report.added > 0;
        if no_marker && has_files {
            match roots::ensure_marker(Path::new(&lib.path)) {
                Ok(m) => {
                    self.db.write(|tx| libraries::set_marker(tx, lib.id, &m))?;
                }
                Err(e) => log::debug!(
                    "library {}: cannot write {} ({e}); identifying it by device",
                    lib.path,
                    roots::MARKER_FILE
                ),
            }
        }
        self.db.write(|tx| {
            if has_files {
                libraries::set_online(tx, lib.id, true, Some(dev))?;
            }
            // A folder-set scan sees only part of the library: it can
            // report held removals, and a full scan clears them.
            if report.held_back > 0 || !dirs_only {
                libraries::set_held_deletions(tx, lib.id, report.held_back)?;
            }
            libraries::set_scanned(tx, lib.id, cx.now)
        })
    }

    fn scanned(&self, started: i64) {
        // The probe threads' reads and the batches are freed by now; glibc
        // would keep them in the threads' arenas (docs/performance.md,
        // "Memory").
        crate::heap::release_free_memory();
        if let Some(f) = self.after_scan.get() {
            f(started);
        }
    }

    /// Probes files on `threads()` workers. Unreadable files are logged and
    /// left out.
    fn probe_all(
        &self,
        items: &[(Option<FileId>, CatalogId, &SeenFile)],
        root_id: CatalogId,
    ) -> Vec<Probed> {
        let next = AtomicUsize::new(0);
        let results: Vec<Mutex<Probed>> = items.iter().map(|_| Mutex::new(None)).collect();
        let workers = self.threads().min(items.len().max(1));
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((id, cat, f)) = items.get(i) else {
                        break;
                    };
                    let r = probe_one(f, *cat, root_id);
                    *results[i].lock().unwrap_or_else(|p| p.into_inner()) = r.map(|sf| (*id, sf));
                });
            }
        });
        results
            .into_iter()
            .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
            .collect()
    }

    fn write_batch(
        &self,
        batch: &mut Vec<(Option<FileId>, files::ScannedFile)>,
        report: &mut ScanReport,
        now: i64,
    ) -> Result<(), DbError> {
        if batch.is_empty() {
            return Ok(());
        }
        let new_rows = batch.iter().filter(|(id, _)| id.is_none()).count();
        if new_rows > 0 {
            self.check_data_reserve(new_rows)?;
        }
        let (added, updated) = self.db.write(|tx| {
            let (mut a, mut u) = (0, Vec::new());
            for (id, f) in batch.iter() {
                match id {
                    Some(id) => {
                        files::update_scanned(tx, *id, f, now)?;
                        u.push(*id);
                    }
                    None => {
                        if files::insert_scanned_if_new(tx, f, now)?.is_some() {
                            a += 1;
                        }
                    }
                }
            }
            Ok((a, u))
        })?;
        report.added += added;
        report.updated += updated.len();
        report.changed_ids.extend(updated);
        batch.clear();
        Ok(())
    }
}

/// `Plan::backfill` as probe items: (id, folder, the file seen).
fn backfill_items<'w>(
    cx: &'w Ctx,
    plan: &Plan,
    cats: &HashMap<String, CatalogId>,
) -> Vec<(Option<FileId>, CatalogId, &'w SeenFile)> {
    plan.backfill
        .iter()
        .filter_map(|&(id, s)| {
            let f = &cx.walk.files[s];
            Some((Some(id), *cats.get(&path_key(&f.dir))?, f))
        })
        .collect()
}

fn probe_one(f: &SeenFile, cat: CatalogId, root_id: CatalogId) -> Option<files::ScannedFile> {
    let path = f.dir.join(&f.name);
    let guess = probe::classify_by_name(&path);
    let seen = {
        use std::os::unix::fs::MetadataExt;
        (f.meta.dev(), f.meta.ino())
    };
    let (file_type, info) = if guess == FileType::Other {
        // Not probed, but it must be readable to be listed: a record of a
        // file nobody can download is worse than none (README "Scanning").
        // Opened as a probe opens (no symlink followed, no wait on a FIFO,
        // the file the walk saw).
        if let Err(e) = probe::open_checked(&path, Some(seen)) {
            log::warn!("scan: {e}; skipped");
            return None;
        }
        (FileType::Other, MediaInfo::default())
    } else {
        match probe::probe_expecting(&path, guess, Some(seen)) {
            Ok(r) => r,
            Err(probe::ProbeError::Io { source, .. }) => {
                log::warn!("scan: skipping unreadable {}: {source}", path.display());
                return None;
            }
            Err(e) => {
                // Keep a damaged file visible (it can still be downloaded).
                log::warn!("scan: {e}");
                (guess, MediaInfo::default())
            }
        }
    };
    let create_time = info.capture_time.unwrap_or_else(|| earliest_time(&f.meta));
    Some(files::ScannedFile {
        catalog_id: cat,
        root_id,
        disk_name: f.name.clone(),
        ext: ext_of(&f.name),
        size: f.meta.len() as i64,
        mtime_ns: mtime_ns(&f.meta),
        inode: f.meta.ino() as i64,
        create_time,
        file_type: file_type.bits(),
        info,
    })
}

/// Syncs the configured libraries and scans them all. Blocking.
pub(crate) fn scan_libraries(
    db: &Db,
    cfg: &crate::config::Config,
    scanner: &Scanner,
) -> Result<ScanReport, DbError> {
    let plan = roots::sync_libraries(db, cfg)?;
    scanner.scan_plan(&plan)
}
