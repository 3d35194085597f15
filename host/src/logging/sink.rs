//! Where log lines go: stdout, a rotated file, or syslog.
//!
//! The destination is opened before the host forks into a daemon, so start-up problems in
//! `make_service` land in the log file too, and the daemon inherits the open file.

use super::rotating_file::RotatingFile;
use super::syslog::Syslog;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Where the log goes once the host knows.
#[derive(Debug, Clone)]
pub enum Destination {
    Stdout,
    File {
        path: PathBuf,
        rotate_size: u64,
        keep: usize,
    },
    Syslog {
        prefix: String,
    },
}

enum Output {
    Stdout,
    File(RotatingFile),
    Syslog(Syslog),
}

/// The shared log output; every event arrives as one whole line, written under one lock, so
/// lines from many threads never interleave or tear, even across a rotation.
#[derive(Clone)]
pub struct LogSink(Arc<Mutex<Output>>);

impl LogSink {
    /// Opens `destination`.
    pub fn open(destination: &Destination) -> io::Result<Self> {
        let output = match destination {
            Destination::Stdout => Output::Stdout,
            Destination::File {
                path,
                rotate_size,
                keep,
            } => Output::File(RotatingFile::open(path, *rotate_size, *keep).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot open the log file {}: {e}", path.display()),
                )
            })?),
            Destination::Syslog { prefix } => Output::Syslog(Syslog::open(prefix)),
        };
        Ok(Self(Arc::new(Mutex::new(output))))
    }

    fn output(&self) -> MutexGuard<'_, Output> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reopens the log file (after `logrotate` moved it away); other destinations need nothing.
    pub fn reopen(&self) -> io::Result<()> {
        match &mut *self.output() {
            Output::File(file) => file.reopen(),
            _ => Ok(()),
        }
    }
}

impl Output {
    fn write_line(&mut self, level: Level, line: &[u8]) {
        // A log that cannot be written has nowhere to report that; the service goes on.
        let _ = match self {
            Self::Stdout => io::stdout().lock().write_all(line),
            Self::File(file) => file.write_line(line),
            Self::Syslog(syslog) => {
                syslog.send(level, line);
                Ok(())
            }
        };
    }
}

/// One event's writer: tracing-subscriber formats the whole line, then writes it once.
pub struct LineWriter<'a> {
    sink: &'a LogSink,
    level: Level,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.sink.output().write_line(self.level, line);
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            sink: self,
            level: Level::INFO,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        LineWriter {
            sink: self,
            level: *meta.level(),
        }
    }
}
