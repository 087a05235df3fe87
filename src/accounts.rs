//! Accounts, the hydrus-server way (see `shared/research/anchors.md` d):
//! account types with permissions; the first admin claims the server with
//! the one-time registration token `init` (or `isync admin init` on the
//! console); admins hand out one-use registration tokens bound to a type and
//! a set of libraries; redeeming one creates the account and an **access
//! key** (shown once) usable as `Authorization: Bearer <key>` on any call.
//!
//! Tokens and keys are random (128 and 256 bits) and stored only as SHA-256
//! digests: a stolen database does not let anyone register or sign in.
//! The functions here are blocking: the console (`admin`, the CLI) runs
//! them on its own thread, and [`pool`] runs them on the blocking pool for
//! the admin API, so a rule is enforced in one place.
//!
//! Two invariants hold across every change, each checked inside the change's
//! own transaction:
//! - **`init` exists only while no enabled account holds `accounts`**: any
//!   change that makes an admin (a token, `user add --type`, `set-type`,
//!   `type set`, `enable`) retires it, and redeeming it re-checks.
//! - **No change leaves zero admins** where there was one (demote, disable,
//!   type change): it is refused and changes nothing.
//!
//! And an account that manages others ([`Actor::User`]) may only grant what
//! it holds — types whose permissions are a subset of its own, libraries it
//! sees — and may only change accounts holding no more than it does. The
//! console ([`Actor::Console`], root on the machine) may do anything.

pub(crate) mod pool;

use crate::db::{self, accounts as q, catalogs, libraries, users, Db, DbError};
use crate::error::{Error, Result};
use crate::model::{CatalogId, FileId, User, UserId};
use crate::perms::{self, Perm, Perms, Session};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The well-known first registration token (hydrus' `init`).
pub(crate) const INIT_TOKEN: &str = "init";
/// Prefix of access keys, so secret scanners and people recognise them.
pub(crate) const KEY_PREFIX: &str = "isync_";
/// Longest label of an access key (a device name).
pub(crate) const MAX_LABEL_CHARS: usize = 64;

/// An account type as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountType {
    pub id: i64,
    pub name: String,
    pub perms: Vec<&'static str>,
    pub builtin: bool,
}

impl From<q::TypeRow> for AccountType {
    fn from(t: q::TypeRow) -> Self {
        AccountType {
            id: t.id,
            name: t.name,
            perms: Perms::parse(&t.perms).unwrap_or_default().names(),
            builtin: t.builtin,
        }
    }
}

pub const BUILTIN_ADMIN: i64 = 1;

/// SHA-256 of a secret as stored.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A registration token as people type it: case, spaces and dashes do not
/// matter (`ABCD-ef01 …` is `abcdef01…`).
pub(crate) fn normalize_token(t: &str) -> String {
    t.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// A fresh registration token: 128 random bits, shown in groups of four.
pub(crate) fn new_token() -> String {
    let h = random_hex(16);
    h.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("hex"))
        .collect::<Vec<_>>()
        .join("-")
}

/// A fresh access key: 256 random bits.
pub(crate) fn new_key() -> String {
    format!("{KEY_PREFIX}{}", random_hex(32))
}

fn bad(msg: impl Into<String>) -> Error {
    Error::BadParam(msg.into())
}

/// Whether any enabled account may manage accounts. Blocking.
pub(crate) fn has_admin(c: &rusqlite::Connection) -> Result<bool, DbError> {
    Ok(q::count_enabled_with_perm(c, Perm::Accounts.name())? > 0)
}

/// Who asks for an account change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// `isync admin …` / `isync user add` on the server's console: root on
    /// the machine, may do anything.
    Console,
    /// A logged-in account (admin API): limited to what it holds.
    User(UserId),
}

/// What an actor may hand out, read inside the change's transaction (not
/// from a session cache that may be a request behind).
struct Authority {
    perms: Perms,
    /// Root catalogs it sees; `None` = every library (the console).
    roots: Option<Vec<CatalogId>>,
}

