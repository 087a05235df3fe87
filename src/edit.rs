//! Edits of records: `createCatalog.icc` (a real folder), `updateCatalog.icc`
//! (rename, memo, virtual move — no data moves on disk) and
//! `updateFile.icc` (spec §6.6, §6.7, §6.18).

use crate::accounts;
use crate::config::Config;
use crate::db::edits::{self, CatalogEdit};
use crate::db::uploads::{self, FileEdit};
use crate::db::{self, catalogs, files, trash, Db};
use crate::error::{Error, Result};
use crate::library::layout::{safe_folder_name, sync_dir};
use crate::library::roots::path_key;
use crate::model::{Catalog, CatalogId, FileId, FileRecord};
use crate::perms::{Perm, Session};
use crate::time::civil_date;
use crate::upload::{part_sizes, PartSizes};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A folder that cannot be created within this time (a dead disk) gives
/// −102 instead of a hanging request.
const MKDIR_TIMEOUT: Duration = Duration::from_secs(15);

/// What `createCatalog.icc` asks for (validated by the handler).
#[derive(Debug, Clone)]
pub(crate) struct NewCatalog {
    pub parent: CatalogId,
    pub name: String,
    pub create_time: Option<i64>,
    pub memo: Option<String>,
    pub help_int: Option<i64>,
    pub help_text: Option<String>,
}

/// Creates `<parent folder>/<safe name>_<date>_<n>` and its record.
pub(crate) async fn create_catalog(db: &Db, s: &Session, n: NewCatalog) -> Result<Catalog> {
    s.require(Perm::Upload)?;
    let uid = s.user_id;
    let (db2, roots) = (db.clone(), s.roots.clone());
    let job = tokio::task::spawn_blocking(move || {
        let parent = db2
            .read(|c| catalogs::accessible(c, n.parent, &roots))?
            .ok_or_else(|| Error::BadCatalog(format!("catalog {} not found", n.parent.0)))?;
        let now = db::now();
        let base = format!("{}_{}", safe_folder_name(&n.name), civil_date(now));
        let mut made: Option<PathBuf> = None;
        for i in 0..10_000 {
            let p = Path::new(&parent.path).join(format!("{base}_{i}"));
            match std::fs::create_dir(&p) {
                Ok(()) => {
                    made = Some(p);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(Error::Internal(format!(
                        "cannot create {}: {e}",
                        p.display()
                    )))
                }
            }
        }
        let dir = made.ok_or_else(|| Error::Internal("no free folder name".into()))?;
        let key = path_key(&dir);
        let r = db2.write(|tx| {
            let id = catalogs::insert(
                tx,
                &catalogs::NewCatalog {
                    root_id: Some(parent.root_id),
                    parent_id: Some(parent.id),
                    library_id: parent.library_id,
                    path: &key,
                    name: &n.name,
                    create_time: n.create_time.unwrap_or(now),
                    now,
                },
            )?;
            edits::set_catalog_extras(
                tx,
                id,
                n.memo.as_deref(),
                n.help_int,
                n.help_text.as_deref(),
            )?;
            catalogs::set_created_by(tx, id, uid)?;
            catalogs::by_id(tx, id)
        });
        match r {
            Ok(Some(cat)) => {
                if let Some(p) = dir.parent() {
                    let _ = sync_dir(p);
                }
                Ok(cat)
            }
            Ok(None) => Err(Error::Internal("catalog vanished".into())),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(e.into())
            }
        }
    });
    match tokio::time::timeout(MKDIR_TIMEOUT, job).await {
        Ok(r) => r?,
        Err(_) => Err(Error::Internal(
            "creating the folder timed out (is the disk responding?)".into(),
        )),
    }
}

