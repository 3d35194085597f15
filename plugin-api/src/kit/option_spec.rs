//! Builders for [`OptionSpec`], so an options list reads like twistd's `optParameters`.

use crate::abi::{OptionKind, OptionSpec};
use crate::kit::endpoint::Endpoint;
use abi_stable::std_types::{RNone, RSome};

impl OptionSpec {
    /// An option that takes a value of `kind`, e.g. `--port 10000`.
    pub fn param(long: &str, kind: OptionKind, help: &str) -> Self {
        Self {
            long: long.into(),
            short: RNone,
            kind,
            default: RNone,
            help: help.into(),
            repeatable: false,
        }
    }

    /// An option without a value, e.g. `--write-anonymous`.
    pub fn flag(long: &str, help: &str) -> Self {
        Self::param(long, OptionKind::FLAG, help)
    }

    /// Adds a one-letter alias, e.g. `-p` for `--port`.
    pub fn short(mut self, letter: char) -> Self {
        // Only ASCII letters are valid short options; anything else is reported at probe time.
        self.short = RSome(u8::try_from(letter).unwrap_or(0));
        self
    }

    /// The value used when the user does not give the option; shown in `--help`.
    pub fn default(mut self, value: &str) -> Self {
        self.default = RSome(value.into());
        self
    }

    /// Allows the option to be given several times; the values arrive in order.
    pub fn repeatable(mut self) -> Self {
        self.repeatable = true;
        self
    }

    /// Whether the option takes no value.
    pub fn is_flag(&self) -> bool {
        self.kind == OptionKind::FLAG
    }
}

impl OptionKind {
    /// Checks that `value` is valid for this kind, saying why not in a few words.
    ///
    /// The host validates every value with this before `make_service` sees it, and checks each
    /// option's default with it when the plugin is probed.
    pub fn check(self, value: &str) -> Result<(), String> {
        match self {
            Self::INTEGER => value
                .parse::<i64>()
                .map(drop)
                .map_err(|_| format!("'{value}' is not an integer")),
            Self::PORT => value
                .parse::<u16>()
                .map(drop)
                .map_err(|_| format!("'{value}' is not a port number (0 to 65535)")),
            Self::PATH if value.is_empty() => Err("the path is empty".to_string()),
            Self::ENDPOINT => value
                .parse::<Endpoint>()
                .map(drop)
                .map_err(|e| e.to_string()),
            _ => Ok(()),
        }
    }
}
