//! Read-side services: catalogs, file listing, help info, and the default
//! root a user without a library gets (spec §5). Every lookup is filtered by
//! the session's root set: anything else behaves as if it did not exist.

use crate::accounts;
use crate::db::{self, catalogs, files, libraries, listing, users, Db};
use crate::error::{Error, Result};
use crate::library::roots::path_key;
use crate::library::watcher::root_online;
use crate::model::{Catalog, CatalogId, FileId, FileRecord, PartStatus, UserId};
use crate::perms::{Perm, Perms, Session};
use crate::safeopen::{self, SafeOpenError};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Help info of a user, catalog or file (spec §3.5).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct HelpInfo {
    pub help_int: Option<i64>,
    pub help_text: Option<String>,
    pub last_modify: Option<i64>,
}

/// Which record `helpInfo.icc` addresses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum HelpTarget {
    User,
    Catalog(CatalogId),
    File(FileId),
}

pub(crate) async fn catalogs(db: &Db, s: &Session, pids: Vec<i64>) -> Result<Vec<Catalog>> {
    s.require(Perm::Browse)?;
    let roots = s.roots.clone();
    Ok(db
        .read_async(move |c| catalogs::children(c, &pids, &roots))
        .await?)
}

/// Page sizes of `files.icc` (spec §6.9): a `maxPerPage` outside
/// `MIN_PER_PAGE..=MAX_PER_PAGE`, or none, means `DEFAULT_PER_PAGE`.
pub(crate) const DEFAULT_PER_PAGE: i64 = 100;
pub(crate) const MIN_PER_PAGE: i64 = 10;
pub(crate) const MAX_PER_PAGE: i64 = 10_000;

/// One `files.icc` request as the client sent it (spec §6.9); [`files`]
/// judges it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FilesRequest {
    pub page_index: i64,
    pub per_page: Option<i64>,
    /// Narrows the listing only when every id is one of the session's roots.
    pub root_ids: Option<Vec<i64>>,
    pub pids: Option<Vec<i64>>,
    pub types: Option<Vec<i64>>,
    /// −5..=5 (spec §2.5); anything else is 0.
    pub sort: Option<i64>,
    /// Only files the caller uploaded.
    pub only_self_upload: bool,
}

/// Where a page sits: the page size used and how many pages there are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PageInfo {
    pub page_index: i64,
    pub per_page: i64,
    pub page_count: i64,
}

/// One page of `files.icc`: each record as `encode` made it, in order.
#[derive(Debug)]
pub(crate) struct FilesPage {
    pub records: Vec<Arc<[u8]>>,
    pub page: PageInfo,
}

impl FilesRequest {
    /// The listing query for session `s` and the page size, or −10003 for a
    /// negative page index.
    fn query(&self, s: &Session) -> Result<(listing::Query, i64)> {
        let page_index = self.page_index;
        if page_index < 0 {
            return Err(Error::BadParam(format!(
                "pageIndex must be ≥ 0, got {page_index}"
            )));
        }
        let per_page = self
            .per_page
            .filter(|n| (MIN_PER_PAGE..=MAX_PER_PAGE).contains(n))
            .unwrap_or(DEFAULT_PER_PAGE);
        let roots = match &self.root_ids {
            Some(ids) if ids.iter().all(|i| s.roots.contains(&CatalogId(*i))) => {
                ids.iter().copied().map(CatalogId).collect()
            }
            _ => s.roots.clone(),
        };
        // A page past the end (or past `usize`) is empty, never an error.
        let offset = page_index
            .checked_mul(per_page)
            .and_then(|o| usize::try_from(o).ok())
            .unwrap_or(usize::MAX);
        let q = listing::Query {
            roots,
            pids: self.pids.clone(),
            types: self.types.clone(),
            uploader: self.only_self_upload.then_some(s.user_id.0),
            sort: self.sort.filter(|v| (-5..=5).contains(v)).unwrap_or(0),
            offset,
            limit: per_page as usize,
        };
        Ok((q, per_page))
    }
}

/// Pages of `per_page` (≥ 1) needed for `total` matches.
fn page_count(total: usize, per_page: i64) -> i64 {
    (total as i64 + per_page - 1) / per_page
}

