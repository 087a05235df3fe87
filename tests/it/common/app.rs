//! `TestApp`: the one harness of the integration tests — a real isync
//! server run in-process on `127.0.0.1:0` over a temporary data dir and
//! media dirs whose fixtures are generated in code, with a logged-in HTTP
//! client; restartable on the same data, the watcher on or off.
//!
//! Every test starts its server through [`Builder::spawn`] (from
//! [`TestApp::builder`]); the presets [`TestApp::start`] (the write path:
//! two users, two libraries) and [`TestApp::watching`] (the live library)
//! are builders filled in the way the tests of a feature begin.

use super::{jpeg, write_file, Api, PASSWORD};
use isync::app::{self, Running};
use isync::config::{Config, LibraryConfig, SessionConfig};
use isync::db::{self, users, Db};
use isync::http::state::AppState;
use isync::library::ScanReport;
use serde_json::{json, Value};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long a test waits for the watcher (or another server event) before
/// failing: a bound that ends a broken test, not a measurement (a debug
/// build on two cores that CI's cross builds and qemu load as well). The
/// latency itself is measured by `benches/watch.rs`.
pub const DEADLINE: Duration = Duration::from_secs(60);

struct LibrarySpec {
    name: String,
    users: Vec<String>,
    merge: bool,
}

/// A configuration change a test asks for, applied last; it may borrow
/// from the test for `'t`.
type Tune<'t> = Box<dyn FnOnce(&mut Config) + 't>;

/// Describes a server before it starts: users, libraries (each a folder
/// under the media dir), fixtures, session limits, the watcher, and any
/// other configuration (`tune`).
pub struct Builder<'t> {
    dir: TempDir,
    users: Vec<(String, String)>,
    libraries: Vec<LibrarySpec>,
    sessions: SessionConfig,
    login_as: Option<String>,
    watch: bool,
    prerender: bool,
    tunes: Vec<Tune<'t>>,
}

impl<'t> Builder<'t> {
    /// Creates a user with [`PASSWORD`].
    pub fn user(self, name: &str) -> Self {
        self.user_with_password(name, PASSWORD)
    }

