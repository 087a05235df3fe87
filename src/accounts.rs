//! Accounts, the hydrus-server way (see `shared/research/anchors.md` d):
//! account types with permissions; the first admin claims the server with
//! the one-time registration token `init` (or `isync admin init` on the
//! console); admins hand out one-use registration tokens bound to a type and
//! a set of libraries; redeeming one creates the account and an **access
//! key** (shown once) usable as `Authorization: Bearer <key>` on any call.
//!
//! Tokens and keys are random (128 and 256 bits) and stored only as SHA-256
//! digests: a stolen database does not let anyone register or sign in.
//! Every function here is blocking or async as its name says; handlers and
//! the CLI share them, so a rule is enforced in one place.

use crate::auth::Session;
use crate::db::{self, accounts as q, catalogs, libraries, users, Db, DbError};
use crate::error::{Error, Result};
use crate::model::{CatalogId, FileId, User, UserId};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The well-known first registration token (hydrus' `init`).
pub const INIT_TOKEN: &str = "init";
/// Prefix of access keys, so secret scanners and people recognise them.
pub const KEY_PREFIX: &str = "isync_";
/// Longest label of an access key (a device name).
pub const MAX_LABEL_CHARS: usize = 64;

/// One permission. Checked in the service layer for every endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    /// List catalogs and files, thumbnails, downloads, help info.
    Browse,
    /// Make share links of what the user can see.
    Share,
    /// Upload, create catalogs, edit and delete what the user uploaded or
    /// created.
    Upload,
    /// Edit and delete anything the user can see.
    Moderate,
    /// Users, account types, registration tokens, access keys.
    Accounts,
    /// Libraries and who sees them.
    Libraries,
    /// Start backups and see their state.
    Backup,
    /// List and revoke share links.
    Shares,
}

pub const ALL_PERMS: [(Perm, &str); 8] = [
    (Perm::Browse, "browse"),
    (Perm::Share, "share"),
    (Perm::Upload, "upload"),
    (Perm::Moderate, "moderate"),
    (Perm::Accounts, "accounts"),
    (Perm::Libraries, "libraries"),
    (Perm::Backup, "backup"),
    (Perm::Shares, "shares"),
];

impl Perm {
    fn bit(self) -> u16 {
        1 << ALL_PERMS
            .iter()
            .position(|(p, _)| *p == self)
            .expect("listed")
    }

    pub fn name(self) -> &'static str {
        ALL_PERMS
            .iter()
            .find(|(p, _)| *p == self)
            .expect("listed")
            .1
    }
}

/// A set of permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Perms(u16);

impl Perms {
    pub const ALL: Perms = Perms(0xff);

    pub fn has(self, p: Perm) -> bool {
        self.0 & p.bit() != 0
    }

    pub fn with(self, p: Perm) -> Perms {
        Perms(self.0 | p.bit())
    }

    /// Space- or comma-separated names; unknown names are an error.
    pub fn parse(s: &str) -> std::result::Result<Perms, String> {
        let mut out = Perms::default();
        for name in s.split([' ', ',']).map(str::trim).filter(|n| !n.is_empty()) {
            let p = ALL_PERMS
                .iter()
                .find(|(_, n)| n.eq_ignore_ascii_case(name))
                .map(|(p, _)| *p)
                .ok_or_else(|| {
                    format!(
                        "unknown permission {name:?} (known: {})",
                        ALL_PERMS.map(|(_, n)| n).join(", ")
                    )
                })?;
            out = out.with(p);
        }
        Ok(out)
    }

    pub fn names(self) -> Vec<&'static str> {
        ALL_PERMS
            .iter()
            .filter(|(p, _)| self.has(*p))
            .map(|(_, n)| *n)
            .collect()
    }

    /// The stored form: names separated by one space.
    pub fn to_db(self) -> String {
        self.names().join(" ")
    }
}

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

/// The permissions of type `id` (none when the type is gone).
pub fn perms_of_type(c: &rusqlite::Connection, id: i64) -> Result<Perms, DbError> {
    Ok(q::type_by_id(c, id)?
        .map(|t| Perms::parse(&t.perms).unwrap_or_default())
        .unwrap_or_default())
}

/// SHA-256 of a secret as stored.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A registration token as people type it: case, spaces and dashes do not
/// matter (`ABCD-ef01 …` is `abcdef01…`).
pub fn normalize_token(t: &str) -> String {
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
pub fn new_token() -> String {
    let h = random_hex(16);
    h.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("hex"))
        .collect::<Vec<_>>()
        .join("-")
}

/// A fresh access key: 256 random bits.
pub fn new_key() -> String {
    format!("{KEY_PREFIX}{}", random_hex(32))
}

fn bad(msg: impl Into<String>) -> Error {
    Error::BadParam(msg.into())
}

