//! Logging: journald (with structured fields) when systemd started us —
//! `JOURNAL_STREAM` is set — plain stderr otherwise. Level from `ISYNC_LOG`
//! (error|warn|info|debug|trace, default info). Also installs a panic hook so a
//! panic is logged before the default handler runs.
//!
//! Every message goes through [`Escaping`] first, whichever the sink:
//! control characters in it (a file named `x.jpg\nERROR isync: …`, a user
//! name, a header value) are written as escapes, so one call to `log!` is
//! always exactly one line in `journalctl` or on stderr and nobody who can
//! name a file can forge log lines.

use log::{LevelFilter, Log, Metadata, Record};
use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;

pub fn init() {
    let level = std::env::var("ISYNC_LOG")
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::Info);
    let journald = std::env::var_os("JOURNAL_STREAM").is_some()
        && systemd_journal_logger::connected_to_journal();
    let installed = journald
        && systemd_journal_logger::JournalLog::new()
            .map(|l| l.with_syslog_identifier("isync".into()))
            .is_ok_and(|l| log::set_boxed_logger(Box::new(Escaping(l))).is_ok());
    if !installed {
        let _ = log::set_boxed_logger(Box::new(Escaping(StderrLog)));
    }
    log::set_max_level(level);

    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        log::error!("panic: {info}");
        default_hook(info);
    }));
}

/// `s` with every character that could end or disguise a log line
/// escaped: C0/C1 controls and DEL (`\n`, `\r`, `\t`, else `\u{…}`), the
/// Unicode line and paragraph separators, and the bidirectional overrides
/// that make a line display in another order than it was written.
/// Borrowed when there is nothing to escape (the common case).
pub(crate) fn escape(s: &str) -> Cow<'_, str> {
    let bad = |c: char| {
        c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    };
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if bad(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A logger that hands `L` each record with its message escaped
/// ([`escape`]); the key-value fields are passed on as they are (journald
/// stores each as its own field; [`StderrLog`] escapes them itself).
pub(crate) struct Escaping<L>(pub L);

impl<L: Log> Log for Escaping<L> {
    fn enabled(&self, m: &Metadata) -> bool {
        self.0.enabled(m)
    }

    fn log(&self, record: &Record) {
        // Plain messages skip the formatting below.
        let text = match record.args().as_str() {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(record.args().to_string()),
        };
        match escape(&text) {
            Cow::Borrowed(_) => self.0.log(record),
            Cow::Owned(safe) => self.0.log(
                &Record::builder()
                    .args(format_args!("{safe}"))
                    .metadata(record.metadata().clone())
                    .module_path(record.module_path())
                    .file(record.file())
                    .line(record.line())
                    .key_values(record.key_values())
                    .build(),
            ),
        }
    }

    fn flush(&self) {
        self.0.flush()
    }
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
            escape(&kv.0)
        );
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn escapes_what_could_end_or_disguise_a_line() {
        assert!(matches!(escape("plain é ✓ \\n"), Cow::Borrowed(_)));
        assert_eq!(
            escape("a\nERROR isync: forged\r\t\u{1b}[31m\u{7f}\u{85}"),
            "a\\nERROR isync: forged\\r\\t\\u{1b}[31m\\u{7f}\\u{85}"
        );
        assert_eq!(
            escape("x\u{2028}y\u{202e}gpj.exe\u{2066}"),
            "x\\u{2028}y\\u{202e}gpj.exe\\u{2066}"
        );
    }

    /// Records what the sink behind [`Escaping`] (journald in production)
    /// receives.
    struct Capture(Mutex<Vec<(String, String)>>);

    impl Log for Capture {
        fn enabled(&self, _: &Metadata) -> bool {
            true
        }
        fn log(&self, r: &Record) {
            let mut kv = String::new();
            struct V<'a>(&'a mut String);
            impl<'kvs> log::kv::VisitSource<'kvs> for V<'_> {
                fn visit_pair(
                    &mut self,
                    k: log::kv::Key<'kvs>,
                    v: log::kv::Value<'kvs>,
                ) -> Result<(), log::kv::Error> {
                    self.0.push_str(&format!("{k}={v}"));
                    Ok(())
                }
            }
            let _ = r.key_values().visit(&mut V(&mut kv));
            self.0.lock().unwrap().push((r.args().to_string(), kv));
        }
        fn flush(&self) {}
    }

    #[test]
    fn the_sink_gets_one_escaped_line_with_its_metadata_and_fields() {
        let l = Escaping(Capture(Mutex::new(Vec::new())));
        let name = "a.jpg\nWARN  isync::auth: admin password reset";
        l.log(
            &Record::builder()
                .args(format_args!("scan: cannot read {name}"))
                .level(log::Level::Warn)
                .target("isync::library::scan")
                .key_values(&[("file_id", 7)])
                .build(),
        );
        l.log(&Record::builder().args(format_args!("no escapes")).build());
        let got = l.0 .0.lock().unwrap().clone();
        assert_eq!(
            got,
            [
                (
                    "scan: cannot read a.jpg\\nWARN  isync::auth: admin password reset".into(),
                    "file_id=7".into()
                ),
                ("no escapes".into(), String::new()),
            ]
        );
    }
}