/// One page of `files.icc`, each record encoded by `encode` (the wire's
/// form, which this layer does not know).
///
/// Encoding 100 records and reading them with one statement is most of a
/// listing's time (~0.2 ms of ~0.3 on the dev machine, `benches/api.rs`), so
/// each record is encoded once per listing snapshot and kept with it (see
/// `db::listing`); only records not seen since `files` last changed are read
/// and encoded. `encode` must therefore give the same bytes for the same
/// record every time.
pub(crate) async fn list_files<E>(
    db: &Db,
    s: &Session,
    req: FilesRequest,
    encode: E,
) -> Result<FilesPage>
where
    E: Fn(FileRecord) -> Arc<[u8]> + Send + 'static,
{
    s.require(Perm::Browse)?;
    let (q, per_page) = req.query(s)?;
    let db = db.clone();
    let (records, total) = tokio::task::spawn_blocking(move || {
        let idx = db.listing()?;
        let (ids, total) = idx.page(&q);
        let mut records = idx.cached(&ids);
        let missing: Vec<FileId> = ids
            .iter()
            .zip(&records)
            .filter(|(_, r)| r.is_none())
            .map(|(id, _)| *id)
            .collect();
        if !missing.is_empty() {
            let fresh: HashMap<FileId, Arc<[u8]>> = db
                .read(|c| files::by_ids(c, &missing))?
                .into_iter()
                .map(|r| (r.id, encode(r)))
                .collect();
            for (slot, id) in records.iter_mut().zip(&ids) {
                if slot.is_none() {
                    // Absent when deleted since the snapshot: left out.
                    *slot = fresh.get(id).cloned();
                }
            }
            idx.cache(fresh);
        }
        let records: Vec<Arc<[u8]>> = records.into_iter().flatten().collect();
        Ok::<_, db::DbError>((records, total))
    })
    .await??;
    Ok(FilesPage {
        records,
        page: PageInfo {
            page_index: req.page_index,
            per_page,
            page_count: page_count(total, per_page),
        },
    })
}

