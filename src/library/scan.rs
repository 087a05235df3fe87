//! The scanner: walks a library, probes new or changed files in parallel and
//! writes the differences in batched transactions. A rescan touches only what
//! changed (size/mtime), keeps ids of unchanged files, and removes records of
//! files that are really gone — never under an offline root.

use super::roots::{self, check_root, earliest_time, path_key, set_online, LibraryPlan};
use crate::config::ScanConfig;
use crate::db::{self, catalogs, files, libraries, Db, DbError};
use crate::media::probe;
use crate::model::{CatalogId, FileId, FileType, Library, MediaInfo};
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
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
        self.skipped += o.skipped;
        self.changed_ids.extend(o.changed_ids);
    }

    pub fn files_per_sec(&self) -> f64 {
        self.files_seen as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for ScanReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} libraries ({} offline), {} files seen: {} added, {} updated, {} removed, \
             {} moved; catalogs {} added, {} removed; {} skipped; {:.3} s, {:.0} files/s",
            self.libraries,
            self.offline.len(),
            self.files_seen,
            self.added,
            self.updated,
            self.removed,
            self.moved,
            self.catalogs_added,
            self.catalogs_removed,
            self.skipped,
            self.elapsed.as_secs_f64(),
            self.files_per_sec()
        )
    }
}

/// Scans with a configuration; one scanner per process (scans serialise on
/// its lock so a rescan never races another).
pub struct Scanner {
    db: Db,
    cfg: ScanConfig,
    lock: Mutex<()>,
}

struct SeenFile {
    dir: PathBuf,
    name: String,
    meta: std::fs::Metadata,
}

struct Walk {
    dirs: Vec<(PathBuf, std::fs::Metadata)>,
    files: Vec<SeenFile>,
    skipped: usize,
}

fn mtime_ns(m: &std::fs::Metadata) -> i64 {
    m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec()
}

fn ext_of(name: &str) -> String {
    Path::new(name)
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default()
}

/// Walks `top` (never following symlinks), skipping dot names and `excluded`
/// sub-trees.
fn walk(top: &Path, excluded: &[PathBuf]) -> Walk {
    let mut w = Walk {
        dirs: Vec::new(),
        files: Vec::new(),
        skipped: 0,
    };
    let it = walkdir::WalkDir::new(top)
        .follow_links(false)
        .min_depth(1)
        .into_iter()
        .filter_entry(|e| {
            let hidden = e.file_name().to_string_lossy().starts_with('.');
            !hidden && !excluded.iter().any(|x| e.path() == x)
        });
    for entry in it {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                log::warn!("scan: skipping unreadable entry: {e}");
                w.skipped += 1;
                continue;
            }
        };
        let ft = entry.file_type();
        if ft.is_symlink() {
            log::debug!("scan: not following symlink {}", entry.path().display());
            continue;
        }
        let meta = match entry.metadata() {
            Ok(m) => m,
            Err(e) => {
                log::warn!("scan: cannot stat {}: {e}", entry.path().display());
                w.skipped += 1;
                continue;
            }
        };
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            log::warn!(
                "scan: skipping {} (name is not UTF-8)",
                entry.path().display()
            );
            w.skipped += 1;
            continue;
        };
        if ft.is_dir() {
            w.dirs.push((entry.into_path(), meta));
        } else if ft.is_file() {
            let dir = entry.path().parent().unwrap_or(top).to_path_buf();
            w.files.push(SeenFile { dir, name, meta });
        }
    }
    w
}

impl Scanner {
    pub fn new(db: Db, cfg: ScanConfig) -> Scanner {
        Scanner {
            db,
            cfg,
            lock: Mutex::new(()),
        }
    }

    fn threads(&self) -> usize {
        if self.cfg.threads > 0 {
            self.cfg.threads
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        }
    }

