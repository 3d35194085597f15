//! The types that cross the boundary between `host` and a plugin library.
//!
//! Everything here is frozen for every 1.x release (the policy is in `docs/compatibility.md`).
//!
//! # Extensions
//!
//! abi_stable checks each type's layout when a library is loaded, and rejects a plugin whenever
//! the host's copy of a type here has more fields or methods than the plugin's ("too many
//! fields"), whichever side creates the value, so these types cannot grow.
//! New capabilities are *extensions* instead: named, versioned calls through
//! [`Host::call_extension`] (offered by the host) and [`AbiService::call_extension`] (offered
//! by a service). Each side calls only the extensions it knows and treats `RNone` as "not
//! offered", so every 1.x host works with every 1.x plugin, each using what both know.
//!
//! | name | offered by | request | reply | since |
//! |---|---|---|---|---|
//! | [`RELOAD`] | a service | empty | empty | 1.1 |
//! | [`HOST_VERSION`] | the host | empty | the host's plugin-api version, e.g. `1.2.0` | 1.2 |
//! | [`SYSTEMD_SOCKET`] | the host | a socket index, e.g. `0` | empty, or why it cannot be had | 1.2 |
//! | [`LISTEN_SOCKET`] | the host | a socket name (`Endpoint::socket_name`) | `fd=N`, a listening socket handed over | 1.2 |
//! | [`METRICS`] | a service | empty | its metric families and samples, JSON | 1.2 |
//! | [`ABOUT`] | a service | empty | `{"plugin_version": …, "endpoints": […]}` | 1.2 |
//!
//! Plugin authors do not use this module directly: [`export_service_maker!`](crate::export_service_maker)
//! generates the root module, and the kit adapts a [`Service`](crate::Service) to
//! [`ServiceBox`].

// abi_stable's `#[sabi_trait]` expansion implements foreign traits inside a const block.
#![allow(non_local_definitions)]
// abi_stable's derives and `#[sabi_trait]` generate the unsafe code that describes and checks
// these layouts; nothing in this module is unsafe by hand.
#![allow(unsafe_code)]

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RArc, RBox, ROption, RResult, RStr, RString, RVec},
    StableAbi,
};

/// A plugin library's root module: what `twistd` calls an `IServiceMaker`.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = ServiceMakerRef)))]
#[sabi(missing_field(panic))]
pub struct ServiceMaker {
    /// Tapname, description and options. Called on every probe, so it must be cheap and pure.
    pub info: extern "C" fn() -> RResult<PluginInfo, RString>,
    /// Builds the service from the parsed option values. Must not start threads: the host may
    /// still fork to become a daemon after this returns.
    #[sabi(last_prefix_field)]
    pub make_service: extern "C" fn(RVec<OptionValue>, HostContext) -> RResult<ServiceBox, RString>,
}

impl RootModule for ServiceMakerRef {
    declare_root_module_statics! {ServiceMakerRef}
    const BASE_NAME: &'static str = "host_plugin";
    const NAME: &'static str = "host_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The plugin-api version this host or plugin was built against.
pub const INTERFACE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a plugin offers, as shown by `host` and `host PLUGIN --help`.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct PluginInfo {
    /// The name users type after `host`, e.g. `fastpoetry`.
    pub tapname: RString,
    /// One line shown beside the tapname in `host`'s plugin list.
    pub description: RString,
    /// The plugin's command-line options.
    pub options: RVec<OptionSpec>,
}

/// What kind of value an option takes; the host validates values before `make_service` sees them.
///
/// A number rather than an enum so later 1.x versions can add kinds: a host that does not know
/// a kind treats its values as plain strings. The low seven bits are the kind; the top bit,
/// [`REQUIRED`](Self::REQUIRED), marks an option the user must give (since 1.2). A plugin whose
/// options use a kind or flag newer than the host it runs in is refused by the kit, naming the
/// option and the version it needs (see [`since`](Self::since)).
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionKind(pub u8);

impl OptionKind {
    /// Any string.
    pub const STRING: Self = Self(0);
    /// A signed 64-bit integer.
    pub const INTEGER: Self = Self(1);
    /// A TCP or UDP port, 0 to 65535.
    pub const PORT: Self = Self(2);
    /// A filesystem path (not checked for existence: the plugin reports what it cannot open).
    pub const PATH: Self = Self(3);
    /// A listen endpoint such as `tcp:10000:interface=127.0.0.1`; see [`Endpoint`](crate::Endpoint).
    pub const ENDPOINT: Self = Self(4);
    /// An option that takes no value: present or absent.
    pub const FLAG: Self = Self(5);
    /// `HOST:PORT`, such as `localhost:6665` or `[::1]:80`; see [`HostPort`](crate::HostPort).
    /// Since 1.2.
    pub const HOST_PORT: Self = Self(6);
    /// A duration: `250ms`, `30s`, `5m`, `2h`, or a plain number of seconds. Since 1.2.
    pub const DURATION: Self = Self(7);
    /// A client endpoint such as `tcp:example.com:80:timeout=5`; see
    /// [`ClientEndpoint`](crate::ClientEndpoint). Since 1.2.
    pub const CLIENT_ENDPOINT: Self = Self(8);
    /// Added to a kind: the user must give the option (it has no default). Since 1.2.
    pub const REQUIRED: u8 = 0x80;

