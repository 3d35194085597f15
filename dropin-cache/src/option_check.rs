//! Checks a plugin's option specs when it is probed, so a mistake in a plugin is reported
//! once, naming the option, instead of surfacing as a confusing parse error (or a clap
//! assertion) when a user runs it.

use abi_stable::std_types::RSome;
use plugin_api::abi::OptionSpec;
use std::collections::HashSet;

/// Long names the host itself gives every plugin command. `-h` is not reserved: it means
/// `--help` unless the plugin takes it for an option of its own, as twistd lets plugins do
/// (its portforward's `-h` is `--host`).
const RESERVED_LONG: &[&str] = &["help"];

pub fn check_options(options: &[OptionSpec]) -> Result<(), String> {
    let mut longs = HashSet::new();
    let mut shorts = HashSet::new();
    for spec in options {
        let long = spec.long.as_str();
        let valid_long = !long.is_empty()
            && !long.starts_with('-')
            && long
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_long {
            return Err(format!(
                "option '{long}' has an invalid name (use letters, digits, '-' and '_')"
            ));
        }
        if RESERVED_LONG.contains(&long) || !longs.insert(long) {
            return Err(format!(
                "option --{long} is defined twice or clashes with the host's --{long}"
            ));
        }
        if let RSome(letter) = spec.short {
            if !letter.is_ascii_alphanumeric() {
                return Err(format!(
                    "option --{long} has an invalid short name (use one ASCII letter or digit)"
                ));
            }
            if !shorts.insert(letter) {
                return Err(format!(
                    "option --{long}: short name -{} is used twice",
                    char::from(letter)
                ));
            }
        }
        if spec.is_flag() && spec.kind.is_required() {
            return Err(format!("option --{long} is a flag and cannot be required"));
        }
        if let RSome(default) = &spec.default {
            if spec.is_flag() {
                return Err(format!(
                    "option --{long} is a flag and cannot have a default"
                ));
            }
            if spec.kind.is_required() {
                return Err(format!(
                    "option --{long} is required and cannot have a default"
                ));
            }
            spec.kind
                .check(default)
                .map_err(|why| format!("option --{long} has an invalid default: {why}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_api::{OptionKind, OptionSpec};

    fn error(options: &[OptionSpec]) -> String {
        check_options(options).unwrap_err()
    }

    #[test]
    fn accepts_a_valid_list() {
        let options = [
            OptionSpec::param("port", OptionKind::PORT, "")
                .short('p')
                .default("10000"),
            OptionSpec::param("listen", OptionKind::ENDPOINT, "").repeatable(),
            OptionSpec::flag("write-anonymous", ""),
            OptionSpec::param("host", OptionKind::STRING, "").short('h'),
        ];
        assert_eq!(check_options(&options), Ok(()));
    }

    #[test]
    fn names_the_option_at_fault() {
        let port = || OptionSpec::param("port", OptionKind::PORT, "");
        assert!(error(&[port(), port()]).contains("--port is defined twice"));
        assert!(error(&[OptionSpec::flag("help", "")]).contains("--help"));
        assert!(
            error(&[port().short('x'), OptionSpec::flag("x", "").short('x')])
                .contains("-x is used twice")
        );
        assert!(error(&[port().short('-')]).contains("invalid short name"));
        assert!(error(&[port().default("70000")]).contains("--port has an invalid default"));
        assert!(error(&[OptionSpec::flag("on", "").default("yes")]).contains("--on is a flag"));
        assert!(error(&[OptionSpec::flag("a b", "")]).contains("invalid name"));
        assert!(error(&[port().required().default("1")]).contains("--port is required"));
        assert!(error(&[OptionSpec::flag("on", "").required()]).contains("cannot be required"));
    }
}
