//! Reading an application file: TOML in, a list of service entries and `[host]` settings out,
//! each value with where it was written, so every problem can be reported as `FILE:LINE:COLUMN`.
//!
//! ```toml
//! [host]
//! shutdown-timeout = 30
//!
//! [[service]]
//! name = "ecstasy"          # optional, unique; the tapname by default
//! plugin = "fastpoetry"
//! on-failure = "stop-host"  # or "log"
//! options = { port = 10001, poem = "poems/ecstasy.txt" }
//! ```
//!
//! This module knows only the file's shape; what the options mean is the plugins' option specs'
//! business (see `check`).

use plugin_api::files;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// The largest application file read: a thousand services fit in far less.
const MAX_FILE_BYTES: u64 = files::MIB;

/// A value from the file, with the byte range where it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub at: Range<usize>,
}

/// A TOML value an option or setting can take.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    List(Vec<Located<Value>>),
}

impl Value {
    /// The word for the value's type in messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Text(_) => "a string",
            Self::Integer(_) => "an integer",
            Self::Float(_) => "a number",
            Self::Bool(_) => "true or false",
            Self::List(_) => "a list",
        }
    }

    /// The value as the command line would write it; `None` for a list or a boolean.
    pub fn as_argument(&self) -> Option<String> {
        match self {
            Self::Text(text) => Some(text.clone()),
            Self::Integer(n) => Some(n.to_string()),
            Self::Float(x) => Some(x.to_string()),
            Self::Bool(_) | Self::List(_) => None,
        }
    }
}

/// One `key = value` of a table.
pub type Setting = (Located<String>, Located<Value>);

/// What a service does to the others when it fails or ends by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// The host shuts down (the default).
    StopHost,
    /// The failure is logged and the other services go on.
    Log,
}

/// One `[[service]]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Where the table is, for problems about the whole entry.
    pub at: Range<usize>,
    pub name: Option<Located<String>>,
    pub plugin: Option<Located<String>>,
    pub on_failure: OnFailure,
    pub options: Vec<Setting>,
}

/// Something wrong with the file, at a place in it (or about the whole file).
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub at: Option<Range<usize>>,
    pub message: String,
}

impl Problem {
    pub fn at(at: &Range<usize>, message: impl Into<String>) -> Self {
        Self {
            at: Some(at.clone()),
            message: message.into(),
        }
    }
}

/// A parsed application file.
#[derive(Debug, Clone)]
pub struct AppFile {
    /// The path as given, for messages.
    pub path: PathBuf,
    /// The file's directory: what relative paths in it are relative to.
    pub dir: PathBuf,
    text: String,
    pub host: Vec<Setting>,
    pub services: Vec<Entry>,
}

impl AppFile {
    /// Reads and parses `path`. `Err` is a one-line reason the file could not be read at all;
    /// otherwise every problem with its shape comes back beside what could be understood.
    pub fn read(path: &Path) -> Result<(Self, Vec<Problem>), String> {
        let bytes = files::read_regular(path, MAX_FILE_BYTES)
            .map_err(|e| format!("cannot read the application file {}: {e}", path.display()))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            format!(
                "{}: the application file is not UTF-8 (byte {})",
                path.display(),
                e.utf8_error().valid_up_to()
            )
        })?;
        let dir = std::path::absolute(path)
            .map_err(|e| format!("cannot resolve {}: {e}", path.display()))?
            .parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        Ok(Self::parse(path, dir, text))
    }

    fn parse(path: &Path, dir: PathBuf, text: String) -> (Self, Vec<Problem>) {
        let mut problems = Vec::new();
        let (host, services) = {
            let (document, errors) = DeTable::parse_recoverable(&text);
            for error in &errors {
                problems.push(Problem {
                    at: error.span(),
                    message: error.message().trim().replace('\n', "; "),
                });
            }
            // What the parser recovered from a syntax error is a guess: checking it would
            // report problems the writer never made.
            match errors.is_empty() {
                true => shape(document.get_ref(), &mut problems),
                false => (Vec::new(), Vec::new()),
            }
        };
        let file = Self {
            path: path.to_path_buf(),
            dir,
            text,
            host,
            services,
        };
        (file, problems)
    }

    /// `FILE:LINE:COLUMN` for a byte offset, lines and columns counted from 1 (columns in
    /// characters), as compilers write it.
    pub fn locate(&self, at: &Option<Range<usize>>) -> String {
        let Some(at) = at else {
            return self.path.display().to_string();
        };
        let before = &self.text[..at.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before
            .rsplit('\n')
            .next()
            .map_or(0, |tail| tail.chars().count())
            + 1;
        format!("{}:{line}:{column}", self.path.display())
    }

    /// `problem` as one line: `FILE:LINE:COLUMN: message`.
    pub fn render(&self, problem: &Problem) -> String {
        format!("{}: {}", self.locate(&problem.at), problem.message)
    }

    /// `value` as a path, relative ones taken relative to the file's directory.
    pub fn resolve(&self, value: &str) -> PathBuf {
        self.dir.join(value)
    }
}

