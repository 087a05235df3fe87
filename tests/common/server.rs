//! A server that can be restarted on the same data dir and configured
//! (limits, share lifetime), which `TestApp` does not offer; shared by the
//! upload, share and edit tests.

use super::Api;
use serde_json::json;

/// A RAM-backed folder for tests whose bound is about what the server does
/// (locks, CPU), not the fsync latency of the machine's disk: `/dev/shm`
/// when it is a writable tmpfs with room (256 MiB), else `None`.
#[allow(dead_code)]
pub fn tmpfs() -> Option<std::path::PathBuf> {
    /// `TMPFS_MAGIC` from linux/magic.h.
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    let shm = std::path::Path::new("/dev/shm");
    let st = rustix::fs::statfs(shm).ok()?;
    let avail = st.f_bavail.saturating_mul(st.f_bsize as u64);
    let writable = tempfile::tempdir_in(shm).is_ok();
    (st.f_type as i64 == TMPFS_MAGIC && avail >= 256 << 20 && writable).then(|| shm.to_path_buf())
}

#[allow(dead_code)]
pub struct Server {
    pub dir: tempfile::TempDir,
    pub cfg: isync::config::Config,
    pub running: Option<isync::app::Running>,
    pub base: String,
}

#[allow(dead_code)]
impl Server {
    /// User `alice` (and `bob`, who sees library `other`), library `lib`
    /// with `a.jpg` and `sub/b.jpg`; logged in as alice.
    pub async fn start(tune: impl FnOnce(&mut isync::config::Config)) -> (Server, Api) {
        Server::start_in(None, tune).await
    }

    /// [`Server::start`] with its data and library under `base` (default:
    /// the system temp dir).
    pub async fn start_in(
        base: Option<&std::path::Path>,
        tune: impl FnOnce(&mut isync::config::Config),
    ) -> (Server, Api) {
        let mut b = tempfile::Builder::new();
        b.prefix("isync-write-");
        let dir = match base {
            Some(base) => b.tempdir_in(base),
            None => b.tempdir(),
        }
        .unwrap();
        let media = dir.path().join("media");
        super::write_file(&media.join("lib/a.jpg"), &super::jpeg(64, 48, 1, None));
        super::write_file(&media.join("lib/sub/b.jpg"), &super::jpeg(32, 32, 2, None));
        super::write_file(&media.join("other/c.jpg"), &super::jpeg(32, 32, 3, None));
        let mut cfg = isync::config::Config {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.path().join("data"),
            default_user_path: Some(dir.path().join("users")),
            ..Default::default()
        };
        cfg.scan.threads = 2;
        // No thumbnail pre-render unless a test asks (`tune`): it records
        // failed renders on file rows whenever it gets to them, which would
        // change rows between the snapshots these tests compare. The
        // pre-render's own tests use `TestApp`.
        cfg.scan.prerender_threads = 0;
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
                let hash = isync::auth::hash_password(super::PASSWORD);
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

    pub async fn boot(&mut self) -> Api {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut running = isync::app::start(self.cfg.clone(), listener).await.unwrap();
        running.wait_scanned().await;
        self.base = format!("http://{}", running.addr);
        self.running = Some(running);
        self.login("alice").await
    }

    /// Stops the server (draining) and starts it again on the same data.
    pub async fn restart(&mut self) -> Api {
        if let Some(r) = self.running.take() {
            r.stop().await.unwrap();
        }
        self.boot().await
    }

    pub async fn login(&self, name: &str) -> Api {
        let api = Api::new(&self.base);
        let v = api
            .get_json(
                "/login.icc",
                json!({"userName": name, "password": super::PASSWORD}),
            )
            .await;
        assert_eq!(v["code"], 0, "{v}");
        api
    }

    /// The session cookie value of a fresh login (for raw TCP requests).
    pub async fn token(&self, name: &str) -> String {
        let r = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("{}/login.icc", self.base))
            .query(&[("userName", name), ("password", super::PASSWORD)])
            .send()
            .await
            .unwrap();
        let c = super::header(&r, "set-cookie");
        c.split(';')
            .next()
            .unwrap()
            .trim_start_matches("session=")
            .to_string()
    }

    pub fn db(&self) -> &isync::db::Db {
        &self.running.as_ref().unwrap().state.db
    }

    pub fn lib(&self) -> std::path::PathBuf {
        self.dir.path().join("media/lib")
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.running.as_ref().unwrap().addr
    }

    /// Every row of the tables a write could change.
    pub async fn snapshot(&self) -> String {
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

    /// Every row of the account tables (users, grants, types, tokens, keys,
    /// share links), to prove a refused account change changed nothing.
    pub async fn accounts_snapshot(&self) -> String {
        self.db()
            .read_async(|c| {
                let mut out = String::new();
                for t in [
                    "users",
                    "user_roots",
                    "account_types",
                    "registration_tokens",
                    "access_keys",
                    "share_links",
                ] {
                    let mut st = c.prepare(&format!("SELECT * FROM {t} ORDER BY 1, 2"))?;
                    let n = st.column_count();
                    let mut rows = st.query([])?;
                    while let Some(r) = rows.next()? {
                        out.push_str(t);
                        for i in 0..n {
                            // Text as text, so a failing comparison reads.
                            match r.get_ref(i)? {
                                rusqlite::types::ValueRef::Text(b) => {
                                    out.push_str(&format!(" {:?}", String::from_utf8_lossy(b)))
                                }
                                v => out.push_str(&format!(" {v:?}")),
                            }
                        }
                        out.push('\n');
                    }
                }
                Ok(out)
            })
            .await
            .unwrap()
    }

    /// The running server's state (sessions, password checks).
    pub fn state(&self) -> &isync::http::state::AppState {
        &self.running.as_ref().unwrap().state
    }

    /// Every path under the media dir and the data dir (files and folders).
    pub fn tree(&self) -> Vec<String> {
        // The server-made thumbnail cache (`thumbs/<shard>/…`, not the
        // client thumbnails under `thumbs/uploaded`) is the server's own.
        let cache = self.cfg.data_dir.join("thumbs");
        let uploaded = cache.join("uploaded");
        let mut v: Vec<String> = walkdir::WalkDir::new(self.dir.path())
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| {
                let p = e.path();
                !(p.starts_with(&cache) && p != cache && !p.starts_with(&uploaded))
            })
            // Nor is a library's (`<library>/.isync/thumbs`, issue 15).
            .filter(|e| !e.path().to_string_lossy().contains("/.isync/thumbs"))
            .map(|e| e.path().to_string_lossy().into_owned())
            .filter(|p| !p.contains("isync.db"))
            .collect();
        v.sort();
        v
    }
}

#[allow(dead_code)]
pub async fn root_id(api: &Api) -> i64 {
    super::id(&api.catalogs("-1").await[0])
}