fn authority(c: &rusqlite::Connection, actor: Actor) -> Result<Authority> {
    let uid = match actor {
        Actor::Console => {
            return Ok(Authority {
                perms: Perms::ALL,
                roots: None,
            })
        }
        Actor::User(uid) => uid,
    };
    let u = users::by_id(c, uid)?
        .filter(|u| !u.disabled)
        .ok_or(Error::NeedLogin)?;
    Ok(Authority {
        perms: perms::of_type(c, u.account_type_id)?,
        roots: Some(users::roots(c, uid)?),
    })
}

fn not_yours(what: String) -> Error {
    Error::NoPermission(format!(
        "{what}; an account may only grant permissions and libraries it holds itself, and \
         change only accounts that hold no more than it does (ask an admin)"
    ))
}

impl Authority {
    /// −10002 unless the actor holds every permission of type `t`.
    fn may_grant_type(&self, t: &q::TypeRow) -> Result<()> {
        let perms = Perms::parse(&t.perms).unwrap_or_default();
        self.may_grant_perms(&format!("type {:?}", t.name), perms)
    }

    fn may_grant_perms(&self, what: &str, perms: Perms) -> Result<()> {
        let lacking = perms.minus(self.perms);
        if lacking == Perms::default() {
            Ok(())
        } else {
            Err(not_yours(format!(
                "{what} has {} which your account lacks",
                lacking.names().join(", ")
            )))
        }
    }

    /// −10002 unless the actor sees library `root`.
    fn may_grant_library(&self, c: &rusqlite::Connection, root: CatalogId) -> Result<()> {
        match &self.roots {
            Some(roots) if !roots.contains(&root) => Err(not_yours(format!(
                "your account does not see library {:?}",
                root_name(c, root)?
            ))),
            _ => Ok(()),
        }
    }

    /// −10002 unless the actor holds every permission of `u`'s type.
    fn may_manage(&self, c: &rusqlite::Connection, u: &User) -> Result<()> {
        let perms = perms::of_type(c, u.account_type_id)?;
        self.may_grant_perms(&format!("account {:?}", u.name), perms)
    }
}

/// Runs an account change in one transaction that keeps the invariants (see
/// the module doc): refused — nothing changed — when it would leave no
/// enabled admin where there was one; `init` retired when an admin exists
/// afterwards. Blocking.
fn admin_change<T>(db: &Db, f: impl FnOnce(&rusqlite::Transaction) -> Result<T>) -> Result<T> {
    write_checked(db, |tx| {
        let had_admin = has_admin(tx)?;
        let v = f(tx)?;
        settle_admins(tx, had_admin)?;
        Ok(v)
    })
}

fn settle_admins(c: &rusqlite::Connection, had_admin: bool) -> Result<()> {
    let has = has_admin(c)?;
    if had_admin && !has {
        return Err(bad(
            "refused: this would leave no enabled admin (an account whose type has `accounts`); \
             make another admin first",
        ));
    }
    if has && q::delete_token_hash(c, &digest(INIT_TOKEN))? {
        log::info!("the one-time token `init` is retired: the server has an admin");
    }
    Ok(())
}

/// Every root catalog of a configured library (what the first admin sees).
fn all_library_roots(c: &rusqlite::Connection) -> Result<Vec<CatalogId>, DbError> {
    Ok(libraries::list(c)?
        .into_iter()
        .filter(|l| l.kind == "config")
        .filter_map(|l| l.root_id)
        .collect())
}

/// On a start with no admin, makes sure the one-time `init` token exists
/// (type admin, every configured library) and says how to use it. Returns
/// true when the server is unclaimed. Blocking.
pub(crate) fn ensure_init_token(db: &Db) -> Result<bool> {
    let hash = digest(INIT_TOKEN);
    let unclaimed = db.write(|tx| {
        if has_admin(tx)? {
            q::delete_token_hash(tx, &hash)?;
            return Ok(false);
        }
        if q::token_by_hash(tx, &hash)?.is_none() {
            let roots = all_library_roots(tx)?;
            q::insert_token(
                tx,
                &hash,
                BUILTIN_ADMIN,
                &roots,
                db::now(),
                None,
                None,
                Some("first admin"),
            )?;
        }
        Ok(true)
    })?;
    Ok(unclaimed)
}

/// What redeeming a token or `admin init` gives: the account and its first
/// access key (shown once).
#[derive(Debug, Clone)]
pub(crate) struct NewAccount {
    pub user: User,
    pub type_name: String,
    pub access_key: String,
    pub key_id: i64,
}

