//! `isync admin …`, `isync user add` and `isync backup`: one command type,
//! executed by the running server when there is one (asked over the control
//! socket, so its sessions and caches see the change at once and there is
//! one writer), or here in the CLI process holding the data dir lock when
//! there is none. The output is the text the CLI prints. Commands come from
//! the console (root on the machine): they act as [`Actor::Console`].

use crate::accounts::{self, Actor, NewAccount};
use crate::auth::Sessions;
use crate::backup::Backups;
use crate::config::Config;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::model::UserId;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Command {
    /// The first admin, made on the console. The password is hashed by the
    /// CLI; only the hash travels.
    Init {
        name: String,
        password_hash: String,
        label: String,
    },
    /// `isync user add NAME [--type T]`: a new account, or a password reset
    /// (which ends the account's sessions and revokes its keys and share
    /// links). The CLI checks and hashes the password.
    UserAdd {
        name: String,
        password_hash: String,
        type_name: Option<String>,
    },
    TokenCreate {
        type_name: String,
        libraries: Vec<String>,
        expires_secs: Option<i64>,
        note: Option<String>,
    },
    TokenList,
    TokenDelete {
        id: i64,
    },
    UserList,
    UserSetType {
        user: String,
        type_name: String,
    },
    UserDisable {
        user: String,
    },
    UserEnable {
        user: String,
    },
    KeyList {
        user: Option<String>,
    },
    KeyRevoke {
        id: i64,
    },
    TypeList,
    TypeSet {
        name: String,
        perms: String,
    },
    TypeDelete {
        name: String,
    },
    LibraryList,
    LibraryGrant {
        library: String,
        user: String,
    },
    LibraryRevoke {
        library: String,
        user: String,
    },
    Backup {
        to: Option<PathBuf>,
    },
    /// `isync trash restore ID`: the server moves the entry back (under its
    /// library's lock, so a scan never sees half of it) and rescans.
    TrashRestore {
        id: i64,
    },
}

/// The server's answer over the control socket.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Reply {
    pub ok: bool,
    pub output: String,
    /// The error was the caller's (see [`Error::is_usage`]): `isync` exits
    /// with its usage status.
    #[serde(default)]
    pub usage: bool,
}

impl Reply {
    pub(crate) fn of(r: Result<String>) -> Reply {
        match r {
            Ok(output) => Reply {
                ok: true,
                output,
                usage: false,
            },
            Err(e) => Reply {
                ok: false,
                usage: e.is_usage(),
                output: e.to_string(),
            },
        }
    }
}

/// Whether a command changes accounts (sessions must re-read theirs).
pub(crate) fn changes_access(cmd: &Command) -> bool {
    !matches!(
        cmd,
        Command::TokenList
            | Command::UserList
            | Command::KeyList { .. }
            | Command::TypeList
            | Command::LibraryList
            | Command::Backup { .. }
            | Command::TrashRestore { .. }
            | Command::TokenCreate { .. }
    )
}

fn when(t: Option<i64>) -> String {
    match t {
        Some(t) => {
            let s = t.rem_euclid(86_400);
            format!(
                "{} {:02}:{:02}",
                crate::time::civil_date(t),
                s / 3600,
                s / 60 % 60
            )
        }
        None => "-".into(),
    }
}

fn new_account_text(a: &NewAccount) -> String {
    format!(
        "created {} account {:?} (id {})\n\
         access key (shown once; store it now, it cannot be shown again):\n  {}\n\
         log in from iPrivate with the user name and password; use the key as \
         `Authorization: Bearer <key>` for the admin API",
        a.type_name, a.user.name, a.user.id.0, a.access_key
    )
}

/// What a command runs against.
pub(crate) struct Ctx<'a> {
    pub db: &'a Db,
    pub backups: &'a Backups,
    pub cfg: &'a Config,
    /// The running server's sessions (None in a CLI working alone: there
    /// are none to end).
    pub sessions: Option<&'a Sessions>,
}

impl Ctx<'_> {
    fn end_sessions(&self, user: UserId) {
        if let Some(s) = self.sessions {
            s.end_user(user);
        }
    }
}

