//! Resumable uploads (spec §6.14–6.16, §9): announce a file, stream its
//! parts (`origin`, `thumb`, `screen`) straight to disk in any number of
//! requests, and move the original into its catalog folder when complete.
//!
//! Where bytes live:
//! - a pending original: `<library>/.isync/uploads/<id>.origin` (same file
//!   system as the catalog folder; the scanner skips dot names); its record's
//!   `disk_name` is a hidden placeholder until completion picks the real name;
//! - a client thumbnail: `<thumb_dir>/uploaded/<id>_<level>.part` while
//!   pending, [`uploaded_thumb_path`] when complete; `<thumb_dir>` is the
//!   library's thumbnail folder on its own disk, or the data dir's where
//!   that disk cannot take them (`space::client_thumbs_for`): the SD card
//!   holds no client thumbnail a library disk could.
//!
//! Every acknowledged byte is fsynced first; a broken request leaves exactly
//! the fsynced bytes, which `uploadingInfo.icc` reports. One request per file
//! at a time (a per-file lock held until the last write is synced). A
//! request that completes the original asks the thumbnail pre-render worker
//! for its thumbnails, without waiting for the watcher (or with none).

use crate::config::Config;
use crate::db::{catalogs, files, uploads, Db};
use crate::error::{Error, Result};
use crate::freespace::DataRoom;
use crate::media::prerender::Prerender;
use crate::model::{CatalogId, FileId, FileRecord, FileType, PartStatus, ThumbLevel, UserId};
use crate::perms::Session;
use bytes::Bytes;
use rand::RngCore;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod disk;
mod finish;
/// `pub` for its fuzz target (`fuzz/fuzz_targets/multipart.rs`).
pub mod multipart;
mod recover;
pub(crate) mod space;

use disk::Queue;
pub(crate) use recover::{recover, recover_library};
pub use space::free_bytes;

pub(crate) use crate::library::layout::MAX_EXT_CHARS;
use crate::library::layout::{staging_origin_path, staging_thumb_path, uploaded_thumb_path};

/// `disk_name` of a record whose original is still pending.
pub(crate) const PLACEHOLDER_PREFIX: &str = ".isync-upload-";
/// Longest display name (spec §6.14) and extension.
pub(crate) const MAX_NAME_CHARS: usize = 100;
pub(crate) const MAX_MEMO_CHARS: usize = 1024;
/// Parts (of any kind) one multipart body may carry.
pub(crate) const MAX_PARTS: usize = 16;
/// Largest non-file form field read (and ignored).
pub(crate) const MAX_FIELD_BYTES: u64 = 64 * 1024;
/// Longest `name`/`filename` of a part.
pub(crate) const MAX_PART_NAME_CHARS: usize = 255;
/// After refusing a part mid-stream (a limit, the quota, the free-space
/// reserve, a failed write), up to this much of the rest of the body is
/// read and dropped before the reply: a client still sending then reads
/// the error instead of a reset connection. Past it the connection closes.
const DRAIN_BYTES: u64 = 32 << 20;
/// How long a request waits for another request on the same file.
const LOCK_WAIT: Duration = Duration::from_secs(30);
/// Bytes queued between the network and the disk writer, at most: memory
/// stays flat for any size (`upload/disk.rs` adds its aligned blocks).
const QUEUE_BYTES: usize = 4 << 20;

/// The three parts of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Role {
    Origin,
    Thumb,
    Screen,
}

impl Role {
    pub(crate) fn parse(s: &str) -> Option<Role> {
        match s {
            "origin" => Some(Role::Origin),
            "thumb" => Some(Role::Thumb),
            "screen" => Some(Role::Screen),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Role::Origin => "origin",
            Role::Thumb => "thumb",
            Role::Screen => "screen",
        }
    }

    fn level(self) -> ThumbLevel {
        if self == Role::Screen {
            ThumbLevel::Screen
        } else {
            ThumbLevel::Small
        }
    }

    fn status(self, r: &FileRecord) -> PartStatus {
        PartStatus::from_i64(match self {
            Role::Origin => r.status_origin,
            Role::Thumb => r.status_thumb,
            Role::Screen => r.status_screen,
        })
    }
}

/// Digest returned by `cm=` (spec §9.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checksum {
    Sha1,
    Md5,
}

impl Checksum {
    pub(crate) fn parse(s: &str) -> Option<Checksum> {
        match s.to_ascii_lowercase().as_str() {
            "sha1" => Some(Checksum::Sha1),
            "md5" => Some(Checksum::Md5),
            _ => None,
        }
    }
}

enum Hasher {
    Sha1(sha1::Sha1),
    Md5(md5::Md5),
}