/// `updateCatalog.icc`. `change.parent` equal to the current parent is
/// ignored; an edit left empty is −10010.
pub(crate) async fn update_catalog(
    db: &Db,
    s: &Session,
    id: CatalogId,
    mut edit: CatalogEdit,
) -> Result<(Catalog, bool)> {
    s.require(Perm::Upload)?;
    let (roots, s) = (s.roots.clone(), s.clone());
    db.write_async(move |tx| {
        let Some(cat) = catalogs::accessible(tx, id, &roots)? else {
            return Ok(Err(Error::NotFound(format!("catalog {} not found", id.0))));
        };
        // Moving takes everything below along: all of it must be theirs.
        let moving = edit.parent.is_some_and(|p| Some(p) != cat.parent_id);
        if let Err(e) = accounts::check_change_catalog(tx, &s, id, moving) {
            return Ok(Err(e));
        }
        let mut new_root = None;
        if let Some(p) = edit.parent {
            if Some(p) == cat.parent_id {
                edit.parent = None;
            } else {
                let subtree = trash::with_descendants(tx, &[id])?;
                let target = catalogs::accessible(tx, p, &roots)?;
                match target {
                    _ if cat.parent_id.is_none() => {
                        return Ok(Err(Error::NotModified(
                            "a root catalog cannot be moved".into(),
                        )))
                    }
                    None => {
                        return Ok(Err(Error::NotModified(format!(
                            "parent catalog {} not found",
                            p.0
                        ))))
                    }
                    Some(_) if subtree.contains(&p) => {
                        return Ok(Err(Error::NotModified(
                            "a catalog cannot move into itself or its descendants".into(),
                        )))
                    }
                    Some(t) if t.root_id != cat.root_id => new_root = Some((t.root_id, subtree)),
                    Some(_) => {}
                }
            }
        }
        let CatalogEdit {
            parent,
            name,
            memo,
            help_int,
            help_text,
        } = &edit;
        if parent.is_none()
            && name.is_none()
            && memo.is_none()
            && help_int.is_none()
            && help_text.is_none()
        {
            return Ok(Err(Error::NotModified("nothing to change".into())));
        }
        edits::update_catalog(tx, id, &edit, db::now())?;
        let moved = new_root.is_some();
        if let Some((root, subtree)) = new_root {
            edits::move_to_tree(tx, &subtree, root)?;
        }
        Ok(catalogs::by_id(tx, id)?
            .map(|c| (c, moved))
            .ok_or_else(|| Error::Internal("catalog vanished".into())))
    })
    .await?
}

/// `updateFile.icc`. A virtual move (`catalogId`) takes the other half of
/// a Live Photo along.
pub(crate) async fn update_file(
    db: &Db,
    cfg: &Arc<Config>,
    s: &Session,
    id: FileId,
    new_catalog: Option<CatalogId>,
    mut edit: FileEdit,
) -> Result<(FileRecord, PartSizes)> {
    s.require(Perm::Upload)?;
    let (db2, roots, thumbs, s) = (db.clone(), s.roots.clone(), cfg.thumb_dir(), s.clone());
    tokio::task::spawn_blocking(move || {
        let r = db2.write(|tx| {
            let Some(f) = files::accessible(tx, id, &roots)? else {
                return Ok(Err(Error::NotFound(format!("file {} not found", id.0))));
            };
            if let Err(e) = accounts::check_change_file(&s, f.upload_user_id, id) {
                return Ok(Err(e));
            }
            if let Some(cid) = new_catalog {
                match catalogs::accessible(tx, cid, &roots)? {
                    Some(c) => edit.catalog = Some((c.id, c.root_id)),
                    None => {
                        return Ok(Err(Error::NotModified(format!(
                            "catalog {} not found",
                            cid.0
                        ))))
                    }
                }
            }
            if edit.is_empty() {
                return Ok(Err(Error::NotModified("nothing to change".into())));
            }
            let now = db::now();
            uploads::update(tx, f.id, &edit, now)?;
            // The two halves of a Live Photo are shown in one catalog.
            if let (Some((cat, root)), Some(other)) =
                (edit.catalog, f.live_video_id.or(f.live_photo_id))
            {
                files::set_shown_catalog(tx, other, cat, root, now)?;
            }
            Ok(Ok(()))
        })?;
        r?;
        let rec = db2
            .read(|c| files::by_id(c, id))?
            .ok_or_else(|| Error::Internal("file vanished".into()))?;
        let library = db2
            .read(|c| uploads::library_path_of(c, id))?
            .map(PathBuf::from)
            .unwrap_or_default();
        let sizes = part_sizes(&rec, &library, &thumbs);
        Ok((rec, sizes))
    })
    .await?
}
