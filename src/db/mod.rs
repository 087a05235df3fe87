//! The database handle: one writer connection (serialised by a mutex, used
//! only from blocking threads) and a few `query_only` readers. SQL lives in the
//! per-table modules as plain sync functions.
//!
//! Durability: WAL with `synchronous=FULL`, because whatever the API has
//! acknowledged (an upload, an edit) must survive a power cut on a Pi; the
//! extra fsync per commit is cheap next to the media I/O it protects, and the
//! scanner batches hundreds of rows per transaction.

pub mod accounts;
pub mod backup;
pub mod catalogs;
pub(crate) mod edits;
pub mod files;
pub mod libraries;
pub mod listing;
pub(crate) mod shares;
pub(crate) mod trash;
pub(crate) mod uploads;
pub mod users;

use rusqlite::{Connection, OpenFlags, Transaction};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One forward-only schema step: SQL, or code where SQL cannot do it.
enum Migration {
    Sql(&'static str),
    Code(fn(&Transaction) -> rusqlite::Result<()>),
}

/// The schema steps, applied in this order: step N is
/// `migrations/000N_*.sql` (a code step runs its file's SQL itself) and
/// `PRAGMA user_version` says how many have run.
const MIGRATIONS: &[(&str, Migration)] = &[
    (
        "0001_base.sql",
        Migration::Sql(include_str!("migrations/0001_base.sql")),
    ),
    (
        "0002_write_path.sql",
        Migration::Sql(include_str!("migrations/0002_write_path.sql")),
    ),
    (
        "0003_live_library.sql",
        Migration::Sql(include_str!("migrations/0003_live_library.sql")),
    ),
    (
        "0004_accounts.sql",
        Migration::Sql(include_str!("migrations/0004_accounts.sql")),
    ),
    // Share keys hashed (SHA-256 is not in SQLite).
    (
        "0005_share_key_hashes.sql",
        Migration::Code(shares::migrate_hash_keys),
    ),
    // Upload moves recorded before they happen; bytes charged to quotas.
    (
        "0006_upload_moves.sql",
        Migration::Sql(include_str!("migrations/0006_upload_moves.sql")),
    ),
    // Live Photos: content identifiers, video → photo links.
    (
        "0007_live_photos.sql",
        Migration::Sql(include_str!("migrations/0007_live_photos.sql")),
    ),
];
const READERS: usize = 4;
/// The schema version this build writes (`PRAGMA user_version`).
pub const MIGRATIONS_LEN: usize = MIGRATIONS.len();

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database {path}: {msg}")]
    Open { path: String, msg: String },
    #[error("database task failed: {0}")]
    Join(String),
}

#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    /// The `files` rows changed by committed transactions the listing index
    /// has not caught up with (at first: everything, so it loads).
    files_changed: Mutex<listing::Changes>,
    /// Filled by the writer's update hook inside a write transaction; moved
    /// to `files_changed` only after commit, so the index never reads a
    /// snapshot that predates a change it was told about.
    files_touched: Arc<Mutex<listing::Changes>>,
    listing: listing::ListingCache,
    /// Wakes the checkpointer after a commit (see [`spawn_checkpointer`]).
    checkpoint: Option<std::sync::mpsc::SyncSender<()>>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
    /// The writer's `PRAGMA data_version` when last looked at: it changes
    /// only when another connection (another process) commits.
    data_version: std::sync::atomic::AtomicI64,
    /// What the app's parts coordinate on (see [`crate::locks`]).
    locks: crate::locks::Locks,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Close the checkpointer's connection before the writer's, on this
        // thread: the last connection to close checkpoints and removes the
        // WAL by name, which must not happen later from a detached thread
        // (after a restore moved the files, say).
        self.checkpoint.take();
        if let Some(t) = self.checkpointer.take() {
            let _ = t.join();
        }
        // Readers next: the writer closes last, checkpoints everything into
        // the database file and removes the WAL (read-only connections
        // can't), so a stopped server leaves one self-contained file.
        self.readers.clear();
    }
}

