//! Read-side services: catalogs, file listing, help info, and the default
//! root a user without a library gets (spec §5). Every lookup is filtered by
//! the session's root set: anything else behaves as if it did not exist.

use crate::accounts;
use crate::db::{self, catalogs, files, libraries, listing, users, Db};
use crate::error::{Error, Result};
use crate::library::roots::path_key;
use crate::library::watcher::root_online;
use crate::model::{Catalog, CatalogId, FileId, FileRecord, UserId};
use crate::perms::{Perm, Session};
use crate::safeopen::{self, SafeOpenError};
use std::path::Path;

/// Help info of a user, catalog or file (spec §3.5).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HelpInfo {
    pub help_int: Option<i64>,
    pub help_text: Option<String>,
    pub last_modify: Option<i64>,
}

/// Which record `helpInfo.icc` addresses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HelpTarget {
    User,
    Catalog(CatalogId),
    File(FileId),
}

pub async fn catalogs(db: &Db, s: &Session, pids: Vec<i64>) -> Result<Vec<Catalog>> {
    s.require(Perm::Browse)?;
    let roots = s.roots.clone();
    Ok(db
        .read_async(move |c| catalogs::children(c, &pids, &roots))
        .await?)
}

/// One page of `files.icc` and the total number of matches.
pub async fn files_page(db: &Db, q: listing::Query) -> Result<(Vec<FileRecord>, usize)> {
    let db2 = db.clone();
    Ok(tokio::task::spawn_blocking(move || {
        let idx = db2.listing()?;
        let (ids, total) = idx.page(&q);
        let recs = db2.read(|c| files::by_ids(c, &ids))?;
        Ok::<_, db::DbError>((recs, total))
    })
    .await??)
}

pub async fn help_info(db: &Db, s: &Session, t: HelpTarget) -> Result<HelpInfo> {
    s.require(Perm::Browse)?;
    let (uid, roots) = (s.user_id, s.roots.clone());
    Ok(db
        .read_async(move |c| {
            Ok(match t {
                HelpTarget::User => users::by_id(c, uid)?.map(|u| HelpInfo {
                    help_int: u.help_int,
                    help_text: u.help_text,
                    last_modify: Some(u.last_modify),
                }),
                HelpTarget::Catalog(id) => catalogs::accessible(c, id, &roots)?.map(|x| HelpInfo {
                    help_int: x.help_int,
                    help_text: x.help_text,
                    last_modify: Some(x.last_modify),
                }),
                HelpTarget::File(id) => files::accessible(c, id, &roots)?.map(|x| HelpInfo {
                    help_int: x.help_int,
                    help_text: x.help_text,
                    last_modify: Some(x.last_modify),
                }),
            }
            .unwrap_or_default())
        })
        .await?)
}

pub async fn update_help_info(
    db: &Db,
    s: &Session,
    t: HelpTarget,
    help_int: Option<i64>,
    help_text: Option<String>,
) -> Result<()> {
    s.require(Perm::Browse)?;
    let (uid, roots, s) = (s.user_id, s.roots.clone(), s.clone());
    let db2 = db.clone();
    // A user's own help info is theirs to keep; a catalog's or file's is
    // an edit of that record (spec §6.3), checked like one.
    let changed = tokio::task::spawn_blocking(move || {
        accounts::write_checked(&db2, |tx| {
            let now = db::now();
            let text = help_text.as_deref();
            Ok(match t {
                HelpTarget::User => users::set_help(tx, uid, help_int, text, now)?,
                HelpTarget::Catalog(id) => {
                    catalogs::accessible(tx, id, &roots)?.is_some() && {
                        accounts::check_change_catalog(tx, &s, id, false)?;
                        catalogs::set_help(tx, id, help_int, text, now)?
                    }
                }
                HelpTarget::File(id) => match files::accessible(tx, id, &roots)? {
                    Some(f) => {
                        accounts::check_change_file(&s, f.upload_user_id, id)?;
                        files::set_help(tx, id, help_int, text, now)?
                    }
                    None => false,
                },
            })
        })
    })
    .await??;
    if changed {
        Ok(())
    } else {
        Err(Error::NotFound("no such record for this user".into()))
    }
}

/// −10011 for file `id` whose library's disk is found missing now (before
/// the watcher has marked the library offline): a client retries it, where
/// "gone" (−10006) it may take as a deletion.
pub(crate) fn disk_not_there(id: FileId) -> Error {
    Error::Offline(format!(
        "file {} is in a library whose disk is not there right now (unplugged or \
         unmounted?); try again when it is back",
        id.0
    ))
}

/// A file this session may read, whose original is complete and on disk.
/// Distinguishes: not accessible (−10004), offline library, gone (−10006).
pub async fn readable_file(db: &Db, s: &Session, id: FileId) -> Result<FileRecord> {
    s.require(Perm::Browse)?;
    let roots = s.roots.clone();
    let (rec, online) = db
        .read_async(move |c| {
            let Some(rec) = files::accessible(c, id, &roots)? else {
                return Ok((None, true));
            };
            let online = libraries::by_id(c, rec.library_id)?.is_none_or(|l| l.online);
            Ok((Some(rec), online))
        })
        .await?;
    let rec = rec.ok_or_else(|| Error::NotFound(format!("file {} not found", id.0)))?;
    if !online {
        return Err(Error::Offline(format!(
            "file {} is in a library that is offline (disk unplugged?); try again when it is back",
            id.0
        )));
    }
    Ok(rec)
}

