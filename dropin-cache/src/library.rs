//! Loading one plugin library and turning abi_stable's errors into one line each.

use abi_stable::library::{lib_header_from_path, AbiHeader, LibraryError};
use plugin_api::abi::{ServiceMakerRef, INTERFACE_VERSION};
use std::fmt;
use std::path::Path;

/// Why a candidate file is not a usable plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAPlugin(why) => write!(f, "not a plugin ({why})"),
            Self::Incompatible { plugin, host, detail } => write!(
                f,
                "incompatible plugin-api: the plugin was built against {plugin}, this host has {host} ({detail})"
            ),
            Self::Broken(why) => write!(f, "broken plugin: {why}"),
        }
    }
}

/// Loads the service maker of the library at `path`.
///
/// Uses `lib_header_from_path(..).init_root_module()` rather than `RootModule::load_from_file`,
/// which caches one module per type and would hand back the first plugin for every later one.
pub fn load_service_maker(path: &Path) -> Result<ServiceMakerRef, LoadError> {
    let header = lib_header_from_path(path).map_err(|e| classify(e, "unknown"))?;
    let plugin_version = header.version_strings().version;
    header
        .init_root_module::<ServiceMakerRef>()
        .map_err(|e| classify(e, plugin_version.as_str()))
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
