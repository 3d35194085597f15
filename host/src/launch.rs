//! From declared services to running ones, in the order that keeps each step safe:
//! open the log → load each library and `make_service` → become a daemon (before any thread
//! exists) → run directory and pid file → bind every service → chroot and drop privileges →
//! start them in order → wait → stop them in reverse → remove the pid file.

use crate::app::{Declared, ServiceSpec};
use crate::application::{self, Settings};
use crate::cli::{GlobalOptions, LogOptions, ProcessOptions};
use crate::instances::Maker;
use crate::logging::{self, Destination, LineFormat};
use crate::process::{daemon, pid_file::PidFile, privileges, systemd};
use crate::resource_limits;
use crate::supervisor::worker::WorkerRole;
use crate::Exit;
use nix::sys::stat::{umask, Mode};
use std::path::Path;
use std::time::Duration;
use tracing::{error, info, warn};

/// How long the log gets to write its last lines before the host exits.
const FLUSH_PATIENCE: Duration = Duration::from_secs(5);

/// What this process is to the services it was given.
pub enum Role {
    /// It runs them, alone: what `host` does without `--workers`.
    Single,
    /// It runs them as worker of a master that holds their sockets and its log.
    Worker(WorkerRole),
    /// It runs none: it holds the sockets and runs them in this many workers.
    Master { workers: u32 },
}

/// Runs `services`; `declared` says where they came from, if an application file, for SIGHUP.
pub fn launch(
    services: Vec<ServiceSpec>,
    declared: Option<Declared>,
    options: &GlobalOptions,
    exe: &Path,
    role: Role,
) -> Result<(), Exit> {
    let process = &options.process;
    // Checked before anything starts: a mistake here is the user's, not the daemon's.
    let identity = privileges::resolve(process.uid.as_deref(), process.gid.as_deref())
        .map_err(Exit::failure)?;
    let filter = logging::filter(&options.verbosity).map_err(Exit::usage)?;
    let format = match (options.log.syslog, options.log.format) {
        (true, LineFormat::Text) => LineFormat::TextWithoutTime,
        (_, format) => format,
    };
    let (destination, foreground) = match &role {
        Role::Worker(worker) => {
            logging::set_worker(worker.id);
            (Destination::Relay(worker.log.clone()), true)
        }
        _ => (destination(&options.log, process), process.nodaemon),
    };
    // A daemon's files are private unless the user says otherwise; set before the log file is
    // created.
    if let Some(mask) = process.umask.or((!foreground).then_some(0o077)) {
        umask(Mode::from_bits_truncate(mask));
    }
    let (max_level, log) = logging::init(filter, format, &destination).map_err(Exit::failure)?;
    info!("Log opened.");
    announce(&services, &declared, exe, &role);
    let (ended_tx, ended_rx) = tokio::sync::mpsc::unbounded_channel();
    let maker = Maker::new(max_level, ended_tx);
    // A master loads no plugin: its workers make the services.
    let mut instances = Vec::new();
    if !matches!(role, Role::Master { .. }) {
        for spec in services.iter().cloned() {
            instances.push(maker.make(spec).map_err(fatal)?);
        }
    }

    let mut status = match foreground {
        true => None,
        false => Some(daemon::daemonize().map_err(fatal)?),
    };
    // Only now, in the process that runs the service: fork copies no thread.
    if let Err(e) = log.start_writer() {
        warn!("cannot start the log writer, logging from each thread instead: {e}");
    }
    // From here on, a daemon's start-up errors reach the user through the status pipe.
    let with_pid_file = !matches!(role, Role::Worker(_));
    let outcome = match prepare_process(process, with_pid_file) {
        Err(message) => {
            error!("{message}");
            Err(message)
        }
        Ok(pid_file) => {
            let settings = Settings {
                // The master serves the admin endpoint for its workers.
                admin: process
                    .admin
                    .clone()
                    .filter(|_| !matches!(role, Role::Worker(_))),
                shutdown_timeout: process.shutdown_timeout,
                chroot: process.chroot.clone(),
                identity,
                log: log.clone(),
                second_signal_exits: !matches!(role, Role::Worker(_)),
            };
            let started = || {
                if let Some(status) = &mut status {
                    status.started();
                }
                let ready = format!("READY=1\nMAINPID={}", std::process::id());
                if let Err(e) = systemd::notify(&ready) {
                    warn!("{e}");
                }
            };
            let result = match role {
                Role::Master { workers } => {
                    crate::supervisor::master::run(workers, declared, settings, exe, started)
                }
                Role::Worker(worker) => application::run(
                    instances,
                    ended_rx,
                    settings,
                    maker,
                    declared,
                    Some(worker),
                    || {},
                ),
                Role::Single => application::run(
                    instances, ended_rx, settings, maker, declared, None, started,
                ),
            };
            if let Some(pid_file) = pid_file {
                pid_file.remove();
            }
            result
        }
    };
    log.flush(FLUSH_PATIENCE);
    outcome.map_err(|message| match status.as_mut().filter(|s| s.is_waiting()) {
        // The command that started the daemon prints it; the daemon's stderr is /dev/null.
        Some(status) => {
            status.failed(&message);
            Exit::silent(1)
        }
        None => Exit::failure(message),
    })
}