/// Redeems a registration token: creates the account `name` with the
/// token's type and libraries, and an access key labelled `label`. The
/// token is gone afterwards. `password_hash` is the Argon2 PHC string (hash
/// before calling: this runs in one short write transaction); `now` (unix
/// seconds, the app's clock) judges the token's expiry and stamps the
/// account. Blocking.
pub(crate) fn redeem(
    db: &Db,
    token: &str,
    name: &str,
    password_hash: &str,
    label: &str,
    now: i64,
) -> Result<NewAccount> {
    let hash = digest(&normalize_token(token));
    let key = new_key();
    let key_hash = digest(&key);
    let r = db.write(|tx| {
        let Some(t) = q::token_by_hash(tx, &hash)? else {
            return Ok(Err(Error::BadToken));
        };
        if t.expires.is_some_and(|e| e <= now) {
            q::delete_token(tx, t.id)?;
            return Ok(Err(Error::TokenExpired));
        }
        // `init` claims an unclaimed server, nothing else: once any enabled
        // account may manage accounts it is void (and goes).
        if hash == digest(INIT_TOKEN) && has_admin(tx)? {
            q::delete_token(tx, t.id)?;
            log::warn!("the one-time token `init` was offered after an admin existed; retired");
            return Ok(Err(Error::BadToken));
        }
        let Some(uid) = users::insert_typed(tx, name, password_hash, t.account_type_id, now)?
        else {
            return Ok(Err(bad(format!(
                "the user name {name:?} is taken; pick another"
            ))));
        };
        for root in &t.roots {
            if catalogs::by_id(tx, *root)?.is_some() {
                users::grant_root_admin(tx, uid, *root)?;
            }
        }
        q::delete_token(tx, t.id)?;
        let key_id = q::insert_key(tx, uid, &key_hash, label, now)?;
        // An admin made from an ordinary token retires `init` too.
        if has_admin(tx)? {
            q::delete_token_hash(tx, &digest(INIT_TOKEN))?;
        }
        let user = users::by_id(tx, uid)?.expect("just inserted");
        let type_name = q::type_by_id(tx, t.account_type_id)?
            .map(|t| t.name)
            .unwrap_or_default();
        Ok(Ok((user, type_name, key_id)))
    })?;
    // An expired token is deleted even though the redemption fails.
    let (user, type_name, key_id) = r?;
    log::info!(
        "account {} ({}) created from a registration token as {type_name}",
        user.name,
        user.id
    );
    Ok(NewAccount {
        user,
        type_name,
        access_key: key,
        key_id,
    })
}

/// Whether `token` can be redeemed for the name `name`, before the caller
/// spends a password hash on it: −10000 ([`Error::BadToken`]) for a token
/// that does not exist, −10003 for a taken name. [`redeem`] checks again in
/// its transaction, and is where a void `init` is refused and retired.
/// Blocking.
pub(crate) fn check_redeemable(db: &Db, token: &str, name: &str) -> Result<()> {
    let hash = digest(&normalize_token(token));
    db.read(|c| {
        if q::token_by_hash(c, &hash)?.is_none() {
            return Ok(Err(Error::BadToken));
        }
        if users::by_name(c, name)?.is_some() {
            return Ok(Err(bad(format!(
                "the user name {name:?} is taken; pick another"
            ))));
        }
        Ok(Ok(()))
    })?
}

/// What `isync user add` did.
#[derive(Debug, Clone)]
pub struct UserAdded {
    pub id: UserId,
    pub created: bool,
    pub type_name: String,
    /// Access keys and share links revoked by a password reset.
    pub keys_revoked: usize,
    pub links_revoked: usize,
}