impl Hasher {
    fn new(c: Checksum) -> Hasher {
        use sha1::Digest;
        match c {
            Checksum::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            Checksum::Md5 => Hasher::Md5(md5::Md5::new()),
        }
    }

    fn update(&mut self, b: &[u8]) {
        use sha1::Digest;
        match self {
            Hasher::Sha1(h) => h.update(b),
            Hasher::Md5(h) => h.update(b),
        }
    }

    fn hex(self) -> String {
        use sha1::Digest;
        match self {
            Hasher::Sha1(h) => hex::encode(h.finalize()),
            Hasher::Md5(h) => hex::encode(h.finalize()),
        }
    }
}

/// Bytes stored so far of each part that is pending (spec §3.3).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartSizes {
    pub origin: i64,
    pub thumb: i64,
    pub screen: i64,
}

fn len_of(p: &Path) -> i64 {
    std::fs::metadata(p).map(|m| m.len() as i64).unwrap_or(0)
}

/// Where the bytes of one part of `rec` are right now, and how many.
struct PartPlace {
    staging: PathBuf,
    final_path: PathBuf,
    stored: i64,
}

fn place(rec: &FileRecord, library: &Path, thumb_dir: &Path, role: Role) -> PartPlace {
    let (staging, final_path) = match role {
        Role::Origin => (
            staging_origin_path(library, rec.id),
            PathBuf::from(&rec.path),
        ),
        r => (
            staging_thumb_path(thumb_dir, rec.id, r.level()),
            uploaded_thumb_path(thumb_dir, rec.id, r.level()),
        ),
    };
    let stored = match role.status(rec) {
        PartStatus::Uploading => len_of(&staging),
        PartStatus::Uploaded => len_of(&final_path),
        _ => 0,
    };
    PartPlace {
        staging,
        final_path,
        stored,
    }
}

/// Sizes for a record's pending parts (blocking: stats files). Its client
/// thumbnails are looked for on its library's disk, then in the data dir's
/// thumbnail folder `thumb_dir` (`layout::client_thumb_dir`).
pub(crate) fn part_sizes(rec: &FileRecord, library: &Path, thumb_dir: &Path) -> PartSizes {
    let thumb_dir = &crate::library::layout::client_thumb_dir(library, thumb_dir, rec.id);
    PartSizes {
        origin: place(rec, library, thumb_dir, Role::Origin).stored,
        thumb: place(rec, library, thumb_dir, Role::Thumb).stored,
        screen: place(rec, library, thumb_dir, Role::Screen).stored,
    }
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn internal(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("{what}: {e}"))
}

/// One request per file at a time (the app's lock of the file, see
/// [`crate::locks::Locks::upload_file`]). The guard is shared with the disk
/// writer, so a request whose connection died still holds it until its
/// bytes are synced.
pub(crate) type FileGuard = Arc<tokio::sync::OwnedMutexGuard<()>>;

pub(crate) async fn lock_file(db: &Db, id: FileId) -> Result<FileGuard> {
    let lock = db.locks().upload_file(id.0);
    match tokio::time::timeout(LOCK_WAIT, lock.lock_owned()).await {
        Ok(g) => Ok(Arc::new(g)),
        Err(_) => Err(Error::BadParam(format!(
            "file {} is busy with another upload; retry later",
            id.0
        ))),
    }
}

/// What `uploadFileInfo.icc` announces (spec §6.14), as the client sent it
/// (its size ≥ 0 and type checked by the handler). Times not given are the
/// announcement's.
#[derive(Debug, Clone)]
pub(crate) struct Announce {
    pub catalog: CatalogId,
    pub name: String,
    pub ext: String,
    pub size: i64,
    pub file_type: i64,
    /// The client uploads the small / screen thumbnail itself.
    pub client_thumb: bool,
    pub client_screen: bool,
    pub create_time: Option<i64>,
    pub import_time: Option<i64>,
    pub last_modify: Option<i64>,
    pub duration: Option<f64>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub orientation: Option<i64>,
    pub longitude: Option<f64>,
    pub latitude: Option<f64>,
    pub memo: Option<String>,
    pub help_int: Option<i64>,
    pub help_text: Option<String>,
}