/// The log's first word on what runs here.
fn announce(services: &[ServiceSpec], declared: &Option<Declared>, exe: &Path, role: &Role) {
    let version = env!("CARGO_PKG_VERSION");
    let workers = match role {
        Role::Master { workers } => format!(" in {workers} worker processes"),
        _ => String::new(),
    };
    match (declared, services) {
        (None, [only]) => info!(
            "host {version} ({}) starting up with plugin {} ({}){workers}.",
            exe.display(),
            only.record.tapname,
            only.path.display()
        ),
        _ => {
            let from = declared
                .as_ref()
                .map(|d| format!(" from {}", d.path.display()))
                .unwrap_or_default();
            info!(
                "host {version} ({}) starting up with {}{from}{workers}.",
                exe.display(),
                crate::summary(services)
            );
            for service in services {
                info!(
                    "{}: plugin {} ({}).",
                    service.name,
                    service.record.tapname,
                    service.path.display()
                );
            }
        }
    }
}

/// Logs a start-up failure and turns it into the host's exit.
fn fatal(message: String) -> Exit {
    error!("{message}");
    Exit::failure(message)
}

/// The run directory and the pid file (unless `with_pid_file` is false: a worker's master
/// holds it), once this is the process that will run the service.
fn prepare_process(
    process: &ProcessOptions,
    with_pid_file: bool,
) -> Result<Option<PidFile>, String> {
    let rundir = &process.rundir;
    std::env::set_current_dir(rundir).map_err(|e| {
        format!(
            "cannot change to the run directory {}: {e}",
            rundir.display()
        )
    })?;
    resource_limits::raise_open_files();
    let Some(path) = process.pidfile.as_ref().filter(|_| with_pid_file) else {
        return Ok(None);
    };
    let (pid_file, warning) = PidFile::acquire(path)?;
    if let Some(warning) = warning {
        warn!("{warning}");
    }
    Ok(Some(pid_file))
}

/// Where the log goes: syslog, stdout, or a file (relative to the run directory, which the
/// process enters only later so that relative paths in plugin options mean what the user meant).
fn destination(log: &LogOptions, process: &ProcessOptions) -> Destination {
    if log.syslog {
        return Destination::Syslog {
            prefix: log.prefix.clone(),
        };
    }
    match &log.logfile {
        Some(path) if path.as_os_str() == "-" => Destination::Stdout,
        None if process.nodaemon => Destination::Stdout,
        file => Destination::File {
            path: process
                .rundir
                .join(file.as_deref().unwrap_or("host.log".as_ref())),
            rotate_size: log.rotate_size,
            keep: log.keep,
        },
    }
}
