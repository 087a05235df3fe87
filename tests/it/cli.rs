//! The `isync` command line as other tools drive it (issue 2 "Command
//! line"): `--version`, `check-config`, `user add … --password-stdin` and
//! `scan [--path]`, with their exit codes and output.

use crate::common;

use common::process::{Launch, Running};
use common::*;
use isync::config::Config;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    /// A temp dir with `config.toml` naming `<dir>/data` and one library
    /// `<dir>/media/photos` granted to alice.
    fn new() -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let cli = Cli { dir };
        std::fs::create_dir_all(cli.photos()).unwrap();
        cli.write_config(&format!(
            "listen = \"127.0.0.1:5999\"\ndata_dir = {:?}\n\n[sessions]\nmax_online = 7\n\n\
             [[library]]\npath = {:?}\nusers = [\"alice\"]\n",
            cli.path("data"),
            cli.photos()
        ));
        cli
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn photos(&self) -> PathBuf {
        self.path("media/photos")
    }

    fn config(&self) -> PathBuf {
        self.path("config.toml")
    }

    fn write_config(&self, text: &str) {
        std::fs::write(self.config(), text).unwrap();
    }

    fn run(&self, args: &[&str], stdin: &str) -> Output {
        run_with(&self.config(), args, stdin)
    }

    fn db(&self) -> isync::db::Db {
        isync::db::Db::open(&self.path("data/isync.db")).unwrap()
    }
}

fn run_with(config: &Path, args: &[&str], stdin: &str) -> Output {
    run(isync(config, args), stdin)
}

fn run(cmd: Launch, stdin: &str) -> Output {
    run_env(cmd, &[], stdin)
}

/// Runs `cmd` with none of isync's variables from the test's environment,
/// but `env`.
fn run_env(cmd: Launch, env: &[(&str, &str)], stdin: &str) -> Output {
    cmd.envs(env).stdin(stdin).output()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

/// The number before `word` in a scan summary ("3 added").
fn count(summary: &str, word: &str) -> usize {
    let words: Vec<&str> = summary.split_whitespace().collect();
    let i = words
        .iter()
        .position(|w| w.trim_end_matches([',', ';']) == word)
        .unwrap_or_else(|| panic!("no {word:?} in {summary}"));
    words[i - 1]
        .parse()
        .unwrap_or_else(|_| panic!("no count before {word:?} in {summary}"))
}

#[test]
fn version() {
    let o = run(Launch::new().arg("--version"), "");
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        text(&o.stdout).contains(env!("CARGO_PKG_VERSION")),
        "{}",
        show(&o)
    );
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let cli = Cli::new();
    let o = cli.run(&["check-config"], "");
    assert!(o.status.success(), "{}", show(&o));
    let printed = Config::parse(&text(&o.stdout)).expect("check-config prints valid TOML");
    let file = Config::parse(&std::fs::read_to_string(cli.config()).unwrap()).unwrap();
    assert_eq!(printed, file);
    // Defaults are filled in.
    assert_eq!(printed.sessions.max_online, 7);
    assert_eq!(printed.sessions.idle_timeout_secs, 3600);
    assert_eq!(printed.share.lifetime_secs, 1800);
    assert!(printed.libraries[0].merge);
}

/// The example file with its commented-out settings (`# key = value`
/// where the rest of the line is a TOML value) made live, and the keys
/// uncommented.
fn uncomment(text: &str) -> (String, Vec<String>) {
    let mut keys = Vec::new();
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let Some(rest) = l.strip_prefix('#').map(str::trim_start) else {
                return l.to_string();
            };
            let Some((k, v)) = rest.split_once('=') else {
                return l.to_string();
            };
            let k = k.trim();
            let bare = !k.is_empty()
                && k.starts_with(|c: char| c.is_ascii_alphabetic())
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if bare && toml::from_str::<toml::Table>(&format!("{k} = {}", v.trim())).is_ok() {
                keys.push(k.to_string());
                rest.to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    (lines.join("\n") + "\n", keys)
}

/// Dotted key paths of a TOML or JSON tree; arrays of tables contribute
/// their tables' keys under the array's name (`library.path`).
fn dotted(v: &serde_json::Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
    let serde_json::Value::Object(m) = v else {
        return;
    };
    for (k, v) in m {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            serde_json::Value::Object(_) => dotted(v, &key, out),
            serde_json::Value::Array(a) if a.iter().any(|x| x.is_object()) => {
                a.iter().for_each(|x| dotted(x, &key, out))
            }
            _ => {
                out.insert(key);
            }
        }
    }
}

/// Every key of the configuration, as dotted paths: the `Config` structs
/// serialised with one library (optional keys appear as `null`).
fn config_keys() -> std::collections::BTreeSet<String> {
    let cfg = Config {
        libraries: vec![isync::config::LibraryConfig {
            path: "/srv/media/photos".into(),
            users: vec!["alice".into()],
            merge: true,
        }],
        ..Config::default()
    };
    let mut keys = std::collections::BTreeSet::new();
    dotted(&serde_json::to_value(&cfg).unwrap(), "", &mut keys);
    keys
}

/// README "Configuration": every key is documented in
/// `isync.example.toml`. The example is parsed — its commented-out keys
/// (optional ones such as `default_user_path` and `backup.dir`) made live —
/// and its set of dotted keys must equal the config structs': a key
/// mentioned only in prose, in another section, or misspelt does not count,
/// and a documented key the structs lack is as wrong as a missing one. Both
/// forms of the file are valid configurations for the real binary.
#[test]
fn the_example_config_is_valid_and_documents_every_key() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("isync.example.toml");
    let o = run_with(&example, &["check-config"], "");
    assert!(o.status.success(), "{}", show(&o));
    let text = std::fs::read_to_string(&example).unwrap();
    let (live, uncommented) = uncomment(&text);
    for k in ["default_user_path", "dir"] {
        assert!(
            uncommented.contains(&k.to_string()),
            "{k} not found commented out: {uncommented:?}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let live_file = dir.path().join("example-uncommented.toml");
    std::fs::write(&live_file, &live).unwrap();
    let o = run_with(&live_file, &["check-config"], "");
    assert!(
        o.status.success(),
        "the commented-out settings are not valid ones: {}",
        show(&o)
    );

    let parsed: serde_json::Value =
        serde_json::to_value(toml::from_str::<toml::Table>(&live).unwrap()).unwrap();
    let mut documented = std::collections::BTreeSet::new();
    dotted(&parsed, "", &mut documented);
    let known = config_keys();
    let undocumented: Vec<&String> = known.difference(&documented).collect();
    let unknown: Vec<&String> = documented.difference(&known).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "isync.example.toml lacks {undocumented:?} and documents keys isync does not have: \
         {unknown:?}"
    );
    // The comparison sees nested and optional keys.
    for k in [
        "backup.dir",
        "default_user_path",
        "library.merge",
        "watch.debounce_ms",
    ] {
        assert!(known.contains(k), "{k}: {known:?}");
    }
}

