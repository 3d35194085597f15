//! `host`: runs network services from plugin libraries, like Twisted's `twistd`.
//!
//! Here: parse the global options (and read the application file, `app`) → discover plugins
//! (`dropin-cache`) → list them, report on them, or check and parse the services' options.
//! Running the services, from opening the log to the last line, is `launch`'s job; the main
//! loop is `application`'s.

mod admin;
mod app;
mod application;
mod cli;
mod instances;
mod launch;
mod logging;
mod plugin_host;
mod plugin_options;
mod plugins_report;
mod process;
mod resource_limits;
mod signals;
mod supervisor;
mod usage;

use app::{OnFailure, Origin, ServiceSpec};
use dropin_cache::{discover, Discovery, LoadError, Plugin, Prober, SearchPath};
use launch::Role;
use plugin_api::abi::{OptionSpec, OptionValue};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use supervisor::worker::WorkerRole;

/// The directory host was started in.
static STARTED_IN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// The directory host was started in (relative paths on its command line mean paths there).
pub fn started_in() -> PathBuf {
    STARTED_IN
        .get()
        .cloned()
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// The hidden subcommand a probe child runs: `host __probe-plugins FILE...`.
const PROBE_SUBCOMMAND: &str = "__probe-plugins";

/// A reason to stop early: the message for stderr (if any) and the exit code.
pub struct Exit {
    code: u8,
    message: Option<String>,
}

impl Exit {
    /// Bad input on the command line.
    fn usage(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: Some(message.into()),
        }
    }

    /// Anything that failed at run time.
    fn failure(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: Some(message.into()),
        }
    }

    /// An exit whose reason was already given elsewhere.
    fn silent(code: u8) -> Self {
        Self {
            code,
            message: None,
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == PROBE_SUBCOMMAND) {
        let paths: Vec<PathBuf> = args[2..].iter().map(PathBuf::from).collect();
        return match dropin_cache::run_probe_child(&paths) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    // Where host was started: a master starts its workers there, whatever --rundir says.
    let _ = STARTED_IN.set(std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")));
    // First, while this is the only thread: a worker's channels are named in its environment.
    let worker = match supervisor::worker::from_env() {
        Ok(worker) => worker,
        Err(message) => {
            eprintln!("host: {message}");
            return ExitCode::from(2);
        }
    };
    match run(args, worker) {
        Ok(()) => ExitCode::SUCCESS,
        Err(exit) => {
            if let Some(message) = exit.message {
                eprintln!("host: {message}");
            }
            ExitCode::from(exit.code)
        }
    }
}

fn run(args: Vec<OsString>, worker: Option<WorkerRole>) -> Result<(), Exit> {
    let matches = cli::command()
        .try_get_matches_from(args)
        .unwrap_or_else(|e| e.exit());
    // The file first: its [host] table may say where the plugins are.
    let app = match matches.get_one::<PathBuf>("config") {
        Some(path) => Some(app::read(path).map_err(Exit::usage)?),
        None => None,
    };
    let host_settings = app.as_ref().and_then(|(_, settings, _)| settings.as_ref());
    let mut options = cli::parse(&matches, host_settings);
    let exe = std::env::current_exe()
        .map_err(|e| Exit::failure(format!("cannot find the host executable: {e}")))?;
    let finder = Finder::new(&options, &exe);
    let discovery = finder.discover();
    if options.plugins_report {
        print!("{}", plugins_report::render(&discovery));
        return Ok(());
    }
    report_problems(&discovery);

    let command_line = options.plugin.take().filter(|_| !options.help);
    let Some((file, _, problems)) = app else {
        let Some((tapname, args)) = command_line else {
            print!("{}", usage::render(&discovery));
            // The process ends here; freeing every record one by one would be wasted work.
            std::mem::forget(discovery);
            return Ok(());
        };
        let services = vec![command_line_service(&discovery, tapname, args)?];
        let role = role(worker, &options, &services)?;
        return launch::launch(services, None, &options, &exe, role);
    };
    if options.help {
        print!("{}", usage::render(&discovery));
        return Ok(());
    }
    let command_line = command_line
        .map(|(tapname, args)| command_line_service(&discovery, tapname, args))
        .transpose()?;
    let services = match app::services(&file, problems, &discovery, command_line.clone()) {
        Ok(services) => services,
        Err(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            let count = problems.len();
            eprintln!(
                "host: {}: {count} problem{}; nothing was run",
                file.path.display(),
                if count == 1 { "" } else { "s" }
            );
            return Err(Exit::silent(2));
        }
    };
    if options.check {
        println!("{}: OK, {}", file.path.display(), summary(&services));
        return Ok(());
    }
    let declared = app::Declared {
        path: std::path::absolute(&file.path)
            .map_err(|e| Exit::failure(format!("cannot resolve {}: {e}", file.path.display())))?,
        finder,
        command_line,
    };
    let role = role(worker, &options, &services)?;
    launch::launch(services, Some(declared), &options, &exe, role)
}

/// What this process is to its services: a worker of a master, a master (`--workers`), or,
/// as `host` always was, the one process that runs them.
fn role(
    worker: Option<WorkerRole>,
    options: &cli::GlobalOptions,
    services: &[app::ServiceSpec],
) -> Result<Role, Exit> {
    Ok(match (worker, options.process.workers) {
        (Some(worker), _) => Role::Worker(worker),
        (None, Some(workers)) => {
            // Before 1.2, a plugin's kit binds its sockets itself: its second worker, or its
            // next generation, would find the port taken.
            if let Some(old) = services
                .iter()
                .find(|s| !takes_sockets_from_the_host(&s.record.interface_version))
            {
                return Err(Exit::usage(format!(
                    "--workers needs plugins built against plugin-api 1.2 or later, which take their sockets from the master; {} ({}) was built against {}",
                    old.name,
                    old.path.display(),
                    old.record.interface_version
                )));
            }
            Role::Master { workers }
        }
        (None, None) => Role::Single,
    })
}

/// Whether a plugin built against plugin-api `version` asks the host for its listening
/// sockets (`listen-socket/1`, new in 1.2).
fn takes_sockets_from_the_host(version: &str) -> bool {
    let mut numbers = version.split('.').map(|n| n.parse::<u32>().unwrap_or(0));
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0)) >= (1, 2)
}