impl Announce {
    /// The pending record of this announcement by `uploader` into `cat`
    /// (of root `root`), its original staged as `placeholder`, at `now`.
    fn record(
        self,
        cat: CatalogId,
        root: CatalogId,
        uploader: UserId,
        placeholder: String,
        now: i64,
    ) -> uploads::NewUpload {
        // The client's own thumbnails are pending until it sends them; the
        // others are the server's to make.
        let status = |client: bool| {
            if client {
                PartStatus::Uploading as i64
            } else {
                PartStatus::Local as i64
            }
        };
        uploads::NewUpload {
            catalog_id: cat,
            root_id: root,
            placeholder,
            name: self.name,
            ext: self.ext,
            size: self.size,
            file_type: self.file_type,
            status_thumb: status(self.client_thumb),
            status_screen: status(self.client_screen),
            create_time: self.create_time.unwrap_or(now),
            import_time: self.import_time.unwrap_or(now),
            last_modify: self.last_modify.unwrap_or(now),
            upload_time: now,
            duration: self.duration,
            width: self.width,
            height: self.height,
            orientation: self.orientation,
            longitude: self.longitude,
            latitude: self.latitude,
            memo: self.memo,
            help_int: self.help_int,
            help_text: self.help_text,
            uploader,
        }
    }
}

/// Creates the pending record (spec §9.1) after checking the target catalog,
/// that its disk is there (−10011), that the announced size fits on it
/// above the free-space reserve and within the user's quota (−10014).
pub(crate) async fn announce(
    db: &Db,
    cfg: &Arc<Config>,
    s: &Session,
    a: Announce,
) -> Result<(FileRecord, PartSizes)> {
    s.require(crate::perms::Perm::Upload)?;
    let now = crate::db::now();
    crate::trash::maybe_housekeep(db, cfg);
    let (db2, roots, uid, cfg) = (db.clone(), s.roots.clone(), s.user_id, cfg.clone());
    tokio::task::spawn_blocking(move || {
        let cat = db2
            .read(|c| catalogs::accessible(c, a.catalog, &roots))?
            .ok_or_else(|| Error::BadParam(format!("catalog {} not found", a.catalog.0)))?;
        space::check_online(&db2, Path::new(&cat.path))?;
        let size = a.size.max(0) as u64;
        let reserve = space::Reserve::for_dir(&cfg, Path::new(&cat.path));
        space::check_free(Path::new(&cat.path), size, reserve)?;
        let placeholder = format!("{PLACEHOLDER_PREFIX}{}", random_hex(16));
        let rec = a.record(cat.id, cat.root_id, uid, placeholder, now);
        // The quota is read in the transaction that charges the new file:
        // announcements side by side cannot both take the last room.
        let quota = cfg.upload.user_quota_bytes;
        let id = db2.write(|tx| {
            if let Some(room) = space::quota_room(tx, quota, uid, None)? {
                if size > room {
                    return Ok(Err(space::over_quota(quota, room, size)));
                }
            }
            Ok(Ok(uploads::insert(tx, &rec)?))
        })??;
        let rec = db2
            .read(|c| files::by_id(c, id))?
            .ok_or_else(|| internal("announce", "record vanished"))?;
        let sizes = PartSizes::default();
        Ok((rec, sizes))
    })
    .await?
}

/// The library folder of a file (its staging area is below it). Blocking.
fn library_of(db: &Db, id: FileId) -> Result<PathBuf> {
    db.read(|c| uploads::library_path_of(c, id))?
        .map(PathBuf::from)
        .ok_or_else(|| Error::BadParam(format!("file {} not found", id.0)))
}

/// `uploadingInfo.icc`: this user's files with a pending part.
pub(crate) async fn uploading(
    db: &Db,
    cfg: &Arc<Config>,
    s: &Session,
) -> Result<Vec<(FileRecord, PartSizes)>> {
    s.require(crate::perms::Perm::Upload)?;
    let (db2, roots, uid, thumbs) = (db.clone(), s.roots.clone(), s.user_id, cfg.thumb_dir());
    tokio::task::spawn_blocking(move || {
        let recs = db2.read(|c| {
            let ids = uploads::pending_of_user(c, uid)?;
            files::by_ids(c, &ids)
        })?;
        let mut out = Vec::new();
        for r in recs.into_iter().filter(|r| roots.contains(&r.root_id)) {
            let lib = library_of(&db2, r.id)?;
            let sizes = part_sizes(&r, &lib, &thumbs);
            out.push((r, sizes));
        }
        Ok(out)
    })
    .await?
}

/// The data dir's disk (the SD card) against its reserve, and whether
/// uploads onto it are paused (−10014): below its reserve or below
/// `upload.min_free_bytes`, whichever is larger (each refusal names the one
/// it met).
pub(crate) async fn data_dir_room(cfg: &Arc<Config>) -> Result<(DataRoom, bool)> {
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || {
        let upload_reserve = space::Reserve::for_dir(&cfg, &cfg.data_dir).bytes;
        let room = DataRoom::of(&cfg.data_dir, cfg.data_reserve()).map_err(|e| {
            Error::Internal(format!("free space of {}: {e}", cfg.data_dir.display()))
        })?;
        Ok((room, room.low() || room.free < upload_reserve))
    })
    .await?
}

