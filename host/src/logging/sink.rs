//! Where log lines go: stdout, a rotated file, or syslog.
//!
//! The destination is opened before the host forks into a daemon, so start-up problems in
//! `make_service` land in the log file too, and the daemon inherits the open file. Until then
//! each line is written by the thread that logs it. Once the process is the one that will run
//! the service, [`LogSink::start_writer`] hands writing to one background thread fed by a
//! bounded queue: no thread that logs (the signal loop, a connection task) then waits on
//! write(2), a rotation or a reopen, and a stuck log device costs lines, never the service.

use super::rotating_file::RotatingFile;
use super::syslog::Syslog;
use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// How many formatted lines may wait for the writer: seconds of the busiest logging measured
/// here, a few MiB at most.
const QUEUE_LINES: usize = 16 * 1024;

/// How long a thread waits for room in a full queue before it drops its line. Once a line has
/// been dropped, later ones are dropped at once until the writer catches up and reports how
/// many, so a stuck log slows no thread down for longer than this.
const ROOM_PATIENCE: Duration = Duration::from_secs(1);

/// How long the writer lets lines gather after writing a batch. A service that logs a line per
/// connection would otherwise cost a wake-up of the writer, and a write, per connection; this
/// way it costs one of each per pause at most, and a line reaches the log this much later.
const GATHER: Duration = Duration::from_millis(2);

/// Where the log goes once the host knows.
#[derive(Debug, Clone)]
pub enum Destination {
    Stdout,
    /// A worker's: a pipe its master reads, each line led by its level's digit (1 = error …
    /// 5 = trace) so the master can log it as it is.
    Relay(Arc<std::fs::File>),
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
    Relay(Arc<std::fs::File>),
    File(RotatingFile),
    Syslog(Syslog),
}

impl Output {
    fn write_line(&mut self, level: Level, line: &[u8]) {
        self.write_lines(&[(level, line)]);
    }

    /// Writes whole lines in order, in one write where the destination allows.
    fn write_lines(&mut self, lines: &[(Level, &[u8])]) {
        let joined = || lines.iter().flat_map(|(_, line)| line.iter()).copied();
        // A log that cannot be written has nowhere to report that; the service goes on.
        let _ = match self {
            Self::Stdout => io::stdout()
                .lock()
                .write_all(&joined().collect::<Vec<u8>>()),
            Self::Relay(pipe) => {
                let mut relayed = Vec::with_capacity(lines.iter().map(|(_, l)| l.len() + 1).sum());
                for (level, line) in lines {
                    relayed.push(b'0' + plugin_api::abi::raw_level(Some(*level)));
                    relayed.extend_from_slice(line);
                }
                // One writer, whole lines: the master reads them back line by line.
                (&**pipe).write_all(&relayed)
            }
            Self::File(file) => file.write_lines(lines.iter().map(|(_, line)| *line)),
            Self::Syslog(syslog) => {
                for (level, line) in lines {
                    syslog.send(*level, line);
                }
                Ok(())
            }
        };
    }

    /// Reopens the log file (after `logrotate` moved it away); other destinations need nothing.
    fn reopen(&mut self) -> io::Result<()> {
        match self {
            Self::File(file) => file.reopen(),
            _ => Ok(()),
        }
    }
}

/// What the writer thread is asked to do, in order.
enum Job {
    Line(Level, Vec<u8>),
    Reopen,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Lines dropped because the queue stayed full, not yet reported.
    dropped: u64,
    /// Whether the writer is writing a batch it has taken from `jobs`.
    busy: bool,
    /// Whether the writer is waiting for work: only then does a new job need to wake it.
    idle: bool,
    /// Threads waiting for the writer's progress (room in the queue, a flush): only then does
    /// the writer need to tell.
    watchers: usize,
}

struct Shared {
    output: Mutex<Output>,
    queue: Mutex<Queue>,
    /// Signalled when there is work for the writer.
    work: Condvar,
    /// Signalled when the writer has taken or finished work: room in the queue, or a flush done.
    progress: Condvar,
    writer_started: AtomicBool,
}

thread_local! {
    /// Set on the writer thread, which must never wait for room in its own queue.
    static IS_WRITER: Cell<bool> = const { Cell::new(false) };
}

/// The shared log output; every event arrives as one whole line, and lines are written in the
/// order they were logged, so they never interleave or tear, even across a rotation.
#[derive(Clone)]
pub struct LogSink(Arc<Shared>);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LogSink {
    /// Opens `destination`.
    pub fn open(destination: &Destination) -> io::Result<Self> {
        let output = match destination {
            Destination::Stdout => Output::Stdout,
            Destination::Relay(pipe) => Output::Relay(pipe.clone()),
            Destination::File {
                path,
                rotate_size,
                keep,
            } => Output::File(RotatingFile::open(path, *rotate_size, *keep).map_err(|e| {
                // Not a regular file: /dev/stdout (a symlink), a FIFO, a terminal.
                let hint = match e.kind() {
                    io::ErrorKind::InvalidInput => "; to log to stdout, use --logfile -",
                    _ => "",
                };
                io::Error::new(
                    e.kind(),
                    format!("cannot open the log file {}: {e}{hint}", path.display()),
                )
            })?),
            Destination::Syslog { prefix } => Output::Syslog(Syslog::open(prefix)),
        };
        Ok(Self(Arc::new(Shared {
            output: Mutex::new(output),
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            progress: Condvar::new(),
            writer_started: AtomicBool::new(false),
        })))
    }

