//! Worker processes: `host` itself, started again with the master's arguments and told by its
//! environment that it is worker N. Each has a control channel (socket requests, readiness),
//! a query stream (reports for the admin endpoint), and its stdout and stderr, whose lines the
//! master writes into the one log.

use super::channel::{Channel, WORKER_ENV};
use super::sockets::Sockets;
use crate::admin::report::Report;
use crate::admin::Source;
use crate::logging::LogSink;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc::UnboundedSender;
use tracing::{error, Level};

/// The longest log line relayed whole; the rest of a longer one is cut (a worker's own lines
/// are short; this bounds what a plugin gone wrong can make the master hold).
const MAX_LINE: usize = 64 * 1024;

/// The largest report a worker may send: its services' metrics, whatever their label sets, stay
/// far below; a worker gone wrong cannot make the master hold more.
const MAX_REPORT: u64 = 16 << 20;

/// How long, once a worker has ended, the master reads on what it wrote before it did.
const LAST_WORDS_PATIENCE: Duration = Duration::from_millis(500);

/// How long the master waits for a worker's report before leaving that worker out of a scrape.
const REPORT_PATIENCE: Duration = Duration::from_secs(1);

/// What a worker's life tells the master's main loop.
#[derive(Debug)]
pub enum Event {
    /// Worker `id` has started every service.
    Ready { id: u32 },
    /// Worker `id` has exited; `how` says how, `last_words` is the first error it printed on
    /// stderr (its reason, when it could not start).
    Exited {
        id: u32,
        how: String,
        last_words: Option<String>,
    },
}

/// A worker process, as the master knows it.
#[derive(Debug)]
pub struct Worker {
    pub generation: u32,
    pub pid: u32,
    pub ready: bool,
    pub spawned: Instant,
    /// Asked to stop: its end is expected.
    pub retiring: bool,
    /// When a retiring worker that has not stopped is killed.
    pub kill_at: Option<Instant>,
    /// A SIGHUP came before it was ready, when it would have died of it: sent once it is.
    pub hangup_pending: bool,
}

impl Worker {
    /// Sends `signal` to the worker; it may have exited already.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }
}

/// Starts workers and keeps what the admin endpoint asks them.
pub struct Fleet {
    pub exe: PathBuf,
    pub args: Vec<OsString>,
    /// The directory host was started in: workers read their arguments from there.
    pub cwd: PathBuf,
    pub sockets: Sockets,
    pub log: LogSink,
    pub events: UnboundedSender<Event>,
    /// Each ready worker's query stream, by id.
    queries: Arc<Mutex<BTreeMap<u32, Arc<Mutex<UnixStream>>>>>,
}

impl Fleet {
    pub fn new(
        exe: PathBuf,
        args: Vec<OsString>,
        cwd: PathBuf,
        sockets: Sockets,
        log: LogSink,
        events: UnboundedSender<Event>,
    ) -> Self {
        Self {
            exe,
            args,
            cwd,
            sockets,
            log,
            events,
            queries: Arc::default(),
        }
    }