/// `isync user add NAME [--type T]`: creates the account (an `uploader`
/// unless `type_name` says otherwise) or, for an existing one, replaces its
/// password — which revokes its access keys and share links (the caller
/// ends its sessions): a reset is what one does when a password may have
/// leaked, so nothing obtained with the old one survives it. `--type` on an
/// existing account changes its type too. Console only; keeps the admin
/// invariants. Blocking.
pub fn add_or_reset_user(
    db: &Db,
    name: &str,
    password_hash: &str,
    type_name: Option<&str>,
) -> Result<UserAdded> {
    let now = db::now();
    let added = admin_change(db, |tx| {
        let t = match (type_name, users::by_name(tx, name)?.is_some()) {
            (Some(t), _) => Some(resolve_type(tx, t)?),
            (None, false) => Some(resolve_type(tx, "uploader")?),
            (None, true) => None,
        };
        match users::by_name(tx, name)? {
            Some(u) => {
                users::set_password(tx, u.id, password_hash)?;
                let keys_revoked = q::delete_keys_of(tx, u.id)?;
                let links_revoked = crate::db::shares::delete_of_user(tx, u.id)?;
                if let Some(t) = &t {
                    users::set_type(tx, u.id, t.id, now)?;
                }
                let type_id = t.as_ref().map_or(u.account_type_id, |t| t.id);
                Ok(UserAdded {
                    id: u.id,
                    created: false,
                    type_name: q::type_by_id(tx, type_id)?
                        .map(|t| t.name)
                        .unwrap_or_default(),
                    keys_revoked,
                    links_revoked,
                })
            }
            None => {
                let t = t.expect("a type for a new account");
                let id = users::insert_typed(tx, name, password_hash, t.id, now)?
                    .expect("the name is free");
                Ok(UserAdded {
                    id,
                    created: true,
                    type_name: t.name,
                    keys_revoked: 0,
                    links_revoked: 0,
                })
            }
        }
    })?;
    if added.created {
        log::info!(
            "account {name} ({}) created on the console as {}",
            added.id,
            added.type_name
        );
    } else {
        log::info!(
            "password of {name} ({}) replaced on the console; {} access keys and {} share links \
             revoked, sessions ended",
            added.id,
            added.keys_revoked,
            added.links_revoked
        );
    }
    Ok(added)
}

/// `isync admin init`: creates the first admin on the console (the other way
/// to claim a server). Refused once an admin exists. Blocking.
pub(crate) fn admin_init(
    db: &Db,
    name: &str,
    password_hash: &str,
    label: &str,
) -> Result<NewAccount> {
    let key = new_key();
    let key_hash = digest(&key);
    let now = db::now();
    let r = db.write(|tx| {
        if has_admin(tx)? {
            return Ok(Err(bad(
                "this server already has an admin; an admin can create registration tokens \
                 (`isync admin token create --type admin`)",
            )));
        }
        let Some(uid) = users::insert_typed(tx, name, password_hash, BUILTIN_ADMIN, now)? else {
            return Ok(Err(bad(format!(
                "the user name {name:?} is taken; pick another"
            ))));
        };
        for root in all_library_roots(tx)? {
            users::grant_root_admin(tx, uid, root)?;
        }
        q::delete_token_hash(tx, &digest(INIT_TOKEN))?;
        let key_id = q::insert_key(tx, uid, &key_hash, label, now)?;
        Ok(Ok((users::by_id(tx, uid)?.expect("just inserted"), key_id)))
    })?;
    let (user, key_id) = r?;
    log::info!(
        "first admin {} ({}) created on the console",
        user.name,
        user.id
    );
    Ok(NewAccount {
        user,
        type_name: "admin".into(),
        access_key: key,
        key_id,
    })
}

/// Parses `7d`, `12h`, `30m`, `90s`, `2w` or a bare number of seconds.
pub fn parse_duration(s: &str) -> std::result::Result<i64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (like 7d, 12h, 30m)"))?;
    let mult = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use s, m, h, d or w)"
            ))
        }
    };
    if n <= 0 || n > 3650 * 86_400 / mult {
        return Err(format!("duration {s:?} out of range (1 s … 10 years)"));
    }
    Ok(n * mult)
}

/// A library as admins name it: its root catalog's name (case-insensitive),
/// its path, or its id. Blocking.
pub(crate) fn resolve_library(c: &rusqlite::Connection, name: &str) -> Result<(i64, CatalogId)> {
    let libs = libraries::list(c)?;
    let mut found = Vec::new();
    for l in &libs {
        let Some(root) = l.root_id else { continue };
        let root_name = catalogs::by_id(c, root)?
            .map(|c| c.name)
            .unwrap_or_default();
        if l.path == name || l.id.0.to_string() == name || root_name.eq_ignore_ascii_case(name) {
            found.push((l.id.0, root));
        }
    }
    match found.len() {
        1 => Ok(found[0]),
        0 => Err(bad(format!(
            "no library {name:?} (name it by folder name, path or id; see `isync admin library list`)"
        ))),
        _ => Err(bad(format!("{name:?} names several libraries; use its path or id"))),
    }
}

