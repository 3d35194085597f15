//! Plugin discovery for `host`: which libraries in which directories offer which service makers.
//!
//! The [`SearchPath`] lists plugin directories in priority order; [`discover`] scans them and
//! reports every plugin found and every candidate file rejected, with the reason; a
//! [`Plugin`] is loaded with [`Plugin::load`]. Rejections are one line each, never abi_stable's
//! layout dump.

mod discovery;
mod library;
mod option_check;
mod search_path;

pub use discovery::{discover, Discovery, Plugin, Rejected, Rejection};
pub use library::{load_service_maker, LoadError};
pub use search_path::SearchPath;
