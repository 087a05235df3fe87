//! The conditions a caller of the service layer acts on. `http::error` maps
//! each to its wire code (spec §2.1) in one place.

use crate::db::DbError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("wrong user name or password")]
    BadLogin,
    #[error("not logged in or the session expired; log in again")]
    NeedLogin,
    /// The account's type lacks the permission (−10002).
    #[error("{0}")]
    NoPermission(String),
    #[error("this registration token has expired; ask for a new one")]
    TokenExpired,
    /// Too many failed logins from this address or for this user (−10012).
    #[error("too many failed attempts; try again in {retry_after_secs} s")]
    TooManyAttempts { retry_after_secs: u64 },
    /// Too many password checks already wait for the hashing thread (−10012).
    #[error("the server is busy checking other passwords; try again in {retry_after_secs} s")]
    TooManyPending { retry_after_secs: u64 },
    /// A registration token that does not exist (any more).
    #[error("unknown or already used registration token; ask an admin for a new one")]
    BadToken,
    /// The operation is already running (a backup) (−10013).
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    BadParam(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    WrongFileType(String),
    #[error("{0}")]
    FileGone(String),
    #[error("{0}")]
    BadCatalog(String),
    #[error("{0}")]
    ThumbFailed(String),
    #[error("{0}")]
    WaitingUpload(String),
    #[error("{0}")]
    NotModified(String),
    /// The library holding the file is offline (disk unplugged/unmounted).
    #[error("{0}")]
    Offline(String),
    /// An upload would cross the disk's free-space reserve or the
    /// uploader's quota (−10014).
    #[error("{0}")]
    StorageFull(String),
    #[error("{0}")]
    NoRootPath(String),
    /// A catalog deletion failed part-way (−103).
    #[error("{0}")]
    DeleteFailed(String),
    /// Anything the client cannot act on; details are logged, not shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Whether the caller asked for something wrong (bad input, an unknown
    /// name, bad credentials, a permission it lacks) rather than the server
    /// failing: `isync` exits with its usage status for these. The wire
    /// codes of the same conditions are `http::error`'s business.
    pub(crate) fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::BadParam(_)
                | Error::NotFound(_)
                | Error::BadLogin
                | Error::TokenExpired
                | Error::BadToken
                | Error::NoPermission(_)
        )
    }
}

impl From<DbError> for Error {
    fn from(e: DbError) -> Self {
        Error::Internal(e.to_string())
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::Internal(format!("background task failed: {e}"))
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;
