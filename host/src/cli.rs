//! The host's own command line: global options, then a plugin name and the plugin's options.
//!
//! Parsing happens in two steps, as with twistd: the global options are parsed first (they say
//! where to look for plugins), then the named plugin's options, with a `clap::Command` built from
//! its option specs.

use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// The global options, parsed.
pub struct GlobalOptions {
    pub help: bool,
    pub nodaemon: bool,
    pub plugin_dirs: Vec<PathBuf>,
    pub plugins_report: bool,
    pub probe_timeout: Duration,
    pub verbosity: Verbosity,
    /// The plugin's name and everything after it.
    pub plugin: Option<(String, Vec<OsString>)>,
}

/// How much to log, as the user asked for it.
pub struct Verbosity {
    pub log_level: Option<String>,
    pub verbose: u8,
    pub quiet: u8,
}

pub fn command() -> Command {
    Command::new("host")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Runs network services from plugin libraries, like Twisted's twistd.")
        .override_usage("host [OPTIONS] PLUGIN [PLUGIN OPTIONS]\n       host PLUGIN --help")
        .disable_help_flag(true)
        .allow_external_subcommands(true)
        .external_subcommand_value_parser(value_parser!(OsString))
        .arg(
            Arg::new("help")
                .short('h')
                .long("help")
                .action(ArgAction::SetTrue)
                .help("Print this help, with every plugin found"),
        )
        .arg(
            Arg::new("nodaemon")
                .short('n')
                .long("nodaemon")
                .action(ArgAction::SetTrue)
                .help("Run in the foreground, logging to stdout"),
        )
        .arg(
            Arg::new("plugin-dir")
                .long("plugin-dir")
                .value_name("DIR")
                .action(ArgAction::Append)
                .value_parser(value_parser!(PathBuf))
                .help("Look for plugins in DIR first (repeatable); then HOST_PLUGIN_PATH, then beside the executable"),
        )
        .arg(
            Arg::new("plugins-report")
                .long("plugins-report")
                .action(ArgAction::SetTrue)
                .help("Explain discovery: every directory searched, every candidate file and its status, and where each plugin comes from"),
        )
        .arg(
            Arg::new("probe-timeout")
                .long("probe-timeout")
                .value_name("SECONDS")
                .default_value("5")
                .value_parser(parse_seconds)
                .help("How long loading one new or changed plugin library may take before it is reported as hung"),
        )
        .arg(
            Arg::new("verbose")
                .short('v')
                .long("verbose")
                .action(ArgAction::Count)
                .help("Log more: -v for debug, -vv for trace"),
        )
        .arg(
            Arg::new("quiet")
                .short('q')
                .long("quiet")
                .action(ArgAction::Count)
                .conflicts_with("verbose")
                .help("Log less: -q for warnings and errors only, -qq for errors only"),
        )
        .arg(
            Arg::new("log-level")
                .long("log-level")
                .value_name("LEVEL")
                .value_parser(["off", "error", "warn", "info", "debug", "trace"])
                .conflicts_with_all(["verbose", "quiet"])
                .help("Log at LEVEL [default: info, or RUST_LOG when set]"),
        )
}

pub fn parse(matches: &ArgMatches) -> GlobalOptions {
    GlobalOptions {
        help: matches.get_flag("help"),
        nodaemon: matches.get_flag("nodaemon"),
        plugin_dirs: matches
            .get_many::<PathBuf>("plugin-dir")
            .map(|dirs| dirs.cloned().collect())
            .unwrap_or_default(),
        plugins_report: matches.get_flag("plugins-report"),
        probe_timeout: *matches
            .get_one::<Duration>("probe-timeout")
            .expect("has a default"),
        verbosity: Verbosity {
            log_level: matches.get_one::<String>("log-level").cloned(),
            verbose: matches.get_count("verbose"),
            quiet: matches.get_count("quiet"),
        },
        plugin: matches.subcommand().map(|(name, rest)| {
            let args = rest
                .get_many::<OsString>("")
                .map(|a| a.cloned().collect())
                .unwrap_or_default();
            (name.to_string(), args)
        }),
    }
}

fn parse_seconds(value: &str) -> Result<Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("'{value}' is not a positive number of seconds"))
}
