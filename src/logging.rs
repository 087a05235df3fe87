//! Logging: journald (with structured fields) when systemd started us —
//! `JOURNAL_STREAM` is set — plain stderr otherwise. Level from `ISYNC_LOG`
//! (error|warn|info|debug|trace, default info). Also installs a panic hook so a
//! panic is logged before the default handler runs.

use log::{LevelFilter, Log, Metadata, Record};
use std::io::Write;

pub fn init() {
    let level = std::env::var("ISYNC_LOG")
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::Info);
    let journald = std::env::var_os("JOURNAL_STREAM").is_some()
        && systemd_journal_logger::connected_to_journal();
    let installed = if journald {
        systemd_journal_logger::JournalLog::new()
            .map(|l| l.with_syslog_identifier("isync".into()))
            .and_then(|l| l.install().map_err(std::io::Error::other))
            .is_ok()
    } else {
        false
    };
    if !installed {
        let _ = log::set_boxed_logger(Box::new(StderrLog));
    }
    log::set_max_level(level);

    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        log::error!("panic: {info}");
        default_hook(info);
    }));
}

/// A minimal stderr logger: `LEVEL target: message key=value…`.
struct StderrLog;

impl Log for StderrLog {
    fn enabled(&self, _: &Metadata) -> bool {
        true
    }

    fn log(&self, record: &Record) {
        // Dependencies are noisy at debug level; keep them at warn.
        if record.level() > log::Level::Warn && !record.target().starts_with("isync") {
            return;
        }
        struct Kv(String);
        impl<'kvs> log::kv::VisitSource<'kvs> for Kv {
            fn visit_pair(
                &mut self,
                key: log::kv::Key<'kvs>,
                value: log::kv::Value<'kvs>,
            ) -> Result<(), log::kv::Error> {
                self.0.push_str(&format!(" {key}={value}"));
                Ok(())
            }
        }
        let mut kv = Kv(String::new());
        let _ = record.key_values().visit(&mut kv);
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "{:<5} {}: {}{}",
            record.level(),
            record.target(),
            record.args(),
            kv.0
        );
    }

    fn flush(&self) {}
}
