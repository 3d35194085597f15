//! A plugin's option specs as a `clap::Command`, so `host PLUGIN --help` and validation look
//! exactly like the host's own options.

use abi_stable::std_types::RSome;
use clap::{Arg, ArgAction, ArgMatches, Command};
use dropin_cache::Plugin;
use plugin_api::abi::{OptionSpec, OptionValue};

pub fn command(plugin: Plugin<'_>, specs: &[OptionSpec]) -> Command {
    let command = Command::new(plugin.tapname().to_string())
        .bin_name(format!("host {}", plugin.tapname()))
        .about(plugin.description().to_string())
        .args(specs.iter().map(arg));
    // A plugin may take -h for itself (twistd's portforward: -h is --host); --help remains.
    match specs.iter().any(|spec| spec.short == RSome(b'h')) {
        true => command.disable_help_flag(true).arg(
            Arg::new("help")
                .long("help")
                .action(ArgAction::Help)
                .help("Print help"),
        ),
        false => command,
    }
}

fn arg(spec: &OptionSpec) -> Arg {
    let placeholder = spec
        .kind
        .placeholder()
        .map_or_else(|| spec.long.to_uppercase(), str::to_string);
    let mut arg = Arg::new(spec.long.to_string())
        .long(spec.long.to_string())
        .value_name(placeholder)
        .required(spec.kind.is_required())
        .help(spec.help.to_string());
    if let RSome(letter) = spec.short {
        arg = arg.short(char::from(letter));
    }
    if spec.is_flag() {
        return arg.action(ArgAction::SetTrue);
    }
    let checked = spec.clone();
    arg = arg
        .action(if spec.repeatable {
            ArgAction::Append
        } else {
            ArgAction::Set
        })
        .value_parser(move |value: &str| checked.check(value).map(|()| value.to_string()));
    if let RSome(default) = &spec.default {
        arg = arg.default_value(default.to_string());
    }
    arg
}

/// The parsed values, in the form that crosses to the plugin: raw strings, already validated.
pub fn values(specs: &[OptionSpec], matches: &ArgMatches) -> Vec<OptionValue> {
    specs
        .iter()
        .filter_map(|spec| {
            let id = spec.long.as_str();
            let values: Vec<String> = if spec.is_flag() {
                matches
                    .get_flag(id)
                    .then(|| "true".to_string())
                    .into_iter()
                    .collect()
            } else {
                matches
                    .get_many::<String>(id)
                    .map(|v| v.cloned().collect())
                    .unwrap_or_default()
            };
            (!values.is_empty()).then(|| OptionValue {
                long: spec.long.clone(),
                values: values.into_iter().map(Into::into).collect(),
            })
        })
        .collect()
}