/// Query parameters of `uploadFile.icc`.
#[derive(Debug, Clone)]
pub(crate) struct UploadRequest {
    pub id: FileId,
    pub obp: i64,
    pub tbp: i64,
    pub sbp: i64,
    pub cm: Option<Checksum>,
    /// `Content-Length` of the body, when sent (checked against free space).
    pub body_len: Option<u64>,
}

/// Digests of the whole stored parts received by one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Checks {
    pub origin: Option<String>,
    pub thumb: Option<String>,
    pub screen: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct UploadReply {
    pub record: FileRecord,
    pub sizes: PartSizes,
    pub checks: Option<Checks>,
}

/// Shared by the steps of one request.
struct Ctx {
    db: Db,
    id: FileId,
    library: PathBuf,
    thumbs: PathBuf,
    /// Who sends the request (recorded as deleting an original it replaces).
    user: crate::model::UserId,
    /// The free space kept on the library's disk (`upload.min_free_bytes`,
    /// or the data dir's reserve when the library is on that disk).
    reserve: space::Reserve,
    /// The same for the client thumbnails (on the disk of `thumbs`).
    thumb_reserve: space::Reserve,
}

impl Ctx {
    /// The scanner's lock on this file's library (see
    /// [`crate::library::scan::library_lock`]): held while an original
    /// moves between staging and its catalog folder.
    fn library_lock(&self) -> Arc<Mutex<()>> {
        crate::library::scan::library_lock(&self.db, &self.library.to_string_lossy())
    }

    fn record(&self) -> Result<FileRecord> {
        self.db
            .read(|c| files::by_id(c, self.id))?
            .ok_or_else(|| Error::BadParam(format!("file {} not found", self.id.0)))
    }

    /// −10011 when the file's library (or the disk it is on) is offline.
    fn check_online(&self) -> Result<()> {
        space::check_online(&self.db, &self.library)
    }
}

/// Creates the staging folder of an original, `<library>/.isync/uploads`,
/// only below an existing library root (never a whole path where a disk
/// should be mounted).
fn make_staging_dir(library: &Path, dir: &Path) -> Result<()> {
    if !library.is_dir() {
        return Err(space::offline());
    }
    std::fs::create_dir_all(dir).map_err(|e| internal(&dir.display().to_string(), e))
}

/// Checks the offset of a part against what is stored and makes the part
/// pending (moving a complete part back to staging, see
/// [`finish::reopen_origin`]), so its bytes can be written. Returns the staging
/// path. Changes nothing when refusing. Blocking.
fn begin_part(ctx: &Ctx, role: Role, offset: i64) -> Result<PathBuf> {
    let rec = ctx.record()?;
    let status = role.status(&rec);
    if role == Role::Origin && !matches!(status, PartStatus::Uploading | PartStatus::Uploaded) {
        return Err(Error::BadParam(format!(
            "file {} was not uploaded through the API; its original cannot be replaced",
            rec.id.0
        )));
    }
    let at = place(&rec, &ctx.library, &ctx.thumbs, role);
    if offset < 0 || offset > at.stored {
        return Err(Error::BadParam(format!(
            "{} offset {offset} is not usable: {} bytes are stored, resume at {}",
            role.name(),
            at.stored,
            at.stored
        )));
    }
    if let Some(dir) = at.staging.parent() {
        if role == Role::Origin {
            make_staging_dir(&ctx.library, dir)?;
        } else {
            std::fs::create_dir_all(dir).map_err(|e| internal(&dir.display().to_string(), e))?;
        }
    }
    if status == PartStatus::Uploading {
        return Ok(at.staging);
    }
    match role {
        Role::Origin => finish::reopen_origin(ctx, offset)?,
        Role::Thumb | Role::Screen => finish::reopen_thumb(ctx, &rec, role)?,
    }
    Ok(at.staging)
}

