//! Catalogs and ownership (spec §3.2, §5, §6.3–6.5): root and child
//! listings with their counts, the default root of a user without a library,
//! help info on users, catalogs and files, and two users never seeing each
//! other's records.

use crate::common;

use common::*;
use serde_json::{json, Value};

/// photos/{a.jpg,b.jpg,x.txt}, photos/2024/c.jpg,
/// photos/2024/summer/{d.jpg,e.jpg}, photos/2023 (empty).
async fn tree() -> TestApp {
    TestApp::builder()
        .user("alice")
        .library("photos", &["alice"])
        .file("photos/a.jpg", &jpeg(40, 30, 1, None))
        .file("photos/b.jpg", &jpeg(40, 30, 2, None))
        .file("photos/x.txt", b"hello")
        .file("photos/2024/c.jpg", &jpeg(40, 30, 3, None))
        .file("photos/2024/summer/d.jpg", &jpeg(40, 30, 4, None))
        .file("photos/2024/summer/e.jpg", &jpeg(40, 30, 5, None))
        .dir("photos/2023")
        .spawn()
        .await
}

fn named<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no catalog {name} in {list:#?}"))
}

fn assert_sorted_by_id(list: &[Value]) {
    let ids = ids(list);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "catalogs must be ordered by id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roots_children_and_counts() {
    let app = tree().await;
    let roots = app.api.catalogs("-1").await;
    assert_eq!(roots.len(), 1, "{roots:#?}");
    let root = &roots[0];
    let root_id = id(root);
    assert_eq!(root["name"], "photos");
    assert_eq!(root["parentId"], -1);
    assert_eq!(root["rootId"], root_id, "a root is its own root");
    assert_eq!(root["subCatalogCount"], 2);
    assert_eq!(root["fileCount"], 3);
    assert!(root["createTime"].is_i64() && root["lastModifyTime"].is_i64());

    let kids = app.api.catalogs(&root_id.to_string()).await;
    assert_eq!(kids.len(), 2);
    assert_sorted_by_id(&kids);
    let y2024 = named(&kids, "2024");
    let y2023 = named(&kids, "2023");
    for c in [y2024, y2023] {
        assert_eq!(c["parentId"], root_id);
        assert_eq!(c["rootId"], root_id);
    }
    assert_eq!(
        (&y2024["subCatalogCount"], &y2024["fileCount"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(
        (&y2023["subCatalogCount"], &y2023["fileCount"]),
        (&json!(0), &json!(0))
    );

    let summer = app.api.catalogs(&id(y2024).to_string()).await;
    assert_eq!(summer.len(), 1);
    assert_eq!(summer[0]["name"], "summer");
    assert_eq!(summer[0]["parentId"], id(y2024));
    assert_eq!(summer[0]["rootId"], root_id);
    assert_eq!(summer[0]["subCatalogCount"], 0);
    assert_eq!(summer[0]["fileCount"], 2);
    assert!(app
        .api
        .catalogs(&id(&summer[0]).to_string())
        .await
        .is_empty());

    // Several parents at once (spaces allowed), ordered by id across parents.
    let both = app
        .api
        .catalogs(&format!(" {} , {} ", root_id, id(y2024)))
        .await;
    assert_eq!(both.len(), 3);
    assert_sorted_by_id(&both);

    // fileCount agrees with files.icc filtered by catalog.
    for c in app.api.all_catalogs().await {
        let n = app
            .api
            .files(json!({"pageIndex": 0, "pids": id(&c).to_string()}))
            .await
            .len();
        assert_eq!(c["fileCount"], n, "{c}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_pids_contribute_nothing() {
    let app = tree().await;
    let root = id(&app.api.catalogs("-1").await[0]);
    assert!(app.api.catalogs("999999").await.is_empty());
    assert!(app.api.catalogs("0").await.is_empty());
    assert!(app.api.catalogs("-2").await.is_empty());
    let mixed = app.api.catalogs(&format!("999999,-1,{}", i64::MAX)).await;
    assert_eq!(ids(&mixed), vec![root]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_several_libraries_sees_every_root() {
    let app = TestApp::builder()
        .user("alice")
        .library("photos", &["alice"])
        .library("videos", &["alice"])
        .library("other", &[])
        .file("photos/a.jpg", &jpeg(40, 30, 1, None))
        .file("videos/b.jpg", &jpeg(40, 30, 2, None))
        .file("other/c.jpg", &jpeg(40, 30, 3, None))
        .spawn()
        .await;
    let roots = app.api.catalogs("-1").await;
    let names: Vec<&str> = roots.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"photos") && names.contains(&"videos"));
    assert_sorted_by_id(&roots);
    let files = app.api.all_files().await;
    let mut names: Vec<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        ["a.jpg", "b.jpg"],
        "a library granted to nobody is invisible"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_a_library_gets_a_default_root() {
    let app = TestApp::builder()
        .user("carol")
        .user("alice")
        .library("photos", &["alice"])
        .file("photos/a.jpg", &jpeg(40, 30, 1, None))
        .spawn()
        .await;
    let carol = app.user_id("carol").await;
    let roots = app.api.catalogs("-1").await;
    assert_eq!(roots.len(), 1, "{roots:#?}");
    let root = &roots[0];
    assert_eq!(root["name"], "iSyncRoot");
    assert_eq!(root["parentId"], -1);
    assert_eq!(root["rootId"], root["id"]);
    assert_eq!(root["subCatalogCount"], 0);
    assert_eq!(root["fileCount"], 0);
    let folder = app.root().join("users").join(carol.to_string());
    assert!(folder.is_dir(), "{} must be created", folder.display());

    // Asking again (and logging in again) does not create a second root.
    assert_eq!(ids(&app.api.catalogs("-1").await), vec![id(root)]);
    let again = app.login("carol").await;
    assert_eq!(ids(&again.catalogs("-1").await), vec![id(root)]);

    // Nothing of alice's is visible.
    let v = app
        .api
        .get_json("/files.icc", json!({"pageIndex": 0}))
        .await;
    assert_eq!(data(&v)["list"], json!([]));
    assert_eq!(data(&v)["page"]["pageCount"], 0);

    // Alice, who has a library, gets no default root.
    let alice = app.login("alice").await;
    let names: Vec<Value> = alice
        .catalogs("-1")
        .await
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("photos")]);
    assert!(!app
        .root()
        .join("users")
        .join(app.user_id("alice").await.to_string())
        .exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_info_round_trips_on_user_catalog_and_file() {
    let app = tree().await;
    let root = id(&app.api.catalogs("-1").await[0]);
    let file = app.api.file_id("a.jpg").await;

    for (kind, target) in [(0, 0), (1, root), (2, file)] {
        let before = now_secs();
        let get = || {
            app.api
                .get_json("/helpInfo.icc", json!({"type": kind, "id": target}))
        };
        let v = get().await;
        let h = data(&v);
        assert!(
            h.get("helpInt").is_none() && h.get("helpText").is_none(),
            "{h}"
        );

        let v = app
            .api
            .post_form(
                "/updateHelpInfo.icc",
                json!({"type": kind, "id": target, "helpInt": -42}),
            )
            .await;
        assert_eq!(v["code"], 0, "{v}");
        assert!(v["data"].is_null(), "{v}");
        let v = get().await;
        assert_eq!(data(&v)["helpInt"], -42);
        assert!(data(&v)["lastModifyTime"].as_i64().unwrap() >= before);

        // An absent value is left unchanged.
        let text = "ünïcode ✓ text";
        let v = app
            .api
            .post_json(
                "/updateHelpInfo.icc",
                json!({"type": kind, "id": target, "helpText": text}),
            )
            .await;
        assert_eq!(v["code"], 0, "{v}");
        let v = get().await;
        assert_eq!(data(&v)["helpInt"], -42);
        assert_eq!(data(&v)["helpText"], text);
    }
    // The values show in CatalogInfo and FileInfo too.
    let r = &app.api.catalogs("-1").await[0];
    assert_eq!(
        (&r["helpInt"], &r["helpText"]),
        (&json!(-42), &json!("ünïcode ✓ text"))
    );
    let f = app.api.file_named("a.jpg").await;
    assert_eq!(f["helpInt"], -42);
    // id is ignored for type 0.
    let v = app
        .api
        .get_json("/helpInfo.icc", json!({"type": 0, "id": 987654}))
        .await;
    assert_eq!(data(&v)["helpInt"], -42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_records_give_empty_help_info_and_not_found_on_update() {
    let app = tree().await;
    for kind in [1, 2] {
        let v = app
            .api
            .get_json("/helpInfo.icc", json!({"type": kind, "id": 999999}))
            .await;
        assert_eq!(data(&v), &json!({}), "{v}");
        let before = app.db_snapshot().await;
        let v = app
            .api
            .post_form(
                "/updateHelpInfo.icc",
                json!({"type": kind, "id": 999999, "helpInt": 1}),
            )
            .await;
        assert_err(&v, NOT_FOUND);
        assert_eq!(before, app.db_snapshot().await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_never_see_each_others_records() {
    let app = TestApp::builder()
        .user("alice")
        .user("bob")
        .library("alice_lib", &["alice"])
        .library("bob_lib", &["bob"])
        .file("alice_lib/private.jpg", &jpeg(40, 30, 1, None))
        .file("alice_lib/inner/deep.jpg", &jpeg(40, 30, 2, None))
        .file("bob_lib/mine.jpg", &jpeg(40, 30, 3, None))
        .spawn()
        .await;
    let alice = &app.api;
    let bob = app.login("bob").await;

    let a_root = alice.catalogs("-1").await;
    assert_eq!(a_root.len(), 1);
    let a_root = id(&a_root[0]);
    let a_inner = id(&alice.catalogs(&a_root.to_string()).await[0]);
    let a_file = alice.file_id("private.jpg").await;
    let b_root = id(&bob.catalogs("-1").await[0]);
    let b_file = bob.file_id("mine.jpg").await;
    // Alice marks her records, so any leak would show.
    for (kind, target) in [(1, a_root), (2, a_file)] {
        let v = alice
            .post_form(
                "/updateHelpInfo.icc",
                json!({"type": kind, "id": target, "helpInt": 7, "helpText": "alice's"}),
            )
            .await;
        assert_eq!(v["code"], 0, "{v}");
    }

    // Catalogs: only bob's own.
    assert_eq!(ids(&bob.catalogs("-1").await), vec![b_root]);
    assert!(bob.catalogs(&a_root.to_string()).await.is_empty());
    assert!(bob.catalogs(&a_inner.to_string()).await.is_empty());
    // Files: only bob's; a foreign rootIds falls back to bob's roots, a
    // foreign pids matches nothing.
    assert_eq!(ids(&bob.all_files().await), vec![b_file]);
    let v = bob
        .files(json!({"pageIndex": 0, "rootIds": a_root.to_string()}))
        .await;
    assert_eq!(ids(&v), vec![b_file]);
    let v = bob
        .files(json!({"pageIndex": 0, "pids": format!("{a_root},{a_inner}")}))
        .await;
    assert!(v.is_empty(), "{v:#?}");

    // Help info: foreign records read as missing, updates are −10004 and
    // change nothing.
    let before = app.db_snapshot().await;
    for (kind, target) in [(1, a_root), (1, a_inner), (2, a_file)] {
        let v = bob
            .get_json("/helpInfo.icc", json!({"type": kind, "id": target}))
            .await;
        assert_eq!(data(&v), &json!({}), "foreign record leaked: {v}");
        let v = bob
            .post_form(
                "/updateHelpInfo.icc",
                json!({"type": kind, "id": target, "helpInt": 1, "helpText": "bob was here"}),
            )
            .await;
        assert_err(&v, NOT_FOUND);
    }
    assert_eq!(
        before,
        app.db_snapshot().await,
        "foreign updates changed the database"
    );

    // Downloads: a foreign file is answered exactly like an unknown one.
    let foreign = bob.download(a_file, &[]).await;
    let unknown = bob.download(999999, &[]).await;
    assert_binary_err_status(foreign, 404, NOT_FOUND).await;
    assert_binary_err_status(unknown, 404, NOT_FOUND).await;
    // And alice still can.
    assert_eq!(alice.download(a_file, &[]).await.status(), 200);
    assert_binary_err_status(alice.download(b_file, &[]).await, 404, NOT_FOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_library_is_seen_by_every_granted_user() {
    let app = TestApp::builder()
        .user("alice")
        .user("bob")
        .library("family", &["alice", "BOB"])
        .file("family/a.jpg", &jpeg(40, 30, 1, None))
        .spawn()
        .await;
    let bob = app.login("bob").await;
    let a = app.api.catalogs("-1").await;
    let b = bob.catalogs("-1").await;
    assert_eq!(ids(&a), ids(&b));
    assert_eq!(ids(&app.api.all_files().await), ids(&bob.all_files().await));
    assert_eq!(bob.all_files().await.len(), 1);
}

async fn nested(merge: bool) -> TestApp {
    TestApp::builder()
        .user("alice")
        .user("bob")
        .library("photos", &["alice"])
        .library_with("photos/family", &["bob"], merge)
        .file("photos/top.jpg", &jpeg(40, 30, 1, None))
        .file("photos/family/fam.jpg", &jpeg(40, 30, 2, None))
        .file("photos/family/kids/kid.jpg", &jpeg(40, 30, 3, None))
        .spawn()
        .await
}

fn sorted_names(list: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = list
        .iter()
        .map(|x| x["name"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_library_with_merge_is_folded_into_the_enclosing_tree() {
    let app = nested(true).await;
    let roots = app.api.catalogs("-1").await;
    assert_eq!(sorted_names(&roots), ["photos"]);
    let root = id(&roots[0]);
    let family = &app.api.catalogs(&root.to_string()).await;
    assert_eq!(sorted_names(family), ["family"]);
    assert_eq!(family[0]["rootId"], root);
    assert_eq!(
        sorted_names(&app.api.all_files().await),
        ["fam.jpg", "kid.jpg", "top.jpg"]
    );
    // bob's access came only from the folded library: he sees none of it.
    let bob = app.login("bob").await;
    let bob_roots = bob.catalogs("-1").await;
    assert!(
        bob_roots
            .iter()
            .all(|c| c["id"] != root && c["name"] != "family"),
        "{bob_roots:#?}"
    );
    assert!(bob.all_files().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_library_without_merge_is_a_root_of_its_own() {
    let app = nested(false).await;
    let roots = app.api.catalogs("-1").await;
    assert_eq!(sorted_names(&roots), ["photos"]);
    let root = id(&roots[0]);
    assert!(
        app.api.catalogs(&root.to_string()).await.is_empty(),
        "the nested library is not part of alice's tree"
    );
    assert_eq!(sorted_names(&app.api.all_files().await), ["top.jpg"]);

    let bob = app.login("bob").await;
    let bob_roots = bob.catalogs("-1").await;
    assert_eq!(sorted_names(&bob_roots), ["family"]);
    assert_eq!(bob_roots[0]["rootId"], bob_roots[0]["id"]);
    assert_eq!(bob_roots[0]["subCatalogCount"], 1);
    assert_eq!(sorted_names(&bob.all_files().await), ["fam.jpg", "kid.jpg"]);
    // And a rescan keeps it that way.
    let before = (app.api.all_files().await, bob.all_files().await);
    let r = app.rescan().await;
    assert_eq!((r.added, r.removed), (0, 0), "{r}");
    assert_eq!(before, (app.api.all_files().await, bob.all_files().await));
}
