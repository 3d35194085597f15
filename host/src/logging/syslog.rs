//! `--syslog`: log lines through the C library's `syslog(3)`, tagged with `--prefix`.

use std::ffi::CString;
use tracing::Level;

pub struct Syslog;

impl Syslog {
    /// Opens the connection to the system logger with `prefix` as the identity.
    pub fn open(prefix: &str) -> Self {
        // openlog keeps the pointer, so the identity must live for the rest of the process.
        let ident = CString::new(prefix.replace('\0', "")).expect("NULs were removed");
        let ident: &'static CString = Box::leak(Box::new(ident));
        // SAFETY: `ident` is NUL-terminated and never freed.
        unsafe {
            libc::openlog(
                ident.as_ptr(),
                libc::LOG_PID | libc::LOG_NDELAY,
                libc::LOG_DAEMON,
            )
        };
        Self
    }

    pub fn send(&self, level: Level, line: &[u8]) {
        let priority = match level {
            Level::ERROR => libc::LOG_ERR,
            Level::WARN => libc::LOG_WARNING,
            Level::INFO => libc::LOG_INFO,
            Level::DEBUG | Level::TRACE => libc::LOG_DEBUG,
        };
        let text =
            String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(line)).replace('\0', "");
        let message = CString::new(text).expect("NULs were removed");
        // SAFETY: a constant "%s" format with one NUL-terminated string argument.
        unsafe { libc::syslog(priority, c"%s".as_ptr(), message.as_ptr()) };
    }
}
