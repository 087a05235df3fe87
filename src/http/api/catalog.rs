//! `catalogs.icc`.

use crate::browse;
use crate::http::error::{ok, ApiError};
use crate::http::state::{AppState, Authed};
use crate::model::Catalog;
use axum::extract::State;
use axum::response::Response;
use serde::Serialize;

/// Spec §3.2.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CatalogInfo {
    id: i64,
    root_id: i64,
    parent_id: i64,
    name: String,
    create_time: i64,
    last_modify_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    memo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    help_int: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    help_text: Option<String>,
    sub_catalog_count: i64,
    file_count: i64,
}

impl From<Catalog> for CatalogInfo {
    fn from(c: Catalog) -> Self {
        CatalogInfo {
            id: c.id.0,
            root_id: c.root_id.0,
            parent_id: c.parent_id.map_or(-1, |p| p.0),
            name: c.name,
            create_time: c.create_time,
            last_modify_time: c.last_modify,
            memo: c.memo,
            help_int: c.help_int,
            help_text: c.help_text,
            sub_catalog_count: c.sub_catalog_count,
            file_count: c.file_count,
        }
    }
}

pub(crate) async fn catalogs(
    State(st): State<AppState>,
    Authed {
        mut s, p, token, ..
    }: Authed,
) -> Result<Response, ApiError> {
    let pids = p.req_ids("pids")?;
    // The top level: an account may get its own root folder first
    // (`browse::gets_own_root`), which its session then sees.
    if pids.contains(&-1) {
        let dir = st.cfg.default_user_path();
        let roots =
            browse::roots_of(&st.db, &dir, s.user_id, s.perms, Some(s.roots.clone())).await?;
        if roots != s.roots {
            s.roots = roots;
            st.sessions.refresh(&token, s.perms, s.roots.clone());
        }
    }
    let list = browse::catalogs(&st.db, &s, pids).await?;
    Ok(ok(list
        .into_iter()
        .map(CatalogInfo::from)
        .collect::<Vec<_>>()))
}