/// An original opened for reading: the file itself (below its library's
/// root, reached through no symlink, the inode the scanner recorded) and
/// its metadata. Sent from this open file, never by path again.
#[derive(Debug)]
pub struct Original {
    pub file: std::fs::File,
    pub meta: std::fs::Metadata,
}

/// Opens the original of `rec` for sending (`downFile`, `shareFile`).
///
/// The path is resolved by the kernel below the library's root without
/// following any symlink (`safeopen::open_in_root`): a listed file or a
/// folder on its path swapped for a symlink between the scan and this
/// request is refused, never followed out of the library. The file must be
/// the one recorded (same inode). A miss is checked against the library's
/// root at that moment: when the root is missing or is not the library's
/// disk (unplugged, unmounted, another disk at the mount point) the answer
/// is "offline" (−10011), which a client retries, never "gone" (−10006),
/// which it may take as a deletion — the watcher may not have noticed yet.
pub async fn open_original(db: &Db, rec: &FileRecord) -> Result<Original> {
    let (db, rec) = (db.clone(), rec.clone());
    tokio::task::spawn_blocking(move || open_original_blocking(&db, &rec)).await?
}

fn open_original_blocking(db: &Db, rec: &FileRecord) -> Result<Original> {
    let lib = db.read(|c| libraries::by_id(c, rec.library_id))?;
    let opened = match &lib {
        Some(lib) => {
            safeopen::open_in_root(Path::new(&lib.path), Path::new(&rec.path)).and_then(|file| {
                let meta = same_file(&file, rec)?;
                Ok(Original { file, meta })
            })
        }
        None => Err(SafeOpenError::Missing),
    };
    let why = match opened {
        Ok(o) => return Ok(o),
        Err(why) => why,
    };
    if !root_online(db, rec.library_id)? {
        return Err(disk_not_there(rec.id));
    }
    match why {
        SafeOpenError::Io(e) => Err(Error::Internal(format!("open {:?}: {e}", rec.path))),
        SafeOpenError::Escapes => {
            // Someone with write access to the library planted a symlink:
            // worth the operator's attention.
            log::warn!(
                "refused to send file {} ({:?}): {}",
                rec.id.0,
                rec.path,
                SafeOpenError::Escapes
            );
            Err(Error::FileGone(format!(
                "the original of file {} is not a plain file inside its library any more",
                rec.id.0
            )))
        }
        SafeOpenError::Replaced => Err(Error::FileGone(format!(
            "the original of file {} was replaced on disk since it was scanned; try again \
             in a moment",
            rec.id.0
        ))),
        SafeOpenError::Missing | SafeOpenError::NotRegular => Err(Error::FileGone(format!(
            "the original of file {} is missing on disk",
            rec.id.0
        ))),
    }
}

/// Checks that `file` is the original `rec` describes: the inode the
/// scanner recorded or, failing that, the recorded size and mtime — the
/// scanner's own test of "unchanged" at a known path, which a library
/// copied to a new disk (`cp -a`, rsync) passes with new inodes, and which
/// a hard link to some other file planted at that path does not.
fn same_file(file: &std::fs::File, rec: &FileRecord) -> Result<std::fs::Metadata, SafeOpenError> {
    match safeopen::check_identity(file, rec.inode) {
        Err(SafeOpenError::Replaced) => {
            let meta = file.metadata()?;
            let unchanged = meta.len() as i64 == rec.size
                && rec.mtime_ns == Some(crate::library::scan::mtime_ns(&meta));
            if unchanged {
                Ok(meta)
            } else {
                Err(SafeOpenError::Replaced)
            }
        }
        other => other,
    }
}

/// The user's roots, creating the default root `<default_user_path>/<id>`
/// named `iSyncRoot` when there is none (spec §5). Blocking.
pub fn ensure_roots(db: &Db, default_user_path: &Path, user: UserId) -> Result<Vec<CatalogId>> {
    let roots = db.read(|c| users::roots(c, user))?;
    if !roots.is_empty() {
        return Ok(roots);
    }
    let dir = default_user_path.join(user.0.to_string());
    // The users folder may live on a library's disk (the appliance keeps it
    // there, off the SD card): never create it under that disk's empty
    // mount point.
    if let Some((lib, why)) = crate::library::roots::offline_holder(db, &dir)? {
        log::debug!(
            "no root folder for user {}: library {} is offline ({why})",
            user.0,
            lib.path
        );
        return Err(Error::Offline(
            "the disk holding your folder is offline (unplugged or not mounted); try again \
             when it is back"
                .into(),
        ));
    }
    std::fs::create_dir_all(&dir).map_err(|e| {
        log::error!("cannot create the root folder {}: {e}", dir.display());
        Error::NoRootPath(format!("cannot create a root folder for user {}", user.0))
    })?;
    let key = path_key(&dir);
    let now = db::now();
    db.write(|tx| {
        let lib = match libraries::by_path(tx, &key)? {
            Some(l) => l,
            None => {
                let id = libraries::insert(tx, &key, "user")?;
                libraries::by_id(tx, id)?.expect("just inserted")
            }
        };
        let root = match lib.root_id {
            Some(r) => r,
            None => {
                let r = catalogs::insert(
                    tx,
                    &catalogs::NewCatalog {
                        root_id: None,
                        parent_id: None,
                        library_id: lib.id,
                        path: &key,
                        name: "iSyncRoot",
                        create_time: now,
                        now,
                    },
                )?;
                libraries::set_root(tx, lib.id, r)?;
                r
            }
        };
        users::grant_root(tx, user, root)?;
        Ok(())
    })?;
    Ok(db.read(|c| users::roots(c, user))?)
}
