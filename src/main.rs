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
    /// Back up the database now (online; the running server does it when
    /// there is one): a dated, integrity-checked folder in the backup
    /// folder, keeping `backup.keep` of them.
    Backup {
        /// Folder for the backup (default: `backup.dir`, else
        /// `.isync/backups` on the first library's disk).
        #[arg(long)]
        to: Option<PathBuf>,
    },
    /// Put a backup in place of the database (stop isync first).
    Restore {
        /// A backup folder (or an isync.db copy).
        from: PathBuf,
    },
    /// Accounts, registration tokens, access keys, libraries.
    Admin {
        #[command(subcommand)]
        cmd: AdminCmd,
    },
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Create the first admin (the console way to claim the server; the
    /// other is the one-time registration token `init`). Reads the password
    /// from the terminal, or the first line of standard input.
    Init { name: String },
    /// One-use registration tokens.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Accounts.
    User {
        #[command(subcommand)]
        cmd: AdminUserCmd,
    },
    /// Access keys (one per device).
    Key {
        #[command(subcommand)]
        cmd: KeyCmd,
    },
    /// Account types and their permissions.
    Type {
        #[command(subcommand)]
        cmd: TypeCmd,
    },
    /// Libraries and who sees them.
    Library {
        #[command(subcommand)]
        cmd: LibraryCmd,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a token; print it (once).
    Create {
        /// Account type of the account it creates (viewer, uploader, editor,
        /// admin or one of your own).
        #[arg(long = "type")]
        type_name: String,
        /// A library the account will see (folder name, path or id);
        /// repeatable.
        #[arg(long = "library")]
        libraries: Vec<String>,
        /// Lifetime, like 7d, 12h, 30m (default 7d).
        #[arg(long)]
        expires: Option<String>,
        /// A note for the token list (who it is for).
        #[arg(long)]
        note: Option<String>,
    },
    /// Pending tokens (never the tokens themselves).
    List,
    /// Withdraw a pending token.
    Delete { id: i64 },
}

#[derive(Subcommand)]
enum AdminUserCmd {
    List,
    /// Change an account's type.
    SetType {
        user: String,
        type_name: String,
    },
    /// Stop an account: its sessions and keys stop working at once.
    Disable {
        user: String,
    },
    Enable {
        user: String,
    },
}

#[derive(Subcommand)]
enum KeyCmd {
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a key (a lost phone).
    Revoke { id: i64 },
}

#[derive(Subcommand)]
enum TypeCmd {
    List,
    /// Create or change a type of your own, e.g. `set family browse,share,upload,moderate`.
    Set {
        name: String,
        perms: String,
    },
    Delete {
        name: String,
    },
}

#[derive(Subcommand)]
enum LibraryCmd {
    List,
    /// Let a user see a library.
    Grant {
        library: String,
        user: String,
    },
    Revoke {
        library: String,
        user: String,
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
        /// Account type (default for a new user: uploader).
        #[arg(long = "type")]
        type_name: Option<String>,
    },
}

fn admin(cfg: &Config, cmd: AdminCmd) -> Result<(), cli::CliError> {
    use isync::admin::Command as C;
    let c = match cmd {
        AdminCmd::Init { name } => return cli::admin_init(cfg, &name),
        AdminCmd::Token {
            cmd:
                TokenCmd::Create {
                    type_name,
                    libraries,
                    expires,
                    note,
                },
        } => C::TokenCreate {
            type_name,
            libraries,
            expires_secs: match expires {
                Some(e) => Some(
                    isync::accounts::parse_duration(&e)
                        .map_err(|m| cli::CliError::Usage(format!("--expires: {m}")))?,
                ),
                None => None,
            },
            note,
        },
        AdminCmd::Token {
            cmd: TokenCmd::List,
        } => C::TokenList,
        AdminCmd::Token {
            cmd: TokenCmd::Delete { id },
        } => C::TokenDelete { id },
        AdminCmd::User { cmd } => match cmd {
            AdminUserCmd::List => C::UserList,
            AdminUserCmd::SetType { user, type_name } => C::UserSetType { user, type_name },
            AdminUserCmd::Disable { user } => C::UserDisable { user },
            AdminUserCmd::Enable { user } => C::UserEnable { user },
        },
        AdminCmd::Key { cmd } => match cmd {
            KeyCmd::List { user } => C::KeyList { user },
            KeyCmd::Revoke { id } => C::KeyRevoke { id },
        },
        AdminCmd::Type { cmd } => match cmd {
            TypeCmd::List => C::TypeList,
            TypeCmd::Set { name, perms } => C::TypeSet { name, perms },
            TypeCmd::Delete { name } => C::TypeDelete { name },
        },
        AdminCmd::Library { cmd } => match cmd {
            LibraryCmd::List => C::LibraryList,
            LibraryCmd::Grant { library, user } => C::LibraryGrant { library, user },
            LibraryCmd::Revoke { library, user } => C::LibraryRevoke { library, user },
        },
    };
    cli::admin(cfg, c)
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
            cmd: UserCmd::Add {
                name, type_name, ..
            },
        } => cli::user_add(&cfg, &name, type_name.as_deref()),
        Cmd::Restore { from } => cli::restore(&cfg, &from),
        Cmd::Admin { cmd } => admin(&cfg, cmd),
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
