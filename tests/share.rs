//! Share links over real HTTP (spec §6.12, §6.13, §8): keys work without a
//! session with Range/HEAD like `downFile`, expire on a sliding lifetime,
//! survive a restart, are bounded in number and die with their file.

mod common;

use common::{assert_binary_err, assert_err, data, header, Api, BAD_PARAM, NEED_LOGIN, NOT_FOUND};
use serde_json::{json, Value};
use std::time::Duration;

// ------------------------------------------------------------------ harness
// A server that can be restarted on the same data dir and configured
// (limits, share lifetime), which `common::TestApp` does not offer.

// Each test file uses a different part of the harness.
use common::server::Server;

async fn share(api: &Api, id: i64) -> String {
    let v = api.get_json("/shareFileUrl.icc", json!({"id": id})).await;
    data(&v).as_str().expect("key is a string").to_string()
}

/// `GET /shareFile.icc<suffix>?shareKey=…` without a session.
async fn fetch(s: &Server, suffix: &str, key: &str, headers: &[(&str, &str)]) -> reqwest::Response {
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
    let (s, api) = Server::start(|_| {}).await;
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
        assert_binary_err(r, BAD_PARAM).await;
    }
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/shareFile.icc", s.base))
        .send()
        .await
        .unwrap();
    assert_binary_err(r, BAD_PARAM).await;
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
    let (s, api) = Server::start(|_| {}).await;
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
    let (s, api) = Server::start(|c| c.share.lifetime_secs = 1).await;
    let id = api.file_id("a.jpg").await;
    let key = share(&api, id).await;
    // Used every 0.6 s, the key outlives its 1 s lifetime…
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(fetch(&s, "", &key, &[]).await.status(), 200);
    }
    // …and stops working once unused for longer than that.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_binary_err(fetch(&s, "", &key, &[]).await, BAD_PARAM).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_links_survive_a_restart_are_bounded_and_die_with_the_file() {
    let (mut s, api) = Server::start(|c| c.share.max_links = 2).await;
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
    assert_binary_err(fetch(&s, "", &k2, &[]).await, BAD_PARAM).await;
    assert_eq!(fetch(&s, "", &k1, &[]).await.status(), 200);
    assert_eq!(fetch(&s, "", &k3, &[]).await.status(), 200);
    // Deleting the file kills its keys.
    let v = api
        .post_form("/deleteFiles.icc", json!({"ids": a.to_string()}))
        .await;
    assert_eq!(data(&v), &Value::from("OK"));
    assert_binary_err(fetch(&s, "", &k1, &[]).await, BAD_PARAM).await;
    assert_binary_err(fetch(&s, "", &k3, &[]).await, BAD_PARAM).await;
}
