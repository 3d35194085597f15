//! Loading one plugin library and turning abi_stable's errors into one line each.

use crate::cache_file::FileStat;
use crate::option_check::check_options;
use crate::record::PluginRecord;
use abi_stable::library::{lib_header_from_path, AbiHeader, LibraryError};
use abi_stable::std_types::RResult;
use nix::sys::signal::Signal;
use plugin_api::abi::{ServiceMakerRef, INTERFACE_VERSION};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::os::fd::IntoRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why a candidate file is not a usable plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoadError {
    /// Not a shared library, or a library that exports no service maker.
    NotAPlugin(String),
    /// Built against a plugin-api this host cannot use.
    Incompatible {
        /// The plugin-api version the library was built against.
        plugin: String,
        /// This host's plugin-api version.
        host: String,
        /// What differs, in a few words.
        detail: String,
    },
    /// A plugin that failed while loading or describing itself.
    Broken(String),
    /// Loading it killed the probe process with this signal.
    Crashed {
        /// The signal number.
        signal: i32,
    },
    /// Loading it made the probe process exit (a constructor called `exit`).
    Exited {
        /// The exit status.
        code: i32,
    },
    /// Loading it did not finish within the probe time limit.
    TimedOut {
        /// The limit, in milliseconds.
        limit_ms: u64,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAPlugin(why) => write!(f, "not a plugin ({why})"),
            Self::Incompatible { plugin, host, detail } if plugin == host => write!(
                f,
                "incompatible plugin-api: the plugin was built against another build of plugin-api {plugin} ({detail}); rebuild it"
            ),
            Self::Incompatible { plugin, host, detail } => write!(
                f,
                "incompatible plugin-api: the plugin was built against {plugin}, this host has {host} ({detail})"
            ),
            Self::Broken(why) => write!(f, "broken plugin: {why}"),
            Self::Crashed { signal } => {
                write!(f, "crashed on load: signal {signal} ({})", signal_name(*signal))
            }
            Self::Exited { code } => write!(f, "exited on load with status {code}"),
            Self::TimedOut { limit_ms } => {
                write!(f, "timed out: loading took longer than {:.1} s", *limit_ms as f64 / 1000.0)
            }
        }
    }
}

/// Loads the library at `path` and asks it what it offers, checking its option specs.
///
/// Uses `lib_header_from_path(..).init_root_module()` rather than `RootModule::load_from_file`,
/// which caches one module per type and would hand back the first plugin for every later one.
/// This runs the library's load-time code: the host calls it in a probe child process, and in
/// itself only for the one plugin it runs.
pub fn load_and_describe(path: &Path) -> Result<(ServiceMakerRef, PluginRecord), LoadError> {
    let (maker, interface_version) = open(path)?;
    match (maker.info())() {
        RResult::ROk(info) => {
            check_options(&info.options)
                .map_err(|why| LoadError::Broken(format!("plugin '{}': {why}", info.tapname)))?;
            Ok((maker, PluginRecord::from_info(&info, &interface_version)))
        }
        RResult::RErr(e) => Err(LoadError::Broken(format!("describing itself failed: {e}"))),
    }
}

/// The library's service maker and the plugin-api version it was built against.
fn open(path: &Path) -> Result<(ServiceMakerRef, String), LoadError> {
    let header = lib_header_from_path(&fresh_name(path)).map_err(|e| classify(e, "unknown"))?;
    let interface_version = header.version_strings().version.to_string();
    let maker = header
        .init_root_module::<ServiceMakerRef>()
        .map_err(|e| classify(e, &interface_version))?;
    Ok((maker, interface_version))
}

/// The name to load `path` by. glibc's `dlopen` hands back the library already loaded under
/// the same name without looking at the file, so a new build installed at a path loaded before
/// (renamed into place, as SIGHUP then restarts its service) would never run. So a file (device
/// and inode) at a path that held another file when it was loaded is opened and loaded as
/// `/proc/self/fd/N`: a name never used before, since the descriptor stays open as long as the
/// library stays loaded (for ever). A file loaded before is loaded by the name it was loaded by,
/// and glibc hands back that library.
fn fresh_name(path: &Path) -> PathBuf {
    /// A library file loaded by this process: where, which file, and the name it was loaded by.
    struct Loaded {
        path: PathBuf,
        file: (u64, u64),
        name: PathBuf,
    }
    static LOADED: Mutex<Vec<Loaded>> = Mutex::new(Vec::new());
    let Ok(stat) = FileStat::of(path) else {
        // The load fails, with the error for the path itself.
        return path.to_path_buf();
    };
    let file = (stat.dev, stat.ino);
    let mut loaded = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = loaded.iter().find(|l| l.path == path && l.file == file) {
        return known.name.clone();
    }
    let name = match loaded.iter().any(|l| l.path == path) {
        false => path.to_path_buf(),
        true => {
            let Ok(opened) = plugin_api::files::open_regular(path) else {
                return path.to_path_buf();
            };
            PathBuf::from(format!("/proc/self/fd/{}", opened.into_raw_fd()))
        }
    };
    // What was opened, which a rename since the stat above may have changed.
    let file = FileStat::of(&name).map_or(file, |s| (s.dev, s.ino));
    loaded.push(Loaded {
        path: path.to_path_buf(),
        file,
        name: name.clone(),
    });
    name
}

fn signal_name(signal: i32) -> &'static str {
    Signal::try_from(signal).map_or("signal", Signal::as_str)
}

fn classify(error: LibraryError, plugin_version: &str) -> LoadError {
    match error {
        LibraryError::OpenError { err, .. } => LoadError::NotAPlugin(first_line(&err.to_string())),
        LibraryError::GetSymbolError { .. } => {
            LoadError::NotAPlugin("no service maker exported".to_string())
        }
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => LoadError::Incompatible {
            plugin: actual_version.to_string(),
            host: expected_version.to_string(),
            detail: "different major version".to_string(),
        },
        LibraryError::InvalidAbiHeader(header) => LoadError::Incompatible {
            plugin: format!("abi_stable ABI {}.{}", header.abi_major, header.abi_minor),
            host: format!(
                "abi_stable ABI {}.{}",
                AbiHeader::VALUE.abi_major,
                AbiHeader::VALUE.abi_minor
            ),
            detail: "built with an incompatible abi_stable".to_string(),
        },
        // The layout report runs to a thousand lines; the versions say what the user needs.
        LibraryError::AbiInstability(_) => LoadError::Incompatible {
            plugin: plugin_version.to_string(),
            host: INTERFACE_VERSION.to_string(),
            detail: "the interface layout differs".to_string(),
        },
        LibraryError::RootModule { err, .. } => LoadError::Broken(format!(
            "its root module failed to load: {}",
            first_line(&err.to_string())
        )),
        other => LoadError::Broken(first_line(&other.to_string())),
    }
}

fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown error")
        .to_string()
}
