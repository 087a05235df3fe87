//! Where the server keeps things on disk, and how it names and moves them
//! without ever replacing a file:
//!
//! - `<library>/.isync/` ([`HIDDEN_DIR`]): `uploads/<id>.origin`, the
//!   staged original of a pending upload ([`staging_origin_path`]), and
//!   `trash/<time>-<random>_<name>`, what deletion moved away
//!   ([`trash_dir`], [`stamp_name`]); the scanner skips dot names;
//! - `<thumb_dir>/uploaded/<id>_<level>.part|.jpg`: client thumbnails,
//!   pending and complete, `<thumb_dir>` being the library's thumbnail
//!   folder on its own disk (`<library>/.isync/thumbs`), or the data dir's
//!   for older uploads and a library disk that could not take them
//!   ([`client_thumb_dir`]);
//! - numbered names (`<stem>.<ext>`, `<stem>_1.<ext>`, …) taken with a hard
//!   link that fails on an existing name ([`move_no_clobber`]), and the
//!   directory fsyncs that make renames durable.
//!
//! Imports only `model` and `time`: used by `upload`, `trash` and `edit`
//! alike, it lets none of them import another for a path.

use crate::model::{FileId, FileRecord, ThumbLevel};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub(crate) use crate::model::HIDDEN_DIR;
/// Longest extension of a name on disk (and of an announced upload).
pub(crate) const MAX_EXT_CHARS: usize = 10;

/// `<library>/.isync/uploads`.
pub(crate) fn staging_dir(library: &Path) -> PathBuf {
    library.join(HIDDEN_DIR).join("uploads")
}

/// `<library>/.isync/uploads/<id>.origin`: the bytes of a pending original.
pub(crate) fn staging_origin_path(library: &Path, file_id: FileId) -> PathBuf {
    staging_dir(library).join(format!("{}.origin", file_id.0))
}

/// `<library>/.isync/trash`.
pub(crate) fn trash_dir(library: &Path) -> PathBuf {
    library.join(HIDDEN_DIR).join("trash")
}

/// A name in the trash for `name` deleted at `now`: unique (time and 32 random
/// bits) and still saying what it was.
pub(crate) fn stamp_name(now: i64, name: &str) -> String {
    let mut r = [0u8; 4];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut r);
    format!("{now}-{}_{name}", hex::encode(r))
}

/// Where a completed client thumbnail of `file_id` is stored:
/// `<thumb_dir>/uploaded/<id>_<0|1>.jpg`. `thumbnail.icc` serves it for
/// status 3.
pub fn uploaded_thumb_path(thumb_dir: &Path, file_id: FileId, level: ThumbLevel) -> PathBuf {
    thumb_dir
        .join("uploaded")
        .join(format!("{}_{}.jpg", file_id.0, level.as_u8()))
}

/// `<library>/.isync/thumbs`: the library's thumbnail folder on its own
/// disk (`media::thumbstore::library_dir` names the same folder for the
/// cache; this module imports no `media`).
pub fn library_thumb_dir(library: &Path) -> PathBuf {
    library.join(HIDDEN_DIR).join("thumbs")
}

/// Whether a client thumbnail of `file_id` (either level, complete or
/// pending) is in `<thumb_dir>/uploaded`. Blocking (stats).
pub fn has_client_thumbs(thumb_dir: &Path, file_id: FileId) -> bool {
    [ThumbLevel::Small, ThumbLevel::Screen].iter().any(|&l| {
        uploaded_thumb_path(thumb_dir, file_id, l).exists()
            || staging_thumb_path(thumb_dir, file_id, l).exists()
    })
}

/// The thumbnail folder holding `file_id`'s client thumbnails: its
/// library's (`<library>/.isync/thumbs`) when any is there, else the data
/// dir's `data_thumbs` (uploads from before they went to the library's
/// disk, or made while it could not take them). Both levels of a file live
/// in one folder (`upload` writes a new level where the other is).
/// Blocking (stats).
pub fn client_thumb_dir(library: &Path, data_thumbs: &Path, file_id: FileId) -> PathBuf {
    let own = library_thumb_dir(library);
    if has_client_thumbs(&own, file_id) {
        own
    } else {
        data_thumbs.to_path_buf()
    }
}

/// The file of a complete client thumbnail of `file_id` at `level`: on its
/// library's disk when it is there, else in the data dir's `data_thumbs`.
/// Looked up per level: the one-time move of older uploads
/// (`crate::thumbmove`) may have moved one level of a file and not yet the
/// other. The move makes the new copy before it removes the old one, so
/// when neither is seen the library's name is the answer (the move
/// finished between the two looks, or the thumbnail is missing). Blocking
/// (stats).
pub(crate) fn find_uploaded_thumb(
    library: &Path,
    data_thumbs: &Path,
    file_id: FileId,
    level: ThumbLevel,
) -> PathBuf {
    let own = uploaded_thumb_path(&library_thumb_dir(library), file_id, level);
    if own.exists() {
        return own;
    }
    let old = uploaded_thumb_path(data_thumbs, file_id, level);
    if old.exists() {
        old
    } else {
        own
    }
}

/// `<thumb_dir>/uploaded/<id>_<0|1>.part`: a pending client thumbnail.
pub(crate) fn staging_thumb_path(thumb_dir: &Path, file_id: FileId, level: ThumbLevel) -> PathBuf {
    thumb_dir
        .join("uploaded")
        .join(format!("{}_{}.part", file_id.0, level.as_u8()))
}

