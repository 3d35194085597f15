//! What a plugin offers, in a form that can be cached on disk and sent from a probe process.

use abi_stable::std_types::ROption;
use plugin_api::abi::{OptionKind, OptionSpec, PluginInfo};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A plugin's self-description: tapname, description, options and interface version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginRecord {
    pub tapname: String,
    pub description: String,
    /// The options as JSON (a list of [`OptionRecord`]), decoded only for the plugin being run
    /// or helped: a listing never needs them, and decoding every plugin's options was most of
    /// the cost of a warm listing.
    options: Box<RawValue>,
    /// The plugin-api version the library was built against.
    pub interface_version: String,
}

impl PartialEq for PluginRecord {
    fn eq(&self, other: &Self) -> bool {
        self.tapname == other.tapname
            && self.description == other.description
            && self.options.get() == other.options.get()
            && self.interface_version == other.interface_version
    }
}

impl Eq for PluginRecord {}

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
    pub fn new(
        tapname: &str,
        description: &str,
        options: &[OptionRecord],
        interface_version: &str,
    ) -> Self {
        Self {
            tapname: tapname.to_string(),
            description: description.to_string(),
            options: serde_json::value::to_raw_value(options)
                .expect("option records always serialize"),
            interface_version: interface_version.to_string(),
        }
    }

    pub(crate) fn from_info(info: &PluginInfo, interface_version: &str) -> Self {
        let options: Vec<OptionRecord> = info.options.iter().map(OptionRecord::from).collect();
        Self::new(
            &info.tapname,
            &info.description,
            &options,
            interface_version,
        )
    }

    /// The options as the ABI type the host builds its command line from.
    pub fn option_specs(&self) -> Result<Vec<OptionSpec>, String> {
        let records: Vec<OptionRecord> = serde_json::from_str(self.options.get()).map_err(|e| {
            format!(
                "the plugin cache holds invalid options for '{}' ({e}); delete dropin.cache",
                self.tapname
            )
        })?;
        Ok(records.iter().map(OptionSpec::from).collect())
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