    /// Scans every library of `plan`. Blocking.
    pub fn scan_plan(&self, plan: &LibraryPlan) -> Result<ScanReport, DbError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let start = Instant::now();
        let mut total = ScanReport::default();
        for (lib, excluded) in &plan.scan {
            let r = self.scan_library(lib, None, excluded)?;
            total.absorb(r);
        }
        total.elapsed = start.elapsed();
        Ok(total)
    }

    /// Incremental scan of one known folder (a catalog's real path) and
    /// everything below it. Blocking.
    pub fn scan_subtree(&self, plan: &LibraryPlan, dir: &Path) -> Result<ScanReport, DbError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
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
        let mut r = self.scan_library(lib, Some(Path::new(&key)), excluded)?;
        r.elapsed = start.elapsed();
        Ok(r)
    }

    fn scan_library(
        &self,
        lib: &Library,
        subtree: Option<&Path>,
        excluded: &[PathBuf],
    ) -> Result<ScanReport, DbError> {
        let mut report = ScanReport {
            libraries: 1,
            ..Default::default()
        };
        let lib_id = lib.id;
        let root_id = lib.root_id.expect("libraries are synced before scans");
        let (known_cats, known_files) = self.db.read(|c| {
            Ok((
                catalogs::paths_of_library(c, lib_id)?,
                files::known_in_library(c, lib_id)?,
            ))
        })?;
        let state = check_root(lib, known_files.len());
        set_online(&self.db, lib, &state)?;
        let dev = match state {
            Ok(dev) => dev,
            Err(_) => {
                report.offline.push(lib.path.clone());
                return Ok(report);
            }
        };
        let top = subtree.unwrap_or(Path::new(&lib.path));
        let under = |p: &str| subtree.is_none() || Path::new(p).starts_with(top);
        let mut cat_by_path: HashMap<String, CatalogId> = known_cats.into_iter().collect();
        if subtree.is_some() && !cat_by_path.contains_key(&path_key(top)) {
            return Err(DbError::Open {
                path: top.display().to_string(),
                msg: "not a known folder of the library; run a full `isync scan` first".into(),
            });
        }
        let w = walk(top, excluded);
        report.skipped += w.skipped;
        report.files_seen = w.files.len();
        let now = db::now();

        // New folders, parents first.
        let mut new_dirs: Vec<&(PathBuf, std::fs::Metadata)> = w
            .dirs
            .iter()
            .filter(|(p, _)| !cat_by_path.contains_key(&path_key(p)))
            .collect();
        new_dirs.sort_by_key(|(p, _)| p.components().count());
        if !new_dirs.is_empty() {
            let added = self.db.write(|tx| {
                let mut added = Vec::new();
                for (p, meta) in &new_dirs {
                    let key = path_key(p);
                    let parent_key = path_key(p.parent().unwrap_or(p));
                    let parent = cat_by_path
                        .get(&parent_key)
                        .copied()
                        .or_else(|| {
                            added
                                .iter()
                                .find(|(k, _)| *k == parent_key)
                                .map(|(_, id)| *id)
                        })
                        .unwrap_or(root_id);
                    let id = catalogs::insert(
                        tx,
                        &catalogs::NewCatalog {
                            root_id: Some(root_id),
                            parent_id: Some(parent),
                            library_id: lib_id,
                            path: &key,
                            name: &roots::display_name(p),
                            create_time: earliest_time(meta),
                            now,
                        },
                    )?;
                    added.push((key, id));
                }
                Ok(added)
            })?;
            report.catalogs_added = added.len();
            cat_by_path.extend(added);
        }

        // Files: unchanged, changed or new.
        let mut known: HashMap<(CatalogId, &str), &files::KnownFile> = known_files
            .iter()
            .map(|k| ((k.real_catalog_id, k.disk_name.as_str()), k))
            .collect();
        let mut to_probe: Vec<(Option<FileId>, CatalogId, &SeenFile)> = Vec::new();
        for f in &w.files {
            let Some(&cat) = cat_by_path.get(&path_key(&f.dir)) else {
                continue;
            };
            match known.remove(&(cat, f.name.as_str())) {
                Some(k)
                    if k.size == f.meta.len() as i64 && k.mtime_ns == Some(mtime_ns(&f.meta)) => {}
                Some(k) => to_probe.push((Some(k.id), cat, f)),
                None => to_probe.push((None, cat, f)),
            }
        }
        let probed = self.probe_all(&to_probe, root_id);
        let mut batch: Vec<(Option<FileId>, files::ScannedFile)> = Vec::new();
        for item in probed.into_iter().flatten() {
            batch.push(item);
            if batch.len() >= self.cfg.batch_size {
                self.write_batch(&mut batch, &mut report, now)?;
            }
        }
        self.write_batch(&mut batch, &mut report, now)?;
        report.skipped += to_probe.len() - report.added - report.updated;

        // Whatever is left in `known` under the scanned tree is gone.
        let path_of: HashMap<CatalogId, &str> = cat_by_path
            .iter()
            .map(|(p, id)| (*id, p.as_str()))
            .collect();
        let gone_files: Vec<FileId> = known
            .values()
            .filter(|k| under(path_of.get(&k.real_catalog_id).copied().unwrap_or("")))
            .map(|k| k.id)
            .collect();
        let seen_dirs: HashSet<String> = w.dirs.iter().map(|(p, _)| path_key(p)).collect();
        let top_key = path_key(top);
        let mut gone_cats: Vec<(&String, CatalogId)> = cat_by_path
            .iter()
            .filter(|(p, id)| {
                **id != root_id && under(p) && **p != top_key && !seen_dirs.contains(*p)
            })
            .map(|(p, id)| (p, *id))
            .collect();
        // Deepest first, so children go before their parents.
        gone_cats.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        if !gone_files.is_empty() || !gone_cats.is_empty() {
            let gone_cat_ids: Vec<CatalogId> = gone_cats.iter().map(|(_, id)| *id).collect();
            self.db.write(|tx| {
                for id in &gone_files {
                    files::delete(tx, *id)?;
                }
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
            report.catalogs_removed += gone_cats.len();
            report.changed_ids.extend(gone_files);
        }
        self.db.write(|tx| {
            if !w.files.is_empty() {
                libraries::set_online(tx, lib_id, true, Some(dev))?;
            }
            libraries::set_scanned(tx, lib_id, now)
        })?;
        Ok(report)
    }

    /// Probes files on `threads()` workers. Unreadable files are logged and
    /// left out.
    fn probe_all(
        &self,
        items: &[(Option<FileId>, CatalogId, &SeenFile)],
        root_id: CatalogId,
    ) -> Vec<Option<(Option<FileId>, files::ScannedFile)>> {
        let next = AtomicUsize::new(0);
        let results: Vec<Mutex<Option<(Option<FileId>, files::ScannedFile)>>> =
            items.iter().map(|_| Mutex::new(None)).collect();
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
                        files::insert_scanned(tx, f, now)?;
                        a += 1;
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
    let (file_type, info) = if guess == FileType::Other {
        (FileType::Other, MediaInfo::default())
    } else {
        match probe::probe(&path, guess) {
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
