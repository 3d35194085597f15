//! Application files: several named services in one host, declared in TOML, the successor of
//! twistd's `.tac` files (see the README's "Application files").

pub mod check;
pub mod file;
pub mod settings;

pub use check::{Origin, ServiceSpec};
pub use file::{AppFile, OnFailure, Problem};

use crate::Finder;
use clap::ArgMatches;
use dropin_cache::{Discovery, Plugin};
use plugin_api::abi::{OptionSpec, OptionValue};
use std::path::{Path, PathBuf};

/// Where the running services were declared, so that SIGHUP can read them again: the
/// application file, and the plugin named on the command line (which stays as it was).
pub struct Declared {
    /// The file's absolute path, made so at start: by SIGHUP, the host may be in its `--rundir`.
    pub path: PathBuf,
    pub finder: Finder,
    pub command_line: Option<ServiceSpec>,
}

impl Declared {
    /// The services as declared now: the file read and checked again, against the plugins
    /// found now, exactly as `--check` would. `Err` holds every problem, one line each.
    pub fn reread(&self) -> Result<Vec<ServiceSpec>, Vec<String>> {
        let (file, _, problems) = read(&self.path).map_err(|e| vec![e])?;
        services(
            &file,
            problems,
            &self.finder.discover(),
            self.command_line.clone(),
        )
    }
}

/// Reads the application file at `path` and parses its `[host]` table: the file, its global
/// options, and the problems found so far. `Err` is why the file cannot be read at all.
pub fn read(path: &Path) -> Result<(AppFile, Option<ArgMatches>, Vec<Problem>), String> {
    let (file, mut problems) = AppFile::read(path)?;
    let settings = settings::host_matches(&file).unwrap_or_else(|more| {
        problems.extend(more);
        None
    });
    Ok((file, settings, problems))
}

/// The services `file` and `command_line` (the plugin named after the global options) declare,
/// checked against the plugins `discovery` found: the one judgement of `--check`, of a start
/// and of SIGHUP. `Err` holds every problem, `problems` (from [`read`]) included, one line each
/// in the file's order.
pub fn services(
    file: &AppFile,
    mut problems: Vec<Problem>,
    discovery: &Discovery,
    command_line: Option<ServiceSpec>,
) -> Result<Vec<ServiceSpec>, Vec<String>> {
    let (services, more) = check::check(file, discovery, command_line);
    problems.extend(more);
    if services.is_empty() && problems.is_empty() {
        problems.push(Problem {
            at: None,
            message: "declares no service (add a [[service]] table) and no plugin was named"
                .to_string(),
        });
    }
    if problems.is_empty() {
        return Ok(services);
    }
    // In the file's order, as a reader goes through it.
    problems.sort_by_key(|problem| problem.at.as_ref().map(|at| at.start));
    Err(problems.iter().map(|p| file.render(p)).collect())
}

impl ServiceSpec {
    /// The option values this service's declaration gives under `specs`: how its options are
    /// read again when its library turns out to offer other options than its cache record said.
    pub fn values_under(
        &self,
        plugin: Plugin<'_>,
        specs: &[OptionSpec],
    ) -> Result<Vec<OptionValue>, String> {
        match &self.origin {
            Origin::CommandLine(args) => {
                crate::plugin_values(plugin, specs, args).map_err(|e| crate::first_line(&e))
            }
            Origin::File { entry, dir } => {
                match check::file_values(dir, entry, specs, plugin.tapname()) {
                    (values, problems) if problems.is_empty() => Ok(values),
                    (_, problems) => {
                        let messages: Vec<String> =
                            problems.into_iter().map(|p| p.message).collect();
                        Err(messages.join("; "))
                    }
                }
            }
        }
    }
}
