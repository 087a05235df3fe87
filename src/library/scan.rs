//! The scanner: walks a library (whole, a sub-tree, or the set of folders
//! the watcher names), recognises renamed or moved folders and files by
//! inode (keeping every id), probes new or changed files in parallel and
//! writes the differences in batched transactions. A rescan touches only what
//! changed (size/mtime), removes records of files that are really gone —
//! never under an offline root, and never more than the mass-deletion guard
//! allows without confirmation.

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

/// Below this many removals the share rule of the mass-deletion guard does
/// not apply: deleting 3 of a new library's 4 photos is not a failing disk.
pub const GUARD_MIN_FILES: usize = 10;

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

    pub fn files_per_sec(&self) -> f64 {
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
pub struct ScanOptions {
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

enum ScopeKind {
    Tree,
    Dirs,
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
}

/// A file's mtime in nanoseconds, as recorded in `files.mtime_ns`.
pub fn mtime_ns(m: &std::fs::Metadata) -> i64 {
    m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec()
}

fn ext_of(name: &str) -> String {
    Path::new(name)
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default()
}

fn parent_key(p: &str) -> &str {
    p.rfind('/')
        .map(|i| if i == 0 { "/" } else { &p[..i] })
        .unwrap_or("")
}

fn folder_name(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// `p` is `prefix` or lies below it.
fn within(p: &str, prefix: &str) -> bool {
    p == prefix || (p.starts_with(prefix) && p.as_bytes().get(prefix.len()) == Some(&b'/'))
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
pub fn library_lock(db: &Db, library: &str) -> Arc<Mutex<()>> {
    db.locks().library(library)
}

/// Takes a [`library_lock`].
pub fn hold(lock: &Mutex<()>) -> std::sync::MutexGuard<'_, ()> {
    lock.lock().unwrap_or_else(|p| p.into_inner())
}

/// See [`Scanner::before_walk`].
type BeforeWalk = Box<dyn Fn(&Library) + Send + Sync>;

/// A known folder that is gone from where it was.
struct GoneFolders {
    /// Every gone catalog (tops and all below), shallowest first.
    all: Vec<(String, CatalogId)>,
}

/// Gone catalogs: known folders directly inside a listed folder that were
/// not seen, vanished folders, and everything below them.
fn gone_folders(
    cat_by_path: &HashMap<String, CatalogId>,
    root: &str,
    listed: &HashSet<String>,
    seen: &HashSet<String>,
    vanished: &HashSet<String>,
) -> GoneFolders {
    let mut tops: Vec<&str> = cat_by_path
        .keys()
        .filter(|p| p.as_str() != root)
        .filter(|p| vanished.contains(*p) || (listed.contains(parent_key(p)) && !seen.contains(*p)))
        .map(String::as_str)
        .collect();
    tops.sort_by_key(|p| p.len());
    let mut all: Vec<(String, CatalogId)> = cat_by_path
        .iter()
        .filter(|(p, _)| tops.iter().any(|t| within(p, t)))
        .map(|(p, id)| (p.clone(), *id))
        .collect();
    all.sort_by_key(|(p, _)| p.len());
    GoneFolders { all }
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
        }
    }

    /// Registers `f` (quick, non-blocking) to be called after every library
    /// scan, online or not, with the time its writes are stamped from.
    pub fn after_scan(&self, f: impl Fn(i64) + Send + Sync + 'static) {
        let _ = self.after_scan.set(Box::new(f));
    }

    /// Registers `f` to be called before a library found online is walked,
    /// holding its [`library_lock`] (so `f` must not take it): the upload
    /// moves a crash left while the library was offline are finished there
    /// before the walk could take a moved original for a new file.
    pub fn before_walk(&self, f: impl Fn(&Library) + Send + Sync + 'static) {
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

    pub fn scan_plan_with(
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
    pub fn scan_library_id(
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
    pub fn scan_dirs(
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

    pub fn scan_subtree_with(
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

    /// Whether removing `gone` of `known` files needs confirmation; the
    /// reason when it does.
    fn guard(&self, gone: usize, known: usize) -> Option<String> {
        if gone > self.cfg.max_delete_count {
            return Some(format!(
                "{gone} files would be removed, more than scan.max_delete_count = {}",
                self.cfg.max_delete_count
            ));
        }
        let share = gone as f64 / known.max(1) as f64;
        (gone >= GUARD_MIN_FILES && share > self.cfg.max_delete_share).then(|| {
            format!(
                "{gone} of {known} files ({:.0}%) would be removed, more than \
                 scan.max_delete_share = {}",
                share * 100.0,
                self.cfg.max_delete_share
            )
        })
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
        let lib_id = planned.id;
        let transit = library_lock(&self.db, &planned.path);
        let walking = hold(&transit);
        // The plan's copy is from startup: online state and device come fresh.
        let (lib, marker, folders, known_files) = self.db.read(|c| {
            Ok((
                libraries::by_id(c, lib_id)?.unwrap_or_else(|| planned.clone()),
                libraries::marker(c, lib_id)?,
                catalogs::folders_of_library(c, lib_id)?,
                files::known_in_library(c, lib_id)?,
            ))
        })?;
        let Some(root_id) = lib.root_id else {
            // Its root catalog was deleted through the API a moment ago and
            // is not re-created yet: nothing to file records under.
            log::debug!("library {}: no root catalog; not scanned", lib.path);
            return Ok(report);
        };
        let root = Path::new(&lib.path);
        let root_key = path_key(root);
        let mut marker = marker;
        let mut state = check_root(&lib, marker.as_deref(), known_files.len());
        if let (Err(why), true) = (&state, opts.confirm_deletions) {
            if !matches!(why, Offline::Missing(_) | Offline::NotADirectory) {
                // The operator confirmed: this tree is the library now.
                log::warn!("library {}: adopting the folder as it is ({why})", lib.path);
                marker = None;
                state = std::fs::metadata(root)
                    .map(|m| m.dev() as i64)
                    .map_err(|e| Offline::Missing(e.to_string()));
            }
        }
        set_online(&self.db, &lib, &state)?;
        let dev = match state {
            Ok(dev) => dev,
            Err(_) => {
                report.offline.push(lib.path.clone());
                self.scanned(db::now());
                return Ok(report);
            }
        };
        if let Some(f) = self.before_walk.get() {
            f(&lib);
        }

        let mut cat_by_path: HashMap<String, CatalogId> =
            folders.iter().map(|f| (f.path.clone(), f.id)).collect();
        let scope_kind = match scope {
            Scope::Dirs { .. } => ScopeKind::Dirs,
            _ => ScopeKind::Tree,
        };
        let no_busy = HashSet::new();
        let mut w = Walk::default();
        let busy = match scope {
            Scope::Whole => {
                w.walk_tree(root, excluded);
                &no_busy
            }
            Scope::Subtree(top) => {
                if !cat_by_path.contains_key(&path_key(top)) {
                    return Err(DbError::Open {
                        path: top.display().to_string(),
                        msg: "not a known folder of the library; run a full `isync scan` first"
                            .into(),
                    });
                }
                w.walk_tree(top, excluded);
                &no_busy
            }
            Scope::Dirs { dirs, busy } => {
                // A folder the database does not know yet is seen (and
                // walked whole) through its nearest known ancestor, unless
                // it vanished (then its record, if any, is gone or moved).
                let mut inside: Vec<PathBuf> = dirs
                    .iter()
                    .filter(|d| d.starts_with(root))
                    .filter(|d| !excluded.iter().any(|x| d.starts_with(x)))
                    .map(|d| {
                        d.ancestors()
                            .take_while(|a| a.starts_with(root))
                            .find(|a| cat_by_path.contains_key(&path_key(a)) || !a.exists())
                            .unwrap_or(root)
                            .to_path_buf()
                    })
                    .collect();
                inside.sort();
                inside.dedup();
                w.list_dirs(&inside, excluded, |p| {
                    cat_by_path.contains_key(&path_key(p))
                });
                busy
            }
        };
        report.skipped += w.skipped;
        let now = db::now();
        let listed: HashSet<String> = w.listed.iter().map(|p| path_key(p)).collect();
        let vanished: HashSet<String> = w.vanished.iter().map(|p| path_key(p)).collect();
        let seen_meta: HashMap<String, &std::fs::Metadata> =
            w.dirs.iter().map(|(p, m)| (path_key(p), m)).collect();
        let seen: HashSet<String> = seen_meta.keys().cloned().collect();

        // 1. Folders renamed or moved: a gone catalog whose inode turns up
        // as a new folder keeps its id; everything below moves with it.
        let gone = gone_folders(&cat_by_path, &root_key, &listed, &seen, &vanished);
        let mut new_by_inode: HashMap<u64, String> = seen_meta
            .iter()
            .filter(|(p, _)| !cat_by_path.contains_key(*p))
            .map(|(p, m)| (m.ino(), p.clone()))
            .collect();
        let inode_of: HashMap<CatalogId, i64> = folders
            .iter()
            .filter_map(|f| f.inode.map(|i| (f.id, i)))
            .collect();
        let mut moves: Vec<(CatalogId, String, String)> = Vec::new();
        for (old, id) in &gone.all {
            if moves.iter().any(|(_, o, _)| within(old, o)) {
                continue;
            }
            let hit = inode_of
                .get(id)
                .and_then(|i| new_by_inode.remove(&(*i as u64)));
            if let Some(new) = hit {
                moves.push((*id, old.clone(), new));
            }
        }
        for (_, old, new) in &moves {
            let renamed: Vec<(String, CatalogId)> = cat_by_path
                .iter()
                .filter(|(p, _)| within(p, old))
                .map(|(p, id)| (format!("{new}{}", &p[old.len()..]), *id))
                .collect();
            cat_by_path.retain(|p, _| !within(p, old));
            cat_by_path.extend(renamed);
        }
        // 2. With the moves applied: what is really gone, what is new.
        let gone = gone_folders(&cat_by_path, &root_key, &listed, &seen, &vanished);
        let gone_ids: HashSet<CatalogId> = gone.all.iter().map(|(_, id)| *id).collect();
        // A new folder that cannot be read costs no catalog either.
        let unreadable: HashSet<String> = w.unreadable.iter().map(|p| path_key(p)).collect();
        let mut new_dirs: Vec<(&String, &std::fs::Metadata)> = seen_meta
            .iter()
            .filter(|(p, _)| !cat_by_path.contains_key(*p) && !unreadable.contains(*p))
            .map(|(p, m)| (p, *m))
            .collect();
        new_dirs.sort_by_key(|(p, _)| p.len());

        // 3. Files: unchanged, changed, new, moved, gone.
        let listed_ids: HashSet<CatalogId> = listed
            .iter()
            .filter_map(|p| cat_by_path.get(p).copied())
            .collect();
        let mut known: HashMap<(CatalogId, &str), &files::KnownFile> = known_files
            .iter()
            .map(|k| ((k.real_catalog_id, k.disk_name.as_str()), k))
            .collect();
        let path_of: HashMap<CatalogId, &str> = cat_by_path
            .iter()
            .map(|(p, id)| (*id, p.as_str()))
            .collect();
        let mut changed: Vec<(FileId, &SeenFile)> = Vec::new();
        let mut fresh: Vec<&SeenFile> = Vec::new();
        for f in &w.files {
            if !busy.is_empty() && busy.contains(&f.path()) {
                if let Some(&cat) = cat_by_path.get(&path_key(&f.dir)) {
                    known.remove(&(cat, f.name.as_str()));
                }
                continue;
            }
            report.files_seen += 1;
            let Some(&cat) = cat_by_path.get(&path_key(&f.dir)) else {
                fresh.push(f);
                continue;
            };
            match known.remove(&(cat, f.name.as_str())) {
                Some(k)
                    if k.size == f.meta.len() as i64 && k.mtime_ns == Some(mtime_ns(&f.meta)) => {}
                Some(k) => changed.push((k.id, f)),
                None => fresh.push(f),
            }
        }
        // Known files not seen where we looked (or under a gone folder).
        let mut gone_files: Vec<&files::KnownFile> = known
            .values()
            .filter(|k| {
                let cat = k.real_catalog_id;
                gone_ids.contains(&cat)
                    || (listed_ids.contains(&cat)
                        && !busy.contains(&Path::new(path_of[&cat]).join(&k.disk_name)))
            })
            .copied()
            .collect();
        gone_files.sort_by_key(|k| k.id.0);
        let mut by_identity: HashMap<(i64, i64, i64), usize> = HashMap::new();
        for (i, k) in gone_files.iter().enumerate() {
            if let (Some(ino), Some(mt)) = (k.inode, k.mtime_ns) {
                by_identity.insert((ino, k.size, mt), i);
            }
        }
        let mut moved_files: Vec<(&files::KnownFile, &SeenFile)> = Vec::new();
        let mut taken: HashSet<usize> = HashSet::new();
        fresh.retain(|f| {
            let key = (f.meta.ino() as i64, f.meta.len() as i64, mtime_ns(&f.meta));
            match by_identity.remove(&key) {
                Some(i) => {
                    moved_files.push((gone_files[i], f));
                    taken.insert(i);
                    false
                }
                None => true,
            }
        });
        let gone_files: Vec<FileId> = gone_files
            .iter()
            .enumerate()
            .filter(|(i, _)| !taken.contains(i))
            .map(|(_, k)| k.id)
            .collect();

        // 4. The mass-deletion guard.
        let held = if opts.confirm_deletions {
            None
        } else {
            self.guard(gone_files.len(), known_files.len())
        };
        self.log_guard(&lib, held.as_deref().map(|why| (gone_files.len(), why)));

        // 5. Folder moves and new folders, in one transaction.
        if !moves.is_empty() || !new_dirs.is_empty() {
            let added = self.db.write(|tx| {
                for (id, old, new) in &moves {
                    catalogs::move_tree(tx, *id, old, new)?;
                }
                let mut added: Vec<(String, CatalogId)> = Vec::new();
                for (p, meta) in &new_dirs {
                    let parent = cat_by_path
                        .get(parent_key(p))
                        .copied()
                        .or_else(|| {
                            added
                                .iter()
                                .find(|(k, _)| k == parent_key(p))
                                .map(|(_, id)| *id)
                        })
                        .unwrap_or(root_id);
                    // An API call may have recorded the folder meanwhile.
                    let id = match catalogs::by_path(tx, p)? {
                        Some(c) => c.id,
                        None => catalogs::insert(
                            tx,
                            &catalogs::NewCatalog {
                                root_id: Some(root_id),
                                parent_id: Some(parent),
                                library_id: lib.id,
                                path: p,
                                name: folder_name(p),
                                create_time: earliest_time(meta),
                                now,
                            },
                        )?,
                    };
                    catalogs::set_inode(tx, id, meta.ino() as i64)?;
                    added.push(((*p).clone(), id));
                }
                let lookup = |k: &str| {
                    cat_by_path
                        .get(k)
                        .copied()
                        .or_else(|| added.iter().find(|(p, _)| p == k).map(|(_, id)| *id))
                };
                for (id, old, new) in &moves {
                    let parent = lookup(parent_key(new)).unwrap_or(root_id);
                    let was_folder_name = folders
                        .iter()
                        .any(|f| f.id == *id && f.name == folder_name(old));
                    let name = was_folder_name.then(|| folder_name(new));
                    catalogs::set_parent_and_name(tx, *id, parent, name, now)?;
                }
                Ok(added)
            })?;
            report.catalogs_added = added.len();
            report.catalogs_moved = moves.len();
            cat_by_path.extend(added);
        }
        // Folders recorded before inodes were (or by the API): learn them.
        let path_now: HashMap<CatalogId, &String> =
            cat_by_path.iter().map(|(p, id)| (*id, p)).collect();
        let learn: Vec<(CatalogId, i64)> = folders
            .iter()
            .filter_map(|f| {
                let m = seen_meta.get(*path_now.get(&f.id)?)?;
                (f.inode != Some(m.ino() as i64)).then_some((f.id, m.ino() as i64))
            })
            .collect();
        if !learn.is_empty() {
            self.db.write(|tx| {
                for (id, ino) in &learn {
                    catalogs::set_inode(tx, *id, *ino)?;
                }
                Ok(())
            })?;
        }

        // 6. Files moved on disk: same id, memo, help info, share links.
        for chunk in moved_files.chunks(self.cfg.batch_size.max(1)) {
            self.db.write(|tx| {
                for (k, f) in chunk {
                    if let Some(&cat) = cat_by_path.get(&path_key(&f.dir)) {
                        files::moved(tx, k, cat, root_id, &f.name, now)?;
                    }
                }
                Ok(())
            })?;
        }
        report.moved = moved_files.len();

        // 7. Probe new and changed files; write in batches.
        let mut to_probe: Vec<(Option<FileId>, CatalogId, &SeenFile)> = Vec::new();
        for (id, f) in &changed {
            if let Some(&cat) = cat_by_path.get(&path_key(&f.dir)) {
                to_probe.push((Some(*id), cat, f));
            }
        }
        for f in &fresh {
            if let Some(&cat) = cat_by_path.get(&path_key(&f.dir)) {
                to_probe.push((None, cat, f));
            }
        }
        drop(walking);
        let probed = self.probe_all(&to_probe, root_id);
        let _writing = hold(&transit);
        let mut batch: Vec<(Option<FileId>, files::ScannedFile)> = Vec::new();
        for item in probed.into_iter().flatten() {
            batch.push(item);
            if batch.len() >= self.cfg.batch_size {
                self.write_batch(&mut batch, &mut report, now)?;
            }
        }
        self.write_batch(&mut batch, &mut report, now)?;
        report.skipped += to_probe.len().saturating_sub(report.added + report.updated);

        // 8. Removals, unless the guard holds them back.
        if held.is_some() {
            report.held_back = gone_files.len();
        } else if !gone_files.is_empty() || !gone.all.is_empty() {
            let gone_cat_ids: Vec<CatalogId> = gone.all.iter().rev().map(|(_, id)| *id).collect();
            self.db.write(|tx| {
                for id in &gone_files {
                    files::delete(tx, *id)?;
                }
                // Deepest first, so children go before their parents.
                for id in &gone_cat_ids {
                    // Files shown here but living elsewhere go back to their
                    // real folder's catalog.
                    tx.execute(
                        "UPDATE files SET catalog_id = real_catalog_id WHERE catalog_id = ?1",
                        [id.0],
                    )?;
                    tx.execute("DELETE FROM files WHERE real_catalog_id = ?1", [id.0])?;
                    tx.execute(
                        "UPDATE catalogs SET parent_id = ?2 WHERE parent_id = ?1",
                        rusqlite::params![id.0, root_id.0],
                    )?;
                    catalogs::delete(tx, *id)?;
                }
                Ok(())
            })?;
            report.removed += gone_files.len();
            report.catalogs_removed += gone_cat_ids.len();
            report.changed_ids.extend(gone_files);
        }

        // 9. Identity: record the device and write the marker once the
        // library has files (an empty mount point is never "the" disk).
        let has_files = !known_files.is_empty() || report.added > 0;
        if marker.is_none() && has_files {
            match roots::ensure_marker(root) {
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
            if report.held_back > 0 || !matches!(scope_kind, ScopeKind::Dirs) {
                libraries::set_held_deletions(tx, lib.id, report.held_back)?;
            }
            libraries::set_scanned(tx, lib.id, now)
        })?;
        self.scanned(now);
        Ok(report)
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
pub fn scan_libraries(
    db: &Db,
    cfg: &crate::config::Config,
    scanner: &Scanner,
) -> Result<ScanReport, DbError> {
    let plan = roots::sync_libraries(db, cfg)?;
    scanner.scan_plan(&plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_helpers() {
        assert_eq!(parent_key("/a/b/c"), "/a/b");
        assert_eq!(parent_key("/a"), "/");
        assert_eq!(folder_name("/a/b/c"), "c");
        assert!(within("/a/b", "/a/b"));
        assert!(within("/a/b/c", "/a/b"));
        assert!(!within("/a/bc", "/a/b"), "a sibling with a common prefix");
        assert!(!within("/a", "/a/b"));
    }

    #[test]
    fn gone_folders_include_everything_below_a_missing_one() {
        let cats: HashMap<String, CatalogId> = [
            ("/r", 1),
            ("/r/a", 2),
            ("/r/a/x", 3),
            ("/r/ab", 4),
            ("/r/b", 5),
        ]
        .into_iter()
        .map(|(p, id)| (p.to_string(), CatalogId(id)))
        .collect();
        let listed: HashSet<String> = ["/r".to_string()].into();
        let seen: HashSet<String> = ["/r/ab".to_string(), "/r/b".to_string()].into();
        let g = gone_folders(&cats, "/r", &listed, &seen, &HashSet::new());
        let ids: Vec<i64> = g.all.iter().map(|(_, id)| id.0).collect();
        assert_eq!(ids, [2, 3], "shallowest first; /r/ab is a sibling, kept");
    }

    #[test]
    fn the_guard_counts_share_and_total() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let s = Scanner::new(
            db,
            ScanConfig {
                max_delete_share: 0.5,
                max_delete_count: 100,
                ..ScanConfig::default()
            },
        );
        assert!(s.guard(0, 0).is_none());
        assert!(
            s.guard(3, 4).is_none(),
            "small deletions never trip the share"
        );
        assert!(s.guard(10, 30).is_none(), "a third");
        assert!(s.guard(16, 30).unwrap().contains("max_delete_share"));
        assert!(s.guard(101, 100_000).unwrap().contains("max_delete_count"));
    }
}
