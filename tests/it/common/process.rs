//! The real `isync` binary as a subprocess — the one place the tests start
//! it, wait for it and end it. [`Launch`] says how (configuration,
//! arguments, environment, a soft descriptor limit, a wrapping command,
//! what line means ready) and either runs a command to its end
//! ([`Launch::output`]) or starts a server ([`Launch::start`], a
//! [`Running`] child whose output is kept as [`Lines`], killed on drop).
//! [`Process`] is a server on a data dir that outlives it: started, killed
//! with SIGKILL (`kill -9`), stopped with SIGTERM or left to abort at a
//! failpoint (`ISYNC_FAILPOINT`, debug builds), and started again; its log
//! (stderr, `LEVEL target: message` lines) is kept across the restarts.

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long [`Process::wait_logged`] waits before failing (generous: two
/// shared cores, debug build).
pub const LOG_WAIT: Duration = Duration::from_secs(30);

/// How long [`Launch::start`] waits for the ready line by default (a
/// safety net, not a measurement: a debug build recovering a journal on
/// two shared cores).
pub const READY_WAIT: Duration = Duration::from_secs(600);

/// The variables of isync (and of the tests' wrappers) no launch inherits
/// from the test's own environment: each test sets what it means.
const SCRUBBED: [&str; 5] = [
    "JOURNAL_STREAM",
    "ISYNC_DATA_DIR",
    "ISYNC_FAILPOINT",
    "ISYNC_LOG",
    "CONF",
];

/// The lines a child wrote to one of its streams, as they arrive; waited
/// on with a deadline. May be shared by the children of a restarted
/// server ([`Launch::log_into`]).
#[derive(Default)]
pub struct Lines {
    state: Mutex<LinesState>,
    more: Condvar,
}

#[derive(Default)]
struct LinesState {
    lines: Vec<String>,
    /// Streams still being read into these lines (0: nothing more comes).
    open: usize,
}

impl Lines {
    /// Reads `from` to its end into these lines, on a thread of its own
    /// (so the child never blocks on a full pipe).
    fn follow(self: &Arc<Self>, from: impl std::io::Read + Send + 'static) {
        self.state.lock().unwrap().open += 1;
        let sink = Arc::clone(self);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(from).lines() {
                let Ok(line) = line else { break };
                sink.state.lock().unwrap().lines.push(line);
                sink.more.notify_all();
            }
            sink.state.lock().unwrap().open -= 1;
            sink.more.notify_all();
        });
    }

    pub fn len(&self) -> usize {
        self.state.lock().unwrap().lines.len()
    }

    /// Every line so far.
    pub fn all(&self) -> Vec<String> {
        self.state.lock().unwrap().lines.clone()
    }

    /// Every line so far, one text.
    pub fn text(&self) -> String {
        self.all().join("\n")
    }

    /// How many lines from index `from` on pass `pred`.
    pub fn count(&self, from: usize, pred: impl Fn(&str) -> bool) -> usize {
        let st = self.state.lock().unwrap();
        st.lines.iter().skip(from).filter(|l| pred(l)).count()
    }

    /// Waits for a line from index `from` on that passes `pred`; `None`
    /// once the stream ended without one. Fails after `within`.
    pub fn find(
        &self,
        from: usize,
        within: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        self.seek(from, within, pred)
            .unwrap_or_else(|()| panic!("no such line within {within:?}:\n{}", self.text()))
    }

    /// [`Lines::find`] for a line that must come: fails (naming `what`)
    /// when the stream ends without it or after `within`.
    pub fn wait_for(
        &self,
        from: usize,
        what: &str,
        within: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        match self.seek(from, within, pred) {
            Ok(Some(line)) => line,
            Ok(None) => panic!("no log line for {what}: the process ended"),
            Err(()) => panic!("no log line for {what} within {within:?}"),
        }
    }

    /// The line, `Ok(None)` when the stream ended without it, `Err` when
    /// `within` passed first.
    fn seek(
        &self,
        from: usize,
        within: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<Option<String>, ()> {
        let deadline = Instant::now() + within;
        let mut st = self.state.lock().unwrap();
        loop {
            if let Some(l) = st.lines.iter().skip(from).find(|l| pred(l)) {
                return Ok(Some(l.clone()));
            }
            if st.open == 0 {
                return Ok(None);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(());
            }
            st = self.more.wait_timeout(st, left).unwrap().0;
        }
    }
}

/// How to run the `isync` binary: built up, then [`Launch::output`] or
/// [`Launch::start`].
#[derive(Default)]
pub struct Launch {
    /// A command the binary runs under, as its last arguments.
    under: Option<Command>,
    soft_nofile: Option<u64>,
    config: Option<PathBuf>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin: Vec<u8>,
    close_stdout: bool,
    /// The stream (`true`: stdout) and the text that mark it ready.
    ready: Option<(bool, String)>,
    log_into: Option<Arc<Lines>>,
}

