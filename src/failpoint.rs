//! A test hook for crash and timing drills, in debug builds only:
//! `ISYNC_FAILPOINT=<step>[,<step>…]` makes the process abort at each named
//! step, as a crash would (no destructor runs, nothing more is written);
//! `<step>@<path>` makes it wait there instead until `path` exists (a test
//! looks at the state in between, then creates the file). Release builds
//! compile it to nothing. Imports nothing from the crate.
//!
//! Steps: `upload-reopen-recorded` (a complete original is recorded
//! pending, not moved yet), `upload-complete-moved` (the original is in its
//! folder, not recorded yet), `upload-complete-recorded` (the record says
//! complete, the staging name not removed yet) — `upload/finish.rs`;
//! `thumbmove-copied` (a client thumbnail copied to its library's disk
//! under a temporary name), `thumbmove-linked` (the copy under its own
//! name, the old one not removed yet) — `thumbmove.rs`; `backup-copying`
//! (a backup's copy has begun, at its progress check) — `backup.rs`.

/// Aborts, or waits, at step `name` when `ISYNC_FAILPOINT` names it.
pub(crate) fn failpoint(name: &str) {
    #[cfg(debug_assertions)]
    {
        static POINTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let points = POINTS.get_or_init(|| {
            std::env::var("ISYNC_FAILPOINT")
                .map(|v| v.split(',').map(str::to_owned).collect())
                .unwrap_or_default()
        });
        for p in points {
            match p.split_once('@') {
                Some((step, gate)) if step == name => wait_for(name, std::path::Path::new(gate)),
                None if p == name => {
                    log::warn!("failpoint {name}: aborting");
                    std::process::abort();
                }
                _ => {}
            }
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// Waits (at most two minutes: a test that forgot the gate still ends)
/// until `gate` exists; says so once when it is not there yet.
#[cfg(debug_assertions)]
fn wait_for(name: &str, gate: &std::path::Path) {
    if gate.exists() {
        return;
    }
    log::warn!("failpoint {name}: waiting for {}", gate.display());
    let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !gate.exists() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
