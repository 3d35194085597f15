//! `host --plugins-report`: the answer to "why is my plugin not found?" in one command.

use crate::usage;
use dropin_cache::{Candidate, Discovery, Source};
use std::fmt::Write;

pub fn render(discovery: &Discovery) -> String {
    let mut out = String::from("Plugin search path (the first file offering a tapname wins):\n");
    for (number, dir) in discovery.dirs.iter().enumerate() {
        let _ = write!(out, "{:>3}. {}", number + 1, dir.path.display());
        if !dir.exists {
            out.push_str("  (does not exist)\n");
            continue;
        }
        out.push('\n');
        let read: Vec<String> = dir
            .cache_read
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let _ = writeln!(
            out,
            "     cache read: {}",
            if read.is_empty() {
                "none".to_string()
            } else {
                read.join(", ")
            }
        );
        if let Some(written) = &dir.cache_written {
            let _ = writeln!(out, "     cache written: {}", written.display());
        }
        let files: Vec<&Candidate> = discovery
            .candidates
            .iter()
            .filter(|c| c.path.parent() == Some(dir.path.as_path()))
            .collect();
        if files.is_empty() {
            out.push_str("     no candidate files\n");
        }
        for candidate in files {
            let name = candidate
                .path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy();
            let source = match candidate.source {
                Source::Cached => "cached",
                Source::Probed => "probed",
            };
            let _ = writeln!(out, "     {name}: {} [{source}]", status(candidate));
        }
    }
    out.push_str("\nPlugins:\n");
    out.push_str(&usage::plugin_table(discovery, |plugin| {
        plugin.path.display().to_string()
    }));
    if discovery.plugins().len() == 0 {
        out.push_str("  none\n");
    }
    out
}

/// One candidate's status, in words.
pub fn status(candidate: &Candidate) -> String {
    match (&candidate.outcome, &candidate.shadowed_by) {
        (Ok(record), None) => format!(
            "ok: provides '{}' (plugin-api {})",
            record.tapname, record.interface_version
        ),
        (Ok(record), Some(winner)) => format!(
            "shadowed: '{}' is already provided by {}",
            record.tapname,
            winner.display()
        ),
        (Err(e), _) => e.to_string(),
    }
}