impl Launch {
    /// `isync` with no arguments, none of [`SCRUBBED`] in its environment.
    pub fn new() -> Launch {
        Launch::default()
    }

    /// `isync --config <path> serve`, ready once it logs the address it
    /// listens on ([`Running::ready`] is that address).
    pub fn serve(config: &Path) -> Launch {
        Launch::new()
            .config(config)
            .arg("serve")
            .ready_on_stderr("listening on ")
    }

    /// Runs the binary as the last arguments of `cmd` (a wrapper that
    /// ends by `exec`ing them); `cmd`'s own environment is kept.
    pub fn under(mut self, cmd: Command) -> Launch {
        self.under = Some(cmd);
        self
    }

    /// `--config <path>`, before the other arguments.
    pub fn config(mut self, path: &Path) -> Launch {
        self.config = Some(path.to_path_buf());
        self
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Launch {
        self.args.push(a.into());
        self
    }

    pub fn args<A: Into<OsString>>(mut self, args: impl IntoIterator<Item = A>) -> Launch {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Launch {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn envs(mut self, env: &[(&str, &str)]) -> Launch {
        for (k, v) in env {
            self = self.env(*k, *v);
        }
        self
    }

    /// The soft limit of open descriptors the binary starts with (the
    /// hard one unchanged), as systemd sets it without `LimitNOFILE=`.
    pub fn soft_nofile(mut self, n: u64) -> Launch {
        self.soft_nofile = Some(n);
        self
    }

    /// What [`Launch::output`] writes to the binary's stdin.
    pub fn stdin(mut self, text: &str) -> Launch {
        self.stdin = text.as_bytes().to_vec();
        self
    }

    /// Closes the reading end of stdout at once (`isync … | head -0`).
    pub fn close_stdout(mut self) -> Launch {
        self.close_stdout = true;
        self
    }

    /// [`Launch::start`] returns once a stderr line contains `marker`.
    pub fn ready_on_stderr(mut self, marker: &str) -> Launch {
        self.ready = Some((false, marker.to_string()));
        self
    }

    /// [`Launch::start`] returns once a stdout line contains `marker`.
    pub fn ready_on_stdout(mut self, marker: &str) -> Launch {
        self.ready = Some((true, marker.to_string()));
        self
    }

    /// Appends the stderr lines to `log` (a log kept across restarts).
    pub fn log_into(mut self, log: Arc<Lines>) -> Launch {
        self.log_into = Some(log);
        self
    }

    fn command(&self) -> Command {
        let mut argv: Vec<OsString> = Vec::new();
        if let Some(n) = self.soft_nofile {
            // `ulimit` in a shell that then `exec`s the binary: the limit
            // is set before the binary's first instruction.
            let script = format!("ulimit -Sn {n} && exec \"$@\"");
            argv.extend(["sh", "-c", &script, "sh"].map(OsString::from));
        }
        argv.push(env!("CARGO_BIN_EXE_isync").into());
        let mut c = match &self.under {
            Some(wrapper) => clone(wrapper),
            None => Command::new(argv.remove(0)),
        };
        c.args(&argv);
        if let Some(config) = &self.config {
            c.arg("--config").arg(config);
        }
        c.args(&self.args);
        for k in SCRUBBED {
            c.env_remove(k);
        }
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Runs the command to its end with [`Launch::stdin`] as input;
    /// returns its exit status and output.
    pub fn output(self) -> Output {
        let mut child = self
            .command()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run isync");
        // The process may exit before reading its input (a usage error): a
        // broken pipe here is not the test's concern, its exit code is.
        let _ = child.stdin.take().unwrap().write_all(&self.stdin);
        child.wait_with_output().unwrap()
    }

    /// Starts the binary, its output read into [`Running::stdout`] and
    /// [`Running::stderr`]; returns once the ready line came (fails if the
    /// process ended first), at once when none was asked for.
    pub fn start(self) -> Running {
        let mut child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start isync");
        let stdout = Arc::new(Lines::default());
        let out = child.stdout.take().unwrap();
        if self.close_stdout {
            drop(out);
        } else {
            stdout.follow(out);
        }
        let stderr = self.log_into.clone().unwrap_or_default();
        let from = stderr.len();
        stderr.follow(child.stderr.take().unwrap());
        let mut running = Running {
            child: Some(child),
            stdout,
            stderr,
            ready: String::new(),
        };
        if let Some((on_stdout, marker)) = &self.ready {
            let (lines, name) = match on_stdout {
                true => (&running.stdout, "stdout"),
                false => (&running.stderr, "stderr"),
            };
            let skip = if *on_stdout { 0 } else { from };
            let line = lines
                .find(skip, READY_WAIT, |l| l.contains(marker.as_str()))
                .unwrap_or_else(|| {
                    panic!(
                        "isync ended before {marker:?} on its {name}; stderr:\n{}",
                        running.stderr.text()
                    )
                });
            running.ready = line
                .split(marker.as_str())
                .nth(1)
                .unwrap()
                .trim()
                .to_string();
        }
        running
    }
}

/// A copy of `cmd`: its program, arguments and environment.
fn clone(cmd: &Command) -> Command {
    let mut c = Command::new(cmd.get_program());
    c.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c
}

/// A started binary: killed and reaped when dropped, also when the test
/// panics (then its stderr is shown).
pub struct Running {
    child: Option<Child>,
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
    ready: String,
}

impl Running {
    /// What followed the ready marker on its line (the address or URL).
    pub fn ready(&self) -> &str {
        &self.ready
    }

    pub fn stdout(&self) -> &Lines {
        &self.stdout
    }

    pub fn stderr(&self) -> &Lines {
        &self.stderr
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Whether it ended by itself, without waiting.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().unwrap().try_wait().unwrap()
    }

    /// Waits for it to end by itself.
    pub fn wait(mut self) -> ExitStatus {
        self.child.take().unwrap().wait().unwrap()
    }

    /// SIGTERM, as systemd stops it; waits for it to end.
    pub fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let pid = rustix::process::Pid::from_child(&child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        child.wait().unwrap()
    }

    /// SIGKILL (`kill -9`, what the kernel's OOM killer does): no
    /// shutdown, no flush; waits for it to end.
    pub fn kill(mut self) {
        self.end();
    }

    fn end(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let ran = self.child.is_some();
        self.end();
        if ran && std::thread::panicking() {
            eprintln!("isync's stderr:\n{}", self.stderr.text());
        }
    }
}

/// A server on a data dir and library of its own that outlive it, for
/// the tests of what survives a restart, a crash or an abort.
pub struct Process {
    /// Dropped after the process is killed and before the folder goes
    /// (a file system mounted inside it, say).
    guards: Vec<Box<dyn std::any::Any>>,
    pub dir: tempfile::TempDir,
    lib: PathBuf,
    config: PathBuf,
    server: Option<Running>,
    pub base: String,
    log: Arc<Lines>,
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
            server: None,
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
        let o = Launch::new()
            .config(&self.config)
            .args(["user", "add", name, "--password-stdin"])
            .stdin(&format!("{}\n", super::PASSWORD))
            .output();
        assert!(o.status.success(), "user add {name}");
    }

    /// Runs the command line `isync --config <this config> ARGS` (beside
    /// the server, when one runs) and waits for it.
    pub fn cli(&self, args: &[&str]) -> Output {
        Launch::new().config(&self.config).args(args).output()
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
        self.server.as_ref().expect("running").pid()
    }

    /// `isync serve` (logging at `info`) with `env` (e.g. `ISYNC_FAILPOINT`,
    /// or `ISYNC_LOG`); returns once it accepts requests (the log names the
    /// bound address).
    pub fn start(&mut self, env: &[(&str, &str)]) {
        assert!(self.server.is_none(), "already running");
        let server = Launch::serve(&self.config)
            .env("ISYNC_LOG", "info")
            .envs(env)
            .log_into(Arc::clone(&self.log))
            .start();
        self.base = format!("http://{}", server.ready());
        self.server = Some(server);
    }

    /// `kill -9`: no shutdown, no flush, the page cache keeps what was
    /// written (as after a crash, not a power cut).
    pub fn kill9(&mut self) {
        if let Some(s) = self.server.take() {
            s.kill();
        }
    }

    /// SIGTERM, as systemd stops it; waits for the process to end.
    pub fn stop(&mut self) -> ExitStatus {
        self.server.take().expect("running").stop()
    }

    /// Waits for the process to end by itself (an abort at a failpoint);
    /// whether it was killed by a signal.
    pub fn wait_died(&mut self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        let st = self.server.take().expect("running").wait();
        st.signal().is_some()
    }

    /// Its log (stderr) since the first start, restarts included.
    pub fn lines(&self) -> &Lines {
        &self.log
    }

    /// The log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.all()
    }

    /// The log lines so far that contain `needle`.
    pub fn logged(&self, needle: &str) -> Vec<String> {
        let mut all = self.log.all();
        all.retain(|l| l.contains(needle));
        all
    }

    /// Waits until `needle` has been logged `times` times (polling the
    /// log; fails after [`LOG_WAIT`]); returns those lines.
    pub async fn wait_logged(&self, needle: &str, times: usize) -> Vec<String> {
        let start = Instant::now();
        loop {
            let hits = self.logged(needle);
            if hits.len() >= times {
                return hits;
            }
            assert!(
                self.server.is_some() && start.elapsed() < LOG_WAIT,
                "{needle:?} not logged {times} times within {LOG_WAIT:?}; the log:\n{}",
                self.log().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
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
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        f(&c).unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
        self.guards.clear();
    }
}
