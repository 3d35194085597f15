//! Checking an application file against the plugins found, without loading any: every entry's
//! plugin, name and options are judged by the option specs in the plugin's cache record, the
//! same specs that build its command line, so a value is valid in the file exactly when it is
//! valid after `host PLUGIN`. Every problem is collected, none stops the check.

use super::file::{AppFile, Entry, Located, OnFailure, Problem, Value};
use crate::suggest;
use dropin_cache::{Discovery, FileStat, Plugin, PluginRecord};
use plugin_api::abi::{OptionKind, OptionSpec, OptionValue};
use plugin_api::{ClientEndpoint, Endpoint};
use std::collections::HashMap;
use std::ffi::OsString;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A service to run: its name, plugin and option values, and where it was declared.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    pub name: String,
    /// The plugin's library.
    pub path: PathBuf,
    /// What the library offers, as the cache (or, once loaded, the library itself) says.
    pub record: PluginRecord,
    pub values: Vec<OptionValue>,
    pub on_failure: OnFailure,
    pub origin: Origin,
    /// The library file as it was when the service was declared. A new build installed over
    /// it (renamed into place: a new inode) makes the service a changed one, which SIGHUP
    /// starts again from the new file; the old one stays mapped, since a loaded library cannot
    /// be unloaded.
    pub library: Option<FileStat>,
}

/// Where a service was declared, which is also how its options are read again if its library
/// turns out to describe itself differently from its cache record.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// An entry of the application file in `dir`.
    File { entry: Entry, dir: PathBuf },
    /// The plugin named on the command line, with its arguments.
    CommandLine(Vec<OsString>),
}

impl ServiceSpec {
    pub fn new(
        name: String,
        plugin: Plugin<'_>,
        values: Vec<OptionValue>,
        on_failure: OnFailure,
        origin: Origin,
    ) -> Self {
        Self {
            name,
            path: plugin.path.to_path_buf(),
            record: plugin.record.clone(),
            values,
            on_failure,
            origin,
            library: FileStat::of(plugin.path).ok(),
        }
    }

    pub fn plugin(&self) -> Plugin<'_> {
        Plugin {
            path: &self.path,
            record: &self.record,
        }
    }

    /// Whether `other` runs the same library with the same options, so that a service
    /// running as `self` can go on running as `other` (only its failure policy may differ).
    pub fn runs_as(&self, other: &ServiceSpec) -> bool {
        self.name == other.name
            && self.path == other.path
            && self.record == other.record
            && self.library == other.library
            && self.values == other.values
    }
}

/// Longest service name: names go into every log line about the service.
const MAX_NAME: usize = 64;

/// Checks every entry of `file`, then the names and sockets of all the services together,
/// `command_line` (the plugin named after the global options, already parsed) included.
pub fn check(
    file: &AppFile,
    discovery: &Discovery,
    command_line: Option<ServiceSpec>,
) -> (Vec<ServiceSpec>, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut services = Vec::new();
    // Where each service and its options were written, for problems found across services.
    let mut places: Vec<Place> = Vec::new();
    for entry in &file.services {
        let Some(plugin_name) = &entry.plugin else {
            problems.push(Problem::at(
                &entry.at,
                "this service names no plugin: add plugin = \"TAPNAME\"",
            ));
            continue;
        };
        let Some(plugin) = discovery.find(&plugin_name.value) else {
            let hint = suggest(&plugin_name.value, discovery.plugins().map(|p| p.tapname()))
                .map(|name| format!(" (did you mean '{name}'?)"))
                .unwrap_or_default();
            problems.push(Problem::at(
                &plugin_name.at,
                format!("no plugin named '{}'{hint}", plugin_name.value),
            ));
            continue;
        };
        let name = match &entry.name {
            Some(name) => match valid_name(&name.value) {
                Ok(()) => name.value.clone(),
                Err(why) => {
                    problems.push(Problem::at(&name.at, why));
                    continue;
                }
            },
            None => plugin.tapname().to_string(),
        };
        let specs = match plugin.options() {
            Ok(specs) => specs,
            Err(why) => {
                problems.push(Problem::at(&plugin_name.at, why));
                continue;
            }
        };
        // Checked even when some of its options are wrong, so that a clash with another
        // service is reported in the same run.
        let (values, mut found) = file_values(&file.dir, entry, &specs, plugin.tapname());
        problems.append(&mut found);
        places.push((
            Some(entry.name.as_ref().unwrap_or(plugin_name).at.clone()),
            entry
                .options
                .iter()
                .map(|(key, value)| (key.value.clone(), value.at.clone()))
                .collect(),
        ));
        services.push(ServiceSpec::new(
            name,
            plugin,
            values,
            entry.on_failure,
            Origin::File {
                entry: entry.clone(),
                dir: file.dir.clone(),
            },
        ));
    }
    if let Some(service) = command_line {
        places.push((None, HashMap::new()));
        services.push(service);
    }
    problems.extend(duplicate_names(file, &services, &places));
    problems.extend(shared_sockets(&services, &places));
    problems.extend(admin_clash(file, &services));
    (services, problems)
}

