//! `TestApp`: a real isync server run in-process on `127.0.0.1:0` over a
//! temporary data dir and media dirs whose fixtures are generated in code,
//! plus a logged-in HTTP client and the helpers every feature test shares.
//!
//! Each integration test binary compiles this module on its own and uses a
//! different part of it, hence the `dead_code` allowance.

#![allow(dead_code)]

pub mod fixtures;
pub mod mount;
pub mod process;
pub mod server;
pub mod upload;

use isync::app::{self, Running};
use isync::config::{Config, LibraryConfig, SessionConfig};
use isync::db::{self, users, Db};
use isync::http::state::AppState;
use isync::library::ScanReport;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tempfile::TempDir;

/// Password of every user a test creates unless it says otherwise.
pub const PASSWORD: &str = "correct horse";

/// Wire codes (spec §2.1) the tests assert on.
pub const OK: i64 = 0;
pub const BAD_LOGIN: i64 = -10000;
pub const NEED_LOGIN: i64 = -10001;
pub const NO_PERMISSION: i64 = -10002;
pub const BAD_PARAM: i64 = -10003;
pub const NOT_FOUND: i64 = -10004;
pub const WRONG_FILE_TYPE: i64 = -10005;
pub const FILE_GONE: i64 = -10006;
/// isync extension: the file's library is offline.
pub const LIBRARY_OFFLINE: i64 = -10011;
/// isync extension: past the free-space reserve or the uploader's quota.
pub const STORAGE_FULL: i64 = -10014;

struct LibrarySpec {
    name: String,
    users: Vec<String>,
    merge: bool,
}

/// Describes a server before it starts: users, libraries (each a folder
/// under the media dir), fixtures and session limits.
pub struct Builder {
    dir: TempDir,
    users: Vec<(String, String)>,
    libraries: Vec<LibrarySpec>,
    sessions: SessionConfig,
    login_as: Option<String>,
    watch: bool,
    prerender: bool,
}

impl Builder {
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

    /// Runs the inotify watcher. Off by default: most tests change the disk
    /// and then call [`TestApp::rescan`], whose report must not depend on
    /// whether the watcher got there first.
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

    pub fn media(&self) -> PathBuf {
        self.dir.path().join("media")
    }

    fn config(&self) -> Config {
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
        cfg
    }

    /// Creates the users, starts the server, waits for the initial scan and
    /// logs the default client in.
    pub async fn spawn(self) -> TestApp {
        let cfg = self.config();
        assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
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

        let running = start(&cfg).await;
        let base = format!("http://{}", running.addr);
        let default_user = self
            .login_as
            .or_else(|| self.users.first().map(|(n, _)| n.clone()));
        let mut app = TestApp {
            api: Api::new(&base),
            base,
            cfg,
            running: Some(running),
            passwords: self.users.clone(),
            default_user,
            dir: self.dir,
        };
        app.login_default().await;
        app
    }
}

/// Starts a server for `cfg` on a fresh loopback port and waits for its
/// initial scan.
async fn start(cfg: &Config) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let mut running = app::start(cfg.clone(), listener)
        .await
        .expect("start isync");
    running.wait_scanned().await;
    running
}

/// A running server with its temp dirs; stopped when dropped.
pub struct TestApp {
    /// Client logged in as the default user (see [`Builder::login_as`]).
    pub api: Api,
    pub base: String,
    pub cfg: Config,
    running: Option<Running>,
    passwords: Vec<(String, String)>,
    default_user: Option<String>,
    // Last: removed after the server stopped using it.
    dir: TempDir,
}

impl TestApp {
    pub fn builder() -> Builder {
        Builder {
            dir: tempfile::Builder::new()
                .prefix("isync-test-")
                .tempdir()
                .expect("tempdir"),
            users: Vec::new(),
            libraries: Vec::new(),
            sessions: SessionConfig::default(),
            login_as: None,
            watch: false,
            prerender: true,
        }
    }

