//! Unit tests of the scanner's diff and guard: plain records and walk
//! results in, plans out (no disk, no database).

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
        needs_content_id: false,
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

fn walk(listed: &[&str], dirs: Vec<SeenDir>, files: Vec<SeenEntry<'static>>) -> WalkSeen<'static> {
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

/// A file recorded before migration 7 (no content identifier learnt) is
/// probed again once although unchanged: it may be half of a Live Photo.
#[test]
fn an_unchanged_file_never_probed_for_a_live_photo_is_probed_for_its_identifier_alone() {
    let (folders, mut files) = library();
    files[1].needs_content_id = true;
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
    assert_eq!(p.backfill, vec![(FileId(2), 1)]);
    assert!(p.changed.is_empty(), "not a changed file: {:?}", p.changed);
    assert!(p.fresh.is_empty() && p.gone_files.is_empty() && p.moved_files.is_empty());
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