/// Asserts exit 2 with every `expected` word on stderr, and the file named.
fn assert_invalid(cli: &Cli, expected: &[&str]) {
    let o = cli.run(&["check-config"], "");
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let err = text(&o.stderr);
    assert!(
        err.contains(&cli.config().display().to_string()),
        "the file is named: {}",
        show(&o)
    );
    for e in expected {
        assert!(err.contains(e), "{e:?} not reported: {}", show(&o));
    }
}

#[test]
fn check_config_lists_every_validation_problem() {
    let cli = Cli::new();
    cli.write_config(
        "listen = \"nope\"\ndata_dir = \"relative/data\"\n\
         [[library]]\npath = \"photos\"\n",
    );
    assert_invalid(&cli, &["listen", "data_dir", "photos"]);
}

#[test]
fn check_config_lists_an_unknown_key_together_with_other_problems() {
    let cli = Cli::new();
    cli.write_config(
        "lisen = \"0.0.0.0:1\"\nlisten = \"nope\"\ndata_dir = \"relative/data\"\n\
         [[library]]\npath = \"photos\"\n",
    );
    assert_invalid(&cli, &["lisen", "\"nope\"", "relative/data", "\"photos\""]);
}

#[test]
fn check_config_rejects_unknown_keys_syntax_errors_and_missing_files() {
    let cli = Cli::new();
    cli.write_config(&format!(
        "data_dir = {:?}\n[sessions]\nmax_onlin = 3\n",
        cli.path("data")
    ));
    assert_invalid(&cli, &["max_onlin"]);
    cli.write_config("listen = \n");
    assert_invalid(&cli, &[]);
    std::fs::remove_file(cli.config()).unwrap();
    assert_invalid(&cli, &[]);
}

fn user_add(cli: &Cli, name: &str, password: &str) -> Output {
    cli.run(
        &["user", "add", name, "--password-stdin"],
        &format!("{password}\n"),
    )
}

fn stored_hash(cli: &Cli, name: &str) -> (i64, String, usize) {
    let db = cli.db();
    db.read(|c| {
        let u = isync::db::users::by_name(c, name)?.expect("user stored");
        let n = isync::db::users::list(c)?.len();
        Ok((u.id.0, u.password_hash, n))
    })
    .unwrap()
}

#[test]
fn user_add_creates_then_resets_a_password() {
    let cli = Cli::new();
    let o = user_add(&cli, "alice", "first pw");
    assert!(o.status.success(), "{}", show(&o));
    assert!(text(&o.stdout).contains("alice"), "{}", show(&o));
    let (id, hash, n) = stored_hash(&cli, "alice");
    assert_eq!(n, 1);
    assert!(!hash.contains("first pw"), "never stored in clear");
    assert!(isync::auth::verify_password("first pw", &hash));
    let all_output = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert!(
        !all_output.contains("first pw"),
        "password echoed: {all_output}"
    );

    // Again, with another spelling of the name: the same user, new password.
    let o = user_add(&cli, "ALICE", "second pw");
    assert!(o.status.success(), "{}", show(&o));
    let (id2, hash2, n) = stored_hash(&cli, "alice");
    assert_eq!((id2, n), (id, 1));
    assert!(isync::auth::verify_password("second pw", &hash2));
    assert!(!isync::auth::verify_password("first pw", &hash2));
}