/// The real folder of a record (a pending one's path ends in its
/// placeholder name, in the same folder).
pub(crate) fn folder_of(rec: &FileRecord) -> PathBuf {
    Path::new(&rec.path)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The stem of the server-made name of an upload (spec §9.1):
/// `<upload date>_<id>`, dated `now` when the record has no upload time.
pub(crate) fn upload_stem(rec: &FileRecord, now: i64) -> String {
    format!(
        "{}_{}",
        crate::time::civil_date(rec.upload_time.unwrap_or(now)),
        rec.id.0
    )
}

/// Lower-case ASCII letters and digits of `ext`, at most 10 (a safe
/// extension for a name on disk).
pub(crate) fn safe_ext(ext: &str) -> String {
    ext.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(MAX_EXT_CHARS)
        .collect()
}

/// A folder name from a display name: ASCII letters, digits, `_`, `-`, `.`
/// (no separators, no leading dot, never `..`), at most 60 characters.
pub(crate) fn safe_folder_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    let s = s.trim_start_matches('.').to_string();
    if s.is_empty() {
        "folder".into()
    } else {
        s
    }
}

/// `(stem, ext)` of a file name; a leading dot is part of the stem.
pub(crate) fn split_name(name: &str) -> (String, String) {
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem.to_string(), ext.to_string()),
        _ => (name.to_string(), String::new()),
    }
}

/// Candidate names on disk: `<stem>.<ext>`, then `<stem>_1.<ext>`, …
pub(crate) fn numbered(stem: &str, ext: &str, n: u32) -> String {
    let stem = if n == 0 {
        stem.to_string()
    } else {
        format!("{stem}_{n}")
    };
    if ext.is_empty() {
        stem
    } else {
        format!("{stem}.{ext}")
    }
}

/// Links `from` to the first free numbered name in `dir` (never replacing
/// an existing file: `link` fails on an existing target), then unlinks
/// `from`. Returns the name chosen. Blocking.
pub(crate) fn move_no_clobber(
    from: &Path,
    dir: &Path,
    stem: &str,
    ext: &str,
) -> std::io::Result<String> {
    move_no_clobber_where(from, dir, stem, ext, |_| false)
}

/// [`move_no_clobber`], also skipping the names for which `taken` is true.
pub(crate) fn move_no_clobber_where(
    from: &Path,
    dir: &Path,
    stem: &str,
    ext: &str,
    taken: impl Fn(&str) -> bool,
) -> std::io::Result<String> {
    for n in 0..10_000 {
        let name = numbered(stem, ext, n);
        if taken(&name) {
            continue;
        }
        match std::fs::hard_link(from, dir.join(&name)) {
            Ok(()) => {
                std::fs::remove_file(from)?;
                return Ok(name);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "no free name for {stem}.{ext} in {}",
        dir.display()
    )))
}

/// fsyncs a directory so a rename/link/unlink in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// fsyncs the folder holding `p`.
pub(crate) fn sync_parent(p: &Path) -> std::io::Result<()> {
    match p.parent() {
        Some(d) => sync_dir(d),
        None => Ok(()),
    }
}

/// Whether anything (a dangling symlink too) is at `p`.
pub(crate) fn exists(p: &Path) -> std::io::Result<bool> {
    match std::fs::symlink_metadata(p) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes a file; one already gone is fine.
pub(crate) fn remove_if_exists(p: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether `a` and `b` are links to one file.
pub(crate) fn same_file(a: &Path, b: &Path) -> std::io::Result<bool> {
    let (a, b) = (std::fs::metadata(a)?, std::fs::metadata(b)?);
    Ok(a.dev() == b.dev() && a.ino() == b.ino())
}

/// Modification time in nanoseconds since the epoch, as the scanner records it.
pub(crate) fn mtime_ns(m: &std::fs::Metadata) -> i64 {
    m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_and_numbered() {
        assert_eq!(safe_ext("JPG"), "jpg");
        assert_eq!(safe_ext("../etc"), "etc");
        assert_eq!(safe_ext("a/b\0c.d"), "abcd");
        assert_eq!(safe_ext(""), "");
        assert_eq!(numbered("2024-01-02_7", "jpg", 0), "2024-01-02_7.jpg");
        assert_eq!(numbered("2024-01-02_7", "jpg", 2), "2024-01-02_7_2.jpg");
        assert_eq!(numbered("x", "", 1), "x_1");
    }

    #[test]
    fn folder_names_are_safe() {
        assert_eq!(safe_folder_name("../etc"), "_etc");
        assert_eq!(safe_folder_name("a/b"), "a_b");
        assert_eq!(safe_folder_name(".."), "folder");
        assert_eq!(safe_folder_name("Été 2024"), "_t__2024");
        assert_eq!(split_name("a.b.jpg"), ("a.b".into(), "jpg".into()));
        assert_eq!(split_name(".hidden"), (".hidden".into(), String::new()));
    }

    #[test]
    fn no_clobber_picks_the_next_name() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.jpg"), b"old").unwrap();
        let src = d.path().join("src");
        std::fs::write(&src, b"new").unwrap();
        let name = move_no_clobber(&src, d.path(), "a", "jpg").unwrap();
        assert_eq!(name, "a_1.jpg");
        assert_eq!(std::fs::read(d.path().join("a.jpg")).unwrap(), b"old");
        assert_eq!(std::fs::read(d.path().join("a_1.jpg")).unwrap(), b"new");
        assert!(!src.exists());
    }
}
