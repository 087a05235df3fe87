//! Shared state handed to every handler, and where the session lookup
//! every endpoint but login/logout/shareFile starts with finds the
//! caller's credentials (the lookup itself is `auth`'s).

use crate::auth::{self, Hasher, Sessions, COOKIE};
use crate::backup::Backups;
use crate::clock::Clock;
use crate::config::Config;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::library::{LibraryPlan, Scanner};
use crate::media::thumbcache::ThumbCache;
use crate::perms::{Perm, Session};
use crate::ratelimit::LoginLimiter;

use crate::http::error::ApiError;
use crate::http::params::Params;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};
use std::time::Instant;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub cfg: Arc<Config>,
    pub sessions: Sessions,
    pub thumbs: Arc<ThumbCache>,
    /// The pre-render worker filling `thumbs` (its handle; started by the app).
    pub prerender: crate::media::prerender::Prerender,
    pub scanner: Arc<Scanner>,
    pub plan: Arc<RwLock<LibraryPlan>>,
    pub started: Instant,
    pub limiter: Arc<LoginLimiter>,
    /// Password checks: bounded queue, counted.
    pub hasher: Hasher,
    pub backups: Arc<Backups>,
    /// What session, share-link and login-limit expiry are measured by:
    /// the real clock, which a test can advance.
    pub clock: Clock,
}

/// The access key of `Authorization: Bearer <key>`, if any.
pub(crate) fn bearer_key(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim()
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// The `session` cookie's value, if any.
pub(crate) fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_string())
}

impl AppState {
    /// The caller's live session — from an access key (`Authorization:
    /// Bearer`) or the `session` cookie — or −10001 (see
    /// [`auth::session_of`], which re-validates a stale one).
    pub(crate) async fn session(&self, headers: &HeaderMap) -> Result<(String, Session)> {
        let credential = match bearer_key(headers) {
            Some(key) => auth::Credential::Key(key),
            None => auth::Credential::Cookie(session_token(headers).ok_or(Error::NeedLogin)?),
        };
        auth::session_of(&self.db, &self.sessions, credential).await
    }
}

/// The opening of every authenticated `.icc` handler, as an extractor: the
/// request's parameters are read (query and body, see [`Params`]), then the
/// caller's session is looked up (−10001 without one), then a malformed
/// body is reported (−10003) — in that order, so a missing login is always
/// answered before bad input. A handler that takes `Authed` cannot forget
/// to authenticate. `E` is the handler's error form (JSON or binary); `N`
/// the permission the route needs ([`Need`]), checked right after the
/// session and before the body, so a caller without it learns nothing about
/// its input.
pub(crate) struct Authed<E = ApiError, N: Need = AnyUser> {
    /// The caller's session.
    pub s: Session,
    /// The request's parameters, already checked for a malformed body.
    pub p: Params,
    /// The session's token (cookie value or `key:<digest>`).
    pub token: String,
    error: PhantomData<fn() -> (E, N)>,
}

/// The permission a route needs, as a type (see [`Authed`]).
pub(crate) trait Need {
    const PERM: Option<Perm>;
}

macro_rules! needs {
    ($($(#[$doc:meta])* $name:ident => $perm:expr;)*) => {$(
        $(#[$doc])*
        pub struct $name;
        impl Need for $name {
            const PERM: Option<Perm> = $perm;
        }
    )*};
}

needs! {
    /// Any signed-in account.
    AnyUser => None;
    /// `browse`: listing files.
    NeedBrowse => Some(Perm::Browse);
    /// `accounts`: users, types and registration tokens.
    NeedAccounts => Some(Perm::Accounts);
    /// `libraries`: which account sees which library.
    NeedLibraries => Some(Perm::Libraries);
    /// `backup`: starting and following backups.
    NeedBackup => Some(Perm::Backup);
}

impl<E, N> FromRequest<AppState> for Authed<E, N>
where
    E: From<Error> + IntoResponse,
    N: Need,
{
    type Rejection = E;

    async fn from_request(req: Request, st: &AppState) -> std::result::Result<Self, E> {
        let headers = req.headers().clone();
        let p = match Params::from_request(req, st).await {
            Ok(p) => p,
            Err(never) => match never {},
        };
        let (token, s) = st.session(&headers).await?;
        if let Some(perm) = N::PERM {
            s.require(perm)?;
        }
        p.check()?;
        Ok(Authed {
            s,
            p,
            token,
            error: PhantomData,
        })
    }
}