/// The disk side of one part: a blocking thread that truncates the staging
/// file to the offset, hashes what stays (read back once), appends the
/// chunks it is sent, and fsyncs — also when the request breaks off.
///
/// How the bytes reach the disk (direct I/O where the file system takes
/// it) is `upload/disk.rs`; a digest (`cm=`) is computed on a thread of its
/// own, beside the writes. No batch is written that would leave less than
/// the reserve free on the disk ([`space::Claim`]).
fn spawn_writer(
    path: PathBuf,
    offset: u64,
    cm: Option<Checksum>,
    mut rx: Queue,
    guard: FileGuard,
    reserve: space::Reserve,
) -> tokio::task::JoinHandle<std::io::Result<(u64, Option<String>)>> {
    tokio::task::spawn_blocking(move || {
        let _guard = guard;
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        f.set_len(offset)?;
        let mut hasher = cm.map(Hasher::new);
        if let Some(h) = hasher.as_mut() {
            let mut buf = vec![0u8; 1 << 20];
            let mut left = offset;
            f.seek(SeekFrom::Start(0))?;
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                let n = f.read(&mut buf[..want])?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                left -= n as u64;
            }
        }
        let digest = hasher.map(HashThread::start).transpose()?;
        let mut claim = space::Claim::new(offset, reserve);
        let written = disk::write_stream(&mut rx, &f, &path, offset, digest.as_ref(), &mut claim);
        if let Ok(route) = &written {
            log::debug!("upload: {} written ({route:?})", path.display());
        }
        // Room taken for bytes that never came (a broken request, a failed
        // write) goes back to the disk.
        if let Err(e) = claim.release(&f) {
            log::debug!("upload: {}: {e}", path.display());
        }
        // The rest of the request's bytes are not wanted: a writer that
        // stopped early lets the request see it at once.
        drop(rx);
        // Whatever reached the file is synced, success or not: the size
        // reported afterwards is what survives a power cut.
        let t = std::time::Instant::now();
        let synced = f.sync_all();
        log::debug!("upload: {} synced in {:?}", path.display(), t.elapsed());
        if synced.is_err() {
            // This request's bytes may not be on the disk, so they are not
            // counted as stored (the earlier requests' bytes were synced
            // before their replies): the client resends from `offset`.
            let _ = f.set_len(offset);
            let _ = f.sync_all();
        }
        let hex = digest.map(HashThread::finish).transpose();
        written?;
        synced?;
        let len = f.metadata()?.len();
        Ok((len, hex?))
    })
}

/// A digest computed on its own thread from the batches the writer writes
/// (the chunks are shared, not copied), bounded to a few batches ahead.
struct HashThread {
    tx: std::sync::mpsc::SyncSender<Vec<Bytes>>,
    done: std::thread::JoinHandle<String>,
}

impl HashThread {
    fn start(mut h: Hasher) -> std::io::Result<HashThread> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Bytes>>(2);
        let done = std::thread::Builder::new()
            .name("isync-upload-hash".into())
            .spawn(move || {
                while let Ok(batch) = rx.recv() {
                    for b in &batch {
                        h.update(b);
                    }
                }
                h.hex()
            })?;
        Ok(HashThread { tx, done })
    }

    fn feed(&self, batch: Vec<Bytes>) {
        // Only fails when the thread is gone (a panic), reported by finish.
        let _ = self.tx.send(batch);
    }

    fn finish(self) -> std::io::Result<String> {
        drop(self.tx);
        self.done
            .join()
            .map_err(|_| std::io::Error::other("the checksum thread failed"))
    }
}

/// Result of one fully received part.
struct Received {
    role: Role,
    staging: PathBuf,
    digest: Option<String>,
}

/// `uploadFile.icc`: streams the multipart `body` to disk (spec §9.2).
/// `prerender` is told when the original becomes complete.
///
/// The steps, in order: permission and boundary, the file's lock,
/// [`prepare`] (blocking checks), [`receive_parts`] (each part streamed
/// to its staging file), [`complete`] (the record and the reply).
pub(crate) async fn receive<S, E>(
    db: &Db,
    cfg: &Arc<Config>,
    prerender: &Prerender,
    s: &Session,
    req: UploadRequest,
    content_type: Option<String>,
    body: S,
) -> Result<UploadReply>
where
    S: futures_util::Stream<Item = std::result::Result<Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    s.require(crate::perms::Perm::Upload)?;
    let boundary = content_type
        .as_deref()
        .and_then(multipart::boundary)
        .ok_or_else(|| {
            Error::BadParam("the body must be multipart/form-data with a boundary".into())
        })?;
    let guard = lock_file(db, req.id).await?;
    let (ctx, quota_room) = prepare(db, cfg, s, req.id, req.body_len).await?;
    let max_file = cfg.upload.max_file_bytes;
    let max_thumb = cfg.upload.max_thumb_bytes;
    let limit = max_file
        .saturating_add(2 * max_thumb)
        .saturating_add(1 << 20);
    let mut mp = multipart::Multipart::new(body, &boundary, limit);
    let shared = PartShared {
        ctx: &ctx,
        req: &req,
        guard: &guard,
        max_file,
        max_thumb,
        quota_room,
        quota_max: cfg.upload.user_quota_bytes,
    };
    let received = receive_parts(&mut mp, &shared).await?;
    complete(&ctx, guard, prerender, req.cm, received).await
}

