//! `isync trash list|restore` as the operator runs it (issue 3): the real
//! binary over the data dir of a server that deleted a file through the API
//! lists the trashed original, restores it to where it lived, and the file
//! is listed by `files.icc` again (same bytes).

use crate::common;

use common::process::Launch;
use common::TestApp;
use common::*;
use serde_json::json;
use std::path::Path;
use std::process::Output;

/// `isync --config <cfg> <args>` with the environment a shell would give it.
fn isync(config: &Path, args: &[&str]) -> Output {
    Launch::new().config(config).args(args).output()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The configuration file an operator would have for this server's data.
fn write_config(s: &TestApp) -> std::path::PathBuf {
    let mut text = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\ndefault_user_path = {:?}\n",
        s.cfg.data_dir,
        s.cfg.default_user_path.clone().unwrap()
    );
    for l in &s.cfg.libraries {
        text.push_str(&format!(
            "\n[[library]]\npath = {:?}\nusers = {:?}\n",
            l.path, l.users
        ));
    }
    let p = s.dir.path().join("isync.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_file_is_listed_in_the_trash_and_restored_by_the_binary() {
    let (mut s, api) = TestApp::start(|_| {}).await;
    let config = write_config(&s);
    let before = std::fs::read(s.lib().join("sub/b.jpg")).unwrap();
    let b = api.file_id("b.jpg").await;
    let v = api
        .post_form("/deleteFiles.icc", json!({ "ids": b.to_string() }))
        .await;
    assert_eq!(v["code"], OK, "{v}");
    assert!(!s.lib().join("sub/b.jpg").exists(), "the original left");
    assert!(api.all_files().await.iter().all(|f| f["name"] != "b.jpg"));

    // `trash list` reads the database while the server runs.
    let out = isync(&config, &["trash", "list"]);
    assert!(out.status.success(), "{out:?}");
    let listed = stdout(&out);
    let line = listed
        .lines()
        .find(|l| l.contains("b.jpg"))
        .unwrap_or_else(|| panic!("b.jpg not in the trash listing:\n{listed}"));
    let cols: Vec<&str> = line.split('\t').collect();
    assert_eq!(cols[1], "file", "{line}");
    let original = s.lib().join("sub/b.jpg");
    assert_eq!(cols[3], original.to_string_lossy(), "{line}");
    let entry = cols[0].to_string();
    entry.parse::<i64>().expect("an id first");

    // Restore with the server stopped (as after `systemctl stop isync`).
    s.running.take().unwrap().stop().await.unwrap();
    let out = isync(&config, &["trash", "restore", &entry]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains(&format!("restored to {}", original.display())),
        "{}",
        stdout(&out)
    );
    assert_eq!(std::fs::read(&original).unwrap(), before, "same bytes back");
    let out = isync(&config, &["trash", "list"]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("the trash is empty"),
        "{}",
        stdout(&out)
    );
    // An id that is not there: a usage error naming the command to run.
    let out = isync(&config, &["trash", "restore", &entry]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("isync trash list"));

    // Listed again by the server, and downloadable.
    let api = s.boot().await;
    let f = api.file_named("b.jpg").await;
    let r = api.download(id(&f), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), before.as_slice());
}

/// Beside a running server (watcher off, so nothing but the restore itself
/// can list it again): the server does the restore under its library lock
/// and rescans with its own scanner; the CLI neither waits for the data dir
/// lock nor runs a second scanner. A deleted folder comes back with its file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_folder_is_restored_through_the_running_server() {
    let (s, api) = TestApp::start(|cfg| cfg.watch.enabled = false).await;
    let config = write_config(&s);
    let before = std::fs::read(s.lib().join("sub/b.jpg")).unwrap();
    let sub = api
        .all_catalogs()
        .await
        .into_iter()
        .find(|c| c["name"] == "sub")
        .expect("catalog sub");
    let v = api
        .post_form(
            "/deleteCatalog.icc",
            json!({ "ids": sub["id"].to_string() }),
        )
        .await;
    assert_eq!(v["code"], OK, "{v}");
    assert!(!s.lib().join("sub").exists(), "the folder left");
    assert!(api.all_files().await.iter().all(|f| f["name"] != "b.jpg"));

    let listed = stdout(&isync(&config, &["trash", "list"]));
    let entry = listed
        .lines()
        .find(|l| l.split('\t').nth(1) == Some("folder"))
        .unwrap_or_else(|| panic!("no folder in the trash listing:\n{listed}"))
        .split('\t')
        .next()
        .unwrap()
        .to_string();

    // Bounded: were the CLI to wait for the server's data dir lock, it
    // would wait forever.
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::task::spawn_blocking(move || isync(&config, &["trash", "restore", &entry])),
    )
    .await
    .expect("trash restore answered while the server runs")
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains(&format!("restored to {}", s.lib().join("sub").display())),
        "{text}"
    );
    assert!(text.contains("scan:"), "the server rescanned: {text}");
    assert!(
        !text.contains("waiting for the other isync process"),
        "{text}"
    );
    assert_eq!(std::fs::read(s.lib().join("sub/b.jpg")).unwrap(), before);

    // Listed again at once (no watcher), and downloadable.
    let f = api.file_named("b.jpg").await;
    let r = api.download(id(&f), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), before.as_slice());
}