/// `[host] admin` against the services' sockets: the host binds the admin endpoint too, after
/// them. (A value that is not an endpoint is reported where `[host]` is read.)
fn admin_clash(file: &AppFile, services: &[ServiceSpec]) -> Option<Problem> {
    let (_, value) = file.host.iter().find(|(key, _)| key.value == "admin")?;
    let Value::Text(text) = &value.value else {
        return None;
    };
    let admin = Socket::of(text.parse().ok()?)?;
    let service = services.iter().find(|s| {
        sockets(s)
            .iter()
            .any(|(socket, _)| socket.clashes_with(&admin))
    })?;
    Some(Problem::at(
        &value.at,
        format!(
            "the admin endpoint would listen on {}, as service '{}' does",
            admin.describe(),
            service.name
        ),
    ))
}

/// Where a service was written (`None` for the command line's), and where each of its options.
type Place = (Option<Range<usize>>, HashMap<String, Range<usize>>);

/// A problem about the service at `place`, or about `option` of it.
fn problem_at(place: &Place, option: Option<&str>, message: String) -> Problem {
    match place {
        (None, _) => Problem {
            at: None,
            message: format!("the service on the command line: {message}"),
        },
        (Some(entry), options) => Problem {
            at: Some(option.and_then(|o| options.get(o)).unwrap_or(entry).clone()),
            message,
        },
    }
}

fn valid_name(name: &str) -> Result<(), String> {
    // `-` stands for the host itself in the log: no service may look like it.
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    match valid {
        true => Ok(()),
        false => Err(format!(
            "invalid service name '{name}': use up to {MAX_NAME} letters, digits, '-', '_' and '.', not starting with '-'"
        )),
    }
}

/// The option values of one entry, checked against the plugin's specs as the command line
/// checks them: names, kinds, flags, repetition, required options, then defaults. Relative
/// paths (of path options and inside endpoints) are made relative to the file's directory.
/// The values are those that are valid, beside a problem for each that is not.
pub fn file_values(
    dir: &Path,
    entry: &Entry,
    specs: &[OptionSpec],
    tapname: &str,
) -> (Vec<OptionValue>, Vec<Problem>) {
    let mut problems = Vec::new();
    // `None` for a value given but invalid: its problem is reported, and it is not also missing.
    let mut given: HashMap<&str, Option<Vec<String>>> = HashMap::new();
    for (key, value) in &entry.options {
        let Some(spec) = specs.iter().find(|s| s.long.as_str() == key.value) else {
            let hint = suggest(&key.value, specs.iter().map(|s| s.long.as_str()))
                .map(|name| format!(" (did you mean '{name}'?)"))
                .unwrap_or_default();
            problems.push(Problem::at(
                &key.at,
                format!("plugin '{tapname}' has no option '{}'{hint}", key.value),
            ));
            continue;
        };
        let arguments = match arguments(dir, spec, value) {
            Ok(arguments) => Some(arguments),
            Err(problem) => {
                problems.push(problem);
                None
            }
        };
        given.insert(spec.long.as_str(), arguments);
    }
    let mut values = Vec::new();
    for spec in specs {
        let arguments = match (given.remove(spec.long.as_str()), &spec.default) {
            (Some(Some(arguments)), _) => arguments,
            (Some(None), _) => continue,
            (None, abi_stable::std_types::RSome(default)) => vec![default.to_string()],
            (None, _) if spec.kind.is_required() => {
                problems.push(Problem::at(
                    &entry.at,
                    format!(
                        "plugin '{tapname}' needs option '{}', which has no default",
                        spec.long
                    ),
                ));
                continue;
            }
            (None, _) => continue,
        };
        if !arguments.is_empty() {
            values.push(OptionValue {
                long: spec.long.clone(),
                values: arguments.into_iter().map(Into::into).collect(),
            });
        }
    }
    (values, problems)
}