/// The checks before any byte of the body is read, on a blocking thread:
/// the file exists for `s` and `s` may change it, its library is online,
/// a move a crash left unfinished is finished, the announced body fits
/// the free space. Returns the request's context and the room left in
/// the uploader's quota (`None`: no quota applies).
async fn prepare(
    db: &Db,
    cfg: &Config,
    s: &Session,
    id: FileId,
    body_len: Option<u64>,
) -> Result<(Arc<Ctx>, Option<u64>)> {
    let (db2, s2) = (db.clone(), s.clone());
    let cfg2 = cfg.clone();
    let quota = cfg.upload.user_quota_bytes;
    tokio::task::spawn_blocking(move || {
        let rec = db2
            .read(|c| files::accessible(c, id, &s2.roots))?
            .ok_or_else(|| Error::BadParam(format!("file {} not found", id.0)))?;
        // Every part (origin, thumb, screen), pending or complete, is
        // written by its uploader or a moderator only: the rule of
        // updateFile.icc and deleteFiles.icc. Checked before anything
        // is read or written.
        crate::accounts::check_change_file(&s2, rec.upload_user_id, id)?;
        let library = library_of(&db2, id)?;
        // Online before anything is looked for on its disk.
        space::check_online(&db2, &library)?;
        let thumb_dir = space::client_thumbs_for(&cfg2, &library, id);
        let ctx = Ctx {
            db: db2,
            id,
            reserve: space::Reserve::for_dir(&cfg2, &library),
            thumb_reserve: space::Reserve::for_dir(&cfg2, &thumb_dir),
            library,
            thumbs: thumb_dir,
            user: s2.user_id,
        };
        // A move a crash left unfinished (its library was offline at
        // start) is finished before anything else.
        recover::settle_file(&ctx)?;
        if let Some(n) = body_len {
            space::check_free(&ctx.library, n, ctx.reserve)?;
        }
        // The quota is the file's uploader's (a moderator's upload to
        // it counts for them too).
        let room = match rec.upload_user_id {
            Some(owner) => ctx
                .db
                .read(|c| space::quota_room(c, quota, owner, Some(id)))?,
            None => None,
        };
        Ok::<_, Error>((Arc::new(ctx), room))
    })
    .await?
}

/// What every part of one request shares.
struct PartShared<'a> {
    ctx: &'a Arc<Ctx>,
    req: &'a UploadRequest,
    guard: &'a FileGuard,
    /// `upload.max_file_bytes`, `upload.max_thumb_bytes`.
    max_file: u64,
    max_thumb: u64,
    /// Room left in the uploader's quota (`None`: no quota applies).
    quota_room: Option<u64>,
    /// `upload.user_quota_bytes`, named in the over-quota message.
    quota_max: u64,
}

/// Reads the parts of the body one by one: form fields are skipped
/// (bounded), each of origin, thumb and screen is streamed to its
/// staging file at most once. Stops at the first problem.
async fn receive_parts(
    mp: &mut multipart::Multipart,
    sh: &PartShared<'_>,
) -> Result<Vec<Received>> {
    let mut received: Vec<Received> = Vec::new();
    let mut parts = 0usize;
    loop {
        let head = match mp.next_part().await {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(e) => return Err(Error::BadParam(format!("malformed multipart body: {e}"))),
        };
        parts += 1;
        if parts > MAX_PARTS {
            return Err(Error::BadParam(format!(
                "too many parts in the body (at most {MAX_PARTS})"
            )));
        }
        let Some(role) = part_role(head)? else {
            skip_field(mp).await?;
            continue;
        };
        if received.iter().any(|r| r.role == role) {
            return Err(Error::BadParam(format!(
                "part {} sent twice in one request",
                role.name()
            )));
        }
        received.push(receive_part(mp, sh, role).await?);
    }
    Ok(received)
}

/// Which part a part head names (its file name first, then its field
/// name); `None` for a plain form field. Refuses over-long names and a
/// file part of unknown name.
fn part_role(head: multipart::PartHead) -> Result<Option<Role>> {
    let multipart::PartHead { name, file_name } = head;
    for n in [&name, &file_name].into_iter().flatten() {
        if n.chars().count() > MAX_PART_NAME_CHARS {
            return Err(Error::BadParam(format!(
                "part name longer than {MAX_PART_NAME_CHARS} characters"
            )));
        }
    }
    let role = file_name
        .as_deref()
        .and_then(Role::parse)
        .or_else(|| name.as_deref().and_then(Role::parse));
    if role.is_none() && file_name.is_some() {
        return Err(Error::BadParam(format!(
            "unknown part {:?}: parts are origin, thumb and screen",
            file_name.unwrap_or_default()
        )));
    }
    Ok(role)
}

