//! Where an upload may write, and how much (security issue #12, part B):
//! - the disk must be there: a library whose root is missing or is not the
//!   recorded disk (an empty mount point on the SD card) is offline, and so
//!   is everything below it, a users folder kept on the library disk
//!   included (→ −10011, one warning per library going offline);
//! - every disk keeps `upload.min_free_bytes` free: checked against the
//!   announced size, and by the writer before each batch it writes
//!   ([`Claim`]);
//! - a user's uploads stay within `upload.user_quota_bytes`;
//! - the data dir's disk (the SD card on the appliance: database, users
//!   folder, client thumbnails) keeps `storage.data_min_free_bytes` free
//!   ([`Reserve::for_dir`], [`DataRoom`]), so the database and the logs
//!   never meet a full card.

use crate::config::Config;
use crate::db::{uploads, Db};
use crate::error::{Error, Result};
pub use crate::freespace::free_bytes;
use crate::freespace::free_of;
use crate::library::roots;
use crate::model::{FileId, UserId};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Bytes a writer may hold that are not yet allocated on its disk, where
/// the file system cannot allocate ahead ([`Claim`]): the request's queue
/// and the direct-I/O blocks (`upload/disk.rs`), with room to spare.
const UNALLOCATED_BYTES: u64 = 24 << 20;

/// Refuses (−10011) when the library holding `path`, or a library
/// enclosing it, is offline right now. The first refusal marks it offline
/// (one warning); later ones are quiet. Blocking: a stat and a small read
/// per library.
pub(crate) fn check_online(db: &Db, path: &Path) -> Result<()> {
    match roots::offline_holder(db, path)? {
        None => Ok(()),
        Some(_) => Err(offline()),
    }
}

pub(crate) fn offline() -> Error {
    Error::Offline(
        "the disk this upload goes to is offline (unplugged or not mounted); nothing was \
         stored; try again when it is back"
            .into(),
    )
}

/// The free space a write must leave on one disk, and the setting that
/// asks for it (named in refusals).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Reserve {
    pub bytes: u64,
    pub setting: &'static str,
}

const UPLOAD_SETTING: &str = "upload.min_free_bytes";
const DATA_SETTING: &str = "storage.data_min_free_bytes";

impl Reserve {
    /// The reserve for writes into `dir`: `upload.min_free_bytes`, or the
    /// data dir's larger one when `dir` is on the data dir's file system.
    /// Blocking (stats).
    pub(crate) fn for_dir(cfg: &Config, dir: &Path) -> Reserve {
        let upload = Reserve {
            bytes: cfg.upload.min_free_bytes,
            setting: UPLOAD_SETTING,
        };
        let data = cfg.storage.data_min_free_bytes;
        if data > upload.bytes && same_disk(dir, &cfg.data_dir) {
            Reserve {
                bytes: data,
                setting: DATA_SETTING,
            }
        } else {
            upload
        }
    }

    /// No reserve (tests of the writer).
    #[cfg(test)]
    pub(crate) fn none() -> Reserve {
        Reserve {
            bytes: 0,
            setting: UPLOAD_SETTING,
        }
    }

    fn is_data(&self) -> bool {
        self.setting == DATA_SETTING
    }
}

/// Whether `a` and `b` (or their nearest existing ancestors: an upload's
/// folder may not exist yet) are on one file system.
fn same_disk(a: &Path, b: &Path) -> bool {
    let dev = |p: &Path| {
        p.ancestors()
            .find_map(|q| std::fs::metadata(q).ok())
            .map(|m| m.dev())
    };
    matches!((dev(a), dev(b)), (Some(x), Some(y)) if x == y)
}

/// The thumbnail folder file `id`'s client thumbnails are written to (its
/// `uploaded/` below): where one of them already is
/// (`layout::client_thumb_dir`); for a file with none yet, its library's
/// own (`<library>/.isync/thumbs`, beside the library's thumbnail cache,
/// `thumbnails.location = "library"`) when the folder can be made below
/// its root (called with the library online, as its staging folder is
/// made) and that disk is above its reserve; else the data dir's
/// (`<data_dir>/thumbs`), as the cache falls back to. Either way the part
/// is then written under the reserve of the disk it lands on
/// ([`Reserve::for_dir`]). Blocking.
pub(crate) fn client_thumbs_for(cfg: &Config, library: &Path, id: FileId) -> PathBuf {
    use crate::library::layout::{client_thumb_dir, has_client_thumbs};
    let data = cfg.thumb_dir();
    let found = client_thumb_dir(library, &data, id);
    if found != data || has_client_thumbs(&data, id) {
        return found;
    }
    library_takes_client_thumbs(cfg, library).unwrap_or(data)
}

