//! From a chosen plugin to a running service, in the order that keeps each step safe:
//! open the log → load the one library → `make_service` → become a daemon (before any thread
//! exists) → run directory and pid file → bind → chroot and drop privileges → start → wait →
//! stop → remove the pid file.

use crate::application::{self, Settings};
use crate::cli::{GlobalOptions, LogOptions, ProcessOptions};
use crate::logging::{self, Destination, LineFormat};
use crate::plugin_host;
use crate::process::{daemon, pid_file::PidFile, privileges, systemd};
use crate::resource_limits;
use crate::Exit;
use dropin_cache::{Changed, Plugin};
use nix::sys::stat::{umask, Mode};
use plugin_api::abi::OptionValue;
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;
use tracing::{error, info, warn};

/// How long the log gets to write its last lines before the host exits.
const FLUSH_PATIENCE: Duration = Duration::from_secs(5);

/// Runs `plugin` with the option `values` parsed from `args`.
pub fn launch(
    plugin: Plugin<'_>,
    args: &[OsString],
    values: Vec<OptionValue>,
    options: &GlobalOptions,
    exe: &Path,
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
    // A daemon's files are private unless the user says otherwise; set before the log file is
    // created.
    if let Some(mask) = process.umask.or((!process.nodaemon).then_some(0o077)) {
        umask(Mode::from_bits_truncate(mask));
    }
    let (max_level, log) = logging::init(filter, format, &destination(&options.log, process))
        .map_err(Exit::failure)?;
    info!("Log opened.");
    info!(
        "host {} ({}) starting up with plugin {} ({}).",
        env!("CARGO_PKG_VERSION"),
        exe.display(),
        plugin.tapname(),
        plugin.path.display()
    );
    let loaded = plugin
        .load()
        .map_err(|e| fatal(format!("{}: {e}", plugin.path.display())))?;
    let (plugin, values) = match &loaded.changed {
        None => (plugin, values),
        Some(changed) => believe_the_library(plugin, changed, args)?,
    };
    let tapname = plugin.tapname();
    let (ended_tx, ended_rx) = tokio::sync::mpsc::unbounded_channel();
    let context = plugin_host::context(
        tapname,
        max_level,
        ended_tx,
        &plugin_host::Shared::default(),
    );
    let service = (loaded.maker.make_service())(values.into(), context)
        .into_result()
        .map_err(|e| fatal(format!("{tapname}: {e}")))?;

    let mut status = match process.nodaemon {
        true => None,
        false => Some(daemon::daemonize().map_err(fatal)?),
    };
    // Only now, in the process that runs the service: fork copies no thread.
    if let Err(e) = log.start_writer() {
        warn!("cannot start the log writer, logging from each thread instead: {e}");
    }
    // From here on, a daemon's start-up errors reach the user through the status pipe.
    let outcome = match prepare_process(process) {
        Err(message) => {
            error!("{message}");
            Err(message)
        }
        Ok(pid_file) => {
            let settings = Settings {
                shutdown_timeout: process.shutdown_timeout,
                chroot: process.chroot.clone(),
                identity,
                log: log.clone(),
            };
            let result = application::run(service, ended_rx, settings, || {
                if let Some(status) = &mut status {
                    status.started();
                }
                let ready = format!("READY=1\nMAINPID={}", std::process::id());
                if let Err(e) = systemd::notify(&ready) {
                    warn!("{e}");
                }
            });
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

/// A library whose file kept its stat tuple but not its contents (patched in place, then dated
/// back) describes itself differently from the cache entry it was chosen by. What it says now
/// wins: its options are parsed again with its own specs.
fn believe_the_library<'a>(
    plugin: Plugin<'a>,
    changed: &'a Changed,
    args: &[OsString],
) -> Result<(Plugin<'a>, Vec<OptionValue>), Exit> {
    let cache = match &changed.refreshed {
        Ok(place) => format!("its entry in {} was refreshed", place.display()),
        Err(why) => format!("its cache entry could not be refreshed: {why}"),
    };
    warn!(
        "the library {} changed without its file times changing; using what it says now ({cache})",
        plugin.path.display()
    );
    let live = Plugin {
        path: plugin.path,
        record: &changed.record,
    };
    let specs = live.options().map_err(fatal)?;
    let values = crate::plugin_values(live, &specs, args)
        .map_err(|e| fatal(format!("{}: {}", live.tapname(), crate::first_line(&e))))?;
    Ok((live, values))
}

/// Logs a start-up failure and turns it into the host's exit.
fn fatal(message: String) -> Exit {
    error!("{message}");
    Exit::failure(message)
}

/// The run directory and the pid file, once this is the process that will run the service.
fn prepare_process(process: &ProcessOptions) -> Result<Option<PidFile>, String> {
    let rundir = &process.rundir;
    std::env::set_current_dir(rundir).map_err(|e| {
        format!(
            "cannot change to the run directory {}: {e}",
            rundir.display()
        )
    })?;
    resource_limits::raise_open_files();
    let Some(path) = &process.pidfile else {
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
