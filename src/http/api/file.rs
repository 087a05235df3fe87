//! `files.icc` and `downFile.ic*`.

use crate::browse;
use crate::db::listing::Query;
use crate::db::{files as file_rows, Db};
use crate::error::Error;
use crate::http::error::{ApiError, BinaryError};
use crate::http::params::Params;
use crate::http::state::{AppState, Authed, NeedBrowse};
use crate::http::stream;
use crate::model::{CatalogId, FileId, FileRecord, PartStatus};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::collections::HashMap;
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

pub const DEFAULT_PER_PAGE: i64 = 100;
pub const MIN_PER_PAGE: i64 = 10;
pub const MAX_PER_PAGE: i64 = 10_000;

pub async fn files(
    State(st): State<AppState>,
    Authed { s, p, .. }: Authed<ApiError, NeedBrowse>,
) -> Result<Response, ApiError> {
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
    let (list, total) = page_list(&st.db, q).await?;
    let page_count = (total as i64 + per_page - 1) / per_page;
    let page = PageInfo {
        page_index,
        max_per_page: per_page,
        page_count,
    };
    Ok(files_reply(&list, &page))
}

/// The JSON array of one page's records and the number of matches.
///
/// Encoding 100 records and reading them with one statement is most of a
/// listing's time (~0.2 ms of ~0.3 on the dev machine, `benches/api.rs`), so
/// each record is encoded once per listing snapshot and kept with it (see
/// `db::listing`); only records not seen since `files` last changed are read
/// and encoded.
async fn page_list(db: &Db, q: Query) -> Result<(Vec<u8>, usize), Error> {
    let db = db.clone();
    let list = tokio::task::spawn_blocking(move || {
        let idx = db.listing()?;
        let (ids, total) = idx.page(&q);
        let mut records = idx.cached(&ids);
        let missing: Vec<FileId> = ids
            .iter()
            .zip(&records)
            .filter(|(_, r)| r.is_none())
            .map(|(id, _)| *id)
            .collect();
        if !missing.is_empty() {
            let fresh: HashMap<FileId, Arc<[u8]>> = db
                .read(|c| file_rows::by_ids(c, &missing))?
                .into_iter()
                .map(|r| (r.id, encode_record(FileInfo::new(r, None))))
                .collect();
            for (slot, id) in records.iter_mut().zip(&ids) {
                if slot.is_none() {
                    // Absent when deleted since the snapshot: left out.
                    *slot = fresh.get(id).cloned();
                }
            }
            idx.cache(fresh);
        }
        let len: usize = records.iter().flatten().map(|r| r.len() + 1).sum();
        let mut out = Vec::with_capacity(len + 2);
        out.push(b'[');
        for (i, r) in records.iter().flatten().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(r);
        }
        out.push(b']');
        Ok::<_, crate::db::DbError>((out, total))
    })
    .await??;
    Ok(list)
}

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
pub async fn send_original(
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
            let joined = format!(
                "[{}]",
                list.iter()
                    .map(|r| std::str::from_utf8(r).unwrap())
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let fast = body(files_reply(joined.as_bytes(), &page())).await;
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
