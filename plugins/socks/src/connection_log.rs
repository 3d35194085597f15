//! `-l/--log FILE`: one line per connection, tab-separated, for the operator's tools:
//! time, client, protocol, user, destination, address connected to, outcome, bytes up,
//! bytes down, seconds. A field that is not known is `-`.
//!
//! Lines are written by a thread of their own, so a slow disk never stalls a connection; if
//! the thread falls more than [`BACKLOG`] lines behind, lines are dropped and counted, and the
//! count is written when it catches up.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

const BACKLOG: usize = 10_000;

/// The log file, opened before the host changes directory or drops privileges.
pub struct ConnectionLog {
    path: PathBuf,
    file: File,
}

impl ConnectionLog {
    /// Through the kit's file policy: never through a symlink, never blocking on a FIFO, only
    /// a regular file; created as the host's own log is (its umask decides the mode).
    pub fn open(path: &Path) -> Result<Self, String> {
        let file = plugin_api::files::open_append(path)
            .map_err(|e| format!("cannot open the connection log {}: {e}", path.display()))?;
        Ok(Self {
            path: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
            file,
        })
    }

    /// Starts the writer thread; lines go to it through the returned handle.
    pub fn start(self) -> std::io::Result<LogLines> {
        let (sender, receiver) = sync_channel(BACKLOG);
        let dropped = Arc::new(AtomicU64::new(0));
        let counted = dropped.clone();
        plugin_api::spawn_thread("socks-log".into(), move || {
            write_lines(self.file, receiver, &counted)
        })?;
        Ok(LogLines {
            path: self.path,
            sender,
            dropped,
        })
    }
}

/// What the writer thread is sent.
enum Entry {
    Line(String),
    /// The file opened again (SIGHUP, after logrotate moved it): lines go there from now on.
    Reopened(File),
}

fn write_lines(file: File, entries: Receiver<Entry>, dropped: &AtomicU64) {
    let mut out = BufWriter::new(file);
    let write = |out: &mut BufWriter<File>, entry| match entry {
        Entry::Line(line) => {
            let _ = out.write_all(line.as_bytes());
        }
        Entry::Reopened(file) => {
            let _ = out.flush();
            *out = BufWriter::new(file);
        }
    };
    while let Ok(entry) = entries.recv() {
        write(&mut out, entry);
        // Write what else is waiting, then flush once: the file stays current without a
        // system call per line under load.
        while let Ok(entry) = entries.try_recv() {
            write(&mut out, entry);
        }
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let _ = writeln!(
                out,
                "# {lost} connection lines dropped: the log could not keep up"
            );
        }
        let _ = out.flush();
    }
}

/// Where connection lines go.
#[derive(Clone)]
pub struct LogLines {
    path: PathBuf,
    sender: SyncSender<Entry>,
    dropped: Arc<AtomicU64>,
}

impl LogLines {
    /// Queues `fields` as one line, with the time in front.
    pub fn write(&self, fields: &[&str]) {
        let mut line = now();
        for field in fields {
            line.push('\t');
            line.push_str(if field.is_empty() { "-" } else { field });
        }
        line.push('\n');
        match self.sender.try_send(Entry::Line(line)) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl LogLines {
    /// Opens the file again, as the kit's file policy allows (a FIFO or a symlink put there
    /// is refused, and the old file stays in use), and has the lines written there from now on.
    pub fn reopen(&self) -> Result<&Path, String> {
        let file = ConnectionLog::open(&self.path)?.file;
        // Waits for room rather than dropping the file: the writer empties the queue quickly.
        self.sender
            .send(Entry::Reopened(file))
            .map_err(|_| "the connection log's writer has stopped".to_string())?;
        Ok(&self.path)
    }
}

/// The local time as the host's log writes it, `2026-11-21T23:55:29+0000`.
fn now() -> String {
    chrono::Local::now()
        .format("%Y-%m-%dT%H:%M:%S%z")
        .to_string()
}
