//! The access log: one line per request in the Combined Log Format, to a file of its own or
//! to the host's log.
//!
//! ```text
//! 127.0.0.1 - - [01/Dec/2026:02:36:50 +0000] "GET /a.txt HTTP/1.1" 200 12 "-" "curl/7.88.1"
//! ```
//!
//! A line is written when the response body is done with, so it carries the bytes actually
//! sent (fewer than the length when the client went away). Every field the client chose is
//! escaped as Apache does (`"` as `\"`, control bytes as `\xHH`), so no request can forge a
//! line. A file is written in batches by a thread of its own (see [`FileLog`]).

use chrono::Local;
use http::header::{REFERER, USER_AGENT};
use http::{Request, Version};
use plugin_api::files;
use plugin_api::tracing::{info, warn};
use plugin_api::PeerAddr;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where access lines go.
#[derive(Clone)]
pub enum AccessLog {
    /// The host's log, as `[web] 127.0.0.1 - - …`.
    HostLog,
    /// A file of its own, written by one thread.
    File(Arc<FileLog>),
}

/// What a request contributes to its line, taken when it arrives.
pub struct PendingLine {
    log: AccessLog,
    /// Everything up to the status: `host - - [time] "request"`.
    head: String,
    /// The referer and user agent, quoted: `"ref" "agent"`.
    tail: String,
    status: u16,
    sent: u64,
}

impl PendingLine {
    pub fn new<B>(log: &AccessLog, request: &Request<B>, peer: &PeerAddr) -> Self {
        let host = match peer.socket_addr() {
            Some(address) => address.ip().to_string(),
            None => "-".to_string(),
        };
        let version = match request.version() {
            Version::HTTP_09 => "HTTP/0.9",
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_3 => "HTTP/3.0",
            _ => "HTTP/1.1",
        };
        // HTTP/2 carries the scheme and authority apart; the line shows the path, as nginx's.
        let target = match request.version() {
            Version::HTTP_2 => request
                .uri()
                .path_and_query()
                .map_or("/".into(), ToString::to_string),
            _ => request.uri().to_string(),
        };
        let header = |name| {
            request
                .headers()
                .get(name)
                .map_or("-".to_string(), |v| escape(v.as_bytes()))
        };
        Self {
            log: log.clone(),
            head: format!(
                "{host} - - [{}] \"{} {} {version}\"",
                timestamp(),
                escape(request.method().as_str().as_bytes()),
                escape(target.as_bytes()),
            ),
            tail: format!("\"{}\" \"{}\"", header(REFERER), header(USER_AGENT)),
            status: 0,
            sent: 0,
        }
    }

    pub fn set_status(&mut self, status: u16) {
        self.status = status;
    }

    pub fn sent(&mut self, bytes: u64) {
        self.sent += bytes;
    }
}

impl Drop for PendingLine {
    fn drop(&mut self) {
        let bytes = match self.sent {
            0 => "-".to_string(),
            n => n.to_string(),
        };
        let line = format!("{} {} {bytes} {}", self.head, self.status, self.tail);
        match &self.log {
            AccessLog::HostLog => info!("{line}"),
            AccessLog::File(file) => file.write(line),
        }
    }
}

/// The time now as the log writes it, `01/Dec/2026:02:36:50 +0000`; formatted once a second
/// per thread, since formatting it for every request showed in profiles.
fn timestamp() -> String {
    thread_local! {
        static CACHED: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let second = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHED.with_borrow_mut(|(cached, text)| {
        if *cached != second {
            *text = Local::now().format("%d/%b/%Y:%H:%M:%S %z").to_string();
            *cached = second;
        }
        text.clone()
    })
}

/// Escapes what a client sent, as Apache's log does.
fn escape(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for &byte in raw {
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(byte as char),
            _ => out.push_str(&format!("\\x{byte:02x}")),
        }
    }
    out
}

/// An access log file: lines gather in a buffer that one thread writes out.
///
/// Handing each line to the writer thread woke it once per request, and the wake-ups cost more
/// than the requests (measured with `bench web`). So connections append whole lines to a
/// shared buffer, and the writer takes the buffer every [`WRITE_EVERY`], or as soon as it
/// holds [`WRITE_AT`] bytes. Lines never interleave: each is appended, and the file written,
/// under a lock. A disk that cannot keep up never blocks a connection: past [`MAX_WAITING`]
/// bytes, lines are counted and dropped, and the count is logged.
pub struct FileLog {
    path: PathBuf,
    shared: Arc<Shared>,
}