    /// User `alice` with library `photos` holding three small JPEGs (one in
    /// a sub-folder), logged in as alice.
    pub async fn spawn() -> TestApp {
        TestApp::builder()
            .user("alice")
            .library("photos", &["alice"])
            .file("photos/a.jpg", &jpeg(64, 48, 1, None))
            .file("photos/b.jpg", &jpeg(80, 60, 2, None))
            .file("photos/sub/c.jpg", &jpeg(32, 32, 3, None))
            .spawn()
            .await
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

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A new client without a session.
    pub fn anon(&self) -> Api {
        Api::new(&self.base)
    }

    /// Logs `name` in with the password it was created with.
    pub async fn login(&self, name: &str) -> Api {
        let pw = self
            .passwords
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| PASSWORD.into());
        let api = self.anon();
        let v = api
            .get_json("/login.icc", json!({"userName": name, "password": pw}))
            .await;
        assert_eq!(v["code"], 0, "login of {name} failed: {v}");
        api
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
        self.db_read(|c| {
            let mut out = String::new();
            for table in ["users", "user_roots", "libraries", "catalogs", "files"] {
                let mut st = c.prepare(&format!("SELECT * FROM {table} ORDER BY 1, 2"))?;
                let n = st.column_count();
                let mut rows = st.query([])?;
                while let Some(r) = rows.next()? {
                    out.push_str(table);
                    for i in 0..n {
                        out.push_str(&format!(" {:?}", r.get_ref(i)?));
                    }
                    out.push('\n');
                }
            }
            Ok(out)
        })
        .await
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

    async fn login_default(&mut self) {
        self.api = match self.default_user.clone() {
            Some(name) => self.login(&name).await,
            None => self.anon(),
        };
    }

    /// Stops the server and starts a new one on the same data dir and media
    /// (new port; sessions are gone, so the default client logs in again).
    /// Returns a client still holding the old session cookie.
    pub async fn restart(&mut self) -> Api {
        let old = self.api.clone();
        self.stop_only().await;
        let running = start(&self.cfg).await;
        self.base = format!("http://{}", running.addr);
        self.running = Some(running);
        self.login_default().await;
        Api {
            base: self.base.clone(),
            ..old
        }
    }

    /// Stops the server but keeps the dirs, for a later [`TestApp::restart`].
    pub async fn stop_only(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.expect("clean stop");
        }
    }

    /// Stops the server, draining requests.
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.expect("clean stop");
        }
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

/// A client of one server, with a cookie store (the session).
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

fn client(cookies: bool, headers: reqwest::header::HeaderMap) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(cookies)
        .default_headers(headers)
        // An http_proxy in the environment must not catch loopback requests.
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            http: client(true, Default::default()),
            base: base.to_string(),
        }
    }

    /// A client whose connections come from `local`, another loopback
    /// address (127.0.0.2…): a second device, as the server sees it.
    pub fn from_address(base: &str, local: std::net::IpAddr) -> Api {
        Api {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .no_proxy()
                .local_address(local)
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            base: base.to_string(),
        }
    }

    /// A client that sends exactly `Cookie: session=<token>` and stores no
    /// cookies (to reuse a session after the server told a client to drop it).
    pub fn with_session_cookie(base: &str, token: &str) -> Api {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::COOKIE,
            format!("session={token}").parse().expect("cookie header"),
        );
        Api {
            http: client(false, h),
            base: base.to_string(),
        }
    }

    /// A client that authenticates with `Authorization: Bearer <key>` (an
    /// access key) and stores no cookies.
    pub fn with_bearer(base: &str, key: &str) -> Api {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {key}").parse().expect("auth header"),
        );
        Api {
            http: client(false, h),
            base: base.to_string(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET with `params` (a JSON object) in the query string; the raw reply.
    pub async fn get(&self, path: &str, params: Value) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .query(&params)
            .send()
            .await
            .expect("request")
    }

    /// GET with query parameters; asserts a JSON reply with HTTP 200.
    pub async fn get_json(&self, path: &str, params: Value) -> Value {
        json_of(path, self.get(path, params).await).await
    }

    /// POST with an url-encoded form body.
    pub async fn post_form(&self, path: &str, params: Value) -> Value {
        let r = self
            .http
            .post(self.url(path))
            .form(&params)
            .send()
            .await
            .expect("request");
        json_of(path, r).await
    }

    /// POST with a JSON body.
    pub async fn post_json(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request");
        json_of(path, r).await
    }

    /// `method path` with a raw body and content type; the raw reply.
    pub async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.http
            .request(method, self.url(path))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .expect("request")
    }

    /// Every visible file, in storage order (one big page).
    pub async fn all_files(&self) -> Vec<Value> {
        self.files(json!({"pageIndex": 0, "maxPerPage": 10000}))
            .await
    }

    /// The `list` of one `files.icc` call (asserting success).
    pub async fn files(&self, params: Value) -> Vec<Value> {
        let v = self.get_json("/files.icc", params).await;
        data(&v)["list"].as_array().expect("list").clone()
    }

    /// The catalogs whose parent is in `pids` (asserting success).
    pub async fn catalogs(&self, pids: &str) -> Vec<Value> {
        let v = self.get_json("/catalogs.icc", json!({"pids": pids})).await;
        data(&v).as_array().expect("catalog array").clone()
    }

    /// Every catalog reachable from the roots, breadth first.
    pub async fn all_catalogs(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut level = self.catalogs("-1").await;
        while !level.is_empty() {
            let ids: Vec<String> = level.iter().map(|c| c["id"].to_string()).collect();
            out.extend(level);
            level = self.catalogs(&ids.join(",")).await;
        }
        out
    }

    /// The visible file named `name` (panics when absent or ambiguous).
    pub async fn file_named(&self, name: &str) -> Value {
        let all = self.all_files().await;
        let hits: Vec<&Value> = all.iter().filter(|f| f["name"] == name).collect();
        assert_eq!(hits.len(), 1, "expected one file named {name} in {all:#?}");
        hits[0].clone()
    }

    pub async fn file_id(&self, name: &str) -> i64 {
        id(&self.file_named(name).await)
    }

    /// GET `downFile.icc?id=` with extra headers; the raw reply.
    pub async fn download(&self, id: i64, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut rq = self
            .http
            .get(self.url("/downFile.icc"))
            .query(&[("id", id)]);
        for (k, v) in headers {
            rq = rq.header(*k, *v);
        }
        rq.send().await.expect("request")
    }
}

