//! Disk offline/online under a running server (issue 4): a library root
//! that vanishes is offline at once — no record removed, listings answer,
//! downloads say −10011 — and comes back with the same ids when the same
//! disk (identified by its `.isync/library-id` marker) returns; a different
//! tree at the same path stays offline. Changes made while isync was not
//! running are reconciled at start, touching only what changed.

use crate::common;

use common::mount::{device, Mounts};
use common::process::Process;
use common::*;
use serde_json::Value;

fn tree() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("a.jpg", jpeg(64, 48, 1, None)),
        ("b.jpg", jpeg(80, 60, 2, None)),
        ("sub/c.jpg", jpeg(32, 32, 3, None)),
    ]
}

async fn assert_offline_but_listed(app: &TestApp, files: &[Value], cats: &[Value]) {
    assert_eq!(app.api.all_files().await, files, "files stay listed");
    assert_eq!(app.api.all_catalogs().await, cats, "catalogs stay listed");
    for f in files {
        let r = app.api.download(id(f), &[]).await;
        assert_binary_err_status(r, 503, LIBRARY_OFFLINE).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_root_goes_offline_and_the_same_disk_comes_back() {
    let app = TestApp::watching(&tree(), |_| {}).await;
    assert!(
        app.lib().join(".isync/library-id").is_file(),
        "the first scan writes the identity marker"
    );
    let files = app.api.all_files().await;
    let cats = app.api.all_catalogs().await;
    let away = app.media().join("photos.unplugged");

    std::fs::rename(app.lib(), &away).unwrap();
    let (_, took) = until("library offline", || async {
        (!app.online().await).then_some(())
    })
    .await;
    eprintln!("root moved away → offline in {took:?}");
    assert_offline_but_listed(&app, &files, &cats).await;
    // Changes in the moved-away tree are not taken for the library's.
    std::fs::remove_file(away.join("b.jpg")).unwrap();
    app.offline_checks_pass(2).await;
    assert_eq!(app.api.all_files().await, files);

    std::fs::write(away.join("b.jpg"), jpeg(80, 60, 2, None)).unwrap();
    std::fs::rename(&away, app.lib()).unwrap();
    let (_, took) = until("library back online", || async {
        app.online().await.then_some(())
    })
    .await;
    eprintln!("root back → online in {took:?}");
    // Same ids; b.jpg was rewritten meanwhile (new mtime): same id, re-probed.
    until("b.jpg listed again", || async { app.file("b.jpg").await }).await;
    let mut before = ids(&files);
    let mut after = ids(&app.api.all_files().await);
    before.sort();
    after.sort();
    assert_eq!(before, after);
    assert_eq!(ids(&app.api.all_catalogs().await), ids(&cats));
    let a = files.iter().find(|f| f["name"] == "a.jpg").unwrap();
    assert_eq!(app.api.download(id(a), &[]).await.status(), 200);
    // Watched again.
    write_file(&app.lib().join("after.jpg"), &jpeg(10, 10, 4, None));
    until("after.jpg listed", || async { app.file("after.jpg").await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_tree_at_the_same_path_stays_offline() {
    let app = TestApp::watching(&tree(), |_| {}).await;
    let files = app.api.all_files().await;
    let cats = app.api.all_catalogs().await;
    let away = app.media().join("photos.unplugged");
    std::fs::rename(app.lib(), &away).unwrap();
    until("library offline", || async {
        (!app.online().await).then_some(())
    })
    .await;

    // Another disk mounted at the same path: other files, no marker.
    write_file(&app.lib().join("stranger.jpg"), &jpeg(10, 10, 9, None));
    write_file(&app.lib().join("sub/c.jpg"), &jpeg(10, 10, 8, None));
    // Offline checks go by (at least one begun after the writes).
    app.offline_checks_pass(2).await;
    assert!(!app.online().await, "a different tree is not the library");
    assert_offline_but_listed(&app, &files, &cats).await;

    // Another isync library's disk (a different marker) is not it either.
    write_file(&app.lib().join(".isync/library-id"), b"0123456789abcdef\n");
    app.offline_checks_pass(2).await;
    assert!(!app.online().await);
    assert_offline_but_listed(&app, &files, &cats).await;

    // The right disk again.
    std::fs::remove_dir_all(app.lib()).unwrap();
    std::fs::rename(&away, app.lib()).unwrap();
    until("library back online", || async {
        app.online().await.then_some(())
    })
    .await;
    assert_eq!(app.api.all_files().await, files, "same records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_mount_point_is_offline() {
    let app = TestApp::watching(&tree(), |_| {}).await;
    let files = app.api.all_files().await;
    let cats = app.api.all_catalogs().await;
    // Unmounted: the mount point is an empty folder again (simulated by
    // swapping the tree for an empty folder under the same name).
    let away = app.media().join("photos.unplugged");
    std::fs::rename(app.lib(), &away).unwrap();
    std::fs::create_dir(app.lib()).unwrap();
    until("library offline", || async {
        (!app.online().await).then_some(())
    })
    .await;
    app.offline_checks_pass(2).await;
    assert!(!app.online().await);
    assert_offline_but_listed(&app, &files, &cats).await;
    // The disk mounted again (its tree back at the mount point). The empty
    // stand-in once held a `.isync` folder by then (failed once under
    // load): it is on the library's own device, so a store reopened at the
    // path passes the cache's same-device check, which a real mount point on
    // the card does not.
    std::fs::remove_dir_all(app.lib()).unwrap();
    std::fs::rename(&away, app.lib()).unwrap();
    until("library back online", || async {
        app.online().await.then_some(())
    })
    .await;
    assert_eq!(app.api.all_files().await, files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_stopped_are_reconciled_at_start() {
    let mut app = TestApp::watching(
        &[
            ("keep.jpg", jpeg(10, 10, 1, None)),
            ("gone.jpg", jpeg(10, 10, 2, None)),
            ("album/x.jpg", jpeg(10, 10, 3, None)),
            ("album/inner/y.jpg", jpeg(10, 10, 4, None)),
        ],
        |_| {},
    )
    .await;
    let keep = id(&app.file("keep.jpg").await.unwrap());
    let x = id(&app.file("x.jpg").await.unwrap());
    let y = id(&app.file("y.jpg").await.unwrap());
    let album = id(&app.catalog("album").await.unwrap());
    let inner = id(&app.catalog("inner").await.unwrap());

    app.stop_only().await;
    let lib = app.lib();
    std::fs::remove_file(lib.join("gone.jpg")).unwrap();
    std::fs::rename(lib.join("album"), lib.join("renamed-album")).unwrap();
    std::fs::rename(lib.join("keep.jpg"), lib.join("kept.jpg")).unwrap();
    write_file(&lib.join("added.jpg"), &jpeg(10, 10, 5, None));
    app.boot().await;
    assert_eq!(
        app.names().await,
        ["added.jpg", "kept.jpg", "x.jpg", "y.jpg"]
    );
    assert_eq!(id(&app.file("kept.jpg").await.unwrap()), keep);
    assert_eq!(id(&app.file("x.jpg").await.unwrap()), x);
    assert_eq!(id(&app.file("y.jpg").await.unwrap()), y);
    assert_eq!(id(&app.catalog("renamed-album").await.unwrap()), album);
    assert_eq!(id(&app.catalog("inner").await.unwrap()), inner);
}

/// `cp -a from to` (a backup being put back, or taken).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(st.success());
}

/// Issue 3: the configured root folder deleted while serving (`rm -r`):
/// the library goes offline with every record kept (nothing re-creates the
/// folder meanwhile), and comes back, same ids and watched again, when the
/// folder is restored from a copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_root_folder_goes_offline_and_comes_back_when_restored() {
    let app = TestApp::watching(&tree(), |_| {}).await;
    let files = app.api.all_files().await;
    let cats = app.api.all_catalogs().await;
    let backup = app.media().join("photos.backup");
    copy_tree(&app.lib(), &backup);

    // `rm -r` again while the server puts its thumbnail cache folder into
    // the root being deleted (rmdir of the root: "Directory not empty");
    // once the root is gone, nothing may make it again (checked below).
    let mut tries = 0;
    while let Err(e) = std::fs::remove_dir_all(app.lib()) {
        tries += 1;
        assert!(
            tries < 20 && e.kind() == std::io::ErrorKind::DirectoryNotEmpty,
            "rm -r of the library: {e}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    until("library offline", || async {
        (!app.online().await).then_some(())
    })
    .await;
    assert_offline_but_listed(&app, &files, &cats).await;
    // An upload announced meanwhile is refused, and leaves no folder behind.
    let v = app
        .api
        .post_form(
            "/uploadFileInfo.icc",
            serde_json::json!({"cid": id(&cats[0]), "name": "x.jpg", "size": 10, "type": 1,
                "ext": "jpg"}),
        )
        .await;
    assert_ne!(v["code"], 0, "{v}");
    // Offline checks go by (at least one begun after the upload).
    app.offline_checks_pass(2).await;
    assert!(!app.online().await);
    assert!(!app.lib().exists(), "nothing re-created the deleted root");
    assert_offline_but_listed(&app, &files, &cats).await;

    let restoring = app.media().join("photos.restoring");
    copy_tree(&backup, &restoring);
    std::fs::rename(&restoring, app.lib()).unwrap();
    until("library back online", || async {
        app.online().await.then_some(())
    })
    .await;
    assert_eq!(app.api.all_files().await, files, "same records, same ids");
    assert_eq!(ids(&app.api.all_catalogs().await), ids(&cats));
    let a = files.iter().find(|f| f["name"] == "a.jpg").unwrap();
    assert_eq!(app.api.download(id(a), &[]).await.status(), 200);
    write_file(&app.lib().join("sub/after.jpg"), &jpeg(10, 10, 4, None));
    until("after.jpg listed", || async { app.file("after.jpg").await }).await;
}

/// Every file and catalog row, as text (ids, paths, probe results), to
/// show that nothing was removed or changed.
fn rows(p: &Process) -> String {
    p.db_read(|c| {
        let mut out = String::new();
        for t in ["catalogs", "files"] {
            let mut st = c.prepare(&format!("SELECT * FROM {t} ORDER BY id"))?;
            let n = st.column_count();
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                out.push_str(t);
                for i in 0..n {
                    out.push_str(&format!(" {:?}", r.get_ref(i)?));
                }
                out.push('\n');
            }
        }
        Ok(out)
    })
}

/// File names recorded, sorted.
fn names(p: &Process) -> Vec<String> {
    p.db_read(|c| {
        let mut st = c.prepare("SELECT name FROM files ORDER BY name")?;
        let v = st.query_map([], |r| r.get(0))?.collect();
        v
    })
}

/// (marker, device, online) recorded for the one library.
fn identity(p: &Process) -> (Option<String>, Option<i64>, bool) {
    p.db_read(|c| {
        c.query_row(
            "SELECT marker, device, online FROM libraries WHERE kind = 'config'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
    })
}

fn same_files(a: &std::path::Path, b: &std::path::Path) {
    for (rel, bytes) in tree() {
        for d in [a, b] {
            write_file(&d.join(rel), &bytes);
            set_mtime(&d.join(rel), 1_600_000_000);
        }
    }
}

fn out(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// README "Disk offline": a read-only root — where no identity marker can
/// be written — is identified by its device number. Another file system
/// mounted there with the very same files (names, sizes, mtimes) is another
/// device: offline, nothing removed, downloads −10011, nothing written on
/// it; the first one back is online again with the same ids. Through the
/// real binary, which notices both mount changes by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_root_is_identified_by_its_device() {
    let mut p = Process::new(&["alice"], "[watch]\noffline_check_secs = 1\n");
    let (disk_a, disk_b) = (p.dir.path().join("disk-a"), p.dir.path().join("disk-b"));
    let mut m = Mounts::default();
    if m.tmpfs(&disk_a).is_none() {
        return;
    }
    m.tmpfs(&disk_b).unwrap();
    same_files(&disk_a, &disk_b);
    m.bind_read_only(&disk_a, &p.lib());
    assert!(
        std::fs::create_dir(p.lib().join(".isync")).is_err(),
        "the root is read-only, even for root"
    );

    p.start(&[("ISYNC_LOG", "debug")]);
    p.wait_logged("initial scan:", 1).await;
    assert_eq!(names(&p), ["a.jpg", "b.jpg", "c.jpg"]);
    let (marker, dev, online) = identity(&p);
    assert_eq!(marker, None, "no marker could be written");
    assert_eq!(dev, Some(device(&disk_a) as i64), "the device is recorded");
    assert!(online);
    assert!(!disk_a.join(".isync").exists());
    assert!(
        !p.logged("identifying it by device").is_empty(),
        "{:#?}",
        p.log()
    );
    let api = p.login("alice").await;
    let files = api.all_files().await;
    let a = files.iter().find(|f| f["name"] == "a.jpg").unwrap();
    assert_eq!(api.download(id(a), &[]).await.status(), 200);
    let before = rows(&p);

    // Another disk with the same files is mounted over it.
    m.bind_read_only(&disk_b, &p.lib());
    let why = p.wait_logged("is offline:", 1).await;
    assert!(why[0].contains("another device than recorded"), "{why:?}");
    assert_eq!(rows(&p), before, "nothing removed or changed");
    assert!(!identity(&p).2);
    assert_eq!(api.all_files().await, files, "still listed");
    assert_binary_err_status(api.download(id(a), &[]).await, 503, LIBRARY_OFFLINE).await;
    assert!(!disk_b.join(".isync").exists());

    // The library's own disk again.
    m.unmount_top(&p.lib());
    p.wait_logged("is back online", 1).await;
    assert_eq!(rows(&p), before, "same ids, nothing probed again");
    assert_eq!(api.download(id(a), &[]).await.status(), 200);
    assert_eq!(p.logged("is offline:").len(), 1, "said once");
}

/// README "Disk offline": isync follows the mount table. A file system
/// mounted over a library's folder (another disk, with files of its own
/// and no marker) raises no inotify event in the covered folder; the
/// mount table change alone takes the library offline, with every record
/// kept and nothing written on the other disk. Unmounted, the library is
/// back, same records, and watched again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_system_mounted_over_the_library_takes_it_offline_until_unmounted() {
    let mut p = Process::new(&["alice"], "[watch]\noffline_check_secs = 1\n");
    for (rel, bytes) in tree() {
        write_file(&p.lib().join(rel), &bytes);
    }
    let other = p.dir.path().join("other-disk");
    let mut m = Mounts::default();
    if m.tmpfs(&other).is_none() {
        return;
    }
    write_file(&other.join("stranger.jpg"), &jpeg(10, 10, 9, None));
    write_file(&other.join("sub/c.jpg"), &jpeg(10, 10, 8, None));

    p.start(&[]);
    p.wait_logged("initial scan:", 1).await;
    assert!(p.lib().join(".isync/library-id").is_file());
    let before = rows(&p);

    m.bind(&other, &p.lib());
    let why = p.wait_logged("is offline:", 1).await;
    assert!(why[0].contains("has no .isync/library-id"), "{why:?}");
    assert_eq!(rows(&p), before, "nothing removed, nothing added");
    assert!(!identity(&p).2);
    assert!(!other.join(".isync").exists(), "nothing written on it");

    m.unmount_top(&p.lib());
    p.wait_logged("is back online", 1).await;
    assert_eq!(rows(&p), before);
    write_file(&p.lib().join("after.jpg"), &jpeg(10, 10, 4, None));
    until("after.jpg recorded", || async {
        names(&p).contains(&"after.jpg".to_string()).then_some(())
    })
    .await;
    assert_eq!(p.logged("is offline:").len(), 1, "said once");
}

/// README "Disk offline" and "Command line": a different disk at the
/// library's path (another isync library's, with its own marker) stays
/// offline — also through `isync scan` — until `isync scan
/// --confirm-deletions`, asked of the running server by the real binary,
/// adopts it: its files replace the old records, its marker becomes the
/// library's, and it is watched from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_disk_is_adopted_only_with_confirm_deletions() {
    let mut p = Process::new(&["alice"], "[watch]\noffline_check_secs = 1\n");
    for (rel, bytes) in tree() {
        write_file(&p.lib().join(rel), &bytes);
    }
    p.start(&[]);
    p.wait_logged("initial scan:", 1).await;
    let first = std::fs::read_to_string(p.lib().join(".isync/library-id")).unwrap();
    assert_eq!(identity(&p).0.as_deref(), Some(first.trim()));

    // The other disk: other files, another library's marker.
    let old = p.dir.path().join("old-disk");
    std::fs::rename(p.lib(), &old).unwrap();
    let foreign = "0123456789abcdef0123456789abcdef";
    write_file(&p.lib().join("d.jpg"), &jpeg(10, 10, 5, None));
    write_file(&p.lib().join("new/e.jpg"), &jpeg(10, 10, 6, None));
    write_file(
        &p.lib().join(".isync/library-id"),
        format!("{foreign}\n").as_bytes(),
    );
    let why = p.wait_logged("is offline:", 1).await;
    assert!(why[0].contains("belongs to another library"), "{why:?}");
    let before = rows(&p);

    let o = p.cli(&["scan"]);
    assert!(o.status.success(), "{}", out(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("by the running server"), "{}", out(&o));
    assert!(text.contains("offline (nothing removed)"), "{}", out(&o));
    assert_eq!(rows(&p), before, "a plain scan changed nothing");

    let o = p.cli(&["scan", "--confirm-deletions"]);
    assert!(o.status.success(), "{}", out(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("by the running server"), "{}", out(&o));
    assert!(
        text.contains("2 added, 0 updated, 3 removed"),
        "{}",
        out(&o)
    );
    assert!(!text.contains("offline (nothing removed)"), "{}", out(&o));
    assert_eq!(names(&p), ["d.jpg", "e.jpg"]);
    let (marker, _, online) = identity(&p);
    assert_eq!(
        marker.as_deref(),
        Some(foreign),
        "its marker is the library's now"
    );
    assert!(online);
    assert_eq!(p.logged("adopting the folder as it is").len(), 1);
    // The old disk is untouched.
    assert!(old.join("a.jpg").is_file() && old.join("sub/c.jpg").is_file());

    // Watched from now on.
    write_file(&p.lib().join("new/f.jpg"), &jpeg(10, 10, 7, None));
    until("f.jpg recorded", || async {
        names(&p).contains(&"f.jpg".to_string()).then_some(())
    })
    .await;
}
