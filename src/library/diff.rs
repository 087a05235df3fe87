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
pub const GUARD_MIN_FILES: usize = 10;

/// A folder the walk saw (`path` as stored: a path key).
#[derive(Debug, Clone)]
pub struct SeenDir {
    pub path: String,
    pub ino: u64,
    /// Its creation time as a new catalog records it.
    pub create_time: i64,
}

/// A regular file the walk saw (`dir` as stored: a path key).
#[derive(Debug, Clone)]
pub struct SeenEntry<'a> {
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
pub struct WalkSeen<'a> {
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
pub struct FolderMove {
    pub id: CatalogId,
    pub old: String,
    pub new: String,
    /// Its display name was the folder's name, so it follows the rename.
    pub rename: bool,
}

/// A folder with no catalog yet.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDir {
    pub path: String,
    pub ino: u64,
    pub create_time: i64,
}

/// What a scan changes, in the order [`Plan`]'s fields are written.
#[derive(Debug, Default)]
pub struct Plan {
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

pub fn parent_key(p: &str) -> &str {
    p.rfind('/')
        .map(|i| if i == 0 { "/" } else { &p[..i] })
        .unwrap_or("")
}

pub fn folder_name(p: &str) -> &str {
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
pub fn diff(
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
            Some(k) if k.size == f.size && k.mtime_ns == Some(f.mtime_ns) => {}
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
pub fn guard_reason(limits: &ScanConfig, gone: usize, known: usize) -> Option<String> {
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
pub fn guard(limits: &ScanConfig, plan: &mut Plan, known: usize) -> Option<String> {
    let why = guard_reason(limits, plan.gone_files.len(), known)?;
    plan.held_back = plan.gone_files.len();
    plan.gone_files.clear();
    plan.gone_catalogs.clear();
    Some(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(id: i64, path: &str, inode: i64) -> KnownFolder {
        KnownFolder {
            id: CatalogId(id),
            path: path.into(),
            inode: Some(inode),
            name: folder_name(path).into(),
        }
    }

    /// A known file: 100 bytes, its mtime derived from its inode.
    fn known(id: i64, cat: i64, name: &str, ino: i64) -> KnownFile {
        KnownFile {
            id: FileId(id),
            real_catalog_id: CatalogId(cat),
            disk_name: name.into(),
            size: 100,
            mtime_ns: Some(1_000 + ino),
            inode: Some(ino),
            shown_in_real: true,
            name_is_disk_name: true,
        }
    }

    fn dir(path: &str, ino: u64) -> SeenDir {
        SeenDir {
            path: path.into(),
            ino,
            create_time: 7,
        }
    }

    /// A file seen as [`known`] records it (same size and mtime).
    fn seen(dir: &str, name: &'static str, ino: i64) -> SeenEntry<'static> {
        SeenEntry {
            dir: dir.into(),
            name,
            ino,
            size: 100,
            mtime_ns: 1_000 + ino,
            busy: false,
        }
    }

    fn walk(
        listed: &[&str],
        dirs: Vec<SeenDir>,
        files: Vec<SeenEntry<'static>>,
    ) -> WalkSeen<'static> {
        WalkSeen {
            dirs,
            files,
            listed: listed.iter().map(|p| p.to_string()).collect(),
            ..WalkSeen::default()
        }
    }

    /// /r (1) holding one.jpg (1); /r/a (2) holding two.jpg (2); /r/a/x (3)
    /// holding three.jpg (3).
    fn library() -> (Vec<KnownFolder>, Vec<KnownFile>) {
        let folders = vec![
            folder(1, "/r", 10),
            folder(2, "/r/a", 20),
            folder(3, "/r/a/x", 30),
        ];
        let files = vec![
            known(1, 1, "one.jpg", 101),
            known(2, 2, "two.jpg", 102),
            known(3, 3, "three.jpg", 103),
        ];
        (folders, files)
    }

    fn ids(v: &[FileId]) -> Vec<i64> {
        v.iter().map(|id| id.0).collect()
    }

    fn cat_ids(v: &[CatalogId]) -> Vec<i64> {
        v.iter().map(|id| id.0).collect()
    }

    /// Nothing to write: no moves, additions, changes or removals.
    fn assert_no_file_changes(p: &Plan) {
        assert!(p.moved_files.is_empty(), "moved {:?}", p.moved_files);
        assert!(p.changed.is_empty(), "changed {:?}", p.changed);
        assert!(p.fresh.is_empty(), "fresh {:?}", p.fresh);
        assert!(p.gone_files.is_empty(), "gone {:?}", p.gone_files);
        assert!(p.gone_catalogs.is_empty(), "gone {:?}", p.gone_catalogs);
    }

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
        let w = walk(&["/r"], vec![dir("/r/ab", 40), dir("/r/b", 50)], vec![]);
        let seen: HashMap<&str, &SeenDir> = w.dirs.iter().map(|d| (d.path.as_str(), d)).collect();
        let g = gone_folders(&cats, "/r", &w, &seen);
        let ids: Vec<i64> = g.iter().map(|(_, id)| id.0).collect();
        assert_eq!(ids, [2, 3], "shallowest first; /r/ab is a sibling, kept");
    }

    #[test]
    fn an_unchanged_tree_plans_nothing() {
        let (folders, files) = library();
        let w = walk(
            &["/r", "/r/a", "/r/a/x"],
            vec![dir("/r/a", 20), dir("/r/a/x", 30)],
            vec![
                seen("/r", "one.jpg", 101),
                seen("/r/a", "two.jpg", 102),
                seen("/r/a/x", "three.jpg", 103),
            ],
        );
        let p = diff(&folders, &files, "/r", &w);
        assert_no_file_changes(&p);
        assert!(p.folder_moves.is_empty() && p.new_dirs.is_empty() && p.learn_inodes.is_empty());
        assert_eq!(p.files_seen, 3);
    }

    #[test]
    fn renamed_changed_and_new_files() {
        let (folders, files) = library();
        let mut bigger = seen("/r/a", "two.jpg", 102);
        bigger.size = 200;
        let w = walk(
            &["/r", "/r/a", "/r/a/x"],
            vec![dir("/r/a", 20), dir("/r/a/x", 30), dir("/r/new", 40)],
            vec![
                seen("/r", "uno.jpg", 101),
                bigger,
                seen("/r/a/x", "three.jpg", 103),
                seen("/r/new", "four.jpg", 104),
                // Same name as a known file elsewhere, another inode: new.
                seen("/r", "three.jpg", 105),
            ],
        );
        let p = diff(&folders, &files, "/r", &w);
        assert_eq!(p.moved_files, [(0, 0)], "one.jpg → uno.jpg keeps id 1");
        assert_eq!(p.changed, [(FileId(2), 1)]);
        assert_eq!(p.fresh, [3, 4]);
        assert!(p.gone_files.is_empty(), "gone {:?}", p.gone_files);
        assert_eq!(
            p.new_dirs,
            [NewDir {
                path: "/r/new".into(),
                ino: 40,
                create_time: 7
            }]
        );
        assert_eq!(p.files_seen, 5);
    }

    #[test]
    fn a_file_moved_to_another_folder_keeps_its_id() {
        let (folders, files) = library();
        let w = walk(
            &["/r", "/r/a", "/r/a/x"],
            vec![dir("/r/a", 20), dir("/r/a/x", 30)],
            vec![
                seen("/r", "one.jpg", 101),
                seen("/r/a/x", "two.jpg", 102),
                seen("/r/a/x", "three.jpg", 103),
            ],
        );
        let p = diff(&folders, &files, "/r", &w);
        assert_eq!(p.moved_files, [(1, 1)]);
        assert!(p.fresh.is_empty() && p.gone_files.is_empty());
    }

    #[test]
    fn a_renamed_folder_keeps_its_id_and_everything_below() {
        let (folders, files) = library();
        let w = walk(
            &["/r", "/r/b", "/r/b/x"],
            vec![dir("/r/b", 20), dir("/r/b/x", 30)],
            vec![
                seen("/r", "one.jpg", 101),
                seen("/r/b", "two.jpg", 102),
                seen("/r/b/x", "three.jpg", 103),
            ],
        );
        let p = diff(&folders, &files, "/r", &w);
        assert_eq!(
            p.folder_moves,
            [FolderMove {
                id: CatalogId(2),
                old: "/r/a".into(),
                new: "/r/b".into(),
                rename: true,
            }]
        );
        assert_eq!(p.catalogs.get("/r/b/x"), Some(&CatalogId(3)));
        assert!(!p.catalogs.contains_key("/r/a"));
        assert!(p.new_dirs.is_empty(), "new {:?}", p.new_dirs);
        assert_no_file_changes(&p);
    }

    /// Under a moved folder, what did not come along is gone: a file and a
    /// sub-folder with its file.
    #[test]
    fn gone_under_a_moved_folder() {
        let (folders, mut files) = library();
        files.push(known(4, 2, "four.jpg", 104));
        let w = walk(
            &["/r", "/r/b"],
            vec![dir("/r/b", 20)],
            vec![seen("/r", "one.jpg", 101), seen("/r/b", "four.jpg", 104)],
        );
        let p = diff(&folders, &files, "/r", &w);
        assert_eq!(p.folder_moves.len(), 1);
        assert_eq!(ids(&p.gone_files), [2, 3]);
        assert_eq!(cat_ids(&p.gone_catalogs), [3]);
        assert!(p.moved_files.is_empty() && p.fresh.is_empty());
    }

    /// Gone folders with nowhere to move to go deepest first, with their
    /// files.
    #[test]
    fn nested_gone_folders_go_deepest_first() {
        let (folders, files) = library();
        let w = walk(&["/r"], vec![], vec![seen("/r", "one.jpg", 101)]);
        let p = diff(&folders, &files, "/r", &w);
        assert_eq!(cat_ids(&p.gone_catalogs), [3, 2]);
        assert_eq!(ids(&p.gone_files), [2, 3]);
        assert!(p.folder_moves.is_empty());
    }

    #[test]
    fn busy_files_are_neither_new_changed_nor_gone() {
        let (folders, mut files) = library();
        files.push(known(4, 1, "four.jpg", 104));
        files.push(known(5, 1, "five.jpg", 105));
        let mut growing = seen("/r", "one.jpg", 101);
        growing.size = 50;
        growing.busy = true;
        let mut arriving = seen("/r", "new.jpg", 106);
        arriving.busy = true;
        // The watcher lists /r only: /r/a is seen, not listed.
        let mut w = walk(&["/r"], vec![dir("/r/a", 20)], vec![growing, arriving]);
        w.busy.insert(PathBuf::from("/r/four.jpg"));
        let p = diff(&folders, &files, "/r", &w);
        assert!(p.changed.is_empty() && p.fresh.is_empty() && p.moved_files.is_empty());
        assert_eq!(ids(&p.gone_files), [5], "four.jpg is being written");
        assert!(p.gone_catalogs.is_empty());
        assert_eq!(p.files_seen, 0);
    }

    fn limits(share: f64, count: usize) -> ScanConfig {
        ScanConfig {
            max_delete_share: share,
            max_delete_count: count,
            ..ScanConfig::default()
        }
    }

    #[test]
    fn the_guard_counts_share_and_total() {
        let l = limits(0.5, 100);
        assert!(guard_reason(&l, 0, 0).is_none());
        assert!(
            guard_reason(&l, 3, 4).is_none(),
            "small deletions never trip the share"
        );
        assert!(guard_reason(&l, 10, 30).is_none(), "a third");
        assert!(guard_reason(&l, 16, 30)
            .unwrap()
            .contains("max_delete_share"));
        assert!(guard_reason(&l, 101, 100_000)
            .unwrap()
            .contains("max_delete_count"));
    }

    /// Each threshold, just under and just over.
    #[test]
    fn the_guard_thresholds_at_their_edges() {
        let l = limits(0.5, 100);
        assert!(guard_reason(&l, 100, 100_000).is_none(), "the count itself");
        assert!(guard_reason(&l, 101, 100_000).is_some());
        assert!(guard_reason(&l, 15, 30).is_none(), "the share itself");
        assert!(guard_reason(&l, 16, 30).is_some());
        let n = GUARD_MIN_FILES;
        assert!(guard_reason(&l, n - 1, n - 1).is_none(), "all, but few");
        assert!(guard_reason(&l, n, n).is_some());
    }

    fn plan_removing(n: usize) -> Plan {
        Plan {
            gone_files: (1..=n as i64).map(FileId).collect(),
            gone_catalogs: vec![CatalogId(9)],
            fresh: vec![0],
            ..Plan::default()
        }
    }

    #[test]
    fn the_guard_takes_removals_out_of_the_plan_only() {
        let l = limits(0.5, 100);
        let mut p = plan_removing(15);
        assert!(guard(&l, &mut p, 30).is_none());
        assert_eq!(
            (p.gone_files.len(), p.gone_catalogs.len(), p.held_back),
            (15, 1, 0)
        );
        let mut p = plan_removing(16);
        assert!(guard(&l, &mut p, 30).unwrap().contains("16 of 30"));
        assert_eq!(
            (p.gone_files.len(), p.gone_catalogs.len(), p.held_back),
            (0, 0, 16)
        );
        assert_eq!(p.fresh, [0], "additions stay");
    }

    /// The unplugged disk: the walk sees an empty root, every record looks
    /// gone; the guard keeps them all.
    #[test]
    fn an_empty_walk_under_a_full_catalog_removes_nothing() {
        let folders = vec![folder(1, "/r", 10), folder(2, "/r/a", 20)];
        let files: Vec<KnownFile> = (1..=40)
            .map(|i| known(i, 1 + i % 2, &format!("f{i}.jpg"), 100 + i))
            .collect();
        let w = walk(&["/r"], vec![], vec![]);
        let mut p = diff(&folders, &files, "/r", &w);
        assert_eq!(p.gone_files.len(), 40, "the diff alone would remove all");
        assert_eq!(cat_ids(&p.gone_catalogs), [2]);
        let why = guard(&ScanConfig::default(), &mut p, files.len()).expect("held");
        assert!(why.contains("40 of 40"), "{why}");
        assert_eq!(p.held_back, 40);
        assert!(p.gone_files.is_empty() && p.gone_catalogs.is_empty());
    }
}