async fn json_of(path: &str, r: reqwest::Response) -> Value {
    let status = r.status();
    let ctype = header(&r, "content-type");
    let text = r.text().await.expect("body");
    assert_eq!(status, 200, "{path}: HTTP {status}: {text}");
    assert!(
        ctype.starts_with("application/json"),
        "{path}: content-type {ctype:?}: {text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"))
}

/// A response header as text ("" when absent).
pub fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().expect("ascii header").to_string())
        .unwrap_or_default()
}

/// `data` of a success reply (asserting `code` 0).
pub fn data(v: &Value) -> &Value {
    assert_eq!(v["code"], 0, "expected success, got {v}");
    &v["data"]
}

/// Asserts an error reply with `code` and a non-empty `msg`.
#[track_caller]
pub fn assert_err(v: &Value, code: i64) {
    assert_eq!(v["code"], code, "expected code {code}, got {v}");
    let msg = v["msg"].as_str().unwrap_or("");
    assert!(!msg.trim().is_empty(), "error without msg: {v}");
}

/// Asserts a binary endpoint's error reply: exactly HTTP `status`, a JSON
/// content type and body `{code, msg}` with `code` (see `src/http/error.rs`
/// for which status each code travels with: 403 for −10001/−10002, 400 for
/// −10003, 404 for −10004/5/6/8/9, 503 for −10011, 429 for −10012).
#[track_caller]
pub fn assert_binary_err_status(
    r: reqwest::Response,
    status: u16,
    code: i64,
) -> impl std::future::Future<Output = ()> {
    let caller = std::panic::Location::caller();
    async move {
        let got = r.status();
        let ctype = header(&r, "content-type");
        let text = r.text().await.expect("body");
        assert_eq!(
            got.as_u16(),
            status,
            "{caller}: expected HTTP {status} with code {code}, got {got}: {text}"
        );
        assert!(
            ctype.starts_with("application/json"),
            "{caller}: content-type {ctype:?}: {text}"
        );
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{caller}: not JSON ({e}): {got} {text}"));
        assert_eq!(v["code"], code, "{caller}: expected code {code}, got {v}");
        let msg = v["msg"].as_str().unwrap_or("");
        assert!(!msg.trim().is_empty(), "{caller}: error without msg: {v}");
    }
}

pub fn id(v: &Value) -> i64 {
    v["id"].as_i64().unwrap_or_else(|| panic!("no id in {v}"))
}

pub fn ids(list: &[Value]) -> Vec<i64> {
    list.iter().map(id).collect()
}

// ---------------------------------------------------------------- fixtures

pub fn write_file(path: &Path, bytes: &[u8]) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).expect("create parent");
    }
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A `w`×`h` JPEG with a red top-left quarter, optionally EXIF-rotated.
pub fn jpeg(w: u32, h: u32, seed: u8, orientation: Option<u16>) -> Vec<u8> {
    isync::demo::jpeg_bytes(w, h, seed, orientation)
}

/// An animated GIF of `frames` frames of `w`×`h`, each shown `delay_cs`
/// hundredths of a second (duration = frames × delay).
pub fn gif(w: u16, h: u16, frames: u8, delay_cs: u16) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = gif::Encoder::new(&mut out, w, h, &[]).expect("gif encoder");
        enc.set_repeat(gif::Repeat::Infinite).expect("gif repeat");
        for i in 0..frames {
            let px: Vec<u8> = (0..w as usize * h as usize)
                .flat_map(|n| [(n % 256) as u8, i.wrapping_mul(40), 200])
                .collect();
            let mut frame = gif::Frame::from_rgb(w, h, &px);
            frame.delay = delay_cs;
            enc.write_frame(&frame).expect("gif frame");
        }
    }
    out
}