/// The command-line arguments one file value stands for.
fn arguments(
    dir: &Path,
    spec: &OptionSpec,
    value: &Located<Value>,
) -> Result<Vec<String>, Problem> {
    let long = spec.long.as_str();
    if spec.is_flag() {
        return match value.value {
            Value::Bool(true) => Ok(vec!["true".to_string()]),
            Value::Bool(false) => Ok(Vec::new()),
            _ => Err(Problem::at(
                &value.at,
                format!("option '{long}' is a flag: write {long} = true or false"),
            )),
        };
    }
    let items: Vec<&Located<Value>> = match &value.value {
        Value::List(items) if spec.repeatable => items.iter().collect(),
        Value::List(_) => {
            return Err(Problem::at(
                &value.at,
                format!("option '{long}' takes one value, not a list"),
            ))
        }
        _ => vec![value],
    };
    items
        .into_iter()
        .map(|item| {
            let text = item.value.as_argument().ok_or_else(|| {
                Problem::at(
                    &item.at,
                    format!(
                        "option '{long}' takes a {}, not {}",
                        spec.kind.name(),
                        item.value.kind()
                    ),
                )
            })?;
            spec.check(&text).map_err(|why| {
                Problem::at(
                    &item.at,
                    format!("invalid value for option '{long}': {why}"),
                )
            })?;
            Ok(relative_to(dir, spec, text))
        })
        .collect()
}

/// A path written in the file means a path next to the file, wherever host was started.
fn relative_to(dir: &Path, spec: &OptionSpec, text: String) -> String {
    match spec.kind.base() {
        OptionKind::PATH => dir.join(&text).to_string_lossy().into_owned(),
        OptionKind::CLIENT_ENDPOINT => match text.parse::<ClientEndpoint>() {
            Ok(endpoint) => endpoint.relative_to(dir).to_string(),
            Err(_) => text,
        },
        _ => match listen_endpoint(spec, &text, None) {
            Some(endpoint) if endpoint.relative_to(dir) != endpoint => {
                endpoint.relative_to(dir).to_string()
            }
            _ => text,
        },
    }
}

/// The option a service listens on when it is given no endpoint option, by the convention of
/// the kit's `Options::listen_endpoints`.
const LISTEN_PORT: &str = "port";

/// The options that name the interface [`LISTEN_PORT`] listens on, by the kit's convention.
const LISTEN_INTERFACES: [&str; 2] = ["iface", "interface"];

/// The endpoint `text` tells a service to listen on, if `spec` is one of its listen options:
/// an endpoint option, or the one named [`LISTEN_PORT`], which holds a port number or (in
/// portforward, after twistd's strports) an endpoint. Other port options, such as
/// portforward's `dest_port`, say where a service connects, not where it listens.
fn listen_endpoint(spec: &OptionSpec, text: &str, interface: Option<&str>) -> Option<Endpoint> {
    match spec.kind.base() {
        OptionKind::ENDPOINT => text.parse().ok(),
        _ if spec.long.as_str() == LISTEN_PORT => match text.parse::<u16>() {
            Ok(port) => Some(Endpoint::tcp(port, interface)),
            Err(_) => text.parse().ok(),
        },
        _ => None,
    }
}

fn duplicate_names(file: &AppFile, services: &[ServiceSpec], places: &[Place]) -> Vec<Problem> {
    let mut first: HashMap<&str, usize> = HashMap::new();
    let mut problems = Vec::new();
    for (index, service) in services.iter().enumerate() {
        let Some(&earlier) = first.get(service.name.as_str()) else {
            first.insert(&service.name, index);
            continue;
        };
        let there = match &places[earlier].0 {
            Some(at) => file.locate(&Some(at.clone())),
            None => "the command line".to_string(),
        };
        problems.push(problem_at(
            &places[index],
            None,
            format!(
                "the service name '{}' is taken by the service at {there}; give each service its own name = \"…\"",
                service.name
            ),
        ));
    }
    problems
}

/// A socket a service will listen on, as far as its options tell.
#[derive(Debug, PartialEq, Eq)]
enum Socket {
    /// A TCP port; `None` for an interface the options do not name (all of them, or the
    /// plugin's own default).
    Tcp(u16, Option<String>),
    Unix(PathBuf),
    Systemd(usize),
}

