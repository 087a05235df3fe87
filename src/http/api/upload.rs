//! `uploadFileInfo.icc`, `uploadingInfo.icc`, `uploadFile.icc` (spec §6.14–6.16).

use crate::error::Error;
use crate::http::api::file::{FileInfo, UploadingSizes};
use crate::http::error::{ok, ApiError};
use crate::http::params::Params;
use crate::http::state::{AppState, Authed};
use crate::model::{CatalogId, FileId, FileRecord};

use crate::upload::{self, Announce, Checksum, PartSizes, UploadRequest};
use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub(crate) fn file_info(rec: FileRecord, s: PartSizes) -> FileInfo {
    FileInfo::new(
        rec,
        Some(UploadingSizes {
            origin: s.origin,
            thumb: s.thumb,
            screen: s.screen,
        }),
    )
}

pub(crate) async fn upload_file_info(
    State(st): State<AppState>,
    Authed { s, p, .. }: Authed,
) -> Result<Response, ApiError> {
    let cid = CatalogId(p.req_int("cid")?);
    let name = p.req_text("name", 1, upload::MAX_NAME_CHARS)?.to_owned();
    let size = p.req_int("size")?;
    if size < 0 {
        return Err(Error::BadParam(format!("size must be ≥ 0, got {size}")).into());
    }
    let file_type = p.req_int("type")?;
    if !upload::valid_type(file_type) {
        return Err(
            Error::BadParam(format!("type must be 1, 2, 4, 8 or 16, got {file_type}")).into(),
        );
    }
    let ext = p.req_text("ext", 0, upload::MAX_EXT_CHARS)?.to_owned();
    let a = Announce {
        catalog: cid,
        name,
        ext,
        size,
        file_type,
        // 2: the client uploads it; any other value counts as 0.
        client_thumb: p.opt_int("statusForThumb") == Some(2),
        client_screen: p.opt_int("statusForScreen") == Some(2),
        create_time: p.opt_ts("createTime"),
        import_time: p.opt_ts("importTime"),
        last_modify: p.opt_ts("lastModifyTime"),
        duration: p.opt_float("duration"),
        width: p.opt_int("width"),
        height: p.opt_int("height"),
        orientation: p.opt_int("orientation"),
        longitude: p.opt_float("longitude"),
        latitude: p.opt_float("latitude"),
        memo: p
            .opt_text("memo", upload::MAX_MEMO_CHARS)
            .map(str::to_owned),
        help_int: p.opt_int("helpInt"),
        help_text: p
            .opt_text("helpText", crate::http::api::account::MAX_HELP_TEXT_CHARS)
            .map(str::to_owned),
    };
    let (rec, sizes) = upload::announce(&st.db, &st.cfg, &s, a).await?;
    Ok(ok(file_info(rec, sizes)))
}

pub(crate) async fn uploading_info(
    State(st): State<AppState>,
    Authed { s, .. }: Authed,
) -> Result<Response, ApiError> {
    let list = upload::uploading(&st.db, &st.cfg, &s).await?;
    Ok(ok(list
        .into_iter()
        .map(|(r, z)| file_info(r, z))
        .collect::<Vec<_>>()))
}

#[derive(Serialize, Default)]
struct Check {
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thumb: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    screen: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UploadReplyWire {
    file_info: FileInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    check: Option<Check>,
}

/// Parameters come from the query string only (spec §1.1); the body is the
/// multipart stream, handed to the service unread. This route has no body
/// size layer of its own: the service bounds every part.
pub(crate) async fn upload_file(st: State<AppState>, req: Request) -> Response {
    match receive(st, req).await {
        Ok(r) => r,
        Err(e) => {
            // A refusal may come before or in the middle of the body, which
            // is then left unread (at most `upload::DRAIN_BYTES` are read
            // and dropped): the connection is closed after the answer, and
            // the answer says so, so that no client sends its next request
            // on a connection the server is closing.
            let mut r = e.into_response();
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
    }
}

async fn receive(State(st): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let (_, s) = st.session(&parts.headers).await?;
    let query_only = Request::builder()
        .uri(parts.uri.clone())
        .body(Body::empty())
        .map_err(|e| Error::BadParam(e.to_string()))?;
    let p = Params::from_request(query_only, &())
        .await
        .unwrap_or_default();
    p.check()?;
    let req = UploadRequest {
        id: FileId(p.req_int("id")?),
        obp: p.opt_int("obp").unwrap_or(0),
        tbp: p.opt_int("tbp").unwrap_or(0),
        sbp: p.opt_int("sbp").unwrap_or(0),
        cm: p.raw("cm").and_then(Checksum::parse),
        body_len: parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
    };
    let ctype = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = body.into_data_stream();
    let r = upload::receive(&st.db, &st.cfg, &st.prerender, &s, req, ctype, body).await?;
    Ok(ok(UploadReplyWire {
        file_info: file_info(r.record, r.sizes),
        check: r.checks.map(|c| Check {
            origin: c.origin,
            thumb: c.thumb,
            screen: c.screen,
        }),
    }))
}