    pub fn user_with_password(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.into(), password.into()));
        self
    }

    /// A library folder `<media>/<name>` (created empty) granted to `users`.
    pub fn library(self, name: &str, users: &[&str]) -> Self {
        self.library_with(name, users, true)
    }

    /// A library with an explicit `merge` (spec §12.1; matters for a library
    /// inside another one).
    pub fn library_with(mut self, name: &str, users: &[&str], merge: bool) -> Self {
        std::fs::create_dir_all(self.media().join(name)).expect("create library dir");
        self.libraries.push(LibrarySpec {
            name: name.into(),
            users: users.iter().map(|u| u.to_string()).collect(),
            merge,
        });
        self
    }

    /// Writes a fixture at `<media>/<rel>` (the first component of `rel` is
    /// normally a library name); parent folders are created.
    pub fn file(self, rel: &str, bytes: &[u8]) -> Self {
        write_file(&self.media().join(rel), bytes);
        self
    }

    /// Creates an empty folder `<media>/<rel>`.
    pub fn dir(self, rel: &str) -> Self {
        std::fs::create_dir_all(self.media().join(rel)).expect("create dir");
        self
    }

    /// Runs `f` with the media root, for fixtures the other helpers cannot
    /// express (mtimes, symlinks, sparse files).
    pub fn with_media(self, f: impl FnOnce(&Path)) -> Self {
        f(&self.media());
        self
    }

    pub fn max_online(mut self, n: u32) -> Self {
        self.sessions.max_online = n;
        self
    }

    pub fn max_per_user(mut self, n: u32) -> Self {
        self.sessions.max_per_user = n;
        self
    }

    pub fn idle_timeout_secs(mut self, secs: u64) -> Self {
        self.sessions.idle_timeout_secs = secs;
        self
    }

    /// Runs the inotify watcher (with the shipped timings; [`TestApp::watching`]
    /// shortens them). Off by default: most tests change the disk and then
    /// call [`TestApp::rescan`], whose report must not depend on whether the
    /// watcher got there first.
    pub fn watch(mut self, on: bool) -> Self {
        self.watch = on;
        self
    }

    /// Runs the thumbnail pre-render worker (on by default, as shipped); off
    /// for tests that need a thumbnail nobody has rendered yet.
    pub fn prerender(mut self, on: bool) -> Self {
        self.prerender = on;
        self
    }

    /// Which user the default client logs in as (default: the first user).
    pub fn login_as(mut self, name: &str) -> Self {
        self.login_as = Some(name.into());
        self
    }

    /// Changes the configuration once the rest is set (in the order given).
    pub fn tune<'u>(self, f: impl FnOnce(&mut Config) + 'u) -> Builder<'u>
    where
        't: 'u,
    {
        let mut tunes: Vec<Tune<'u>> = self.tunes;
        tunes.push(Box::new(f));
        Builder {
            dir: self.dir,
            users: self.users,
            libraries: self.libraries,
            sessions: self.sessions,
            login_as: self.login_as,
            watch: self.watch,
            prerender: self.prerender,
            tunes,
        }
    }

    /// Puts the data and media dirs under `base` (default: the system temp
    /// dir), e.g. a tmpfs from [`tmpfs`]. Call it first: it starts a new
    /// folder, so fixtures written before are left behind.
    pub fn in_dir(mut self, base: Option<&Path>) -> Self {
        assert!(self.libraries.is_empty(), "in_dir before any library");
        if let Some(base) = base {
            self.dir = temp_dir(Some(base));
        }
        self
    }

    pub fn media(&self) -> PathBuf {
        self.dir.path().join("media")
    }

    fn config(&mut self) -> Config {
        let root = self.dir.path();
        let mut cfg = Config {
            listen: "127.0.0.1:0".into(),
            data_dir: root.join("data"),
            default_user_path: Some(root.join("users")),
            sessions: self.sessions.clone(),
            ..Config::default()
        };
        // Two probe threads: the machine is shared and every test has its own server.
        cfg.scan.threads = 2;
        cfg.watch.enabled = self.watch;
        if !self.prerender {
            cfg.scan.prerender_threads = 0;
        }
        cfg.libraries = self
            .libraries
            .iter()
            .map(|l| LibraryConfig {
                path: self.media().join(&l.name),
                users: l.users.clone(),
                merge: l.merge,
            })
            .collect();
        assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
        // After the check: a test of a limit may set one past what
        // `isync check-config` accepts (`app::start` takes any `Config`).
        for tune in self.tunes.drain(..) {
            tune(&mut cfg);
        }
        cfg
    }

    /// Creates the users, starts the server, waits for the initial scan and
    /// logs the default client in.
    pub async fn spawn(mut self) -> TestApp {
        let cfg = self.config();
        let (db_path, users) = (cfg.db_path(), self.users.clone());
        tokio::task::spawn_blocking(move || {
            let db = Db::open(&db_path).expect("open test database");
            for (name, pw) in &users {
                let hash = isync::auth::hash_password(pw);
                db.write(|tx| users::upsert(tx, name, &hash, db::now()))
                    .expect("create user");
            }
        })
        .await
        .expect("user setup task");
        let default_user = self
            .login_as
            .or_else(|| self.users.first().map(|(n, _)| n.clone()));
        let mut app = TestApp {
            api: Api::new("http://127.0.0.1:1"),
            base: String::new(),
            cfg,
            running: None,
            passwords: self.users,
            default_user,
            dir: self.dir,
        };
        app.boot().await;
        app
    }
}

fn temp_dir(base: Option<&Path>) -> TempDir {
    let mut b = tempfile::Builder::new();
    b.prefix("isync-test-");
    match base {
        Some(base) => b.tempdir_in(base),
        None => b.tempdir(),
    }
    .expect("tempdir")
}

/// Starts a server for `cfg` on a fresh loopback port and waits for its
/// initial scan: the start-up every test shares (the command-line tests
/// call it with a configuration loaded from a file).
pub async fn serve(cfg: &Config) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let mut running = app::start(cfg.clone(), listener)
        .await
        .expect("start isync");
    running.wait_scanned().await;
    running
}

/// A RAM-backed folder for tests whose bound is about what the server does
/// (locks, CPU), not the fsync latency of the machine's disk: `/dev/shm`
/// when it is a writable tmpfs with room (256 MiB), else `None`.
pub fn tmpfs() -> Option<PathBuf> {
    /// `TMPFS_MAGIC` from linux/magic.h.
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    let shm = Path::new("/dev/shm");
    let st = rustix::fs::statfs(shm).ok()?;
    let avail = st.f_bavail.saturating_mul(st.f_bsize as u64);
    let writable = tempfile::tempdir_in(shm).is_ok();
    (st.f_type as i64 == TMPFS_MAGIC && avail >= 256 << 20 && writable).then(|| shm.to_path_buf())
}

/// A running server with its temp dirs; stopped when dropped.
pub struct TestApp {
    /// Client logged in as the default user (see [`Builder::login_as`]).
    pub api: Api,
    pub base: String,
    pub cfg: Config,
    /// `None` between [`TestApp::stop_only`] and [`TestApp::boot`].
    pub running: Option<Running>,
    passwords: Vec<(String, String)>,
    default_user: Option<String>,
    // Last: removed after the server stopped using it.
    pub dir: TempDir,
}