/// A user by name or numeric id. Blocking.
pub(crate) fn resolve_user(c: &rusqlite::Connection, who: &str) -> Result<User> {
    if let Some(u) = users::by_name(c, who)? {
        return Ok(u);
    }
    if let Ok(id) = who.parse::<i64>() {
        if let Some(u) = users::by_id(c, UserId(id))? {
            return Ok(u);
        }
    }
    Err(bad(format!("no user {who:?}")))
}

fn resolve_type(c: &rusqlite::Connection, name: &str) -> Result<q::TypeRow> {
    q::type_by_name(c, name)?.ok_or_else(|| {
        let known = q::types(c)
            .map(|t| t.into_iter().map(|t| t.name).collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        bad(format!("no account type {name:?} (known: {known})"))
    })
}

/// A registration token as listed (never the token itself).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenInfo {
    pub id: i64,
    #[serde(rename = "type")]
    pub type_name: String,
    pub libraries: Vec<String>,
    pub created: i64,
    pub expires: Option<i64>,
    pub note: Option<String>,
}

/// A freshly created token: shown once.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewToken {
    pub id: i64,
    pub token: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub libraries: Vec<String>,
    pub expires: Option<i64>,
}

/// Creates a one-use registration token. `expires_in` in seconds (default
/// 7 days: an invite lying around forever is a risk). Blocking.
pub fn create_token(
    db: &Db,
    actor: Actor,
    type_name: &str,
    libraries: &[String],
    expires_in: Option<i64>,
    note: Option<&str>,
) -> Result<NewToken> {
    let token = new_token();
    let hash = digest(&normalize_token(&token));
    let now = db::now();
    let expires = Some(now + expires_in.unwrap_or(7 * 86_400));
    let by = match actor {
        Actor::User(u) => Some(u),
        Actor::Console => None,
    };
    let (id, type_name, names) = write_checked(db, |tx| {
        let auth = authority(tx, actor)?;
        let t = resolve_type(tx, type_name)?;
        auth.may_grant_type(&t)?;
        let mut roots = Vec::new();
        let mut names = Vec::new();
        for l in libraries {
            let (_, root) = resolve_library(tx, l)?;
            auth.may_grant_library(tx, root)?;
            roots.push(root);
            names.push(root_name(tx, root)?);
        }
        let id = q::insert_token(tx, &hash, t.id, &roots, now, expires, by, note)?;
        Ok((id, t.name, names))
    })?;
    log::info!("registration token {id} created ({type_name}, libraries {names:?})");
    Ok(NewToken {
        id,
        token,
        type_name,
        libraries: names,
        expires,
    })
}

fn root_name(c: &rusqlite::Connection, root: CatalogId) -> Result<String, DbError> {
    Ok(catalogs::by_id(c, root)?
        .map(|c| c.name)
        .unwrap_or_else(|| format!("#{}", root.0)))
}

pub(crate) fn list_tokens(db: &Db) -> Result<Vec<TokenInfo>> {
    Ok(db.read(|c| {
        let mut out = Vec::new();
        for t in q::tokens(c)? {
            let mut libs = Vec::new();
            for r in &t.roots {
                libs.push(root_name(c, *r)?);
            }
            out.push(TokenInfo {
                id: t.id,
                type_name: q::type_by_id(c, t.account_type_id)?
                    .map(|t| t.name)
                    .unwrap_or_default(),
                libraries: libs,
                created: t.created,
                expires: t.expires,
                note: t.note,
            });
        }
        Ok(out)
    })?)
}

/// Withdraws a pending token (one of a type the actor may grant). Blocking.
pub(crate) fn delete_token(db: &Db, actor: Actor, id: i64) -> Result<()> {
    write_checked(db, |tx| {
        let auth = authority(tx, actor)?;
        let t = q::tokens(tx)?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| Error::NotFound(format!("no registration token {id}")))?;
        if let Some(ty) = q::type_by_id(tx, t.account_type_id)? {
            auth.may_grant_type(&ty)?;
        }
        q::delete_token(tx, id)?;
        Ok(())
    })
}

