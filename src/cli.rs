//! The command-line actions behind `main.rs`: serve, user add, scan,
//! backup. User-facing results go to stdout; diagnostics to the log.

use crate::config::{validate_user_name, Config};
use crate::db::Db;
use crate::library::{self, Scanner};
use anyhow::Context;
use std::io::BufRead;
use std::path::Path;
use tokio_util::sync::CancellationToken;

pub enum CliError {
    /// Bad usage or configuration: exit 2.
    Usage(String),
    /// Something failed at run time: exit 1.
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Runtime(e)
    }
}

pub fn serve(mut cfg: Config, listen: Option<String>, demo: bool) -> Result<(), CliError> {
    if let Some(l) = listen {
        cfg.listen = l;
        let problems = cfg.validate();
        if !problems.is_empty() {
            return Err(CliError::Usage(problems.join("; ")));
        }
    } else if demo {
        // A demo prints its login on the console and, until claimed,
        // offers the `init` token to whoever reaches it: it stays on this
        // machine unless --listen says otherwise (the configured port is
        // kept).
        cfg.listen = format!("127.0.0.1:{}", cfg.listen_addr().port());
    }
    // Before the runtime starts its threads.
    crate::heap::give_large_buffers_their_own_mappings();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(16)
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let demo_login = if demo {
            let c = cfg.clone();
            let (new_cfg, login) = tokio::task::spawn_blocking(move || crate::demo::prepare(c))
                .await
                .context("demo setup task")??;
            cfg = new_cfg;
            Some(login)
        } else {
            None
        };
        let addr = cfg.listen_addr();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (in use? set `listen` or --listen)"))?;
        if let Some((user, password)) = demo_login {
            // The bound address: `--listen 127.0.0.1:0` prints the port taken.
            let addr = listener.local_addr().unwrap_or(addr);
            let shown = if addr.ip().is_unspecified() {
                format!("http://127.0.0.1:{}", addr.port())
            } else {
                format!("http://{addr}")
            };
            let banner = format!(
                "isync demo is running at {shown}\n  library: {}\n  login:   user {user:?}, \
                 password {password:?}\n  try:     curl -c /tmp/isync.cookies \
                 '{shown}/login.icc?userName={user}&password={password}'\n           curl -b \
                 /tmp/isync.cookies '{shown}/files.icc?pageIndex=0'\n{}",
                crate::demo::library_dir(&cfg).display(),
                if addr.ip().is_loopback() {
                    String::new()
                } else {
                    format!(
                        "  reachable from the network ({addr}): claim it (see README) before \
                         others do\n"
                    )
                }
            );
            // Not println!: a reader gone (`serve --demo | head -3`, a closed
            // terminal) must not stop the server.
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(banner.as_bytes()).and_then(|()| out.flush()) {
                log::warn!("cannot print the demo login ({e}); reset it with `isync user add demo --password-stdin`");
            }
        }
        let stop = CancellationToken::new();
        let s2 = stop.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            log::info!("shutdown requested");
            s2.cancel();
        });
        crate::app::run(cfg, listener, stop).await
    })?;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// `isync user add NAME --password-stdin [--type T]`: creates the account
/// or resets its password — through the running server when there is one
/// (so a reset ends the account's live sessions and cached keys at once),
/// else here holding the data dir lock. Only the hash leaves this process.
pub fn user_add(cfg: &Config, name: &str, type_name: Option<&str>) -> Result<(), CliError> {
    validate_user_name(name).map_err(|e| CliError::Usage(format!("user name {name:?}: {e}")))?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(CliError::Usage(
            "empty password on standard input (pipe it in: `echo … | isync user add NAME --password-stdin`)"
                .into(),
        ));
    }
    crate::auth::check_new_password(password).map_err(CliError::Usage)?;
    let hash = crate::auth::hash_password(password);
    admin(
        cfg,
        crate::admin::Command::UserAdd {
            name: name.to_string(),
            password_hash: hash,
            type_name: type_name.map(str::to_owned),
        },
    )
}

