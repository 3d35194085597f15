//! Typed access to the option values the host parsed and validated.

use crate::abi::OptionValue;
use crate::kit::endpoint::Endpoint;
use crate::kit::error::Result;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

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

    /// The value of `long` parsed as `T`: any `FromStr` type, such as `u16`,
    /// [`HostPort`](crate::HostPort) or [`ClientEndpoint`](crate::ClientEndpoint).
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

    /// The value of a [`DURATION`](crate::OptionKind::DURATION) option.
    pub fn duration(&self, long: &str) -> Result<Option<Duration>> {
        self.get(long)
            .map(|raw| parse_duration(raw).map_err(|e| format!("option --{long}: {e}").into()))
            .transpose()
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

    /// Where to listen, the twistd way: every `--listen` endpoint if any was given, else TCP on
    /// the `port` option and, if given, the `interface` option (all IPv4 interfaces without it).
    /// For `(listen, port, interface)` = `("listen", "port", "iface")`, `--port 8000 --iface
    /// 127.0.0.1` gives `tcp:8000:interface=127.0.0.1`.
    pub fn listen_endpoints(
        &self,
        listen: &str,
        port: &str,
        interface: &str,
    ) -> Result<Vec<Endpoint>> {
        let endpoints = self.endpoints(listen)?;
        if !endpoints.is_empty() {
            return Ok(endpoints);
        }
        let port = self
            .parse::<u16>(port)?
            .ok_or_else(|| format!("give --{port} or --{listen}"))?;
        Ok(vec![Endpoint::tcp(port, self.get(interface))])
    }
}

/// Parses a duration as the [`DURATION`](crate::OptionKind::DURATION) kind writes it: a number
/// with a unit, `ms`, `s`, `m`, `h` or `d` (`250ms`, `1.5s`, `5m`), or a plain number of seconds.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let invalid = || format!("'{text}' is not a duration (e.g. 250ms, 30s, 5m, 2h)");
    let digits = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let seconds_per_unit = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return Err(invalid()),
    };
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let duration = Duration::try_from_secs_f64(number * seconds_per_unit).map_err(|_| invalid())?;
    match duration <= LONGEST_DURATION {
        true => Ok(duration),
        false => Err(format!(
            "'{text}' is longer than {} days, the longest duration accepted",
            LONGEST_DURATION.as_secs() / 86400
        )),
    }
}

/// The longest duration an option may give (100 years): anything longer means "never", and a
/// deadline that far ahead cannot be computed (`Instant + Duration` overflows and panics).
pub const LONGEST_DURATION: Duration = Duration::from_secs(100 * 365 * 86400);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_or_seconds() {
        for (text, ms) in [
            ("250ms", 250),
            ("30s", 30_000),
            ("1.5s", 1500),
            ("5m", 300_000),
            ("2h", 7_200_000),
            ("1d", 86_400_000),
            ("90", 90_000),
            ("0s", 0),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
        for bad in ["", "s", "5 s", "-1s", "1x", "1e3", "1.2.3s", "ms5", "inf"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration("36500d"), Ok(LONGEST_DURATION));
        assert!(parse_duration("36501d")
            .unwrap_err()
            .contains("longest duration accepted"));
    }

    #[test]
    fn listen_endpoints_prefer_listen_then_port_and_interface() {
        use crate::abi::OptionValue;
        let value = |long: &str, v: &str| OptionValue {
            long: long.into(),
            values: vec![v.into()].into(),
        };
        let options = Options::new(vec![value("port", "8000"), value("iface", "127.0.0.1")]);
        assert_eq!(
            options.listen_endpoints("listen", "port", "iface").unwrap(),
            [Endpoint::tcp(8000, "127.0.0.1")]
        );
        let options = Options::new(vec![value("port", "8000"), value("listen", "unix:/x")]);
        assert_eq!(
            options.listen_endpoints("listen", "port", "iface").unwrap(),
            [Endpoint::unix("/x")]
        );
    }
}
