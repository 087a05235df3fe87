//! Renders in progress, on disk, so that no original can crash the server
//! in a loop. Before a render of an original starts, a record of it (file
//! id, version fingerprint, levels) is written to a slot file and flushed
//! to the disk; when the render ends, however it ends, the slot is cleared.
//! A slot still holding a record when the server starts names a render the
//! process did not survive (killed by the kernel for its memory, by the
//! watchdog, a crash): the server records that original's thumbnails as
//! failed (`prerender::record_interrupted`), so neither the pre-render
//! sweep nor a request tries it again until the file changes.
//!
//! Slots are small files reused in place (`<cache>/.journal/slot-N`, one per
//! render running at once): marking one is a 32-byte write at offset 0 and
//! an `fdatasync` of one block (the file's size never changes, so no
//! metadata is flushed), clearing it a write without a flush — a clear
//! lost to a power cut only makes a completed render look interrupted, and
//! the recovery checks the cache for that.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::model::ThumbLevel;

const RECORD_BYTES: usize = 32;
const MAGIC: &[u8; 4] = b"ISRJ";
const VERSION: u8 = 1;

/// A render the last run did not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interrupted {
    pub file_id: i64,
    pub fingerprint: u64,
    pub levels: Vec<ThumbLevel>,
}

pub struct Journal {
    dir: PathBuf,
    /// Slots not in use, and how many exist.
    free: Mutex<(Vec<Slot>, usize)>,
}

struct Slot {
    file: File,
}

impl Journal {
    /// The journal in `dir` (created on first use).
    pub fn new(dir: PathBuf) -> Journal {
        Journal {
            dir,
            free: Mutex::new((Vec::new(), 0)),
        }
    }

    /// Records that a render of `levels` of `file_id` (version
    /// `fingerprint`) begins, durably; the mark clears when dropped.
    /// Blocking (a write and a flush).
    pub fn begin(
        &self,
        file_id: i64,
        fingerprint: u64,
        levels: &[ThumbLevel],
    ) -> io::Result<Mark<'_>> {
        let slot = self.take_slot()?;
        let record = encode(file_id, fingerprint, levels);
        let marked = slot
            .file
            .write_all_at(&record, 0)
            .and_then(|()| slot.file.sync_data());
        let mark = Mark {
            journal: self,
            slot: Some(slot),
        };
        marked?;
        Ok(mark)
    }

    /// The renders recorded as running, every slot cleared. Called at start,
    /// before any render. Unreadable or foreign slot contents are skipped.
    pub(crate) fn take_interrupted(&self) -> io::Result<Vec<Interrupted>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut found = Vec::new();
        for entry in entries {
            let path = entry?.path();
            if !is_slot(&path) {
                continue;
            }
            let file = File::options().read(true).write(true).open(&path)?;
            let mut record = [0u8; RECORD_BYTES];
            let n = super::original::read_at_most(&file, &mut record, 0)?;
            if let Some(i) = (n == RECORD_BYTES).then(|| decode(&record)).flatten() {
                found.push(i);
            }
            if record != [0; RECORD_BYTES] {
                file.write_all_at(&[0; RECORD_BYTES], 0)?;
                file.sync_data()?;
            }
        }
        Ok(found)
    }

    /// Clears every slot: the server stops on purpose, and a render it
    /// leaves running (the stop does not wait for a slow one) is not a
    /// crash. Blocking.
    pub(crate) fn clear_all(&self) {
        let free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        for slot in &free.0 {
            let _ = slot.file.write_all_at(&[0; RECORD_BYTES], 0);
        }
        drop(free);
        // Slots in use by renders still running are cleared by their marks;
        // a render the exit cuts short leaves its record, which is cleared
        // here by path.
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for path in entries.flatten().map(|e| e.path()).filter(|p| is_slot(p)) {
                if let Ok(f) = File::options().write(true).open(&path) {
                    let _ = f.write_all_at(&[0; RECORD_BYTES], 0);
                }
            }
        }
    }

    fn take_slot(&self) -> io::Result<Slot> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = free.0.pop() {
            return Ok(slot);
        }
        let n = free.1;
        free.1 += 1;
        drop(free);
        // A new slot, made durable once (its name and its size), so that
        // later marks only flush their block.
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(format!("slot-{n}"));
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        file.write_all_at(&[0; RECORD_BYTES], 0)?;
        file.sync_all()?;
        File::open(&self.dir)?.sync_all()?;
        Ok(Slot { file })
    }
}