/// Sets a file's mtime and atime to `secs` since the epoch (its ctime stays
/// now, so the scanner's createTime — the earliest of the three — is `secs`).
pub fn set_mtime(path: &Path, secs: u64) {
    let t = UNIX_EPOCH + Duration::from_secs(secs);
    let f = std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t))
        .expect("set file times");
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Whether ffmpeg can run. Under `CI=true` its absence fails the test
/// loudly; elsewhere the caller skips with a message.
pub fn ffmpeg_available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    let ok = *OK.get_or_init(|| {
        Command::new("ffmpeg")
            .arg("-version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("ffmpeg is required when CI=true (apt-get install ffmpeg)");
        }
        eprintln!("skipping: ffmpeg not found");
    }
    ok
}

/// Audio/video fixtures made once per test binary with ffmpeg's lavfi.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Av {
    /// 320×240, 2 s, H.264 + AAC.
    Mp4,
    /// 320×240 stored, 2 s, H.264, blue with a red top-left quarter-by-quarter
    /// corner (so a thumbnail shows which way it was turned), with a display
    /// matrix turning it a quarter (displayed 240×320); see
    /// [`av_orientation`] for which way.
    Mp4Rotated,
    /// 1.5 s AAC in MP4.
    M4a,
    /// 1.5 s MP3.
    Mp3,
}

fn ffmpeg(dir: &Path, args: &str) {
    let st = Command::new("ffmpeg")
        .current_dir(dir)
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args.split_whitespace())
        .status()
        .expect("run ffmpeg");
    assert!(st.success(), "ffmpeg {args} failed");
}

fn make_av(kind: Av) -> Vec<u8> {
    const VIDEO_IN: &str = "-f lavfi -i testsrc=size=320x240:rate=10:duration=2";
    const H264: &str = "-c:v libx264 -preset ultrafast -pix_fmt yuv420p";
    const TONE: &str = "-f lavfi -i sine=frequency=440:duration=1.5";
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let name = match kind {
        Av::Mp4 => {
            ffmpeg(
                d,
                &format!(
                    "{VIDEO_IN} -f lavfi -i sine=frequency=440:duration=2 {H264} -c:a aac \
                     -shortest -movflags +faststart out.mp4"
                ),
            );
            "out.mp4"
        }
        Av::Mp4Rotated => {
            // The rotate tag only becomes a display matrix on a stream copy.
            const MARKED: &str = "-f lavfi -i color=c=blue:s=320x240:r=10:d=2,\
                                  drawbox=x=0:y=0:w=80:h=60:color=red:t=fill";
            ffmpeg(d, &format!("{MARKED} {H264} plain.mp4"));
            ffmpeg(d, "-i plain.mp4 -c copy -metadata:s:v:0 rotate=90 out.mp4");
            "out.mp4"
        }
        Av::M4a => {
            ffmpeg(d, &format!("{TONE} -c:a aac out.m4a"));
            "out.m4a"
        }
        Av::Mp3 => {
            ffmpeg(d, &format!("{TONE} -c:a libmp3lame out.mp3"));
            "out.mp3"
        }
    };
    std::fs::read(d.join(name)).expect("read ffmpeg output")
}

/// The bytes of an audio/video fixture, or None (after a message) when
/// ffmpeg is missing outside CI.
pub fn av(kind: Av) -> Option<&'static [u8]> {
    type Made = Vec<(Av, &'static [u8])>;
    static CACHE: OnceLock<std::sync::Mutex<Made>> = OnceLock::new();
    if !ffmpeg_available() {
        return None;
    }
    let cache = CACHE.get_or_init(Default::default);
    let mut g = cache.lock().expect("fixture cache");
    if let Some((_, b)) = g.iter().find(|(k, _)| *k == kind) {
        return Some(b);
    }
    // Leaked on purpose: one small buffer per kind for the whole test run.
    let bytes: &'static [u8] = Box::leak(make_av(kind).into_boxed_slice());
    g.push((kind, bytes));
    Some(bytes)
}

/// The orientation (spec §2.4) a video fixture's display matrix calls for,
/// as ffprobe reads it (its `rotation` is counter-clockwise degrees). The
/// direction ffmpeg gives a `rotate` tag changed between versions, so the
/// tests ask ffprobe rather than assume.
pub fn av_orientation(bytes: &[u8]) -> Option<i64> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v.mp4");
    std::fs::write(&path, bytes).expect("write fixture");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream_side_data=rotation",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .expect("run ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    let ccw: i64 = text.trim().trim_end_matches(',').parse().ok()?;
    match ccw.rem_euclid(360) {
        90 => Some(8),
        180 => Some(3),
        270 => Some(6),
        _ => None,
    }
}
