//! The host's own command line: global options, then a plugin name and the plugin's options.
//!
//! Parsing happens in two steps, as with twistd: the global options are parsed first (they say
//! where to look for plugins), then the named plugin's options, with a `clap::Command` built from
//! its option specs. twistd's option names are kept where they make sense.

use crate::logging::{LineFormat, MAX_KEEP};
use clap::parser::ValueSource;
use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// The global options, parsed.
pub struct GlobalOptions {
    pub help: bool,
    /// Check the application file instead of running it.
    pub check: bool,
    pub plugin_dirs: Vec<PathBuf>,
    pub plugins_report: bool,
    pub probe_timeout: Duration,
    pub verbosity: Verbosity,
    pub log: LogOptions,
    pub process: ProcessOptions,
    /// The plugin's name and everything after it.
    pub plugin: Option<(String, Vec<OsString>)>,
}

/// How much to log, as the user asked for it.
pub struct Verbosity {
    pub log_level: Option<String>,
    pub verbose: u8,
    pub quiet: u8,
}

/// Where and how to log.
pub struct LogOptions {
    /// `None`: the default (`host.log` as a daemon, stdout with `-n`); `-` is stdout.
    pub logfile: Option<PathBuf>,
    pub rotate_size: u64,
    pub keep: usize,
    pub format: LineFormat,
    pub syslog: bool,
    pub prefix: String,
}

/// How the process lives: daemon or not, pid file, privileges, shutdown, the admin endpoint.
pub struct ProcessOptions {
    pub admin: Option<plugin_api::Endpoint>,
    /// Run the services in this many worker processes under a master (`--workers`).
    pub workers: Option<u32>,
    pub nodaemon: bool,
    /// `None` when `--pidfile ''` asks for no pid file.
    pub pidfile: Option<PathBuf>,
    pub uid: Option<String>,
    pub gid: Option<String>,
    pub umask: Option<u32>,
    pub rundir: PathBuf,
    pub chroot: Option<PathBuf>,
    pub shutdown_timeout: Duration,
}

