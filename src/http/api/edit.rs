//! `createCatalog.icc`, `updateCatalog.icc`, `deleteCatalog.icc`,
//! `updateFile.icc`, `deleteFiles.icc` (spec §6.6–6.8, §6.17, §6.18).

use crate::db::edits::CatalogEdit;
use crate::db::uploads::FileEdit;
use crate::edit::{self, NewCatalog};
use crate::http::api::account::MAX_HELP_TEXT_CHARS;
use crate::http::api::catalog::CatalogInfo;
use crate::http::api::upload::file_info;
use crate::http::error::{ok, ApiError};
use crate::http::params::Params;
use crate::http::state::{AppState, Authed};
use crate::model::{CatalogId, FileId};
use crate::trash;
use crate::upload::{valid_type, MAX_EXT_CHARS, MAX_MEMO_CHARS, MAX_NAME_CHARS};
use axum::extract::State;
use axum::response::Response;

/// Longest catalog name (spec §6.6).
pub(crate) const MAX_CATALOG_NAME_CHARS: usize = 99;

fn opt_name(p: &Params, max: usize) -> Option<String> {
    p.raw("name")
        .filter(|n| (1..=max).contains(&n.chars().count()))
        .map(str::to_owned)
}

pub(crate) async fn create_catalog(
    State(st): State<AppState>,
    Authed { s, p, .. }: Authed,
) -> Result<Response, ApiError> {
    let n = NewCatalog {
        parent: CatalogId(p.req_int("parentId")?),
        name: p.req_text("name", 1, MAX_CATALOG_NAME_CHARS)?.to_owned(),
        create_time: p.opt_ts("createTime"),
        memo: p.opt_text("memo", MAX_MEMO_CHARS).map(str::to_owned),
        help_int: p.opt_int("helpInt"),
        help_text: p
            .opt_text("helpText", MAX_HELP_TEXT_CHARS)
            .map(str::to_owned),
    };
    let cat = edit::create_catalog(&st.db, &s, n).await?;
    Ok(ok(CatalogInfo::from(cat)))
}

pub(crate) async fn update_catalog(
    State(st): State<AppState>,
    Authed { s, p, .. }: Authed,
) -> Result<Response, ApiError> {
    let id = CatalogId(p.req_int("id")?);
    let e = CatalogEdit {
        parent: p.opt_int("parentId").map(CatalogId),
        name: opt_name(&p, MAX_CATALOG_NAME_CHARS),
        memo: p.opt_text("memo", MAX_MEMO_CHARS).map(str::to_owned),
        help_int: p.opt_int("helpInt"),
        help_text: p
            .opt_text("helpText", MAX_HELP_TEXT_CHARS)
            .map(str::to_owned),
    };
    let (cat, moved) = edit::update_catalog(&st.db, &s, id, e).await?;
    if moved {
        st.sessions.access_changed();
    }
    Ok(ok(CatalogInfo::from(cat)))
}

pub(crate) async fn delete_catalog(
    State(st): State<AppState>,
    Authed { s, p, .. }: Authed,
) -> Result<Response, ApiError> {
    let ids = p.req_ids("ids")?;
    if trash::delete_catalogs(&st.db, &st.cfg, &s, ids).await? {
        st.sessions.access_changed();
    }
    Ok(ok("OK"))
}

pub(crate) async fn delete_files(
    State(st): State<AppState>,
    Authed { s, p, .. }: Authed,
) -> Result<Response, ApiError> {
    let ids = p.req_ids("ids")?;
    trash::delete_files(&st.db, &st.cfg, &st.thumbs, &s, ids).await?;
    Ok(ok("OK"))
}

/// 0 or 2 for a client-set thumbnail status; other values count as 0.
fn thumb_status(p: &Params, key: &str) -> Option<i64> {
    p.opt_int(key).map(|v| if v == 2 { 2 } else { 0 })
}

pub(crate) async fn update_file(
    State(st): State<AppState>,
    Authed { s, p, .. }: Authed,
) -> Result<Response, ApiError> {
    let id = FileId(p.req_int("id")?);
    // The target catalog's root is the service's to look up.
    let move_to = p.opt_int("catalogId").map(CatalogId);
    let e = FileEdit {
        catalog: None,
        name: opt_name(&p, MAX_NAME_CHARS),
        ext: p.opt_text("ext", MAX_EXT_CHARS).map(str::to_owned),
        size: p.opt_int("size").filter(|v| *v >= 0),
        file_type: p.opt_int("type").filter(|t| valid_type(*t)),
        status_thumb: thumb_status(&p, "statusForThumb"),
        status_screen: thumb_status(&p, "statusForScreen"),
        create_time: p.opt_ts("createTime"),
        import_time: p.opt_ts("importTime"),
        last_modify: p.opt_ts("lastModifyTime"),
        duration: p.opt_float("duration"),
        width: p.opt_int("width"),
        height: p.opt_int("height"),
        orientation: p.opt_int("orientation"),
        longitude: p.opt_float("longitude"),
        latitude: p.opt_float("latitude"),
        memo: p.opt_text("memo", MAX_MEMO_CHARS).map(str::to_owned),
        help_int: p.opt_int("helpInt"),
        help_text: p
            .opt_text("helpText", MAX_HELP_TEXT_CHARS)
            .map(str::to_owned),
    };
    let (rec, sizes) = edit::update_file(&st.db, &st.cfg, &s, id, move_to, e).await?;
    Ok(ok(file_info(rec, sizes)))
}