#[test]
fn user_add_refuses_empty_passwords_and_bad_names() {
    let cli = Cli::new();
    let o = cli.run(&["user", "add", "alice", "--password-stdin"], "");
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let o = user_add(&cli, "", "pw");
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let o = user_add(&cli, " padded ", "pw");
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    // Without --password-stdin: a usage error.
    let o = cli.run(&["user", "add", "alice"], "pw\n");
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    if cli.path("data/isync.db").exists() {
        let n = cli
            .db()
            .read(|c| Ok(isync::db::users::list(c)?.len()))
            .unwrap();
        assert_eq!(n, 0, "nothing created");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_added_on_the_command_line_can_log_in() {
    let cli = Cli::new();
    write_file(&cli.photos().join("a.jpg"), &jpeg(20, 10, 1, None));
    let o = user_add(&cli, "alice", "password one");
    assert!(o.status.success(), "{}", show(&o));
    let o = user_add(&cli, "alice", "password two");
    assert!(o.status.success(), "{}", show(&o));

    let cfg = Config::load(Some(&cli.config())).unwrap();
    let running = common::serve(&cfg).await;
    let api = Api::new(&format!("http://{}", running.addr));
    let login = |pw: &'static str| {
        api.get_json(
            "/login.icc",
            serde_json::json!({"userName": "alice", "password": pw}),
        )
    };
    assert_err(&login("password one").await, BAD_LOGIN);
    assert_eq!(login("password two").await["code"], 0);
    // The library granted in the config is hers.
    assert_eq!(api.file_named("a.jpg").await["type"], 1);
    running.stop().await.unwrap();
}

#[test]
fn scan_prints_a_summary_and_scans_a_subtree_with_path() {
    let cli = Cli::new();
    let p = cli.photos();
    write_file(&p.join("a.jpg"), &jpeg(20, 10, 1, None));
    write_file(&p.join("b.txt"), b"b");
    write_file(&p.join("sub/c.jpg"), &jpeg(20, 10, 2, None));

    let o = cli.run(&["scan"], "");
    assert!(o.status.success(), "{}", show(&o));
    let out = text(&o.stdout);
    assert_eq!(count(&out, "added"), 3, "{out}");
    assert_eq!(count(&out, "removed"), 0, "{out}");
    assert!(out.contains("files/s"), "{out}");

    let o = cli.run(&["scan"], "");
    let out = text(&o.stdout);
    assert_eq!(
        (count(&out, "added"), count(&out, "updated")),
        (0, 0),
        "{out}"
    );

    // --path: only the subtree is looked at.
    write_file(&p.join("sub/d.jpg"), &jpeg(20, 10, 3, None));
    write_file(&p.join("outside_sub.jpg"), &jpeg(20, 10, 4, None));
    std::fs::remove_file(p.join("a.jpg")).unwrap();
    let sub = p.join("sub");
    let o = cli.run(&["scan", "--path", sub.to_str().unwrap()], "");
    assert!(o.status.success(), "{}", show(&o));
    let out = text(&o.stdout);
    assert_eq!(
        (count(&out, "added"), count(&out, "removed")),
        (1, 0),
        "{out}"
    );
    let names = |cli: &Cli| -> Vec<String> {
        let mut v: Vec<String> = cli
            .db()
            .read(|c| {
                let mut st = c.prepare("SELECT name FROM files")?;
                let rows = st.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<Vec<String>, _>>()?)
            })
            .unwrap();
        v.sort();
        v
    };
    assert_eq!(names(&cli), ["a.jpg", "b.txt", "c.jpg", "d.jpg"]);

    // A full scan then catches up.
    let o = cli.run(&["scan"], "");
    let out = text(&o.stdout);
    assert_eq!(
        (count(&out, "added"), count(&out, "removed")),
        (1, 1),
        "{out}"
    );
    assert_eq!(names(&cli), ["b.txt", "c.jpg", "d.jpg", "outside_sub.jpg"]);

    // Paths that are not a known folder are a usage error naming the path.
    for bad in [cli.path("nowhere"), p.join("new_unknown_dir")] {
        if bad.ends_with("new_unknown_dir") {
            std::fs::create_dir(&bad).unwrap();
        }
        let o = cli.run(&["scan", "--path", bad.to_str().unwrap()], "");
        assert_eq!(o.status.code(), Some(2), "{}", show(&o));
        assert!(
            text(&o.stderr).contains(bad.file_name().unwrap().to_str().unwrap()),
            "{}",
            show(&o)
        );
    }
}

#[test]
fn scan_of_an_unplugged_library_removes_nothing() {
    let cli = Cli::new();
    write_file(&cli.photos().join("a.jpg"), &jpeg(20, 10, 1, None));
    write_file(&cli.photos().join("sub/b.jpg"), &jpeg(20, 10, 2, None));
    let o = cli.run(&["scan"], "");
    assert_eq!(count(&text(&o.stdout), "added"), 2, "{}", show(&o));
    std::fs::rename(cli.photos(), cli.path("media/away")).unwrap();
    let o = cli.run(&["scan"], "");
    assert!(o.status.success(), "{}", show(&o));
    let out = text(&o.stdout);
    assert_eq!(count(&out, "removed"), 0, "{out}");
    assert!(out.contains("offline"), "{out}");
    let n = cli
        .db()
        .read(|c| Ok(c.query_row("SELECT count(*) FROM files", [], |r| r.get::<_, i64>(0))?))
        .unwrap();
    assert_eq!(n, 2);
}

