//! Disk offline/online under a running server (issue 4): a library root
//! that vanishes is offline at once — no record removed, listings answer,
//! downloads say −10011 — and comes back with the same ids when the same
//! disk (identified by its `.isync/library-id` marker) returns; a different
//! tree at the same path stays offline. Changes made while isync was not
//! running are reconciled at start, touching only what changed.

mod common;
mod live;

use common::*;
use live::{until, Live};
use serde_json::Value;
use std::time::Duration;

fn tree() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("a.jpg", jpeg(64, 48, 1, None)),
        ("b.jpg", jpeg(80, 60, 2, None)),
        ("sub/c.jpg", jpeg(32, 32, 3, None)),
    ]
}

async fn assert_offline_but_listed(app: &Live, files: &[Value], cats: &[Value]) {
    assert_eq!(app.api.all_files().await, files, "files stay listed");
    assert_eq!(app.api.all_catalogs().await, cats, "catalogs stay listed");
    for f in files {
        let r = app.api.download(id(f), &[]).await;
        assert_binary_err_status(r, 503, LIBRARY_OFFLINE).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_root_goes_offline_and_the_same_disk_comes_back() {
    let app = Live::start(&tree(), |_| {}).await;
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
    tokio::time::sleep(Duration::from_millis(300)).await;
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
    let app = Live::start(&tree(), |_| {}).await;
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
    // Several offline checks (offline_check_secs = 1) go by.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!app.online().await, "a different tree is not the library");
    assert_offline_but_listed(&app, &files, &cats).await;

    // Another isync library's disk (a different marker) is not it either.
    write_file(&app.lib().join(".isync/library-id"), b"0123456789abcdef\n");
    tokio::time::sleep(Duration::from_millis(1500)).await;
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
    let app = Live::start(&tree(), |_| {}).await;
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
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!app.online().await);
    assert_offline_but_listed(&app, &files, &cats).await;
    std::fs::remove_dir(app.lib()).unwrap();
    std::fs::rename(&away, app.lib()).unwrap();
    until("library back online", || async {
        app.online().await.then_some(())
    })
    .await;
    assert_eq!(app.api.all_files().await, files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_stopped_are_reconciled_at_start() {
    let mut app = Live::start(
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

    app.restart(|lib| {
        std::fs::remove_file(lib.join("gone.jpg")).unwrap();
        std::fs::rename(lib.join("album"), lib.join("renamed-album")).unwrap();
        std::fs::rename(lib.join("keep.jpg"), lib.join("kept.jpg")).unwrap();
        write_file(&lib.join("added.jpg"), &jpeg(10, 10, 5, None));
    })
    .await;
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
    let app = Live::start(&tree(), |_| {}).await;
    let files = app.api.all_files().await;
    let cats = app.api.all_catalogs().await;
    let backup = app.media().join("photos.backup");
    copy_tree(&app.lib(), &backup);

    std::fs::remove_dir_all(app.lib()).unwrap();
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
    // Several offline checks (offline_check_secs = 1) go by.
    tokio::time::sleep(Duration::from_millis(2500)).await;
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
