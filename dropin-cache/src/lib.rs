//! Plugin discovery for `host`: which libraries in which directories offer which service makers.
//!
//! The [`SearchPath`] lists plugin directories in priority order. [`discover`] scans them,
//! describing each candidate library from the directory's `dropin.cache` when the file is
//! unchanged, and otherwise by loading it in a probe child process ([`Prober`]), so that a
//! library that crashes or hangs while loading cannot take the host down. The result says,
//! for every candidate, where its description came from and why it was rejected, in one line
//! each, never abi_stable's layout dump. Only [`Plugin::load`] loads a library into the host.

mod cache_file;
mod cache_store;
mod discovery;
mod library;
mod option_check;
mod probe;
mod record;
mod search_path;

pub use cache_file::{FileStat, Outcome};
pub use discovery::{discover, Candidate, Changed, Discovery, Loaded, Plugin, SearchedDir, Source};
pub use library::LoadError;
pub use probe::{run_probe_child, Prober};
pub use record::PluginRecord;
pub use search_path::SearchPath;