/// A plain form field: read and ignore (bounded).
async fn skip_field(mp: &mut multipart::Multipart) -> Result<()> {
    let mut n = 0u64;
    loop {
        match mp.chunk().await {
            Ok(Some(b)) => {
                n += b.len() as u64;
                if n > MAX_FIELD_BYTES {
                    return Err(Error::BadParam(format!(
                        "form field larger than {MAX_FIELD_BYTES} bytes"
                    )));
                }
            }
            Ok(None) => return Ok(()),
            Err(e) => return Err(Error::BadParam(format!("malformed multipart body: {e}"))),
        }
    }
}

/// Streams one part to its staging file: makes the part pending
/// ([`begin_part`]), feeds a writer thread, and on a problem drains what
/// the client may still be sending before answering.
async fn receive_part(
    mp: &mut multipart::Multipart,
    sh: &PartShared<'_>,
    role: Role,
) -> Result<Received> {
    let (ctx, req) = (sh.ctx, sh.req);
    let offset = match role {
        Role::Origin => req.obp,
        Role::Thumb => req.tbp,
        Role::Screen => req.sbp,
    };
    let staging = {
        let ctx = ctx.clone();
        tokio::task::spawn_blocking(move || begin_part(&ctx, role, offset)).await??
    };
    let limit = if role == Role::Origin {
        sh.max_file
    } else {
        sh.max_thumb
    };
    // The original counts against its uploader's quota (thumbnails,
    // bounded by `max_thumb_bytes`, do not).
    let quota = sh.quota_room.filter(|_| role == Role::Origin);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let writer = spawn_writer(
        staging.clone(),
        offset as u64,
        req.cm,
        rx,
        sh.guard.clone(),
        if role == Role::Origin {
            ctx.reserve
        } else {
            ctx.thumb_reserve
        },
    );
    let feed = PartFeed {
        role,
        limit,
        quota,
        quota_max: sh.quota_max,
    };
    // `tx` is dropped when the feed ends, so the writer sees the end.
    let (problem, sending) = feed.run(mp, offset as u64, tx).await;
    let written = writer.await?;
    if let Some(p) = problem {
        if let Err(e) = written {
            log::warn!("upload of file {}: {e}", req.id.0);
        }
        if sending {
            mp.drain(DRAIN_BYTES).await;
        }
        return Err(p);
    }
    let digest = match written {
        Ok((_, digest)) => digest,
        Err(e) => {
            let (ctx, role) = (ctx.clone(), role);
            let e =
                tokio::task::spawn_blocking(move || write_failed(&ctx, role, &staging, e)).await?;
            mp.drain(DRAIN_BYTES).await;
            return Err(e);
        }
    };
    Ok(Received {
        role,
        staging,
        digest,
    })
}

/// The limits one part's bytes are held to on their way to the writer.
struct PartFeed {
    role: Role,
    /// Most bytes the stored part may hold.
    limit: u64,
    /// Room left in the quota, when it applies to this part.
    quota: Option<u64>,
    quota_max: u64,
}

impl PartFeed {
    /// Passes the part's chunks to the writer through `tx`, the part
    /// holding `offset` bytes before. Returns the problem that stopped
    /// it, if any, and whether the client may still be sending (see
    /// DRAIN_BYTES). A writer that failed stops the feed with no problem
    /// here: its error is reported by the caller.
    async fn run(
        &self,
        mp: &mut multipart::Multipart,
        offset: u64,
        tx: tokio::sync::mpsc::UnboundedSender<(Bytes, tokio::sync::OwnedSemaphorePermit)>,
    ) -> (Option<Error>, bool) {
        let (role, limit) = (self.role, self.limit);
        let room = Arc::new(tokio::sync::Semaphore::new(QUEUE_BYTES >> 10));
        let mut total = offset;
        loop {
            match mp.chunk().await {
                Ok(Some(b)) => {
                    total += b.len() as u64;
                    if total > limit {
                        let e = Error::BadParam(format!(
                            "part {} is larger than the limit of {limit} bytes",
                            role.name()
                        ));
                        return (Some(e), true);
                    }
                    if let Some(q) = self.quota.filter(|q| total > *q) {
                        return (Some(space::over_quota(self.quota_max, q, total)), true);
                    }
                    // Bounded by bytes, whatever the chunk sizes: a chunk
                    // waits for room in the queue (KiB granules).
                    let kib = (b.len() >> 10).clamp(1, QUEUE_BYTES >> 10) as u32;
                    let Ok(permit) = room.clone().acquire_many_owned(kib).await else {
                        return (None, true);
                    };
                    if tx.send((b, permit)).is_err() {
                        return (None, true); // the writer failed
                    }
                }
                Ok(None) => return (None, true),
                Err(e) => {
                    let e = Error::BadParam(format!(
                        "the body broke off in part {}: {e}; resume from the size uploadingInfo.icc reports",
                        role.name()
                    ));
                    return (Some(e), false);
                }
            }
        }
    }
}