impl TestApp {
    /// An empty description: no user, no library, watcher off.
    pub fn builder() -> Builder<'static> {
        Builder {
            dir: temp_dir(None),
            users: Vec::new(),
            libraries: Vec::new(),
            sessions: SessionConfig::default(),
            login_as: None,
            watch: false,
            prerender: true,
            tunes: Vec::new(),
        }
    }

    /// The write-path preset: users `alice` (library `lib`: `a.jpg`,
    /// `sub/b.jpg`) and `bob` (library `other`: `c.jpg`), the watcher on,
    /// no pre-render; `base` as [`Builder::in_dir`].
    pub fn two_users(base: Option<&Path>) -> Builder<'static> {
        TestApp::builder()
            .in_dir(base)
            .user("alice")
            .user("bob")
            .library("lib", &["alice"])
            .library("other", &["bob"])
            .file("lib/a.jpg", &jpeg(64, 48, 1, None))
            .file("lib/sub/b.jpg", &jpeg(32, 32, 2, None))
            .file("other/c.jpg", &jpeg(32, 32, 3, None))
            .watch(true)
            // No thumbnail pre-render unless a test asks (`tune`): it
            // records failed renders on file rows whenever it gets to them,
            // which would change rows between the snapshots these tests
            // compare. The pre-render's own tests ask for it.
            .prerender(false)
    }

    /// [`TestApp::two_users`] with `tune`, started; alice's client beside.
    pub async fn start(tune: impl FnOnce(&mut Config)) -> (TestApp, Api) {
        let app = TestApp::two_users(None).tune(tune).spawn().await;
        let api = app.api.clone();
        (app, api)
    }

    /// The live-library preset: `alice`'s library `photos` holding `files`
    /// (relative paths), the watcher on and quick (100 ms debounce, offline
    /// checks every second), `tune` last.
    pub async fn watching(files: &[(&str, Vec<u8>)], tune: impl FnOnce(&mut Config)) -> TestApp {
        let mut b = TestApp::builder()
            .user("alice")
            .library("photos", &["alice"])
            .watch(true)
            .tune(|c| {
                c.watch.debounce_ms = 100;
                c.watch.offline_check_secs = 1;
            })
            .tune(tune);
        for (rel, bytes) in files {
            b = b.file(&format!("photos/{rel}"), bytes);
        }
        b.spawn().await
    }

    pub fn state(&self) -> &AppState {
        &self.running.as_ref().expect("running").state
    }

    pub fn db(&self) -> &Db {
        &self.state().db
    }

    pub fn media(&self) -> PathBuf {
        self.dir.path().join("media")
    }

    /// The first library's root (`<media>/photos` or `<media>/lib` in the
    /// presets).
    pub fn lib(&self) -> PathBuf {
        self.cfg.libraries[0].path.clone()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.cfg.data_dir.clone()
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.running.as_ref().expect("running").addr
    }

    /// A new client without a session.
    pub fn anon(&self) -> Api {
        Api::new(&self.base)
    }

    /// Logs `name` in with the password it was created with.
    pub async fn login(&self, name: &str) -> Api {
        let api = self.anon();
        let v = api
            .get_json(
                "/login.icc",
                json!({"userName": name, "password": self.password(name)}),
            )
            .await;
        assert_eq!(v["code"], 0, "login of {name} failed: {v}");
        api
    }

    fn password(&self, name: &str) -> String {
        self.passwords
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| PASSWORD.into())
    }

    /// The session cookie value of a fresh login (for raw TCP requests).
    pub async fn token(&self, name: &str) -> String {
        let r = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("http client")
            .get(format!("{}/login.icc", self.base))
            .query(&[("userName", name), ("password", &self.password(name))])
            .send()
            .await
            .expect("login request");
        let c = super::header(&r, "set-cookie");
        c.split(';')
            .next()
            .expect("a cookie")
            .trim_start_matches("session=")
            .to_string()
    }

    /// Runs a full scan of the configured libraries (what the server did at
    /// start) and returns its report.
    pub async fn rescan(&self) -> ScanReport {
        let st = self.state().clone();
        tokio::task::spawn_blocking(move || {
            let plan = st.plan.read().expect("plan lock").clone();
            st.scanner.scan_plan(&plan)
        })
        .await
        .expect("scan task")
        .expect("scan")
    }

    /// Starts the server (again) on this data dir and media, on a new port,
    /// and logs the default client in (sessions of an earlier run are gone
    /// only if the server forgets them). Returns that client.
    pub async fn boot(&mut self) -> Api {
        assert!(self.running.is_none(), "already running");
        let running = serve(&self.cfg).await;
        self.base = format!("http://{}", running.addr);
        self.running = Some(running);
        self.api = match self.default_user.clone() {
            Some(name) => self.login(&name).await,
            None => self.anon(),
        };
        self.api.clone()
    }

    /// Stops the server (draining) and starts it again on the same data:
    /// [`TestApp::stop_only`], then [`TestApp::boot`].
    pub async fn restart(&mut self) -> Api {
        self.stop_only().await;
        self.boot().await
    }

    /// Stops the server but keeps the dirs, for a later [`TestApp::boot`].
    pub async fn stop_only(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.expect("clean stop");
        }
    }

    /// Stops the server, draining requests.
    pub async fn stop(mut self) {
        self.stop_only().await;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Drop cannot await: cancel, and the runtime ending with the test
        // takes the server task down.
        if let Some(r) = &self.running {
            r.shutdown_token().cancel();
        }
    }
}

