//! An original opened for rendering. The server opens it once, from its
//! library root without following symlinks (`safeopen`), checks
//! that it is the file the record describes (same inode), and from then on
//! reads only through that open file: the decoders read it, and ffmpeg gets
//! it as its standard input (`/dev/stdin`), never a path it would resolve
//! itself. A listed file swapped for a symlink to another user's photo, or
//! to `/etc/shadow`, therefore gives no thumbnail of that file.

use std::fs::File;
use std::io::{self, BufReader, Seek};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::container::{self, Container, SNIFF_BYTES};
use super::thumberror::ThumbError;
use crate::safeopen::{self, SafeOpenError};

/// An original, open, with what its first bytes say it is.
#[derive(Debug)]
pub struct Original {
    file: File,
    /// Size when opened.
    pub len: u64,
    pub modified: SystemTime,
    /// The device it lies on (where its library's disk is now).
    pub dev: u64,
    /// What the first bytes say (`None`: no format isync reads).
    pub container: Option<Container>,
    /// The path it was opened under: for messages only, never opened again.
    label: PathBuf,
}

impl Original {
    /// Opens `path`, below the library folder `root`, refusing symlinks on
    /// the way (the root itself aside) and anything but a regular file, and
    /// checks its inode against the record's (`None`: not recorded).
    /// Blocking.
    pub(crate) fn open(
        root: &Path,
        path: &Path,
        inode: Option<i64>,
    ) -> Result<Original, ThumbError> {
        let opened = safeopen::open_in_root(root, path)
            .and_then(|f| safeopen::check_identity(&f, inode).map(|meta| (f, meta)));
        match opened {
            Ok((file, meta)) => Original::from_parts(file, &meta, path),
            Err(e @ SafeOpenError::Io(_)) => Err(ThumbError::failed(path, e)),
            Err(e) => {
                log::debug!(path:display = path.display(); "original not opened: {e}");
                Err(ThumbError::SourceMissing(path.to_owned()))
            }
        }
    }

    /// Opens `path` as given (symlinks followed): for tests and benches,
    /// which render files of their own.
    pub fn open_path(path: &Path) -> Result<Original, ThumbError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ThumbError::SourceMissing(path.to_owned()))
            }
            Err(e) => return Err(ThumbError::failed(path, e)),
        };
        let meta = file.metadata().map_err(|e| ThumbError::failed(path, e))?;
        if !meta.is_file() {
            return Err(ThumbError::failed(path, "not a regular file"));
        }
        Original::from_parts(file, &meta, path)
    }

    fn from_parts(
        file: File,
        meta: &std::fs::Metadata,
        path: &Path,
    ) -> Result<Original, ThumbError> {
        let mut head = [0u8; SNIFF_BYTES];
        let n = read_at_most(&file, &mut head, 0).map_err(|e| ThumbError::failed(path, e))?;
        Ok(Original {
            file,
            len: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            dev: std::os::unix::fs::MetadataExt::dev(meta),
            container: container::sniff(&head[..n]),
            label: path.to_owned(),
        })
    }

    /// The path it was opened under, for messages.
    pub(crate) fn label(&self) -> &Path {
        &self.label
    }

    /// The open file (shared position: use [`Original::reader`] to read it
    /// from the start).
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// A buffered reader from the first byte.
    pub(crate) fn reader(&self, capacity: usize) -> io::Result<BufReader<&File>> {
        let mut f = &self.file;
        f.rewind()?;
        Ok(BufReader::with_capacity(capacity, f))
    }

    /// A second descriptor of the same open file, for a child's standard
    /// input: the child opens `/dev/stdin`, which is this very file (the
    /// kernel reopens the inode, not a path), at its own offset.
    pub(crate) fn stdin(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    /// A failure about this original, naming it.
    pub(crate) fn failed(&self, what: impl std::fmt::Display) -> ThumbError {
        ThumbError::failed(&self.label, what)
    }
}

/// Reads up to `buf.len()` bytes at `offset` (fewer only at end of file).
pub(crate) fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt};

    #[test]
    fn opens_beneath_the_root_checks_the_inode_and_sniffs() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("lib");
        std::fs::create_dir_all(&root).unwrap();
        let photo = root.join("p.png");
        std::fs::write(&photo, b"\x89PNG\r\n\x1a\n rest").unwrap();
        let ino = std::fs::metadata(&photo).unwrap().ino() as i64;
        let o = Original::open(&root, &photo, Some(ino)).unwrap();
        assert_eq!((o.container, o.len), (Some(Container::Png), 13));
        assert_eq!(o.label(), photo);

        // Another file's inode, a symlink out of the library, a missing file.
        let outside = t.path().join("secret.png");
        std::fs::write(&outside, b"\x89PNG\r\n\x1a\n secret").unwrap();
        assert!(matches!(
            Original::open(&root, &photo, Some(ino + 1)),
            Err(ThumbError::SourceMissing(_))
        ));
        std::fs::remove_file(&photo).unwrap();
        symlink(&outside, &photo).unwrap();
        assert!(matches!(
            Original::open(&root, &photo, None),
            Err(ThumbError::SourceMissing(_))
        ));
        assert!(matches!(
            Original::open(&root, &root.join("none.png"), None),
            Err(ThumbError::SourceMissing(_))
        ));
        // A playlist is nothing isync reads.
        let m3u = root.join("list.mp4");
        std::fs::write(&m3u, b"#EXTM3U\n/etc/passwd\n").unwrap();
        assert_eq!(Original::open(&root, &m3u, None).unwrap().container, None);
    }
}
