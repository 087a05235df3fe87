//! Online backups and restore.
//!
//! A backup is one dated folder `<backup dir>/isync-YYYY-MM-DDTHHMMSSZ/`
//! holding `isync.db` (a `VACUUM INTO` copy of the live database),
//! `isync.toml` (a copy of the config file, when there is one) and
//! `manifest.json` (versions, row counts, SHA-256 of the copy). It is written
//! under a `.partial` name, integrity-checked (`PRAGMA integrity_check` on
//! the copy), fsynced and then renamed, so a folder with the final name is
//! always a complete, checked backup. The newest `backup.keep` are kept.
//!
//! Not blocking the API: `VACUUM INTO` reads one snapshot of the WAL
//! database on a connection of its own. WAL readers never block writers
//! and writers never block readers, so uploads and listings go on while the
//! copy is made (the benchmark and the tests measure it). Only one backup
//! runs at a time: a run is claimed under the progress lock before anything
//! starts, so of two requests at once exactly one runs and the other hears
//! −10013 (the API claims before it answers, see [`Backups::claim`]).
//!
//! A backup folder on the data dir's file system (the SD card on the
//! appliance: `backup.dir` or `--to` there, or the default with no library)
//! keeps the card's reserve, `storage.data_min_free_bytes`: a copy that
//! would leave less free is refused before anything is written (−10014),
//! and one the card runs short under while it is written (the database
//! grew, something else wrote) is stopped and removed.
//!
//! Restore (`isync restore FROM`) needs the server stopped: it takes the
//! data dir lock (refused while `isync serve` holds it), checks the copy,
//! moves the current database aside (nothing is deleted) and puts the copy
//! in place.

use crate::config::Config;
use crate::db::{self, accounts as q, Db};
use crate::error::{Error, Result};
use crate::library::roots::MARKER_FILE;
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

pub(crate) const DB_FILE: &str = "isync.db";
pub(crate) const MANIFEST_FILE: &str = "manifest.json";
const PREFIX: &str = "isync-";
const PARTIAL: &str = ".partial";
/// CPU priority of the copy (0 normal … 19 lowest).
const BACKUP_NICE: i32 = 10;

/// What a running backup is doing.
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub running: bool,
    /// `copying`, `checking`, `pruning` (empty when idle).
    pub phase: String,
    pub started: Option<i64>,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// Backup state as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub dir: String,
    pub keep: u32,
    pub progress: Progress,
    /// The latest runs, newest first (failures included).
    pub recent: Vec<q::BackupRun>,
    /// Backups on disk, newest first.
    pub generations: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    pub format: u32,
    pub isync_version: String,
    pub created: i64,
    pub schema_version: i64,
    pub db_bytes: u64,
    pub db_sha256: String,
    pub integrity: String,
    pub users: i64,
    pub catalogs: i64,
    pub files: i64,
}

pub struct Backups {
    db: Db,
    cfg: Arc<Config>,
    /// The config file in use (copied into each backup), if any.
    config_file: Option<PathBuf>,
    progress: Mutex<Progress>,
    /// Signalled when a run ends (see [`Backups::wait_idle`]).
    idle: Condvar,
    done: Arc<AtomicU64>,
}

/// Marks the backup as not running when dropped, however the run ends.
struct RunGuard<'a>(&'a Backups);

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A backup run claimed by [`Backups::claim`] and not yet made: while it
/// lives, every other start is refused with −10013. Spent by
/// [`Claim::run`]; dropped unspent, it frees the slot.
pub(crate) struct Claim(Option<Arc<Backups>>);

impl Claim {
    /// Makes the claimed backup (see [`Backups::run`]). Blocking.
    pub(crate) fn run(mut self, to: Option<&Path>) -> Result<q::BackupRun> {
        // From here the guard inside `run_claimed` releases the slot.
        let b = self.0.take().expect("a claim runs once");
        b.run_claimed(to)
    }
}

impl Claim {
    /// Makes the claimed backup into the backup folder on the blocking
    /// pool and returns at once. The outcome is logged, recorded
    /// ([`Backups::status`]) and shown in the service status by the run
    /// itself.
    pub(crate) fn start(self) {
        tokio::task::spawn_blocking(move || {
            let _ = self.run(None);
        });
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(b) = self.0.take() {
            b.release();
        }
    }
}

