//! One `Config` tree: built-in defaults → TOML file → a few CLI flags/env.
//! `validate()` lists every problem at once so an operator fixes them in one go.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where `isync` looks for its configuration when `--config` is not given.
pub(crate) const DEFAULT_CONFIG_PATH: &str = "/etc/isync/isync.toml";
/// Environment variable that overrides `data_dir` (used by `make run`).
pub const DATA_DIR_ENV: &str = "ISYNC_DATA_DIR";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Config {
    /// Address the HTTP API listens on; iPrivate users type port 5000.
    pub listen: String,
    /// Database, thumbnail cache and upload staging live here.
    pub data_dir: PathBuf,
    /// Parent of the folders created for users without a library (spec §5).
    /// Defaults to `<data_dir>/users`.
    pub default_user_path: Option<PathBuf>,
    pub share: ShareConfig,
    pub sessions: SessionConfig,
    pub scan: ScanConfig,
    pub thumbnails: ThumbnailConfig,
    pub watch: WatchConfig,
    pub upload: UploadConfig,
    pub storage: StorageConfig,
    pub trash: TrashConfig,
    pub login: LoginConfig,
    pub backup: BackupConfig,
    pub http: HttpConfig,
    #[serde(rename = "library")]
    pub libraries: Vec<LibraryConfig>,
    /// The file this configuration was read from (copied into backups).
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ShareConfig {
    /// At most this many live share keys in all; past it, the account
    /// holding the most gives up its least recently used one.
    pub max_links: u32,
    /// At most this many live share keys per account that made them; its
    /// least recently used goes first (issuing link after link evicts only
    /// one's own links).
    pub max_per_user: u32,
    /// A key unused for this long stops working (sliding, spec §8).
    pub lifetime_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SessionConfig {
    /// At most this many sessions in all; past it, the user holding the
    /// most gives up its least recently used one.
    pub max_online: u32,
    /// A session unused for this long ends (sliding, spec §4).
    pub idle_timeout_secs: u64,
    /// At most this many sessions per user; its least recently used goes
    /// first (logging in again and again evicts only one's own sessions).
    pub max_per_user: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ScanConfig {
    /// Threads probing files during a scan (0 = one per core).
    pub threads: usize,
    /// Rows written per scanner transaction.
    pub batch_size: usize,
    /// Mass-deletion guard: a scan that would remove more than this share
    /// of a library's files (0–1) removes nothing until confirmed with
    /// `isync scan --confirm-deletions`.
    pub max_delete_share: f64,
    /// … or more than this many files at once.
    pub max_delete_count: usize,
    /// Background threads rendering thumbnails of new and changed files after
    /// each scan, at the lowest CPU priority (0 = off; at most cores − 1).
    pub prerender_threads: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ThumbnailConfig {
    /// Memory all thumbnail renders together may use, in MiB (requests and
    /// the pre-render worker; ffmpeg's own memory is capped apart). A render
    /// that needs more than this is refused (−10008); one that finds it used
    /// up waits.
    pub memory_mb: u64,
    /// Where a library's thumbnail cache lives: `"library"` (its own disk,
    /// `<library>/.isync/thumbs`; a read-only or full one falls back to
    /// the data dir) or `"data_dir"` (`<data_dir>/thumbs`, for every
    /// library).
    pub location: ThumbLocation,
    /// Size limit of each thumbnail cache, in MiB; 0 = a tenth of the file
    /// system it is on. Past it, the least recently used thumbnails go
    /// (and are rendered again when asked for). A cache also never takes
    /// its disk below `upload.min_free_bytes`.
    pub cache_mb: u64,
}

/// `thumbnails.location` (defined beside the caches it places).
pub use crate::media::thumbstore::ThumbLocation;

impl Default for ThumbnailConfig {
    fn default() -> Self {
        ThumbnailConfig {
            memory_mb: crate::media::budget::DEFAULT_BUDGET_BYTES >> 20,
            location: ThumbLocation::Library,
            cache_mb: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct WatchConfig {
    /// Watch the libraries (inotify) while `serve` runs.
    pub enabled: bool,
    /// Quiet time after the last event in a folder before it is scanned
    /// (a folder busy for longer is scanned at least once a second).
    pub debounce_ms: u64,
    /// Most folders watched (0 = up to the kernel's
    /// fs.inotify.max_user_watches). Past it, the library falls back to
    /// periodic rescans.
    pub max_watches: usize,
    /// Interval of the incremental rescans of a library that cannot be fully
    /// watched (watch limit reached).
    pub fallback_rescan_secs: u64,
    /// How often an offline library's root is checked for its return.
    pub offline_check_secs: u64,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            enabled: true,
            debounce_ms: 300,
            max_watches: 0,
            fallback_rescan_secs: 300,
            offline_check_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct UploadConfig {
    /// Largest original accepted by one upload (bytes).
    pub max_file_bytes: u64,
    /// Largest client thumbnail (`thumb`/`screen` part) accepted (bytes).
    pub max_thumb_bytes: u64,
    /// A pending upload untouched for this many hours is removed.
    pub stale_after_hours: u64,
    /// Free space (bytes) no upload may eat into, on every disk an upload
    /// writes to: the library disk, the users folder (the SD card, unless
    /// `default_user_path` puts it elsewhere), the data dir for client
    /// thumbnails. Checked against the announced size and while streaming.
    pub min_free_bytes: u64,
    /// Most bytes one user's uploads may hold (announced sizes of pending
    /// uploads, stored sizes of complete ones; the trash does not count).
    /// 0 = no quota.
    pub user_quota_bytes: u64,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            max_file_bytes: 64 << 30,
            max_thumb_bytes: 32 << 20,
            stale_after_hours: 7 * 24,
            min_free_bytes: 1 << 30,
            user_quota_bytes: 0,
        }
    }
}

/// The data dir's own disk (the SD card on the appliance).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct StorageConfig {
    /// Free space (bytes) kept on the file system holding `data_dir`:
    /// uploads staged there (users without a library, client thumbnails)
    /// stop short of it (−10014), and the status line and `/api/v1/info`
    /// say so. The database keeps this room for logins and sessions, so it
    /// must stay well above what SQLite needs for a transaction (a few
    /// MiB); 0 = no reserve beyond `upload.min_free_bytes`.
    pub data_min_free_bytes: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_min_free_bytes: 256 << 20,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TrashConfig {
    /// Deleted originals stay in `<library>/.isync/trash/` this many days.
    pub retention_days: u64,
}

impl Default for TrashConfig {
    fn default() -> Self {
        TrashConfig { retention_days: 30 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LoginConfig {
    /// Failed logins allowed per client address, and per user name from
    /// addresses that are not a known device of that user, within
    /// `window_secs` (see `ratelimit`).
    pub max_failures: u32,
    pub window_secs: u64,
    /// Password checks (logins, registrations) waiting for the one hashing
    /// thread at most; past it a login is refused with −10012 and
    /// `Retry-After` instead of queueing (each waits ~one hash per check
    /// ahead of it).
    pub max_pending_checks: u32,
}

impl Default for LoginConfig {
    fn default() -> Self {
        LoginConfig {
            max_failures: 10,
            window_secs: 900,
            max_pending_checks: 16,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct BackupConfig {
    /// Where backups go. Default: `<first library>/.isync/backups` (the USB
    /// disk, not the SD card), else `<data_dir>/backups`.
    pub dir: Option<PathBuf>,
    /// Successful backups kept; older ones are removed.
    pub keep: u32,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig { dir: None, keep: 7 }
    }
}

/// Connection handling (`http/serve.rs`): what one misbehaving device on
/// the LAN may hold.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HttpConfig {
    /// A request head must be complete this many seconds after its first
    /// byte; a new connection must have sent one within this time.
    pub header_read_timeout_secs: u64,
    /// A connection idle between requests is closed after this long.
    pub keep_alive_timeout_secs: u64,
    /// Connections open at once, all clients together.
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_connections_per_address: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_read_timeout_secs: 10,
            keep_alive_timeout_secs: 60,
            max_connections: 512,
            max_connections_per_address: 64,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LibraryConfig {
    /// Absolute path of the media tree; it becomes a root catalog.
    pub path: PathBuf,
    /// Users (created with `isync user add`) who may see this library.
    #[serde(default)]
    pub users: Vec<String>,
    /// Fold this library into an enclosing library's tree (spec §12.1).
    #[serde(default = "default_true")]
    pub merge: bool,
}

fn default_true() -> bool {
    true
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "0.0.0.0:5000".into(),
            data_dir: PathBuf::from("/var/lib/isync"),
            default_user_path: None,
            share: ShareConfig::default(),
            sessions: SessionConfig::default(),
            scan: ScanConfig::default(),
            thumbnails: ThumbnailConfig::default(),
            watch: WatchConfig::default(),
            upload: UploadConfig::default(),
            storage: StorageConfig::default(),
            trash: TrashConfig::default(),
            login: LoginConfig::default(),
            backup: BackupConfig::default(),
            http: HttpConfig::default(),
            libraries: Vec::new(),
            file: None,
        }
    }
}

impl Default for ShareConfig {
    fn default() -> Self {
        ShareConfig {
            max_links: 1000,
            max_per_user: 200,
            lifetime_secs: 1800,
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_online: 100,
            idle_timeout_secs: 3600,
            max_per_user: 10,
        }
    }
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            threads: 0,
            batch_size: 1000,
            max_delete_share: 0.5,
            max_delete_count: 5000,
            prerender_threads: crate::media::prerender::default_threads(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config {path}:\n{problems}")]
    Invalid { path: String, problems: String },
}

impl Config {
    /// Loads the configuration. `explicit` is the `--config` flag: a missing
    /// explicit file is an error, a missing default file means defaults.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let path = explicit.unwrap_or(Path::new(DEFAULT_CONFIG_PATH));
        let mut cfg = match std::fs::read_to_string(path) {
            Ok(text) => Config {
                file: Some(path.to_path_buf()),
                ..Config::parse(&text).map_err(|problems| ConfigError::Invalid {
                    path: path.display().to_string(),
                    problems: problems.join("\n"),
                })?
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
                Config::default()
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        if let Some(dir) = std::env::var_os(DATA_DIR_ENV).filter(|v| !v.is_empty()) {
            cfg.data_dir = PathBuf::from(dir);
        }
        let problems = cfg.validate();
        if !problems.is_empty() {
            return Err(ConfigError::Invalid {
                path: path.display().to_string(),
                problems: problems.join("\n"),
            });
        }
        Ok(cfg)
    }

    /// Parses TOML text; on failure returns every problem found. Unknown
    /// keys are errors, collected with `serde_ignored` rather than serde's
    /// `deny_unknown_fields` (which stops at the first one and hides every
    /// other problem of the file).
    pub fn parse(text: &str) -> Result<Config, Vec<String>> {
        let mut unknown = Vec::new();
        let de = toml::Deserializer::new(text);
        let cfg: Config = serde_ignored::deserialize(de, |path| unknown.push(path.to_string()))
            .map_err(|e| vec![e.to_string().trim().to_string()])?;
        let mut problems: Vec<String> = unknown
            .into_iter()
            .map(|k| format!("unknown key `{k}` (every key is listed in isync.example.toml)"))
            .collect();
        problems.extend(cfg.validate());
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(problems)
        }
    }

    /// Every problem with this configuration, one line each (empty = valid).
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        self.check_paths(&mut p);
        self.check_service_limits(&mut p);
        self.check_login_and_backup(&mut p);
        self.check_http(&mut p);
        self.check_libraries(&mut p);
        p
    }

    /// `validate`: the listening address and the server's own paths.
    fn check_paths(&self, p: &mut Vec<String>) {
        if self.listen.parse::<SocketAddr>().is_err() {
            p.push(format!(
                "listen = {:?}: expected an address like \"0.0.0.0:5000\"",
                self.listen
            ));
        }
        if !self.data_dir.is_absolute() {
            p.push(format!(
                "data_dir = {:?}: must be an absolute path",
                self.data_dir
            ));
        }
        if let Some(d) = &self.default_user_path {
            if !d.is_absolute() {
                p.push(format!(
                    "default_user_path = {d:?}: must be an absolute path"
                ));
            }
        }
    }

    /// `validate`: thumbnails, share links, sessions, scan, watch, upload and trash.
    fn check_service_limits(&self, p: &mut Vec<String>) {
        if !(16..=4096).contains(&self.thumbnails.memory_mb) {
            p.push(format!(
                "thumbnails.memory_mb = {}: must be between 16 and 4096 (MiB)",
                self.thumbnails.memory_mb
            ));
        }
        if self.share.max_links == 0 {
            p.push("share.max_links = 0: must be at least 1".into());
        }
        if self.share.max_per_user == 0 {
            p.push("share.max_per_user = 0: must be at least 1".into());
        }
        if self.share.lifetime_secs == 0 {
            p.push("share.lifetime_secs = 0: must be at least 1".into());
        }
        if self.sessions.max_online == 0 {
            p.push("sessions.max_online = 0: must be at least 1".into());
        }
        if self.sessions.idle_timeout_secs == 0 {
            p.push("sessions.idle_timeout_secs = 0: must be at least 1".into());
        }
        if self.sessions.max_per_user == 0 {
            p.push("sessions.max_per_user = 0: must be at least 1".into());
        }
        if self.scan.batch_size == 0 || self.scan.batch_size > 100_000 {
            p.push(format!(
                "scan.batch_size = {}: must be between 1 and 100000",
                self.scan.batch_size
            ));
        }
        if !(self.scan.max_delete_share > 0.0 && self.scan.max_delete_share <= 1.0) {
            p.push(format!(
                "scan.max_delete_share = {}: must be above 0 and at most 1 (0.5 = half a library)",
                self.scan.max_delete_share
            ));
        }
        if self.scan.max_delete_count == 0 {
            p.push("scan.max_delete_count = 0: must be at least 1".into());
        }
        if !(10..=60_000).contains(&self.watch.debounce_ms) {
            p.push(format!(
                "watch.debounce_ms = {}: must be between 10 and 60000",
                self.watch.debounce_ms
            ));
        }
        if self.watch.fallback_rescan_secs == 0 {
            p.push("watch.fallback_rescan_secs = 0: must be at least 1".into());
        }
        if self.watch.offline_check_secs == 0 {
            p.push("watch.offline_check_secs = 0: must be at least 1".into());
        }
        if self.upload.max_file_bytes == 0 || self.upload.max_thumb_bytes == 0 {
            p.push("upload.max_file_bytes and upload.max_thumb_bytes must be at least 1".into());
        }
        if self.upload.stale_after_hours == 0 {
            p.push("upload.stale_after_hours = 0: must be at least 1".into());
        }
        if self.trash.retention_days == 0 || self.trash.retention_days > 36_500 {
            p.push(format!(
                "trash.retention_days = {}: must be between 1 and 36500",
                self.trash.retention_days
            ));
        }
    }

    /// `validate`: the login limiter and backups.
    fn check_login_and_backup(&self, p: &mut Vec<String>) {
        if self.login.max_failures == 0 || self.login.window_secs == 0 {
            p.push("login.max_failures and login.window_secs must be at least 1".into());
        }
        if self.login.max_pending_checks == 0 || self.login.max_pending_checks > 1000 {
            p.push(format!(
                "login.max_pending_checks = {}: must be between 1 and 1000",
                self.login.max_pending_checks
            ));
        }
        if self.login.window_secs > 86_400 {
            p.push(format!(
                "login.window_secs = {}: at most 86400 (a refusal must end within a day)",
                self.login.window_secs
            ));
        }
        if let Some(d) = &self.backup.dir {
            if !d.is_absolute() {
                p.push(format!("backup.dir = {d:?}: must be an absolute path"));
            }
        }
        if self.backup.keep == 0 || self.backup.keep > 1000 {
            p.push(format!(
                "backup.keep = {}: must be between 1 and 1000",
                self.backup.keep
            ));
        }
    }

    /// `validate`: the HTTP connection limits and timeouts.
    fn check_http(&self, p: &mut Vec<String>) {
        let h = &self.http;
        if !(1..=3600).contains(&h.header_read_timeout_secs) {
            p.push(format!(
                "http.header_read_timeout_secs = {}: must be between 1 and 3600",
                h.header_read_timeout_secs
            ));
        }
        if !(1..=86_400).contains(&h.keep_alive_timeout_secs) {
            p.push(format!(
                "http.keep_alive_timeout_secs = {}: must be between 1 and 86400",
                h.keep_alive_timeout_secs
            ));
        }
        if h.max_connections == 0 || h.max_connections_per_address == 0 {
            p.push(
                "http.max_connections and http.max_connections_per_address must be at least 1"
                    .into(),
            );
        }
        if h.max_connections_per_address > h.max_connections {
            p.push(format!(
                "http.max_connections_per_address = {} is above http.max_connections = {}",
                h.max_connections_per_address, h.max_connections
            ));
        }
    }

    /// `validate`: the libraries: absolute, no `..`, valid user names, no path twice.
    fn check_libraries(&self, p: &mut Vec<String>) {
        for (i, lib) in self.libraries.iter().enumerate() {
            let at = format!("library[{i}] (path = {:?})", lib.path);
            if !lib.path.is_absolute() {
                p.push(format!("{at}: path must be absolute"));
            }
            if lib
                .path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                p.push(format!("{at}: path must not contain '..'"));
            }
            for u in &lib.users {
                if let Err(e) = validate_user_name(u) {
                    p.push(format!("{at}: user {u:?}: {e}"));
                }
            }
            for (j, other) in self.libraries.iter().enumerate().take(i) {
                if normalize(&other.path) == normalize(&lib.path) {
                    p.push(format!("{at}: same path as library[{j}]"));
                }
            }
        }
    }

    /// Where backups go: `backup.dir`, else `.isync/backups` on the first
    /// configured library's disk, else `<data_dir>/backups`.
    pub fn backup_dir(&self) -> PathBuf {
        if let Some(d) = &self.backup.dir {
            return d.clone();
        }
        match self.libraries.first() {
            Some(l) => l.path.join(".isync").join("backups"),
            None => self.data_dir.join("backups"),
        }
    }

    pub(crate) fn default_user_path(&self) -> PathBuf {
        self.default_user_path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("users"))
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("isync.db")
    }

    /// Free bytes the data dir's disk keeps for the database and the logs
    /// (the SD card on the appliance), `storage.data_min_free_bytes`: below
    /// it the status line and `/api/v1/info` say the card is nearly full.
    /// Uploads onto that disk stop earlier where `upload.min_free_bytes` is
    /// larger (`upload::space::Reserve::for_dir`), each refusal naming it.
    pub(crate) fn data_reserve(&self) -> u64 {
        self.storage.data_min_free_bytes
    }

    pub fn thumb_dir(&self) -> PathBuf {
        self.data_dir.join("thumbs")
    }

    pub(crate) fn listen_addr(&self) -> SocketAddr {
        self.listen.parse().expect("validated listen address")
    }

    /// The effective configuration as TOML (for `check-config`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print: {e}"))
    }
}

/// A user name: 1–64 characters, no control characters, no leading/trailing
/// spaces. Names compare case-insensitively (spec §4).
pub(crate) fn validate_user_name(name: &str) -> Result<(), String> {
    let n = name.chars().count();
    if n == 0 || n > 64 {
        return Err("must be 1 to 64 characters".into());
    }
    if name.chars().any(|c| c.is_control()) {
        return Err("must not contain control characters".into());
    }
    if name.trim() != name {
        return Err("must not start or end with spaces".into());
    }
    Ok(())
}

/// Lexically normalises a path (drops `.` and trailing slashes).
pub(crate) fn normalize(p: &Path) -> PathBuf {
    p.components().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(Config::default().validate().is_empty());
        let cfg = Config::parse("").unwrap();
        assert_eq!(cfg.listen, "0.0.0.0:5000");
        assert_eq!(cfg.share.lifetime_secs, 1800);
        assert_eq!(cfg.sessions.max_online, 100);
        assert_eq!(
            cfg.default_user_path(),
            PathBuf::from("/var/lib/isync/users")
        );
    }

    #[test]
    fn full_example_parses() {
        let text = r#"
listen = "127.0.0.1:5001"
data_dir = "/tmp/isync"
default_user_path = "/tmp/isync/u"
[share]
max_links = 10
max_per_user = 4
lifetime_secs = 60
[sessions]
max_online = 5
idle_timeout_secs = 30
[[library]]
path = "/srv/media/photos"
users = ["alice", "bob"]
merge = false
[[library]]
path = "/srv/media/video"
"#;
        let cfg = Config::parse(text).unwrap();
        assert_eq!(cfg.libraries.len(), 2);
        assert!(!cfg.libraries[0].merge);
        assert!(cfg.libraries[1].merge);
        assert_eq!(cfg.libraries[0].users, vec!["alice", "bob"]);
        assert_eq!(cfg.share.max_links, 10);
        assert_eq!(cfg.share.max_per_user, 4);
    }

    #[test]
    fn example_file_parses() {
        let text = include_str!("../isync.example.toml");
        let cfg = Config::parse(text).unwrap();
        assert_eq!(cfg.libraries.len(), 1);
        // That it documents every key, and no other, is checked against
        // these structs by tests/it/cli.rs
        // `the_example_config_is_valid_and_documents_every_key`.
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Config::parse("lisen = \"0.0.0.0:1\"").unwrap_err();
        assert!(err[0].contains("lisen"), "{err:?}");
        let err = Config::parse("[share]\nmax_link = 3").unwrap_err();
        assert!(err[0].contains("max_link"), "{err:?}");
    }

    #[test]
    fn unknown_keys_do_not_hide_other_problems() {
        let err =
            Config::parse("lisen = 1\nlisten = \"nope\"\n[[library]]\npath = \"x\"\nuser = []\n")
                .unwrap_err();
        let all = err.join("\n");
        assert!(all.contains("`lisen`"), "{all}");
        assert!(
            all.contains("`library.0.user`") || all.contains("user"),
            "{all}"
        );
        assert!(all.contains("listen"), "{all}");
        assert!(all.contains("must be absolute"), "{all}");
    }

    #[test]
    fn every_problem_is_listed() {
        let text = r#"
listen = "nope"
data_dir = "relative"
[share]
max_links = 0
max_per_user = 0
[[library]]
path = "photos"
users = [""]
[[library]]
path = "/a/../b"
"#;
        let err = Config::parse(text).unwrap_err();
        let all = err.join("\n");
        assert!(all.contains("listen"), "{all}");
        assert!(all.contains("data_dir"), "{all}");
        assert!(all.contains("max_links"), "{all}");
        assert!(all.contains("share.max_per_user"), "{all}");
        assert!(all.contains("must be absolute"), "{all}");
        assert!(all.contains("1 to 64"), "{all}");
        assert!(all.contains("'..'"), "{all}");
        assert_eq!(err.len(), 7, "{all}");
    }

    #[test]
    fn duplicate_library_paths_are_rejected() {
        let text = "[[library]]\npath = \"/a/b\"\n[[library]]\npath = \"/a/b/\"\n";
        let err = Config::parse(text).unwrap_err();
        assert!(err.join("").contains("same path"), "{err:?}");
    }
}
