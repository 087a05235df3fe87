//! Opening a file of a library without following symlinks out of it.
//!
//! The library tree is not ours: anyone with write access to the disk (a
//! Samba share, a sync app, an uploader's crafted archive) can replace a
//! listed file with a symlink to `/etc/shadow` or to another user's library
//! between our scan and a request. Checking the path and then opening it
//! races with that swap, so every read of an original goes through
//! [`open_beneath`]: the path is resolved by the kernel relative to the
//! library root with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, which
//! refuses a symlink in any component and any `..` that leaves the root,
//! atomically with the open. On kernels before 5.6 (no `openat2`) each
//! component is opened with `O_NOFOLLOW` from the one before instead, which
//! gives the same guarantee one step at a time.
//!
//! The root itself may be a symlink (an administrator's `/srv/photos ->
//! /media/isync`): it is configured, not uploaded, and is opened as given.
//!
//! Opens use `O_NONBLOCK` so a FIFO planted in the tree cannot hang a
//! thread, and only regular files are returned. [`check_identity`] compares
//! the opened inode with the one the scanner recorded: a file replaced
//! behind our back (renamed over, hard-linked from elsewhere) is not served
//! under the old record's id.

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};

/// Why a file of a library could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SafeOpenError {
    /// Nothing at that path (or a component is not a folder).
    #[error("no such file")]
    Missing,
    /// The path leaves the root, or a component (the file itself
    /// included) is a symlink.
    #[error("path leaves the library or goes through a symlink")]
    Escapes,
    /// There is something at the path, but not a regular file (a FIFO,
    /// a device, a folder).
    #[error("not a regular file")]
    NotRegular,
    /// A regular file, but not the one the record describes.
    #[error("the file was replaced since it was scanned")]
    Replaced,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl SafeOpenError {
    /// True when the request should be answered as "the file is gone":
    /// nothing there, or nothing we may serve.
    #[cfg(test)]
    pub(crate) fn is_gone(&self) -> bool {
        !matches!(self, SafeOpenError::Io(_))
    }
}

fn from_errno(e: Errno) -> SafeOpenError {
    match e {
        Errno::NOENT | Errno::NOTDIR => SafeOpenError::Missing,
        // ELOOP: a symlink with RESOLVE_NO_SYMLINKS or O_NOFOLLOW; EXDEV:
        // RESOLVE_BENEATH refused a `..` or an absolute path.
        Errno::LOOP | Errno::XDEV => SafeOpenError::Escapes,
        e => SafeOpenError::Io(e.into()),
    }
}

/// The components of `rel`, refusing anything but plain names (no `..`,
/// no root, no prefix). `.` components are dropped.
fn plain_components(rel: &Path) -> Result<Vec<&std::ffi::OsStr>, SafeOpenError> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(SafeOpenError::Escapes)
            }
        }
    }
    if out.is_empty() {
        return Err(SafeOpenError::NotRegular);
    }
    Ok(out)
}

const FILE_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOCTTY)
    .union(OFlags::NONBLOCK);

/// Opens the regular file at `rel` below the folder `root`, read-only,
/// without following any symlink below `root`. Blocking (a syscall or a
/// few); call it from blocking code.
pub(crate) fn open_beneath(root: &Path, rel: &Path) -> Result<File, SafeOpenError> {
    let names = plain_components(rel)?;
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(from_errno)?;
    let joined: std::path::PathBuf = names.iter().collect();
    let fd = match rustix::fs::openat2(
        &dir,
        &joined,
        FILE_FLAGS | OFlags::NOFOLLOW,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        // No openat2 (kernel < 5.6, or a seccomp filter that hides it):
        // one component at a time.
        Err(Errno::NOSYS) | Err(Errno::PERM) => open_by_components(dir, &names)?,
        // A concurrent rename anywhere on the mount makes RESOLVE_BENEATH
        // answer EAGAIN; the walk below has no such limit.
        Err(Errno::AGAIN) => open_by_components(dir, &names)?,
        Err(e) => return Err(from_errno(e)),
    };
    regular(fd)
}

fn open_by_components(
    mut dir: OwnedFd,
    names: &[&std::ffi::OsStr],
) -> Result<OwnedFd, SafeOpenError> {
    let (last, folders) = names.split_last().expect("at least one component");
    for name in folders {
        dir = match rustix::fs::openat(
            &dir,
            *name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(d) => d,
            // O_PATH | O_NOFOLLOW on a symlink answers "not a folder":
            // tell a symlink apart from a plain file in the way.
            Err(Errno::NOTDIR) if is_symlink(&dir, name) => return Err(SafeOpenError::Escapes),
            Err(e) => return Err(from_errno(e)),
        };
    }
    rustix::fs::openat(&dir, *last, FILE_FLAGS | OFlags::NOFOLLOW, Mode::empty())
        .map_err(from_errno)
}

fn is_symlink(dir: &OwnedFd, name: &std::ffi::OsStr) -> bool {
    rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Symlink
    })
}

