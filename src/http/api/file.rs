//! `files.icc` and `downFile.ic*`.

use crate::browse::{self, FilesRequest};
use crate::http::error::{ApiError, BinaryError};
use crate::http::params::Params;
use crate::http::state::{AppState, Authed, NeedBrowse};
use crate::http::stream;
use crate::model::{FileId, FileRecord, PartStatus};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

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
    /// isync extension (spec §3.3): the video of a Live Photo.
    #[serde(skip_serializing_if = "Option::is_none")]
    live_photo_video_id: Option<i64>,
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
            live_photo_video_id: f.live_video_id.map(|v| v.0),
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

/// What `files.icc` answers, `{"code":0,"data":{"list":[…],"page":{…}}}`:
/// assembled by [`files_reply`] from records encoded once per listing
/// snapshot; this serde form is the reference it must equal byte for byte.
#[cfg(test)]
#[derive(Serialize)]
struct FilesPage {
    list: Vec<FileInfo>,
    page: PageInfo,
}

pub(crate) async fn files(
    State(st): State<AppState>,
    Authed { s, p, .. }: Authed<ApiError, NeedBrowse>,
) -> Result<Response, ApiError> {
    let req = FilesRequest {
        page_index: p.req_int("pageIndex")?,
        per_page: p.opt_int("maxPerPage"),
        root_ids: p.opt_ids("rootIds"),
        pids: p.opt_ids("pids"),
        types: p.opt_ids("types"),
        sort: p.opt_int("sort"),
        only_self_upload: p.opt_int("onlySelfUpload").is_some_and(|v| v != 0),
    };
    let found =
        browse::list_files(&st.db, &s, req, |r| encode_record(FileInfo::new(r, None))).await?;
    let page = PageInfo {
        page_index: found.page.page_index,
        max_per_page: found.page.per_page,
        page_count: found.page.page_count,
    };
    Ok(files_reply(&json_array(&found.records), &page))
}

/// The JSON array of records each already encoded.
fn json_array(records: &[Arc<[u8]>]) -> Vec<u8> {
    let len: usize = records.iter().map(|r| r.len() + 1).sum();
    let mut out = Vec::with_capacity(len + 2);
    out.push(b'[');
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(r);
    }
    out.push(b']');
    out
}

/// One record as `files.icc` lists it; `browse::list_files` keeps it with
/// the listing snapshot, so it must not depend on anything but `info`.
fn encode_record(info: FileInfo) -> Arc<[u8]> {
    // Serialising a struct of numbers, strings and options cannot fail.
    serde_json::to_vec(&info)
        .expect("FileInfo serialises")
        .into()
}

/// `{"code":0,"data":{"list":<list>,"page":<page>}}`, exactly what `ok()`
/// would write for the same page (a unit test holds it to that).
fn files_reply(list: &[u8], page: &PageInfo) -> Response {
    let page = serde_json::to_vec(page).expect("PageInfo serialises");
    let mut body = Vec::with_capacity(list.len() + page.len() + 40);
    body.extend_from_slice(br#"{"code":0,"data":{"list":"#);
    body.extend_from_slice(list);
    body.extend_from_slice(br#","page":"#);
    body.extend_from_slice(&page);
    body.extend_from_slice(b"}}");
    // The content type `axum::Json` (behind `ok()`) sends.
    let json = HeaderValue::from_static("application/json");
    ([(header::CONTENT_TYPE, json)], body).into_response()
}

/// Sends the original of `rec`, opened below its library's root without
/// following symlinks (see `browse::open_original`), with the headers that
/// keep a browser from running it as a page of this origin
/// (`stream::original_headers`).
pub(crate) async fn send_original(
    st: &AppState,
    rec: &FileRecord,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, BinaryError> {
    let orig = browse::open_original(&st.db, rec).await?;
    let ctype = stream::content_type_for(Path::new(&rec.path));
    let mut resp = stream::send_open(orig.file, &orig.meta, &ctype, method, headers);
    resp.headers_mut()
        .extend(stream::original_headers(&download_name(rec), &ctype));
    Ok(resp)
}

/// The name a browser saves an original under: its display name, with the
/// extension when the name lacks it.
fn download_name(rec: &FileRecord) -> String {
    let ext = rec.ext.to_ascii_lowercase();
    if ext.is_empty() || rec.name.to_ascii_lowercase().ends_with(&format!(".{ext}")) {
        rec.name.clone()
    } else {
        format!("{}.{ext}", rec.name)
    }
}

pub(crate) async fn down_file(
    st: AppState,
    method: Method,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, BinaryError> {
    let (_, s) = st.session(&headers).await?;
    p.check()?;
    let id = FileId(p.req_int("id")?);
    let rec = browse::downloadable_file(&st.db, &s, id).await?;
    send_original(&st, &rec, &method, &headers).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CatalogId, LibraryId, UserId};

    fn record(id: i64) -> FileRecord {
        FileRecord {
            id: FileId(id),
            catalog_id: CatalogId(3),
            real_catalog_id: CatalogId(3),
            root_id: CatalogId(1),
            library_id: LibraryId(1),
            path: "/lib/a".into(),
            name: format!("IMG \"{id}\" é\u{1}\\.jpg"),
            ext: "jpg".into(),
            create_time: Some(1_600_000_000 + id),
            upload_time: (id % 2 == 0).then_some(1_700_000_000),
            import_time: 1_700_000_001,
            last_modify: 1_700_000_002,
            size: 4_100_000,
            mtime_ns: Some(5),
            file_type: if id % 3 == 0 { 4 } else { 1 },
            duration: (id % 3 == 0).then_some(33.333_333_333_333_336 * id as f64),
            width: (id % 5 != 0).then_some(4000),
            height: (id % 5 != 0).then_some(3000),
            orientation: (id % 4 == 0).then_some(6),
            memo: (id == 2).then(|| "line\nbreak</script>".into()),
            help_int: (id == 3).then_some(-7),
            help_text: (id == 3).then(|| "{\"json\":true}".into()),
            upload_user_id: (id == 4).then_some(UserId(9)),
            status_origin: 0,
            status_thumb: 0,
            status_screen: 0,
            inode: None,
            live_video_id: (id == 5).then_some(FileId(6)),
            live_photo_id: None,
        }
    }

    async fn body(r: Response) -> (String, Vec<u8>) {
        let ctype = r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        (ctype, bytes.to_vec())
    }

    #[tokio::test]
    async fn assembled_reply_equals_the_serde_reply_byte_for_byte() {
        let page = || PageInfo {
            page_index: 2,
            max_per_page: 10,
            page_count: 7,
        };
        for n in [0, 1, 12] {
            let recs: Vec<FileRecord> = (1..=n).map(record).collect();
            let list: Vec<Arc<[u8]>> = recs
                .iter()
                .map(|r| encode_record(FileInfo::new(r.clone(), None)))
                .collect();
            let fast = body(files_reply(&json_array(&list), &page())).await;
            let reference = body(crate::http::error::ok(FilesPage {
                list: recs.into_iter().map(|r| FileInfo::new(r, None)).collect(),
                page: page(),
            }))
            .await;
            assert_eq!(
                String::from_utf8_lossy(&fast.1),
                String::from_utf8_lossy(&reference.1),
                "{n} records"
            );
            assert_eq!(fast, reference, "{n} records: bytes and content type");
        }
    }
}
