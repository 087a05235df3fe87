//! The one place that knows wire codes and HTTP statuses (spec §1.2, §2.1).
//! Internal details are logged once and never shown to clients.

use crate::error::Error;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

pub const OK: i64 = 0;
pub const NO_ROOT_PATH: i64 = -100;
pub const DATA_ERROR: i64 = -102;
pub const DELETE_FAILED: i64 = -103;
pub const BAD_LOGIN: i64 = -10000;
pub const NEED_LOGIN: i64 = -10001;
pub const BAD_PARAM: i64 = -10003;
pub const NOT_FOUND: i64 = -10004;
pub const WRONG_FILE_TYPE: i64 = -10005;
pub const FILE_GONE: i64 = -10006;
pub const BAD_CATALOG: i64 = -10007;
pub const THUMB_FAILED: i64 = -10008;
pub const WAITING_UPLOAD: i64 = -10009;
pub const NOT_MODIFIED: i64 = -10010;
/// isync extension: the file's library is offline (its disk is unplugged or
/// unmounted). Documented in README; older clients treat it as any error.
pub const LIBRARY_OFFLINE: i64 = -10011;

pub fn code_of(e: &Error) -> i64 {
    match e {
        Error::BadLogin => BAD_LOGIN,
        Error::NeedLogin => NEED_LOGIN,
        Error::BadParam(_) => BAD_PARAM,
        Error::NotFound(_) => NOT_FOUND,
        Error::WrongFileType(_) => WRONG_FILE_TYPE,
        Error::FileGone(_) => FILE_GONE,
        Error::BadCatalog(_) => BAD_CATALOG,
        Error::ThumbFailed(_) => THUMB_FAILED,
        Error::WaitingUpload(_) => WAITING_UPLOAD,
        Error::NotModified(_) => NOT_MODIFIED,
        Error::Offline(_) => LIBRARY_OFFLINE,
        Error::NoRootPath(_) => NO_ROOT_PATH,
        Error::DeleteFailed(_) => DELETE_FAILED,
        Error::Internal(_) => DATA_ERROR,
    }
}

#[derive(Serialize)]
struct ErrorBody {
    code: i64,
    msg: String,
}

fn body(e: &Error) -> ErrorBody {
    let msg = match e {
        Error::Internal(detail) => {
            log::error!("internal error: {detail}");
            "internal server error; the details are in the server log".to_string()
        }
        other => other.to_string(),
    };
    ErrorBody {
        code: code_of(e),
        msg,
    }
}

/// An error on a JSON endpoint: HTTP 200 with `{code, msg}` (spec §1.2).
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (StatusCode::OK, Json(body(&self.0))).into_response()
    }
}

/// An error on a binary endpoint (thumbnail, downFile, shareFile): the JSON
/// body with a matching non-2xx status.
#[derive(Debug)]
pub struct BinaryError(pub Error);

impl From<Error> for BinaryError {
    fn from(e: Error) -> Self {
        BinaryError(e)
    }
}

impl IntoResponse for BinaryError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            Error::NeedLogin => StatusCode::FORBIDDEN,
            Error::BadParam(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_)
            | Error::WrongFileType(_)
            | Error::FileGone(_)
            | Error::ThumbFailed(_)
            | Error::WaitingUpload(_) => StatusCode::NOT_FOUND,
            Error::Offline(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(body(&self.0))).into_response()
    }
}

/// `{"code": 0, "data": …}`.
pub fn ok<T: Serialize>(data: T) -> Response {
    #[derive(Serialize)]
    struct Ok<T> {
        code: i64,
        data: T,
    }
    Json(Ok { code: OK, data }).into_response()
}

/// `{"code": 0}` for endpoints with nothing to return.
pub fn ok_empty() -> Response {
    Json(serde_json::json!({ "code": OK })).into_response()
}