/// How plugins are found: the search path and the prober, kept so that SIGHUP can look again.
#[derive(Clone)]
pub struct Finder {
    search_path: SearchPath,
    prober: Prober,
}

impl Finder {
    fn new(options: &cli::GlobalOptions, exe: &Path) -> Self {
        Self {
            search_path: SearchPath::new(
                &options.plugin_dirs,
                std::env::var_os("HOST_PLUGIN_PATH").as_deref(),
                exe.parent(),
            ),
            prober: Prober {
                program: exe.to_path_buf(),
                args: vec![PROBE_SUBCOMMAND.into()],
                timeout: options.probe_timeout,
            },
        }
    }

    pub fn discover(&self) -> Discovery {
        discover(&self.search_path, &self.prober)
    }
}

/// The plugin named on the command line as a service, its options parsed by its own command
/// (bad input exits 2 as usual).
fn command_line_service(
    discovery: &Discovery,
    tapname: String,
    args: Vec<OsString>,
) -> Result<ServiceSpec, Exit> {
    let plugin = discovery
        .find(&tapname)
        .ok_or_else(|| unknown_plugin(&tapname, discovery))?;
    let specs = plugin.options().map_err(Exit::failure)?;
    let values = plugin_values(plugin, &specs, &args).unwrap_or_else(|e| e.exit());
    Ok(ServiceSpec::new(
        tapname,
        plugin,
        values,
        OnFailure::StopHost,
        Origin::CommandLine(args),
    ))
}

/// `3 services: ecstasy (fastpoetry), science (fastpoetry), files (ftp)`.
pub fn summary(services: &[ServiceSpec]) -> String {
    let each: Vec<String> = services
        .iter()
        .map(|s| format!("{} ({})", s.name, s.record.tapname))
        .collect();
    format!(
        "{} service{}: {}",
        services.len(),
        if services.len() == 1 { "" } else { "s" },
        each.join(", ")
    )
}

/// The candidate most like `name`, if one is close enough to be what was meant.
pub fn suggest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|candidate| (strsim::jaro_winkler(name, candidate), candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

/// The plugin's options parsed from `args`, as they cross to the plugin.
fn plugin_values(
    plugin: Plugin<'_>,
    specs: &[OptionSpec],
    args: &[OsString],
) -> Result<Vec<OptionValue>, clap::Error> {
    let matches = plugin_options::command(plugin, specs).try_get_matches_from(
        std::iter::once(OsString::from(plugin.tapname())).chain(args.iter().cloned()),
    )?;
    Ok(plugin_options::values(specs, &matches))
}

/// The first line of a clap error, without its `error: ` prefix: for the log.
fn first_line(error: &clap::Error) -> String {
    let text = error.render().to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// Broken and shadowed plugins get one line each, as do cache problems; files that are not
/// plugins at all are skipped silently, as a plugin directory may hold other libraries.
fn report_problems(discovery: &Discovery) {
    for warning in &discovery.warnings {
        eprintln!("host: warning: {warning}");
    }
    for candidate in &discovery.candidates {
        let usable = candidate.outcome.is_ok() && candidate.shadowed_by.is_none();
        if !usable && !matches!(candidate.outcome, Err(LoadError::NotAPlugin(_))) {
            eprintln!(
                "host: warning: skipped {}: {}",
                candidate.path.display(),
                plugins_report::status(candidate)
            );
        }
    }
}

fn unknown_plugin(tapname: &str, discovery: &Discovery) -> Exit {
    let suggestion = suggest(tapname, discovery.plugins().map(|p| p.tapname()))
        .map(|name| format!(" (did you mean '{name}'?)"))
        .unwrap_or_default();
    Exit::usage(format!(
        "no plugin named '{tapname}'{suggestion}\nhost: searched: {}; run 'host' to list the plugins found",
        usage::searched_list(discovery)
    ))
}
