//! The command-line actions behind `main.rs`: serve, user add, scan,
//! backup. User-facing results go to stdout; diagnostics to the log.

use crate::config::{validate_user_name, Config};
use crate::db::{self, users, Db};
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
    }
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
            let shown = if addr.ip().is_unspecified() {
                format!("http://127.0.0.1:{}", addr.port())
            } else {
                format!("http://{addr}")
            };
            println!("isync demo is running at {shown}");
            println!("  library: {}", crate::demo::library_dir(&cfg).display());
            println!("  login:   user {user:?}, password {password:?}");
            println!(
                "  try:     curl -c /tmp/isync.cookies '{shown}/login.icc?userName={user}&password={password}'"
            );
            println!("           curl -b /tmp/isync.cookies '{shown}/files.icc?pageIndex=0'");
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

pub fn user_add(cfg: &Config, name: &str) -> Result<(), CliError> {
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
    if password.chars().count() > crate::auth::MAX_PASSWORD_CHARS {
        return Err(CliError::Usage(
            "password too long (max 1024 characters)".into(),
        ));
    }
    let hash = crate::auth::hash_password(password);
    let db = open_db(cfg)?;
    let (id, created) = db
        .write(|tx| users::upsert(tx, name, &hash, db::now()))
        .context("cannot store the user")?;
    // Grants in the config may name this user: apply them now.
    library::sync_libraries(&db, cfg).context("cannot apply library access")?;
    if created {
        println!("created user {name} (id {id})");
    } else {
        println!("password of user {name} (id {id}) replaced");
    }
    Ok(())
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
        if let Some(reply) = control::request(&cfg.data_dir, &req)
            .context("cannot talk to the running isync server")?
        {
            if !reply.ok {
                return Err(CliError::Usage(reply.error.unwrap_or_default()));
            }
            println!("scan (by the running server): {}", reply.report);
            for lib in &reply.offline {
                println!("offline (nothing removed): {lib}");
            }
            return Ok(());
        }
        if let Some(lock) = control::try_lock(&cfg.data_dir)
            .with_context(|| format!("cannot lock {}", cfg.data_dir.display()))?
        {
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

pub fn backup(cfg: &Config, to: Option<&Path>) -> Result<(), CliError> {
    let db = open_db(cfg)?;
    let dir = to
        .map(Path::to_path_buf)
        .unwrap_or_else(|| cfg.data_dir.join("backups"));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create backup folder {}", dir.display()))?;
    let name = format!("isync-{}.db", db::now());
    let dest = dir.join(name);
    let start = std::time::Instant::now();
    db.backup_to(&dest)
        .with_context(|| format!("backup to {} failed", dest.display()))?;
    println!(
        "backup written to {} in {:.2} s",
        dest.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
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
/// listed again.
pub fn trash_restore(cfg: &Config, id: i64) -> Result<(), CliError> {
    let db = open_db(cfg)?;
    let dest = crate::trash::restore(&db, id).map_err(|e| match e {
        crate::error::Error::NotFound(m) => CliError::Usage(m),
        other => CliError::Runtime(anyhow::anyhow!("{other}")),
    })?;
    println!("restored to {}", dest.display());
    let scanner = Scanner::new(db.clone(), cfg.scan.clone());
    let report = library::scan_libraries(&db, cfg, &scanner).context("rescan failed")?;
    println!("scan: {report}");
    Ok(())
}
