//! What the parts of one running app coordinate on when they touch the
//! same files: the lock of each library (the scanner against uploads and
//! trash moves), one lock per uploaded file (one request at a time), and
//! when housekeeping last ran.
//!
//! Owned by the database handle the app opens ([`crate::db::Db::locks`])
//! and handed down with it: two apps in one process (tests) share nothing,
//! and nothing is process-wide (before, three statics keyed by the
//! database path). Imports nothing from the crate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// See the module header. `Default` is a fresh, unlocked set.
#[derive(Default)]
pub(crate) struct Locks {
    libraries: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    files: Mutex<HashMap<i64, Weak<tokio::sync::Mutex<()>>>>,
    last_housekeep: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Locks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Locks")
    }
}

impl Locks {
    /// The lock of the library at `path` (as recorded), the same `Arc` for
    /// every caller.
    pub(crate) fn library(&self, path: &str) -> Arc<Mutex<()>> {
        let mut m = self.libraries.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(path.to_string()).or_default().clone()
    }

    /// The lock of file `id`'s uploads, shared while anyone holds it (the
    /// map forgets locks nobody holds).
    pub(crate) fn upload_file(&self, id: i64) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.files.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, w| w.strong_count() > 0);
        match m.get(&id).and_then(Weak::upgrade) {
            Some(l) => l,
            None => {
                let l = Arc::new(tokio::sync::Mutex::new(()));
                m.insert(id, Arc::downgrade(&l));
                l
            }
        }
    }

    /// Whether housekeeping is due (it last ran `every` or longer ago, or
    /// never) and, if so, marks it as run now.
    pub(crate) fn housekeep_due(&self, every: Duration) -> bool {
        let mut last = self
            .last_housekeep
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < every) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_lock_per_library_and_per_file_within_one_set_only() {
        let (a, b) = (Locks::default(), Locks::default());
        assert!(Arc::ptr_eq(&a.library("/l"), &a.library("/l")));
        assert!(!Arc::ptr_eq(&a.library("/l"), &a.library("/m")));
        assert!(!Arc::ptr_eq(&a.library("/l"), &b.library("/l")));
        let held = a.upload_file(7);
        assert!(Arc::ptr_eq(&held, &a.upload_file(7)));
        assert!(!Arc::ptr_eq(&held, &b.upload_file(7)));
        let weak = Arc::downgrade(&held);
        drop(held);
        let _other = a.upload_file(8);
        assert!(weak.upgrade().is_none(), "an unheld file lock is forgotten");
    }

    #[test]
    fn housekeeping_is_due_once_per_period() {
        let (a, b) = (Locks::default(), Locks::default());
        assert!(a.housekeep_due(Duration::from_secs(3600)));
        assert!(!a.housekeep_due(Duration::from_secs(3600)));
        assert!(b.housekeep_due(Duration::from_secs(3600)), "per app");
        assert!(a.housekeep_due(Duration::ZERO));
    }
}
