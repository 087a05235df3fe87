//! Free space on a file system, and the data dir's reserve (the SD card on
//! the appliance): what uploads, scans, the thumbnail cache, the status
//! line and `/api/v1/info` ask. Imports nothing of the crate: every layer
//! may use it.

use std::fs::File;
use std::path::Path;

/// Free bytes for an unprivileged writer on the file system holding `p`.
pub fn free_bytes(p: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(p).map_err(std::io::Error::from)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Free bytes of the file system holding the open file `f`.
pub(crate) fn free_of(f: &File) -> std::io::Result<u64> {
    let s = rustix::fs::fstatvfs(f).map_err(std::io::Error::from)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Whether `p` (or, while it does not exist yet, its nearest existing
/// ancestor: a folder about to be made) is on the file system holding
/// `other`. Blocking (stats).
pub(crate) fn same_file_system(p: &Path, other: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let mut at = p;
    let here = loop {
        match std::fs::metadata(at) {
            Ok(m) => break m.dev(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match at.parent() {
                // A relative path's last ancestor is the working folder.
                Some(up) if up.as_os_str().is_empty() => at = Path::new("."),
                Some(up) => at = up,
                None => return Err(e),
            },
            Err(e) => return Err(e),
        }
    };
    Ok(here == std::fs::metadata(other)?.dev())
}

/// The free space of the data dir's disk against its reserve: what the
/// status line and `/api/v1/info` report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DataRoom {
    pub free: u64,
    pub reserve: u64,
}

impl DataRoom {
    /// Reads it now for the data dir `dir`, which keeps `reserve` bytes
    /// free ([`crate::config::Config::data_reserve`]). Blocking (a statfs).
    pub(crate) fn of(dir: &Path, reserve: u64) -> std::io::Result<DataRoom> {
        Ok(DataRoom {
            free: free_bytes(dir)?,
            reserve,
        })
    }

    /// Below the reserve: writes to the data dir's disk are refused.
    pub(crate) fn low(&self) -> bool {
        self.free < self.reserve
    }

    /// What an operator reads when it is low, e.g. "SD card nearly full:
    /// 120 MiB free, reserve 256 MiB; uploads to it paused".
    pub(crate) fn note(&self) -> Option<String> {
        self.low().then(|| {
            format!(
                "SD card nearly full: {} free, reserve {}; uploads to it paused",
                mb(self.free),
                mb(self.reserve)
            )
        })
    }
}

/// Bytes in MiB (the unit of `df -h` and of the reserve's default), with
/// one decimal below 10 MiB (small test file systems).
pub(crate) fn mb(b: u64) -> String {
    let m = b as f64 / (1u64 << 20) as f64;
    if m < 10.0 {
        format!("{m:.1} MiB")
    } else {
        format!("{m:.0} MiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_still_to_be_made_is_on_its_ancestors_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let later = dir.path().join("not/made/yet");
        assert!(same_file_system(&later, dir.path()).unwrap());
        assert!(same_file_system(dir.path(), dir.path()).unwrap());
        // /proc is a file system of its own everywhere Linux runs.
        assert!(!same_file_system(Path::new("/proc/self"), dir.path()).unwrap());
        let here = std::env::current_dir().unwrap();
        assert!(same_file_system(Path::new("relative/none"), &here).unwrap());
        assert!(same_file_system(dir.path(), Path::new("/nonexistent")).is_err());
    }
}