pub fn command() -> Command {
    Command::new("host")
        .version(env!("CARGO_PKG_VERSION"))
        // Plain text: no escape codes to write and then strip when the output is not a terminal.
        .styles(clap::builder::Styles::plain())
        .about("Runs network services from plugin libraries, like Twisted's twistd.")
        .override_usage("host [OPTIONS] PLUGIN [PLUGIN OPTIONS]\n       host [OPTIONS] --config FILE [PLUGIN [PLUGIN OPTIONS]]\n       host PLUGIN --help")
        .disable_help_flag(true)
        .allow_external_subcommands(true)
        .external_subcommand_value_parser(value_parser!(OsString))
        .arg(flag("help", Some('h'), "Print this help, with every plugin found"))
        .next_help_heading("Application")
        .arg(
            value("config", Some('y'), "FILE", "Run the services FILE declares (TOML, see the README), and PLUGIN too if one is named")
                .value_parser(value_parser!(PathBuf)),
        )
        .arg(
            flag("check", None, "Check --config FILE and every service's options, loading no plugin and binding nothing; exit 2 if anything is wrong")
                .requires("config"),
        )
        .next_help_heading("Operations")
        .arg(
            value("admin", None, "ENDPOINT", "Serve /healthz, /readyz, /metrics and /services over HTTP on ENDPOINT, e.g. tcp:9100:interface=127.0.0.1 [default: off]")
                .value_parser(|text: &str| text.parse::<plugin_api::Endpoint>().map_err(|e| e.to_string())),
        )
        .arg(
            value("workers", None, "N", "Run the services in N worker processes under a master that holds their sockets, replaces a worker that dies and upgrades on SIGUSR2 without refusing a connection [default: one process]")
                .value_parser(value_parser!(u32).range(1..=256)),
        )
        .next_help_heading("Process")
        .arg(flag("nodaemon", Some('n'), "Run in the foreground, logging to stdout"))
        .arg(
            value("pidfile", None, "FILE", "Write the process id to FILE, locked while running; '' for none")
                .default_value("host.pid"),
        )
        .arg(value("uid", Some('u'), "USER", "After binding ports, switch to USER (a name or number; needs root)"))
        .arg(value("gid", Some('g'), "GROUP", "After binding ports, switch to GROUP [default: USER's group]"))
        .arg(
            value("umask", None, "MASK", "The umask, in octal [default: 0077 as a daemon, unchanged with -n]")
                .value_parser(parse_umask),
        )
        .arg(
            value("rundir", Some('d'), "DIR", "Change to DIR before running; relative --logfile and --pidfile are inside it")
                .value_parser(value_parser!(PathBuf))
                .default_value("."),
        )
        .arg(
            value("chroot", None, "DIR", "Chroot to DIR after binding ports, before dropping privileges")
                .value_parser(value_parser!(PathBuf)),
        )
        .arg(
            value("shutdown-timeout", None, "SECONDS", "How long in-flight work may take to finish on SIGINT/SIGTERM")
                .value_parser(parse_seconds)
                .default_value("10"),
        )
        .next_help_heading("Logging")
        .arg(
            value("logfile", Some('l'), "FILE", "Log to FILE, '-' for stdout [default: host.log as a daemon, stdout with -n]")
                .value_parser(value_parser!(PathBuf)),
        )
        .arg(
            value("log-rotate-size", None, "BYTES", "Rotate the log file when it would grow past BYTES; 0 never")
                .value_parser(value_parser!(u64))
                .default_value("1000000"),
        )
        .arg(
            value("log-keep", None, "N", "How many rotated log files to keep (host.log.1 … host.log.N), at most 1000")
                .value_parser(parse_keep)
                .default_value("10"),
        )
        .arg(
            value("log-format", None, "FORMAT", "Log lines as twistd's text or as one JSON object each")
                .value_parser(["text", "json"])
                .default_value("text"),
        )
        .arg(flag("syslog", None, "Log to syslog instead of a file"))
        .arg(value("prefix", None, "PREFIX", "The syslog identity").default_value("host"))
        .arg(flag("verbose", Some('v'), "Log more: -v for debug, -vv for trace").action(ArgAction::Count))
        .arg(
            flag("quiet", Some('q'), "Log less: -q for warnings and errors only, -qq for errors only")
                .action(ArgAction::Count)
                .conflicts_with("verbose"),
        )
        .arg(
            value("log-level", None, "LEVEL", "Log at LEVEL [default: info, or RUST_LOG when set]")
                .value_parser(["off", "error", "warn", "info", "debug", "trace"])
                .conflicts_with_all(["verbose", "quiet"]),
        )
        .next_help_heading("Discovery")
        .arg(
            value("plugin-dir", None, "DIR", "Look for plugins in DIR first (repeatable); then HOST_PLUGIN_PATH, then beside the executable")
                .action(ArgAction::Append)
                .value_parser(value_parser!(PathBuf)),
        )
        .arg(flag(
            "plugins-report",
            None,
            "Explain discovery: every directory searched, every candidate file and its status, and where each plugin comes from",
        ))
        .arg(
            value("probe-timeout", None, "SECONDS", "How long loading one new or changed plugin library may take before it is reported as hung")
                .default_value("5")
                .value_parser(parse_seconds),
        )
}

fn flag(name: &'static str, short: Option<char>, help: &'static str) -> Arg {
    let arg = Arg::new(name)
        .long(name)
        .action(ArgAction::SetTrue)
        .help(help);
    match short {
        Some(letter) => arg.short(letter),
        None => arg,
    }
}

fn value(
    name: &'static str,
    short: Option<char>,
    value_name: &'static str,
    help: &'static str,
) -> Arg {
    let arg = Arg::new(name).long(name).value_name(value_name).help(help);
    match short {
        Some(letter) => arg.short(letter),
        None => arg,
    }
}

