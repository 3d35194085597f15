//! What `host` and `host --help` print: the usage, the global options and every plugin found.

use dropin_cache::{Discovery, Plugin};
use std::fmt::Write;

/// The global part of `host --help`, exactly as clap renders it from `cli::command()`.
///
/// Rendering it took half a million instructions, a fifth of a warm listing of 100 plugins, to
/// produce the same text every time; so a unit test renders it instead, and fails if this file
/// differs (`HOST_UPDATE_HELP=1 cargo test -p host` rewrites it).
const GLOBAL_HELP: &str = include_str!("global_help.txt");

pub fn render(discovery: &Discovery) -> String {
    // The plugin list is appended here rather than given to clap as `after_help`: clap would
    // scan every character of it for styling, which was a tenth of a warm listing's time.
    let mut text = GLOBAL_HELP.to_string();
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

#[cfg(test)]
mod tests {
    use super::GLOBAL_HELP;

    #[test]
    fn the_global_help_is_what_clap_renders() {
        let rendered = crate::cli::command().render_help().to_string();
        if std::env::var_os("HOST_UPDATE_HELP").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/global_help.txt");
            std::fs::write(path, &rendered).unwrap();
        }
        assert!(
            GLOBAL_HELP == rendered,
            "host/src/global_help.txt is not what clap renders; run HOST_UPDATE_HELP=1 cargo test -p host"
        );
    }
}