/// How often the writer writes what has gathered.
const WRITE_EVERY: Duration = Duration::from_millis(100);
/// The writer is woken at once when this much has gathered.
const WRITE_AT: usize = 64 * 1024;
/// At most this much waits for the writer.
const MAX_WAITING: usize = 4 * 1024 * 1024;

struct Shared {
    waiting: Mutex<Waiting>,
    wake: Condvar,
    /// The file, locked while it is written or replaced.
    file: Mutex<File>,
}

#[derive(Default)]
struct Waiting {
    text: Vec<u8>,
    dropped: u64,
    /// The log is gone (its service was dropped): the writer writes what is left and ends.
    closed: bool,
}

impl FileLog {
    /// Opens (appending, creating it if needed) `path` and starts its writer thread.
    pub fn open(path: &Path) -> io::Result<Arc<Self>> {
        let shared = Arc::new(Shared {
            waiting: Mutex::default(),
            wake: Condvar::new(),
            file: Mutex::new(open_append(path)?),
        });
        let (writer, writer_path) = (shared.clone(), path.to_path_buf());
        plugin_api::spawn_thread("web-access-log".into(), move || {
            writer.write_until_closed(&writer_path)
        })?;
        Ok(Arc::new(Self {
            path: path.to_path_buf(),
            shared,
        }))
    }

    /// Opens the file again (after logrotate moved it): new lines go to the new file.
    pub fn reopen(&self) -> io::Result<()> {
        let file = open_append(&self.path)?;
        self.flush();
        *lock(&self.shared.file) = file;
        Ok(())
    }

    /// Writes every line logged so far: the last thing the service does.
    pub fn flush(&self) {
        if let Err(e) = self.shared.write_waiting(&self.path) {
            warn!("cannot write the access log {}: {e}", self.path.display());
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, line: String) {
        let mut waiting = lock(&self.shared.waiting);
        if waiting.text.len() + line.len() >= MAX_WAITING {
            waiting.dropped += 1;
            return;
        }
        waiting.text.extend_from_slice(line.as_bytes());
        waiting.text.push(b'\n');
        if waiting.text.len() >= WRITE_AT {
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for FileLog {
    fn drop(&mut self) {
        lock(&self.shared.waiting).closed = true;
        self.shared.wake.notify_one();
    }
}

impl Shared {
    /// The writer thread: writes what has gathered, every [`WRITE_EVERY`] or when woken, until
    /// the log is dropped (a service restarted by SIGHUP must not leave its writer behind).
    fn write_until_closed(&self, path: &Path) {
        let mut failing = false;
        loop {
            let waiting = lock(&self.waiting);
            let (waiting, _) = self
                .wake
                .wait_timeout_while(waiting, WRITE_EVERY, |w| {
                    w.text.len() < WRITE_AT && !w.closed
                })
                .unwrap_or_else(|p| p.into_inner());
            let closed = waiting.closed;
            drop(waiting);
            // The first failure and the recovery are logged, not every write in between.
            match (self.write_waiting(path), failing) {
                (Err(e), false) => {
                    warn!("cannot write the access log {}: {e}", path.display());
                    failing = true;
                }
                (Ok(()), true) => {
                    info!("writing the access log {} again", path.display());
                    failing = false;
                }
                _ => {}
            }
            if closed {
                return;
            }
        }
    }

    /// Takes what has gathered and writes it, holding the file's lock.
    fn write_waiting(&self, path: &Path) -> io::Result<()> {
        let mut file = lock(&self.file);
        let (mut text, dropped) = {
            let mut waiting = lock(&self.waiting);
            let dropped = std::mem::take(&mut waiting.dropped);
            (std::mem::take(&mut waiting.text), dropped)
        };
        if dropped > 0 {
            warn!(
                "the access log {} could not keep up: {dropped} line(s) dropped",
                path.display()
            );
        }
        let written = file.write_all(&text);
        // The emptied buffer goes back, so the next batch does not grow one from nothing.
        text.clear();
        let mut waiting = lock(&self.waiting);
        if waiting.text.capacity() < text.capacity() {
            text.extend_from_slice(&waiting.text);
            waiting.text = text;
        }
        written
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Through the kit's file policy: never through a symlink, never blocking on a FIFO, only a
/// regular file; created as the host's own log is (its umask decides the mode).
fn open_append(path: &Path) -> io::Result<File> {
    files::open_append(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot open the access log {}: {e}", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_text_cannot_forge_a_line() {
        assert_eq!(escape(b"GET /a\"b HTTP/1.1"), "GET /a\\\"b HTTP/1.1");
        assert_eq!(escape(b"x\ny\\\x1b\xff"), "x\\x0ay\\\\\\x1b\\xff");
    }
}
