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
#[allow(dead_code)]
struct Server {
    dir: tempfile::TempDir,
    cfg: isync::config::Config,
    running: Option<isync::app::Running>,
    base: String,
}

#[allow(dead_code)]
impl Server {
    /// User `alice` (and `bob`, who sees library `other`), library `lib`
    /// with `a.jpg` and `sub/b.jpg`; logged in as alice.
    async fn start(tune: impl FnOnce(&mut isync::config::Config)) -> (Server, Api) {
        let dir = tempfile::Builder::new()
            .prefix("isync-write-")
            .tempdir()
            .unwrap();
        let media = dir.path().join("media");
        common::write_file(&media.join("lib/a.jpg"), &common::jpeg(64, 48, 1, None));
        common::write_file(&media.join("lib/sub/b.jpg"), &common::jpeg(32, 32, 2, None));
        common::write_file(&media.join("other/c.jpg"), &common::jpeg(32, 32, 3, None));
        let mut cfg = isync::config::Config {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.path().join("data"),
            default_user_path: Some(dir.path().join("users")),
            ..Default::default()
        };
        cfg.scan.threads = 2;
        cfg.libraries = vec![
            isync::config::LibraryConfig {
                path: media.join("lib"),
                users: vec!["alice".into()],
                merge: true,
            },
            isync::config::LibraryConfig {
                path: media.join("other"),
                users: vec!["bob".into()],
                merge: true,
            },
        ];
        tune(&mut cfg);
        let path = cfg.db_path();
        tokio::task::spawn_blocking(move || {
            let db = isync::db::Db::open(&path).unwrap();
            for name in ["alice", "bob"] {
                let hash = isync::auth::hash_password(common::PASSWORD);
                db.write(|tx| isync::db::users::upsert(tx, name, &hash, isync::db::now()))
                    .unwrap();
            }
        })
        .await
        .unwrap();
        let mut s = Server {
            dir,
            cfg,
            running: None,
            base: String::new(),
        };
        let api = s.boot().await;
        (s, api)
    }

    async fn boot(&mut self) -> Api {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut running = isync::app::start(self.cfg.clone(), listener).await.unwrap();
        running.wait_scanned().await;
        self.base = format!("http://{}", running.addr);
        self.running = Some(running);
        self.login("alice").await
    }

    /// Stops the server (draining) and starts it again on the same data.
    async fn restart(&mut self) -> Api {
        if let Some(r) = self.running.take() {
            r.stop().await.unwrap();
        }
        self.boot().await
    }

    async fn login(&self, name: &str) -> Api {
        let api = Api::new(&self.base);
        let v = api
            .get_json(
                "/login.icc",
                json!({"userName": name, "password": common::PASSWORD}),
            )
            .await;
        assert_eq!(v["code"], 0, "{v}");
        api
    }

    /// The session cookie value of a fresh login (for raw TCP requests).
    async fn token(&self, name: &str) -> String {
        let r = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("{}/login.icc", self.base))
            .query(&[("userName", name), ("password", common::PASSWORD)])
            .send()
            .await
            .unwrap();
        let c = common::header(&r, "set-cookie");
        c.split(';')
            .next()
            .unwrap()
            .trim_start_matches("session=")
            .to_string()
    }

    fn db(&self) -> &isync::db::Db {
        &self.running.as_ref().unwrap().state.db
    }

    fn lib(&self) -> std::path::PathBuf {
        self.dir.path().join("media/lib")
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.running.as_ref().unwrap().addr
    }

    /// Every row of the tables a write could change.
    async fn snapshot(&self) -> String {
        self.db()
            .read_async(|c| {
                let mut out = String::new();
                for t in ["catalogs", "files", "share_links", "trash", "user_roots"] {
                    let mut st = c.prepare(&format!("SELECT * FROM {t} ORDER BY 1"))?;
                    let n = st.column_count();
                    let mut rows = st.query([])?;
                    while let Some(r) = rows.next()? {
                        out.push_str(t);
                        for i in 0..n {
                            out.push_str(&format!(" {:?}", r.get_ref(i)?));
                        }
                        out.push('\n');
                    }
                }
                Ok(out)
            })
            .await
            .unwrap()
    }

    /// Every path under the media dir and the data dir (files and folders).
    fn tree(&self) -> Vec<String> {
        let mut v: Vec<String> = walkdir::WalkDir::new(self.dir.path())
            .into_iter()
            .filter_map(Result::ok)
            .map(|e| e.path().to_string_lossy().into_owned())
            .filter(|p| !p.contains("isync.db"))
            .collect();
        v.sort();
        v
    }
}

#[allow(dead_code)]
async fn root_id(api: &Api) -> i64 {
    common::id(&api.catalogs("-1").await[0])
}

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
