//! The account commands the admin API runs, each `async` and done on the
//! blocking pool (the service convention, see the crate's top comment).
//! The blocking forms in [`super`] are what the console (`admin`, the CLI)
//! runs on its own thread; these run them, so a rule still lives in one
//! place.

use super::{
    AccountType, Actor, KeyInfo, LibraryInfo, NewAccount, NewToken, TokenInfo, UserSummary,
};
use crate::db::{accounts as q, catalogs, libraries, users, Db};
use crate::error::Result;
use crate::model::{User, UserId};
use crate::perms::{self, Perms};

/// Runs `f` on the blocking pool.
async fn pooled<T: Send + 'static>(
    db: &Db,
    f: impl FnOnce(&Db) -> Result<T> + Send + 'static,
) -> Result<T> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || f(&db)).await?
}

/// How many libraries the server has, how many are online, and whether it
/// still waits for its first admin (`/api/v1/info`, the welcome page).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Overview {
    pub libraries: usize,
    pub libraries_online: usize,
    pub needs_admin: bool,
}

pub(crate) async fn overview(db: &Db) -> Result<Overview> {
    let (libs, has_admin) = db
        .read_async(|c| Ok((libraries::list(c)?, super::has_admin(c)?)))
        .await?;
    Ok(Overview {
        libraries: libs.len(),
        libraries_online: libs.iter().filter(|l| l.online).count(),
        needs_admin: !has_admin,
    })
}

/// An account as its owner sees it: the user, its type's name and
/// permissions, and the libraries (root catalogs) it sees, by name.
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    pub user: User,
    pub type_name: String,
    pub perms: Perms,
    pub libraries: Vec<String>,
}

/// The profile of `user`, `None` when there is no such user.
pub(crate) async fn profile(db: &Db, user: UserId) -> Result<Option<Profile>> {
    Ok(db
        .read_async(move |c| {
            let Some(u) = users::by_id(c, user)? else {
                return Ok(None);
            };
            let type_name = q::type_by_id(c, u.account_type_id)?
                .map(|t| t.name)
                .unwrap_or_default();
            let perms = perms::of_type(c, u.account_type_id)?;
            let mut libraries = Vec::new();
            for r in users::roots(c, user)? {
                if let Some(cat) = catalogs::by_id(c, r)? {
                    libraries.push(cat.name);
                }
            }
            Ok(Some(Profile {
                user: u,
                type_name,
                perms,
                libraries,
            }))
        })
        .await?)
}

/// The id of the user named (or numbered) `who`, or −10003.
pub(crate) async fn user_id(db: &Db, who: String) -> Result<UserId> {
    pooled(db, move |db| {
        Ok(db.read(|c| Ok(super::resolve_user(c, &who)))??.id)
    })
    .await
}

/// See [`super::check_redeemable`].
pub(crate) async fn check_redeemable(db: &Db, token: String, name: String) -> Result<()> {
    pooled(db, move |db| super::check_redeemable(db, &token, &name)).await
}

/// See [`super::redeem`].
pub(crate) async fn redeem(
    db: &Db,
    token: String,
    name: String,
    password_hash: String,
    label: String,
    now: i64,
) -> Result<NewAccount> {
    pooled(db, move |db| {
        super::redeem(db, &token, &name, &password_hash, &label, now)
    })
    .await
}

pub(crate) async fn list_keys(db: &Db, user: Option<UserId>) -> Result<Vec<KeyInfo>> {
    pooled(db, move |db| super::list_keys(db, user)).await
}

pub(crate) async fn create_key(db: &Db, user: UserId, label: String) -> Result<(KeyInfo, String)> {
    pooled(db, move |db| super::create_key(db, user, &label)).await
}

pub(crate) async fn revoke_key(
    db: &Db,
    actor: Actor,
    id: i64,
    only_of: Option<UserId>,
) -> Result<KeyInfo> {
    pooled(db, move |db| super::revoke_key(db, actor, id, only_of)).await
}

pub(crate) async fn list_users(db: &Db) -> Result<Vec<UserSummary>> {
    pooled(db, super::list_users).await
}

pub(crate) async fn set_type(
    db: &Db,
    actor: Actor,
    who: String,
    type_name: String,
) -> Result<UserSummary> {
    pooled(db, move |db| super::set_type(db, actor, &who, &type_name)).await
}

pub(crate) async fn set_disabled(
    db: &Db,
    actor: Actor,
    who: String,
    disabled: bool,
) -> Result<UserSummary> {
    pooled(db, move |db| super::set_disabled(db, actor, &who, disabled)).await
}

pub(crate) async fn list_types(db: &Db) -> Result<Vec<AccountType>> {
    pooled(db, super::list_types).await
}

pub(crate) async fn upsert_type(
    db: &Db,
    actor: Actor,
    name: String,
    perms: String,
) -> Result<AccountType> {
    pooled(db, move |db| super::upsert_type(db, actor, &name, &perms)).await
}

pub(crate) async fn delete_type(db: &Db, actor: Actor, name: String) -> Result<()> {
    pooled(db, move |db| super::delete_type(db, actor, &name)).await
}

pub(crate) async fn list_tokens(db: &Db) -> Result<Vec<TokenInfo>> {
    pooled(db, super::list_tokens).await
}

pub(crate) async fn create_token(
    db: &Db,
    actor: Actor,
    type_name: String,
    libraries: Vec<String>,
    expires_in: Option<i64>,
    note: Option<String>,
) -> Result<NewToken> {
    pooled(db, move |db| {
        super::create_token(
            db,
            actor,
            &type_name,
            &libraries,
            expires_in,
            note.as_deref(),
        )
    })
    .await
}

pub(crate) async fn delete_token(db: &Db, actor: Actor, id: i64) -> Result<()> {
    pooled(db, move |db| super::delete_token(db, actor, id)).await
}

pub(crate) async fn list_libraries(db: &Db) -> Result<Vec<LibraryInfo>> {
    pooled(db, super::list_libraries).await
}

pub(crate) async fn set_grant(
    db: &Db,
    actor: Actor,
    library: String,
    who: String,
    grant: bool,
) -> Result<()> {
    pooled(db, move |db| {
        super::set_grant(db, actor, &library, &who, grant)
    })
    .await
}