/// The refusal of a backup into `dir` on the SD card (−10014): `free`
/// bytes there, `reserve` kept, `need` the copy's size when known before.
fn full(dir: &Path, free: u64, reserve: u64, need: Option<u64>) -> Error {
    use crate::freespace::mb;
    let what = match need {
        Some(n) => format!("a copy of about {} would leave less", mb(n)),
        None => "it ran short while the copy was written".into(),
    };
    Error::StorageFull(format!(
        "backup to {} refused: it is on the data dir's disk (the SD card), which has {} free \
         and keeps {} in reserve (storage.data_min_free_bytes); {what}; nothing was kept. \
         Back up to another disk (backup.dir, or isync backup --to)",
        dir.display(),
        mb(free),
        mb(reserve)
    ))
}

/// `YYYY-MM-DDTHHMMSSZ` of a unix time (UTC; sorts by time).
fn stamp(unix: i64) -> String {
    let secs = unix.rem_euclid(86_400);
    format!(
        "{}T{:02}{:02}{:02}Z",
        crate::time::civil_date(unix),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Checks a database copy: integrity and row counts. Blocking.
pub(crate) fn check_copy(path: &Path) -> std::result::Result<Manifest, String> {
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let not_isync = |e| format!("{} is not an isync database ({e})", path.display());
    let integrity = db::backup::integrity_check(&c)
        .map_err(|e| format!("integrity check of {} failed: {e}", path.display()))?;
    if integrity != "ok" {
        return Err(format!(
            "integrity check of {} failed: {integrity}",
            path.display()
        ));
    }
    // In the order the checks always ran: the version, the digest, the counts.
    let created = db::now();
    let schema_version = db::backup::schema_version(&c).map_err(not_isync)?;
    let db_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let db_sha256 =
        sha256_file(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (users, catalogs, files) = db::backup::row_counts(&c).map_err(not_isync)?;
    Ok(Manifest {
        format: 1,
        isync_version: env!("CARGO_PKG_VERSION").into(),
        created,
        schema_version,
        db_bytes,
        db_sha256,
        integrity,
        users,
        catalogs,
        files,
    })
}

impl Backups {
    pub(crate) fn new(db: Db, cfg: Arc<Config>, config_file: Option<PathBuf>) -> Backups {
        Backups {
            db,
            cfg,
            config_file,
            progress: Mutex::new(Progress::default()),
            idle: Condvar::new(),
            done: Arc::new(AtomicU64::new(0)),
        }
    }

    pub(crate) fn dir(&self) -> PathBuf {
        self.cfg.backup_dir()
    }

    pub fn progress(&self) -> Progress {
        let mut p = self
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if p.running {
            p.bytes_done = self.done.load(Ordering::Relaxed);
        }
        p
    }

    /// State, recent runs and generations on disk. Blocking.
    pub fn status(&self) -> Result<Status> {
        let recent = self.db.read(|c| q::backup_runs(c, 10))?;
        Ok(Status {
            dir: self.dir().display().to_string(),
            keep: self.cfg.backup.keep,
            progress: self.progress(),
            recent,
            generations: generations(&self.dir()).into_iter().rev().collect(),
        })
    }

    fn set_phase(&self, phase: &str) {
        let mut p = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        p.phase = phase.into();
    }

    /// The default backup folder lies on a library's disk: refuse when that
    /// disk is not there (else the copy would land on the SD card under
    /// the empty mount point).
    fn check_disk(&self) -> Result<()> {
        if self.cfg.backup.dir.is_some() {
            return Ok(());
        }
        if let Some(lib) = self.cfg.libraries.first() {
            if !lib.path.join(MARKER_FILE).exists() {
                return Err(Error::Offline(format!(
                    "the library disk for backups ({}) is offline or not scanned yet; \
                     nothing written (set backup.dir to back up elsewhere)",
                    lib.path.display()
                )));
            }
        }
        Ok(())
    }

    /// The data dir's reserve when `dir` is on its file system (the SD
    /// card), else `None`: other disks keep no reserve for backups.
    fn card_reserve(&self, dir: &Path) -> Result<Option<u64>> {
        let on_card = crate::freespace::same_file_system(dir, &self.cfg.data_dir)
            .map_err(|e| Error::Internal(format!("cannot stat {}: {e}", dir.display())))?;
        Ok(on_card.then(|| self.cfg.data_reserve()))
    }

    /// Refuses (−10014) a backup into `dir` on the SD card that would leave
    /// less than its reserve free: the copy takes at most the database's
    /// pages now (page count × size, what the WAL holds included; `VACUUM
    /// INTO` leaves out the free ones) and the config file. Blocking.
    fn check_room(&self, dir: &Path) -> Result<()> {
        let Some(reserve) = self.card_reserve(dir)? else {
            return Ok(());
        };
        let pages = self.db.read(|c| Ok(db::backup::size_bytes(c)?))?;
        let need = u64::try_from(pages).unwrap_or(0)
            + self
                .config_file
                .as_ref()
                .and_then(|f| std::fs::metadata(f).ok())
                .map_or(0, |m| m.len());
        let free = crate::freespace::free_bytes(&self.cfg.data_dir)
            .map_err(|e| Error::Internal(format!("cannot stat the data dir: {e}")))?;
        if free.saturating_sub(need) < reserve {
            return Err(full(dir, free, reserve, Some(need)));
        }
        Ok(())
    }

    /// Marks a run as started; −10013 when one runs already.
    fn reserve(&self) -> Result<()> {
        let mut p = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        if p.running {
            return Err(Error::Busy("a backup is already running".into()));
        }
        *p = Progress {
            running: true,
            phase: "starting".into(),
            started: Some(db::now()),
            bytes_done: 0,
            bytes_total: 0,
        };
        Ok(())
    }

    fn release(&self) {
        let mut p = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        *p = Progress::default();
        self.idle.notify_all();
    }

    /// [`Backups::status`], read on the blocking pool.
    pub(crate) async fn status_async(self: &Arc<Self>) -> Result<Status> {
        let b = self.clone();
        tokio::task::spawn_blocking(move || b.status()).await?
    }

    /// Claims the one backup slot now, for a run made later (on another
    /// thread): what a request does before it answers, so that of two
    /// requests at once exactly one is told the backup started.
    /// −10013 while a backup runs or is claimed. Not blocking.
    pub(crate) fn claim(self: &Arc<Self>) -> Result<Claim> {
        self.reserve()?;
        Ok(Claim(Some(self.clone())))
    }

    /// Waits until no backup runs (returns at once when none does). Blocking.
    pub fn wait_idle(&self) {
        let p = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        let _idle = self
            .idle
            .wait_while(p, |p| p.running)
            .unwrap_or_else(|p| p.into_inner());
    }

    /// Makes one backup into `to` (default: the backup folder) and keeps
    /// the newest `backup.keep`. Refused (−10013) while one runs. Blocking.
    pub fn run(&self, to: Option<&Path>) -> Result<q::BackupRun> {
        self.reserve()?;
        self.run_claimed(to)
    }

    /// [`Backups::run`] once the slot is reserved; releases it at the end.
    fn run_claimed(&self, to: Option<&Path>) -> Result<q::BackupRun> {
        let _guard = RunGuard(self);
        self.done.store(0, Ordering::Relaxed);
        crate::status::notify_status_note(&self.db, &self.cfg, "backup running");
        let started = db::now();
        let dir = to.map(Path::to_path_buf).unwrap_or_else(|| self.dir());
        // On a thread of its own at a lower CPU priority (nice is per
        // thread on Linux, and cannot be raised again without privilege, so
        // not on a pooled thread): on a 2-core Pi the copy must not take
        // CPU from requests.
        let r = std::thread::scope(|sc| {
            std::thread::Builder::new()
                .name("isync-backup".into())
                .spawn_scoped(sc, || {
                    if let Err(e) = rustix::process::setpriority_process(None, BACKUP_NICE) {
                        log::debug!("backup: cannot lower the thread priority: {e}");
                    }
                    // An explicit `--to` is the caller's choice of disk;
                    // the SD card's reserve holds for every folder.
                    let checked = if to.is_some() {
                        Ok(())
                    } else {
                        self.check_disk()
                    };
                    checked
                        .and_then(|()| self.check_room(&dir))
                        .and_then(|()| self.write(&dir, started))
                })
                .map_err(|e| Error::Internal(format!("cannot start the backup thread: {e}")))?
                .join()
                .unwrap_or_else(|_| Err(Error::Internal("the backup thread panicked".into())))
        });
        let run = match &r {
            Ok((path, bytes)) => q::BackupRun {
                id: 0,
                started,
                finished: db::now(),
                ok: true,
                path: Some(path.display().to_string()),
                bytes: Some(*bytes as i64),
                message: "ok".into(),
            },
            Err(e) => q::BackupRun {
                id: 0,
                started,
                finished: db::now(),
                ok: false,
                path: None,
                bytes: None,
                message: e.to_string(),
            },
        };
        let id = self.db.write(|tx| q::insert_backup_run(tx, &run))?;
        crate::status::notify_status(&self.db, &self.cfg);
        match r {
            Ok((path, bytes)) => {
                log::info!(
                    "backup written to {} ({bytes} bytes) in {} s",
                    path.display(),
                    run.finished - started
                );
                Ok(q::BackupRun { id, ..run })
            }
            Err(e) => {
                log::error!("backup failed: {e}");
                Err(e)
            }
        }
    }

    fn write(&self, dir: &Path, started: i64) -> Result<(PathBuf, u64)> {
        let io = |what: String| move |e: std::io::Error| Error::Internal(format!("{what}: {e}"));
        // A backup holds the password hashes: private to this user (an
        // existing folder keeps its mode, e.g. the timer's 0750).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(format!("cannot create {}", dir.display())))?;
        // Names sort by time (pruning keeps the newest by name), to the
        // millisecond: `isync-2026-11-22T041700.123Z`.
        let _ = started;
        let name = loop {
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            let st = stamp(ms.div_euclid(1000));
            let name = format!(
                "{PREFIX}{}.{:03}Z",
                &st[..st.len() - 1],
                ms.rem_euclid(1000)
            );
            if !dir.join(&name).exists() {
                break name;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        let tmp = dir.join(format!(".{name}{PARTIAL}"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(io(format!("cannot create {}", tmp.display())))?;
        let r = self.fill(&tmp);
        if let Err(e) = r {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let bytes = r.expect("checked");
        let dest = dir.join(&name);
        std::fs::rename(&tmp, &dest).map_err(io(format!("cannot rename to {}", dest.display())))?;
        fsync_dir(dir).map_err(io(format!("cannot sync {}", dir.display())))?;
        self.set_phase("pruning");
        self.prune(dir);
        Ok((dest, bytes))
    }

    /// Copy, check, manifest, fsync — into the partial folder.
    fn fill(&self, tmp: &Path) -> Result<u64> {
        let io = |what: String| move |e: std::io::Error| Error::Internal(format!("{what}: {e}"));
        let copy = tmp.join(DB_FILE);
        // On the SD card: the copy stops where the card would drop below
        // its reserve (checked with the progress below).
        let reserve = self.card_reserve(tmp)?;
        let short = Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.set_phase("copying");
        {
            // A connection of its own, read-only: one WAL snapshot, no lock
            // that would hold back the API's readers or its writer.
            let c = Connection::open_with_flags(
                self.db.path(),
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| Error::Internal(format!("backup: cannot open the database: {e}")))?;
            c.busy_timeout(std::time::Duration::from_secs(10))
                .map_err(|e| Error::Internal(e.to_string()))?;
            let total = db::backup::size_bytes(&c).unwrap_or(0);
            {
                let mut p = self.progress.lock().unwrap_or_else(|p| p.into_inner());
                p.bytes_total = total.max(0) as u64;
            }
            let (watch, done, stop) = (copy.clone(), self.done.clone(), short.clone());
            // Progress: the size of the copy so far, looked at every few
            // thousand VM steps (a stat, cheap); on the card, its free
            // space too (a statfs): below the reserve the copy stops.
            c.progress_handler(
                20_000,
                Some(move || {
                    crate::failpoint::failpoint("backup-copying");
                    if let Ok(m) = std::fs::metadata(&watch) {
                        done.store(m.len(), Ordering::Relaxed);
                    }
                    let low = reserve.is_some_and(|r| {
                        crate::freespace::free_bytes(&watch).is_ok_and(|free| free < r)
                    });
                    stop.store(low, Ordering::Relaxed);
                    low
                }),
            );
            // Created empty and 0600 first (VACUUM INTO fills an empty
            // file): SQLite would make it 0644.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&copy)
                .map_err(io(format!("cannot create {}", copy.display())))?;
            db::backup::vacuum_into(&c, &copy).map_err(|e| {
                // Stopped by the check above, or the card filled up between
                // two checks (the write failed): either way it ran short.
                let free = crate::freespace::free_bytes(tmp).unwrap_or(0);
                match reserve.filter(|&r| short.load(Ordering::Relaxed) || free < r) {
                    Some(r) => full(tmp.parent().unwrap_or(tmp), free, r, None),
                    None => Error::Internal(format!("backup copy failed: {e}")),
                }
            })?;
            c.progress_handler(0, None::<fn() -> bool>);
        }
        std::fs::File::open(&copy)
            .and_then(|f| f.sync_all())
            .map_err(io(format!("cannot sync {}", copy.display())))?;
        self.set_phase("checking");
        let manifest = check_copy(&copy).map_err(Error::Internal)?;
        self.done.store(manifest.db_bytes, Ordering::Relaxed);
        if let Some(cf) = &self.config_file {
            if cf.is_file() {
                std::fs::copy(cf, tmp.join("isync.toml"))
                    .map_err(io(format!("cannot copy {}", cf.display())))?;
            }
        }
        let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
        std::fs::write(tmp.join(MANIFEST_FILE), text)
            .and_then(|()| std::fs::File::open(tmp.join(MANIFEST_FILE))?.sync_all())
            .map_err(io("cannot write the manifest".into()))?;
        fsync_dir(tmp).map_err(io(format!("cannot sync {}", tmp.display())))?;
        Ok(manifest.db_bytes)
    }

    /// Keeps the newest `keep` complete backups; removes partial folders
    /// left by a crash. Only folders this code names are touched.
    fn prune(&self, dir: &Path) {
        let keep = self.cfg.backup.keep as usize;
        let all = generations(dir);
        for old in all.iter().take(all.len().saturating_sub(keep)) {
            let p = dir.join(old);
            match std::fs::remove_dir_all(&p) {
                Ok(()) => log::info!("old backup {} removed (keeping {keep})", p.display()),
                Err(e) => log::warn!("cannot remove old backup {}: {e}", p.display()),
            }
        }
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(&format!(".{PREFIX}")) && n.ends_with(PARTIAL) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

/// Complete backups in `dir`, oldest first (by name, which sorts by time).
pub fn generations(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join(MANIFEST_FILE).is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(PREFIX))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// What `restore` did.
#[derive(Debug)]
pub(crate) struct Restored {
    pub from: PathBuf,
    pub manifest: Manifest,
    /// Where the database that was replaced now lies (None: there was none).
    pub previous: Option<PathBuf>,
}

/// Puts a backup (a backup folder or an `isync.db` copy) in place of the
/// database. Refused while a server runs on this data dir. Blocking.
pub(crate) fn restore(cfg: &Config, from: &Path) -> std::result::Result<Restored, String> {
    let Some(_lock) = crate::library::control::try_lock(&cfg.data_dir)
        .map_err(|e| format!("cannot lock {}: {e}", cfg.data_dir.display()))?
    else {
        return Err(format!(
            "isync is running on {} — stop it first (`sudo systemctl stop isync`), then restore, \
             then start it again",
            cfg.data_dir.display()
        ));
    };
    let src = if from.is_dir() {
        from.join(DB_FILE)
    } else {
        from.to_path_buf()
    };
    if !src.is_file() {
        return Err(format!("{} is not a backup (no {DB_FILE})", from.display()));
    }
    if from.is_dir() && from.join(MANIFEST_FILE).is_file() {
        let text = std::fs::read_to_string(from.join(MANIFEST_FILE)).map_err(|e| e.to_string())?;
        let m: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{}: bad manifest: {e}", from.display()))?;
        let want = m["dbSha256"].as_str().unwrap_or_default();
        let have = sha256_file(&src).map_err(|e| e.to_string())?;
        if want != have {
            return Err(format!(
                "{} does not match its manifest (damaged copy?); refusing to restore it",
                src.display()
            ));
        }
    }
    let manifest = check_copy(&src)?;
    let known = db::MIGRATIONS_LEN as i64;
    if manifest.schema_version > known {
        return Err(format!(
            "the backup comes from a newer isync (schema {} > {known}); upgrade isync first",
            manifest.schema_version
        ));
    }
    let live = cfg.db_path();
    let now = db::now();
    let aside = cfg.data_dir.join(format!("before-restore-{}", stamp(now)));
    let mut previous = None;
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| e.to_string())?;
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", live.display()));
        if p.exists() {
            std::fs::create_dir_all(&aside).map_err(|e| e.to_string())?;
            let to = aside.join(p.file_name().expect("file name"));
            std::fs::rename(&p, &to)
                .map_err(|e| format!("cannot move {} aside: {e}", p.display()))?;
            previous = Some(aside.clone());
        }
    }
    let staging = cfg.data_dir.join(format!("{DB_FILE}.restoring"));
    std::fs::copy(&src, &staging).map_err(|e| format!("cannot copy {}: {e}", src.display()))?;
    // `copy` keeps the backup's mode (0644 from an older isync): the live
    // database is private.
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    std::fs::File::open(&staging)
        .and_then(|f| f.sync_all())
        .map_err(|e| e.to_string())?;
    std::fs::rename(&staging, &live).map_err(|e| e.to_string())?;
    fsync_dir(&cfg.data_dir).map_err(|e| e.to_string())?;
    // Opening migrates an older copy and proves it works.
    let db = Db::open(&live).map_err(|e| format!("the restored database does not open: {e}"))?;
    // Thumbnails uploaded for records newer than the backup would be shown
    // for new records that reuse their ids: move them aside too.
    let ids: std::collections::HashSet<i64> = db
        .read(crate::db::files::all_ids)
        .map_err(|e| e.to_string())?;
    // They are in the data dir and on the libraries' disks (those there);
    // each goes aside on its own disk (a rename): the data dir's into the
    // folder of the replaced database, a library's beside its `uploaded/`.
    let aside_name = aside.file_name().unwrap_or_default().to_string_lossy();
    let folders = std::iter::once((cfg.thumb_dir(), aside.join("uploaded-thumbs"))).chain(
        cfg.libraries.iter().map(|l| {
            let own = crate::library::layout::library_thumb_dir(&l.path);
            let to = own.join(format!("uploaded-aside-{aside_name}"));
            (own, to)
        }),
    );
    for (thumbs, dir) in folders {
        let Ok(rd) = std::fs::read_dir(thumbs.join("uploaded")) else {
            continue;
        };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let id = n.split('_').next().and_then(|s| s.parse::<i64>().ok());
            if id.is_some_and(|id| !ids.contains(&id)) {
                let _ = std::fs::create_dir_all(&dir);
                if std::fs::rename(e.path(), dir.join(&n)).is_ok() {
                    previous = Some(aside.clone());
                }
            }
        }
    }
    Ok(Restored {
        from: src,
        manifest,
        previous,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_sort_by_time() {
        assert_eq!(stamp(0), "1970-01-01T000000Z");
        assert_eq!(stamp(1_700_000_000), "2023-11-14T221320Z");
        assert!(stamp(1_700_000_000) < stamp(1_700_000_001));
    }

    #[test]
    fn backup_keeps_generations_and_checks_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        cfg.backup.dir = Some(dir.path().join("backups"));
        cfg.backup.keep = 2;
        let db = Db::open(&cfg.db_path()).unwrap();
        db.write(|tx| {
            crate::db::users::upsert(tx, "alice", "x", 1)?;
            Ok(())
        })
        .unwrap();
        let b = Backups::new(db.clone(), Arc::new(cfg.clone()), None);
        let mut made = Vec::new();
        for _ in 0..3 {
            let run = b.run(None).unwrap();
            assert!(run.ok);
            made.push(PathBuf::from(run.path.unwrap()));
        }
        let gens = generations(&cfg.backup_dir());
        assert_eq!(gens.len(), 2, "{gens:?}");
        assert!(!made[0].exists() && made[2].exists());
        let m = check_copy(&made[2].join(DB_FILE)).unwrap();
        assert_eq!((m.users, m.integrity.as_str()), (1, "ok"));
        let st = b.status().unwrap();
        assert!(!st.progress.running);
        assert_eq!(st.recent.len(), 3);
        // A damaged copy is refused.
        let bad = dir.path().join("bad.db");
        std::fs::write(&bad, b"not a database at all, just some bytes here").unwrap();
        assert!(check_copy(&bad).is_err());
    }

    #[test]
    fn a_claim_holds_the_one_slot_until_spent_or_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        cfg.backup.dir = Some(dir.path().join("backups"));
        let db = Db::open(&cfg.db_path()).unwrap();
        let b = Arc::new(Backups::new(db, Arc::new(cfg.clone()), None));
        let claim = b.claim().unwrap();
        assert!(b.progress().running);
        assert!(matches!(b.claim(), Err(Error::Busy(_))));
        assert!(matches!(b.run(None), Err(Error::Busy(_))));
        drop(claim);
        assert!(!b.progress().running, "an unspent claim frees the slot");
        let claim = b.claim().unwrap();
        let run = claim.run(None).unwrap();
        assert!(run.ok && !b.progress().running);
        b.wait_idle();
        assert_eq!(generations(&cfg.backup_dir()).len(), 1);
    }
}
