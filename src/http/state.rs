//! Shared state handed to every handler, and the session lookup every
//! endpoint but login/logout/shareFile starts with.

use crate::auth::{Session, Sessions, COOKIE};
use crate::config::Config;
use crate::db::{users, Db};
use crate::error::{Error, Result};
use crate::library::{LibraryPlan, Scanner};
use crate::media::thumbcache::ThumbCache;

use axum::http::{header, HeaderMap};
use std::sync::{Arc, RwLock};
use std::time::Instant;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub cfg: Arc<Config>,
    pub sessions: Sessions,
    pub thumbs: Arc<ThumbCache>,
    pub scanner: Arc<Scanner>,
    pub plan: Arc<RwLock<LibraryPlan>>,
    pub started: Instant,
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
    /// The caller's live session, or −10001.
    pub async fn session(&self, headers: &HeaderMap) -> Result<(String, Session)> {
        let token = session_token(headers).ok_or(Error::NeedLogin)?;
        let (mut s, stale) = self.sessions.get(&token).ok_or(Error::NeedLogin)?;
        if stale {
            let uid = s.user_id;
            s.roots = self.db.read_async(move |c| users::roots(c, uid)).await?;
            self.sessions.refresh_roots(&token, s.roots.clone());
        }
        Ok((token, s))
    }
}