/// Whether any enabled account may manage accounts. Blocking.
pub fn has_admin(c: &rusqlite::Connection) -> Result<bool, DbError> {
    Ok(q::count_enabled_with_perm(c, Perm::Accounts.name())? > 0)
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
pub fn ensure_init_token(db: &Db) -> Result<bool> {
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
pub struct NewAccount {
    pub user: User,
    pub type_name: String,
    pub access_key: String,
    pub key_id: i64,
}

/// Redeems a registration token: creates the account `name` with the
/// token's type and libraries, and an access key labelled `label`. The
/// token is gone afterwards. `password_hash` is the Argon2 PHC string (hash
/// before calling: this runs in one short write transaction). Blocking.
pub fn redeem(
    db: &Db,
    token: &str,
    name: &str,
    password_hash: &str,
    label: &str,
) -> Result<NewAccount> {
    let hash = digest(&normalize_token(token));
    let key = new_key();
    let key_hash = digest(&key);
    let now = db::now();
    let r = db.write(|tx| {
        let Some(t) = q::token_by_hash(tx, &hash)? else {
            return Ok(Err(Error::BadLogin));
        };
        if t.expires.is_some_and(|e| e <= now) {
            q::delete_token(tx, t.id)?;
            return Ok(Err(Error::TokenExpired));
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

/// `isync admin init`: creates the first admin on the console (the other way
/// to claim a server). Refused once an admin exists. Blocking.
pub fn admin_init(db: &Db, name: &str, password_hash: &str, label: &str) -> Result<NewAccount> {
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
pub fn resolve_library(c: &rusqlite::Connection, name: &str) -> Result<(i64, CatalogId)> {
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
pub fn resolve_user(c: &rusqlite::Connection, who: &str) -> Result<User> {
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
pub struct TokenInfo {
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
    by: Option<UserId>,
    type_name: &str,
    libraries: &[String],
    expires_in: Option<i64>,
    note: Option<&str>,
) -> Result<NewToken> {
    let token = new_token();
    let hash = digest(&normalize_token(&token));
    let now = db::now();
    let expires = Some(now + expires_in.unwrap_or(7 * 86_400));
    let (id, type_name, names) = db.write(|tx| {
        let t = match resolve_type(tx, type_name) {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        let mut roots = Vec::new();
        let mut names = Vec::new();
        for l in libraries {
            match resolve_library(tx, l) {
                Ok((_, root)) => {
                    roots.push(root);
                    names.push(root_name(tx, root)?);
                }
                Err(e) => return Ok(Err(e)),
            }
        }
        let id = q::insert_token(tx, &hash, t.id, &roots, now, expires, by, note)?;
        Ok(Ok((id, t.name, names)))
    })??;
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

pub fn list_tokens(db: &Db) -> Result<Vec<TokenInfo>> {
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

pub fn delete_token(db: &Db, id: i64) -> Result<()> {
    if db.write(|tx| q::delete_token(tx, id))? {
        Ok(())
    } else {
        Err(Error::NotFound(format!("no registration token {id}")))
    }
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

pub fn list_users(db: &Db) -> Result<Vec<UserSummary>> {
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

/// Refuses a change that would leave no enabled account able to manage
/// accounts (the server could not be administered any more).
fn keep_an_admin(c: &rusqlite::Connection) -> Result<()> {
    if has_admin(c)? {
        Ok(())
    } else {
        Err(bad(
            "refused: this would leave no enabled admin (make another admin first)",
        ))
    }
}

/// Runs `f` in one write transaction that commits only when `f` succeeds:
/// a refusal found after a change (e.g. the last admin demoted) undoes it.
pub fn write_checked<T>(db: &Db, f: impl FnOnce(&rusqlite::Transaction) -> Result<T>) -> Result<T> {
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
pub fn set_type(db: &Db, who: &str, type_name: &str) -> Result<UserSummary> {
    let uid = write_checked(db, |tx| {
        let u = resolve_user(tx, who)?;
        let t = resolve_type(tx, type_name)?;
        users::set_type(tx, u.id, t.id, db::now())?;
        keep_an_admin(tx)?;
        Ok(u.id)
    })?;
    log::info!("account {who} is now of type {type_name}");
    summary(db, uid)
}

/// Disables or enables `who`. A disabled account cannot log in, and its
/// sessions and access keys stop working at once. Blocking.
pub fn set_disabled(db: &Db, who: &str, disabled: bool) -> Result<UserSummary> {
    let uid = write_checked(db, |tx| {
        let u = resolve_user(tx, who)?;
        users::set_disabled(tx, u.id, disabled, db::now())?;
        keep_an_admin(tx)?;
        Ok(u.id)
    })?;
    log::info!(
        "account {who} {}",
        if disabled { "disabled" } else { "enabled" }
    );
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

pub fn list_keys(db: &Db, user: Option<UserId>) -> Result<Vec<KeyInfo>> {
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
/// revoking their own device). Blocking.
pub fn revoke_key(db: &Db, id: i64, only_of: Option<UserId>) -> Result<KeyInfo> {
    let key = db.write(|tx| {
        let k = q::keys(tx, only_of)?.into_iter().find(|k| k.id == id);
        if let Some(k) = &k {
            q::delete_key(tx, k.id)?;
        }
        Ok(k)
    })?;
    let k = key.ok_or_else(|| Error::NotFound(format!("no access key {id}")))?;
    log::info!(
        "access key {} ({}) of {} revoked",
        k.id,
        k.label,
        k.user_name
    );
    Ok(k.into())
}

pub fn list_types(db: &Db) -> Result<Vec<AccountType>> {
    Ok(db
        .read(q::types)?
        .into_iter()
        .map(AccountType::from)
        .collect())
}

/// Creates or changes a custom account type. Built-in types are fixed.
pub fn upsert_type(db: &Db, name: &str, perms: &str) -> Result<AccountType> {
    let perms = Perms::parse(perms).map_err(bad)?;
    crate::config::validate_user_name(name).map_err(|e| bad(format!("type name {name:?}: {e}")))?;
    let t = db.write(|tx| {
        if let Some(t) = q::type_by_name(tx, name)? {
            if t.builtin {
                return Ok(Err(bad(format!(
                    "{name:?} is a built-in type and cannot change; create a type of your own"
                ))));
            }
        }
        let id = q::upsert_type(tx, name, &perms.to_db())?;
        Ok(Ok(q::type_by_id(tx, id)?.expect("just written")))
    })??;
    Ok(t.into())
}

pub fn delete_type(db: &Db, name: &str) -> Result<()> {
    db.write(|tx| {
        let t = match resolve_type(tx, name) {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        if t.builtin {
            return Ok(Err(bad(format!("{name:?} is a built-in type"))));
        }
        let uses = q::type_uses(tx, t.id)?;
        if uses > 0 {
            return Ok(Err(bad(format!(
                "type {name:?} is used by {uses} accounts or tokens; change those first"
            ))));
        }
        q::delete_type(tx, t.id)?;
        Ok(Ok(()))
    })?
}

/// A library and who sees it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LibraryInfo {
    pub id: i64,
    pub name: String,
    pub path: String,
    pub kind: String,
    pub online: bool,
    pub root_id: Option<i64>,
    /// `name` or `name (config)` for grants from the config file.
    pub users: Vec<String>,
}

pub fn list_libraries(db: &Db) -> Result<Vec<LibraryInfo>> {
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
/// start. Blocking.
pub fn set_grant(db: &Db, library: &str, who: &str, grant: bool) -> Result<()> {
    write_checked(db, |tx| {
        let (_, root) = resolve_library(tx, library)?;
        let u = resolve_user(tx, who)?;
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
pub fn check_change_file(s: &Session, uploader: Option<UserId>, id: FileId) -> Result<()> {
    s.require(Perm::Upload)?;
    if s.can(Perm::Moderate) || uploader == Some(s.user_id) {
        Ok(())
    } else {
        Err(no_change(&format!("file {}", id.0)))
    }
}

/// −10002 unless `s` may change catalog `id` (and, with `subtree`, every
/// catalog and file below it). Blocking.
pub fn check_change_catalog(
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
    let list =
        serde_json::to_string(&ids.iter().map(|c| c.0).collect::<Vec<_>>()).expect("ids serialise");
    let foreign: i64 = c
        .query_row(
            "SELECT count(*) FROM catalogs WHERE id IN (SELECT value FROM json_each(?1)) \
         AND created_by IS NOT ?2",
            rusqlite::params![list, s.user_id.0],
            |r| r.get(0),
        )
        .map_err(DbError::from)?;
    let foreign_files: i64 = if subtree {
        c.query_row(
            "SELECT count(*) FROM files WHERE (catalog_id IN (SELECT value FROM json_each(?1)) \
             OR real_catalog_id IN (SELECT value FROM json_each(?1))) AND upload_user_id IS NOT ?2",
            rusqlite::params![list, s.user_id.0],
            |r| r.get(0),
        )
        .map_err(DbError::from)?
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
    fn perms_parse_and_print() {
        let p = Perms::parse("browse, upload share").unwrap();
        assert!(p.has(Perm::Browse) && p.has(Perm::Upload) && p.has(Perm::Share));
        assert!(!p.has(Perm::Moderate));
        assert_eq!(p.to_db(), "browse share upload");
        assert!(Perms::parse("browse fly").unwrap_err().contains("fly"));
        assert_eq!(Perms::ALL.names().len(), ALL_PERMS.len());
    }

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