fn is_slot(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("slot-"))
}

/// A render in progress; clears its record when dropped.
pub struct Mark<'a> {
    journal: &'a Journal,
    slot: Option<Slot>,
}

impl Drop for Mark<'_> {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        if let Err(e) = slot.file.write_all_at(&[0; RECORD_BYTES], 0) {
            // Left marked, the next start would take this file for one
            // that crashed the server: drop the slot instead of reusing it.
            log::warn!("thumbnail journal: cannot clear a slot: {e}");
            return;
        }
        let mut free = self.journal.free.lock().unwrap_or_else(|p| p.into_inner());
        free.0.push(slot);
    }
}

fn encode(file_id: i64, fingerprint: u64, levels: &[ThumbLevel]) -> [u8; RECORD_BYTES] {
    let mut r = [0u8; RECORD_BYTES];
    r[..4].copy_from_slice(MAGIC);
    r[4] = VERSION;
    r[5] = levels.iter().fold(0u8, |m, l| m | (1 << l.as_u8()));
    r[8..16].copy_from_slice(&file_id.to_le_bytes());
    r[16..24].copy_from_slice(&fingerprint.to_le_bytes());
    let sum = checksum(&r[..24]);
    r[24..28].copy_from_slice(&sum.to_le_bytes());
    r
}

fn decode(r: &[u8; RECORD_BYTES]) -> Option<Interrupted> {
    if &r[..4] != MAGIC || r[4] != VERSION {
        return None;
    }
    if u32::from_le_bytes(r[24..28].try_into().ok()?) != checksum(&r[..24]) {
        return None;
    }
    let levels = [ThumbLevel::Small, ThumbLevel::Screen]
        .into_iter()
        .filter(|l| r[5] & (1 << l.as_u8()) != 0)
        .collect();
    Some(Interrupted {
        file_id: i64::from_le_bytes(r[8..16].try_into().ok()?),
        fingerprint: u64::from_le_bytes(r[16..24].try_into().ok()?),
        levels,
    })
}

/// FNV-1a, 32 bits: a torn or foreign record is not taken for one.
fn checksum(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_render_left_marked_is_found_once_and_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path().join(".journal"));
        assert!(j.take_interrupted().unwrap().is_empty(), "no dir yet");
        {
            let _done = j.begin(7, 0xabc, &[ThumbLevel::Screen]).unwrap();
        }
        let both = [ThumbLevel::Small, ThumbLevel::Screen];
        let a = j.begin(42, 0x1234_5678_9abc, &both).unwrap();
        let b = j.begin(43, 9, &[ThumbLevel::Small]).unwrap();
        assert_eq!(j.free.lock().unwrap().1, 2, "the cleared slot is reused");
        // The process dies here: the marks are never dropped.
        std::mem::forget((a, b));

        let after = Journal::new(dir.path().join(".journal"));
        let mut found = after.take_interrupted().unwrap();
        found.sort_by_key(|i| i.file_id);
        assert_eq!(
            found,
            [
                Interrupted {
                    file_id: 42,
                    fingerprint: 0x1234_5678_9abc,
                    levels: both.to_vec()
                },
                Interrupted {
                    file_id: 43,
                    fingerprint: 9,
                    levels: vec![ThumbLevel::Small]
                }
            ]
        );
        assert!(after.take_interrupted().unwrap().is_empty(), "cleared");
    }

    #[test]
    fn a_stop_clears_what_is_left_and_junk_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path().to_path_buf());
        std::mem::forget(j.begin(1, 1, &[ThumbLevel::Small]).unwrap());
        j.clear_all();
        assert!(Journal::new(dir.path().to_path_buf())
            .take_interrupted()
            .unwrap()
            .is_empty());
        std::fs::write(dir.path().join("slot-9"), [0xAB; RECORD_BYTES]).unwrap();
        std::fs::write(dir.path().join("other"), b"not a slot").unwrap();
        let mut torn = encode(5, 5, &[ThumbLevel::Small]);
        torn[10] ^= 1;
        std::fs::write(dir.path().join("slot-8"), torn).unwrap();
        assert!(Journal::new(dir.path().to_path_buf())
            .take_interrupted()
            .unwrap()
            .is_empty());
    }
}
