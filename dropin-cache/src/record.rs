//! What a plugin offers, in a form that can be cached on disk and sent from a probe process.

use abi_stable::std_types::ROption;
use plugin_api::abi::{OptionKind, OptionSpec, PluginInfo};
use serde::{Deserialize, Serialize};

/// A plugin's self-description: tapname, description, options and interface version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRecord {
    pub tapname: String,
    pub description: String,
    pub options: Vec<OptionRecord>,
    /// The plugin-api version the library was built against.
    pub interface_version: String,
}

/// One [`OptionSpec`], as plain data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionRecord {
    pub long: String,
    pub short: Option<u8>,
    pub kind: u8,
    pub default: Option<String>,
    pub help: String,
    pub repeatable: bool,
}

impl PluginRecord {
    pub(crate) fn new(info: &PluginInfo, interface_version: &str) -> Self {
        Self {
            tapname: info.tapname.to_string(),
            description: info.description.to_string(),
            options: info.options.iter().map(OptionRecord::from).collect(),
            interface_version: interface_version.to_string(),
        }
    }

    /// The options as the ABI type the host builds its command line from.
    pub fn option_specs(&self) -> Vec<OptionSpec> {
        self.options.iter().map(OptionSpec::from).collect()
    }
}

impl From<&OptionSpec> for OptionRecord {
    fn from(spec: &OptionSpec) -> Self {
        Self {
            long: spec.long.to_string(),
            short: spec.short.into_option(),
            kind: spec.kind.0,
            default: spec.default.as_ref().map(|d| d.to_string()).into_option(),
            help: spec.help.to_string(),
            repeatable: spec.repeatable,
        }
    }
}

impl From<&OptionRecord> for OptionSpec {
    fn from(record: &OptionRecord) -> Self {
        Self {
            long: record.long.as_str().into(),
            short: ROption::from(record.short),
            kind: OptionKind(record.kind),
            default: ROption::from(record.default.as_deref().map(Into::into)),
            help: record.help.as_str().into(),
            repeatable: record.repeatable,
        }
    }
}
