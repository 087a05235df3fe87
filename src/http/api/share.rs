//! `shareFileUrl.icc` and `shareFile.ic*` (spec §6.12, §6.13, §8).

use crate::http::api::file::send_original;
use crate::http::error::{ok, ApiError, BinaryError};
use crate::http::params::Params;
use crate::http::state::{AppState, Authed};
use crate::model::FileId;
use crate::share;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method};
use axum::response::Response;

pub(crate) async fn share_file_url(
    State(st): State<AppState>,
    Authed { s, p, .. }: Authed,
) -> Result<Response, ApiError> {
    let id = FileId(p.req_int("id")?);
    let key = share::issue(&st.db, &st.cfg, &st.clock, &s, id).await?;
    Ok(ok(key))
}

/// No session: the key is the credential.
pub(crate) async fn share_file(
    st: AppState,
    method: Method,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, BinaryError> {
    p.check()?;
    let key = p.req_str("shareKey")?;
    let rec = share::resolve(&st.db, &st.cfg, &st.clock, key).await?;
    if share::wants_view(
        p.opt_int("view") == Some(1),
        p.opt_int("original") == Some(1),
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()),
    ) {
        let found = crate::view::shared(&st.db, &st.thumbs, rec).await?;
        return super::view::send_view(&st, found, &method, &headers).await;
    }
    send_original(&st, &rec, &method, &headers).await
}
