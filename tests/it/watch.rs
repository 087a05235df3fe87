//! The live library (issue 4): files and folders created, modified, renamed,
//! moved and deleted under a running server show up through the API without
//! any scan being asked for; renames keep ids, help info and share links;
//! a file still being written is not probed half-written; the watch budget
//! falls back to periodic rescans; the mass-deletion guard holds removals
//! until `isync scan --confirm-deletions` (asked of the running server).

use crate::common;

use common::*;
use serde_json::json;
use std::io::Write;
use std::time::Duration;

fn three() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("a.jpg", jpeg(64, 48, 1, None)),
        ("b.jpg", jpeg(80, 60, 2, None)),
        ("sub/c.jpg", jpeg(32, 32, 3, None)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_modified_and_deleted_files_show_up() {
    let app = TestApp::watching(&three(), |_| {}).await;
    assert_eq!(app.names().await, ["a.jpg", "b.jpg", "c.jpg"]);
    let a = app.file("a.jpg").await.unwrap();

    write_file(&app.lib().join("new.jpg"), &jpeg(40, 30, 4, None));
    write_file(&app.lib().join("sub/notes.txt"), b"hello");
    let (f, took) = until("new.jpg listed", || async { app.file("new.jpg").await }).await;
    assert_eq!(
        (f["width"].as_i64(), f["height"].as_i64()),
        (Some(40), Some(30)),
        "{f}"
    );
    until("notes.txt listed", || async { app.file("notes.txt").await }).await;
    eprintln!("create → listed in {took:?}");

    // Rewritten in place: same id, new media info.
    write_file(&app.lib().join("a.jpg"), &jpeg(120, 90, 5, None));
    let (f, _) = until("a.jpg re-probed", || async {
        app.file("a.jpg").await.filter(|f| f["width"] == 120)
    })
    .await;
    assert_eq!(id(&f), id(&a));

    std::fs::remove_file(app.lib().join("b.jpg")).unwrap();
    until("b.jpg gone", || async {
        (app.file("b.jpg").await.is_none()).then_some(())
    })
    .await;
    assert_eq!(
        app.names().await,
        ["a.jpg", "c.jpg", "new.jpg", "notes.txt"]
    );
    assert!(app.stats().scans.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_move_keep_id_help_info_and_share_link() {
    let app = TestApp::watching(&three(), |_| {}).await;
    let a = id(&app.file("a.jpg").await.unwrap());
    let v = app
        .api
        .post_form(
            "/updateHelpInfo.icc",
            json!({"type": 2, "id": a, "helpInt": 7, "helpText": "kept"}),
        )
        .await;
    assert_eq!(v["code"], 0, "{v}");
    let v = app
        .api
        .get_json("/shareFileUrl.icc", json!({"id": a}))
        .await;
    let key = data(&v).as_str().unwrap().to_string();

    std::fs::rename(app.lib().join("a.jpg"), app.lib().join("renamed.jpg")).unwrap();
    let (f, _) = until("renamed.jpg listed", || async {
        app.file("renamed.jpg").await
    })
    .await;
    assert_eq!(id(&f), a, "a rename keeps the id");
    assert!(app.file("a.jpg").await.is_none());

    // Moved into another folder: same id, now in that folder's catalog.
    let sub = id(&app.catalog("sub").await.unwrap());
    std::fs::rename(
        app.lib().join("renamed.jpg"),
        app.lib().join("sub/moved.jpg"),
    )
    .unwrap();
    let (f, _) = until("moved.jpg listed", || async { app.file("moved.jpg").await }).await;
    assert_eq!(id(&f), a, "a move keeps the id");
    assert_eq!(f["catalogId"], sub, "{f}");

    let v = app
        .api
        .get_json("/helpInfo.icc", json!({"type": 2, "id": a}))
        .await;
    assert_eq!(data(&v)["helpInt"], 7, "{v}");
    assert_eq!(data(&v)["helpText"], "kept", "{v}");
    // The share link still serves the (moved) original.
    let r = app
        .anon_get(&format!("/shareFile.icc?shareKey={key}"))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.bytes().await.unwrap().len() as u64,
        std::fs::metadata(app.lib().join("sub/moved.jpg"))
            .unwrap()
            .len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_rename_keeps_catalog_and_every_id_below() {
    let files = vec![
        ("trip/a.jpg", jpeg(10, 10, 1, None)),
        ("trip/day1/b.jpg", jpeg(10, 10, 2, None)),
        ("trip/day1/c.jpg", jpeg(10, 10, 3, None)),
        ("trip/day2/deep/d.jpg", jpeg(10, 10, 4, None)),
        ("other/e.jpg", jpeg(10, 10, 5, None)),
    ];
    let app = TestApp::watching(&files, |_| {}).await;
    let cats_before = app.api.all_catalogs().await;
    let files_before = app.api.all_files().await;
    let trip = id(&app.catalog("trip").await.unwrap());
    let v = app
        .api
        .post_form(
            "/updateHelpInfo.icc",
            json!({"type": 1, "id": trip, "helpText": "summer"}),
        )
        .await;
    assert_eq!(v["code"], 0, "{v}");

    std::fs::rename(app.lib().join("trip"), app.lib().join("holiday")).unwrap();
    let (c, took) = until("holiday listed", || async { app.catalog("holiday").await }).await;
    eprintln!("folder rename → listed in {took:?}");
    assert_eq!(id(&c), trip, "the renamed folder keeps its catalog id");
    assert!(app.catalog("trip").await.is_none());
    let cats_after = app.api.all_catalogs().await;
    let mut before: Vec<i64> = ids(&cats_before);
    let mut after: Vec<i64> = ids(&cats_after);
    before.sort();
    after.sort();
    assert_eq!(before, after, "every catalog id below is kept");
    let mut fb = ids(&files_before);
    let mut fa = ids(&app.api.all_files().await);
    fb.sort();
    fa.sort();
    assert_eq!(fb, fa, "every file id below is kept");
    let v = app
        .api
        .get_json("/helpInfo.icc", json!({"type": 1, "id": trip}))
        .await;
    assert_eq!(data(&v)["helpText"], "summer");
    // Downloads follow the new path.
    let d = app.file("d.jpg").await.unwrap();
    assert_eq!(app.api.download(id(&d), &[]).await.status(), 200);

    // Moved into another folder, under a new name.
    let day1 = id(&app.catalog("day1").await.unwrap());
    std::fs::rename(
        app.lib().join("holiday/day1"),
        app.lib().join("other/first-day"),
    )
    .unwrap();
    let (c, _) = until("first-day listed", || async {
        app.catalog("first-day").await
    })
    .await;
    assert_eq!(id(&c), day1);
    let other = id(&app.catalog("other").await.unwrap());
    assert_eq!(c["parentId"], other, "{c}");
    let b = app.file("b.jpg").await.unwrap();
    assert_eq!(app.api.download(id(&b), &[]).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_created_and_deleted_show_up() {
    let app = TestApp::watching(&three(), |_| {}).await;
    // mkdir -p and files at once: the new folders are walked whole (their
    // watches may come after the files).
    write_file(&app.lib().join("new/deeper/x.jpg"), &jpeg(10, 10, 6, None));
    write_file(&app.lib().join("new/y.jpg"), &jpeg(10, 10, 7, None));
    until("x.jpg and y.jpg listed", || async {
        let n = app.names().await;
        (n.contains(&"x.jpg".to_string()) && n.contains(&"y.jpg".to_string())).then_some(())
    })
    .await;
    until("catalog deeper listed", || async {
        app.catalog("deeper").await
    })
    .await;
    // A file added in the new (now watched) folder later.
    write_file(&app.lib().join("new/deeper/z.jpg"), &jpeg(10, 10, 8, None));
    until("z.jpg listed", || async { app.file("z.jpg").await }).await;

    std::fs::remove_dir_all(app.lib().join("new")).unwrap();
    until("new/ gone", || async {
        (app.catalog("new").await.is_none() && app.catalog("deeper").await.is_none()).then_some(())
    })
    .await;
    assert_eq!(app.names().await, ["a.jpg", "b.jpg", "c.jpg"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_being_written_is_ingested_once_complete() {
    let app = TestApp::watching(&three(), |_| {}).await;
    let full = jpeg(200, 100, 9, None);
    let path = app.lib().join("big.jpg");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&full[..full.len() / 2]).unwrap();
    f.flush().unwrap();
    // Well past the debounce: a half-written file is not listed…
    write_file(&app.lib().join("marker.jpg"), &jpeg(10, 10, 1, None));
    until("marker.jpg listed", || async {
        app.file("marker.jpg").await
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        app.file("big.jpg").await.is_none(),
        "probed while being written"
    );
    // …and is once closed.
    f.write_all(&full[full.len() / 2..]).unwrap();
    drop(f);
    let (b, _) = until("big.jpg listed", || async { app.file("big.jpg").await }).await;
    assert_eq!(b["width"], 200, "{b}");
    assert_eq!(b["size"], full.len() as u64, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_watch_budget_the_library_is_rescanned_periodically() {
    // Only the root can be watched: `sub` is seen by the periodic rescan.
    let app = TestApp::watching(&three(), |c| {
        c.watch.max_watches = 1;
        c.watch.fallback_rescan_secs = 1;
    })
    .await;
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(app.stats().watches.load(Relaxed), 1);
    assert_eq!(app.stats().fallback.load(Relaxed), 1);
    write_file(&app.lib().join("sub/unwatched.jpg"), &jpeg(10, 10, 2, None));
    until("unwatched.jpg listed by the fallback rescan", || async {
        app.file("unwatched.jpg").await
    })
    .await;
    // The watched root still reacts to events.
    write_file(&app.lib().join("watched.jpg"), &jpeg(10, 10, 3, None));
    until("watched.jpg listed", || async {
        app.file("watched.jpg").await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mass_deletion_is_held_until_confirmed() {
    let files: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("f{i:02}.jpg"), jpeg(8, 8, i as u8, None)))
        .collect();
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    let app = TestApp::watching(&refs, |_| {}).await;
    assert_eq!(app.names().await.len(), 20);

    // 15 of 20 vanish (a failing disk looks like this): nothing is removed.
    for i in 0..15 {
        std::fs::remove_file(app.lib().join(format!("f{i:02}.jpg"))).unwrap();
    }
    let (held, _) = until("removals held back", || async {
        let n = app.held().await;
        (n > 0).then_some(n)
    })
    .await;
    assert_eq!(held, 15);
    assert_eq!(app.names().await.len(), 20, "records kept");
    // New files still come in meanwhile.
    write_file(&app.lib().join("new.jpg"), &jpeg(8, 8, 99, None));
    until("new.jpg listed", || async { app.file("new.jpg").await }).await;
    assert_eq!(app.names().await.len(), 21);

    // `isync scan --confirm-deletions` asks the running server.
    let data_dir = app.data_dir();
    let reply = tokio::task::spawn_blocking(move || {
        isync::library::control::request(
            &data_dir,
            &isync::library::control::ScanRequest {
                path: None,
                confirm_deletions: true,
            },
        )
    })
    .await
    .unwrap()
    .expect("control socket")
    .expect("the running server answers");
    assert!(reply.ok, "{reply:?}");
    assert!(reply.report.contains("15 removed"), "{}", reply.report);
    assert_eq!(
        app.names().await.len(),
        6,
        "applied, and listings see it at once"
    );
    assert_eq!(app.held().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_files_is_ingested() {
    let app = TestApp::watching(&three(), |_| {}).await;
    let img = jpeg(16, 16, 1, None);
    for i in 0..200 {
        write_file(&app.lib().join(format!("burst/{i:03}.jpg")), &img);
    }
    let (_, took) = until("200 files listed", || async {
        (app.api.all_files().await.len() == 203).then_some(())
    })
    .await;
    eprintln!("200-file burst listed in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_removals_are_forgotten_when_the_files_come_back() {
    let files: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| (format!("g{i:02}.jpg"), jpeg(8, 8, i as u8, None)))
        .collect();
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    let app = TestApp::watching(&refs, |_| {}).await;
    let before = app.api.all_files().await;
    let away = app.media().join("stash");
    std::fs::create_dir(&away).unwrap();
    for (n, _) in &files[..10] {
        std::fs::rename(app.lib().join(n), away.join(n)).unwrap();
    }
    until("removals held back", || async {
        (app.held().await == 10).then_some(())
    })
    .await;
    // The same files return (a flaky cable): the guard clears by itself and
    // every record is as it was.
    for (n, _) in &files[..10] {
        std::fs::rename(away.join(n), app.lib().join(n)).unwrap();
    }
    until("guard cleared", || async {
        (app.held().await == 0).then_some(())
    })
    .await;
    assert_eq!(app.api.all_files().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isync_scan_asks_the_running_server() {
    let app = TestApp::watching(&three(), |_| {}).await;
    let conf = app.data_dir().join("isync-test.toml");
    std::fs::write(&conf, app.cfg.to_toml()).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        common::process::Launch::new()
            .config(&conf)
            .arg("scan")
            .output()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("by the running server"), "{stdout}");
    assert!(stdout.contains("3 files seen"), "{stdout}");
}

/// Issue 3: the library's root catalog deleted through the API while
/// serving (`deleteCatalog.icc` on the root: its contents go to the trash,
/// the folder stays). The library keeps a root its users see, the watcher
/// keeps working, and what the trash gives back is listed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_root_catalog_keeps_the_library_served_and_watched() {
    let app = TestApp::watching(
        &[
            ("a.jpg", jpeg(64, 48, 1, None)),
            ("sub/b.jpg", jpeg(32, 32, 2, None)),
        ],
        |_| {},
    )
    .await;
    let root = id(&app.api.catalogs("-1").await[0]);
    let v = app
        .api
        .post_form("/deleteCatalog.icc", json!({"ids": root.to_string()}))
        .await;
    assert_eq!(v["code"], 0, "{v}");
    assert!(app.api.all_files().await.is_empty());
    assert!(app.lib().is_dir(), "the root folder stays");

    // The user still has the library (a new root catalog), and it is live.
    until("a root catalog again", || async {
        let v = app
            .api
            .get_json("/catalogs.icc", json!({"pids": "-1"}))
            .await;
        let a = v["data"].as_array().cloned().unwrap_or_default();
        // The library's own root (named after its folder), not a fresh
        // personal root.
        (a.len() == 1 && a[0]["name"] == "photos").then_some(())
    })
    .await;
    write_file(&app.lib().join("new.jpg"), &jpeg(10, 10, 3, None));
    until("new.jpg listed", || async { app.file("new.jpg").await }).await;
    assert!(app
        .stats()
        .running
        .load(std::sync::atomic::Ordering::Relaxed));

    // Nothing was lost: the trash gives the contents back.
    let entries = isync::trash::list(app.db()).unwrap();
    let folder = entries.iter().find(|e| e.kind == "folder").expect("folder");
    let db = app.db().clone();
    let fid = folder.id;
    tokio::task::spawn_blocking(move || isync::trash::restore(&db, fid))
        .await
        .unwrap()
        .unwrap();
    until("restored files listed", || async {
        let n = app.names().await;
        (n.contains(&"a.jpg".to_string()) && n.contains(&"b.jpg".to_string())).then_some(n)
    })
    .await;
}

/// Sends `sig` (`STOP`, `CONT`) to process `pid`.
fn signal(pid: u32, sig: &str) {
    let st = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(st.success(), "kill -{sig} {pid}");
}

/// Waits until the image `name` is listed for `api` (failing after the
/// deadline); images only, so tens of thousands of other files do not
/// push it off the page.
async fn listed(api: &Api, name: &str) {
    until(&format!("{name} listed"), || async {
        api.files(json!({"pageIndex": 0, "maxPerPage": 10000, "types": "1"}))
            .await
            .iter()
            .any(|f| f["name"] == name)
            .then_some(())
    })
    .await;
}

/// README "Watch limit": "An overflowing event queue is handled the same
/// way: one warning, one full rescan." The real binary is stopped
/// (SIGSTOP) while more events than the kernel's queue holds
/// (`fs.inotify.max_queued_events`) happen in one folder, then a file is
/// written in another folder — its events are lost. Continued, the server
/// lists that file (only a full rescan can find it) after exactly one full
/// rescan; a file written next is picked up by an ordinary scan of its
/// folder (no second full rescan was pending). Twice: the warning is
/// logged once, each overflow costs one full rescan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overflowing_event_queue_costs_one_warning_and_one_full_rescan() {
    let queue: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut p = common::process::Process::new(&["alice"], "");
    let lib = p.lib();
    for d in ["burst-1", "burst-2", "other"] {
        std::fs::create_dir_all(lib.join(d)).unwrap();
    }
    write_file(&lib.join("other/a.jpg"), &jpeg(20, 10, 1, None));
    p.start(&[("ISYNC_LOG", "debug")]);
    let api = p.login("alice").await;
    listed(&api, "a.jpg").await;
    // An event after the start is seen: the watches are in place.
    write_file(&lib.join("other/probe.jpg"), &jpeg(20, 10, 2, None));
    listed(&api, "probe.jpg").await;
    let root = format!("library {}:", lib.display());
    let scans = |p: &common::process::Process, kind: &str| {
        p.logged(&root).iter().filter(|l| l.ends_with(kind)).count()
    };
    let warning = "inotify queue overflow";
    assert_eq!(p.logged(warning).len(), 0);
    for round in 1..=2 {
        let full = scans(&p, "(full rescan)");
        signal(p.pid(), "STOP");
        // A create and a close-write each: twice the queue.
        for i in 0..queue {
            std::fs::File::create(lib.join(format!("burst-{round}/f{i:05}.txt"))).unwrap();
        }
        let late = format!("late-{round}.jpg");
        write_file(&lib.join("other").join(&late), &jpeg(20, 10, 3, None));
        signal(p.pid(), "CONT");
        listed(&api, &late).await;
        p.wait_logged("(full rescan)", full + 1).await;
        let next = format!("next-{round}.jpg");
        let ordinary = p.logged("(1 folders)").len();
        write_file(&lib.join("other").join(&next), &jpeg(20, 10, 4, None));
        listed(&api, &next).await;
        p.wait_logged("(1 folders)", ordinary + 1).await;
        let last = p.logged(&root).last().cloned().unwrap_or_default();
        assert!(
            last.contains("1 added") && last.ends_with("(1 folders)"),
            "{next} is found by a scan of its folder: {last}"
        );
        assert_eq!(
            scans(&p, "(full rescan)"),
            full + 1,
            "round {round}: one full rescan:\n{}",
            p.logged(&root).join("\n")
        );
        let warned = p.logged(warning);
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(warned[0].starts_with("WARN"), "{warned:?}");
    }
    let files: i64 = p.db_read(|c| c.query_row("SELECT count(*) FROM files", [], |r| r.get(0)));
    assert_eq!(files, 2 * queue as i64 + 6, "every file recorded once");
}

/// README "Watching": "a folder that keeps changing [is scanned] at least
/// once a second" — not only once it is quiet. With a debounce of a
/// minute (`watch.debounce_ms` at its maximum) a folder is changed without
/// pause (a new file after each look at the listing) until its files have
/// been picked up by three successive scans, each seeing more of them:
/// scans happen while it keeps changing, long before any quiet minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_that_keeps_changing_is_scanned_while_it_changes() {
    let app = TestApp::watching(&three(), |c| c.watch.debounce_ms = 60_000).await;
    use std::sync::atomic::Ordering::Relaxed;
    let busy = app.lib().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    let start = std::time::Instant::now();
    let (mut written, mut seen) = (0usize, Vec::new());
    let scans_before = app.stats().scans.load(Relaxed);
    let mut counted = scans_before;
    while seen.len() < 3 {
        write_file(&busy.join(format!("f{written:05}.txt")), b"x");
        written += 1;
        let listed = app
            .api
            .all_files()
            .await
            .iter()
            .filter(|f| f["name"].as_str().is_some_and(|n| n.starts_with('f')))
            .count();
        // A scan commits its rows in batches, so a listing can grow twice
        // during one scan (seen alone on a loaded machine: [1000, 1004,
        // 1320] after 2 scans): a growth counts once a scan has ended since
        // the last one counted.
        let scans_now = app.stats().scans.load(Relaxed);
        if listed > seen.last().copied().unwrap_or(0) && scans_now > counted {
            assert!(listed <= written);
            seen.push(listed);
            counted = scans_now;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(40),
            "no scan while the folder kept changing ({written} files written, seen {seen:?}); \
             a quiet folder would wait for 60 s"
        );
    }
    let scans = app.stats().scans.load(Relaxed) - scans_before;
    assert!(scans >= 3, "{scans} scans, listed after each: {seen:?}");
}
