//! The one place that knows wire codes and HTTP statuses (spec §1.2, §2.1).
//! Internal details are logged once and never shown to clients.

use crate::error::Error;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

pub(crate) const OK: i64 = 0;
pub(crate) const NO_ROOT_PATH: i64 = -100;
pub(crate) const DATA_ERROR: i64 = -102;
pub(crate) const DELETE_FAILED: i64 = -103;
pub(crate) const BAD_LOGIN: i64 = -10000;
pub(crate) const NEED_LOGIN: i64 = -10001;
pub(crate) const NO_PERMISSION: i64 = -10002;
pub(crate) const BAD_PARAM: i64 = -10003;
pub(crate) const NOT_FOUND: i64 = -10004;
pub(crate) const WRONG_FILE_TYPE: i64 = -10005;
pub(crate) const FILE_GONE: i64 = -10006;
pub(crate) const BAD_CATALOG: i64 = -10007;
pub(crate) const THUMB_FAILED: i64 = -10008;
pub(crate) const WAITING_UPLOAD: i64 = -10009;
pub(crate) const NOT_MODIFIED: i64 = -10010;
/// isync extension: the file's library is offline (its disk is unplugged or
/// unmounted). Documented in README; older clients treat it as any error.
pub(crate) const LIBRARY_OFFLINE: i64 = -10011;
/// isync extension: too many failed logins (or registrations) from this
/// address or for this user; `Retry-After` says when to try again.
pub(crate) const TOO_MANY_ATTEMPTS: i64 = -10012;
/// isync extension: the operation is already running (e.g. a backup).
pub(crate) const BUSY: i64 = -10013;
/// isync extension: an upload would cross the server disk's free-space
/// reserve (`upload.min_free_bytes`) or the uploader's quota
/// (`upload.user_quota_bytes`); the message says which. Nothing past the
/// limit was stored.
pub(crate) const STORAGE_FULL: i64 = -10014;

pub(crate) fn code_of(e: &Error) -> i64 {
    match e {
        Error::BadLogin => BAD_LOGIN,
        Error::NeedLogin => NEED_LOGIN,
        Error::NoPermission(_) => NO_PERMISSION,
        Error::TokenExpired => BAD_LOGIN,
        Error::TooManyAttempts { .. } | Error::TooManyPending { .. } => TOO_MANY_ATTEMPTS,
        Error::BadToken => BAD_LOGIN,
        Error::Busy(_) => BUSY,
        Error::BadParam(_) => BAD_PARAM,
        Error::NotFound(_) => NOT_FOUND,
        Error::WrongFileType(_) => WRONG_FILE_TYPE,
        Error::FileGone(_) => FILE_GONE,
        Error::BadCatalog(_) => BAD_CATALOG,
        Error::ThumbFailed(_) => THUMB_FAILED,
        Error::WaitingUpload(_) => WAITING_UPLOAD,
        Error::NotModified(_) => NOT_MODIFIED,
        Error::Offline(_) => LIBRARY_OFFLINE,
        Error::StorageFull(_) => STORAGE_FULL,
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
pub(crate) struct ApiError(pub Error);

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
        let mut resp = (StatusCode::OK, Json(body(&self.0))).into_response();
        retry_after(&self.0, &mut resp);
        resp
    }
}

/// `Retry-After` on a rate-limited reply.
fn retry_after(e: &Error, resp: &mut Response) {
    if let Error::TooManyAttempts { retry_after_secs }
    | Error::TooManyPending { retry_after_secs } = e
    {
        resp.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(*retry_after_secs),
        );
    }
}

/// An error on a binary endpoint (thumbnail, downFile, shareFile): the JSON
/// body with a matching non-2xx status.
#[derive(Debug)]
pub(crate) struct BinaryError(pub Error);

impl From<Error> for BinaryError {
    fn from(e: Error) -> Self {
        BinaryError(e)
    }
}

impl IntoResponse for BinaryError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            Error::NeedLogin | Error::NoPermission(_) => StatusCode::FORBIDDEN,
            Error::TooManyAttempts { .. } | Error::TooManyPending { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Error::BadParam(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_)
            | Error::WrongFileType(_)
            | Error::FileGone(_)
            | Error::ThumbFailed(_)
            | Error::WaitingUpload(_) => StatusCode::NOT_FOUND,
            Error::Offline(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::StorageFull(_) => StatusCode::INSUFFICIENT_STORAGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut resp = (status, Json(body(&self.0))).into_response();
        retry_after(&self.0, &mut resp);
        resp
    }
}

/// `{"code": 0, "data": …}`.
pub(crate) fn ok<T: Serialize>(data: T) -> Response {
    #[derive(Serialize)]
    struct Ok<T> {
        code: i64,
        data: T,
    }
    Json(Ok { code: OK, data }).into_response()
}

/// `{"code": 0}` for endpoints with nothing to return.
pub(crate) fn ok_empty() -> Response {
    Json(serde_json::json!({ "code": OK })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Error::is_usage` says what `isync`'s exit status said before it
    /// left this module: usage exactly for the errors whose wire code is
    /// bad param, not found, bad login or no permission.
    #[test]
    fn usage_errors_are_those_with_the_callers_codes() {
        let s = || "x".to_string();
        let all = [
            Error::BadLogin,
            Error::NeedLogin,
            Error::NoPermission(s()),
            Error::TokenExpired,
            Error::TooManyAttempts {
                retry_after_secs: 1,
            },
            Error::TooManyPending {
                retry_after_secs: 1,
            },
            Error::BadToken,
            Error::Busy(s()),
            Error::BadParam(s()),
            Error::NotFound(s()),
            Error::WrongFileType(s()),
            Error::FileGone(s()),
            Error::BadCatalog(s()),
            Error::ThumbFailed(s()),
            Error::WaitingUpload(s()),
            Error::NotModified(s()),
            Error::Offline(s()),
            Error::StorageFull(s()),
            Error::NoRootPath(s()),
            Error::DeleteFailed(s()),
            Error::Internal(s()),
        ];
        for e in &all {
            let by_code = matches!(
                code_of(e),
                BAD_PARAM | NOT_FOUND | BAD_LOGIN | NO_PERMISSION
            );
            assert_eq!(e.is_usage(), by_code, "{e:?}");
        }
        assert_eq!(all.iter().filter(|e| e.is_usage()).count(), 6);
    }
}