/// The library's own thumbnail folder (`<library>/.isync/thumbs`, its
/// `uploaded/` made) when client thumbnails go there: configured so
/// (`thumbnails.location = "library"`), its root there, the folders made
/// (a read-only disk fails here) and its disk above its reserve. `None`:
/// they go to the data dir. Blocking.
pub(crate) fn library_takes_client_thumbs(cfg: &Config, library: &Path) -> Option<PathBuf> {
    use crate::media::thumbstore::{make_dir, ThumbLocation};
    let own = crate::library::layout::library_thumb_dir(library);
    let usable = cfg.thumbnails.location == ThumbLocation::Library
        && library.is_dir()
        && make_dir(&library.join(crate::model::HIDDEN_DIR))
            .and_then(|()| make_dir(&own))
            .and_then(|()| make_dir(&own.join("uploaded")))
            .is_ok()
        && free_bytes(&own).is_ok_and(|f| f >= Reserve::for_dir(cfg, &own).bytes);
    usable.then_some(own)
}

/// −10014 unless `bytes` more fit on the disk holding `dir` with the
/// reserve left over. Blocking.
pub(crate) fn check_free(dir: &Path, bytes: u64, reserve: Reserve) -> Result<()> {
    let free = free_bytes(dir)
        .map_err(|e| Error::Internal(format!("free space of {}: {e}", dir.display())))?;
    let min_free = reserve.bytes;
    if bytes.saturating_add(min_free) <= free {
        return Ok(());
    }
    Err(Error::StorageFull(if reserve.is_data() {
        format!(
            "the server's SD card (data_dir) is nearly full: {bytes} bytes do not fit while \
             keeping its reserve for the database and logs ({DATA_SETTING} = {min_free}; \
             {free} bytes free); uploads to it are paused until space is freed there"
        )
    } else {
        format!(
            "not enough free space on the server: {bytes} bytes do not fit while keeping the \
             free-space reserve ({UPLOAD_SETTING} = {min_free}; {free} bytes free); free some \
             space on the server's disk"
        )
    }))
}

/// How many bytes `user`'s uploads may still hold, besides file `except`
/// (None: no quota).
pub(crate) fn quota_room(
    c: &rusqlite::Connection,
    quota: u64,
    user: UserId,
    except: Option<FileId>,
) -> std::result::Result<Option<u64>, crate::db::DbError> {
    if quota == 0 {
        return Ok(None);
    }
    let used = uploads::charged_to(c, user, except)?;
    Ok(Some(quota.saturating_sub(used.max(0) as u64)))
}

pub(crate) fn over_quota(quota: u64, room: u64, wanted: u64) -> Error {
    Error::StorageFull(format!(
        "upload quota exceeded: your uploads may hold {quota} bytes \
         (upload.user_quota_bytes) and {room} bytes are left, this file needs {wanted}; \
         delete some of your files or ask the server's admin for more"
    ))
}

/// The writer stopped: the next bytes would have crossed the reserve.
#[derive(Debug)]
pub(crate) struct ReserveReached {
    pub free: u64,
    pub reserve: Reserve,
}

impl std::fmt::Display for ReserveReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the disk keeps {} bytes free ({}) and has {} free",
            self.reserve.bytes, self.reserve.setting, self.free
        )
    }
}

impl std::error::Error for ReserveReached {}

/// Whether a write failed for want of space (the reserve, or the disk or a
/// disk quota really full).
pub(crate) fn is_no_space(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|r| r.is::<ReserveReached>())
        || e.raw_os_error().is_some_and(|n| {
            n == rustix::io::Errno::NOSPC.raw_os_error()
                || n == rustix::io::Errno::DQUOT.raw_os_error()
        })
}

/// How far ahead of the bytes written the writer takes room on the disk,
/// at most: steps grow with what the upload wrote so far (a thumbnail takes
/// just its own room, which on tmpfs is memory), up to one `fallocate` and
/// a few `fstatvfs` per 64 MiB, so the direct path's throughput stays that
/// of the disk.
const CLAIM_STEP_BYTES: u64 = 64 << 20;

