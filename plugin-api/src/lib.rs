//! The contract between `host` and its plugins, and the kit plugin authors use.
//!
//! A plugin is a `cdylib` crate that depends on this one and exports a *service maker*: a
//! tapname, a one-line description, a list of options, and a function that turns parsed option
//! values into a [`Service`]. The host finds the library, shows its options, and runs the service
//! in the foreground or as a daemon, the way Twisted's `twistd` runs an `IServiceMaker`.
//!
//! The crate has two parts that change at different speeds:
//! - [`abi`]: the types that cross the library boundary, frozen for every 1.x release;
//! - the kit ([`Service`], [`Tasks`], [`MultiService`], [`Endpoint`], [`Options`],
//!   [`export_service_maker!`]): what plugin authors write against, free to grow.
//!
//! # A complete plugin
//!
//! ```no_run
//! use plugin_api::{export_service_maker, Endpoint, Listener, OptionKind, OptionSpec, Options,
//!                  Result, Service, Tasks};
//! use tokio::io::AsyncWriteExt;
//!
//! fn options() -> Vec<OptionSpec> {
//!     vec![OptionSpec::param("listen", OptionKind::ENDPOINT, "Where to listen.")
//!         .default("tcp:7000:interface=127.0.0.1")]
//! }
//!
//! struct Hello {
//!     endpoint: Endpoint,
//!     listener: Option<Listener>,
//! }
//!
//! impl Service for Hello {
//!     fn name(&self) -> &str {
//!         "hello"
//!     }
//!
//!     fn privileged_start(&mut self) -> Result<()> {
//!         self.listener = Some(self.endpoint.bind()?);
//!         Ok(())
//!     }
//!
//!     fn start(&mut self, tasks: &Tasks) -> Result<()> {
//!         let listener = self.listener.take().expect("bound in privileged_start");
//!         let workers = tasks.clone();
//!         let shutdown = tasks.shutdown();
//!         tasks.spawn(async move {
//!             loop {
//!                 let (mut stream, peer) = tokio::select! {
//!                     _ = shutdown.requested() => return Ok(()),
//!                     accepted = listener.accept() => accepted?,
//!                 };
//!                 tracing::info!("greeting {peer}");
//!                 workers.spawn_connection(async move {
//!                     stream.write_all(b"hello\n").await?;
//!                     Ok(())
//!                 });
//!             }
//!         });
//!         Ok(())
//!     }
//! }
//!
//! fn make_service(options: &Options) -> Result<Hello> {
//!     Ok(Hello { endpoint: options.endpoint("listen")?, listener: None })
//! }
//!
//! export_service_maker! {
//!     tapname: "hello",
//!     description: "Says hello to every connection.",
//!     options: options,
//!     make_service: make_service,
//! }
//! # fn main() {}
//! ```
#![warn(missing_docs)]

pub mod abi;
mod kit;

pub use abi::{OptionKind, OptionSpec, INTERFACE_VERSION};
pub use kit::endpoint::{Endpoint, EndpointError, Listener, PeerAddr, Stream};
pub use kit::error::{Error, Result};
pub use kit::multi::MultiService;
pub use kit::options::Options;
pub use kit::service::{Service, Shutdown, Tasks};

/// Re-exported so plugins use the same tokio and tracing versions as the kit.
pub use tokio;
pub use tracing;

/// What [`export_service_maker!`] expands to; not part of the stable interface.
#[doc(hidden)]
pub mod __private {
    pub use crate::kit::export::{info, make_service, root_module};
    pub use abi_stable;
}
