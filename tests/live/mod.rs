//! `Live`: a real server with the watcher on (tuned for tests: short
//! debounce, quick offline checks), over a temporary library `photos` of
//! user `alice`, restartable on the same data; plus polling with a deadline.
//! Shared by `tests/watch.rs` and `tests/offline.rs`.
#![allow(dead_code)]

use crate::common::{self, Api, PASSWORD};
use isync::app::{self, Running};
use isync::config::{Config, LibraryConfig};
use isync::db::{self, users, Db};
use serde_json::{json, Value};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long a test waits for the watcher before failing (generous: two
/// shared cores, debug build). The latency itself is measured by
/// `benches/watch.rs`.
pub const DEADLINE: Duration = Duration::from_secs(15);

pub struct Live {
    pub api: Api,
    pub cfg: Config,
    pub running: Option<Running>,
    dir: TempDir,
}

impl Live {
    /// Starts a server over `photos` holding `files` (relative paths);
    /// `tune` adjusts the configuration.
    pub async fn start(files: &[(&str, Vec<u8>)], tune: impl FnOnce(&mut Config)) -> Live {
        let dir = tempfile::Builder::new()
            .prefix("isync-live-")
            .tempdir()
            .expect("tempdir");
        let lib = dir.path().join("media/photos");
        std::fs::create_dir_all(&lib).unwrap();
        for (rel, bytes) in files {
            common::write_file(&lib.join(rel), bytes);
        }
        let mut cfg = Config {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.path().join("data"),
            default_user_path: Some(dir.path().join("users")),
            ..Config::default()
        };
        cfg.scan.threads = 2;
        cfg.watch.debounce_ms = 100;
        cfg.watch.offline_check_secs = 1;
        cfg.libraries = vec![LibraryConfig {
            path: lib,
            users: vec!["alice".into()],
            merge: true,
        }];
        tune(&mut cfg);
        let db_path = cfg.db_path();
        tokio::task::spawn_blocking(move || {
            let db = Db::open(&db_path).expect("open test database");
            let hash = isync::auth::hash_password(PASSWORD);
            db.write(|tx| users::upsert(tx, "alice", &hash, db::now()))
                .expect("create user");
        })
        .await
        .unwrap();
        let mut live = Live {
            api: Api::new("http://127.0.0.1:1"),
            cfg,
            running: None,
            dir,
        };
        live.boot().await;
        live
    }

    async fn boot(&mut self) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut running = app::start(self.cfg.clone(), listener)
            .await
            .expect("start isync");
        running.wait_scanned().await;
        let base = format!("http://{}", running.addr);
        let api = Api::new(&base);
        let v = api
            .get_json(
                "/login.icc",
                json!({"userName": "alice", "password": PASSWORD}),
            )
            .await;
        assert_eq!(v["code"], 0, "{v}");
        self.api = api;
        self.running = Some(running);
    }

    /// Stops the server (the data stays).
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.expect("clean stop");
        }
    }

    /// Stops, runs `between` (changes made while isync is not running), and
    /// starts again on the same data.
    pub async fn restart(&mut self, between: impl FnOnce(&Path)) {
        self.stop().await;
        between(&self.lib());
        self.boot().await;
    }

    /// The library root `<tmp>/media/photos`.
    pub fn lib(&self) -> PathBuf {
        self.dir.path().join("media/photos")
    }

    pub fn media(&self) -> PathBuf {
        self.dir.path().join("media")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.cfg.data_dir.clone()
    }

    pub fn db(&self) -> &Db {
        &self.running.as_ref().expect("running").state.db
    }

    /// Waits until `n` more checks of an offline root have been done than
    /// when called, so at least `n - 1` of them began after the call: what
    /// the tests of a disk that must *stay* offline wait for, instead of a
    /// sleep that assumes the checks kept up.
    pub async fn offline_checks_pass(&self, n: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let from = self.stats().offline_checks.load(Relaxed);
        until(&format!("{n} offline checks"), || async {
            (self.stats().offline_checks.load(Relaxed) >= from + n).then_some(())
        })
        .await;
    }

    pub fn stats(&self) -> &isync::library::watcher::WatchStats {
        self.running
            .as_ref()
            .expect("running")
            .watch
            .as_ref()
            .expect("watcher on")
    }

    /// GET `path` without a session.
    pub async fn anon_get(&self, path: &str) -> reqwest::Response {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(self.api.url(path))
            .send()
            .await
            .unwrap()
    }

    /// Whether the library is marked online.
    pub async fn online(&self) -> bool {
        self.db()
            .read_async(|c| Ok(isync::db::libraries::list(c)?[0].online))
            .await
            .unwrap()
    }

    /// Removals the mass-deletion guard holds back.
    pub async fn held(&self) -> i64 {
        self.db()
            .read_async(isync::db::libraries::held_deletions)
            .await
            .unwrap()
            .first()
            .map_or(0, |(_, n)| *n)
    }

    /// File names listed, sorted.
    pub async fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self
            .api
            .all_files()
            .await
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    }

    /// The listed file named `name`, if exactly one.
    pub async fn file(&self, name: &str) -> Option<Value> {
        let all = self.api.all_files().await;
        let hits: Vec<&Value> = all.iter().filter(|f| f["name"] == name).collect();
        (hits.len() == 1).then(|| hits[0].clone())
    }

    /// The catalog named `name`, if exactly one.
    pub async fn catalog(&self, name: &str) -> Option<Value> {
        let all = self.api.all_catalogs().await;
        let hits: Vec<&Value> = all.iter().filter(|c| c["name"] == name).collect();
        (hits.len() == 1).then(|| hits[0].clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(r) = &self.running {
            r.shutdown_token().cancel();
        }
    }
}

/// Polls `probe` until it yields `Some`, failing after [`DEADLINE`] with
/// `what`. Returns the value and how long it took.
pub async fn until<T, F, Fut>(what: &str, mut probe: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return (v, start.elapsed());
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