/// The writer's side of the reserve: room is taken on the disk ahead of the
/// bytes written — a step at a time far from the reserve, only what the
/// batch needs near it — and a batch is refused when its room leaves less
/// than `min_free` free. Where the file system allocates ahead (`fallocate`
/// with `KEEP_SIZE`: ext4, xfs, btrfs, tmpfs) the room is allocated first
/// and the free space read after, so concurrent uploads see each other's
/// room and never cross the reserve together. Elsewhere (exFAT, vfat) a
/// margin stands for the bytes still on their way to the disk.
///
/// Nothing is given back while the stream runs: the direct-I/O thread may
/// be extending the file at that moment, and past the end of a file only a
/// truncation frees room on ext4. [`Claim::release`] does it once the
/// writes are done.
pub(crate) struct Claim {
    reserve: Reserve,
    /// Where the stream started.
    start: u64,
    /// The file offset up to which bytes were let through.
    used: u64,
    /// The file offset up to which room is taken for them.
    end: u64,
    /// The furthest offset allocated (a refused batch's room included).
    allocated: u64,
    ahead: bool,
}

impl Claim {
    pub(crate) fn new(start: u64, reserve: Reserve) -> Claim {
        Claim {
            reserve,
            start,
            used: start,
            end: start,
            allocated: start,
            ahead: true,
        }
    }

    /// Lets the next `n` bytes of `f` through, taking room for them if
    /// needed, or fails with [`ReserveReached`] (letting nothing through).
    pub(crate) fn take(&mut self, f: &File, n: u64) -> std::io::Result<()> {
        let want = self.used + n;
        if want <= self.end {
            self.used = want;
            return Ok(());
        }
        let short = want - self.end;
        let far = free_of(f)?
            >= self
                .reserve
                .bytes
                .saturating_add(2 * CLAIM_STEP_BYTES)
                .saturating_add(UNALLOCATED_BYTES);
        let len = if far {
            short.max((self.used - self.start).min(CLAIM_STEP_BYTES))
        } else {
            short
        };
        self.room(f, len)?;
        self.end += len;
        self.used = want;
        Ok(())
    }

    /// Takes `len` bytes of room from `self.end` on; fails if that leaves
    /// less than the reserve.
    fn room(&mut self, f: &File, len: u64) -> std::io::Result<()> {
        use rustix::fs::FallocateFlags;
        if self.ahead {
            match rustix::fs::fallocate(f, FallocateFlags::KEEP_SIZE, self.end, len) {
                Ok(()) => self.allocated = self.allocated.max(self.end + len),
                Err(rustix::io::Errno::NOSPC | rustix::io::Errno::DQUOT) => {
                    return Err(self.reached(free_of(f)?));
                }
                Err(e) => {
                    log::debug!("upload: no allocation ahead ({e}); counting a margin instead");
                    self.ahead = false;
                }
            }
        }
        let free = free_of(f)?;
        let need = if self.ahead {
            self.reserve.bytes
        } else {
            self.reserve
                .bytes
                .saturating_add(len)
                .saturating_add(UNALLOCATED_BYTES)
        };
        if free < need {
            return Err(self.reached(free));
        }
        Ok(())
    }

    fn reached(&self, free: u64) -> std::io::Error {
        std::io::Error::other(ReserveReached {
            free,
            reserve: self.reserve,
        })
    }