/// One password rule (8 to 1024 characters, counted as code points) for
/// every way an account is made or reset on the console; `register` is
/// tests/accounts.rs `one_password_rule_for_registration`.
#[test]
fn one_password_rule_for_every_way_an_account_is_made() {
    let cli = Cli::new();
    let pw = |n: usize| "é".repeat(n);
    // user add: a new account.
    let o = user_add(&cli, "alice", &pw(7));
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(text(&o.stderr).contains("8 to 1024"), "{}", show(&o));
    if cli.path("data/isync.db").exists() {
        let n = cli
            .db()
            .read(|c| Ok(isync::db::users::list(c)?.len()))
            .unwrap();
        assert_eq!(n, 0, "nothing created");
    }
    let o = user_add(&cli, "alice", &pw(8));
    assert!(o.status.success(), "{}", show(&o));
    // user add: a reset.
    let o = user_add(&cli, "alice", &pw(1024));
    assert!(o.status.success(), "{}", show(&o));
    let (_, hash, _) = stored_hash(&cli, "alice");
    assert!(isync::auth::verify_password(&pw(1024), &hash));
    let o = user_add(&cli, "alice", &pw(1025));
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert_eq!(
        stored_hash(&cli, "alice").1,
        hash,
        "a refused reset changed nothing"
    );
    let o = user_add(&cli, "alice", &pw(7));
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert_eq!(stored_hash(&cli, "alice").1, hash);

    // admin init, on two fresh data dirs (one admin each).
    for ok_len in [8, 1024] {
        let cli = Cli::new();
        for bad in [7, 1025] {
            let o = cli.run(&["admin", "init", "boss"], &format!("{}\n", pw(bad)));
            assert_eq!(o.status.code(), Some(2), "{bad}: {}", show(&o));
            assert!(text(&o.stderr).contains("8 to 1024"), "{}", show(&o));
        }
        let o = cli.run(&["admin", "init", "boss"], &format!("{}\n", pw(ok_len)));
        assert!(o.status.success(), "{ok_len}: {}", show(&o));
        let (_, hash, n) = stored_hash(&cli, "boss");
        assert_eq!(n, 1);
        assert!(isync::auth::verify_password(&pw(ok_len), &hash));
    }
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Security issue #12: outside systemd the data dir was made 0755 and the
/// database 0644, so every user of the machine could read the password
/// hashes and grants. Now what the server creates is its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_data_dir_and_what_it_holds_are_private() {
    let (s, _alice) = TestApp::start(|c| {
        // Backups into the data dir (the default without a library disk).
        c.backup.dir = Some(c.data_dir.join("backups"));
    })
    .await;
    let data = s.cfg.data_dir.clone();
    assert_eq!(mode(&data), 0o700);
    for f in [
        "isync.db",
        "isync.db-wal",
        "isync.db-shm",
        "isync.lock",
        "isync.sock",
    ] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    // A backup, made by the running server for the CLI.
    let config = s.dir.path().join("isync.toml");
    std::fs::write(&config, s.cfg.to_toml()).unwrap();
    let o = run_with(&config, &["backup"], "");
    assert!(o.status.success(), "{}", show(&o));
    let backups = data.join("backups");
    assert_eq!(mode(&backups), 0o700);
    let gens: Vec<PathBuf> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(gens.len(), 1, "{gens:?}");
    assert_eq!(mode(&gens[0]), 0o700);
    assert_eq!(mode(&gens[0].join("isync.db")), 0o600);

    // A database left world-readable by an older isync loses those bits
    // (and only those) at the next start.
    let mut s = s;
    s.running.take().unwrap().stop().await.unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(s.cfg.db_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    s.boot().await;
    assert_eq!(mode(&s.cfg.db_path()), 0o640);
}

/// Security issue #12: the control socket read an unbounded line (a local
/// process could grow the server's memory without end) and was made 0600
/// only after `bind`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_socket_is_private_and_reads_a_bounded_request() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixStream;
    let (s, _alice) = TestApp::start(|_| {}).await;
    let data = s.cfg.data_dir.clone();
    let sock = isync::library::control::socket_path(&data);
    assert_eq!(mode(&sock), 0o600);
    // No private bind folder is left behind.
    let left: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".isync.sock"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let before = (s.snapshot().await, s.accounts_snapshot().await, s.tree());

    // 64 MiB without an end of line: the server reads its bound, answers
    // and hangs up, so the rest cannot even be sent.
    let stream = UnixStream::connect(&sock).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sent = std::thread::spawn(move || {
        use std::io::Write;
        let chunk = vec![b'{'; 1 << 20];
        let mut sent = 0usize;
        for _ in 0..64 {
            match writer.write_all(&chunk) {
                Ok(()) => sent += chunk.len(),
                Err(_) => break,
            }
        }
        sent
    });
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply).unwrap();
    let sent = tokio::task::spawn_blocking(move || sent.join().unwrap())
        .await
        .unwrap();
    assert!(sent < 64 << 20, "the server read all {sent} bytes");
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert!(v["output"].as_str().unwrap().contains("longer than"), "{v}");

    // Nothing changed, and the socket still serves the admin CLI.
    assert_eq!(
        (s.snapshot().await, s.accounts_snapshot().await, s.tree()),
        before
    );
    let config = s.dir.path().join("isync.toml");
    std::fs::write(&config, s.cfg.to_toml()).unwrap();
    let o = run_with(&config, &["admin", "user", "list"], "");
    assert!(o.status.success(), "{}", show(&o));
    assert!(text(&o.stdout).contains("alice"), "{}", show(&o));
}

fn isync(config: &Path, args: &[&str]) -> Launch {
    Launch::new().config(config).args(args)
}

/// README "Configuration": `ISYNC_DATA_DIR` overrides `data_dir` — what
/// `check-config` prints and where the database goes — and is validated
/// like it.
#[test]
fn isync_data_dir_overrides_data_dir() {
    let cli = Cli::new();
    write_file(&cli.photos().join("a.jpg"), &jpeg(20, 10, 1, None));
    let elsewhere = cli.path("elsewhere");
    let env = [("ISYNC_DATA_DIR", elsewhere.to_str().unwrap())];
    let o = run_env(isync(&cli.config(), &["check-config"]), &env, "");
    assert!(o.status.success(), "{}", show(&o));
    let printed = Config::parse(&text(&o.stdout)).unwrap();
    assert_eq!(printed.data_dir, elsewhere);

    let o = run_env(isync(&cli.config(), &["scan"]), &env, "");
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(count(&text(&o.stdout), "added"), 1, "{}", show(&o));
    assert!(elsewhere.join("isync.db").is_file());
    assert!(
        !cli.path("data").exists(),
        "the configured data_dir is not used"
    );

    let o = run_env(
        isync(&cli.config(), &["check-config"]),
        &[("ISYNC_DATA_DIR", "relative/data")],
        "",
    );
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(text(&o.stderr).contains("relative/data"), "{}", show(&o));
}

const READY: &str = "isync-test: /etc is private";

/// `unshare … sh -c SCRIPT sh` to be followed by a command: it runs in a
/// private mount namespace whose `/etc` is a tmpfs holding a symlink to
/// each entry of the machine's `/etc` (bind-mounted under `view`, a
/// folder of the test's) but `isync` — so the machine's
/// `/etc/isync/isync.toml`, if any, is out of sight, the dynamic loader
/// and the rest still find their files, and nothing of the machine's is
/// touched — plus `/etc/isync/isync.toml` holding `$CONF` when that is set.
/// [`READY`] is written to stderr before the command starts (`unshare`
/// and `sh` exec: the child's pid is the command's).
fn with_private_etc(view: &Path) -> Launch {
    let script = format!(
        "real=\"$VIEW/etc\"; mkdir -p \"$real\" && mount --bind /etc \"$real\" && \
         mount -t tmpfs tmpfs /etc || exit 97; \
         for e in \"$real\"/* \"$real\"/.[!.]*; do n=\"${{e##*/}}\"; \
         if [ -e \"$e\" ] || [ -L \"$e\" ]; then [ \"$n\" = isync ] || ln -s \"$e\" \"/etc/$n\"; fi; \
         done; \
         if [ -n \"$CONF\" ]; then mkdir /etc/isync && printf '%s' \"$CONF\" > /etc/isync/isync.toml; fi; \
         echo '{READY}' >&2; exec \"$@\""
    );
    let mut cmd = Command::new("unshare");
    cmd.arg("--mount");
    if !rustix::process::geteuid().is_root() {
        cmd.arg("--map-root-user");
    }
    cmd.args(["--propagation", "private", "sh", "-c", &script, "sh"])
        .env("VIEW", view);
    Launch::new().under(cmd)
}

