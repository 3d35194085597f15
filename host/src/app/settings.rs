//! The `[host]` table: global options written in the application file, with the command line's
//! names, parsed by the command line's own parser so that they mean exactly the same. Relative
//! paths are relative to the file's directory; anything given on the command line wins.

use super::file::{AppFile, Problem, Setting, Value};
use crate::cli;
use clap::{ArgAction, ArgMatches};

/// Options that make sense only on a command line.
const COMMAND_LINE_ONLY: &[&str] = &["help", "version", "config", "check", "plugins-report"];

/// Options whose values are paths (relative ones are taken relative to the file). `logfile -`
/// (stdout) and `pidfile ''` (none) are not paths.
const PATHS: &[&str] = &["pidfile", "rundir", "chroot", "logfile", "plugin-dir"];

/// The `[host]` settings of `file` as if given on a command line, or a problem for each bad one.
pub fn host_matches(file: &AppFile) -> Result<Option<ArgMatches>, Vec<Problem>> {
    if file.host.is_empty() {
        return Ok(None);
    }
    let mut problems = Vec::new();
    let mut all = vec!["host".to_string()];
    for setting in &file.host {
        match arguments(file, setting) {
            Ok(arguments) => {
                // Parsed alone first, so that a bad value is reported where it is written.
                let alone = std::iter::once("host".to_string()).chain(arguments.iter().cloned());
                match cli::command().try_get_matches_from(alone) {
                    Ok(_) => all.extend(arguments),
                    Err(e) => problems.push(Problem::at(&setting.1.at, clap_message(&e))),
                }
            }
            Err(problem) => problems.push(problem),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    cli::command()
        .try_get_matches_from(all)
        .map(Some)
        .map_err(|e| {
            vec![Problem {
                at: None,
                message: format!("[host]: {}", clap_message(&e)),
            }]
        })
}

/// The first line of a clap error, without its `error: ` prefix.
fn clap_message(error: &clap::Error) -> String {
    let text = error.render().to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// The command-line arguments one setting stands for.
fn arguments(file: &AppFile, (key, value): &Setting) -> Result<Vec<String>, Problem> {
    let name = key.value.as_str();
    let command = cli::command();
    let arg = command
        .get_arguments()
        .find(|a| a.get_long() == Some(name) && !COMMAND_LINE_ONLY.contains(&name))
        .ok_or_else(|| {
            let known = command
                .get_arguments()
                .filter_map(|a| a.get_long())
                .filter(|long| !COMMAND_LINE_ONLY.contains(long));
            let hint = crate::suggest(name, known)
                .map(|s| format!(" (did you mean '{s}'?)"))
                .unwrap_or_default();
            Problem::at(&key.at, format!("[host] has no setting '{name}'{hint}"))
        })?;
    let option = format!("--{name}");
    let wrong = |expected: &str| {
        Problem::at(
            &value.at,
            format!(
                "[host] '{name}' takes {expected}, not {}",
                value.value.kind()
            ),
        )
    };
    let path = |text: String| match PATHS.contains(&name) && !matches!(text.as_str(), "" | "-") {
        true => file.resolve(&text).to_string_lossy().into_owned(),
        false => text,
    };
    match (arg.get_action(), &value.value) {
        (ArgAction::SetTrue, Value::Bool(true)) => Ok(vec![option]),
        (ArgAction::SetTrue, Value::Bool(false)) => Ok(Vec::new()),
        (ArgAction::SetTrue, _) => Err(wrong("true or false")),
        (ArgAction::Count, Value::Integer(n @ 0..=3)) => {
            Ok((0..*n).map(|_| option.clone()).collect())
        }
        (ArgAction::Count, _) => Err(wrong("a count from 0 to 3")),
        (ArgAction::Append, Value::List(items)) => items
            .iter()
            .map(|item| match item.value.as_argument() {
                Some(text) => Ok(format!("{option}={}", path(text))),
                None => Err(Problem::at(
                    &item.at,
                    format!("[host] '{name}' takes strings"),
                )),
            })
            .collect(),
        (_, scalar) => match scalar.as_argument() {
            Some(text) => Ok(vec![format!("{option}={}", path(text))]),
            None => Err(wrong("one value")),
        },
    }
}