/// Checkpoints the WAL on a thread of its own, a moment after commits. The
/// writer's automatic checkpoint is raised from 1,000 pages to a backstop:
/// otherwise the commit that crosses 1,000 WAL pages copies them into the
/// database file and fsyncs it inside a request — several milliseconds at the median of writes, and 100 ms and
/// more after a backup's long read snapshot held checkpoints back. Here a
/// commit is a WAL append and one fsync; a PASSIVE checkpoint never blocks
/// the writer or readers. The thread ends when the database is dropped.
/// Under writes closer together than its delay it may not catch up fully,
/// so the writer keeps a high automatic checkpoint as a backstop.
fn spawn_checkpointer(
    path: &Path,
) -> Option<(std::sync::mpsc::SyncSender<()>, std::thread::JoinHandle<()>)> {
    let conn = Connection::open(path)
        .and_then(|c| configure(&c).map(|()| c))
        .map_err(|e| log::warn!("database {}: no checkpoint thread ({e})", path.display()))
        .ok()?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    let spawned = std::thread::Builder::new()
        .name("isync-checkpoint".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                // Let a burst of commits land; one checkpoint covers them.
                std::thread::sleep(Duration::from_millis(20));
                while rx.try_recv().is_ok() {}
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    log::debug!("WAL checkpoint: {e}");
                }
            }
        });
    match spawned {
        Ok(t) => Some((tx, t)),
        Err(e) => {
            log::warn!("no checkpoint thread ({e}); the writer checkpoints");
            None
        }
    }
}

/// Creates `dir` (and missing parents) 0700 when it does not exist; an
/// existing one keeps its mode (systemd's `StateDirectoryMode=0750`), with
/// a warning when anyone on the machine may look inside.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o007 != 0 {
        log::warn!(
            "{} is open to every user of this machine (mode {:o}) and holds the database \
             (password hashes, who sees what): `chmod o-rwx {}`",
            dir.display(),
            mode & 0o777,
            dir.display()
        );
    }
    Ok(())
}

/// The database holds password hashes: a new one is created 0600 (SQLite
/// gives its `-wal` and `-shm` the database's mode), and an existing one
/// readable by every user of the machine (0644, from an older isync) loses
/// those bits — owner and group bits are never widened or narrowed, so
/// systemd's `UMask=0027` stays in charge under it.
fn private_files(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        let Ok(meta) = std::fs::metadata(&p) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if mode & 0o007 != 0 {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & !0o007))?;
            log::info!(
                "{} was readable by every user of this machine; now mode {:o}",
                p.display(),
                mode & 0o770
            );
        }
    }
    Ok(())
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

impl Db {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let open_err = |msg: String| DbError::Open {
            path: path.display().to_string(),
            msg,
        };
        if let Some(dir) = path.parent() {
            private_dir(dir)
                .map_err(|e| open_err(format!("cannot create {}: {e}", dir.display())))?;
        }
        private_files(path).map_err(|e| open_err(e.to_string()))?;
        let mut writer = Connection::open(path).map_err(|e| open_err(e.to_string()))?;
        let mode: String = writer.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_err(format!("cannot enable WAL (got {mode})")));
        }
        configure(&writer)?;
        migrate(&mut writer).map_err(|e| open_err(format!("migration failed: {e}")))?;

        // Every inserted, updated or deleted `files` row. (SQLite skips the
        // hook for REPLACE conflicts and for DELETE without WHERE; neither
        // is ever run on `files`.)
        let files_touched = Arc::new(Mutex::new(listing::Changes::default()));
        let touched = files_touched.clone();
        writer.update_hook(Some(
            move |_: rusqlite::hooks::Action, _db: &str, table: &str, row: i64| {
                if table == "files" {
                    touched.lock().unwrap_or_else(|p| p.into_inner()).note(row);
                }
            },
        ));

        let (checkpoint, checkpointer) = spawn_checkpointer(path).unzip();
        if checkpoint.is_some() {
            // The backstop: ~16 MB of WAL (the default is 1,000 pages).
            writer.pragma_update(None, "wal_autocheckpoint", 4000)?;
        }
        // A WAL file grown by a burst is cut back when it restarts.
        writer.pragma_update(None, "journal_size_limit", 32 * 1024 * 1024)?;
        let data_version: i64 = writer.query_row("PRAGMA data_version", [], |r| r.get(0))?;

        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let c = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| open_err(e.to_string()))?;
            configure(&c)?;
            c.pragma_update(None, "query_only", "ON")?;
            readers.push(Mutex::new(c));
        }
        Ok(Db {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
                files_changed: Mutex::new(listing::Changes::everything_changed()),
                files_touched,
                listing: listing::ListingCache::default(),
                checkpoint,
                checkpointer,
                data_version: std::sync::atomic::AtomicI64::new(data_version),
                locks: crate::locks::Locks::default(),
            }),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The library, upload and housekeeping locks of the app that opened
    /// this database (shared by every clone of the handle).
    pub(crate) fn locks(&self) -> &crate::locks::Locks {
        &self.inner.locks
    }

    /// Runs `f` on a read-only connection. Blocking: call from a blocking
    /// thread (see [`Db::read_async`]).
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, DbError>) -> Result<T, DbError> {
        let n = self.inner.readers.len();
        let start = self.inner.next_reader.fetch_add(1, Ordering::Relaxed);
        // Take the first free reader, else wait on the round-robin pick.
        for i in 0..n {
            if let Ok(conn) = self.inner.readers[(start + i) % n].try_lock() {
                return f(&conn);
            }
        }
        let conn = self.inner.readers[start % n]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }

    /// Runs `f` in a write transaction, committed when `f` returns `Ok`.
    /// Blocking: call from a blocking thread (see [`Db::write_async`]).
    pub fn write<T>(
        &self,
        f: impl FnOnce(&Transaction) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let mut conn = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&tx).and_then(|v| tx.commit().map(|_| v).map_err(DbError::from));
        if let Some(c) = &self.inner.checkpoint {
            // Full: one is pending already.
            let _ = c.try_send(());
        }
        // Committed or rolled back: re-reading rows that did not change
        // costs little and is never wrong.
        let touched = std::mem::take(
            &mut *self
                .inner
                .files_touched
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        if !touched.is_empty() {
            self.inner
                .files_changed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .absorb(touched);
        }
        out
    }

    pub async fn read_async<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.read(f))
            .await
            .map_err(|e| DbError::Join(e.to_string()))?
    }

    pub async fn write_async<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction) -> Result<T, DbError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.write(f))
            .await
            .map_err(|e| DbError::Join(e.to_string()))?
    }

    /// Forgets what the listing index knows: the next listing loads it from
    /// the table. For a change made outside this process's writer (and the
    /// benchmark's baseline: what every write cost before incremental
    /// updates).
    pub fn invalidate_listing(&self) {
        self.inner
            .files_changed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .everything();
    }

    /// The in-memory listing index, caught up with the `files` rows changed
    /// since (see [`listing`]). Blocking.
    pub fn listing(&self) -> Result<Arc<listing::ListIndex>, DbError> {
        let inner = &self.inner;
        // A commit by another process (a CLI beside the server) is not
        // seen by the update hook: reload then. Only when the writer is
        // free — a listing never waits for a write to look.
        if let Ok(w) = inner.writer.try_lock() {
            if let Ok(v) = w.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0)) {
                if inner.data_version.swap(v, Ordering::AcqRel) != v {
                    self.invalidate_listing();
                }
            }
        }
        inner
            .listing
            .get(&inner.files_changed, |build| self.read(|c| build(c)))
    }

    /// A trivial query proving the database answers (for the watchdog).
    pub(crate) fn ping(&self) -> Result<(), DbError> {
        self.read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
            .map(|_| ())
    }
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, (_, step)) in MIGRATIONS.iter().enumerate() {
        let target = i as i64 + 1;
        if version >= target {
            continue;
        }
        let tx = conn.transaction()?;
        match step {
            Migration::Sql(sql) => tx.execute_batch(sql)?,
            Migration::Code(f) => f(&tx)?,
        }
        tx.pragma_update(None, "user_version", target)?;
        tx.commit()?;
        log::info!("database migrated to version {target}");
    }
    Ok(())
}