fn located<T>(
    spanned: &Spanned<T>,
    value: impl FnOnce(&T) -> Option<String>,
) -> Option<Located<String>> {
    value(spanned.get_ref()).map(|value| Located {
        value,
        at: spanned.span(),
    })
}

/// The `[host]` settings and `[[service]]` entries of a document, with a problem for anything
/// else.
fn shape(document: &DeTable<'_>, problems: &mut Vec<Problem>) -> (Vec<Setting>, Vec<Entry>) {
    let mut host = Vec::new();
    let mut services = Vec::new();
    for (key, item) in document.iter() {
        match (key.get_ref().as_ref(), item.get_ref()) {
            ("host", DeValue::Table(table)) => host = settings(table, "[host]", problems),
            ("service", DeValue::Array(array)) => {
                for element in array.iter() {
                    match element.get_ref() {
                        DeValue::Table(table) => {
                            services.push(entry(table, element.span(), problems))
                        }
                        _ => problems.push(Problem::at(
                            &element.span(),
                            "each service is a table: write [[service]]",
                        )),
                    }
                }
            }
            ("host", _) => problems.push(Problem::at(
                &item.span(),
                "host must be a table: write [host]",
            )),
            ("service", _) => problems.push(Problem::at(
                &item.span(),
                "service must be a list of tables: write [[service]] above each one",
            )),
            (other, _) => problems.push(Problem::at(
                &key.span(),
                format!("unknown key '{other}' (expected [host] or [[service]])"),
            )),
        }
    }
    (host, services)
}

fn entry(table: &DeTable<'_>, at: Range<usize>, problems: &mut Vec<Problem>) -> Entry {
    let mut entry = Entry {
        at,
        name: None,
        plugin: None,
        on_failure: OnFailure::StopHost,
        options: Vec::new(),
    };
    let text = |value: &DeValue<'_>| value.as_str().map(str::to_string);
    for (key, item) in table.iter() {
        let name = key.get_ref().as_ref();
        match name {
            "name" | "plugin" => {
                let Some(value) = located(item, |v| text(v)) else {
                    problems.push(Problem::at(&item.span(), format!("{name} must be a string")));
                    continue;
                };
                match name {
                    "name" => entry.name = Some(value),
                    _ => entry.plugin = Some(value),
                }
            }
            "on-failure" => match item.get_ref().as_str() {
                Some("stop-host") => entry.on_failure = OnFailure::StopHost,
                Some("log") => entry.on_failure = OnFailure::Log,
                _ => problems.push(Problem::at(
                    &item.span(),
                    "on-failure must be \"stop-host\" or \"log\"",
                )),
            },
            "options" => match item.get_ref() {
                DeValue::Table(options) => {
                    entry.options = settings(options, "options", problems)
                }
                _ => problems.push(Problem::at(
                    &item.span(),
                    "options must be a table, e.g. options = { port = 10000 }",
                )),
            },
            other => problems.push(Problem::at(
                &key.span(),
                format!(
                    "unknown key '{other}' in a service (expected name, plugin, on-failure or options; a plugin's options go in its options table)"
                ),
            )),
        }
    }
    entry
}

