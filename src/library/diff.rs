//! The scanner's pure middle: what changed between a library's records
//! (known folders and files) and what a walk saw, as a [`Plan`] of folder
//! moves, new folders, file moves, changed and new files and removals
//! ([`diff`]); and the mass-deletion guard that holds a plan's removals back
//! ([`guard`]). No disk and no database: plain values in, a plan out; the
//! scanner (`scan`) reads the disk before and writes the plan after.
//! Imports only `model`, `config` and the scanner's row types of `db`.

use crate::config::ScanConfig;
use crate::db::catalogs::KnownFolder;
use crate::db::files::KnownFile;
use crate::model::{CatalogId, FileId};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Below this many removals the share rule of the mass-deletion guard does
/// not apply: deleting 3 of a new library's 4 photos is not a failing disk.
pub(crate) const GUARD_MIN_FILES: usize = 10;

/// A folder the walk saw (`path` as stored: a path key).
#[derive(Debug, Clone)]
pub(crate) struct SeenDir {
    pub path: String,
    pub ino: u64,
    /// Its creation time as a new catalog records it.
    pub create_time: i64,
}

/// A regular file the walk saw (`dir` as stored: a path key).
#[derive(Debug, Clone)]
pub(crate) struct SeenEntry<'a> {
    pub dir: String,
    pub name: &'a str,
    pub ino: i64,
    pub size: i64,
    pub mtime_ns: i64,
    /// Being written (in the watcher's busy set): neither probed nor taken
    /// for deleted.
    pub busy: bool,
}

/// What a walk saw, as the diff needs it.
#[derive(Debug, Default)]
pub(crate) struct WalkSeen<'a> {
    pub dirs: Vec<SeenDir>,
    /// In the walk's order; the plan names them by index.
    pub files: Vec<SeenEntry<'a>>,
    /// Folders whose entries were all read (see `walk::Walk::listed`).
    pub listed: HashSet<String>,
    /// Folders asked for that no longer exist.
    pub vanished: HashSet<String>,
    /// Folders seen whose entries could not be read.
    pub unreadable: HashSet<String>,
    /// Files being written (the watcher's scans; empty otherwise).
    pub busy: HashSet<PathBuf>,
}

/// A known folder renamed or moved on disk: same id, new path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FolderMove {
    pub id: CatalogId,
    pub old: String,
    pub new: String,
    /// Its display name was the folder's name, so it follows the rename.
    pub rename: bool,
}

/// A folder with no catalog yet.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewDir {
    pub path: String,
    pub ino: u64,
    pub create_time: i64,
}

/// What a scan changes, in the order [`Plan`]'s fields are written.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Catalog ids by real path, the folder moves applied (the new folders
    /// are added when written).
    pub catalogs: HashMap<String, CatalogId>,
    pub folder_moves: Vec<FolderMove>,
    /// Shallowest first, so a parent is created before its children.
    pub new_dirs: Vec<NewDir>,
    /// Known folders whose inode was not recorded (or changed).
    pub learn_inodes: Vec<(CatalogId, i64)>,
    /// Files renamed or moved: (index in the known files, index in the
    /// walk's files).
    pub moved_files: Vec<(usize, usize)>,
    /// Known files whose size or mtime changed: (id, index in the walk).
    pub changed: Vec<(FileId, usize)>,
    /// Unchanged known files recorded before migration 7 that may be half
    /// of a Live Photo: (id, index in the walk). Probed for their content
    /// identifier alone; nothing else of their record changes (not
    /// `lastModifyTime`, not their thumbnails).
    pub backfill: Vec<(FileId, usize)>,
    /// Files with no record: indexes in the walk.
    pub fresh: Vec<usize>,
    /// Known files gone from disk, by id.
    pub gone_files: Vec<FileId>,
    /// Catalogs of gone folders, deepest first.
    pub gone_catalogs: Vec<CatalogId>,
    /// Files seen and not busy.
    pub files_seen: usize,
    /// Removals the guard took out of the plan (see [`guard`]).
    pub held_back: usize,
}

pub(crate) fn parent_key(p: &str) -> &str {
    p.rfind('/')
        .map(|i| if i == 0 { "/" } else { &p[..i] })
        .unwrap_or("")
}

