//! HTTP: the router, parameter parsing, errors → wire codes, file sending,
//! and thin handlers under `api/`. Nothing outside this module knows axum.

pub mod activity;
pub mod api;
pub(crate) mod conn_io;
pub(crate) mod csrf;
pub(crate) mod error;
pub mod params;
pub(crate) mod sendfile;
pub(crate) mod serve;
pub mod state;
pub mod stream;
mod unread;

use crate::error::Error;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use error::BinaryError;
use params::Params;
use state::AppState;

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/login.icc",
            get(api::account::login).post(api::account::login),
        )
        .route("/logout.icc", post(api::account::logout))
        .route("/helpInfo.icc", get(api::account::help_info))
        .route("/updateHelpInfo.icc", post(api::account::update_help_info))
        .route("/catalogs.icc", get(api::catalog::catalogs))
        .route("/files.icc", get(api::file::files))
        .route("/thumbnail.icc", get(api::thumb::thumbnail))
        .route("/viewFile.icc", get(api::view::view_file))
        .route("/createCatalog.icc", post(api::edit::create_catalog))
        .route("/updateCatalog.icc", post(api::edit::update_catalog))
        .route("/deleteCatalog.icc", post(api::edit::delete_catalog))
        .route("/updateFile.icc", post(api::edit::update_file))
        .route("/deleteFiles.icc", post(api::edit::delete_files))
        .route("/shareFileUrl.icc", get(api::share::share_file_url))
        .route("/uploadFileInfo.icc", post(api::upload::upload_file_info))
        .route("/uploadingInfo.icc", get(api::upload::uploading_info))
        // Multipart bodies stream to disk; the service bounds each part.
        .route(
            "/uploadFile.icc",
            post(api::upload::upload_file).layer(DefaultBodyLimit::disable()),
        )
        // The admin API (accounts, tokens, keys, libraries, backups) and the
        // welcome page.
        .route("/", get(api::admin::welcome))
        .route("/api/v1/info", get(api::admin::info))
        .route("/api/v1/register", post(api::admin::register))
        .route("/api/v1/account", get(api::admin::account))
        .route(
            "/api/v1/keys",
            get(api::admin::keys).post(api::admin::create_key),
        )
        .route("/api/v1/keys/revoke", post(api::admin::revoke_key))
        .route("/api/v1/users", get(api::admin::users))
        .route("/api/v1/users/type", post(api::admin::set_user_type))
        .route("/api/v1/users/disable", post(api::admin::disable_user))
        .route("/api/v1/users/enable", post(api::admin::enable_user))
        .route(
            "/api/v1/types",
            get(api::admin::types).post(api::admin::upsert_type),
        )
        .route("/api/v1/types/delete", post(api::admin::delete_type))
        .route(
            "/api/v1/tokens",
            get(api::admin::tokens).post(api::admin::create_token),
        )
        .route("/api/v1/tokens/delete", post(api::admin::delete_token))
        .route("/api/v1/libraries", get(api::admin::libraries))
        .route("/api/v1/libraries/grant", post(api::admin::grant_library))
        .route("/api/v1/libraries/revoke", post(api::admin::revoke_library))
        .route(
            "/api/v1/backup",
            get(api::admin::backup_status).post(api::admin::start_backup),
        )
        .route("/api/v1/shares", get(api::admin::share_links))
        .route("/api/v1/shares/revoke", post(api::admin::revoke_share))
        .fallback(prefixed)
        .layer(DefaultBodyLimit::max(params::MAX_PARAM_BODY_BYTES))
        .layer(axum::middleware::from_fn(csrf::guard))
        .layer(axum::middleware::from_fn(timing))
        .layer(axum::middleware::from_fn(unread::close_if_unread))
        .with_state(state)
}

/// Adds `Server-Timing: app;dur=<ms>` (time until the response head is
/// ready) and logs each request at debug level.
async fn timing(req: Request, next: axum::middleware::Next) -> Response {
    let start = std::time::Instant::now();
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let mut resp = next.run(req).await;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("app;dur={ms:.3}")) {
        resp.headers_mut().insert("server-timing", v);
    }
    browser_defaults(resp.headers_mut());
    log::debug!(
        "{method} {path} -> {} in {ms:.3} ms",
        resp.status().as_u16()
    );
    resp
}

/// Headers every response carries for browsers: the declared content type
/// is final (`nosniff`: client-uploaded thumbnails are served as images
/// and must never be sniffed into a page), and no page of this server may
/// be framed by another site (clickjacking of the welcome page's form).
fn browser_defaults(h: &mut axum::http::HeaderMap) {
    use axum::http::{header, HeaderValue};
    h.entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    h.entry(header::X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("DENY"));
}

/// Routes by path prefix: `/downFile.ic…` and `/shareFile.ic…` carry a
/// free suffix so iOS players see an extension (spec §6.11, §6.13).
async fn prefixed(State(st): State<AppState>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let is_get = method == Method::GET || method == Method::HEAD;
    if path.starts_with("/downFile.ic") {
        if !is_get {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
        let headers = req.headers().clone();
        let p = Params::from_request(req, &()).await.unwrap_or_default();
        return api::file::down_file(st, method, headers, p)
            .await
            .unwrap_or_else(IntoResponse::into_response);
    }
    if path.starts_with("/shareFile.ic") {
        if !is_get {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
        let headers = req.headers().clone();
        let p = Params::from_request(req, &()).await.unwrap_or_default();
        return api::share::share_file(st, method, headers, p)
            .await
            .unwrap_or_else(IntoResponse::into_response);
    }
    let _ = BinaryError(Error::NeedLogin);
    StatusCode::NOT_FOUND.into_response()
}
