//! `thumbnail.icc` (spec §6.10, §10): sends the file the thumbnail service
//! (`crate::thumbnail`) finds.

use crate::error::Error;
use crate::http::error::BinaryError;
use crate::http::state::{AppState, Authed};
use crate::http::stream::{send_file, OpenError};
use crate::model::{FileId, ThumbLevel};
use crate::thumbnail;
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::Response;

pub(crate) async fn thumbnail(
    State(st): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Authed { s, p, .. }: Authed<BinaryError>,
) -> Result<Response, BinaryError> {
    let id = FileId(p.req_int("id")?);
    let level = ThumbLevel::from_param(p.opt_int("level").unwrap_or(0));
    let mut found = thumbnail::find(&st.db, &st.cfg, &st.thumbs, &s, id, level).await?;
    let mut sent = serve(&found.path, found.content_type, &method, &headers).await;
    if found.uploaded && sent.is_err() {
        // An older upload's thumbnail moved to its library's disk between
        // the finding and the opening (`crate::thumbmove`): found again.
        found = thumbnail::find(&st.db, &st.cfg, &st.thumbs, &s, id, level).await?;
        sent = serve(&found.path, found.content_type, &method, &headers).await;
    }
    if found.uploaded {
        return sent.map_err(|_| {
            Error::NotFound(format!(
                "the uploaded thumbnail of file {} is missing",
                id.0
            ))
            .into()
        });
    }
    sent
}

async fn serve(
    path: &std::path::Path,
    ctype: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, BinaryError> {
    send_file(path, Some(ctype), method, headers)
        .await
        .map_err(|e| match e {
            OpenError::Missing => {
                Error::ThumbFailed("thumbnail vanished from the cache".into()).into()
            }
            OpenError::Io(e) => Error::Internal(format!("thumbnail: {e}")).into(),
        })
}
