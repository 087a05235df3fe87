//! The service's status towards systemd: the one-line status shown by
//! `systemctl status isync` and the sd-notify calls (ready, status,
//! watchdog, stopping). Used by `app` and `backup`; it imports `db` (and a
//! date formatter), never `app`, `http` or `backup`.

use crate::config::Config;
use crate::db::{libraries, Db};
use crate::freespace::DataRoom;

/// Sends `states` to systemd.
pub(crate) fn notify(states: &[sd_notify::NotifyState]) {
    // Outside systemd NOTIFY_SOCKET is unset and this does nothing.
    let _ = sd_notify::notify(false, states);
}

/// Sends the current status line to systemd (after a backup, say).
/// Blocking.
pub(crate) fn notify_status(db: &Db, cfg: &Config) {
    notify(&[sd_notify::NotifyState::Status(&status_line(db, cfg))]);
}

/// The status line with a note of what is going on (e.g. "backup running").
/// Blocking.
pub(crate) fn notify_status_note(db: &Db, cfg: &Config, note: &str) {
    notify(&[sd_notify::NotifyState::Status(&format!(
        "{}; {note}",
        status_line(db, cfg)
    ))]);
}

/// One-line service status for `systemctl status isync`: the data dir's
/// disk first when it is below its reserve (what the operator must act
/// on), then libraries, files, held removals, the last backup. Blocking.
pub(crate) fn status_line(db: &Db, cfg: &Config) -> String {
    let line = library_line(db);
    match DataRoom::of(&cfg.data_dir, cfg.data_reserve()) {
        Ok(room) => match room.note() {
            Some(n) => format!("{n}; {line}"),
            None => line,
        },
        Err(e) => format!(
            "free space of {} unknown ({e}); {line}",
            cfg.data_dir.display()
        ),
    }
}

fn library_line(db: &Db) -> String {
    let r = db.read(|c| {
        let libs = libraries::list(c)?;
        let files = crate::db::files::count(c)?;
        let held: i64 = libraries::held_deletions(c)?.iter().map(|(_, n)| n).sum();
        let last = crate::db::accounts::backup_runs(c, 1)?.pop();
        Ok((libs, files, held, last))
    });
    match r {
        Ok((libs, files, held, last)) => {
            let online = libs.iter().filter(|l| l.online).count();
            let mut s = format!("{online} of {} libraries online, {files} files", libs.len());
            if held > 0 {
                s.push_str(&format!(
                    ", {held} removals held back (isync scan --confirm-deletions)"
                ));
            }
            match last {
                Some(b) if b.ok => s.push_str(&format!(
                    ", last backup {} ok",
                    crate::time::civil_date(b.finished)
                )),
                Some(b) => s.push_str(&format!(", LAST BACKUP FAILED: {}", b.message)),
                None => s.push_str(", no backup yet"),
            }
            s
        }
        Err(e) => format!("database error: {e}"),
    }
}
