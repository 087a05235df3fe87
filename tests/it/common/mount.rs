//! File systems a test mounts as root — a tmpfs standing for a USB disk, a
//! read-only bind mount standing for a disk isync cannot write — unmounted
//! (lazily, newest first) when dropped. Without root a test says so and
//! skips; under `CI=true` (where the suite runs as root) it fails instead.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Skips a test that cannot run here (`false`), or fails it under
/// `CI=true`: a skip must never pass for a check there.
pub fn cannot_run(why: &str) -> bool {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}: this test must run under CI=true (as root)");
    }
    eprintln!("skipping: {why}");
    false
}

/// Mounted file systems, unmounted newest first when dropped (a bind
/// mount stacked on another goes before it).
#[derive(Default)]
pub struct Mounts(Vec<PathBuf>);

fn mount(args: &[&str], at: &Path) -> Result<(), String> {
    let out = Command::new("mount").args(args).arg(at).output();
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "mount {args:?} {}: {}",
            at.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("mount {args:?} {}: {e}", at.display())),
    }
}

impl Mounts {
    /// Mounts an empty tmpfs at `at` (created when missing). `None` when
    /// this process may not mount (see [`cannot_run`]).
    pub fn tmpfs(&mut self, at: &Path) -> Option<()> {
        self.tmpfs_sized(at, "64m")
    }

    /// [`Mounts::tmpfs`] of `size` (`mount`'s notation: "16m").
    pub fn tmpfs_sized(&mut self, at: &Path, size: &str) -> Option<()> {
        std::fs::create_dir_all(at).unwrap();
        let opts = format!("size={size},mode=0755");
        match mount(&["-t", "tmpfs", "-o", &opts, "tmpfs"], at) {
            Ok(()) => {
                self.0.push(at.to_path_buf());
                Some(())
            }
            Err(e) => {
                cannot_run(&format!("cannot mount a tmpfs ({e}); run as root"));
                None
            }
        }
    }

    /// Makes `from` appear read-only at `at`, on top of whatever is
    /// mounted there: the same file system (same device number), but no
    /// write succeeds through `at`, not even root's.
    pub fn bind_read_only(&mut self, from: &Path, at: &Path) {
        mount(&["--bind", &from.to_string_lossy()], at).unwrap();
        self.0.push(at.to_path_buf());
        mount(&["-o", "remount,bind,ro"], at).unwrap();
    }

    /// Makes `from` appear (writable) at `at`, on top of what is there.
    pub fn bind(&mut self, from: &Path, at: &Path) {
        mount(&["--bind", &from.to_string_lossy()], at).unwrap();
        self.0.push(at.to_path_buf());
    }

    /// Unmounts the newest mount, which must be at `at` (what it covered is
    /// visible again). A server checking its roots holds the folder open
    /// for a moment now and then (`umount` then says "target is busy"), so
    /// a busy mount is tried again, for at most 30 s.
    pub fn unmount_top(&mut self, at: &Path) {
        assert_eq!(self.0.last().map(PathBuf::as_path), Some(at));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let out = Command::new("umount").arg(at).output().unwrap();
            if out.status.success() {
                break;
            }
            let why = String::from_utf8_lossy(&out.stderr);
            assert!(
                why.contains("busy") && std::time::Instant::now() < deadline,
                "umount {}: {why}",
                at.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.0.pop();
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        while let Some(at) = self.0.pop() {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&at)
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// The device number of the file system holding `p`.
pub fn device(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).unwrap().dev()
}