fn open_db(cfg: &Config) -> Result<Db, CliError> {
    Db::open(&cfg.db_path())
        .with_context(|| format!("cannot open the database in {}", cfg.data_dir.display()))
        .map_err(CliError::Runtime)
}

/// `isync scan`: asks a running server to scan (so there is one writer and
/// its listings are current), else scans here holding the data dir lock.
pub fn scan(cfg: &Config, path: Option<&Path>, confirm_deletions: bool) -> Result<(), CliError> {
    use crate::library::control::{self, ScanRequest};
    let path = match path {
        Some(p) => Some(
            std::fs::canonicalize(p)
                .map_err(|e| CliError::Usage(format!("--path {}: {e}", p.display())))?,
        ),
        None => None,
    };
    let req = ScanRequest {
        path,
        confirm_deletions,
    };
    let mut said = false;
    let _lock = loop {
        if let Some(reply) = control::request(&cfg.data_dir, &req).with_context(|| {
            format!(
                "cannot talk to the running isync server at {}",
                control::socket_path(&cfg.data_dir).display()
            )
        })? {
            if !reply.ok {
                return Err(CliError::Usage(reply.error.unwrap_or_default()));
            }
            println!("scan (by the running server): {}", reply.report);
            for lib in &reply.offline {
                println!("offline (nothing removed): {lib}");
            }
            return Ok(());
        }
        if let Some(lock) = control::try_lock(&cfg.data_dir).with_context(|| {
            format!(
                "cannot create or lock the data dir {} (set data_dir, or ISYNC_DATA_DIR, to \
                     a folder isync may write)",
                cfg.data_dir.display()
            )
        })? {
            break lock;
        }
        if !said {
            println!(
                "waiting for the other isync process using {}",
                cfg.data_dir.display()
            );
            said = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let db = open_db(cfg)?;
    let plan = library::sync_libraries(&db, cfg).context("cannot sync libraries")?;
    let scanner = Scanner::new(db, cfg.scan.clone());
    scanner.keep_free(cfg.storage.data_min_free_bytes);
    let plan = std::sync::RwLock::new(plan);
    let report = control::run_scan(&scanner, &plan, &req).map_err(|e| match req.path {
        Some(_) => CliError::Usage(e),
        None => CliError::Runtime(anyhow::anyhow!("scan failed: {e}")),
    })?;
    println!("scan: {report}");
    for lib in &report.offline {
        println!("offline (nothing removed): {lib}");
    }
    Ok(())
}

/// `isync backup`: asks the running server (so the API and `systemctl
/// status` show it), else backs up here.
pub fn backup(cfg: &Config, to: Option<&Path>) -> Result<(), CliError> {
    admin(
        cfg,
        crate::admin::Command::Backup {
            to: to.map(Path::to_path_buf),
        },
    )
}

/// `isync trash list`: one line per entry.
pub fn trash_list(cfg: &Config) -> Result<(), CliError> {
    let db = open_db(cfg)?;
    let entries = crate::trash::list(&db).map_err(|e| anyhow::anyhow!("{e}"))?;
    if entries.is_empty() {
        println!("the trash is empty");
    }
    for e in entries {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            e.id, e.kind, e.deleted_at, e.original_path, e.name
        );
    }
    Ok(())
}

/// `isync trash restore ID`: moves the entry back and rescans so it is
/// listed again — by the running server when there is one (its own scanner,
/// under its library lock), else here holding the data dir lock.
pub fn trash_restore(cfg: &Config, id: i64) -> Result<(), CliError> {
    admin(cfg, crate::admin::Command::TrashRestore { id })
}

/// Runs an admin command: by the running server when there is one (so its
/// sessions see the change at once), else here holding the data dir lock.
pub fn admin(cfg: &Config, cmd: crate::admin::Command) -> Result<(), CliError> {
    use crate::library::control;
    let req = serde_json::to_value(&cmd).context("cannot encode the command")?;
    let mut said = false;
    let _lock = loop {
        if let Some(v) = control::request_op(&cfg.data_dir, &req).with_context(|| {
            format!(
                "cannot talk to the running isync server at {}",
                control::socket_path(&cfg.data_dir).display()
            )
        })? {
            let reply: crate::admin::Reply =
                serde_json::from_value(v).context("unreadable reply from the server")?;
            return finish(reply);
        }
        if let Some(lock) = control::try_lock(&cfg.data_dir).with_context(|| {
            format!(
                "cannot create or lock the data dir {} (set data_dir, or ISYNC_DATA_DIR, to \
                     a folder isync may write)",
                cfg.data_dir.display()
            )
        })? {
            break lock;
        }
        if !said {
            println!(
                "waiting for the other isync process using {}",
                cfg.data_dir.display()
            );
            said = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let db = open_db(cfg)?;
    // Library rows and config grants as a server start would make them, so
    // tokens and the first admin can name every configured library.
    library::sync_libraries(&db, cfg).context("cannot sync libraries")?;
    let backups = crate::backup::Backups::new(
        db.clone(),
        std::sync::Arc::new(cfg.clone()),
        cfg.file.clone(),
    );
    let restoring = matches!(cmd, crate::admin::Command::TrashRestore { .. });
    let ctx = crate::admin::Ctx {
        db: &db,
        backups: &backups,
        cfg,
        sessions: None,
    };
    let reply = crate::admin::Reply::of(crate::admin::execute(&ctx, cmd));
    let ok = reply.ok;
    finish(reply)?;
    if ok && restoring {
        let scanner = Scanner::new(db.clone(), cfg.scan.clone());
        scanner.keep_free(cfg.storage.data_min_free_bytes);
        let report = library::scan_libraries(&db, cfg, &scanner).context("rescan failed")?;
        println!("scan: {report}");
    }
    Ok(())
}

fn finish(reply: crate::admin::Reply) -> Result<(), CliError> {
    if reply.ok {
        println!("{}", reply.output);
        Ok(())
    } else if reply.usage {
        Err(CliError::Usage(reply.output))
    } else {
        Err(CliError::Runtime(anyhow::anyhow!(reply.output)))
    }
}

/// Reads a new password: prompted twice without echo on a terminal, else
/// the first line of standard input.
pub(crate) fn read_new_password() -> Result<String, CliError> {
    use std::io::IsTerminal;
    let pw = if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password("new password: ").context("cannot read the password")?;
        let b = rpassword::prompt_password("again: ").context("cannot read the password")?;
        if a != b {
            return Err(CliError::Usage("the two passwords differ".into()));
        }
        a
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    crate::auth::check_new_password(&pw).map_err(CliError::Usage)?;
    Ok(pw)
}

/// `isync admin init NAME`: the first admin, on the console.
pub fn admin_init(cfg: &Config, name: &str) -> Result<(), CliError> {
    validate_user_name(name).map_err(|e| CliError::Usage(format!("user name {name:?}: {e}")))?;
    let password = read_new_password()?;
    let hash = crate::auth::hash_password(&password);
    admin(
        cfg,
        crate::admin::Command::Init {
            name: name.to_string(),
            password_hash: hash,
            label: "console (isync admin init)".into(),
        },
    )
}

/// `isync restore FROM`: refused while a server runs on this data dir.
pub fn restore(cfg: &Config, from: &Path) -> Result<(), CliError> {
    let r = crate::backup::restore(cfg, from).map_err(CliError::Usage)?;
    println!(
        "restored {} (from isync {}, schema {}): {} users, {} catalogs, {} files; integrity ok",
        r.from.display(),
        r.manifest.isync_version,
        r.manifest.schema_version,
        r.manifest.users,
        r.manifest.catalogs,
        r.manifest.files
    );
    if let Some(p) = r.previous {
        println!("the database it replaced is kept in {}", p.display());
    }
    println!("start isync again (`sudo systemctl start isync`); it rescans the libraries");
    Ok(())
}