/// `isync ARGS` without `--config` [`with_private_etc`], holding
/// `default_file` as `/etc/isync/isync.toml` when given. `None` (after
/// saying why) where no namespace can be made; a failure under `CI=true`.
fn run_with_private_etc(default_file: Option<&str>, args: &[&str]) -> Option<Output> {
    let view = tempfile::tempdir().unwrap();
    let cmd = with_private_etc(view.path()).args(args);
    let conf = default_file.unwrap_or("");
    let mut o = run_env(cmd, &[("CONF", conf)], "");
    let err = text(&o.stderr);
    let Some(rest) = err.split_once(&format!("{READY}\n")).map(|(_, r)| r) else {
        common::mount::cannot_run(&format!(
            "cannot hide /etc in a mount namespace (unshare): {}",
            show(&o)
        ));
        return None;
    };
    o.stderr = rest.as_bytes().to_vec();
    Some(o)
}

/// README "Configuration" and "Command line": a missing default config
/// file (`/etc/isync/isync.toml`) means the built-in defaults, while that
/// file is read when it exists (and refused, exit 2, when invalid); a
/// missing `--config FILE` is an error (exit 2) naming the file.
#[test]
fn a_missing_default_config_means_defaults_but_a_missing_explicit_one_is_an_error() {
    let Some(o) = run_with_private_etc(None, &["check-config"]) else {
        return;
    };
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(
        Config::parse(&text(&o.stdout)).unwrap(),
        Config::default(),
        "{}",
        show(&o)
    );
    let o = run_with_private_etc(Some("[sessions]\nmax_online = 7\n"), &["check-config"]).unwrap();
    assert!(o.status.success(), "{}", show(&o));
    let printed = Config::parse(&text(&o.stdout)).unwrap();
    assert_eq!(printed.sessions.max_online, 7, "the default file is read");
    let o = run_with_private_etc(Some("lisen = 1\n"), &["check-config"]).unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let err = text(&o.stderr);
    assert!(
        err.contains("/etc/isync/isync.toml") && err.contains("lisen"),
        "{}",
        show(&o)
    );

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    for args in [&["check-config"][..], &["scan"]] {
        let o = run_with(&missing, args, "");
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", show(&o));
        let err = text(&o.stderr);
        assert!(
            err.contains("cannot read config") && err.contains(&missing.display().to_string()),
            "{}",
            show(&o)
        );
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing created"
    );
}

/// README "Command line": exit codes 0 ok, 2 bad usage or configuration,
/// 1 failure at run time — here a data dir that cannot be created (a file
/// is in the way, which stops root too), for every command that needs it,
/// with a message naming it; nothing is created.
#[test]
fn exit_codes_tell_usage_errors_from_failures_at_run_time() {
    let cli = Cli::new();
    for args in [
        &["frobnicate"][..],
        &["scan", "--bogus"],
        &["serve", "--listen", "nonsense"],
        &["user", "add"],
        &["trash", "restore", "not-a-number"],
    ] {
        let o = cli.run(args, "");
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", show(&o));
    }
    assert!(!cli.path("data").exists(), "usage errors create nothing");

    std::fs::write(cli.path("in-the-way"), b"a file").unwrap();
    let data = cli.path("in-the-way/data");
    cli.write_config(&format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\n[[library]]\npath = {:?}\n",
        cli.photos()
    ));
    let o = cli.run(&["check-config"], "");
    assert!(o.status.success(), "valid, if not usable: {}", show(&o));
    for (args, stdin) in [
        (&["scan"][..], ""),
        (&["serve"], ""),
        (
            &["user", "add", "bob", "--password-stdin"],
            "password one\n",
        ),
        (&["backup"], ""),
        (&["trash", "list"], ""),
    ] {
        let o = cli.run(args, stdin);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", show(&o));
        assert!(
            text(&o.stderr).contains(&data.display().to_string()),
            "{args:?}: the message names the data dir: {}",
            show(&o)
        );
    }
    assert!(cli.path("in-the-way").is_file());
}

/// README "Command line": the log level comes from `ISYNC_LOG` (`error`,
/// `warn`, `info` — the default —, `debug`), through the real binary: a
/// first scan that logs at every level (a symlink not followed: debug; the
/// database created: info; a configured user who does not exist: warn).
#[test]
fn isync_log_sets_what_is_logged() {
    let cli = Cli::new();
    write_file(&cli.photos().join("a.jpg"), &jpeg(20, 10, 1, None));
    std::os::unix::fs::symlink(cli.photos().join("a.jpg"), cli.photos().join("link.jpg")).unwrap();
    for (level, want) in [
        (Some("debug"), ["DEBUG", "INFO", "WARN"].as_slice()),
        (None, &["INFO", "WARN"]),
        (Some("info"), &["INFO", "WARN"]),
        (Some("warn"), &["WARN"]),
        (Some("error"), &[]),
    ] {
        // A fresh data dir each time, so the database is created again.
        let data = cli.path(&format!("data-{}", level.unwrap_or("default")));
        let mut env = vec![("ISYNC_DATA_DIR", data.to_str().unwrap())];
        if let Some(l) = level {
            env.push(("ISYNC_LOG", l));
        }
        let o = run_env(isync(&cli.config(), &["scan"]), &env, "");
        assert!(o.status.success(), "{}", show(&o));
        let err = text(&o.stderr);
        for (tag, line) in [
            ("DEBUG", "not following symlink"),
            ("INFO", "database migrated"),
            ("WARN", "does not exist yet"),
        ] {
            let logged = err.lines().any(|l| l.starts_with(tag) && l.contains(line));
            assert_eq!(
                logged,
                want.contains(&tag),
                "ISYNC_LOG={level:?}, {tag} {line:?}: {}",
                show(&o)
            );
        }
        if want.is_empty() {
            assert_eq!(err, "", "ISYNC_LOG=error logs nothing here");
        }
    }
}

