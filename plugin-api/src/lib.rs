//! The contract between `host` and its plugins, and the kit plugin authors use.
//!
//! A plugin is a `cdylib` crate that depends on this one and exports a *service maker*: a
//! tapname, a one-line description, a list of options, and a function that turns parsed option
//! values into a [`Service`]. The host finds the library, shows its options, and runs the service
//! in the foreground or as a daemon, the way Twisted's `twistd` runs an `IServiceMaker`.
//!
//! The crate has two parts that change at different speeds:
//! - [`abi`]: the types that cross the library boundary, frozen for every 1.x release;
//! - the kit ([`Service`], [`Tasks`] and its [`serve`](Tasks::serve) loop, [`MultiService`],
//!   [`Endpoint`], [`ClientEndpoint`], [`Options`], [`export_service_maker!`], [`files`]): what
//!   plugin authors write against, free to grow.
//!
//! # A complete plugin
//!
//! `examples/hello.rs`: `cargo build --example hello` builds it into
//! `target/debug/examples/libhello.so`; copy that into a plugin directory and run `host -n hello`.
//!
#![doc = concat!("```no_run\n", include_str!("../examples/hello.rs"), "# fn main() {}\n```")]
#![warn(missing_docs)]

pub mod abi;
mod kit;

pub use abi::{OptionKind, OptionSpec, INTERFACE_VERSION};
pub use kit::crowd;
pub use kit::endpoint::{
    ClientEndpoint, Endpoint, EndpointError, HostPort, Listener, PeerAddr, SocketDomain, Stream,
    TlsConfig,
};
pub use kit::error::{Error, Result};
pub use kit::files;
pub use kit::metrics;
pub use kit::multi::MultiService;
pub use kit::options::{parse_duration, Options, LONGEST_DURATION};
pub use kit::scope::spawn_thread;
pub use kit::serve::{ConnectionLimits, WhenFull};
pub use kit::service::{Service, Shutdown, Tasks};
pub use kit::text;

/// Re-exported so plugins use the same tokio and tracing versions as the kit. The tokio
/// features on: `rt-multi-thread`, `net`, `io-util`, `time`, `sync`, `macros`, `signal`.
pub use tokio;
pub use tracing;

/// The plugin author's guide, `docs/writing-a-plugin.md`: every Rust block in it is compiled
/// as a doc test of this crate, so the guide cannot drift from the interface.
#[cfg(doctest)]
#[doc = include_str!("../../docs/writing-a-plugin.md")]
pub struct WritingAPluginGuide;

/// What [`export_service_maker!`] expands to; not part of the stable interface.
#[doc(hidden)]
pub mod __private {
    pub use crate::kit::export::{info, make_service, root_module};
    pub use abi_stable;
}
