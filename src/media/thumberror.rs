//! [`ThumbError`], the one error of every thumbnail decoder, of opening an
//! original and of the renderer and cache. May import: `budget` (its
//! error), std; nothing else of `media`.

use std::path::{Path, PathBuf};

use super::budget::BudgetError;

/// Why a thumbnail could not be produced. `http/error.rs` maps these to
/// wire codes: `Unsupported` → −10005, `SourceMissing` → −10006,
/// `Failed` and `TooLarge` → −10008 (and a sticky build-error status), `Busy` → −10013
/// (nothing recorded: try again), `Io` → −102.
#[derive(Debug, thiserror::Error)]
pub enum ThumbError {
    #[error("this file type has no thumbnail")]
    Unsupported,
    #[error("original {0} is missing on disk")]
    SourceMissing(PathBuf),
    #[error("cannot build thumbnail: {0}")]
    Failed(String),
    /// A failure of this file at the size asked for: its render needs more
    /// than the whole memory budget. Mapped as `Failed`; the browser view
    /// tries a smaller size.
    #[error("cannot build thumbnail: {0}")]
    TooLarge(String),
    /// The render could not start for now (memory or render slots taken by
    /// other renders); the file itself may be fine.
    #[error("{0}")]
    Busy(String),
    #[error("thumbnail cache i/o at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ThumbError {
    pub(crate) fn failed(path: &Path, what: impl std::fmt::Display) -> ThumbError {
        ThumbError::Failed(format!("{}: {what}", path.display()))
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> ThumbError {
        ThumbError::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// A refused reservation: never possible is a failure of this file,
    /// a busy budget is not.
    pub(crate) fn from_budget(path: &Path, e: BudgetError) -> ThumbError {
        match e {
            BudgetError::TooLarge { .. } => {
                ThumbError::TooLarge(format!("{}: {e}", path.display()))
            }
            BudgetError::Busy => ThumbError::Busy(e.to_string()),
        }
    }

    /// A copy for every waiter of a shared render (`io::Error` isn't `Clone`).
    pub(crate) fn duplicate(&self) -> ThumbError {
        match self {
            ThumbError::Unsupported => ThumbError::Unsupported,
            ThumbError::SourceMissing(p) => ThumbError::SourceMissing(p.clone()),
            ThumbError::Failed(m) => ThumbError::Failed(m.clone()),
            ThumbError::TooLarge(m) => ThumbError::TooLarge(m.clone()),
            ThumbError::Busy(m) => ThumbError::Busy(m.clone()),
            ThumbError::Io { path, source } => ThumbError::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
        }
    }
}
