//! Catalog and file edits over real HTTP (spec §6.6–6.8, §6.17, §6.18,
//! §11): real folders for new catalogs, virtual moves, deletion into a
//! restorable trash, survivors of a catalog deletion relocated, and every
//! bad input leaving the database and the disk unchanged.

use crate::common;

use common::{assert_err, data, id, Api, BAD_PARAM, NEED_LOGIN, NOT_FOUND};
use serde_json::{json, Value};

const BAD_CATALOG: i64 = -10007;
const NOT_MODIFIED: i64 = -10010;

// ------------------------------------------------------------------ harness
// `TestApp::start`: alice and bob over libraries `lib` and `other`,
// configured per test (limits, share lifetime), restartable on the same data.
use common::{root_id, TestApp};

async fn create(api: &Api, parent: i64, name: &str) -> Value {
    api.post_form(
        "/createCatalog.icc",
        json!({"parentId": parent, "name": name}),
    )
    .await
}

async fn catalog_path(s: &TestApp, cid: i64) -> std::path::PathBuf {
    s.db()
        .read_async(move |c| {
            Ok(isync::db::catalogs::by_id(c, isync::model::CatalogId(cid))?
                .unwrap()
                .path)
        })
        .await
        .unwrap()
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_catalog_makes_a_safe_real_folder() {
    let (s, api) = TestApp::start(|_| {}).await;
    let root = root_id(&api).await;
    let v = create(&api, root, "Summer/../../etc 2024").await;
    let c = data(&v);
    assert_eq!(c["name"], "Summer/../../etc 2024");
    assert_eq!(c["parentId"], root);
    assert_eq!(c["rootId"], root);
    assert_eq!(c["fileCount"], 0);
    assert_eq!(c["subCatalogCount"], 0);
    let cid = id(c);
    let dir = catalog_path(&s, cid).await;
    assert!(dir.is_dir());
    assert_eq!(dir.parent().unwrap(), s.lib());
    let fname = dir.file_name().unwrap().to_string_lossy().into_owned();
    assert!(fname.starts_with("Summer_.._.._etc_2024_"), "{fname}");
    assert!(api
        .catalogs(&root.to_string())
        .await
        .iter()
        .any(|x| x["id"] == cid));
    // Same name twice: two folders.
    let v2 = create(&api, root, "Summer/../../etc 2024").await;
    assert_ne!(catalog_path(&s, id(data(&v2))).await, dir);
    // A nested one lives in its parent's folder.
    let v3 = create(&api, cid, "inner").await;
    assert_eq!(catalog_path(&s, id(data(&v3))).await.parent().unwrap(), dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_bad_input_changes_nothing() {
    let (s, api) = TestApp::start(|_| {}).await;
    let root = root_id(&api).await;
    let bob = s.login("bob").await;
    let foreign = root_id(&bob).await;
    let a = id(data(&create(&api, root, "a").await));
    let b = id(data(&create(&api, a, "b").await));
    let before = s.snapshot().await;
    let tree = s.tree();
    let anon = Api::new(&s.base);

    assert_err(&create(&anon, root, "x").await, NEED_LOGIN);
    assert_err(&create(&api, foreign, "x").await, BAD_CATALOG);
    assert_err(&create(&api, 999_999, "x").await, BAD_CATALOG);
    assert_err(&create(&api, root, "").await, BAD_PARAM);
    assert_err(&create(&api, root, &"x".repeat(100)).await, BAD_PARAM);
    assert_err(
        &api.post_form("/createCatalog.icc", json!({"name": "x"}))
            .await,
        BAD_PARAM,
    );
    assert_err(
        &api.post_form("/createCatalog.icc", json!({"parentId": "r", "name": "x"}))
            .await,
        BAD_PARAM,
    );

    let upd = |p: Value| {
        let api = api.clone();
        async move { api.post_form("/updateCatalog.icc", p).await }
    };
    assert_err(
        &anon
            .post_form("/updateCatalog.icc", json!({"id": a, "name": "n"}))
            .await,
        NEED_LOGIN,
    );
    assert_err(&upd(json!({"name": "n"})).await, BAD_PARAM);
    assert_err(&upd(json!({"id": a})).await, NOT_MODIFIED);
    assert_err(&upd(json!({"id": a, "name": ""})).await, NOT_MODIFIED);
    assert_err(&upd(json!({"id": a, "parentId": root})).await, NOT_MODIFIED);
    assert_err(&upd(json!({"id": a, "parentId": a})).await, NOT_MODIFIED);
    assert_err(&upd(json!({"id": a, "parentId": b})).await, NOT_MODIFIED);
    assert_err(
        &upd(json!({"id": a, "parentId": foreign})).await,
        NOT_MODIFIED,
    );
    assert_err(&upd(json!({"id": root, "parentId": a})).await, NOT_MODIFIED);
    assert_err(&upd(json!({"id": 999_999, "name": "n"})).await, NOT_FOUND);
    assert_err(&upd(json!({"id": foreign, "name": "n"})).await, NOT_FOUND);

    assert_err(
        &anon
            .post_form("/deleteCatalog.icc", json!({"ids": a.to_string()}))
            .await,
        NEED_LOGIN,
    );
    assert_err(
        &api.post_form("/deleteCatalog.icc", json!({})).await,
        BAD_PARAM,
    );
    assert_err(
        &api.post_form("/deleteCatalog.icc", json!({"ids": "1_0"}))
            .await,
        BAD_PARAM,
    );
    // Unknown and foreign ids are skipped silently.
    let v = api
        .post_form(
            "/deleteCatalog.icc",
            json!({"ids": format!("999999,{foreign}")}),
        )
        .await;
    assert_eq!(data(&v), "OK");
    assert_eq!(s.snapshot().await, before);
    assert_eq!(s.tree(), tree);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_catalog_renames_and_moves_virtually() {
    let (s, api) = TestApp::start(|_| {}).await;
    let root = root_id(&api).await;
    let a = id(data(&create(&api, root, "a").await));
    let b = id(data(&create(&api, root, "b").await));
    let b_dir = catalog_path(&s, b).await;
    let v = api
        .post_form(
            "/updateCatalog.icc",
            json!({"id": b, "parentId": a, "name": "B!", "memo": "m"}),
        )
        .await;
    let c = data(&v);
    assert_eq!(c["parentId"], a);
    assert_eq!(c["name"], "B!");
    assert_eq!(c["memo"], "m");
    // Virtual: the folder did not move.
    assert_eq!(catalog_path(&s, b).await, b_dir);
    assert!(b_dir.is_dir());
    assert_eq!(api.catalogs(&a.to_string()).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_file_edits_the_record_only() {
    let (s, api) = TestApp::start(|_| {}).await;
    let root = root_id(&api).await;
    let a = api.file_id("a.jpg").await;
    let cat = id(data(&create(&api, root, "album").await));
    let v = api
        .post_form(
            "/updateFile.icc",
            json!({"id": a, "name": "Beach.jpg", "memo": "sun", "catalogId": cat,
                   "helpInt": 7, "type": 3, "statusForThumb": 5}),
        )
        .await;
    let f = data(&v);
    assert_eq!(f["name"], "Beach.jpg");
    assert_eq!(f["memo"], "sun");
    assert_eq!(f["catalogId"], cat);
    assert_eq!(f["helpInt"], 7);
    assert_eq!(f["type"], 1, "an invalid type is ignored");
    assert!(s.lib().join("a.jpg").is_file(), "the disk is untouched");
    let listed = api
        .files(json!({"pageIndex": 0, "pids": cat.to_string()}))
        .await;
    assert_eq!(common::ids(&listed), vec![a]);

    let bob = s.login("bob").await;
    let foreign_cat = root_id(&bob).await;
    let foreign_file = bob.file_id("c.jpg").await;
    let before = s.snapshot().await;
    let upd = |p: Value| {
        let api = api.clone();
        async move { api.post_form("/updateFile.icc", p).await }
    };
    assert_err(
        &Api::new(&s.base)
            .post_form("/updateFile.icc", json!({"id": a, "name": "x"}))
            .await,
        NEED_LOGIN,
    );
    assert_err(&upd(json!({"name": "x"})).await, BAD_PARAM);
    assert_err(&upd(json!({"id": a})).await, NOT_MODIFIED);
    assert_err(
        &upd(json!({"id": a, "name": "", "type": 3, "ext": "elevenchars"})).await,
        NOT_MODIFIED,
    );
    assert_err(
        &upd(json!({"id": a, "name": "x".repeat(101)})).await,
        NOT_MODIFIED,
    );
    assert_err(
        &upd(json!({"id": a, "catalogId": foreign_cat})).await,
        NOT_MODIFIED,
    );
    assert_err(&upd(json!({"id": 999_999, "name": "x"})).await, NOT_FOUND);
    assert_err(
        &upd(json!({"id": foreign_file, "name": "x"})).await,
        NOT_FOUND,
    );
    assert_err(
        &bob.post_form("/deleteFiles.icc", json!({"ids": "x"})).await,
        BAD_PARAM,
    );
    let v = bob
        .post_form("/deleteFiles.icc", json!({"ids": a.to_string()}))
        .await;
    assert_eq!(data(&v), "OK", "foreign ids are skipped");
    assert_eq!(s.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_files_goes_to_a_restorable_trash() {
    let (s, api) = TestApp::start(|_| {}).await;
    let a = api.file_id("a.jpg").await;
    let v = api
        .post_form("/deleteFiles.icc", json!({"ids": format!("{a}, 999999")}))
        .await;
    assert_eq!(data(&v), "OK");
    assert!(api.all_files().await.iter().all(|f| f["id"] != a));
    assert!(!s.lib().join("a.jpg").exists());
    let entries = isync::trash::list(s.db()).unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e.kind, "file");
    assert!(e
        .trash_path
        .starts_with(&s.lib().join(".isync/trash").to_string_lossy().into_owned()));
    assert_eq!(
        std::fs::read(&e.trash_path).unwrap(),
        common::jpeg(64, 48, 1, None)
    );
    // A file now in its place is not overwritten by the restore.
    std::fs::write(s.lib().join("a.jpg"), b"newer").unwrap();
    let back = isync::trash::restore(s.db(), e.id).unwrap();
    assert_eq!(back, s.lib().join("a_1.jpg"));
    assert_eq!(std::fs::read(s.lib().join("a.jpg")).unwrap(), b"newer");
    assert!(isync::trash::list(s.db()).unwrap().is_empty());

    // Expired entries are purged by housekeeping.
    let b = api.file_id("b.jpg").await;
    api.post_form("/deleteFiles.icc", json!({"ids": b.to_string()}))
        .await;
    let e = isync::trash::list(s.db()).unwrap().remove(0);
    let eid = e.id;
    s.db()
        .write(|tx| {
            tx.execute(
                "UPDATE trash SET deleted_at = deleted_at - 31 * 86400 WHERE id = ?1",
                [eid],
            )?;
            Ok(())
        })
        .unwrap();
    let r = isync::trash::housekeep(s.db(), &s.cfg).unwrap();
    assert_eq!(r.trash_purged, 1);
    assert!(!std::path::Path::new(&e.trash_path).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_catalog_keeps_what_was_moved_out() {
    let (s, api) = TestApp::start(|_| {}).await;
    let root = root_id(&api).await;
    let sub = api
        .catalogs(&root.to_string())
        .await
        .into_iter()
        .find(|c| c["name"] == "sub")
        .unwrap();
    let sub = id(&sub);
    let keep = id(data(&create(&api, root, "keep").await));
    let child = id(data(&create(&api, sub, "child").await));
    let b = api.file_id("b.jpg").await;
    // b.jpg (in sub/) is shown in keep; child (folder in sub/) is shown
    // under the root; a file shown in sub but living in the root folder.
    data(
        &api.post_form("/updateFile.icc", json!({"id": b, "catalogId": keep}))
            .await,
    );
    data(
        &api.post_form("/updateCatalog.icc", json!({"id": child, "parentId": root}))
            .await,
    );
    let a = api.file_id("a.jpg").await;
    data(
        &api.post_form("/updateFile.icc", json!({"id": a, "catalogId": sub}))
            .await,
    );
    let v = api
        .post_form("/deleteCatalog.icc", json!({"ids": sub.to_string()}))
        .await;
    assert_eq!(data(&v), "OK");

    // sub is gone (record and folder, which is in the trash).
    assert!(!s.lib().join("sub").exists());
    assert!(api
        .catalogs(&root.to_string())
        .await
        .iter()
        .all(|c| c["id"] != sub));
    let trash = isync::trash::list(s.db()).unwrap();
    assert!(trash
        .iter()
        .any(|e| e.kind == "folder" && std::path::Path::new(&e.trash_path).is_dir()));
    // a.jpg was shown in sub: deleted, its original in the trash.
    assert!(api.all_files().await.iter().all(|f| f["id"] != a));
    assert!(trash.iter().any(|e| e.kind == "file" && e.name == "a.jpg"));
    // b.jpg survived, moved into keep's folder.
    let keep_dir = catalog_path(&s, keep).await;
    assert_eq!(
        std::fs::read(keep_dir.join("b.jpg")).unwrap(),
        common::jpeg(32, 32, 2, None)
    );
    assert_eq!(
        api.download(b, &[]).await.bytes().await.unwrap(),
        common::jpeg(32, 32, 2, None)
    );
    // child survived with a new folder inside the root folder.
    let child_dir = catalog_path(&s, child).await;
    assert_eq!(child_dir.parent().unwrap(), s.lib());
    assert!(child_dir.is_dir());
    // A rescan agrees with the database.
    let n = api.all_files().await.len();
    let st = s.running.as_ref().unwrap().state.clone();
    let r = tokio::task::spawn_blocking(move || {
        let plan = st.plan.read().unwrap().clone();
        st.scanner.scan_plan(&plan).unwrap()
    })
    .await
    .unwrap();
    assert_eq!((r.added, r.removed), (0, 0), "{r}");
    assert_eq!(api.all_files().await.len(), n);
}
