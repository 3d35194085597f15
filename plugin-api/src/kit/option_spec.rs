//! Builders for [`OptionSpec`], so an options list reads like twistd's `optParameters`, and the
//! checks the host runs on every value before `make_service` sees it.

use crate::abi::{OptionKind, OptionSpec};
use crate::kit::endpoint::{ClientEndpoint, Endpoint, HostPort};
use crate::kit::options::parse_duration;
use crate::kit::serve::{limit, LIMIT_OPTIONS};
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

    /// The standard `--max-connections` option, read by
    /// [`ConnectionLimits::from_options`](crate::ConnectionLimits::from_options): at most that
    /// many connections at once (0: no limit); more wait in the listen backlog.
    pub fn max_connections(default: usize) -> Self {
        Self::param(
            "max-connections",
            OptionKind::INTEGER,
            "Connections served at once (0: no limit); more wait in the listen backlog.",
        )
        .default(&default.to_string())
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

    /// Makes the option one the user must give: without it, the command line is a usage error
    /// (exit 2), and `--help` says so. Needs a host with plugin-api 1.2 or later; an older host
    /// runs the plugin only to have the kit refuse it with a line naming this option.
    pub fn required(mut self) -> Self {
        self.kind = OptionKind(self.kind.0 | OptionKind::REQUIRED);
        self
    }

    /// Whether the option takes no value.
    pub fn is_flag(&self) -> bool {
        self.kind.base() == OptionKind::FLAG
    }

    /// Checks that `value` is valid for this option, saying why not in a few words: valid for
    /// its [kind](OptionKind::check) and, for the connection limits that
    /// [`ConnectionLimits::from_options`](crate::ConnectionLimits::from_options) reads
    /// (`--max-connections`, `--max-connections-per-ip`), not negative.
    ///
    /// The host validates every value the user gives with this before `make_service` sees it.
    pub fn check(&self, value: &str) -> Result<(), String> {
        self.kind.check(value)?;
        match LIMIT_OPTIONS.contains(&self.long.as_str()) {
            true => limit(value).map(drop),
            false => Ok(()),
        }
    }
}

impl OptionKind {
    /// Checks that `value` is valid for this kind, saying why not in a few words.
    ///
    /// The host validates every value with [`OptionSpec::check`], which calls this, before
    /// `make_service` sees it, and checks each option's default with this when the plugin is
    /// probed.
    pub fn check(self, value: &str) -> Result<(), String> {
        match self.base() {
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
            Self::HOST_PORT => value.parse::<HostPort>().map(drop),
            Self::DURATION => parse_duration(value).map(drop),
            Self::CLIENT_ENDPOINT => value
                .parse::<ClientEndpoint>()
                .map(drop)
                .map_err(|e| e.to_string()),
            _ => Ok(()),
        }
    }

    /// The placeholder for the value in `--help`, e.g. `HOST:PORT`; `None` to use the
    /// option's name.
    pub fn placeholder(self) -> Option<&'static str> {
        match self.base() {
            Self::INTEGER => Some("N"),
            Self::HOST_PORT => Some("HOST:PORT"),
            Self::DURATION => Some("DURATION"),
            Self::ENDPOINT | Self::CLIENT_ENDPOINT => Some("ENDPOINT"),
            _ => None,
        }
    }
}