/// A user as the admin API lists them.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserSummary {
    pub id: i64,
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub disabled: bool,
    pub create_time: i64,
    pub last_login: Option<i64>,
    pub libraries: Vec<String>,
    pub access_keys: usize,
}

pub(crate) fn list_users(db: &Db) -> Result<Vec<UserSummary>> {
    Ok(db.read(|c| {
        let keys = q::keys(c, None)?;
        let mut out = Vec::new();
        for u in users::list(c)? {
            let mut libs = Vec::new();
            for r in users::roots(c, u.id)? {
                libs.push(root_name(c, r)?);
            }
            out.push(UserSummary {
                id: u.id.0,
                name: u.name.clone(),
                type_name: q::type_by_id(c, u.account_type_id)?
                    .map(|t| t.name)
                    .unwrap_or_default(),
                disabled: u.disabled,
                create_time: u.create_time,
                last_login: u.last_login,
                libraries: libs,
                access_keys: keys.iter().filter(|k| k.user_id == u.id).count(),
            });
        }
        Ok(out)
    })?)
}

/// Runs `f` in one write transaction that commits only when `f` succeeds:
/// a refusal found after a change (e.g. the last admin demoted) undoes it.
pub(crate) fn write_checked<T>(
    db: &Db,
    f: impl FnOnce(&rusqlite::Transaction) -> Result<T>,
) -> Result<T> {
    let mut refusal = None;
    let r = db.write(|tx| match f(tx) {
        Ok(v) => Ok(v),
        Err(e) => {
            refusal = Some(e);
            Err(DbError::Join("refused".into()))
        }
    });
    match (r, refusal) {
        (Ok(v), _) => Ok(v),
        (Err(_), Some(e)) => Err(e),
        (Err(e), None) => Err(e.into()),
    }
}

/// Gives `who` account type `type_name`. Blocking.
pub fn set_type(db: &Db, actor: Actor, who: &str, type_name: &str) -> Result<UserSummary> {
    let uid = admin_change(db, |tx| {
        let auth = authority(tx, actor)?;
        let u = resolve_user(tx, who)?;
        let t = resolve_type(tx, type_name)?;
        auth.may_manage(tx, &u)?;
        auth.may_grant_type(&t)?;
        users::set_type(tx, u.id, t.id, db::now())?;
        Ok(u.id)
    })?;
    log::info!("account {who} is now of type {type_name}");
    summary(db, uid)
}

/// Disables or enables `who`. A disabled account cannot log in; disabling
/// revokes its access keys and share links (the caller ends its sessions),
/// so enabling it again revives none of them. Blocking.
pub fn set_disabled(db: &Db, actor: Actor, who: &str, disabled: bool) -> Result<UserSummary> {
    let (uid, keys, links) = admin_change(db, |tx| {
        let auth = authority(tx, actor)?;
        let u = resolve_user(tx, who)?;
        auth.may_manage(tx, &u)?;
        users::set_disabled(tx, u.id, disabled, db::now())?;
        if !disabled {
            return Ok((u.id, 0, 0));
        }
        let keys = q::delete_keys_of(tx, u.id)?;
        let links = crate::db::shares::delete_of_user(tx, u.id)?;
        Ok((u.id, keys, links))
    })?;
    if disabled {
        log::info!("account {who} disabled; {keys} access keys and {links} share links revoked");
    } else {
        log::info!("account {who} enabled");
    }
    summary(db, uid)
}

fn summary(db: &Db, uid: UserId) -> Result<UserSummary> {
    list_users(db)?
        .into_iter()
        .find(|u| u.id == uid.0)
        .ok_or_else(|| Error::NotFound(format!("no user {}", uid.0)))
}

/// An access key as listed (never the key).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    pub id: i64,
    pub user_id: i64,
    pub user: String,
    pub label: String,
    pub created: i64,
    pub last_used: Option<i64>,
}

impl From<q::KeyRow> for KeyInfo {
    fn from(k: q::KeyRow) -> Self {
        KeyInfo {
            id: k.id,
            user_id: k.user_id.0,
            user: k.user_name,
            label: k.label,
            created: k.created,
            last_used: k.last_used,
        }
    }
}

