//! Shared state handed to every handler, and the session lookup every
//! endpoint but login/logout/shareFile starts with.

use crate::accounts;
use crate::auth::{self, Hasher, Session, Sessions, COOKIE};
use crate::backup::Backups;
use crate::clock::Clock;
use crate::config::Config;
use crate::db::{accounts as accounts_db, Db};
use crate::error::{Error, Result};
use crate::library::{LibraryPlan, Scanner};
use crate::media::thumbcache::ThumbCache;
use crate::ratelimit::LoginLimiter;

use axum::http::{header, HeaderMap};
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
pub fn bearer_key(headers: &HeaderMap) -> Option<&str> {
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
pub fn session_token(headers: &HeaderMap) -> Option<String> {
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
    /// Bearer`) or the `session` cookie — or −10001. A session made stale
    /// by an account change re-reads its user first: a disabled account or
    /// a revoked key ends here.
    pub async fn session(&self, headers: &HeaderMap) -> Result<(String, Session)> {
        if let Some(key) = bearer_key(headers) {
            return self.key_session(key).await;
        }
        let token = session_token(headers).ok_or(Error::NeedLogin)?;
        let (mut s, stale) = self.sessions.get(&token).ok_or(Error::NeedLogin)?;
        if stale {
            let (uid, key) = (s.user_id, s.key_id);
            match self
                .db
                .read_async(move |c| auth::revalidate(c, uid, key))
                .await?
            {
                Some((perms, roots)) => {
                    s.perms = perms;
                    s.roots = roots;
                    self.sessions.refresh(&token, perms, s.roots.clone());
                }
                None => {
                    self.sessions.remove(&token);
                    return Err(Error::NeedLogin);
                }
            }
        }
        Ok((token, s))
    }

    async fn key_session(&self, key: &str) -> Result<(String, Session)> {
        let digest = accounts::digest(key);
        let token = format!("key:{}", hex::encode(digest));
        if let Some((mut s, stale)) = self.sessions.get_key(&token) {
            if !stale {
                return Ok((token, s));
            }
            let (uid, kid) = (s.user_id, s.key_id);
            return match self
                .db
                .read_async(move |c| auth::revalidate(c, uid, kid))
                .await?
            {
                Some((perms, roots)) => {
                    s.perms = perms;
                    s.roots = roots;
                    self.sessions.refresh(&token, perms, s.roots.clone());
                    Ok((token, s))
                }
                None => {
                    self.sessions.remove_key(&token);
                    Err(Error::NeedLogin)
                }
            };
        }
        // Before the read: a disable or reset committed after it ends the
        // user's sessions, and this one must not be kept past that.
        let mark = self.sessions.mark();
        let found = self
            .db
            .read_async(move |c| {
                let Some((kid, uid)) = accounts_db::key_by_hash(c, &digest)? else {
                    return Ok(None);
                };
                Ok(auth::revalidate(c, uid, Some(kid))?.map(|v| (kid, uid, v)))
            })
            .await?;
        let Some((kid, uid, (perms, roots))) = found else {
            return Err(Error::NeedLogin);
        };
        // Last use is recorded once per server run and key (not per call).
        self.db
            .write_async(move |tx| accounts_db::touch_key(tx, kid, crate::db::now()))
            .await?;
        let s = Session {
            user_id: uid,
            roots,
            perms,
            key_id: Some(kid),
        };
        if !self.sessions.insert_key(token.clone(), s.clone(), mark) {
            return Err(Error::NeedLogin);
        }
        Ok((token, s))
    }
}
