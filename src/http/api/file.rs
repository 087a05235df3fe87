//! `files.icc` and `downFile.ic*`.

use crate::browse;
use crate::db::listing::Query;
use crate::error::Error;
use crate::http::error::{ok, ApiError, BinaryError};
use crate::http::params::Params;
use crate::http::state::AppState;
use crate::http::stream::{send_file, OpenError};
use crate::model::{CatalogId, FileId, FileRecord, PartStatus};
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use serde::Serialize;
use std::path::Path;

/// Spec §3.3.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileInfo {
    id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    upload_user_id: Option<i64>,
    catalog_id: i64,
    name: String,
    ext: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    create_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upload_time: Option<i64>,
    import_time: i64,
    last_modify_time: i64,
    size: i64,
    #[serde(rename = "type")]
    file_type: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    width: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orientation: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    help_int: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    help_text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uploading_origin_size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uploading_thumb_size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uploading_screen_size: Option<i64>,
}

/// Bytes received so far of each part still uploading (spec §3.3).
#[derive(Debug, Default, Clone, Copy)]
pub struct UploadingSizes {
    pub origin: i64,
    pub thumb: i64,
    pub screen: i64,
}

impl FileInfo {
    pub fn new(f: FileRecord, uploading: Option<UploadingSizes>) -> FileInfo {
        let up = uploading.unwrap_or_default();
        let pending = |status: i64, n: i64| {
            (PartStatus::from_i64(status) == PartStatus::Uploading).then_some(n)
        };
        FileInfo {
            id: f.id.0,
            upload_user_id: f.upload_user_id.map(|u| u.0),
            catalog_id: f.catalog_id.0,
            name: f.name,
            ext: f.ext,
            create_time: f.create_time,
            upload_time: f.upload_time,
            import_time: f.import_time,
            last_modify_time: f.last_modify,
            size: f.size,
            file_type: f.file_type,
            duration: f.duration,
            width: f.width,
            height: f.height,
            orientation: f.orientation,
            memo: f.memo,
            help_int: f.help_int,
            help_text: f.help_text,
            uploading_origin_size: pending(f.status_origin, up.origin),
            uploading_thumb_size: pending(f.status_thumb, up.thumb),
            uploading_screen_size: pending(f.status_screen, up.screen),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PageInfo {
    page_index: i64,
    max_per_page: i64,
    page_count: i64,
}

#[derive(Serialize)]
struct FilesPage {
    list: Vec<FileInfo>,
    page: PageInfo,
}

pub const DEFAULT_PER_PAGE: i64 = 100;
pub const MIN_PER_PAGE: i64 = 10;
pub const MAX_PER_PAGE: i64 = 10_000;

pub async fn files(
    State(st): State<AppState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let (_, s) = st.session(&headers).await?;
    s.require(crate::accounts::Perm::Browse)?;
    p.check()?;
    let page_index = p.req_int("pageIndex")?;
    if page_index < 0 {
        return Err(Error::BadParam(format!("pageIndex must be ≥ 0, got {page_index}")).into());
    }
    let per_page = p
        .opt_int("maxPerPage")
        .filter(|n| (MIN_PER_PAGE..=MAX_PER_PAGE).contains(n))
        .unwrap_or(DEFAULT_PER_PAGE);
    // rootIds narrows only when every id is one of the user's roots.
    let roots = match p.opt_ids("rootIds") {
        Some(ids) if ids.iter().all(|i| s.roots.contains(&CatalogId(*i))) => {
            ids.into_iter().map(CatalogId).collect()
        }
        _ => s.roots.clone(),
    };
    let sort = p
        .opt_int("sort")
        .filter(|v| (-5..=5).contains(v))
        .unwrap_or(0);
    let offset = page_index
        .checked_mul(per_page)
        .and_then(|o| usize::try_from(o).ok())
        .unwrap_or(usize::MAX);
    let q = Query {
        roots,
        pids: p.opt_ids("pids"),
        types: p.opt_ids("types"),
        uploader: p
            .opt_int("onlySelfUpload")
            .filter(|v| *v != 0)
            .map(|_| s.user_id.0),
        sort,
        offset,
        limit: per_page as usize,
    };
    let (recs, total) = browse::files_page(&st.db, q).await?;
    let page_count = (total as i64 + per_page - 1) / per_page;
    Ok(ok(FilesPage {
        list: recs.into_iter().map(|r| FileInfo::new(r, None)).collect(),
        page: PageInfo {
            page_index,
            max_per_page: per_page,
            page_count,
        },
    }))
}

/// Sends a file that must exist: a missing one is −10006 (record without
/// its file).
pub async fn send_original(
    rec: &FileRecord,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, BinaryError> {
    match send_file(Path::new(&rec.path), None, method, headers).await {
        Ok(r) => Ok(r),
        Err(OpenError::Missing) => Err(Error::FileGone(format!(
            "the original of file {} is missing on disk",
            rec.id.0
        ))
        .into()),
        Err(OpenError::Io(e)) => Err(Error::Internal(format!("open {}: {e}", rec.path)).into()),
    }
}

pub async fn down_file(
    st: AppState,
    method: Method,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, BinaryError> {
    let (_, s) = st.session(&headers).await?;
    p.check()?;
    let id = FileId(p.req_int("id")?);
    let rec = browse::readable_file(&st.db, &s, id).await?;
    if rec.status_origin == PartStatus::Uploading as i64 {
        return Err(Error::WaitingUpload(format!("file {} is still being uploaded", id.0)).into());
    }
    send_original(&rec, &method, &headers).await
}
