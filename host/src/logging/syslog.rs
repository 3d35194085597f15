//! `--syslog`: log lines through the C library's `syslog(3)`, tagged with `--prefix`.

use nix::syslog::{openlog, syslog, Facility, LogFlags, Priority, Severity};
use std::ffi::CString;
use tracing::Level;

pub struct Syslog;

impl Syslog {
    /// Opens the connection to the system logger with `prefix` as the identity.
    pub fn open(prefix: &str) -> Self {
        // openlog keeps the pointer, so the identity must live for the rest of the process.
        let ident = CString::new(prefix.replace('\0', "")).expect("NULs were removed");
        let ident: &'static CString = Box::leak(Box::new(ident));
        // Nothing to report to if the system logger cannot be reached; syslog(3) retries.
        let _ = openlog(
            Some(ident.as_c_str()),
            LogFlags::LOG_PID | LogFlags::LOG_NDELAY,
            Facility::LOG_DAEMON,
        );
        Self
    }

    pub fn send(&self, level: Level, line: &[u8]) {
        let severity = match level {
            Level::ERROR => Severity::LOG_ERR,
            Level::WARN => Severity::LOG_WARNING,
            Level::INFO => Severity::LOG_INFO,
            Level::DEBUG | Level::TRACE => Severity::LOG_DEBUG,
        };
        // The formatter escaped every control character, NUL included; lossy only for bytes
        // that are not UTF-8, which a formatted line never holds.
        let text = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(line));
        let _ = syslog(Priority::new(severity, Facility::LOG_DAEMON), &*text);
    }
}
