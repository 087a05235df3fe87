//! Reading a library's folders from disk for the scanner: a recursive walk
//! (full and subtree scans) and a directory-set listing (the watcher's
//! incremental scans: only the folders events named, plus any folder they
//! hold that the database does not know yet). Never follows symlinks; skips
//! dot names and the sub-trees of nested libraries.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A regular file seen on disk.
pub(crate) struct SeenFile {
    pub dir: PathBuf,
    pub name: String,
    pub meta: std::fs::Metadata,
}

impl SeenFile {
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }
}

/// What a walk saw.
#[derive(Default)]
pub(crate) struct Walk {
    /// Folders seen (below the folders the walk started from).
    pub dirs: Vec<(PathBuf, std::fs::Metadata)>,
    pub files: Vec<SeenFile>,
    /// Folders whose entries were all read: a known file or folder directly
    /// inside one of them that was not seen is gone. A folder that could not
    /// be read is never listed, so an unreadable folder costs no record.
    pub listed: Vec<PathBuf>,
    /// Folders asked for that no longer exist (their records may be gone or
    /// moved).
    pub vanished: Vec<PathBuf>,
    /// Folders seen whose entries could not be read: a new one gets no
    /// catalog until it can be read (a known one keeps its records).
    pub unreadable: Vec<PathBuf>,
    pub skipped: usize,
}

fn hidden(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with('.')
}

impl Walk {
    /// Walks `top` recursively into `self`.
    pub(crate) fn walk_tree(&mut self, top: &Path, excluded: &[PathBuf]) {
        let mut unreadable: HashSet<PathBuf> = HashSet::new();
        let mut entered: Vec<PathBuf> = vec![top.to_path_buf()];
        let it = walkdir::WalkDir::new(top)
            .follow_links(false)
            .min_depth(1)
            .into_iter()
            .filter_entry(|e| !hidden(e.file_name()) && !excluded.iter().any(|x| e.path() == x));
        for entry in it {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    log::warn!("scan: skipping unreadable entry: {e}");
                    if let Some(p) = e.path() {
                        unreadable.insert(p.to_path_buf());
                    }
                    self.skipped += 1;
                    continue;
                }
            };
            let ft = entry.file_type();
            if ft.is_symlink() {
                log::debug!("scan: not following symlink {}", entry.path().display());
                continue;
            }
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) => {
                    log::warn!("scan: cannot stat {}: {e}", entry.path().display());
                    self.skipped += 1;
                    continue;
                }
            };
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                log::warn!(
                    "scan: skipping {} (name is not UTF-8)",
                    entry.path().display()
                );
                self.skipped += 1;
                continue;
            };
            if ft.is_dir() {
                entered.push(entry.path().to_path_buf());
                self.dirs.push((entry.into_path(), meta));
            } else if ft.is_file() {
                let dir = entry.path().parent().unwrap_or(top).to_path_buf();
                self.files.push(SeenFile { dir, name, meta });
            }
        }
        let (unlisted, listed): (Vec<PathBuf>, Vec<PathBuf>) =
            entered.into_iter().partition(|d| unreadable.contains(d));
        self.listed.extend(listed);
        self.unreadable.extend(unlisted);
    }

    /// Lists each folder of `dirs` (not recursively); a sub-folder for which
    /// `known` is false is new (or moved in) and is walked whole.
    pub(crate) fn list_dirs(
        &mut self,
        dirs: &[PathBuf],
        excluded: &[PathBuf],
        known: impl Fn(&Path) -> bool,
    ) {
        for d in dirs {
            let rd = match std::fs::read_dir(d) {
                Ok(rd) => rd,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) =>
                {
                    self.vanished.push(d.clone());
                    continue;
                }
                Err(e) => {
                    log::warn!("scan: cannot read folder {}: {e}", d.display());
                    self.skipped += 1;
                    continue;
                }
            };
            let mut complete = true;
            for entry in rd {
                let entry = match entry {
                    Ok(e) => e,
                    Err(e) => {
                        log::warn!("scan: cannot read folder {}: {e}", d.display());
                        complete = false;
                        self.skipped += 1;
                        break;
                    }
                };
                let fname = entry.file_name();
                let path = entry.path();
                if hidden(&fname) || excluded.iter().any(|x| &path == x) {
                    continue;
                }
                let meta = match std::fs::symlink_metadata(&path) {
                    Ok(m) => m,
                    // Deleted between the listing and the stat.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        log::warn!("scan: cannot stat {}: {e}", path.display());
                        self.skipped += 1;
                        continue;
                    }
                };
                let ft = meta.file_type();
                let Some(name) = fname.to_str().map(str::to_owned) else {
                    log::warn!("scan: skipping {} (name is not UTF-8)", path.display());
                    self.skipped += 1;
                    continue;
                };
                if ft.is_dir() {
                    let new = !known(&path);
                    self.dirs.push((path.clone(), meta));
                    if new {
                        self.walk_tree(&path, excluded);
                    }
                } else if ft.is_file() {
                    self.files.push(SeenFile {
                        dir: d.clone(),
                        name,
                        meta,
                    });
                }
            }
            if complete {
                self.listed.push(d.clone());
            }
        }
    }
}