impl Socket {
    /// The socket `endpoint` listens on; `None` for TCP port 0, which never clashes.
    fn of(endpoint: Endpoint) -> Option<Self> {
        match endpoint {
            Endpoint::Tcp {
                port, interface, ..
            }
            | Endpoint::Ssl {
                port, interface, ..
            } => (port != 0).then_some(Self::Tcp(port, interface)),
            Endpoint::Unix { path, .. } => Some(Self::Unix(socket_file(path))),
            Endpoint::Systemd { index, .. } => Some(Self::Systemd(index)),
            // A kind of endpoint newer than this check: not judged.
            _ => None,
        }
    }

    fn clashes_with(&self, other: &Socket) -> bool {
        match (self, other) {
            (Self::Tcp(a, ia), Self::Tcp(b, ib)) => {
                // Two addresses on one port are fine; a name (`localhost`) or every address
                // may be any of them.
                let address = |i: &Option<String>| {
                    i.as_deref()
                        .and_then(|i| i.trim_matches(['[', ']']).parse::<IpAddr>().ok())
                        .filter(|address| !address.is_unspecified())
                };
                a == b
                    && match (address(ia), address(ib)) {
                        (Some(ia), Some(ib)) => ia == ib,
                        _ => true,
                    }
            }
            (a, b) => a == b,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Tcp(port, _) => format!("TCP port {port}"),
            Self::Unix(path) => format!("Unix socket {}", path.display()),
            Self::Systemd(index) => format!("systemd socket {index}"),
        }
    }
}

/// Where a Unix socket's file will be, however it is spelt (`./x.sock`, `sub/../x.sock`, a
/// symlinked directory): its directory resolved as the system resolves it, when it exists.
fn socket_file(path: PathBuf) -> PathBuf {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return path;
    };
    let dir = match dir.as_os_str().is_empty() {
        true => Path::new("."),
        false => dir,
    };
    std::fs::canonicalize(dir).map_or(path.clone(), |dir| dir.join(name))
}

/// The sockets a service will listen on, with the option each comes from: those of every
/// endpoint option given, or, if none is, of the port option (see [`listen_endpoint`]).
fn sockets(service: &ServiceSpec) -> Vec<(Socket, String)> {
    let Ok(specs) = service.plugin().options() else {
        return Vec::new();
    };
    let interface = service
        .values
        .iter()
        .find(|value| LISTEN_INTERFACES.contains(&value.long.as_str()))
        .and_then(|value| value.values.iter().next())
        .map(|interface| interface.as_str());
    // Each with whether it comes from an endpoint option.
    let mut found = Vec::new();
    for value in &service.values {
        let Some(spec) = specs.iter().find(|s| s.long == value.long) else {
            continue;
        };
        for text in value.values.iter() {
            if let Some(endpoint) = listen_endpoint(spec, text, interface) {
                let endpoint_option = spec.kind.base() == OptionKind::ENDPOINT;
                found.push((endpoint_option, endpoint, value.long.to_string()));
            }
        }
    }
    let endpoint_options = found.iter().any(|(endpoint_option, ..)| *endpoint_option);
    found
        .into_iter()
        .filter(|(endpoint_option, ..)| *endpoint_option == endpoint_options)
        .filter_map(|(_, endpoint, option)| Some((Socket::of(endpoint)?, option)))
        .collect()
}

fn shared_sockets(services: &[ServiceSpec], places: &[Place]) -> Vec<Problem> {
    let all: Vec<Vec<(Socket, String)>> = services.iter().map(sockets).collect();
    let mut problems = Vec::new();
    for (index, mine) in all.iter().enumerate() {
        for (at, (socket, option)) in mine.iter().enumerate() {
            if mine[..at].iter().any(|(s, _)| s.clashes_with(socket)) {
                problems.push(problem_at(
                    &places[index],
                    Some(option),
                    format!(
                        "service '{}' would listen on {} twice",
                        services[index].name,
                        socket.describe()
                    ),
                ));
                continue;
            }
            let earlier = all[..index].iter().enumerate().find_map(|(other, theirs)| {
                theirs
                    .iter()
                    .any(|(s, _)| s.clashes_with(socket))
                    .then_some(other)
            });
            if let Some(other) = earlier {
                problems.push(problem_at(
                    &places[index],
                    Some(option),
                    format!(
                        "service '{}' would listen on {}, as service '{}' does",
                        services[index].name,
                        socket.describe(),
                        services[other].name
                    ),
                ));
            }
        }
    }
    problems
}
