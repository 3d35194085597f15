//! This process as a worker of a supervisor: the sockets its services listen on come from the
//! master, it tells the master when its services have started, and it answers the master's
//! questions for the admin endpoint. Its log lines go to the master through stdout.

use super::channel::{Channel, WORKER_ENV};
use crate::admin::report;
use crate::admin::Health;
use crate::instances::Running;
use nix::sys::signal::Signal;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, OnceLock};

/// The channel to the master, for the `listen-socket/1` extension every service may call.
static LINK: OnceLock<Mutex<Channel>> = OnceLock::new();

/// The master's pid, as this worker found it at its start.
static MASTER: OnceLock<nix::unistd::Pid> = OnceLock::new();

/// A worker whose master is gone drains and exits instead of serving on alone: the kernel sends
/// SIGTERM when the master dies. Linux forgets that wish when the process changes credentials
/// (`--uid`, `--gid`), and keeps it per thread, so it is made again on the main thread once the
/// services run; a master that died before it was made has left this process an orphan, which
/// sends itself the SIGTERM it missed.
fn die_with_master() -> Result<(), String> {
    let Some(master) = MASTER.get() else {
        return Ok(());
    };
    nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)
        .map_err(|e| format!("cannot ask to die with the master: {e}"))?;
    if nix::unistd::getppid() != *master {
        nix::sys::signal::raise(Signal::SIGTERM)
            .map_err(|e| format!("the master has gone, and SIGTERM failed: {e}"))?;
    }
    Ok(())
}

/// What a worker knows of its place.
pub struct WorkerRole {
    pub id: u32,
    query: OwnedFd,
    /// Where its log lines go: a pipe the master reads.
    pub log: Arc<std::fs::File>,
}

/// This process's role, from the environment its master set (and then cleared, so that plugin
/// code and the processes it starts never see it). Must run before any thread exists.
pub fn from_env() -> Result<Option<WorkerRole>, String> {
    let Some(value) = std::env::var_os(WORKER_ENV) else {
        return Ok(None);
    };
    // First thing in main, while this process has one thread: nothing reads the environment
    // at the same time.
    std::env::remove_var(WORKER_ENV);
    let invalid = || format!("{WORKER_ENV} is not ID:CONTROL_FD:QUERY_FD:LOG_FD");
    let text = value.to_str().ok_or_else(invalid)?;
    let fields: Vec<u32> = text
        .split(':')
        .map(|f| f.parse::<u32>().map_err(|_| invalid()))
        .collect::<Result<_, _>>()?;
    let [id, control, query, log] = fields[..] else {
        return Err(invalid());
    };
    let (control, query, log) = (control as RawFd, query as RawFd, log as RawFd);
    // SAFETY: the master opened these descriptors for this process alone and named them in
    // the environment, which is cleared above: nothing else in the process will take them.
    #[allow(unsafe_code)]
    let (control, query, log) = unsafe {
        (
            OwnedFd::from_raw_fd(control),
            OwnedFd::from_raw_fd(query),
            OwnedFd::from_raw_fd(log),
        )
    };
    for fd in [&control, &query, &log] {
        nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .map_err(|e| format!("{WORKER_ENV}: descriptor {fd:?} is not open: {e}"))?;
    }
    let _ = MASTER.set(nix::unistd::getppid());
    die_with_master()?;
    let _ = LINK.set(Mutex::new(Channel::from_fd(control)));
    Ok(Some(WorkerRole {
        id,
        query,
        log: Arc::new(std::fs::File::from(log)),
    }))
}

/// Asks the master, over the channel, to `request`; its answer and the descriptor with it.
fn ask(request: &str) -> Result<Option<OwnedFd>, String> {
    let link = LINK.get().ok_or("not a worker")?;
    let channel = link.lock().unwrap_or_else(|p| p.into_inner());
    channel
        .send(request, None)
        .map_err(|e| format!("cannot reach the master: {e}"))?;
    match channel.receive() {
        Ok(Some(answer)) if answer.text == "ok" => Ok(answer.fd),
        Ok(Some(answer)) => Err(answer
            .text
            .strip_prefix("error ")
            .unwrap_or(&answer.text)
            .to_string()),
        Ok(None) => Err("the master has gone".to_string()),
        Err(e) => Err(format!("cannot hear the master: {e}")),
    }
}

/// The master's socket for endpoint `name` (`listen-socket/1`), as a descriptor the caller
/// now owns; `None` when this process is no worker.
pub fn held_socket(name: &str) -> Option<Result<RawFd, String>> {
    LINK.get()?;
    Some(ask(&format!("bind {name}")).and_then(|fd| {
        fd.map(IntoRawFd::into_raw_fd)
            .ok_or_else(|| "the master sent no socket".to_string())
    }))
}

/// Tells the master that this worker has bound every socket it will, just before it gives up
/// its privileges: from then on the master binds nothing for it. Plugin code that goes wrong
/// later, unprivileged, cannot have a root master bind a privileged port or create a socket
/// file anywhere. Nothing to do when this process is no worker.
pub fn done_binding() -> Result<(), String> {
    match LINK.get() {
        Some(_) => ask("bound").map(drop),
        None => Ok(()),
    }
}

impl WorkerRole {
    /// Tells the master that every service has started. Must run on the main thread, after
    /// privileges are given up.
    pub fn ready(&self) -> Result<(), String> {
        die_with_master()?;
        ask("ready").map(drop)
    }

    /// Answers the master's questions about `running`, on a thread of its own, until the
    /// master closes the channel.
    pub fn answer_reports(&self, running: Running, health: Arc<Health>) -> std::io::Result<()> {
        let stream = std::os::unix::net::UnixStream::from(self.query.try_clone()?);
        std::thread::Builder::new()
            .name("reports".into())
            .spawn(move || {
                let mut writer = match stream.try_clone() {
                    Ok(writer) => writer,
                    Err(_) => return,
                };
                for question in BufReader::new(stream).lines() {
                    let Ok(question) = question else { return };
                    let Some(number) = question.strip_prefix("report ") else {
                        continue;
                    };
                    let report = report::gather(&running, health.started_at);
                    let report = serde_json::to_string(&report).expect("reports serialize");
                    let line = format!("{number} {report}\n");
                    if writer.write_all(line.as_bytes()).is_err() {
                        return;
                    }
                }
            })?;
        Ok(())
    }
}
