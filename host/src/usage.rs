//! What `host` and `host --help` print: the usage, the global options and every plugin found.

use clap::Command;
use dropin_cache::Discovery;
use std::fmt::Write;

pub fn render(command: Command, discovery: &Discovery) -> String {
    let mut plugins = String::from("Plugins:\n");
    let width = discovery
        .plugins
        .iter()
        .map(|p| p.tapname().len())
        .max()
        .unwrap_or(0);
    for plugin in &discovery.plugins {
        let _ = writeln!(
            plugins,
            "  {:width$}  {}",
            plugin.tapname(),
            plugin.description()
        );
    }
    if discovery.plugins.is_empty() {
        let _ = writeln!(plugins, "  (none found in {})", searched_list(discovery));
    }
    plugins.push_str("\nRun 'host PLUGIN --help' for a plugin's own options.");
    command.after_help(plugins).render_help().to_string()
}

/// The directories searched, comma-separated, for messages.
pub fn searched_list(discovery: &Discovery) -> String {
    let dirs: Vec<String> = discovery
        .searched()
        .map(|d| d.display().to_string())
        .collect();
    dirs.join(", ")
}