/// The `key = value` pairs of a table whose values are options or settings.
fn settings(table: &DeTable<'_>, what: &str, problems: &mut Vec<Problem>) -> Vec<Setting> {
    let mut settings = Vec::new();
    for (key, item) in table.iter() {
        match value(item) {
            Ok(value) => settings.push((
                Located {
                    value: key.get_ref().to_string(),
                    at: key.span(),
                },
                value,
            )),
            Err(problem) => problems.push(Problem {
                message: format!("{what}: '{}': {}", key.get_ref(), problem.message),
                ..problem
            }),
        }
    }
    settings
}

fn value(item: &Spanned<DeValue<'_>>) -> Result<Located<Value>, Problem> {
    let at = item.span();
    let value = match item.get_ref() {
        DeValue::String(text) => Value::Text(text.to_string()),
        DeValue::Integer(integer) => {
            let digits = integer.as_str().replace('_', "");
            Value::Integer(
                i64::from_str_radix(&digits, integer.radix())
                    .map_err(|_| Problem::at(&at, "the integer does not fit in 64 bits"))?,
            )
        }
        DeValue::Float(float) => Value::Float(
            float
                .as_str()
                .replace('_', "")
                .parse()
                .map_err(|_| Problem::at(&at, "not a number"))?,
        ),
        DeValue::Boolean(flag) => Value::Bool(*flag),
        DeValue::Array(array) => Value::List(
            array
                .iter()
                .map(|element| match element.get_ref() {
                    DeValue::Array(_) | DeValue::Table(_) => Err(Problem::at(
                        &element.span(),
                        "a list may hold only strings, numbers and booleans",
                    )),
                    _ => value(element),
                })
                .collect::<Result<_, _>>()?,
        ),
        DeValue::Datetime(_) => {
            return Err(Problem::at(&at, "a date is not a value any option takes"))
        }
        DeValue::Table(_) => {
            return Err(Problem::at(&at, "a table is not a value any option takes"))
        }
    };
    Ok(Located { value, at })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (AppFile, Vec<String>) {
        let (file, problems) =
            AppFile::parse(Path::new("app.toml"), PathBuf::from("/srv"), text.into());
        let rendered = problems.iter().map(|p| file.render(p)).collect();
        (file, rendered)
    }

    #[test]
    fn reads_services_in_order_with_their_options() {
        let (file, problems) = parse(
            "[host]\nshutdown-timeout = 30\n\n[[service]]\nname = \"a\"\nplugin = \"fastpoetry\"\noptions = { port = 10001, listen = [\"tcp:1\", \"unix:x\"] }\n\n[[service]]\nplugin = \"ftp\"\non-failure = \"log\"\n[service.options]\nwrite-anonymous = true\n",
        );
        assert_eq!(problems, Vec::<String>::new());
        assert_eq!(file.host.len(), 1);
        assert_eq!(file.services.len(), 2);
        let first = &file.services[0];
        assert_eq!(first.name.as_ref().unwrap().value, "a");
        assert_eq!(first.options[0].1.value, Value::Integer(10001));
        assert!(matches!(&first.options[1].1.value, Value::List(items) if items.len() == 2));
        let second = &file.services[1];
        assert_eq!(second.plugin.as_ref().unwrap().value, "ftp");
        assert_eq!(second.on_failure, OnFailure::Log);
        assert_eq!(second.options[0].1.value, Value::Bool(true));
    }

    #[test]
    fn every_problem_is_placed_at_its_line_and_column() {
        let (_, problems) = parse(
            "[[service]]\nplugin = 1\ncolour = \"red\"\non-failure = \"panic\"\noptions = { when = 1979-05-27 }\n[servce]\n",
        );
        assert_eq!(
            problems,
            [
                "app.toml:2:10: plugin must be a string",
                "app.toml:3:1: unknown key 'colour' in a service (expected name, plugin, on-failure or options; a plugin's options go in its options table)",
                "app.toml:4:14: on-failure must be \"stop-host\" or \"log\"",
                "app.toml:5:20: options: 'when': a date is not a value any option takes",
                "app.toml:6:2: unknown key 'servce' (expected [host] or [[service]])",
            ]
        );
    }

    #[test]
    fn syntax_errors_are_placed_too() {
        let (_, problems) = parse("[[service]]\nplugin = \"a\"\nname = \n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("app.toml:3:"), "{problems:?}");
    }
}
