//! Application files: several named services in one host, declared in TOML, the successor of
//! twistd's `.tac` files (see the README's "Application files").

pub mod check;
pub mod file;
pub mod settings;

pub use check::{check, Origin, ServiceSpec};
pub use file::{AppFile, OnFailure};

use crate::Finder;
use dropin_cache::Plugin;
use plugin_api::abi::{OptionSpec, OptionValue};
use std::path::PathBuf;

/// Where the running services were declared, so that SIGHUP can read them again: the
/// application file, and the plugin named on the command line (which stays as it was).
pub struct Declared {
    pub path: PathBuf,
    pub finder: Finder,
    pub command_line: Option<ServiceSpec>,
}

impl Declared {
    /// The services as declared now: the file read and checked again, against the plugins
    /// found now. `Err` holds every problem, one line each.
    pub fn reread(&self) -> Result<Vec<ServiceSpec>, Vec<String>> {
        let (file, mut problems) = AppFile::read(&self.path).map_err(|e| vec![e])?;
        if let Err(more) = settings::host_matches(&file) {
            problems.extend(more);
        }
        let discovery = self.finder.discover();
        let (services, more) = check(&file, &discovery, self.command_line.clone());
        problems.extend(more);
        match problems.is_empty() {
            true => Ok(services),
            false => Err(problems.iter().map(|p| file.render(p)).collect()),
        }
    }
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