pub(crate) fn folder_name(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// `p` is `prefix` or lies below it.
fn within(p: &str, prefix: &str) -> bool {
    p == prefix || (p.starts_with(prefix) && p.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// Gone catalogs, shallowest first: known folders directly inside a listed
/// folder that were not seen, vanished folders, and everything below them.
fn gone_folders(
    cat_by_path: &HashMap<String, CatalogId>,
    root: &str,
    walk: &WalkSeen,
    seen: &HashMap<&str, &SeenDir>,
) -> Vec<(String, CatalogId)> {
    let mut tops: Vec<&str> = cat_by_path
        .keys()
        .filter(|p| p.as_str() != root)
        .filter(|p| {
            walk.vanished.contains(*p)
                || (walk.listed.contains(parent_key(p)) && !seen.contains_key(p.as_str()))
        })
        .map(String::as_str)
        .collect();
    tops.sort_by_key(|p| p.len());
    let mut all: Vec<(String, CatalogId)> = cat_by_path
        .iter()
        .filter(|(p, _)| tops.iter().any(|t| within(p, t)))
        .map(|(p, id)| (p.clone(), *id))
        .collect();
    all.sort_by_key(|(p, _)| p.len());
    all
}

/// Folders renamed or moved: a gone catalog whose inode turns up as a new
/// folder keeps its id; everything below moves with it (applied to
/// `cat_by_path`).
fn folder_moves(
    folders: &[KnownFolder],
    cat_by_path: &mut HashMap<String, CatalogId>,
    root: &str,
    walk: &WalkSeen,
    seen: &HashMap<&str, &SeenDir>,
) -> Vec<FolderMove> {
    let gone = gone_folders(cat_by_path, root, walk, seen);
    let mut new_by_inode: HashMap<u64, &str> = seen
        .iter()
        .filter(|(p, _)| !cat_by_path.contains_key(**p))
        .map(|(p, d)| (d.ino, *p))
        .collect();
    let inode_of: HashMap<CatalogId, i64> = folders
        .iter()
        .filter_map(|f| f.inode.map(|i| (f.id, i)))
        .collect();
    let mut moves: Vec<FolderMove> = Vec::new();
    for (old, id) in &gone {
        if moves.iter().any(|m| within(old, &m.old)) {
            continue;
        }
        let hit = inode_of
            .get(id)
            .and_then(|i| new_by_inode.remove(&(*i as u64)));
        if let Some(new) = hit {
            let rename = folders
                .iter()
                .any(|f| f.id == *id && f.name == folder_name(old));
            moves.push(FolderMove {
                id: *id,
                old: old.clone(),
                new: new.to_string(),
                rename,
            });
        }
    }
    for m in &moves {
        let renamed: Vec<(String, CatalogId)> = cat_by_path
            .iter()
            .filter(|(p, _)| within(p, &m.old))
            .map(|(p, id)| (format!("{}{}", m.new, &p[m.old.len()..]), *id))
            .collect();
        cat_by_path.retain(|p, _| !within(p, &m.old));
        cat_by_path.extend(renamed);
    }
    moves
}

/// Compares the records of a library rooted at `root` (a path key) with what
/// a walk saw. Pure: no disk, no database.
pub(crate) fn diff(
    folders: &[KnownFolder],
    known_files: &[KnownFile],
    root: &str,
    walk: &WalkSeen,
) -> Plan {
    let mut plan = Plan {
        catalogs: folders.iter().map(|f| (f.path.clone(), f.id)).collect(),
        ..Plan::default()
    };
    let seen: HashMap<&str, &SeenDir> = walk.dirs.iter().map(|d| (d.path.as_str(), d)).collect();

    // 1. Folders renamed or moved; 2. with the moves applied: what is
    // really gone, what is new.
    plan.folder_moves = folder_moves(folders, &mut plan.catalogs, root, walk, &seen);
    let gone = gone_folders(&plan.catalogs, root, walk, &seen);
    let gone_ids: HashSet<CatalogId> = gone.iter().map(|(_, id)| *id).collect();
    plan.gone_catalogs = gone.iter().rev().map(|(_, id)| *id).collect();
    // A new folder that cannot be read costs no catalog either.
    plan.new_dirs = seen
        .iter()
        .filter(|(p, _)| !plan.catalogs.contains_key(**p) && !walk.unreadable.contains(**p))
        .map(|(p, d)| NewDir {
            path: p.to_string(),
            ino: d.ino,
            create_time: d.create_time,
        })
        .collect();
    plan.new_dirs
        .sort_by(|a, b| (a.path.len(), &a.path).cmp(&(b.path.len(), &b.path)));
    // Folders recorded before inodes were (or by the API): learn them.
    let path_now: HashMap<CatalogId, &str> = plan
        .catalogs
        .iter()
        .map(|(p, id)| (*id, p.as_str()))
        .collect();
    let learn: Vec<(CatalogId, i64)> = folders
        .iter()
        .filter_map(|f| {
            let ino = seen.get(path_now.get(&f.id)?)?.ino as i64;
            (f.inode != Some(ino)).then_some((f.id, ino))
        })
        .collect();
    plan.learn_inodes = learn;
    diff_files(&mut plan, known_files, walk, &gone_ids);
    plan
}

/// 3. Files: unchanged, changed, new, moved, gone.
fn diff_files(
    plan: &mut Plan,
    known_files: &[KnownFile],
    walk: &WalkSeen,
    gone_ids: &HashSet<CatalogId>,
) {
    let cats = &plan.catalogs;
    let listed_ids: HashSet<CatalogId> = walk
        .listed
        .iter()
        .filter_map(|p| cats.get(p).copied())
        .collect();
    let mut known: HashMap<(CatalogId, &str), usize> = known_files
        .iter()
        .enumerate()
        .map(|(i, k)| ((k.real_catalog_id, k.disk_name.as_str()), i))
        .collect();
    let path_of: HashMap<CatalogId, &str> = cats.iter().map(|(p, id)| (*id, p.as_str())).collect();
    let mut fresh: Vec<usize> = Vec::new();
    for (i, f) in walk.files.iter().enumerate() {
        if f.busy {
            if let Some(&cat) = cats.get(&f.dir) {
                known.remove(&(cat, f.name));
            }
            continue;
        }
        plan.files_seen += 1;
        let Some(&cat) = cats.get(&f.dir) else {
            fresh.push(i);
            continue;
        };
        match known.remove(&(cat, f.name)).map(|k| &known_files[k]) {
            // Unchanged; one that may be half of a Live Photo and was never
            // probed for that (recorded before migration 7) is probed for
            // its content identifier alone.
            Some(k) if k.size == f.size && k.mtime_ns == Some(f.mtime_ns) => {
                if k.needs_content_id {
                    plan.backfill.push((k.id, i));
                }
            }
            Some(k) => plan.changed.push((k.id, i)),
            None => fresh.push(i),
        }
    }
    // Known files not seen where we looked (or under a gone folder).
    let mut gone_files: Vec<usize> = known
        .values()
        .filter(|&&i| {
            let k = &known_files[i];
            let cat = k.real_catalog_id;
            gone_ids.contains(&cat)
                || (listed_ids.contains(&cat)
                    && !walk
                        .busy
                        .contains(&Path::new(path_of[&cat]).join(&k.disk_name)))
        })
        .copied()
        .collect();
    gone_files.sort_by_key(|&i| known_files[i].id.0);
    // A gone file whose identity (inode, size, mtime) turns up as a new
    // one was renamed or moved.
    let mut by_identity: HashMap<(i64, i64, i64), usize> = HashMap::new();
    for (i, &k) in gone_files.iter().enumerate() {
        let k = &known_files[k];
        if let (Some(ino), Some(mt)) = (k.inode, k.mtime_ns) {
            by_identity.insert((ino, k.size, mt), i);
        }
    }
    let mut taken: HashSet<usize> = HashSet::new();
    fresh.retain(|&s| {
        let f = &walk.files[s];
        match by_identity.remove(&(f.ino, f.size, f.mtime_ns)) {
            Some(i) => {
                plan.moved_files.push((gone_files[i], s));
                taken.insert(i);
                false
            }
            None => true,
        }
    });
    plan.fresh = fresh;
    plan.gone_files = gone_files
        .iter()
        .enumerate()
        .filter(|(i, _)| !taken.contains(i))
        .map(|(_, &k)| known_files[k].id)
        .collect();
}

/// Whether removing `gone` of `known` files needs confirmation; the reason
/// when it does.
pub(crate) fn guard_reason(limits: &ScanConfig, gone: usize, known: usize) -> Option<String> {
    if gone > limits.max_delete_count {
        return Some(format!(
            "{gone} files would be removed, more than scan.max_delete_count = {}",
            limits.max_delete_count
        ));
    }
    let share = gone as f64 / known.max(1) as f64;
    (gone >= GUARD_MIN_FILES && share > limits.max_delete_share).then(|| {
        format!(
            "{gone} of {known} files ({:.0}%) would be removed, more than \
             scan.max_delete_share = {}",
            share * 100.0,
            limits.max_delete_share
        )
    })
}

/// The mass-deletion guard: when the plan would remove too many of a
/// library's `known` files (a disk failing or a folder unmounted looks like
/// this), its removals (files and folders) are taken out and counted in
/// `held_back`; additions and moves stay. Returns the reason when it held.
pub(crate) fn guard(limits: &ScanConfig, plan: &mut Plan, known: usize) -> Option<String> {
    let why = guard_reason(limits, plan.gone_files.len(), known)?;
    plan.held_back = plan.gone_files.len();
    plan.gone_files.clear();
    plan.gone_catalogs.clear();
    Some(why)
}

#[cfg(test)]
mod tests;