    /// Starts the writer thread. Only once the process is the one that runs the service: a
    /// daemon's fork would not copy it.
    pub fn start_writer(&self) -> io::Result<()> {
        let shared = self.0.clone();
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_forever(&shared))?;
        self.0.writer_started.store(true, Ordering::Release);
        Ok(())
    }

    /// Asks the writer to reopen the log file after the lines already logged; it logs how that
    /// went. Never waits, so the signal loop may call it.
    pub fn request_reopen(&self) {
        if !self.0.writer_started.load(Ordering::Acquire) {
            let _ = lock(&self.0.output).reopen();
            return;
        }
        lock(&self.0.queue).jobs.push_back(Job::Reopen);
        self.0.work.notify_one();
    }

    /// Waits, at most `patience`, until every line logged so far is written.
    pub fn flush(&self, patience: Duration) {
        if !self.0.writer_started.load(Ordering::Acquire) || IS_WRITER.get() {
            return;
        }
        let mut queue = lock(&self.0.queue);
        queue.watchers += 1;
        let (mut queue, _) = self
            .0
            .progress
            .wait_timeout_while(queue, patience, |q| !q.jobs.is_empty() || q.busy)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        queue.watchers -= 1;
    }

    /// Logs a line a worker wrote (its level's digit stripped), as it is.
    pub fn write_relayed(&self, level: Level, line: &[u8]) {
        self.write_line(level, line);
    }

    fn write_line(&self, level: Level, line: &[u8]) {
        if !self.0.writer_started.load(Ordering::Acquire) {
            lock(&self.0.output).write_line(level, line);
            return;
        }
        let mut queue = lock(&self.0.queue);
        if queue.jobs.len() >= QUEUE_LINES {
            if queue.dropped > 0 || IS_WRITER.get() {
                queue.dropped += 1;
                return;
            }
            queue.watchers += 1;
            queue = self
                .0
                .progress
                .wait_timeout_while(queue, ROOM_PATIENCE, |q| q.jobs.len() >= QUEUE_LINES)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
            queue.watchers -= 1;
            if queue.jobs.len() >= QUEUE_LINES {
                queue.dropped += 1;
                return;
            }
        }
        queue.jobs.push_back(Job::Line(level, line.to_vec()));
        let idle = queue.idle;
        drop(queue);
        if idle {
            self.0.work.notify_one();
        }
    }
}

/// The writer thread: takes every queued job at once, writes them in order, reports what
/// happened through the log itself, and tells waiting threads.
fn write_forever(shared: &Shared) {
    IS_WRITER.set(true);
    loop {
        let (jobs, dropped, watched) = {
            let mut queue = lock(&shared.queue);
            queue.idle = true;
            let mut queue = shared
                .work
                .wait_while(queue, |q| q.jobs.is_empty() && q.dropped == 0)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            queue.idle = false;
            queue.busy = true;
            (
                std::mem::take(&mut queue.jobs),
                std::mem::take(&mut queue.dropped),
                queue.watchers > 0,
            )
        };
        if watched {
            shared.progress.notify_all();
        }
        let mut reopened = Vec::new();
        {
            let mut output = lock(&shared.output);
            let mut lines: Vec<(Level, &[u8])> = Vec::new();
            for job in &jobs {
                match job {
                    Job::Line(level, line) => lines.push((*level, line)),
                    Job::Reopen => {
                        output.write_lines(&std::mem::take(&mut lines));
                        reopened.push(output.reopen());
                    }
                }
            }
            output.write_lines(&lines);
        }
        // Logged like any other line: queued behind what is already there, never waited for.
        for outcome in reopened {
            match outcome {
                Ok(()) => tracing::info!("Received SIGUSR1, reopened the log file."),
                Err(e) => tracing::error!("Received SIGUSR1, but {e}"),
            }
        }
        if dropped > 0 {
            tracing::warn!("{dropped} log lines were dropped: the log could not keep up");
        }
        let watched = {
            let mut queue = lock(&shared.queue);
            queue.busy = false;
            queue.watchers > 0
        };
        if watched {
            shared.progress.notify_all();
        }
        std::thread::sleep(GATHER);
    }
}

/// One event's writer: tracing-subscriber formats the whole line, then writes it once.
pub struct LineWriter<'a> {
    sink: &'a LogSink,
    level: Level,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.sink.write_line(self.level, line);
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