/// Seconds since the epoch, now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADD_FILE: &str = "INSERT INTO files(catalog_id, real_catalog_id, root_id, disk_name, \
        name, ext, import_time, last_modify, size, type) VALUES (1, 1, 1, ?1, ?1, 'jpg', 0, 0, 1, 1)";

    /// The listing index follows this process's writes from the changed rows
    /// and another process's by reloading (`data_version`); the background
    /// checkpoints change neither, and dropping the database closes every
    /// connection before it returns (no WAL left behind).
    #[test]
    fn listing_follows_writes_from_here_and_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = Db::open(&path).unwrap();
        db.write(|tx| {
            tx.execute_batch(
                "INSERT INTO libraries(id, path) VALUES (1, '/lib'); \
                 INSERT INTO catalogs(id, root_id, parent_id, library_id, path, name, create_time, \
                 last_modify) VALUES (1, 1, -1, 1, '/lib', 'lib', 0, 0);",
            )?;
            tx.execute(ADD_FILE, ["a.jpg"])?;
            Ok(())
        })
        .unwrap();
        assert_eq!(db.listing().unwrap().len(), 1);
        for i in 0..20 {
            db.write(|tx| Ok(tx.execute(ADD_FILE, [format!("b{i}.jpg")])?))
                .unwrap();
        }
        // Let the checkpointer run: it must not look like another writer.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(db.listing().unwrap().len(), 21);
        let v = db.inner.data_version.load(Ordering::Acquire);
        std::thread::sleep(Duration::from_millis(100));
        let _ = db.listing().unwrap();
        assert_eq!(db.inner.data_version.load(Ordering::Acquire), v);
        // Another connection (as another process would) adds a row.
        let other = Connection::open(&path).unwrap();
        other.execute(ADD_FILE, ["c.jpg"]).unwrap();
        drop(other);
        assert_eq!(db.listing().unwrap().len(), 22, "seen through data_version");
        drop(db);
        let wal = dir.path().join("t.db-wal");
        assert!(
            !wal.exists(),
            "the last close checkpointed and removed the WAL"
        );
    }

    #[test]
    fn migrates_an_empty_database_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = Db::open(&path).unwrap();
        let v: i64 = db
            .read(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        let tables: i64 = db
            .read(|c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type='table' AND name IN \
                     ('users','libraries','catalogs','files','user_roots')",
                    [],
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        assert_eq!(tables, 5);
        drop(db);
        // Re-opening an up-to-date database runs no migration and keeps data.
        let db = Db::open(&path).unwrap();
        db.ping().unwrap();
    }

    /// Migration 5 turns clear share keys into their SHA-256, keeps the
    /// links, and leaves the clear keys nowhere in the file.
    #[test]
    fn share_keys_are_hashed_by_migration_5() {
        use sha2::Digest;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let key = "00112233445566778899aabbccddeeff";
        {
            let mut c = Connection::open(&path).unwrap();
            c.pragma_update(None, "journal_mode", "WAL").unwrap();
            let tx = c.transaction().unwrap();
            for (_, step) in &MIGRATIONS[..4] {
                let Migration::Sql(sql) = step else {
                    unreachable!("the first four are SQL")
                };
                tx.execute_batch(sql).unwrap();
            }
            tx.pragma_update(None, "user_version", 4).unwrap();
            tx.execute_batch(
                "INSERT INTO libraries(id, path) VALUES (1, '/lib'); \
                 INSERT INTO catalogs(id, root_id, parent_id, library_id, path, name, create_time, \
                 last_modify) VALUES (1, 1, -1, 1, '/lib', 'lib', 0, 0);",
            )
            .unwrap();
            tx.execute(ADD_FILE, ["a.jpg"]).unwrap();
            tx.execute(
                "INSERT INTO share_links(key, file_id, created_ms, used_ms) VALUES (?1, 1, 5, 6)",
                [key],
            )
            .unwrap();
            // Enough rows for the old table to span pages of its own.
            for i in 0..300 {
                tx.execute(
                    "INSERT INTO share_links(key, file_id, created_ms, used_ms) \
                     VALUES (printf('%032x', ?1), 1, 1, 1)",
                    [0xfeed_0000_i64 + i],
                )
                .unwrap();
            }
            tx.commit().unwrap();
        }
        let db = Db::open(&path).unwrap();
        let want: [u8; 32] = sha2::Sha256::digest(key.as_bytes()).into();
        let link = db.read(|c| shares::find(c, &want)).unwrap().unwrap();
        assert_eq!(
            (link.file_id, link.user_id, link.used_ms),
            (crate::model::FileId(1), None, 6)
        );
        drop(db);
        let bytes = std::fs::read(&path).unwrap();
        for k in [key.to_string(), format!("{:032x}", 0xfeed_0000_i64 + 150)] {
            assert!(
                !bytes.windows(k.len()).any(|w| w == k.as_bytes()),
                "the clear key {k} is still in the file"
            );
        }
    }

    /// The numbered files are the migrations, each once, in order.
    #[test]
    fn migrations_are_the_numbered_files_in_order() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/db/migrations");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(listed, files);
        for (i, name) in listed.iter().enumerate() {
            assert!(name.starts_with(&format!("{:04}_", i + 1)), "{name}");
        }
    }

    /// A fresh database has exactly the schema the old (unnumbered) schema
    /// statements made, plus the numbered migrations since:
    /// `migrations/schema_v7.snapshot` is `sqlite_master` of schema.sql,
    /// schema2.sql, schema_live.sql, schema_accounts.sql, schema_shares.sql
    /// with migration 5's renames, and schema_upload.sql run in that order
    /// (as they were before they were numbered), then migration 7.
    #[test]
    fn a_fresh_database_has_the_old_schema() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let dump = db
            .read(|c| {
                let mut st = c.prepare(
                    "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_master \
                     ORDER BY type, name",
                )?;
                let rows = st.query_map([], |r| {
                    Ok(format!(
                        "{}|{}|{}|{}\n;;\n",
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?
                    ))
                })?;
                Ok(rows.collect::<Result<String, _>>()?)
            })
            .unwrap();
        assert_eq!(dump, include_str!("migrations/schema_v7.snapshot"));
        assert_eq!(
            db.read(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))?))
                .unwrap(),
            MIGRATIONS_LEN as i64
        );
    }

    #[test]
    fn write_rolls_back_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let r: Result<(), DbError> = db.write(|tx| {
            tx.execute(
                "INSERT INTO users(name,password_hash,create_time,last_modify) VALUES('a','x',0,0)",
                [],
            )?;
            Err(DbError::Join("boom".into()))
        });
        assert!(r.is_err());
        let n: i64 = db
            .read(|c| Ok(c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(n, 0);
    }
}
