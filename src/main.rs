//! The `isync` command line: parse, load config, set up logging, dispatch.

use clap::{Parser, Subcommand};
use isync::{cli, config::Config};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "isync",
    version,
    about = "A family media server speaking the iSync API"
)]
struct Args {
    /// Configuration file (default /etc/isync/isync.toml; missing = defaults).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server.
    Serve {
        /// Listen address, overriding `listen` in the config.
        #[arg(long)]
        listen: Option<String>,
        /// Create (once) a demo library and user; print the URL and login.
        #[arg(long)]
        demo: bool,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Scan all libraries once, or one known folder with --path.
    /// (A running `serve` is asked to do it; it keeps libraries current by
    /// itself.)
    Scan {
        #[arg(long)]
        path: Option<PathBuf>,
        /// Apply removals the mass-deletion guard held back, and adopt a
        /// library root whose identity marker is missing or different.
        #[arg(long)]
        confirm_deletions: bool,
    },
    /// Validate and print the effective configuration.
    CheckConfig,
    /// Deleted originals and folders kept on the library's disk.
    Trash {
        #[command(subcommand)]
        cmd: TrashCmd,
    },
    /// Write a consistent copy of the database (VACUUM INTO).
    Backup {
        /// Folder for the copy (default: <data_dir>/backups).
        #[arg(long)]
        to: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TrashCmd {
    /// List what is in the trash (id, deleted at, original path).
    List,
    /// Move an entry back where it was (a numbered name if that is taken).
    Restore { id: i64 },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Create a user, or reset the password of an existing one.
    Add {
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    isync::logging::init();
    let cfg = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("isync: {e}");
            return ExitCode::from(2);
        }
    };
    let r = match args.cmd {
        Cmd::Serve { listen, demo } => cli::serve(cfg, listen, demo),
        Cmd::User {
            cmd: UserCmd::Add { name, .. },
        } => cli::user_add(&cfg, &name),
        Cmd::Scan {
            path,
            confirm_deletions,
        } => cli::scan(&cfg, path.as_deref(), confirm_deletions),
        Cmd::CheckConfig => {
            print!("{}", cfg.to_toml());
            Ok(())
        }
        Cmd::Backup { to } => cli::backup(&cfg, to.as_deref()),
        Cmd::Trash {
            cmd: TrashCmd::List,
        } => cli::trash_list(&cfg),
        Cmd::Trash {
            cmd: TrashCmd::Restore { id },
        } => cli::trash_restore(&cfg, id),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(cli::CliError::Usage(msg)) => {
            eprintln!("isync: {msg}");
            ExitCode::from(2)
        }
        Err(cli::CliError::Runtime(e)) => {
            eprintln!("isync: {e:#}");
            ExitCode::from(1)
        }
    }
}