    /// Frees the room taken past the end of `f` (for bytes that never came,
    /// or refused), once nothing writes to it any more.
    pub(crate) fn release(&self, f: &File) -> std::io::Result<()> {
        let len = f.metadata()?.len();
        if self.allocated > len {
            f.set_len(len)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::freespace::DataRoom;

    #[test]
    fn a_full_disk_or_quota_is_no_space_other_errors_are_not() {
        // Linux's numbers on every target isync builds for.
        let (enospc, edquot, eio, einval) = (28, 122, 5, 22);
        for n in [enospc, edquot] {
            assert!(is_no_space(&std::io::Error::from_raw_os_error(n)), "{n}");
        }
        for n in [eio, einval] {
            assert!(!is_no_space(&std::io::Error::from_raw_os_error(n)), "{n}");
        }
        assert!(!is_no_space(&std::io::Error::other("not an errno")));
    }

    #[test]
    fn the_data_dirs_disk_keeps_the_larger_reserve() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = Config {
            data_dir: d.path().to_path_buf(),
            ..Config::default()
        };
        cfg.upload.min_free_bytes = 1 << 20;
        cfg.storage.data_min_free_bytes = 8 << 20;
        // A folder not made yet on the data dir's disk: its reserve.
        let users = d.path().join("users/7/.isync/uploads");
        let r = Reserve::for_dir(&cfg, &users);
        assert_eq!((r.bytes, r.setting), (8 << 20, DATA_SETTING));
        // Another file system (procfs): the uploads' reserve.
        let r = Reserve::for_dir(&cfg, Path::new("/proc/self"));
        assert_eq!((r.bytes, r.setting), (1 << 20, UPLOAD_SETTING));
        // The larger one wins on the data dir's disk too.
        cfg.upload.min_free_bytes = 16 << 20;
        assert_eq!(Reserve::for_dir(&cfg, &users).setting, UPLOAD_SETTING);
        // What fits the disk but not above the card's reserve is refused,
        // naming the card and the setting. (The machine is shared: other
        // writers move the free space by far less than a gigabyte.)
        std::fs::create_dir_all(&users).unwrap();
        let free = free_bytes(&users).unwrap();
        cfg.upload.min_free_bytes = 0;
        cfg.storage.data_min_free_bytes = 2 << 30;
        let fits = free.saturating_sub(1 << 30);
        check_free(&users, fits, Reserve::none()).unwrap();
        let e = check_free(&users, fits, Reserve::for_dir(&cfg, &users)).unwrap_err();
        assert!(e.to_string().contains("SD card"), "{e}");
        assert!(e.to_string().contains(DATA_SETTING), "{e}");
    }

    #[test]
    fn the_note_says_how_full_the_card_is() {
        let low = DataRoom {
            free: 120 << 20,
            reserve: 256 << 20,
        };
        assert_eq!(
            low.note().as_deref(),
            Some("SD card nearly full: 120 MiB free, reserve 256 MiB; uploads to it paused")
        );
        let small = DataRoom {
            free: 1_300_000,
            reserve: 4 << 20,
        };
        assert!(small
            .note()
            .unwrap()
            .contains("1.2 MiB free, reserve 4.0 MiB"));
        let fine = DataRoom {
            free: 257 << 20,
            reserve: 256 << 20,
        };
        assert!(!fine.low() && fine.note().is_none());
    }

    #[test]
    fn claims_stop_before_the_reserve() {
        let d = tempfile::tempdir().unwrap();
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(d.path().join("x"))
            .unwrap();
        // The machine is shared: other writers move the free space, by
        // far less than a gigabyte while this runs.
        let free = free_of(&f).unwrap();
        let mut c = Claim::new(
            0,
            Reserve {
                bytes: free.saturating_sub(1 << 30),
                setting: UPLOAD_SETTING,
            },
        );
        // Steps grow with what came: the first batch takes its own room,
        // the next ones as much as came before (up to a step).
        c.take(&f, 1 << 20).unwrap();
        assert_eq!(c.end, 1 << 20);
        c.take(&f, 4096).unwrap();
        assert_eq!(c.end, 2 << 20);
        for _ in 0..100 {
            c.take(&f, 1 << 20).unwrap();
        }
        assert!(
            c.end - c.used <= CLAIM_STEP_BYTES,
            "{} ahead",
            c.end - c.used
        );
        let used = c.used;
        // More than the whole disk has: refused, nothing taken.
        let e = c.take(&f, free + (1 << 30)).unwrap_err();
        assert!(is_no_space(&e), "{e}");
        assert!(e.to_string().contains("upload.min_free_bytes"), "{e}");
        assert_eq!(c.used, used);
        // The room taken ahead goes back (nothing was written).
        assert!(f.metadata().unwrap().blocks() * 512 >= c.end);
        c.release(&f).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 0);
        assert_eq!(f.metadata().unwrap().blocks(), 0);
        // No reserve at all: anything that fits the disk is fine.
        let mut c = Claim::new(0, Reserve::none());
        c.take(&f, 4096).unwrap();
        c.release(&f).unwrap();
    }
}
