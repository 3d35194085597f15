//! Typed access to the option values the host parsed and validated.

use crate::abi::OptionValue;
use crate::kit::endpoint::Endpoint;
use crate::kit::error::Result;
use std::path::PathBuf;
use std::str::FromStr;

/// The option values given to `make_service`: the user's values, or the defaults.
///
/// The host has already checked each value against its [`OptionKind`](crate::OptionKind), so
/// the getters fail only when the plugin asks for an option with the wrong kind or name.
#[derive(Debug, Clone, Default)]
pub struct Options {
    values: Vec<OptionValue>,
}

impl Options {
    /// Wraps the values the host passed across the boundary.
    pub fn new(values: Vec<OptionValue>) -> Self {
        Self { values }
    }

    /// Every value given for `long`, in command-line order (empty if absent and without default).
    pub fn values(&self, long: &str) -> impl Iterator<Item = &str> + '_ {
        self.values
            .iter()
            .filter(|v| v.long.as_str() == long)
            .flat_map(|v| v.values.iter().map(|s| s.as_str()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    /// The last value given for `long`, if any.
    pub fn get(&self, long: &str) -> Option<&str> {
        self.values(long).last()
    }

    /// Whether the flag `long` was given.
    pub fn flag(&self, long: &str) -> bool {
        self.get(long) == Some("true")
    }

    /// The value of `long` parsed as `T`.
    pub fn parse<T>(&self, long: &str) -> Result<Option<T>>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.get(long)
            .map(|raw| {
                raw.parse::<T>()
                    .map_err(|e| format!("option --{long}: invalid value '{raw}': {e}").into())
            })
            .transpose()
    }

    /// The value of `long` as a path.
    pub fn path(&self, long: &str) -> Option<PathBuf> {
        self.get(long).map(PathBuf::from)
    }

    /// The value of `long` as an endpoint; an error if it has none.
    pub fn endpoint(&self, long: &str) -> Result<Endpoint> {
        let raw = self
            .get(long)
            .ok_or_else(|| format!("option --{long} has no value"))?;
        Ok(raw.parse()?)
    }

    /// Every value of `long` as endpoints.
    pub fn endpoints(&self, long: &str) -> Result<Vec<Endpoint>> {
        self.values(long)
            .map(|raw| raw.parse().map_err(Into::into))
            .collect()
    }
}