/// The global options: from the command line, and for what it does not give, from the
/// application file's `[host]` table (parsed by this same command into `file`).
pub fn parse(cli: &ArgMatches, file: Option<&ArgMatches>) -> GlobalOptions {
    let layers = Layers { cli, file };
    let string = |id: &str| layers.source(id).get_one::<String>(id).cloned();
    let path = |id: &str| layers.source(id).get_one::<PathBuf>(id).cloned();
    let duration = |id: &str| {
        *layers
            .source(id)
            .get_one::<Duration>(id)
            .expect("has a default")
    };
    // -v, -q and --log-level are one choice: whichever layer makes it makes all of it.
    let verbosity = layers.source_of_any(&["verbose", "quiet", "log-level"]);
    let plugin_dirs = [Some(cli), file]
        .into_iter()
        .flatten()
        .flat_map(|m| m.get_many::<PathBuf>("plugin-dir").into_iter().flatten())
        .cloned()
        .collect();
    GlobalOptions {
        help: cli.get_flag("help"),
        check: cli.get_flag("check"),
        plugin_dirs,
        plugins_report: cli.get_flag("plugins-report"),
        probe_timeout: duration("probe-timeout"),
        verbosity: Verbosity {
            log_level: verbosity.get_one::<String>("log-level").cloned(),
            verbose: verbosity.get_count("verbose"),
            quiet: verbosity.get_count("quiet"),
        },
        log: LogOptions {
            logfile: path("logfile"),
            rotate_size: *layers
                .source("log-rotate-size")
                .get_one::<u64>("log-rotate-size")
                .expect("has a default"),
            keep: *layers
                .source("log-keep")
                .get_one::<usize>("log-keep")
                .expect("has a default"),
            format: match string("log-format").as_deref() {
                Some("json") => LineFormat::Json,
                _ => LineFormat::Text,
            },
            syslog: layers.source("syslog").get_flag("syslog"),
            prefix: string("prefix").expect("has a default"),
        },
        process: ProcessOptions {
            admin: layers
                .source("admin")
                .get_one::<plugin_api::Endpoint>("admin")
                .cloned(),
            workers: layers.source("workers").get_one::<u32>("workers").copied(),
            nodaemon: layers.source("nodaemon").get_flag("nodaemon"),
            pidfile: string("pidfile")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            uid: string("uid"),
            gid: string("gid"),
            umask: layers.source("umask").get_one::<u32>("umask").copied(),
            rundir: path("rundir").expect("has a default"),
            chroot: path("chroot"),
            shutdown_timeout: duration("shutdown-timeout"),
        },
        plugin: cli.subcommand().map(|(name, rest)| {
            let args = rest
                .get_many::<OsString>("")
                .map(|a| a.cloned().collect())
                .unwrap_or_default();
            (name.to_string(), args)
        }),
    }
}

/// The command line over the application file's `[host]` table.
struct Layers<'a> {
    cli: &'a ArgMatches,
    file: Option<&'a ArgMatches>,
}

impl<'a> Layers<'a> {
    /// Where option `id`'s value comes from: the command line if it gives one, else the file
    /// if it does, else the command line's default.
    fn source(&self, id: &str) -> &'a ArgMatches {
        self.source_of_any(&[id])
    }

    fn source_of_any(&self, ids: &[&str]) -> &'a ArgMatches {
        let given = |m: &ArgMatches| {
            ids.iter()
                .any(|id| m.value_source(id) == Some(ValueSource::CommandLine))
        };
        match self.file {
            Some(file) if !given(self.cli) && given(file) => file,
            _ => self.cli,
        }
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

fn parse_keep(value: &str) -> Result<usize, String> {
    let keep: usize = value
        .parse()
        .map_err(|_| format!("'{value}' is not a number of files"))?;
    match keep <= MAX_KEEP {
        true => Ok(keep),
        false => Err(format!(
            "{keep} is more than the {MAX_KEEP} rotated files host keeps"
        )),
    }
}

fn parse_umask(value: &str) -> Result<u32, String> {
    u32::from_str_radix(value, 8)
        .ok()
        .filter(|mask| *mask <= 0o777)
        .ok_or_else(|| format!("'{value}' is not an octal umask such as 0022"))
}