/// README "Mass-deletion guard", with the default limits: a scan that
/// would remove more than 5,000 files removes none (though they are under
/// half of the library) and says why, until `isync scan
/// --confirm-deletions` — the real binary, no server — applies them;
/// exactly 5,000 are removed at once.
#[test]
fn more_than_5000_removals_wait_for_confirm_deletions() {
    let cli = Cli::new();
    let p = cli.photos();
    let make = |dir: &str, n: usize| {
        std::fs::create_dir_all(p.join(dir)).unwrap();
        for i in 0..n {
            std::fs::write(p.join(format!("{dir}/f{i:05}.txt")), b"x").unwrap();
        }
    };
    make("keep", 5003);
    make("gone", 5001);
    let files = |cli: &Cli| -> i64 {
        cli.db()
            .read(|c| Ok(c.query_row("SELECT count(*) FROM files", [], |r| r.get(0))?))
            .unwrap()
    };
    let o = cli.run(&["scan"], "");
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(count(&text(&o.stdout), "added"), 10_004, "{}", show(&o));

    // 5,001 of 10,004 (under half): only the count limit applies.
    std::fs::remove_dir_all(p.join("gone")).unwrap();
    let o = cli.run(&["scan"], "");
    assert!(o.status.success(), "{}", show(&o));
    let out = text(&o.stdout);
    assert_eq!(count(&out, "removed"), 0, "{}", show(&o));
    assert_eq!(count(&out, "removals"), 5001, "held back: {}", show(&o));
    assert!(out.contains("--confirm-deletions"), "{}", show(&o));
    let err = text(&o.stderr);
    assert!(
        err.lines().any(|l| l.starts_with("ERROR")
            && l.contains("5001 files would be removed, more than scan.max_delete_count = 5000")),
        "{}",
        show(&o)
    );
    assert!(!err.contains("max_delete_share"), "{}", show(&o));
    assert_eq!(files(&cli), 10_004, "records kept");
    // A second scan still holds them back.
    let o = cli.run(&["scan"], "");
    assert_eq!(count(&text(&o.stdout), "removals"), 5001, "{}", show(&o));

    let o = cli.run(&["scan", "--confirm-deletions"], "");
    assert!(o.status.success(), "{}", show(&o));
    let out = text(&o.stdout);
    assert_eq!(count(&out, "removed"), 5001, "{}", show(&o));
    assert!(!out.contains("held back"), "{}", show(&o));
    assert_eq!(files(&cli), 5003);

    // Exactly 5,000 (of 10,003): removed without confirmation.
    make("gone", 5000);
    let o = cli.run(&["scan"], "");
    assert_eq!(count(&text(&o.stdout), "added"), 5000, "{}", show(&o));
    std::fs::remove_dir_all(p.join("gone")).unwrap();
    let o = cli.run(&["scan"], "");
    let out = text(&o.stdout);
    assert_eq!(count(&out, "removed"), 5000, "{}", show(&o));
    assert!(!out.contains("held back"), "{}", show(&o));
    assert!(!text(&o.stderr).contains("ERROR"), "{}", show(&o));
    assert_eq!(files(&cli), 5003);
}

/// README "Disk offline": a disk with no identity marker at the library's
/// path (another disk, or a forgotten folder) is offline for `isync scan`
/// — nothing removed — until `isync scan --confirm-deletions` adopts it:
/// its files replace the records and a new marker is written on it and
/// recorded, so the next plain scan takes it as the library. The real
/// binary, no server.
#[test]
fn confirm_deletions_adopts_a_disk_without_a_marker() {
    let cli = Cli::new();
    let p = cli.photos();
    write_file(&p.join("a.jpg"), &jpeg(20, 10, 1, None));
    write_file(&p.join("sub/b.jpg"), &jpeg(20, 10, 2, None));
    let o = cli.run(&["scan"], "");
    assert_eq!(count(&text(&o.stdout), "added"), 2, "{}", show(&o));
    let first = std::fs::read_to_string(p.join(".isync/library-id")).unwrap();
    let marker = |cli: &Cli| -> Option<String> {
        cli.db()
            .read(|c| Ok(c.query_row("SELECT marker FROM libraries", [], |r| r.get(0))?))
            .unwrap()
    };
    assert_eq!(marker(&cli).as_deref(), Some(first.trim()));

    std::fs::rename(&p, cli.path("media/old-disk")).unwrap();
    write_file(&p.join("c.jpg"), &jpeg(20, 10, 3, None));
    let snapshot = |cli: &Cli| -> String {
        cli.db()
            .read(|c| {
                let mut st = c.prepare("SELECT * FROM files ORDER BY id")?;
                let n = st.column_count();
                let mut rows = st.query([])?;
                let mut out = String::new();
                while let Some(r) = rows.next()? {
                    for i in 0..n {
                        out.push_str(&format!("{:?} ", r.get_ref(i)?));
                    }
                    out.push('\n');
                }
                Ok(out)
            })
            .unwrap()
    };
    let before = snapshot(&cli);
    let o = cli.run(&["scan"], "");
    assert!(o.status.success(), "{}", show(&o));
    let out = text(&o.stdout);
    assert!(out.contains("offline (nothing removed)"), "{}", show(&o));
    assert!(
        text(&o.stderr).contains("has no .isync/library-id"),
        "{}",
        show(&o)
    );
    assert_eq!(snapshot(&cli), before, "nothing changed");
    assert!(!p.join(".isync").exists(), "nothing written on it");

    let o = cli.run(&["scan", "--confirm-deletions"], "");
    assert!(o.status.success(), "{}", show(&o));
    let out = text(&o.stdout);
    assert_eq!(
        (count(&out, "added"), count(&out, "removed")),
        (1, 2),
        "{}",
        show(&o)
    );
    assert!(out.contains("(0 offline)"), "{}", show(&o));
    let second = std::fs::read_to_string(p.join(".isync/library-id")).unwrap();
    assert_ne!(second, first);
    assert_eq!(marker(&cli).as_deref(), Some(second.trim()));

    let o = cli.run(&["scan"], "");
    let out = text(&o.stdout);
    assert_eq!(
        (count(&out, "added"), count(&out, "removed")),
        (0, 0),
        "{}",
        show(&o)
    );
    assert!(out.contains("(0 offline)"), "{}", show(&o));
}

/// What `serve --demo` printed.
struct Demo {
    /// Killed when the `Demo` is dropped.
    _server: Running,
    url: String,
    library: PathBuf,
    user: String,
    password: String,
}