    /// Starts worker `id` of `generation`. Must run inside the master's runtime.
    pub fn spawn(&self, id: u32, generation: u32) -> std::io::Result<Worker> {
        let (control, control_for_worker) = Channel::pair()?;
        let (query, query_for_worker) = UnixStream::pair()?;
        let (log_from_worker, log_for_worker) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        // The worker's ends must survive its exec; the master's are closed on it.
        for end in [query_for_worker.as_fd(), log_for_worker.as_fd()] {
            nix::fcntl::fcntl(
                end,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            )?;
        }
        let mut command = tokio::process::Command::new(&self.exe);
        command
            .args(&self.args)
            .current_dir(&self.cwd)
            .env(
                WORKER_ENV,
                format!(
                    "{id}:{}:{}:{}",
                    control_for_worker.as_raw_fd(),
                    query_for_worker.as_raw_fd(),
                    log_for_worker.as_raw_fd()
                ),
            )
            // The master alone speaks to systemd and adopts its sockets.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn()?;
        drop((control_for_worker, query_for_worker, log_for_worker));
        let log_pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(log_from_worker)?;
        let pid = child.id().unwrap_or(0);

        self.answer_requests(control, id, generation);
        self.queries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Arc::new(Mutex::new(query)));
        let log = self.log.clone();
        let last_words = Arc::new(OnceLock::new());
        let mut relays = [
            tokio::spawn(relay(
                Some(log_pipe),
                log.clone(),
                id,
                Stream::Log,
                last_words.clone(),
            )),
            tokio::spawn(relay(
                child.stdout.take(),
                log.clone(),
                id,
                Stream::Stdout,
                last_words.clone(),
            )),
            tokio::spawn(relay(
                child.stderr.take(),
                log,
                id,
                Stream::Stderr,
                last_words.clone(),
            )),
        ];
        let (events, queries) = (self.events.clone(), self.queries.clone());
        tokio::spawn(async move {
            // The process itself, not its pipes: a process it started may hold them long after.
            let how = match child.wait().await {
                Ok(status) => describe(status),
                Err(e) => format!("could not be waited for: {e}"),
            };
            // What it wrote before it ended is in the pipes already; the relays go on for as
            // long as anything holds them, but its death is told without waiting for that.
            let drained = tokio::time::Instant::now() + LAST_WORDS_PATIENCE;
            for relay in &mut relays {
                let _ = tokio::time::timeout_at(drained, relay).await;
            }
            queries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            let _ = events.send(Event::Exited {
                id,
                how,
                last_words: last_words.get().cloned(),
            });
        });
        Ok(Worker {
            generation,
            pid,
            ready: false,
            spawned: Instant::now(),
            retiring: false,
            kill_at: None,
            hangup_pending: false,
        })
    }

    /// Serves worker `id`'s requests on a thread of its own until the worker closes its end:
    /// the requests block only that worker, and binding may take a name lookup.
    fn answer_requests(&self, control: Channel, id: u32, generation: u32) {
        let (sockets, events) = (self.sockets.clone(), self.events.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("worker-{id}"))
            .spawn(move || {
                let mut binding = true;
                while let Ok(Some(request)) = control.receive() {
                    let answered = match request.text.split_once(' ') {
                        Some(("bind", _)) if !binding => control.send(
                            "error sockets are bound before a worker gives up its privileges, not after",
                            None,
                        ),
                        Some(("bind", name)) => match sockets.give(name, generation, id) {
                            Ok(socket) => control.send("ok", Some(&socket)),
                            Err(why) => control.send(&format!("error {why}"), None),
                        },
                        None if request.text == "bound" => {
                            binding = false;
                            control.send("ok", None)
                        }
                        None if request.text == "ready" => {
                            let _ = events.send(Event::Ready { id });
                            control.send("ok", None)
                        }
                        _ => control.send("error unknown request", None),
                    };
                    if answered.is_err() {
                        return;
                    }
                }
            });
        if let Err(e) = spawned {
            error!("cannot serve worker {id}'s requests: {e}");
        }
    }

    /// What the admin endpoint asks the workers through.
    pub fn reporter(&self) -> Reporter {
        Reporter {
            queries: self.queries.clone(),
            asked: Default::default(),
        }
    }
}

/// Asks the workers for their reports, from the admin endpoint's thread.
pub struct Reporter {
    queries: Arc<Mutex<BTreeMap<u32, Arc<Mutex<UnixStream>>>>>,
    asked: std::sync::atomic::AtomicU64,
}

