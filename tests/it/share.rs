//! Share links over real HTTP (spec §6.12, §6.13, §8): keys work without a
//! session with Range/HEAD like `downFile`, expire on a sliding lifetime,
//! survive a restart, are bounded in number and die with their file.

use crate::common;

use common::{
    assert_binary_err_status, assert_err, data, header, Api, BAD_PARAM, NEED_LOGIN, NOT_FOUND,
};
use serde_json::{json, Value};
use std::time::Duration;

// ------------------------------------------------------------------ harness
// `TestApp::start`: alice and bob over libraries `lib` and `other`,
// configured per test (limits, share lifetime), restartable on the same data.
use common::TestApp;

async fn share(api: &Api, id: i64) -> String {
    let v = api.get_json("/shareFileUrl.icc", json!({"id": id})).await;
    data(&v).as_str().expect("key is a string").to_string()
}

/// `GET /shareFile.icc<suffix>?shareKey=…` without a session.
async fn fetch(
    s: &TestApp,
    suffix: &str,
    key: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/shareFile.icc{suffix}", s.base))
        .query(&[("shareKey", key)]);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_links_serve_with_ranges_without_a_session() {
    let (s, api) = TestApp::start(|_| {}).await;
    let id = api.file_id("a.jpg").await;
    let bytes = common::jpeg(64, 48, 1, None);
    let key = share(&api, id).await;
    assert_eq!(key.len(), 32);
    assert!(key
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_ne!(
        share(&api, id).await,
        key,
        "every issue is a fresh random key"
    );

    let r = fetch(&s, "", &key, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "accept-ranges"), "bytes");
    assert_eq!(header(&r, "content-type"), "image/jpeg");
    assert_eq!(r.bytes().await.unwrap(), bytes);
    // Any suffix after /shareFile.ic is the same endpoint.
    assert_eq!(
        fetch(&s, ".jpg", &key, &[]).await.bytes().await.unwrap(),
        bytes
    );

    let r = fetch(&s, ".jpg", &key, &[("range", "bytes=2-5")]).await;
    assert_eq!(r.status(), 206);
    assert_eq!(
        header(&r, "content-range"),
        format!("bytes 2-5/{}", bytes.len())
    );
    assert_eq!(r.bytes().await.unwrap(), &bytes[2..6]);
    let r = fetch(&s, "", &key, &[("range", "bytes=-10")]).await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), &bytes[bytes.len() - 10..]);
    let r = fetch(
        &s,
        "",
        &key,
        &[("range", &format!("bytes={}-", bytes.len()))],
    )
    .await;
    assert_eq!(r.status(), 416);
    assert_eq!(
        header(&r, "content-range"),
        format!("bytes */{}", bytes.len())
    );
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .head(format!("{}/shareFile.icc?shareKey={key}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), bytes.len().to_string());

    // Unknown, malformed and missing keys: −10003, nothing about files.
    for bad in [
        "0123456789abcdef0123456789abcdef",
        "../../etc/passwd",
        "",
        "x",
    ] {
        let r = fetch(&s, "", bad, &[]).await;
        assert_binary_err_status(r, 400, BAD_PARAM).await;
    }
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/shareFile.icc", s.base))
        .send()
        .await
        .unwrap();
    assert_binary_err_status(r, 400, BAD_PARAM).await;
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{}/shareFile.icc?shareKey={key}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_url_bad_input_changes_nothing() {
    let (s, api) = TestApp::start(|_| {}).await;
    let bob = s.login("bob").await;
    let foreign = bob.file_id("c.jpg").await;
    let before = s.snapshot().await;
    assert_err(
        &Api::new(&s.base)
            .get_json("/shareFileUrl.icc", json!({"id": 1}))
            .await,
        NEED_LOGIN,
    );
    assert_err(
        &api.get_json("/shareFileUrl.icc", json!({})).await,
        BAD_PARAM,
    );
    assert_err(
        &api.get_json("/shareFileUrl.icc", json!({"id": "1x"})).await,
        BAD_PARAM,
    );
    assert_err(
        &api.get_json("/shareFileUrl.icc", json!({"id": 999_999}))
            .await,
        NOT_FOUND,
    );
    assert_err(
        &api.get_json("/shareFileUrl.icc", json!({"id": foreign}))
            .await,
        NOT_FOUND,
    );
    assert_eq!(s.snapshot().await, before);
    // A record whose original vanished: −10006.
    let id = api.file_id("a.jpg").await;
    std::fs::remove_file(s.lib().join("a.jpg")).unwrap();
    assert_err(
        &api.get_json("/shareFileUrl.icc", json!({"id": id})).await,
        common::FILE_GONE,
    );
    assert_eq!(s.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_links_expire_on_a_sliding_lifetime() {
    let (s, api) = TestApp::start(|c| c.share.lifetime_secs = 10).await;
    let id = api.file_id("a.jpg").await;
    let key = share(&api, id).await;
    // The server's clock is moved by hand (no sleeps, no dependence on
    // this machine's speed; real time only adds to the steps: 4 s of
    // margin). Used every 6 s, the key outlives its 10 s lifetime…
    let clock = &s.state().clock;
    for _ in 0..3 {
        clock.advance(Duration::from_secs(6));
        assert_eq!(fetch(&s, "", &key, &[]).await.status(), 200);
    }
    // …and stops working once unused for its whole lifetime.
    clock.advance(Duration::from_secs(10));
    assert_binary_err_status(fetch(&s, "", &key, &[]).await, 400, BAD_PARAM).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_links_survive_a_restart_are_bounded_and_die_with_the_file() {
    let (mut s, api) = TestApp::start(|c| c.share.max_links = 2).await;
    let a = api.file_id("a.jpg").await;
    let b = api.file_id("b.jpg").await;
    let k1 = share(&api, a).await;
    let k2 = share(&api, b).await;
    drop(api);
    let api = s.restart().await;
    assert_eq!(
        fetch(&s, "", &k1, &[]).await.status(),
        200,
        "key survives a restart"
    );
    // A third key drops the least recently used (k2: k1 was just used).
    let k3 = share(&api, a).await;
    assert_binary_err_status(fetch(&s, "", &k2, &[]).await, 400, BAD_PARAM).await;
    assert_eq!(fetch(&s, "", &k1, &[]).await.status(), 200);
    assert_eq!(fetch(&s, "", &k3, &[]).await.status(), 200);
    // Deleting the file kills its keys.
    let v = api
        .post_form("/deleteFiles.icc", json!({"ids": a.to_string()}))
        .await;
    assert_eq!(data(&v), &Value::from("OK"));
    assert_binary_err_status(fetch(&s, "", &k1, &[]).await, 400, BAD_PARAM).await;
    assert_binary_err_status(fetch(&s, "", &k3, &[]).await, 400, BAD_PARAM).await;
}

// ---------------------------------------------------------------------------
// Security issue #12: a link carries its maker's access and no more, its key
// is stored only as a digest, and owners revoke their own links.

/// Claims the server with `init` and makes a viewer `gran` who sees `lib`
/// through an admin grant (revocable, unlike the config's); returns the
/// admin's and gran's key clients.
async fn admin_and_gran(s: &TestApp) -> (Api, Api) {
    let v = Api::new(&s.base)
        .post_json(
            "/api/v1/register",
            json!({"token": "init", "userName": "root", "password": "a long family password"}),
        )
        .await;
    let admin = Api::with_bearer(&s.base, data(&v)["accessKey"].as_str().unwrap());
    let t = admin
        .post_form(
            "/api/v1/tokens",
            json!({"type": "viewer", "libraries": "lib"}),
        )
        .await;
    let v = Api::new(&s.base)
        .post_json(
            "/api/v1/register",
            json!({"token": data(&t)["token"], "userName": "gran", "password": "a long family password"}),
        )
        .await;
    let gran = Api::with_bearer(&s.base, data(&v)["accessKey"].as_str().unwrap());
    (admin, gran)
}

async fn status(s: &TestApp, key: &str) -> u16 {
    fetch(s, "", key, &[]).await.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_link_stops_with_its_makers_access() {
    let (s, alice) = TestApp::start(|c| c.watch.enabled = false).await;
    let (admin, gran) = admin_and_gran(&s).await;
    let a = alice.file_id("a.jpg").await;
    let key = share(&gran, a).await;
    assert_eq!(status(&s, &key).await, 200);

    // The admin takes the library away from gran: her link stops at once,
    // and the refused uses change nothing.
    let v = admin
        .post_form(
            "/api/v1/libraries/revoke",
            json!({"library": "lib", "user": "gran"}),
        )
        .await;
    assert_eq!(v["code"], 0, "{v}");
    let before = (s.snapshot().await, s.accounts_snapshot().await, s.tree());
    for _ in 0..2 {
        assert_binary_err_status(fetch(&s, "", &key, &[]).await, 400, BAD_PARAM).await;
    }
    assert_eq!(
        (s.snapshot().await, s.accounts_snapshot().await, s.tree()),
        before
    );
    // Given back, it works again: the link is worth what its maker may see.
    let v = admin
        .post_form(
            "/api/v1/libraries/grant",
            json!({"library": "lib", "user": "gran"}),
        )
        .await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(status(&s, &key).await, 200);

    // A maker whose type loses `share` stops sharing too.
    let k2 = share(&alice, a).await;
    let v = admin
        .post_form(
            "/api/v1/types",
            json!({"name": "looker", "perms": "browse"}),
        )
        .await;
    assert_eq!(v["code"], 0, "{v}");
    let v = admin
        .post_form(
            "/api/v1/users/type",
            json!({"user": "alice", "type": "looker"}),
        )
        .await;
    assert_eq!(v["code"], 0, "{v}");
    assert_binary_err_status(fetch(&s, "", &k2, &[]).await, 400, BAD_PARAM).await;

    // Disabling gran revokes her links; enabling her revives none.
    for path in ["/api/v1/users/disable", "/api/v1/users/enable"] {
        let v = admin.post_form(path, json!({"user": "gran"})).await;
        assert_eq!(v["code"], 0, "{v}");
    }
    assert_binary_err_status(fetch(&s, "", &key, &[]).await, 400, BAD_PARAM).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_keys_are_stored_only_as_digests() {
    let (s, api) = TestApp::start(|_| {}).await;
    let a = api.file_id("a.jpg").await;
    let key = share(&api, a).await;
    assert_eq!(status(&s, &key).await, 200);
    // Anyone with a copy of the database (or a backup) finds no key in it.
    let db = std::fs::read(s.cfg.db_path()).unwrap();
    let wal = std::fs::read(format!("{}-wal", s.cfg.db_path().display())).unwrap_or_default();
    for hay in [&db, &wal] {
        assert!(!hay.windows(key.len()).any(|w| w == key.as_bytes()));
        assert!(!hay
            .windows(key.len())
            .any(|w| w.eq_ignore_ascii_case(key.as_bytes())));
    }
    // An upper-case spelling of the key still works (hex is hex).
    assert_eq!(status(&s, &key.to_uppercase()).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_list_and_revoke_only_their_own_links() {
    let (s, alice) = TestApp::start(|c| c.watch.enabled = false).await;
    let bob = s.login("bob").await;
    let a = alice.file_id("a.jpg").await;
    let c = bob.file_id("c.jpg").await;
    let ka = share(&alice, a).await;
    let kb = share(&bob, c).await;
    // Each sees its own link (never a key), nobody else's.
    let mine = alice.get_json("/api/v1/shares", json!({})).await;
    let list = data(&mine).as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "{mine}");
    assert_eq!(list[0]["user"], "alice");
    assert_eq!(list[0]["fileName"], "a.jpg");
    assert!(!mine.to_string().contains(&ka), "{mine}");
    let theirs = bob.get_json("/api/v1/shares", json!({})).await;
    let bob_link = data(&theirs)[0]["id"].as_i64().unwrap();
    assert_eq!(data(&theirs).as_array().unwrap().len(), 1, "{theirs}");

    // Alice cannot revoke bob's link, whichever way she names it.
    let before = s.snapshot().await;
    for params in [
        json!({"id": bob_link}),
        json!({"key": kb}),
        json!({"fileId": c}),
    ] {
        let v = alice.post_form("/api/v1/shares/revoke", params).await;
        assert_err(&v, NOT_FOUND);
    }
    // A part of a key names nothing now (only digests are stored).
    let v = alice
        .post_form("/api/v1/shares/revoke", json!({"key": &ka[..8]}))
        .await;
    assert_err(&v, BAD_PARAM);
    assert_err(
        &alice.post_form("/api/v1/shares/revoke", json!({})).await,
        BAD_PARAM,
    );
    assert_eq!(
        s.snapshot().await,
        before,
        "a refused revoke changed something"
    );
    assert_eq!(status(&s, &kb).await, 200);

    // Her own she revokes, by id (or whole key, or file).
    let mine_id = list[0]["id"].as_i64().unwrap();
    let v = alice
        .post_form("/api/v1/shares/revoke", json!({"id": mine_id}))
        .await;
    assert_eq!(data(&v)["revoked"], 1, "{v}");
    assert_binary_err_status(fetch(&s, "", &ka, &[]).await, 400, BAD_PARAM).await;
    let k2 = share(&alice, a).await;
    let v = alice
        .post_form("/api/v1/shares/revoke", json!({"key": k2}))
        .await;
    assert_eq!(data(&v)["revoked"], 1, "{v}");
    assert_eq!(status(&s, &kb).await, 200, "bob's link untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_keys_of_an_older_database_are_hashed_on_upgrade() {
    let (mut s, api) = TestApp::start(|c| c.watch.enabled = false).await;
    let a = api.file_id("a.jpg").await;
    drop(api);
    s.running.take().unwrap().stop().await.unwrap();
    // The database as isync kept it before migration 5: the key in clear,
    // and nothing of the later migrations (6: upload moves and quotas;
    // 7: Live Photos).
    let key = "0123456789abcdef0123456789abcdef";
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    {
        let c = rusqlite::Connection::open(s.cfg.db_path()).unwrap();
        c.execute_batch(
            "DROP TABLE share_links; \
             CREATE TABLE share_links (key TEXT PRIMARY KEY, \
                 file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE, \
                 created_ms INTEGER NOT NULL, used_ms INTEGER NOT NULL) WITHOUT ROWID; \
             DROP TABLE upload_moves; \
             ALTER TABLE files DROP COLUMN charged_bytes; \
             DROP INDEX files_live_photo; DROP INDEX files_live_catalog; \
             ALTER TABLE files DROP COLUMN live_photo_id; \
             ALTER TABLE files DROP COLUMN content_id; \
             ALTER TABLE trash DROP COLUMN live_photo_entry; \
             PRAGMA user_version = 4;",
        )
        .unwrap();
        c.execute(
            "INSERT INTO share_links(key, file_id, created_ms, used_ms) VALUES (?1, ?2, ?3, ?3)",
            rusqlite::params![key, a, now_ms],
        )
        .unwrap();
    }
    s.boot().await;
    // The link still works after the upgrade…
    assert_eq!(status(&s, key).await, 200);
    // …and its key is no longer in the database.
    s.running.take().unwrap().stop().await.unwrap();
    let db = std::fs::read(s.cfg.db_path()).unwrap();
    assert!(!db.windows(key.len()).any(|w| w == key.as_bytes()));
    let version: i64 = rusqlite::Connection::open(s.cfg.db_path())
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert!(version >= 5, "{version}");
}