/// `make run` as the README gives it: `ISYNC_DATA_DIR=<dir> isync serve
/// --demo` with no `--config` and no `/etc/isync/isync.toml` (a private
/// `/etc`, [`with_private_etc`]), listening on a free port of
/// 127.0.0.1. Returns once the banner is printed; `None` (after saying
/// why) where no namespace can be made.
fn start_demo(data: &Path) -> Option<Demo> {
    let server = with_private_etc(data.parent().unwrap())
        .args(["serve", "--demo", "--listen", "127.0.0.1:0"])
        .env("ISYNC_DATA_DIR", data)
        .start();
    // Ends when the server does (no banner) or at the login line.
    let wait = std::time::Duration::from_secs(600);
    server.stdout().find(0, wait, |l| l.contains("login:"));
    let lines = server.stdout().all();
    if server
        .stderr()
        .find(0, wait, |l| l.contains(READY))
        .is_none()
    {
        common::mount::cannot_run(&format!(
            "cannot hide /etc in a mount namespace (unshare): {}",
            server.stderr().text()
        ));
        return None;
    }
    let err = server.stderr().text();
    let after = |prefix: &str| {
        lines
            .iter()
            .find_map(|l| l.trim().strip_prefix(prefix).map(str::to_string))
            .unwrap_or_else(|| panic!("no {prefix:?} printed: {lines:?}\n{err}"))
    };
    let url = after("isync demo is running at ");
    let library = PathBuf::from(after("library: "));
    let login = after("login:");
    let quoted: Vec<&str> = login.split('"').collect();
    assert_eq!(
        quoted.len(),
        5,
        "user \"NAME\", password \"PASSWORD\": {login}"
    );
    Some(Demo {
        _server: server,
        url,
        library,
        user: quoted[1].to_string(),
        password: quoted[3].to_string(),
    })
}

/// Every file below `dir` (relative paths), sorted.
fn files_below(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(dir).unwrap().display().to_string())
        .filter(|p| !p.starts_with('.'))
        .collect();
    out.sort();
    out
}

/// README "Two commands": `make run` — `serve --demo` on a fresh machine
/// (no config file, `ISYNC_DATA_DIR` set) creates the demo library in the
/// data dir and prints a URL and a login that work over HTTP: the login
/// succeeds and every file of the library is listed and downloads byte for
/// byte. Run again, it keeps the library (created once) and resets the
/// password: the old one is refused, the new one works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_demo_prints_a_url_and_login_that_work() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo-data");
    let Some(demo) = start_demo(&data) else {
        return;
    };
    assert_eq!(demo.library, data.join("demo-library"));
    assert_eq!(demo.user, "demo");
    assert!(demo.password.len() >= 8, "{}", demo.password);
    let mut expected = vec![
        "Documents/readme.txt".to_string(),
        "Family/2023 Winter/Day 1/snow_01.jpg".into(),
        "Family/2023 Winter/Day 1/snow_02.jpg".into(),
        "Family/2023 Winter/Day 1/snow_03.jpg".into(),
        "Family/2024 Summer/beach_01.jpg".into(),
        "Family/2024 Summer/beach_02.jpg".into(),
        "Family/2024 Summer/beach_03.jpg".into(),
        "Family/2024 Summer/beach_04.jpg".into(),
        "Family/2024 Summer/beach_05.jpg".into(),
        "Family/2024 Summer/beach_06.jpg".into(),
        "Family/2024 Summer/portrait_rot6.jpg".into(),
        "Family/2024 Summer/portrait_rot8.jpg".into(),
        "Family/2024 Summer/upside_down_rot3.jpg".into(),
        "Family/Animations/spinner.gif".into(),
    ];
    if common::ffmpeg_available() {
        expected.push("Videos/clip.mp4".into());
        expected.sort();
    }
    assert_eq!(files_below(&demo.library), expected);

    let login = |d: &Demo, password: &str| {
        let (url, user, password) = (d.url.clone(), d.user.clone(), password.to_string());
        async move {
            let api = Api::new(&url);
            let v = api
                .get_json(
                    "/login.icc",
                    serde_json::json!({"userName": user, "password": password}),
                )
                .await;
            (api, v)
        }
    };
    let (api, v) = login(&demo, &demo.password).await;
    assert_eq!(v["code"], 0, "{v}");
    // The library is scanned in the background: wait for all of it.
    let start = std::time::Instant::now();
    let listed = loop {
        let files = api.all_files().await;
        if files.len() >= expected.len() || start.elapsed() > std::time::Duration::from_secs(60) {
            break files;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mut names: Vec<String> = listed
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    let mut want: Vec<String> = expected
        .iter()
        .map(|p| p.rsplit('/').next().unwrap().to_string())
        .collect();
    want.sort();
    assert_eq!(names, want);
    for f in &listed {
        let name = f["name"].as_str().unwrap();
        let path = expected.iter().find(|p| p.ends_with(name)).unwrap();
        let r = api.download(id(f), &[]).await;
        assert_eq!(r.status(), 200, "{name}");
        assert_eq!(
            r.bytes().await.unwrap().to_vec(),
            std::fs::read(demo.library.join(path)).unwrap(),
            "{name}"
        );
    }
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let first = demo.library.join("Family/2024 Summer/beach_01.jpg");
    let (ino, bytes) = (inode(&first), std::fs::read(&first).unwrap());
    let old_password = demo.password.clone();
    drop(demo);

    let Some(demo) = start_demo(&data) else {
        panic!("the namespace worked the first time");
    };
    assert_eq!(files_below(&demo.library), expected, "created once");
    assert_eq!(
        (inode(&first), std::fs::read(&first).unwrap()),
        (ino, bytes)
    );
    assert_ne!(demo.password, old_password);
    let (_, v) = login(&demo, &old_password).await;
    assert_err(&v, BAD_LOGIN);
    let (api, v) = login(&demo, &demo.password).await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(api.all_files().await.len(), expected.len());
}

/// `serve --demo` whose banner nobody reads (`isync serve --demo | head
/// -3`, a closed terminal): the pipe is closed before it prints, and the
/// server still starts and answers (it died of a failed println!, exit
/// 101, before listening).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_server_whose_banner_nobody_reads_keeps_running() {
    let cli = Cli::new();
    // Closed at once: the demo library is made before anything is printed.
    let mut server = isync(
        &cli.config(),
        &["serve", "--demo", "--listen", "127.0.0.1:0"],
    )
    .close_stdout()
    .ready_on_stderr("listening on ")
    // The default wait (`READY_WAIT`), as for the other demo servers: the
    // debug build makes the demo library's pictures before it listens, on
    // two cores CI loads with other jobs; a server that dies ends it at once.
    .start();
    let addr = server.ready().to_string();
    let api = Api::new(&format!("http://{addr}"));
    let v = api
        .get_json(
            "/login.icc",
            serde_json::json!({"userName": "demo", "password": "not it"}),
        )
        .await;
    assert_err(&v, BAD_LOGIN);
    assert!(server.try_wait().is_none(), "still running");
    let log = server.stderr().text();
    assert!(
        log.lines()
            .any(|l| l.starts_with("WARN") && l.contains("cannot print the demo login")),
        "{log}"
    );
}

