//! `host`: runs network services from plugin libraries, like Twisted's `twistd`.
//!
//! The run, in order: parse the global options → discover plugins → parse the chosen plugin's
//! options → open the log → load that one library → `make_service` → `privileged_start` →
//! `start` → wait for a signal → `stop` → exit.

mod application;
mod cli;
mod logging;
mod plugin_host;
mod plugin_options;
mod resource_limits;
mod usage;

use dropin_cache::{discover, Discovery, LoadError, Rejection, SearchPath};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing::info;

/// A reason to stop early: the message for stderr (if any) and the exit code.
struct Exit {
    code: u8,
    message: String,
}

impl Exit {
    /// Bad input on the command line.
    fn usage(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
        }
    }

    /// Anything that failed at run time.
    fn failure(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(exit) => {
            eprintln!("host: {}", exit.message);
            ExitCode::from(exit.code)
        }
    }
}

fn run() -> Result<(), Exit> {
    let mut command = cli::command();
    let matches = command
        .try_get_matches_from_mut(std::env::args_os())
        .unwrap_or_else(|e| e.exit());
    let options = cli::parse(&matches);
    let search_path = SearchPath::new(
        &options.plugin_dirs,
        std::env::var_os("HOST_PLUGIN_PATH").as_deref(),
        executable_dir().as_deref(),
    );
    let discovery = discover(&search_path);
    report_rejected(&discovery);

    let Some((tapname, args)) = options.plugin.filter(|_| !options.help) else {
        print!("{}", usage::render(command, &discovery));
        return Ok(());
    };
    let plugin = discovery
        .find(&tapname)
        .ok_or_else(|| unknown_plugin(&tapname, &discovery))?;
    let plugin_matches = plugin_options::command(plugin)
        .try_get_matches_from(std::iter::once(OsString::from(&tapname)).chain(args))
        .unwrap_or_else(|e| e.exit());
    if !options.nodaemon {
        return Err(Exit::usage(
            "daemon mode is not available yet; run in the foreground with -n/--nodaemon",
        ));
    }

    let filter = logging::filter(&options.verbosity).map_err(Exit::usage)?;
    let max_level = logging::init_stdout(filter);
    info!("Log opened.");
    info!(
        "host {} ({}) starting up with plugin {tapname} ({}).",
        env!("CARGO_PKG_VERSION"),
        std::env::current_exe().unwrap_or_default().display(),
        plugin.path.display()
    );
    let maker = plugin
        .load()
        .map_err(|e| Exit::failure(format!("{}: {e}", plugin.path.display())))?;
    let (ended_tx, ended_rx) = tokio::sync::mpsc::unbounded_channel();
    let context = plugin_host::context(&tapname, max_level, ended_tx);
    let values = plugin_options::values(plugin, &plugin_matches);
    let service = (maker.make_service())(values.into(), context)
        .into_result()
        .map_err(|e| Exit::failure(format!("{tapname}: {e}")))?;
    resource_limits::raise_open_files();
    application::run(service, ended_rx).map_err(Exit::failure)
}

fn executable_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.parent().map(PathBuf::from)
}

/// Broken and shadowed plugins get one line each; files that are not plugins at all are
/// skipped silently, as a plugin directory may hold other libraries.
fn report_rejected(discovery: &Discovery) {
    for rejected in &discovery.rejected {
        if !matches!(rejected.reason, Rejection::Load(LoadError::NotAPlugin(_))) {
            eprintln!(
                "host: warning: skipped {}: {}",
                rejected.path.display(),
                rejected.reason
            );
        }
    }
}

fn unknown_plugin(tapname: &str, discovery: &Discovery) -> Exit {
    let suggestion = discovery
        .plugins
        .iter()
        .map(|p| (strsim::jaro_winkler(tapname, &p.tapname), &p.tapname))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| format!(" (did you mean '{name}'?)"))
        .unwrap_or_default();
    let searched: Vec<String> = discovery
        .searched
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    Exit::usage(format!(
        "no plugin named '{tapname}'{suggestion}\nhost: searched: {}; run 'host' to list the plugins found",
        searched.join(", ")
    ))
}
