//! Scanning the search path: every plugin found, every candidate rejected and why.

use crate::library::{load_service_maker, LoadError};
use crate::option_check::check_options;
use crate::search_path::SearchPath;
use abi_stable::std_types::RResult;
use plugin_api::abi::{OptionSpec, ServiceMakerRef};
use std::path::{Path, PathBuf};

/// A plugin found on the search path.
#[derive(Debug, Clone)]
pub struct Plugin {
    /// The library file.
    pub path: PathBuf,
    /// The name users type after `host`.
    pub tapname: String,
    /// The one-line description.
    pub description: String,
    /// The plugin's options.
    pub options: Vec<OptionSpec>,
}

impl Plugin {
    /// Loads the library's service maker.
    pub fn load(&self) -> Result<ServiceMakerRef, LoadError> {
        load_service_maker(&self.path)
    }
}

/// A candidate file that is not a usable plugin.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// The file.
    pub path: PathBuf,
    /// Why it was rejected.
    pub reason: Rejection,
}

/// Why a candidate was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// It could not be loaded as a plugin.
    Load(LoadError),
    /// Its tapname is taken by a plugin earlier in the search path.
    Shadowed {
        /// The tapname both offer.
        tapname: String,
        /// The file that wins.
        by: PathBuf,
    },
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Load(e) => e.fmt(f),
            Self::Shadowed { tapname, by } => {
                write!(
                    f,
                    "shadowed: '{tapname}' is already provided by {}",
                    by.display()
                )
            }
        }
    }
}

/// What a scan of the search path found.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The directories searched, in order.
    pub searched: Vec<PathBuf>,
    /// Usable plugins, first in search order winning each tapname, sorted by tapname.
    pub plugins: Vec<Plugin>,
    /// Candidates that were not usable.
    pub rejected: Vec<Rejected>,
}

impl Discovery {
    /// The plugin with this tapname.
    pub fn find(&self, tapname: &str) -> Option<&Plugin> {
        self.plugins.iter().find(|p| p.tapname == tapname)
    }
}

/// Scans every directory of `search_path` for plugin libraries.
///
/// Directories that do not exist are skipped silently: the defaults often do not.
pub fn discover(search_path: &SearchPath) -> Discovery {
    let mut plugins: Vec<Plugin> = Vec::new();
    let mut rejected = Vec::new();
    for path in search_path.dirs().iter().flat_map(|dir| candidates(dir)) {
        match describe(&path) {
            Ok(plugin) => match plugins.iter().find(|p| p.tapname == plugin.tapname) {
                Some(winner) => rejected.push(Rejected {
                    reason: Rejection::Shadowed {
                        tapname: plugin.tapname,
                        by: winner.path.clone(),
                    },
                    path,
                }),
                None => plugins.push(plugin),
            },
            Err(e) => rejected.push(Rejected {
                path,
                reason: Rejection::Load(e),
            }),
        }
    }
    plugins.sort_by(|a, b| a.tapname.cmp(&b.tapname));
    Discovery {
        searched: search_path.dirs().to_vec(),
        plugins,
        rejected,
    }
}

/// The shared libraries in `dir`, sorted so the scan order does not depend on the filesystem.
fn candidates(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| is_library_name(p) && p.is_file())
        .collect();
    files.sort();
    files
}

fn is_library_name(path: &Path) -> bool {
    let wanted: &[&str] = if cfg!(target_os = "macos") {
        &["so", "dylib"]
    } else {
        &["so"]
    };
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| wanted.contains(&e))
}

fn describe(path: &Path) -> Result<Plugin, LoadError> {
    let maker = load_service_maker(path)?;
    match (maker.info())() {
        RResult::ROk(info) => {
            check_options(&info.options)
                .map_err(|why| LoadError::Broken(format!("plugin '{}': {why}", info.tapname)))?;
            Ok(Plugin {
                path: path.to_path_buf(),
                tapname: info.tapname.into_string(),
                description: info.description.into_string(),
                options: info.options.into_vec(),
            })
        }
        RResult::RErr(e) => Err(LoadError::Broken(format!("describing itself failed: {e}"))),
    }
}
