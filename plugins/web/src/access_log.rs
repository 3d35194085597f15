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
//! line. A file is written by one thread that owns it: lines arrive whole over a bounded
//! channel and are written in batches, so they never interleave and a slow disk never blocks a
//! connection (when the channel is full, lines are counted and dropped, and the count is
//! logged).

use chrono::Local;
use http::header::{REFERER, USER_AGENT};
use http::{Request, Version};
use plugin_api::tokio::sync::oneshot;
use plugin_api::tracing::{info, warn};
use plugin_api::PeerAddr;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

/// Lines waiting for the writer thread, at most.
const QUEUE: usize = 65_536;

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
                Local::now().format("%d/%b/%Y:%H:%M:%S %z"),
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

/// An access log file and the thread that writes it.
pub struct FileLog {
    path: PathBuf,
    lines: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

enum Message {
    Line(String),
    Reopen(File),
    /// Answered once every line queued before it is written.
    Flush(oneshot::Sender<()>),
}

impl FileLog {
    /// Opens (appending, creating it if needed) `path` and starts its writer thread.
    pub fn open(path: &Path) -> io::Result<Arc<Self>> {
        let file = open_append(path)?;
        let (lines, queue) = sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let writer_dropped = dropped.clone();
        let writer_path = path.to_path_buf();
        std::thread::Builder::new()
            .name("web-access-log".into())
            .spawn(move || write_lines(file, &writer_path, queue, &writer_dropped))?;
        Ok(Arc::new(Self {
            path: path.to_path_buf(),
            lines,
            dropped,
        }))
    }

    /// Opens the file again (after logrotate moved it): new lines go to the new file.
    pub fn reopen(&self) -> io::Result<()> {
        let file = open_append(&self.path)?;
        self.lines
            .send(Message::Reopen(file))
            .map_err(|_| io::Error::other("the access log writer has stopped"))
    }

    /// Waits until every line logged so far is in the file: the last thing the service does.
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.lines.try_send(Message::Flush(done)).is_ok() {
            let _ = written.await;
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, line: String) {
        if let Err(TrySendError::Full(_)) = self.lines.try_send(Message::Line(line)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open the access log {}: {e}", path.display()),
            )
        })
}

/// The writer thread: writes lines as they come, flushing whenever the queue runs dry, until
/// every sender is gone.
fn write_lines(file: File, path: &Path, queue: Receiver<Message>, dropped: &AtomicU64) {
    let mut out = BufWriter::with_capacity(64 * 1024, file);
    let mut failed = false;
    while let Ok(first) = queue.recv() {
        let mut next = Some(first);
        while let Some(message) = next {
            let written = match message {
                Message::Line(mut line) => {
                    line.push('\n');
                    out.write_all(line.as_bytes())
                }
                Message::Reopen(file) => {
                    let flushed = out.flush();
                    out = BufWriter::with_capacity(64 * 1024, file);
                    flushed
                }
                Message::Flush(done) => {
                    let flushed = out.flush();
                    let _ = done.send(());
                    flushed
                }
            };
            report(written, path, &mut failed);
            next = queue.try_recv().ok();
        }
        report(out.flush(), path, &mut failed);
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            warn!(
                "the access log {} could not keep up: {lost} line(s) dropped",
                path.display()
            );
        }
    }
}

/// Logs the first write error, and the recovery, once each.
fn report(written: io::Result<()>, path: &Path, failed: &mut bool) {
    match (written, *failed) {
        (Err(e), false) => {
            warn!("cannot write the access log {}: {e}", path.display());
            *failed = true;
        }
        (Ok(()), true) => {
            info!("writing the access log {} again", path.display());
            *failed = false;
        }
        _ => {}
    }
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