/// Runs `cmd`. Blocking (SQL, Argon2 already done by the caller).
///
/// One short arm per command; the listings and the longer replies have
/// their own functions below, in the order of [`Command`].
pub(crate) fn execute(ctx: &Ctx, cmd: Command) -> Result<String> {
    let (db, backups) = (ctx.db, ctx.backups);
    let out = match cmd {
        Command::Init {
            name,
            password_hash,
            label,
        } => {
            crate::config::validate_user_name(&name)
                .map_err(|e| Error::BadParam(format!("user name {name:?}: {e}")))?;
            new_account_text(&accounts::admin_init(db, &name, &password_hash, &label)?)
        }
        Command::UserAdd {
            name,
            password_hash,
            type_name,
        } => user_add(ctx, &name, &password_hash, type_name.as_deref())?,
        Command::TokenCreate {
            type_name,
            libraries,
            expires_secs,
            note,
        } => token_create(db, &type_name, &libraries, expires_secs, note.as_deref())?,
        Command::TokenList => token_list(db)?,
        Command::TokenDelete { id } => {
            accounts::delete_token(db, Actor::Console, id)?;
            format!("registration token {id} deleted")
        }
        Command::UserList => user_list(db)?,
        Command::UserSetType { user, type_name } => {
            let u = accounts::set_type(db, Actor::Console, &user, &type_name)?;
            format!("{} is now {}", u.name, u.type_name)
        }
        Command::UserDisable { user } => {
            let u = accounts::set_disabled(db, Actor::Console, &user, true)?;
            ctx.end_sessions(UserId(u.id));
            format!(
                "{} disabled (sessions ended; access keys and share links revoked)",
                u.name
            )
        }
        Command::UserEnable { user } => {
            let u = accounts::set_disabled(db, Actor::Console, &user, false)?;
            format!("{} enabled", u.name)
        }
        Command::KeyList { user } => key_list(db, user)?,
        Command::KeyRevoke { id } => {
            let k = accounts::revoke_key(db, Actor::Console, id, None)?;
            format!("access key {} ({}, of {}) revoked", k.id, k.label, k.user)
        }
        Command::TypeList => type_list(db)?,
        Command::TypeSet { name, perms } => {
            let t = accounts::upsert_type(db, Actor::Console, &name, &perms)?;
            format!("type {}: {}", t.name, t.perms.join(" "))
        }
        Command::TypeDelete { name } => {
            accounts::delete_type(db, Actor::Console, &name)?;
            format!("type {name} deleted")
        }
        Command::LibraryList => library_list(db)?,
        Command::LibraryGrant { library, user } => {
            accounts::set_grant(db, Actor::Console, &library, &user, true)?;
            format!("{user} now sees {library}")
        }
        Command::LibraryRevoke { library, user } => {
            accounts::set_grant(db, Actor::Console, &library, &user, false)?;
            format!("{user} no longer sees {library}")
        }
        Command::Backup { to } => {
            let run = backups.run(to.as_deref())?;
            format!(
                "backup written to {} ({} bytes, integrity ok) in {} s",
                run.path.unwrap_or_default(),
                run.bytes.unwrap_or(0),
                run.finished - run.started
            )
        }
        Command::TrashRestore { id } => {
            let dest = crate::trash::restore(db, id)?;
            format!("restored to {}", dest.display())
        }
    };
    Ok(out.trim_end().to_string())
}

/// `isync user add`: a new account, or a password reset that ends the
/// account's sessions.
fn user_add(ctx: &Ctx, name: &str, password_hash: &str, type_name: Option<&str>) -> Result<String> {
    crate::config::validate_user_name(name)
        .map_err(|e| Error::BadParam(format!("user name {name:?}: {e}")))?;
    let a = accounts::add_or_reset_user(ctx.db, name, password_hash, type_name)?;
    // Grants in the config may name this user: apply them now.
    crate::library::sync_libraries(ctx.db, ctx.cfg)?;
    if a.created {
        return Ok(format!(
            "created user {name} (id {}, {})",
            a.id.0, a.type_name
        ));
    }
    ctx.end_sessions(a.id);
    Ok(format!(
        "password of user {name} (id {}, {}) replaced; its sessions ended, \
         {} access keys and {} share links revoked",
        a.id.0, a.type_name, a.keys_revoked, a.links_revoked
    ))
}

fn token_create(
    db: &Db,
    type_name: &str,
    libraries: &[String],
    expires_secs: Option<i64>,
    note: Option<&str>,
) -> Result<String> {
    let t = accounts::create_token(db, Actor::Console, type_name, libraries, expires_secs, note)?;
    Ok(format!(
        "registration token (one use, {} account, libraries [{}], expires {} UTC):\n  {}\n\
         redeem it at http://<this server>:<port>/ or POST /api/v1/register",
        t.type_name,
        t.libraries.join(", "),
        when(t.expires),
        t.token
    ))
}

fn token_list(db: &Db) -> Result<String> {
    let list = accounts::list_tokens(db)?;
    let mut out = String::new();
    if list.is_empty() {
        out.push_str("no pending registration tokens");
    }
    for t in list {
        let _ = writeln!(
            out,
            "{}\t{}\tlibraries [{}]\tcreated {}\texpires {}\t{}",
            t.id,
            t.type_name,
            t.libraries.join(", "),
            when(Some(t.created)),
            when(t.expires),
            t.note.unwrap_or_default()
        );
    }
    Ok(out)
}

fn user_list(db: &Db) -> Result<String> {
    let mut out = String::new();
    for u in accounts::list_users(db)? {
        let _ = writeln!(
            out,
            "{}\t{}\t{}{}\tlibraries [{}]\tkeys {}\tlast login {}",
            u.id,
            u.name,
            u.type_name,
            if u.disabled { " (disabled)" } else { "" },
            u.libraries.join(", "),
            u.access_keys,
            when(u.last_login)
        );
    }
    Ok(out)
}

/// The access keys of `user` (a name or id), or of everyone.
fn key_list(db: &Db, user: Option<String>) -> Result<String> {
    let who = match user {
        Some(u) => Some(db.read(|c| Ok(accounts::resolve_user(c, &u)))??.id),
        None => None,
    };
    let keys = accounts::list_keys(db, who)?;
    let mut out = String::new();
    if keys.is_empty() {
        out.push_str("no access keys");
    }
    for k in keys {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\tcreated {}\tlast used {}",
            k.id,
            k.user,
            k.label,
            when(Some(k.created)),
            when(k.last_used)
        );
    }
    Ok(out)
}

fn type_list(db: &Db) -> Result<String> {
    let mut out = String::new();
    for t in accounts::list_types(db)? {
        let _ = writeln!(
            out,
            "{}\t{}{}\t{}",
            t.id,
            t.name,
            if t.builtin { " (built-in)" } else { "" },
            t.perms.join(" ")
        );
    }
    Ok(out)
}

fn library_list(db: &Db) -> Result<String> {
    let mut out = String::new();
    for l in accounts::list_libraries(db)? {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\tusers [{}]",
            l.id,
            l.name,
            l.kind,
            if l.online { "online" } else { "offline" },
            l.path,
            l.users.join(", ")
        );
    }
    Ok(out)
}