pub(crate) async fn help_info(db: &Db, s: &Session, t: HelpTarget) -> Result<HelpInfo> {
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

pub(crate) async fn update_help_info(
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
pub(crate) async fn readable_file(db: &Db, s: &Session, id: FileId) -> Result<FileRecord> {
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

/// A file whose original this session may download (`downFile.ic*`): a
/// [`readable_file`] whose original is not still being uploaded.
pub(crate) async fn downloadable_file(db: &Db, s: &Session, id: FileId) -> Result<FileRecord> {
    let rec = readable_file(db, s, id).await?;
    if PartStatus::from_i64(rec.status_origin) == PartStatus::Uploading {
        return Err(Error::WaitingUpload(format!(
            "file {} is still being uploaded",
            id.0
        )));
    }
    Ok(rec)
}

/// An original opened for reading: the file itself (below its library's
/// root, reached through no symlink, the inode the scanner recorded) and
/// its metadata. Sent from this open file, never by path again.
#[derive(Debug)]
pub(crate) struct Original {
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
pub(crate) async fn open_original(db: &Db, rec: &FileRecord) -> Result<Original> {
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

/// Whether an account holding `perms` and seeing `roots` gets its own root
/// folder now (spec §5): one that may upload and sees no library yet. A
/// viewer without libraries simply sees nothing.
pub(crate) fn gets_own_root(perms: Perms, roots: &[CatalogId]) -> bool {
    roots.is_empty() && perms.has(Perm::Upload)
}

/// The roots `user` (holding `perms`) sees — `known` when the caller has
/// them, else read — after giving it its own root folder when
/// [`gets_own_root`] says so (`login.icc`, and `catalogs.icc` for the top
/// level).
pub(crate) async fn roots_of(
    db: &Db,
    default_user_path: &Path,
    user: UserId,
    perms: Perms,
    known: Option<Vec<CatalogId>>,
) -> Result<Vec<CatalogId>> {
    let known = match known {
        Some(roots) if !gets_own_root(perms, &roots) => return Ok(roots),
        other => other,
    };
    let (db, dir) = (db.clone(), default_user_path.to_owned());
    tokio::task::spawn_blocking(move || {
        let roots = match known {
            Some(roots) => roots,
            None => db.read(|c| users::roots(c, user))?,
        };
        if gets_own_root(perms, &roots) {
            ensure_roots(&db, &dir, user)
        } else {
            Ok(roots)
        }
    })
    .await?
}

/// The user's roots, creating the default root `<default_user_path>/<id>`
/// named `iSyncRoot` when there is none (spec §5). Blocking.
fn ensure_roots(db: &Db, default_user_path: &Path, user: UserId) -> Result<Vec<CatalogId>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn session(roots: &[i64]) -> Session {
        Session {
            user_id: UserId(7),
            roots: roots.iter().copied().map(CatalogId).collect(),
            perms: Perms::default().with(Perm::Browse),
            key_id: None,
        }
    }

    fn query(req: FilesRequest) -> (listing::Query, i64) {
        req.query(&session(&[1, 2])).unwrap()
    }

    #[test]
    fn a_page_size_outside_ten_to_ten_thousand_falls_back_to_a_hundred() {
        for (asked, used) in [
            (None, 100),
            (Some(9), 100),
            (Some(10), 10),
            (Some(10_000), 10_000),
            (Some(10_001), 100),
            (Some(-1), 100),
        ] {
            let (q, per_page) = query(FilesRequest {
                per_page: asked,
                page_index: 3,
                ..Default::default()
            });
            assert_eq!((per_page, q.limit), (used, used as usize), "{asked:?}");
            assert_eq!(q.offset, 3 * used as usize, "{asked:?}");
        }
    }

    #[test]
    fn a_negative_page_index_is_refused_and_a_huge_one_is_past_the_end() {
        let neg = FilesRequest {
            page_index: -1,
            ..Default::default()
        };
        assert!(matches!(neg.query(&session(&[1])), Err(Error::BadParam(_))));
        let (q, _) = query(FilesRequest {
            page_index: i64::MAX,
            ..Default::default()
        });
        assert_eq!(q.offset, usize::MAX);
    }

    #[test]
    fn root_ids_narrow_only_when_all_are_the_sessions_roots() {
        let roots = |ids: Option<Vec<i64>>| {
            query(FilesRequest {
                root_ids: ids,
                ..Default::default()
            })
            .0
            .roots
        };
        assert_eq!(roots(None), vec![CatalogId(1), CatalogId(2)]);
        assert_eq!(roots(Some(vec![2])), vec![CatalogId(2)]);
        assert_eq!(roots(Some(vec![2, 3])), vec![CatalogId(1), CatalogId(2)]);
    }

    #[test]
    fn sort_outside_minus_five_to_five_is_zero_and_self_upload_names_the_user() {
        for (asked, used) in [(None, 0), (Some(-5), -5), (Some(5), 5), (Some(6), 0)] {
            let (q, _) = query(FilesRequest {
                sort: asked,
                ..Default::default()
            });
            assert_eq!(q.sort, used, "{asked:?}");
        }
        let (q, _) = query(FilesRequest {
            only_self_upload: true,
            ..Default::default()
        });
        assert_eq!(q.uploader, Some(7));
        assert_eq!(query(FilesRequest::default()).0.uploader, None);
    }

    #[test]
    fn page_count_rounds_up() {
        assert_eq!(page_count(0, 100), 0);
        assert_eq!(page_count(1, 100), 1);
        assert_eq!(page_count(100, 100), 1);
        assert_eq!(page_count(101, 100), 2);
        assert_eq!(page_count(25_000, 10), 2_500);
    }

    #[test]
    fn only_an_uploader_without_roots_gets_its_own_root() {
        let uploader = Perms::default().with(Perm::Browse).with(Perm::Upload);
        let viewer = Perms::default().with(Perm::Browse);
        assert!(gets_own_root(uploader, &[]));
        assert!(!gets_own_root(uploader, &[CatalogId(1)]));
        assert!(!gets_own_root(viewer, &[]));
        assert!(!gets_own_root(viewer, &[CatalogId(1)]));
    }
}
