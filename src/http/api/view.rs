//! `viewFile.icc` (isync extension, docs/isync-api.md "viewFile"): sends
//! what the view service (`crate::view`) finds — the original, or its
//! cached JPEG rendering with its size in `X-Isync-Width`/`-Height` and
//! `X-Isync-Reduced`. Share links opened by a browser use [`send_view`]
//! too.

use crate::error::Error;
use crate::http::api::file::send_original;
use crate::http::error::BinaryError;
use crate::http::state::{AppState, Authed};
use crate::http::stream::{self, send_file, OpenError};
use crate::model::FileId;
use crate::view::{self, View};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::Response;

pub(crate) async fn view_file(
    State(st): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Authed { s, p, .. }: Authed<BinaryError>,
) -> Result<Response, BinaryError> {
    let id = FileId(p.req_int("id")?);
    let found = view::find(&st.db, &st.thumbs, &s, id).await?;
    send_view(&st, found, &method, &headers).await
}

/// Sends a view: the original as `downFile.icc` does, or the rendering
/// with the range, validator and browser headers of an original.
pub(crate) async fn send_view(
    st: &AppState,
    found: View,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, BinaryError> {
    let r = match found {
        View::Original(rec) => return send_original(st, &rec, method, headers).await,
        View::Rendered(r) => r,
    };
    let mut resp = send_file(&r.path, Some(r.content_type), method, headers)
        .await
        .map_err(|e| match e {
            OpenError::Missing => Error::ThumbFailed("rendering vanished from the cache".into()),
            OpenError::Io(e) => Error::Internal(format!("rendering: {e}")),
        })?;
    let h = resp.headers_mut();
    h.extend(stream::original_headers(&r.name, r.content_type));
    h.insert("x-isync-width", HeaderValue::from(r.width));
    h.insert("x-isync-height", HeaderValue::from(r.height));
    h.insert("x-isync-reduced", HeaderValue::from(u32::from(r.reduced)));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    Ok(resp)
}