    /// The kind without the [`REQUIRED`](Self::REQUIRED) flag.
    pub fn base(self) -> Self {
        Self(self.0 & !Self::REQUIRED)
    }

    /// Whether the option must be given.
    pub fn is_required(self) -> bool {
        self.0 & Self::REQUIRED != 0
    }

    /// The word used for this kind in help output and error messages.
    pub fn name(self) -> &'static str {
        match self.base() {
            Self::INTEGER => "integer",
            Self::PORT => "port",
            Self::PATH => "path",
            Self::ENDPOINT => "endpoint",
            Self::FLAG => "flag",
            Self::HOST_PORT => "host:port",
            Self::DURATION => "duration",
            Self::CLIENT_ENDPOINT => "client endpoint",
            _ => "string",
        }
    }

    /// The plugin-api minor version (of 1.x) a host needs to understand this kind and flags.
    pub fn since(self) -> u32 {
        match self.base() {
            _ if self.is_required() => 2,
            Self::HOST_PORT | Self::DURATION | Self::CLIENT_ENDPOINT => 2,
            _ => 0,
        }
    }
}

/// One command-line option of a plugin; build it with [`OptionSpec::param`] or [`OptionSpec::flag`].
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct OptionSpec {
    /// The long name, without dashes: `port` for `--port`.
    pub long: RString,
    /// The short letter, if any: `p` for `-p`.
    pub short: ROption<u8>,
    /// The value kind; [`OptionKind::FLAG`] for an option without a value.
    pub kind: OptionKind,
    /// The value used when the option is not given.
    pub default: ROption<RString>,
    /// One line of help.
    pub help: RString,
    /// Whether the option may be given more than once.
    pub repeatable: bool,
}

/// The values the user gave (or the defaults) for one option, validated by the host.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct OptionValue {
    /// The option's long name.
    pub long: RString,
    /// Its values in command-line order; a flag that was given has one value, `"true"`.
    pub values: RVec<RString>,
}

/// A log level as it crosses the boundary: 1 = error … 5 = trace, 0 = off.
pub type RawLevel = u8;

/// The [`RawLevel`] of a `tracing` level; `None` (log nothing) is 0.
pub fn raw_level(level: Option<tracing::Level>) -> RawLevel {
    match level {
        None => 0,
        Some(tracing::Level::ERROR) => 1,
        Some(tracing::Level::WARN) => 2,
        Some(tracing::Level::INFO) => 3,
        Some(tracing::Level::DEBUG) => 4,
        Some(tracing::Level::TRACE) => 5,
    }
}