/// Security issue #12: a local process that connects to the control socket
/// and sends half a line (or nothing) does not hold a server task and its
/// buffer for good: after the read timeout (10 s) it gets a refusal and the
/// connection is closed; meanwhile the socket serves others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_control_client_is_dropped_after_the_read_timeout() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::net::UnixStream;
    let (s, _alice) = TestApp::start(|_| {}).await;
    let sock = isync::library::control::socket_path(&s.cfg.data_dir);
    let mut slow = UnixStream::connect(&sock).unwrap();
    slow.write_all(b"{\"op\":").unwrap();
    // Another client is served meanwhile.
    let config = s.dir.path().join("isync.toml");
    std::fs::write(&config, s.cfg.to_toml()).unwrap();
    let o = run_with(&config, &["admin", "user", "list"], "");
    assert!(o.status.success(), "{}", show(&o));
    // The slow one: a refusal naming the timeout, then the end of the stream.
    let waited = tokio::task::spawn_blocking(move || {
        slow.set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        let mut r = BufReader::new(slow);
        let mut reply = String::new();
        r.read_line(&mut reply).unwrap();
        let mut rest = Vec::new();
        let end = r.read_to_end(&mut rest).map(|_| rest.len());
        (reply, end)
    })
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&waited.0).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["output"]
            .as_str()
            .unwrap()
            .contains("no request line within"),
        "{v}"
    );
    assert_eq!(waited.1.unwrap(), 0, "closed after the refusal");
}

/// Log forging: files whose names carry a newline and a made-up log line
/// are logged (a symlink the scan does not follow, named in the message; a
/// damaged picture, named in a `path=` field) as exactly one line each,
/// the newline escaped — nothing in the log starts with the forged text.
#[test]
fn a_file_name_cannot_forge_log_lines() {
    let cli = Cli::new();
    let forged = "WARN  isync::auth: admin password reset for alice";
    let name = format!("holiday.jpg\n{forged}\r\u{1b}[2K.jpg");
    write_file(&cli.photos().join(&name), b"not a JPEG at all");
    std::os::unix::fs::symlink("/etc/hostname", cli.photos().join(format!("link-{name}"))).unwrap();
    let o = run_env(
        isync(&cli.config(), &["scan"]),
        &[("ISYNC_LOG", "debug")],
        "",
    );
    assert!(o.status.success(), "{}", show(&o));
    let log = text(&o.stderr);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(forged)).collect();
    assert_eq!(lines.len(), 2, "{log}");
    let escaped = format!("holiday.jpg\\n{forged}\\r\\u{{1b}}[2K.jpg");
    for l in &lines {
        assert!(l.starts_with("DEBUG isync::"), "{l}");
        assert!(l.contains(&escaped), "{l}");
    }
    assert!(
        lines.iter().any(|l| l.contains("not following symlink")),
        "{log}"
    );
    assert!(lines.iter().any(|l| l.contains(" path=")), "{log}");
    assert!(!log.contains('\u{1b}') && !log.contains('\r'), "{log}");
    assert!(!log.lines().any(|l| l.starts_with(forged)), "{log}");
}

/// The local addresses (`ip:port`, hex as the kernel writes them) of the
/// IPv4 and IPv6 sockets listening on `port`.
fn listening_on(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, state) = (f[1], f[3]);
            let p = u16::from_str_radix(local.rsplit(':').next().unwrap(), 16).unwrap();
            if p == port && state == "0A" {
                out.push(local.to_string());
            }
        }
    }
    out
}

/// Runs `isync serve --demo [args]` (configured for all interfaces, port
/// 0) until it prints its URL; returns the process, the URL and the port.
fn demo(cli: &Cli, args: &[&str]) -> (Running, String, u16) {
    cli.write_config(&format!(
        "listen = \"0.0.0.0:0\"\ndata_dir = {:?}\n",
        cli.path("data")
    ));
    let child = isync(&cli.config(), &["serve", "--demo"])
        .args(args)
        .ready_on_stdout("isync demo is running at ")
        .start();
    let url = child.ready().to_string();
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    (child, url, port)
}

/// `make run` (`serve --demo`) starts a server nobody has claimed yet: it
/// listens on 127.0.0.1 only, even where the configuration says 0.0.0.0,
/// and the URL it prints is the one it answers on. `--listen` still opens
/// it up on purpose.
#[test]
fn the_demo_listens_on_loopback_unless_told_otherwise() {
    let cli = Cli::new();
    let (child, url, port) = demo(&cli, &[]);
    assert!(url.starts_with("http://127.0.0.1:") && port != 0, "{url}");
    assert_eq!(listening_on(port), [format!("0100007F:{port:04X}")]);
    // The URL answers.
    let mut c = std::net::TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    write!(
        c,
        "GET /api/v1/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut c, &mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"server\":\"isync\""), "{reply}");
    child.kill();

    let (child, url, port) = demo(&cli, &["--listen", "0.0.0.0:0"]);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_eq!(listening_on(port), [format!("00000000:{port:04X}")]);
    child.kill();
}
