//! Probing one file: its type (spec §2.2) and media info. STUB: owned by the probe work.

use crate::model::{FileType, MediaInfo};
use std::path::Path;

/// Classifies a file by its extension alone (no I/O). Used by the scanner to
/// decide whether a file needs probing at all.
pub fn classify_by_name(path: &Path) -> FileType {
    let _ = path;
    FileType::Other
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Probes `path` (a regular file). Returns the final type (a container may turn
/// out to be audio-only) and what could be learnt. Never spawns a process for a
/// file that is not audio/video. Blocking.
pub fn probe(path: &Path, guess: FileType) -> Result<(FileType, MediaInfo), ProbeError> {
    let _ = path;
    Ok((guess, MediaInfo::default()))
}
