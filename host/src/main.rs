//! `host`: runs network services from plugin libraries, like Twisted's `twistd`.
//!
//! Here: parse the global options → discover plugins (`dropin-cache`) → list them, report on
//! them, or parse the chosen plugin's options. Running the plugin, from opening the log to the
//! last line, is `launch`'s job; the main loop is `application`'s.

mod application;
mod cli;
mod launch;
mod logging;
mod plugin_host;
mod plugin_options;
mod plugins_report;
mod process;
mod resource_limits;
mod usage;

use dropin_cache::{discover, Discovery, LoadError, Plugin, Prober, SearchPath};
use plugin_api::abi::{OptionSpec, OptionValue};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

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
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(exit) => {
            if let Some(message) = exit.message {
                eprintln!("host: {message}");
            }
            ExitCode::from(exit.code)
        }
    }
}

fn run(args: Vec<OsString>) -> Result<(), Exit> {
    let matches = cli::command()
        .try_get_matches_from(args)
        .unwrap_or_else(|e| e.exit());
    let mut options = cli::parse(&matches);
    let exe = std::env::current_exe()
        .map_err(|e| Exit::failure(format!("cannot find the host executable: {e}")))?;
    let search_path = SearchPath::new(
        &options.plugin_dirs,
        std::env::var_os("HOST_PLUGIN_PATH").as_deref(),
        exe.parent(),
    );
    let prober = Prober {
        program: exe.clone(),
        args: vec![PROBE_SUBCOMMAND.into()],
        timeout: options.probe_timeout,
    };
    let discovery = discover(&search_path, &prober);
    if options.plugins_report {
        print!("{}", plugins_report::render(&discovery));
        return Ok(());
    }
    report_problems(&discovery);

    let Some((tapname, args)) = options.plugin.take().filter(|_| !options.help) else {
        print!("{}", usage::render(&discovery));
        // The process ends here; freeing every record one by one would be wasted work.
        std::mem::forget(discovery);
        return Ok(());
    };
    let plugin = discovery
        .find(&tapname)
        .ok_or_else(|| unknown_plugin(&tapname, &discovery))?;
    let specs = plugin.options().map_err(Exit::failure)?;
    let values = plugin_values(plugin, &specs, &args).unwrap_or_else(|e| e.exit());
    launch::launch(plugin, &args, values, &options, &exe)
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
    let suggestion = discovery
        .plugins()
        .map(|p| (strsim::jaro_winkler(tapname, p.tapname()), p.tapname()))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| format!(" (did you mean '{name}'?)"))
        .unwrap_or_default();
    Exit::usage(format!(
        "no plugin named '{tapname}'{suggestion}\nhost: searched: {}; run 'host' to list the plugins found",
        usage::searched_list(discovery)
    ))
}