/// Completes the received parts (blocking, holding the file's lock to
/// the end), asks for the thumbnails of a new original, and builds the
/// reply with the digests asked for.
async fn complete(
    ctx: &Arc<Ctx>,
    guard: FileGuard,
    prerender: &Prerender,
    cm: Option<Checksum>,
    received: Vec<Received>,
) -> Result<UploadReply> {
    let ctx2 = ctx.clone();
    let done: Vec<(Role, PathBuf)> = received
        .iter()
        .map(|r| (r.role, r.staging.clone()))
        .collect();
    let (record, sizes) = tokio::task::spawn_blocking(move || {
        let _guard = guard;
        finish::complete(&ctx2, &done)
    })
    .await??;
    // The original is in its folder and the record says complete: render
    // its thumbnails now rather than when the watcher's scan (if any) sees
    // the file. Client-made levels (status 3) are left alone.
    if received.iter().any(|r| r.role == Role::Origin) {
        prerender.request_file(record.id);
    }
    let checks = cm.map(|_| {
        let mut c = Checks::default();
        for r in received {
            match r.role {
                Role::Origin => c.origin = r.digest,
                Role::Thumb => c.thumb = r.digest,
                Role::Screen => c.screen = r.digest,
            }
        }
        c
    });
    Ok(UploadReply {
        record,
        sizes,
        checks,
    })
}

/// What a failed write of a part means for the client: no room (the
/// free-space reserve or a full disk: −10014, saying how much is stored),
/// the disk gone (−10011, quietly), or an internal error (−102, logged).
/// Blocking (checks the disk).
fn write_failed(ctx: &Ctx, role: Role, staging: &Path, e: std::io::Error) -> Error {
    if space::is_no_space(&e) {
        log::debug!("upload of file {}: {e}", ctx.id.0);
        return Error::StorageFull(format!(
            "not enough free space on the server for the {} part ({e}); {} bytes of it are \
             stored: resume from there once space is freed",
            role.name(),
            len_of(staging)
        ));
    }
    let offline = match role {
        Role::Origin => ctx.check_online().is_err(),
        // Client thumbnails live in the data dir, not on a library disk.
        _ => false,
    };
    if offline {
        log::debug!("upload of file {}: {e} (its disk is offline)", ctx.id.0);
        return space::offline();
    }
    internal(&format!("writing {}", staging.display()), e)
}

/// Valid `type` values (spec §2.2).
pub(crate) fn valid_type(t: i64) -> bool {
    FileType::from_bits(t).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announce() -> Announce {
        Announce {
            catalog: CatalogId(5),
            name: "IMG_1".into(),
            ext: "jpg".into(),
            size: 10,
            file_type: 1,
            client_thumb: true,
            client_screen: false,
            create_time: Some(100),
            import_time: None,
            last_modify: None,
            duration: None,
            width: Some(4000),
            height: Some(3000),
            orientation: None,
            longitude: None,
            latitude: None,
            memo: Some("m".into()),
            help_int: None,
            help_text: None,
        }
    }

    #[test]
    fn an_announcement_becomes_a_pending_record_in_the_found_catalog() {
        let r = announce().record(CatalogId(8), CatalogId(2), UserId(3), ".p".into(), 900);
        assert_eq!(
            (r.catalog_id, r.root_id, r.uploader),
            (CatalogId(8), CatalogId(2), UserId(3))
        );
        assert_eq!(r.placeholder, ".p");
        // Times the client left out are the announcement's.
        assert_eq!(
            (r.create_time, r.import_time, r.last_modify, r.upload_time),
            (100, 900, 900, 900)
        );
        // Only the thumbnails the client sends itself wait for it.
        assert_eq!(r.status_thumb, PartStatus::Uploading as i64);
        assert_eq!(r.status_screen, PartStatus::Local as i64);
        assert_eq!(
            (r.name.as_str(), r.size, r.width, r.memo.as_deref()),
            ("IMG_1", 10, Some(4000), Some("m"))
        );
    }
}
