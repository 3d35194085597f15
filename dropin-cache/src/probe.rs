//! Probing candidate libraries in child processes.
//!
//! Loading a library runs its constructors, which may crash, abort, call `exit` or hang. The
//! host therefore re-executes itself as a probe child (a hidden subcommand) that loads the
//! candidates one by one and reports on each over a pipe. A child that dies or hangs costs only
//! the file it was loading: that file is recorded as broken with the reason, and the files after
//! it are retried in a new child.

use crate::cache_file::Outcome;
use crate::library::{load_and_describe, LoadError};
use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How the host runs probe children.
#[derive(Debug, Clone)]
pub struct Prober {
    /// The program to run: the host executable.
    pub program: PathBuf,
    /// Arguments before the candidate paths: the hidden subcommand.
    pub args: Vec<OsString>,
    /// How long loading one library may take.
    pub timeout: Duration,
}

/// One line of the probe protocol, child to parent.
#[derive(Serialize, Deserialize)]
enum Report {
    /// About to load this file; if the child dies now, this file is why.
    Loading(PathBuf),
    /// What loading it found.
    Described(PathBuf, Outcome),
}

/// The probe child's whole job: describe each of `paths`, reporting on the original stdout.
///
/// Stdout is first moved aside and replaced by /dev/null, so a library that prints while it
/// loads cannot corrupt the reports.
pub fn run_probe_child(paths: &[PathBuf]) -> std::io::Result<()> {
    let mut reports = std::io::BufWriter::new(std::fs::File::from(take_stdout()?));
    for path in paths {
        send(&mut reports, &Report::Loading(path.clone()))?;
        let outcome = load_and_describe(path).map(|(_, record)| record);
        send(&mut reports, &Report::Described(path.clone(), outcome))?;
    }
    Ok(())
}

/// Writes one report and flushes it: it must reach the parent before the next load can kill
/// this process.
fn send(reports: &mut impl Write, report: &Report) -> std::io::Result<()> {
    serde_json::to_writer(&mut *reports, report)?;
    reports.write_all(b"\n")?;
    reports.flush()
}

/// A new descriptor for stdout, with fd 1 itself pointed at /dev/null.
fn take_stdout() -> std::io::Result<OwnedFd> {
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    let saved = nix::unistd::dup(std::io::stdout())?;
    nix::unistd::dup2_stdout(&null)?;
    Ok(saved)
}

impl Prober {
    /// Describes every path, in parallel batches; one result per path, whatever the libraries do.
    pub fn probe(&self, paths: &[PathBuf]) -> HashMap<PathBuf, Outcome> {
        if paths.is_empty() {
            return HashMap::new();
        }
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let batch = paths.len().div_ceil(workers).max(4);
        std::thread::scope(|scope| {
            let batches: Vec<_> = paths
                .chunks(batch)
                .map(|chunk| scope.spawn(move || self.probe_batch(chunk)))
                .collect();
            batches
                .into_iter()
                .flat_map(|b| b.join().expect("probe threads do not panic"))
                .collect()
        })
    }

    /// Probes `paths` with as many children as it takes.
    fn probe_batch(&self, paths: &[PathBuf]) -> HashMap<PathBuf, Outcome> {
        let mut results = HashMap::new();
        loop {
            let remaining: Vec<PathBuf> = paths
                .iter()
                .filter(|p| !results.contains_key(*p))
                .cloned()
                .collect();
            if remaining.is_empty() {
                return results;
            }
            let settled = results.len();
            self.run_child(&remaining, &mut results);
            if results.len() == settled {
                // The child could not even start on the first file: say so for each rather
                // than trying forever.
                for path in remaining {
                    results.insert(
                        path,
                        Err(LoadError::Broken("the probe process failed".into())),
                    );
                }
            }
        }
    }

    /// Runs one child over `paths`.
    fn run_child(&self, paths: &[PathBuf], results: &mut HashMap<PathBuf, Outcome>) {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .args(paths)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // If the host is killed (Ctrl-C while a library hangs in its constructor), the child
        // must not live on: the kernel kills it when the thread that spawned it ends.
        #[allow(unsafe_code)]
        // SAFETY: the closure runs between fork and exec, where only async-signal-safe calls
        // are allowed: prctl is one, and it touches only the child being set up.
        unsafe {
            command.pre_exec(|| Ok(set_pdeathsig(Signal::SIGKILL)?));
        }
        let spawned = command.spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                for path in paths {
                    results.insert(
                        path.clone(),
                        Err(LoadError::Broken(format!(
                            "cannot start a probe process: {e}"
                        ))),
                    );
                }
                return;
            }
        };
        let (reports, reader) = read_reports(&mut child);
        self.follow(&mut child, &reports, results);
        // The host may fork into a daemon soon after discovery, and fork copies only the calling
        // thread: no reader thread may still be running by then.
        drop(reports);
        let _ = reader.join();
    }

    /// Records the child's reports until it finishes, dies or hangs.
    fn follow(
        &self,
        child: &mut Child,
        reports: &mpsc::Receiver<Report>,
        results: &mut HashMap<PathBuf, Outcome>,
    ) {
        let mut loading: Option<PathBuf> = None;
        let mut deadline = Instant::now() + self.timeout;
        loop {
            match reports.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Report::Loading(path)) => {
                    deadline = Instant::now() + self.timeout;
                    loading = Some(path);
                }
                Ok(Report::Described(path, outcome)) => {
                    loading = None;
                    results.insert(path, outcome);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    if let Some(path) = loading {
                        let limit_ms = self.timeout.as_millis() as u64;
                        results.insert(path, Err(LoadError::TimedOut { limit_ms }));
                    }
                    return;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait();
                    if let (Some(path), Ok(status)) = (loading, status) {
                        results.insert(path, Err(died(status)));
                    }
                    return;
                }
            }
        }
    }
}

/// Reads the child's reports on a thread, so the parent can wait for them with a time limit.
fn read_reports(child: &mut Child) -> (mpsc::Receiver<Report>, std::thread::JoinHandle<()>) {
    let (sender, receiver) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // Lines that are not reports cannot come from the child's own code; skip them.
            if let Ok(report) = serde_json::from_str(&line) {
                if sender.send(report).is_err() {
                    break;
                }
            }
        }
    });
    (receiver, reader)
}

/// What a probe child's death while loading a library says about that library.
fn died(status: ExitStatus) -> LoadError {
    match (status.signal(), status.code()) {
        (Some(signal), _) => LoadError::Crashed { signal },
        (None, Some(code)) => LoadError::Exited { code },
        (None, None) => LoadError::Broken(format!("the probe process ended: {status}")),
    }
}
