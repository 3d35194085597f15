//! Scanning the search path: every candidate file, where its description came from (the
//! cache or a probe), which plugin wins each tapname, and what went wrong.

use crate::cache_file::{Entry, FileStat, Outcome};
use crate::cache_store;
use crate::library::{load_service_maker, LoadError};
use crate::probe::Prober;
use crate::record::PluginRecord;
use crate::search_path::SearchPath;
use plugin_api::abi::{OptionSpec, ServiceMakerRef};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A usable plugin: the winner for its tapname.
#[derive(Debug, Clone)]
pub struct Plugin {
    /// The library file.
    pub path: PathBuf,
    /// What it offers.
    pub record: PluginRecord,
}

impl Plugin {
    pub fn tapname(&self) -> &str {
        &self.record.tapname
    }

    pub fn description(&self) -> &str {
        &self.record.description
    }

    pub fn options(&self) -> Vec<OptionSpec> {
        self.record.option_specs()
    }

    /// Loads the library into this process: the only time the host runs a plugin's code.
    pub fn load(&self) -> Result<ServiceMakerRef, LoadError> {
        load_service_maker(&self.path)
    }
}

/// Where a candidate's description came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An unchanged file, described by the cache: nothing was loaded.
    Cached,
    /// A new or changed file, loaded in a probe process.
    Probed,
}

/// One candidate library file.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub path: PathBuf,
    pub source: Source,
    pub outcome: Outcome,
    /// Set when an earlier file in the search path offers the same tapname.
    pub shadowed_by: Option<PathBuf>,
}

/// One directory of the search path.
#[derive(Debug, Clone)]
pub struct SearchedDir {
    pub path: PathBuf,
    pub exists: bool,
    /// The cache files read.
    pub cache_read: Vec<PathBuf>,
    /// Where the cache was written this run, if anything changed.
    pub cache_written: Option<PathBuf>,
}

/// What a scan of the search path found.
#[derive(Debug, Clone)]
pub struct Discovery {
    pub dirs: Vec<SearchedDir>,
    /// Every candidate, in search order.
    pub candidates: Vec<Candidate>,
    /// The usable plugins, sorted by tapname.
    pub plugins: Vec<Plugin>,
    /// Problems with caches, one line each (corrupt caches; no writable cache, said once).
    pub warnings: Vec<String>,
}

impl Discovery {
    /// The plugin with this tapname.
    pub fn find(&self, tapname: &str) -> Option<&Plugin> {
        self.plugins.iter().find(|p| p.tapname() == tapname)
    }

    /// The directories searched, in order.
    pub fn searched(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|d| d.path.as_path())
    }
}

/// Scans every directory of `search_path`; libraries are loaded only in `prober`'s children,
/// and only those that are new or changed since the cache was written.
pub fn discover(search_path: &SearchPath, prober: &Prober) -> Discovery {
    let mut discovery = Discovery {
        dirs: Vec::new(),
        candidates: Vec::new(),
        plugins: Vec::new(),
        warnings: Vec::new(),
    };
    let mut unwritable = Vec::new();
    for dir in search_path.dirs() {
        let (searched, candidates) = scan(dir, prober, &mut discovery.warnings, &mut unwritable);
        discovery.dirs.push(searched);
        discovery.candidates.extend(candidates);
    }
    if !unwritable.is_empty() {
        discovery.warnings.push(format!(
            "cannot write a plugin cache ({}); changed plugins will be probed on every run",
            unwritable.join("; ")
        ));
    }
    choose_winners(&mut discovery);
    discovery
}

/// Describes every candidate in `dir`, from its cache where possible, and rewrites the cache
/// if anything changed.
fn scan(
    dir: &Path,
    prober: &Prober,
    warnings: &mut Vec<String>,
    unwritable: &mut Vec<String>,
) -> (SearchedDir, Vec<Candidate>) {
    let mut searched = SearchedDir {
        path: dir.to_path_buf(),
        exists: dir.is_dir(),
        cache_read: Vec::new(),
        cache_written: None,
    };
    if !searched.exists {
        return (searched, Vec::new());
    }
    let cache = cache_store::load(dir);
    warnings.extend(
        cache
            .corrupt
            .iter()
            .map(|why| format!("ignoring a corrupt plugin cache, rebuilding it: {why}")),
    );
    searched.cache_read.clone_from(&cache.read_from);

    let mut entries = BTreeMap::new();
    let mut to_probe = Vec::new();
    let mut candidates = Vec::new();
    for path in candidate_files(dir) {
        let (Some(name), Ok(stat)) = (file_name(&path), FileStat::of(&path)) else {
            continue;
        };
        match cache.valid_entry(&name, &stat) {
            Some(entry) => {
                candidates.push(Candidate {
                    path,
                    source: Source::Cached,
                    outcome: entry.outcome.clone(),
                    shadowed_by: None,
                });
                entries.insert(name, entry.clone());
            }
            None => to_probe.push((path, name, stat)),
        }
    }
    let paths: Vec<PathBuf> = to_probe.iter().map(|(path, ..)| path.clone()).collect();
    let mut probed = prober.probe(&paths);
    for (path, name, stat) in to_probe {
        let outcome = probed
            .remove(&path)
            .expect("the prober answers for every path");
        entries.insert(
            name,
            Entry {
                stat,
                outcome: outcome.clone(),
            },
        );
        candidates.push(Candidate {
            path,
            source: Source::Probed,
            outcome,
            shadowed_by: None,
        });
    }
    candidates.sort_by(|a, b| a.path.cmp(&b.path));

    let deleted = cache.entry_names().any(|name| !entries.contains_key(name));
    if !paths.is_empty() || deleted {
        match cache_store::save(dir, entries) {
            Ok(place) => searched.cache_written = Some(place),
            Err(why) => unwritable.push(why),
        }
    }
    (searched, candidates)
}

/// Marks shadowed candidates and collects the winners, sorted by tapname.
fn choose_winners(discovery: &mut Discovery) {
    let mut winners: BTreeMap<String, PathBuf> = BTreeMap::new();
    for candidate in &mut discovery.candidates {
        let Ok(record) = &candidate.outcome else {
            continue;
        };
        match winners.get(&record.tapname) {
            Some(winner) => candidate.shadowed_by = Some(winner.clone()),
            None => {
                winners.insert(record.tapname.clone(), candidate.path.clone());
                discovery.plugins.push(Plugin {
                    path: candidate.path.clone(),
                    record: record.clone(),
                });
            }
        }
    }
    discovery
        .plugins
        .sort_by(|a, b| a.record.tapname.cmp(&b.record.tapname));
}

/// The shared libraries in `dir`, sorted so the scan order does not depend on the filesystem.
fn candidate_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| is_library_name(p) && p.is_file())
        .collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
}

fn is_library_name(path: &Path) -> bool {
    let wanted: &[&str] = if cfg!(target_os = "macos") {
        &["so", "dylib"]
    } else {
        &["so"]
    };
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| wanted.contains(&e))
}
