//! The real `isync` binary as a subprocess, on a data dir that outlives it:
//! started, killed with SIGKILL (`kill -9`) or left to abort at a failpoint
//! (`ISYNC_FAILPOINT`, debug builds), and started again. Its log (stderr,
//! `LEVEL target: message` lines) is kept for the tests to read.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// How long [`Process::wait_logged`] waits before failing (generous: two
/// shared cores, debug build).
pub const LOG_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

pub struct Process {
    /// Dropped after the process is killed and before the folder goes
    /// (a file system mounted inside it, say).
    guards: Vec<Box<dyn std::any::Any>>,
    pub dir: tempfile::TempDir,
    lib: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    pub base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// A data dir and an empty library `<dir>/lib` of `users` (each an
    /// `uploader`, with [`super::PASSWORD`]), configured with `extra` TOML
    /// lines (top-level keys and sections, placed before the library).
    pub fn new(users: &[&str], extra: &str) -> Process {
        let dir = tempfile::Builder::new()
            .prefix("isync-proc-")
            .tempdir()
            .unwrap();
        let lib = dir.path().join("lib");
        std::fs::create_dir_all(&lib).unwrap();
        Self::new_in(dir, &lib, users, extra)
    }

    /// [`Process::new`] in a given folder, with the library at `lib`.
    pub fn new_in(dir: tempfile::TempDir, lib: &Path, users: &[&str], extra: &str) -> Process {
        let lib = lib.to_path_buf();
        let config = dir.path().join("isync.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n{extra}\n\n[[library]]\npath = {lib:?}\n\
                 users = {users:?}\n",
                dir.path().join("data")
            ),
        )
        .unwrap();
        let p = Process {
            guards: Vec::new(),
            dir,
            lib,
            config,
            child: None,
            base: String::new(),
            log: Default::default(),
        };
        for u in users {
            p.add_user(u);
        }
        p
    }

    /// Keeps `guard` until the process is gone, and drops it before the
    /// folder is removed.
    pub fn hold(&mut self, guard: impl std::any::Any) {
        self.guards.push(Box::new(guard));
    }

    pub fn add_user(&self, name: &str) {
        let mut add = self
            .command()
            .args(["user", "add", name, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        writeln!(add.stdin.take().unwrap(), "{}", super::PASSWORD).unwrap();
        assert!(add.wait().unwrap().success(), "user add {name}");
    }

    fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_isync"));
        c.arg("--config")
            .arg(&self.config)
            .env_remove("JOURNAL_STREAM")
            .env_remove("ISYNC_DATA_DIR")
            .env_remove("ISYNC_FAILPOINT");
        c
    }

    /// Runs the command line `isync --config <this config> ARGS` (beside
    /// the server, when one runs) and waits for it.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    pub fn config(&self) -> PathBuf {
        self.config.clone()
    }

    pub fn lib(&self) -> PathBuf {
        self.lib.clone()
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `isync serve` with `env` (e.g. `ISYNC_FAILPOINT`); returns once it
    /// accepts requests (the log names the bound address).
    pub fn start(&mut self, env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "already running");
        let mut c = self.command();
        c.arg("serve")
            .env("ISYNC_LOG", "info")
            .envs(env.iter().copied())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let addr = loop {
            line.clear();
            assert!(err.read_line(&mut line).unwrap() > 0, "isync serve exited");
            self.log.lock().unwrap().push(line.trim_end().to_string());
            if let Some(a) = line.split("listening on ").nth(1) {
                break a.trim().to_string();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        let log = self.log.clone();
        std::thread::spawn(move || {
            for l in err.lines() {
                match l {
                    Ok(l) => log.lock().unwrap().push(l),
                    Err(_) => break,
                }
            }
        });
        self.base = format!("http://{addr}");
        self.child = Some(child);
    }

    /// `kill -9`: no shutdown, no flush, the page cache keeps what was
    /// written (as after a crash, not a power cut).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to end by itself (an abort at a failpoint);
    /// whether it was killed by a signal.
    pub fn wait_died(&mut self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        let st = self.child.take().expect("running").wait().unwrap();
        st.signal().is_some()
    }

    /// The log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The log lines so far that contain `needle`.
    pub fn logged(&self, needle: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// Waits until `needle` has been logged `times` times (polling the
    /// log; fails after [`LOG_WAIT`]); returns those lines.
    pub async fn wait_logged(&self, needle: &str, times: usize) -> Vec<String> {
        let start = std::time::Instant::now();
        loop {
            let hits = self.logged(needle);
            if hits.len() >= times {
                return hits;
            }
            assert!(
                self.child.is_some() && start.elapsed() < LOG_WAIT,
                "{needle:?} not logged {times} times within {LOG_WAIT:?}; the log:\n{}",
                self.log().join("\n")
            );
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// A logged-in client.
    pub async fn login(&self, name: &str) -> super::Api {
        let api = super::Api::new(&self.base);
        let v = api
            .get_json(
                "/login.icc",
                serde_json::json!({"userName": name, "password": super::PASSWORD}),
            )
            .await;
        assert_eq!(v["code"], 0, "{v}");
        api
    }

    /// Runs `f` on the database, read-only, beside the running server
    /// (WAL: a consistent snapshot).
    pub fn db_read<T>(&self, f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>) -> T {
        let c = rusqlite::Connection::open_with_flags(
            self.data().join("isync.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        f(&c).unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
        self.guards.clear();
    }
}
