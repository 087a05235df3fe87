//! The admin API under `/api/v1/` (JSON, the `.icc` envelope: `{code, data}`
//! or `{code, msg}`), and the welcome page at `/`. Parameters come as for
//! the `.icc` endpoints: query string, form or JSON object body; lists are
//! comma-separated. Callers authenticate with the `session` cookie of
//! `login.icc` or `Authorization: Bearer <access key>`; each route checks
//! its permission (`perms::Perm`) before doing anything.

use crate::accounts::{self, pool, Actor};
use crate::auth;
use crate::error::Error;
use crate::http::error::{ok, ok_empty, ApiError};
use crate::http::params::Params;
use crate::http::state::{AnyUser, AppState, Authed, NeedAccounts, NeedBackup, NeedLibraries};
use crate::model::{FileId, UserId};
use crate::perms::Perm;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;
use std::net::SocketAddr;

type ApiResult = Result<Response, ApiError>;

fn list_param(p: &Params, key: &str) -> Vec<String> {
    p.raw(key)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn label_param(p: &Params, headers: &HeaderMap) -> Result<String, Error> {
    let label = match p.raw("label") {
        Some(l) => l.trim().to_string(),
        None => headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("device")
            .chars()
            .take(accounts::MAX_LABEL_CHARS)
            .collect(),
    };
    let n = label.chars().count();
    if n == 0 || n > accounts::MAX_LABEL_CHARS || label.chars().any(char::is_control) {
        return Err(Error::BadParam(format!(
            "label must be 1 to {} printable characters",
            accounts::MAX_LABEL_CHARS
        )));
    }
    Ok(label)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Info {
    server: &'static str,
    version: &'static str,
    uptime_secs: u64,
    libraries: usize,
    libraries_online: usize,
    /// True until the first admin has claimed the server.
    needs_admin: bool,
    storage: StorageWire,
}

/// The data dir's disk (the SD card) against its reserve
/// (`storage.data_min_free_bytes`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StorageWire {
    data_free_bytes: u64,
    data_reserve_bytes: u64,
    /// Uploads onto that disk are refused (−10014): below its reserve or
    /// below `upload.min_free_bytes`, whichever is larger.
    uploads_paused: bool,
    /// Why, for a person ("SD card nearly full: …"); absent when fine.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

async fn info_of(st: &AppState) -> crate::error::Result<Info> {
    let o = pool::overview(&st.db).await?;
    let (room, uploads_paused) = crate::upload::data_dir_room(&st.cfg).await?;
    Ok(Info {
        server: "isync",
        version: env!("CARGO_PKG_VERSION"),
        uptime_secs: st.started.elapsed().as_secs(),
        libraries: o.libraries,
        libraries_online: o.libraries_online,
        needs_admin: o.needs_admin,
        storage: StorageWire {
            data_free_bytes: room.free,
            data_reserve_bytes: room.reserve,
            uploads_paused,
            note: room.note(),
        },
    })
}

/// `GET /api/v1/info`: who this server is. No login needed.
pub(crate) async fn info(State(st): State<AppState>) -> ApiResult {
    Ok(ok(info_of(&st).await?))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET /`: the welcome page (like hydrus'): name, version, uptime,
/// libraries online, and a form to redeem a registration token.
pub(crate) async fn welcome(State(st): State<AppState>) -> Response {
    let i = match info_of(&st).await {
        Ok(i) => i,
        Err(e) => return ApiError(e).into_response(),
    };
    let up = i.uptime_secs;
    let uptime = format!("{}d {}h {}m", up / 86_400, up / 3600 % 24, up / 60 % 60);
    let claim = if i.needs_admin {
        "<p class=warn>This server has no admin yet. Claim it with the one-time token \
         <code>init</code> below, or run <code>sudo isync admin init NAME</code> on its console.</p>"
    } else {
        ""
    };
    let storage = match &i.storage.note {
        Some(n) => format!("<p class=warn>{}</p>", esc(n)),
        None => String::new(),
    };
    Html(format!(
        r#"<!doctype html>
<html lang=en><head><meta charset=utf-8><meta name=viewport content="width=device-width">
<title>isync</title>
<style>body{{font:16px system-ui,sans-serif;max-width:36em;margin:2em auto;padding:0 1em}}
code{{background:#eee;padding:0 .2em}}.warn{{color:#a40}}input{{display:block;margin:.3em 0 .8em;padding:.3em;width:100%}}
#out{{white-space:pre-wrap;background:#f4f4f4;padding:.5em}}</style></head>
<body><h1>isync</h1>
<p>A family media server speaking the iSync API. Point iPrivate at this address (port {port}).</p>
<table><tr><td>version</td><td>{version}</td></tr><tr><td>uptime</td><td>{uptime}</td></tr>
<tr><td>libraries online</td><td>{online} of {libs}</td></tr></table>
{claim}{storage}
<h2>Join with an invitation</h2>
<form id=f><label>Registration token<input name=token required autocomplete=off></label>
<label>Pick a user name<input name=userName required autocomplete=username></label>
<label>Pick a password<input name=password type=password required autocomplete=new-password></label>
<button>Create my account</button></form><p id=out></p>
<script>
document.getElementById('f').onsubmit=async e=>{{e.preventDefault();
const b=Object.fromEntries(new FormData(e.target));b.label='web browser';
const r=await (await fetch('/api/v1/register',{{method:'POST',headers:{{'content-type':'application/json'}},body:JSON.stringify(b)}})).json();
document.getElementById('out').textContent=r.code===0?
'Welcome, '+r.data.user.name+'! Log in from iPrivate with your name and password.\nYour access key (shown once; keep it safe): '+r.data.accessKey:
'Not created: '+r.msg;}};
</script></body></html>"#,
        port = st.cfg.listen_addr().port(),
        version = esc(i.version),
        online = i.libraries_online,
        libs = i.libraries,
    ))
    .into_response()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NewAccountWire {
    user: AccountWire,
    access_key: String,
    key_id: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AccountWire {
    id: i64,
    name: String,
    #[serde(rename = "type")]
    type_name: String,
    perms: Vec<&'static str>,
    libraries: Vec<String>,
}

/// `POST /api/v1/register` `{token, userName, password[, label]}`: redeems a
/// registration token. No login needed; every attempt is counted against
/// the caller's address like a failed login (before anything is checked),
/// and taken back only when an account is made.
pub(crate) async fn register(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    p: Params,
) -> ApiResult {
    p.check()?;
    let ip = peer.ip();
    let token = p.req_text("token", 1, 128)?.to_string();
    let name = p.req_str("userName")?.to_string();
    crate::config::validate_user_name(&name)
        .map_err(|e| Error::BadParam(format!("user name {name:?}: {e}")))?;
    let password = p.req_str("password")?.to_string();
    auth::check_new_password(&password).map_err(Error::BadParam)?;
    let label = label_param(&p, &headers)?;
    let attempt = st
        .limiter
        .reserve(None, ip)
        .map_err(|secs| Error::TooManyAttempts {
            retry_after_secs: secs,
        })?;
    // Check the token (and the name) before the expensive hash, so a
    // guessing client costs no Argon2; `redeem` checks again inside its
    // transaction.
    if let Err(e) = pool::check_redeemable(&st.db, token.clone(), name.clone()).await {
        if matches!(e, Error::BadToken) {
            log::info!("registration with an unknown token from {ip}");
        }
        return Err(e.into());
    }
    let hash = match st.hasher.hash(password).await {
        Ok(h) => h,
        Err(e @ Error::TooManyPending { .. }) => {
            st.limiter.release(attempt);
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    let now = st.clock.unix_ms() / 1000;
    let acc = pool::redeem(&st.db, token, name, hash, label, now).await?;
    st.limiter.release(attempt);
    st.sessions.access_changed();
    let profile = pool::profile(&st.db, acc.user.id).await?;
    Ok(ok(NewAccountWire {
        user: AccountWire {
            id: acc.user.id.0,
            name: acc.user.name.clone(),
            type_name: acc.type_name.clone(),
            perms: profile
                .as_ref()
                .map(|p| p.perms)
                .unwrap_or_default()
                .names(),
            libraries: profile.map(|p| p.libraries).unwrap_or_default(),
        },
        access_key: acc.access_key,
        key_id: acc.key_id,
    }))
}

/// `GET /api/v1/account`: the caller's account, type and permissions.
pub(crate) async fn account(
    State(st): State<AppState>,
    Authed { s, .. }: Authed<ApiError, AnyUser>,
) -> ApiResult {
    let profile = pool::profile(&st.db, s.user_id)
        .await?
        .ok_or(Error::NeedLogin)?;
    Ok(ok(AccountWire {
        id: profile.user.id.0,
        name: profile.user.name,
        type_name: profile.type_name,
        perms: s.perms.names(),
        libraries: profile.libraries,
    }))
}

/// `GET /api/v1/keys[?user=NAME]`: the caller's access keys (an admin may
/// name another user, or `all=1`).
pub(crate) async fn keys(
    State(st): State<AppState>,
    Authed { s, p, .. }: Authed<ApiError, AnyUser>,
) -> ApiResult {
    let who = match (p.raw("user"), p.opt_int("all") == Some(1)) {
        (None, false) => Some(s.user_id),
        (other, all) => {
            s.require(Perm::Accounts)?;
            match (other, all) {
                (_, true) => None,
                (Some(name), _) => Some(pool::user_id(&st.db, name.to_string()).await?),
                (None, false) => unreachable!("handled above"),
            }
        }
    };
    Ok(ok(pool::list_keys(&st.db, who).await?))
}

/// `POST /api/v1/keys {label}`: a new access key for the caller (another
/// device). Shown once.
pub(crate) async fn create_key(
    State(st): State<AppState>,
    headers: HeaderMap,
    Authed { s, p, .. }: Authed<ApiError, AnyUser>,
) -> ApiResult {
    let label = label_param(&p, &headers)?;
    let (info, key) = pool::create_key(&st.db, s.user_id, label).await?;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Wire {
        #[serde(flatten)]
        info: accounts::KeyInfo,
        access_key: String,
    }
    Ok(ok(Wire {
        info,
        access_key: key,
    }))
}

/// `POST /api/v1/keys/revoke {id}`: revokes one of the caller's keys (with
/// the `accounts` permission, a key of any account it may manage). Works at
/// once.
pub(crate) async fn revoke_key(
    State(st): State<AppState>,
    Authed { s, p, .. }: Authed<ApiError, AnyUser>,
) -> ApiResult {
    let id = p.req_int("id")?;
    let only = (!s.can(Perm::Accounts)).then_some(s.user_id);
    let k = pool::revoke_key(&st.db, Actor::User(s.user_id), id, only).await?;
    st.sessions.access_changed();
    Ok(ok(k))
}

pub(crate) async fn users(
    State(st): State<AppState>,
    Authed { .. }: Authed<ApiError, NeedAccounts>,
) -> ApiResult {
    Ok(ok(pool::list_users(&st.db).await?))
}

/// `POST /api/v1/users/type {user, type}`.
pub(crate) async fn set_user_type(
    State(st): State<AppState>,
    Authed { s, p, .. }: Authed<ApiError, NeedAccounts>,
) -> ApiResult {
    let (who, t) = (
        p.req_str("user")?.to_string(),
        p.req_str("type")?.to_string(),
    );
    let u = pool::set_type(&st.db, Actor::User(s.user_id), who, t).await?;
    st.sessions.access_changed();
    Ok(ok(u))
}

async fn set_disabled(
    st: AppState,
    Authed { s, p, .. }: Authed<ApiError, NeedAccounts>,
    disabled: bool,
) -> ApiResult {
    let who = p.req_str("user")?.to_string();
    let u = pool::set_disabled(&st.db, Actor::User(s.user_id), who, disabled).await?;
    if disabled {
        st.sessions.end_user(UserId(u.id));
    }
    st.sessions.access_changed();
    Ok(ok(u))
}

/// `POST /api/v1/users/disable {user}`: the account's sessions end at once;
/// its access keys and share links are revoked (enabling it again revives
/// none of them).
pub(crate) async fn disable_user(
    State(st): State<AppState>,
    a: Authed<ApiError, NeedAccounts>,
) -> ApiResult {
    set_disabled(st, a, true).await
}

pub(crate) async fn enable_user(
    State(st): State<AppState>,
    a: Authed<ApiError, NeedAccounts>,
) -> ApiResult {
    set_disabled(st, a, false).await
}

pub(crate) async fn types(
    State(st): State<AppState>,
    Authed { .. }: Authed<ApiError, NeedAccounts>,
) -> ApiResult {
    Ok(ok(pool::list_types(&st.db).await?))
}

/// `POST /api/v1/types {name, perms}`: creates or changes a custom type
/// (`perms` comma- or space-separated).
pub(crate) async fn upsert_type(
    State(st): State<AppState>,
    Authed { s, p, .. }: Authed<ApiError, NeedAccounts>,
) -> ApiResult {
    let (name, perms) = (
        p.req_str("name")?.to_string(),
        p.req_str("perms")?.to_string(),
    );
    let t = pool::upsert_type(&st.db, Actor::User(s.user_id), name, perms).await?;
    st.sessions.access_changed();
    Ok(ok(t))
}

pub(crate) async fn delete_type(
    State(st): State<AppState>,
    Authed { s, p, .. }: Authed<ApiError, NeedAccounts>,
) -> ApiResult {
    let name = p.req_str("name")?.to_string();
    pool::delete_type(&st.db, Actor::User(s.user_id), name).await?;
    Ok(ok_empty())
}

pub(crate) async fn tokens(
    State(st): State<AppState>,
    Authed { .. }: Authed<ApiError, NeedAccounts>,
) -> ApiResult {
    Ok(ok(pool::list_tokens(&st.db).await?))
}

/// `POST /api/v1/tokens {type, libraries, expires?, note?}`: a one-use
/// registration token, shown once. `expires` like `7d` (default 7 days).
/// Only a type and libraries the caller holds itself.
pub(crate) async fn create_token(
    State(st): State<AppState>,
    Authed { s, p, .. }: Authed<ApiError, NeedAccounts>,
) -> ApiResult {
    let t = p.req_str("type")?.to_string();
    let libs = list_param(&p, "libraries");
    let expires = match p.raw("expires") {
        Some(e) => Some(accounts::parse_duration(e).map_err(Error::BadParam)?),
        None => None,
    };
    let note = p.opt_text("note", 200).map(str::to_owned);
    let me = Actor::User(s.user_id);
    let tok = pool::create_token(&st.db, me, t, libs, expires, note).await?;
    Ok(ok(tok))
}

pub(crate) async fn delete_token(
    State(st): State<AppState>,
    Authed { s, p, .. }: Authed<ApiError, NeedAccounts>,
) -> ApiResult {
    let id = p.req_int("id")?;
    pool::delete_token(&st.db, Actor::User(s.user_id), id).await?;
    Ok(ok_empty())
}

pub(crate) async fn libraries(
    State(st): State<AppState>,
    Authed { .. }: Authed<ApiError, NeedLibraries>,
) -> ApiResult {
    Ok(ok(pool::list_libraries(&st.db).await?))
}

async fn grant(
    st: AppState,
    Authed { s, p, .. }: Authed<ApiError, NeedLibraries>,
    on: bool,
) -> ApiResult {
    let (lib, who) = (
        p.req_str("library")?.to_string(),
        p.req_str("user")?.to_string(),
    );
    pool::set_grant(&st.db, Actor::User(s.user_id), lib, who, on).await?;
    st.sessions.access_changed();
    Ok(ok_empty())
}

/// `POST /api/v1/libraries/grant {library, user}`.
pub(crate) async fn grant_library(
    State(st): State<AppState>,
    a: Authed<ApiError, NeedLibraries>,
) -> ApiResult {
    grant(st, a, true).await
}

pub(crate) async fn revoke_library(
    State(st): State<AppState>,
    a: Authed<ApiError, NeedLibraries>,
) -> ApiResult {
    grant(st, a, false).await
}

/// `GET /api/v1/backup`: progress, recent runs, generations on disk.
pub(crate) async fn backup_status(
    State(st): State<AppState>,
    Authed { .. }: Authed<ApiError, NeedBackup>,
) -> ApiResult {
    Ok(ok(st.backups.status_async().await?))
}

/// `POST /api/v1/backup`: starts a backup and returns at once (−10013 if
/// one runs); `GET /api/v1/backup` follows it.
pub(crate) async fn start_backup(
    State(st): State<AppState>,
    Authed { .. }: Authed<ApiError, NeedBackup>,
) -> ApiResult {
    // Claimed before answering (a check of `running` here and a start on
    // the blocking thread let two requests at once both hear "started").
    let claim = st.backups.claim()?;
    let progress = st.backups.progress();
    claim.start();
    Ok(ok(progress))
}

/// `GET /api/v1/shares[?mine=1]`: the caller's live share links; with the
/// `shares` permission every account's (`mine=1`: only its own).
pub(crate) async fn share_links(
    State(st): State<AppState>,
    Authed { s, p, .. }: Authed<ApiError, AnyUser>,
) -> ApiResult {
    let mine = p.opt_int("mine") == Some(1);
    Ok(ok(crate::share::list(&st.db, &s, mine).await?))
}

/// `POST /api/v1/shares/revoke {id | key | fileId}`: revokes one of the
/// caller's links (with the `shares` permission, anyone's): by the `id`
/// `GET /api/v1/shares` lists, by its whole `key`, or every link to
/// `fileId`.
pub(crate) async fn revoke_share(
    State(st): State<AppState>,
    Authed { s, p, .. }: Authed<ApiError, AnyUser>,
) -> ApiResult {
    let id = p.opt_int("id");
    let key = p.raw("key").map(str::to_owned);
    let file = p.opt_int("fileId").map(FileId);
    let n = crate::share::revoke(&st.db, &s, id, key.as_deref(), file).await?;
    Ok(ok(serde_json::json!({ "revoked": n })))
}
