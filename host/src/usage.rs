//! What `host` and `host --help` print: the usage, the global options and every plugin found.

use clap::Command;
use dropin_cache::{Discovery, Plugin};
use std::fmt::Write;

pub fn render(mut command: Command, discovery: &Discovery) -> String {
    // The plugin list is appended here rather than given to clap as `after_help`: clap would
    // scan every character of it for styling, which was a tenth of a warm listing's time.
    let mut text = command.render_help().to_string();
    text.push_str("\nPlugins:\n");
    text.push_str(&plugin_table(discovery, |plugin| {
        plugin.description().to_string()
    }));
    if discovery.plugins().len() == 0 {
        let _ = writeln!(text, "  (none found in {})", searched_list(discovery));
    }
    text.push_str("\nRun 'host PLUGIN --help' for a plugin's own options.\n");
    text
}

/// One line per plugin: its tapname, aligned, then `detail`.
pub fn plugin_table(discovery: &Discovery, detail: impl Fn(&Plugin) -> String) -> String {
    let width = discovery
        .plugins()
        .map(|p| p.tapname().len())
        .max()
        .unwrap_or(0);
    let mut table = String::new();
    for plugin in discovery.plugins() {
        let _ = writeln!(table, "  {:width$}  {}", plugin.tapname(), detail(&plugin));
    }
    table
}

/// The directories searched, comma-separated, for messages.
pub fn searched_list(discovery: &Discovery) -> String {
    let dirs: Vec<String> = discovery
        .searched()
        .map(|d| d.display().to_string())
        .collect();
    dirs.join(", ")
}
