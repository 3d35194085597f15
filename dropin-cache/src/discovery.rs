//! Scanning the search path: every candidate file, where its description came from (the
//! cache or a probe), which plugin wins each tapname, and what went wrong.

use crate::cache_file::{Entry, FileStat, Outcome};
use crate::cache_store;
use crate::library::{load_and_describe, LoadError};
use crate::probe::Prober;
use crate::record::PluginRecord;
use crate::search_path::SearchPath;
use plugin_api::abi::{OptionSpec, ServiceMakerRef};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A usable plugin: the winner for its tapname, borrowed from the [`Discovery`].
#[derive(Debug, Clone, Copy)]
pub struct Plugin<'a> {
    /// The library file.
    pub path: &'a Path,
    /// What it offers.
    pub record: &'a PluginRecord,
}

impl<'a> Plugin<'a> {
    pub fn tapname(&self) -> &'a str {
        &self.record.tapname
    }

    pub fn description(&self) -> &'a str {
        &self.record.description
    }

    /// The plugin's options; an error only if the cache entry was tampered with.
    pub fn options(&self) -> Result<Vec<OptionSpec>, String> {
        self.record.option_specs()
    }

    /// Loads the library into this process (the only time the host runs a plugin's code) and
    /// asks it what it offers.
    ///
    /// The record this plugin was chosen by may come from the cache, which trusts the file's
    /// stat tuple; a library patched in place and dated back keeps that tuple. So what the
    /// loaded library says is compared with the record, and where they differ, the library's
    /// word wins and its cache entry is rewritten.
    pub fn load(&self) -> Result<Loaded, LoadError> {
        let (maker, record) = load_and_describe(self.path)?;
        if record == *self.record {
            return Ok(Loaded {
                maker,
                changed: None,
            });
        }
        let refreshed = self.refresh_cache(&record);
        Ok(Loaded {
            maker,
            changed: Some(Changed { record, refreshed }),
        })
    }

    fn refresh_cache(&self, record: &PluginRecord) -> Result<PathBuf, String> {
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return Err(format!(
                "{} names no file in a directory",
                self.path.display()
            ));
        };
        let stat = FileStat::of(self.path).map_err(|e| e.to_string())?;
        let entry = Entry {
            stat,
            outcome: Ok(record.clone()),
        };
        cache_store::refresh(dir, &name.to_string_lossy(), entry)
    }
}

/// A plugin library loaded into the host.
pub struct Loaded {
    pub maker: ServiceMakerRef,
    /// Set when the library describes itself differently from the record it was chosen by.
    pub changed: Option<Changed>,
}

/// What a library that changed without its file times changing says about itself now.
pub struct Changed {
    pub record: PluginRecord,
    /// Where its cache entry was rewritten, or why it could not be.
    pub refreshed: Result<PathBuf, String>,
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
    /// The candidates that win their tapname, by index, sorted by tapname.
    winners: Vec<usize>,
    /// Problems with caches, one line each (unreadable or corrupt caches; no writable cache, said once).
    pub warnings: Vec<String>,
}

impl Discovery {
    /// The usable plugins, sorted by tapname.
    pub fn plugins(&self) -> impl ExactSizeIterator<Item = Plugin<'_>> + Clone {
        self.winners.iter().map(|&index| {
            let candidate = &self.candidates[index];
            let record = candidate.outcome.as_ref().expect("winners offer a plugin");
            Plugin {
                path: &candidate.path,
                record,
            }
        })
    }

    /// The plugin with this tapname.
    pub fn find(&self, tapname: &str) -> Option<Plugin<'_>> {
        self.plugins().find(|p| p.tapname() == tapname)
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
        winners: Vec::new(),
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
    let mut cache = cache_store::load(dir);
    warnings.append(&mut cache.problems);
    searched.cache_read.clone_from(&cache.read_from);

    // In name order: each file with its stat and, if the cache still describes it, its outcome.
    let files: Vec<(PathBuf, String, FileStat, Option<Outcome>)> = candidate_files(dir)
        .into_iter()
        .map(|(name, path, stat)| {
            let cached = cache.take_valid(&name, &stat);
            (path, name, stat, cached)
        })
        .collect();
    let to_probe: Vec<PathBuf> = files
        .iter()
        .filter(|(.., cached)| cached.is_none())
        .map(|(path, ..)| path.clone())
        .collect();
    let mut probed = prober.probe(&to_probe);
    let deleted = cache.describes_missing_files();
    let mut entries = BTreeMap::new();
    let mut candidates = Vec::with_capacity(files.len());
    for (path, name, stat, cached) in files {
        let (source, outcome) = match cached {
            Some(outcome) => (Source::Cached, outcome),
            None => {
                let outcome = probed
                    .remove(&path)
                    .expect("the prober answers for every path");
                (Source::Probed, outcome)
            }
        };
        if !to_probe.is_empty() || deleted {
            entries.insert(
                name,
                Entry {
                    stat,
                    outcome: outcome.clone(),
                },
            );
        }
        candidates.push(Candidate {
            path,
            source,
            outcome,
            shadowed_by: None,
        });
    }
    if !to_probe.is_empty() || deleted {
        match cache_store::save(dir, entries) {
            Ok(place) => searched.cache_written = Some(place),
            Err(why) => unwritable.push(why),
        }
    }
    (searched, candidates)
}

/// Marks shadowed candidates and collects the winners, sorted by tapname.
fn choose_winners(discovery: &mut Discovery) {
    let mut winners: BTreeMap<&str, usize> = BTreeMap::new();
    let mut shadowed = Vec::new();
    for (index, candidate) in discovery.candidates.iter().enumerate() {
        if let Ok(record) = &candidate.outcome {
            match winners.get(record.tapname.as_str()) {
                Some(&winner) => shadowed.push((index, winner)),
                None => {
                    winners.insert(&record.tapname, index);
                }
            }
        }
    }
    // A BTreeMap iterates in tapname order.
    discovery.winners = winners.into_values().collect();
    for (index, winner) in shadowed {
        discovery.candidates[index].shadowed_by = Some(discovery.candidates[winner].path.clone());
    }
}

/// The shared libraries in `dir` as (file name, path, stat), sorted by name so the scan order
/// does not depend on the filesystem.
fn candidate_files(dir: &Path) -> Vec<(String, PathBuf, FileStat)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(String, PathBuf, FileStat)> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let path = entry.path();
            if !is_library_name(&path) {
                return None;
            }
            // Anything but a regular file (or a symlink to one) is not a candidate.
            let stat = FileStat::of_entry(&entry).ok()?;
            Some((entry.file_name().into_string().ok()?, path, stat))
        })
        .collect();
    files.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    files
}

/// `*.so`: host runs on Linux only (its process layer uses Linux calls such as
/// `PR_SET_PDEATHSIG`), so macOS's `.dylib` is not looked for.
fn is_library_name(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "so")
}