/// What a test reads of the database and the disk, to prove what a request
/// changed or did not.
impl TestApp {
    /// Runs `f` on a read connection off the runtime.
    pub async fn db_read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T, db::DbError> + Send + 'static,
    ) -> T {
        self.db().read_async(f).await.expect("db read")
    }

    /// Every row of the tables a request could change, as text, to prove a
    /// rejected request changed nothing.
    pub async fn db_snapshot(&self) -> String {
        self.rows(
            &["users", "user_roots", "libraries", "catalogs", "files"],
            "1, 2",
            false,
        )
        .await
    }

    /// Every row of the tables a write could change.
    pub async fn snapshot(&self) -> String {
        let tables = ["catalogs", "files", "share_links", "trash", "user_roots"];
        self.rows(&tables, "1", false).await
    }

    /// Every row of the account tables (users, grants, types, tokens, keys,
    /// share links), to prove a refused account change changed nothing.
    pub async fn accounts_snapshot(&self) -> String {
        let tables = [
            "users",
            "user_roots",
            "account_types",
            "registration_tokens",
            "access_keys",
            "share_links",
        ];
        self.rows(&tables, "1, 2", true).await
    }

    /// The rows of `tables` ordered by `order`, one line each; text columns
    /// as text when `text` (so a failing comparison reads).
    async fn rows(&self, tables: &[&str], order: &str, text: bool) -> String {
        let tables: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
        let order = order.to_string();
        self.db_read(move |c| {
            let mut out = String::new();
            for t in &tables {
                let mut st = c.prepare(&format!("SELECT * FROM {t} ORDER BY {order}"))?;
                let n = st.column_count();
                let mut rows = st.query([])?;
                while let Some(r) = rows.next()? {
                    out.push_str(t);
                    for i in 0..n {
                        match r.get_ref(i)? {
                            rusqlite::types::ValueRef::Text(b) if text => {
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

    /// Id of a user by name.
    pub async fn user_id(&self, name: &str) -> i64 {
        let name = name.to_string();
        self.db_read(move |c| Ok(users::by_name(c, &name)?.expect("user exists").id.0))
            .await
    }

    /// Whether the library at `<media>/<name>` is marked online.
    pub async fn library_online(&self, name: &str) -> bool {
        let key = self.media().join(name).to_string_lossy().into_owned();
        self.db_read(move |c| {
            Ok(isync::db::libraries::by_path(c, &key)?
                .expect("library row")
                .online)
        })
        .await
    }

    /// Whether the first library is marked online.
    pub async fn online(&self) -> bool {
        self.db_read(|c| Ok(isync::db::libraries::list(c)?[0].online))
            .await
    }

    /// Removals the mass-deletion guard holds back.
    pub async fn held(&self) -> i64 {
        self.db_read(isync::db::libraries::held_deletions)
            .await
            .first()
            .map_or(0, |(_, n)| *n)
    }

    /// File names the default client lists, sorted.
    pub async fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self
            .api
            .all_files()
            .await
            .iter()
            .map(|f| f["name"].as_str().expect("name").to_string())
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

    /// GET `path` without a session (nor a cookie store).
    pub async fn anon_get(&self, path: &str) -> reqwest::Response {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("http client")
            .get(self.api.url(path))
            .send()
            .await
            .expect("request")
    }

    /// The watcher's counters.
    pub fn stats(&self) -> &isync::library::watcher::WatchStats {
        self.running
            .as_ref()
            .expect("running")
            .watch
            .as_ref()
            .expect("watcher on")
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