/// The most verbose `tracing` level a [`RawLevel`] lets through.
pub fn level_filter(raw: RawLevel) -> tracing::level_filters::LevelFilter {
    use tracing::level_filters::LevelFilter;
    match raw {
        0 => LevelFilter::OFF,
        1 => LevelFilter::ERROR,
        2 => LevelFilter::WARN,
        3 => LevelFilter::INFO,
        4 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// What the host lends a plugin for as long as the service lives.
#[sabi_trait]
pub trait Host: Clone + Send + Sync + 'static {
    /// The most verbose level the host will print; the plugin filters below it at the source.
    fn max_log_level(&self) -> RawLevel;
    /// Writes one of the plugin's log events to the host's log.
    fn log(&self, level: RawLevel, target: RStr<'_>, message: RStr<'_>);
    /// Tells the host that the service ended without being asked to: `RSome(error)` if it failed.
    fn service_ended(&self, error: ROption<RString>);
    /// Calls the host extension `name` (e.g. `"example/1"`) with `request`; `RNone` if this
    /// host has no such extension. How later 1.x hosts offer plugins new capabilities without
    /// changing this frozen trait: see [Extensions](self#extensions).
    #[sabi(last_prefix_field)]
    fn call_extension(
        &self,
        name: RStr<'_>,
        request: RStr<'_>,
    ) -> ROption<RResult<RString, RString>>;
}

/// The host's side of the contract, shared with the plugin.
pub type HostContext = Host_TO<RArc<()>>;

/// A running service as the host sees it: Twisted's `IService`.
#[sabi_trait]
pub trait AbiService: Send + 'static {
    /// The service's name, used in log lines.
    fn name(&self) -> RString;
    /// Acquires what needs privileges (binds ports). Runs before the host drops root.
    fn privileged_start(&mut self) -> RResult<(), RString>;
    /// Starts serving and returns; the service runs on its own threads until [`stop`](Self::stop).
    fn start(&mut self) -> RResult<(), RString>;
    /// Stops the service, waiting at most `deadline_ms` for in-flight work to finish.
    fn stop(&mut self, deadline_ms: u64) -> RResult<(), RString>;
    /// Calls the service extension `name` (e.g. `"reload/1"`) with `request`; `RNone` if the
    /// service has no such extension. How later 1.x plugins offer the host new capabilities
    /// without changing this frozen trait: see [Extensions](self#extensions).
    #[sabi(last_prefix_field)]
    fn call_extension(
        &mut self,
        name: RStr<'_>,
        request: RStr<'_>,
    ) -> ROption<RResult<RString, RString>>;
}

/// An owned [`AbiService`] trait object.
pub type ServiceBox = AbiService_TO<RBox<()>>;

/// The extension `reload/1`: reload configuration without restarting. The host calls it on
/// SIGHUP; a service that cannot reload does not offer it.
pub const RELOAD: &str = "reload/1";

/// The extension `systemd-socket/1`: claims the systemd-passed socket with this index for the
/// calling service, so that no two services of one host adopt the same socket, whichever
/// libraries they come from. An error reply says which service holds it. A host that does not
/// offer it leaves each library to keep its own claims.
pub const SYSTEMD_SOCKET: &str = "systemd-socket/1";

/// The extension `listen-socket/1`: the listening socket the host holds for an endpoint, by the
/// socket's name (`tcp:10000:interface=127.0.0.1`). A host that holds sockets (a worker of a
/// supervisor, whose master keeps them across worker restarts and upgrades) answers `fd=N`,
/// handing descriptor N over to the caller, or an error; any other host answers `RNone`, and the
/// kit binds the socket itself.
pub const LISTEN_SOCKET: &str = "listen-socket/1";

/// The extension `metrics/1`: the service's metrics, as a JSON list of families (name, help,
/// type, label names, histogram bounds, samples); the host adds a `service` label and serves them
/// in the Prometheus format.
pub const METRICS: &str = "metrics/1";

/// The extension `about/1`: facts about the service for the host's `/services` page, as JSON:
/// the plugin crate's version and the endpoints the service listens on.
pub const ABOUT: &str = "about/1";

/// The extension `host-version/1`: the host's plugin-api version (`1.2.0`). A host that does
/// not offer it is older than 1.2. The kit asks before `make_service`, to refuse cleanly when
/// the plugin's options need a newer host than the one running it.
pub const HOST_VERSION: &str = "host-version/1";
