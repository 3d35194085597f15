//! The author's kit: everything a plugin writes against, free to grow in minor versions
//! because none of it crosses the library boundary.

pub mod crowd;
pub mod endpoint;
pub mod error;
pub mod export;
pub mod files;
mod log_bridge;
pub mod metrics;
pub mod multi;
pub mod option_spec;
pub mod options;
pub(crate) mod scope;
pub mod serve;
pub mod service;
mod socket_activation;
pub mod text;