pub(crate) fn list_keys(db: &Db, user: Option<UserId>) -> Result<Vec<KeyInfo>> {
    Ok(db
        .read(|c| q::keys(c, user))?
        .into_iter()
        .map(KeyInfo::from)
        .collect())
}

/// A new access key for `user` (another device). Blocking.
pub fn create_key(db: &Db, user: UserId, label: &str) -> Result<(KeyInfo, String)> {
    let key = new_key();
    let hash = digest(&key);
    let id = db.write(|tx| q::insert_key(tx, user, &hash, label, db::now()))?;
    let info = list_keys(db, Some(user))?
        .into_iter()
        .find(|k| k.id == id)
        .expect("just inserted");
    Ok((info, key))
}

/// Revokes key `id`; `only_of` limits it to one user's keys (a user
/// revoking their own device). Anyone else's key only by an actor that may
/// manage its owner. Blocking.
pub(crate) fn revoke_key(
    db: &Db,
    actor: Actor,
    id: i64,
    only_of: Option<UserId>,
) -> Result<KeyInfo> {
    let k = write_checked(db, |tx| {
        let k = q::keys(tx, only_of)?
            .into_iter()
            .find(|k| k.id == id)
            .ok_or_else(|| Error::NotFound(format!("no access key {id}")))?;
        if actor != Actor::User(k.user_id) {
            let owner = users::by_id(tx, k.user_id)?
                .ok_or_else(|| Error::NotFound(format!("no access key {id}")))?;
            authority(tx, actor)?.may_manage(tx, &owner)?;
        }
        q::delete_key(tx, k.id)?;
        Ok(k)
    })?;
    log::info!(
        "access key {} ({}) of {} revoked",
        k.id,
        k.label,
        k.user_name
    );
    Ok(k.into())
}

pub(crate) fn list_types(db: &Db) -> Result<Vec<AccountType>> {
    Ok(db
        .read(q::types)?
        .into_iter()
        .map(AccountType::from)
        .collect())
}

/// Creates or changes a custom account type. Built-in types are fixed; an
/// account may only set permissions it holds, on a type holding no more
/// than it does; a change that would leave no admin is refused. Blocking.
pub fn upsert_type(db: &Db, actor: Actor, name: &str, perms: &str) -> Result<AccountType> {
    let perms = Perms::parse(perms).map_err(bad)?;
    crate::config::validate_user_name(name).map_err(|e| bad(format!("type name {name:?}: {e}")))?;
    let t = admin_change(db, |tx| {
        let auth = authority(tx, actor)?;
        if let Some(t) = q::type_by_name(tx, name)? {
            if t.builtin {
                return Err(bad(format!(
                    "{name:?} is a built-in type and cannot change; create a type of your own"
                )));
            }
            auth.may_grant_type(&t)?;
        }
        auth.may_grant_perms(&format!("type {name:?}"), perms)?;
        let id = q::upsert_type(tx, name, &perms.to_db())?;
        Ok(q::type_by_id(tx, id)?.expect("just written"))
    })?;
    log::info!("account type {} is now: {}", t.name, t.perms);
    Ok(t.into())
}

pub(crate) fn delete_type(db: &Db, actor: Actor, name: &str) -> Result<()> {
    admin_change(db, |tx| {
        let auth = authority(tx, actor)?;
        let t = resolve_type(tx, name)?;
        if t.builtin {
            return Err(bad(format!("{name:?} is a built-in type")));
        }
        auth.may_grant_type(&t)?;
        let uses = q::type_uses(tx, t.id)?;
        if uses > 0 {
            return Err(bad(format!(
                "type {name:?} is used by {uses} accounts or tokens; change those first"
            )));
        }
        q::delete_type(tx, t.id)?;
        Ok(())
    })
}

/// A library and who sees it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LibraryInfo {
    pub id: i64,
    pub name: String,
    pub path: String,
    pub kind: String,
    pub online: bool,
    pub root_id: Option<i64>,
    /// `name` or `name (config)` for grants from the config file.
    pub users: Vec<String>,
}