/// Keeps `fd` only if it is a regular file, and clears `O_NONBLOCK` (which
/// only mattered for the open).
fn regular(fd: OwnedFd) -> Result<File, SafeOpenError> {
    let st = rustix::fs::fstat(&fd).map_err(from_errno)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(SafeOpenError::NotRegular);
    }
    let flags = rustix::fs::fcntl_getfl(&fd).map_err(from_errno)?;
    rustix::fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK).map_err(from_errno)?;
    Ok(File::from(fd))
}

/// Opens `abs`, which must lie below `root`, with [`open_beneath`].
pub(crate) fn open_in_root(root: &Path, abs: &Path) -> Result<File, SafeOpenError> {
    let rel = abs.strip_prefix(root).map_err(|_| SafeOpenError::Escapes)?;
    open_beneath(root, rel)
}

/// Checks that an opened file is the one a record describes: same inode
/// when the record has one. Sizes and times may differ (a file edited in
/// place is still that file; the scanner will re-probe it).
pub(crate) fn check_identity(
    file: &File,
    inode: Option<i64>,
) -> Result<std::fs::Metadata, SafeOpenError> {
    let meta = file.metadata()?;
    match inode {
        Some(ino) if ino as u64 != meta.ino() => Err(SafeOpenError::Replaced),
        _ => Ok(meta),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    fn read(f: File) -> String {
        let mut s = String::new();
        let mut f = f;
        f.read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn opens_plain_files_and_refuses_every_way_out() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("lib");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/photo.jpg"), "inside").unwrap();
        std::fs::write(t.path().join("secret"), "outside").unwrap();
        // A symlinked file, a symlinked folder, a folder symlink inside the
        // root pointing inside the root (still refused: no symlinks at all).
        symlink(t.path().join("secret"), root.join("a/link.jpg")).unwrap();
        symlink(t.path(), root.join("up")).unwrap();
        symlink(root.join("a"), root.join("alias")).unwrap();
        std::fs::create_dir(root.join("dir.jpg")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("fifo.jpg"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();

        assert_eq!(
            read(open_beneath(&root, Path::new("a/b/photo.jpg")).unwrap()),
            "inside"
        );
        assert_eq!(
            read(open_in_root(&root, &root.join("a/./b/photo.jpg")).unwrap()),
            "inside"
        );
        for (rel, want) in [
            ("a/link.jpg", "escapes"),
            ("up/secret", "escapes"),
            ("alias/b/photo.jpg", "escapes"),
            ("a/../../secret", "escapes"),
            ("/etc/passwd", "escapes"),
            ("a/b/none.jpg", "missing"),
            ("a/b/photo.jpg/x", "missing"),
            ("dir.jpg", "not regular"),
            // Would block forever without O_NONBLOCK.
            ("fifo.jpg", "not regular"),
        ] {
            let e = open_beneath(&root, Path::new(rel)).unwrap_err();
            let got = match e {
                SafeOpenError::Escapes => "escapes",
                SafeOpenError::Missing => "missing",
                SafeOpenError::NotRegular => "not regular",
                other => panic!("{rel}: {other:?}"),
            };
            assert_eq!(got, want, "{rel}");
            assert!(e.is_gone());
        }
        assert!(matches!(
            open_in_root(&root, &t.path().join("secret")),
            Err(SafeOpenError::Escapes)
        ));
    }

    #[test]
    fn the_component_walk_gives_the_same_answers() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::write(root.join("a/f"), "x").unwrap();
        symlink(root.join("a"), root.join("l")).unwrap();
        symlink(root.join("a/f"), root.join("a/lf")).unwrap();
        let dir =
            || rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let walk = |p: &str| {
            let names = plain_components(Path::new(p)).unwrap();
            open_by_components(dir(), &names).and_then(regular)
        };
        assert_eq!(read(walk("a/f").unwrap()), "x");
        assert!(matches!(walk("l/f"), Err(SafeOpenError::Escapes)));
        assert!(matches!(walk("a/lf"), Err(SafeOpenError::Escapes)));
        assert!(matches!(walk("a/none"), Err(SafeOpenError::Missing)));
    }

    #[test]
    fn a_replaced_file_is_told_apart_from_an_edited_one() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        std::fs::write(&p, "one").unwrap();
        let ino = std::fs::metadata(&p).unwrap().ino() as i64;
        std::fs::write(&p, "edited in place").unwrap();
        let f = open_beneath(t.path(), Path::new("f")).unwrap();
        assert!(check_identity(&f, Some(ino)).is_ok());
        assert!(check_identity(&f, None).is_ok());
        let other = t.path().join("g");
        std::fs::write(&other, "someone else's").unwrap();
        std::fs::rename(&other, &p).unwrap();
        let f = open_beneath(t.path(), Path::new("f")).unwrap();
        assert!(matches!(
            check_identity(&f, Some(ino)),
            Err(SafeOpenError::Replaced)
        ));
    }
}
