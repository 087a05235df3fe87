//! `login.icc`, `logout.icc`, `helpInfo.icc`, `updateHelpInfo.icc`.

use crate::auth::{self, COOKIE};
use crate::browse::{self, HelpInfo, HelpTarget};
use crate::error::Error;
use crate::http::error::{ok, ok_empty, ApiError};
use crate::http::params::Params;
use crate::http::state::{session_token, AppState, Authed};
use crate::model::{CatalogId, FileId, User};
use crate::perms::Session;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::net::SocketAddr;

/// Spec §3.1. Never contains the password hash.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UserInfo {
    id: i64,
    name: String,
    create_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_login_date: Option<i64>,
    last_modify_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    help_int: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    help_text: Option<String>,
}

impl From<User> for UserInfo {
    fn from(u: User) -> Self {
        UserInfo {
            id: u.id.0,
            name: u.name,
            create_time: u.create_time,
            last_login_date: u.last_login,
            last_modify_time: u.last_modify,
            help_int: u.help_int,
            help_text: u.help_text,
        }
    }
}

/// Spec §3.5.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HelpInfoWire {
    #[serde(skip_serializing_if = "Option::is_none")]
    help_int: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    help_text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_modify_time: Option<i64>,
}

impl From<HelpInfo> for HelpInfoWire {
    fn from(h: HelpInfo) -> Self {
        HelpInfoWire {
            help_int: h.help_int,
            help_text: h.help_text,
            last_modify_time: h.last_modify,
        }
    }
}

pub(crate) async fn login(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    p: Params,
) -> Result<Response, ApiError> {
    p.check()?;
    let name = p.req_str("userName")?.to_string();
    let password = p.req_str("password")?.to_string();
    if password.chars().count() > auth::MAX_PASSWORD_CHARS || name.chars().count() > 256 {
        return Err(Error::BadLogin.into());
    }
    // Before the account is read: a disable or password reset committed
    // while the password is checked must win (see `Sessions::mark`).
    let mark = st.sessions.mark();
    let (user, perms) =
        auth::login(&st.db, &st.limiter, &st.hasher, peer.ip(), name, password).await?;
    let dir = st.cfg.default_user_path();
    let roots = browse::roots_of(&st.db, &dir, user.id, perms, None).await?;
    let token = st
        .sessions
        .create(
            Session {
                user_id: user.id,
                roots,
                perms,
                key_id: None,
            },
            mark,
        )
        .ok_or(Error::BadLogin)?;
    log::info!("login: user {} ({})", user.name, user.id);
    // HttpOnly: no script reads it. SameSite=Strict: a browser never sends
    // it with a request another site's page starts, not even a link
    // followed to here (Lax would send it on top-level GETs, and a GET can
    // change something: shareFileUrl.icc). The app keeps its own cookie
    // store and is unaffected; links meant for others are share links.
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
    let mut resp = ok(UserInfo::from(user));
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("hex cookie"),
    );
    Ok(resp)
}

pub(crate) async fn logout(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = session_token(&headers) {
        st.sessions.remove(&token);
    }
    let mut resp = ok_empty();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    resp.into_response()
}

/// `type` (0 user, 1 catalog, 2 file) and `id` (> 0 for 1 and 2).
fn help_target(p: &Params) -> Result<HelpTarget, Error> {
    let kind = p.req_int("type")?;
    let id = || match p.opt_int("id") {
        Some(id) if id > 0 => Ok(id),
        _ => Err(Error::BadParam(
            "id (> 0) is required for type 1 (catalog) and 2 (file)".into(),
        )),
    };
    match kind {
        0 => Ok(HelpTarget::User),
        1 => Ok(HelpTarget::Catalog(CatalogId(id()?))),
        2 => Ok(HelpTarget::File(FileId(id()?))),
        _ => Err(Error::BadParam(format!(
            "type must be 0 (user), 1 (catalog) or 2 (file), got {kind}"
        ))),
    }
}

pub(crate) async fn help_info(
    State(st): State<AppState>,
    Authed { s, p, .. }: Authed,
) -> Result<Response, ApiError> {
    let t = help_target(&p)?;
    let info = browse::help_info(&st.db, &s, t).await?;
    Ok(ok(HelpInfoWire::from(info)))
}

/// Longest `helpText` stored (bounded so one client cannot bloat the DB).
pub(crate) const MAX_HELP_TEXT_CHARS: usize = 65_536;

pub(crate) async fn update_help_info(
    State(st): State<AppState>,
    Authed { s, p, .. }: Authed,
) -> Result<Response, ApiError> {
    let t = help_target(&p)?;
    let help_int = p.opt_int("helpInt");
    let help_text = p
        .opt_text("helpText", MAX_HELP_TEXT_CHARS)
        .map(str::to_owned);
    if help_int.is_none() && help_text.is_none() {
        return Err(Error::BadParam("give helpInt and/or helpText".into()).into());
    }
    browse::update_help_info(&st.db, &s, t, help_int, help_text).await?;
    Ok(ok_empty())
}