pub(crate) fn list_libraries(db: &Db) -> Result<Vec<LibraryInfo>> {
    Ok(db.read(|c| {
        let mut out = Vec::new();
        for l in libraries::list(c)? {
            let (name, users) = match l.root_id {
                Some(r) => (
                    root_name(c, r)?,
                    users::root_users(c, r)?
                        .into_iter()
                        .map(|(_, n, src)| {
                            if src == "config" {
                                format!("{n} (config)")
                            } else {
                                n
                            }
                        })
                        .collect(),
                ),
                None => (String::new(), Vec::new()),
            };
            out.push(LibraryInfo {
                id: l.id.0,
                name,
                path: l.path.clone(),
                kind: l.kind.clone(),
                online: l.online,
                root_id: l.root_id.map(|r| r.0),
                users,
            });
        }
        Ok(out)
    })?)
}

/// Lets `who` see `library` (or stops it). A grant written in the config
/// file's `users` cannot be revoked here: it would come back at the next
/// start. An account may only grant or revoke a library it sees, and
/// revoke only from an account holding no more than it does. Blocking.
pub fn set_grant(db: &Db, actor: Actor, library: &str, who: &str, grant: bool) -> Result<()> {
    write_checked(db, |tx| {
        let auth = authority(tx, actor)?;
        let (_, root) = resolve_library(tx, library)?;
        let u = resolve_user(tx, who)?;
        auth.may_grant_library(tx, root)?;
        if !grant {
            // Taking a library away from an account that holds more than
            // the actor would be a way to work against it.
            auth.may_manage(tx, &u)?;
        }
        if grant {
            users::grant_root_admin(tx, u.id, root)?;
            return Ok(());
        }
        match users::revoke_root_admin(tx, u.id, root)? {
            Some(true) => Ok(()),
            Some(false) => Err(bad(format!(
                "{} sees {library:?} because the config file lists them in its `users`; \
                 edit the config",
                u.name
            ))),
            None => Err(bad(format!("{} does not see {library:?}", u.name))),
        }
    })
}

// ---- What a session may change ------------------------------------------

fn no_change(what: &str) -> Error {
    Error::NoPermission(format!(
        "your account may change only what it uploaded or created; {what} is not yours \
         (it needs the `moderate` permission)"
    ))
}

/// −10002 unless `s` may edit, move or delete a file uploaded by
/// `uploader`: `moderate`, or `upload` and it is theirs.
pub(crate) fn check_change_file(s: &Session, uploader: Option<UserId>, id: FileId) -> Result<()> {
    s.require(Perm::Upload)?;
    if s.can(Perm::Moderate) || uploader == Some(s.user_id) {
        Ok(())
    } else {
        Err(no_change(&format!("file {}", id.0)))
    }
}

/// −10002 unless `s` may change catalog `id` (and, with `subtree`, every
/// catalog and file below it). Blocking.
pub(crate) fn check_change_catalog(
    c: &rusqlite::Connection,
    s: &Session,
    id: CatalogId,
    subtree: bool,
) -> Result<()> {
    s.require(Perm::Upload)?;
    if s.can(Perm::Moderate) {
        return Ok(());
    }
    let ids = if subtree {
        crate::db::trash::with_descendants(c, &[id])?
    } else {
        vec![id]
    };
    let foreign = q::count_catalogs_not_by(c, &ids, s.user_id)?;
    let foreign_files = if subtree {
        q::count_files_not_by(c, &ids, s.user_id)?
    } else {
        0
    };
    if foreign + foreign_files > 0 {
        return Err(no_change(&format!("catalog {}", id.0)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_keys_are_random_and_normalised() {
        let a = new_token();
        assert_eq!(a.len(), 32 + 7, "{a}");
        assert_ne!(a, new_token());
        assert_eq!(normalize_token(&a.to_uppercase()), a.replace('-', ""));
        assert_eq!(normalize_token(" INIT "), "init");
        let k = new_key();
        assert!(k.starts_with(KEY_PREFIX) && k.len() == KEY_PREFIX.len() + 64);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7d"), Ok(7 * 86_400));
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("2w"), Ok(14 * 86_400));
        assert!(parse_duration("7y").is_err());
        assert!(parse_duration("0d").is_err());
        assert!(parse_duration("").is_err());
    }
}