impl Reporter {
    /// What every ready worker reports now, each asked in turn and given [`REPORT_PATIENCE`].
    pub fn reports(&self) -> Vec<Source> {
        let queries: Vec<(u32, Arc<Mutex<UnixStream>>)> = self
            .queries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, query)| (*id, query.clone()))
            .collect();
        queries
            .into_iter()
            .filter_map(|(id, query)| {
                let stream = query.lock().unwrap_or_else(|p| p.into_inner());
                let number = self
                    .asked
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let report = ask_report(&stream, number)?;
                Some(Source {
                    worker: Some(id),
                    report,
                })
            })
            .collect()
    }
}

/// Asks one worker for its report, numbered `number`. A reply that comes too late for its scrape
/// is still in the stream at the next one: the number tells it apart, and it is skipped.
fn ask_report(stream: &UnixStream, number: u64) -> Option<Report> {
    let deadline = Instant::now() + REPORT_PATIENCE;
    stream.set_read_timeout(Some(REPORT_PATIENCE)).ok()?;
    writeln!(&*stream, "report {number}").ok()?;
    let mut reader = BufReader::new(Read::take(stream, MAX_REPORT));
    let answer = format!("{number} ");
    while Instant::now() < deadline {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some(report) = line.strip_prefix(&answer) {
            return serde_json::from_str(report).ok();
        }
    }
    None
}

/// How a worker ended, in words.
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => {
            let name = nix::sys::signal::Signal::try_from(signal)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| "an unknown signal".to_string());
            format!("was killed by signal {signal} ({name})")
        }
        _ => format!("ended: {status}"),
    }
}

/// Which of a worker's outputs a line came from.
#[derive(Clone, Copy)]
enum Stream {
    /// Its log: lines its logger formatted (and escaped), each led by its level's digit.
    Log,
    /// What it printed: a plugin's `println!`.
    Stdout,
    /// Its errors: a start-up failure's one line, a panic.
    Stderr,
}

/// Writes the lines of one of a worker's outputs into the master's log; the first error among
/// them (the one that says why, when a worker could not start) goes into `last_words`.
async fn relay(
    output: Option<impl AsyncRead + Unpin>,
    log: LogSink,
    id: u32,
    stream: Stream,
    last_words: Arc<OnceLock<String>>,
) {
    let Some(mut output) = output else { return };
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let write = |line: &[u8]| {
        if let Some(error) = write_line(&log, id, stream, line) {
            let _ = last_words.set(error);
        }
    };
    loop {
        let read = match output.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        pending.extend_from_slice(&chunk[..read]);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            write(&line);
        }
        if pending.len() > MAX_LINE {
            pending.truncate(MAX_LINE);
            pending.push(b'\n');
            write(&pending);
            pending.clear();
        }
    }
    if !pending.is_empty() {
        pending.push(b'\n');
        write(&pending);
    }
}

/// Logs one line of worker `id`'s; returns it if it is an error.
fn write_line(log: &LogSink, id: u32, stream: Stream, line: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(line).trim_end().to_string();
    match stream {
        Stream::Log => {
            let (level, line) = match line.split_first() {
                Some((digit @ b'1'..=b'5', rest)) => (
                    match digit {
                        b'1' => Level::ERROR,
                        b'2' => Level::WARN,
                        b'3' => Level::INFO,
                        b'4' => Level::DEBUG,
                        _ => Level::TRACE,
                    },
                    rest,
                ),
                _ => (Level::INFO, line),
            };
            log.write_relayed(level, line);
            None
        }
        Stream::Stdout => {
            tracing::info!("worker {id} printed: {text}");
            None
        }
        // What host itself prints before its log is open: `host: warning: …` for a library
        // discovery skipped, `host: …` for the error it exits with.
        Stream::Stderr => match text.strip_prefix("host: warning: ") {
            Some(warning) => {
                tracing::warn!("worker {id}: {warning}");
                None
            }
            None if text.is_empty() => None,
            None => {
                let text = text.strip_prefix("host: ").unwrap_or(&text).to_string();
                error!("worker {id}: {text}");
                Some(text)
            }
        },
    }
}
