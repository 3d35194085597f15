//! The `dropin.cache` format: per candidate file, its stat tuple and what it offers or why it
//! was rejected.
//!
//! JSON, so a person can read it when asking "why is my plugin not found?". An entry is
//! trusted only while the file's size, mtime (ns), device and inode are unchanged, and only if
//! the file was already at least [`FRESHNESS`] old when the cache was written: a file changed
//! within the same timestamp tick as the cache write could otherwise change again unseen.

use crate::library::LoadError;
use crate::record::PluginRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bumped whenever the layout of this file changes; a cache of another format is discarded.
pub const FORMAT_VERSION: u32 = 1;

/// How old a file must be, when the cache is written, for its entry to be trusted later.
pub const FRESHNESS: Duration = Duration::from_secs(2);

/// What probing a candidate found.
pub type Outcome = Result<PluginRecord, LoadError>;

/// The identity of a file's current contents, as far as `stat` can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    pub size: u64,
    pub mtime_ns: i64,
    pub dev: u64,
    pub ino: u64,
}

impl FileStat {
    /// The stat of the regular file at `path` (following symlinks); an error for anything else.
    pub fn of(path: &Path) -> std::io::Result<Self> {
        Self::from_metadata(&std::fs::metadata(path)?)
    }

    /// The stat of a directory entry, without walking its path again unless it is a symlink.
    pub fn of_entry(entry: &std::fs::DirEntry) -> std::io::Result<Self> {
        let meta = entry.metadata()?;
        if meta.is_symlink() {
            return Self::of(&entry.path());
        }
        Self::from_metadata(&meta)
    }

    fn from_metadata(meta: &std::fs::Metadata) -> std::io::Result<Self> {
        if !meta.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(Self {
            size: meta.size(),
            // Nanoseconds since the epoch fit an i64 until the year 2262.
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// One candidate file's cached result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub stat: FileStat,
    pub outcome: Outcome,
}

/// The contents of one `dropin.cache`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheFile {
    pub format: u32,
    /// The plugin-api version of the host that wrote it: another host may judge files differently.
    pub interface: String,
    /// The plugin directory this cache describes (a per-user cache names it; a file copied from
    /// another directory is not trusted).
    pub directory: PathBuf,
    /// When the cache was written, in ns since the Unix epoch.
    pub written_ns: i64,
    /// By file name within the directory.
    pub entries: BTreeMap<String, Entry>,
}

/// Why a cache file could not be used.
#[derive(Debug, PartialEq, Eq)]
pub enum Unusable {
    /// Written by another format or interface version (or for another directory): discarded quietly.
    Outdated,
    /// Not a cache file at all: discarded with a warning.
    Corrupt(String),
}

/// Just enough of the file to tell a cache of another version from a corrupt one.
#[derive(Deserialize)]
struct Header {
    format: u32,
    interface: String,
    directory: PathBuf,
}

impl Header {
    fn matches(&self, directory: &Path) -> bool {
        Self::matches_fields(self.format, &self.interface, &self.directory, directory)
    }

    fn matches_fields(format: u32, interface: &str, described: &Path, directory: &Path) -> bool {
        format == FORMAT_VERSION
            && interface == plugin_api::INTERFACE_VERSION
            && described == directory
    }
}

impl CacheFile {
    pub fn new(directory: &Path, entries: BTreeMap<String, Entry>) -> Self {
        Self {
            format: FORMAT_VERSION,
            interface: plugin_api::INTERFACE_VERSION.to_string(),
            directory: directory.to_path_buf(),
            written_ns: now_ns(),
            entries,
        }
    }

    /// Parses a cache for `directory`; never panics, whatever the bytes.
    pub fn parse(bytes: &[u8], directory: &Path) -> Result<Self, Unusable> {
        // Checked as UTF-8 once, whole: parsing from a `str` spares serde_json checking every
        // string on its own, a tenth of the parse.
        let text = std::str::from_utf8(bytes)
            .map_err(|e| Unusable::Corrupt(format!("not UTF-8 text: {e}")))?;
        match serde_json::from_str::<Self>(text) {
            Ok(cache) if cache.describes(directory) => Ok(cache),
            Ok(_) => Err(Unusable::Outdated),
            // Another format may not parse as this one: only a header that does not parse
            // either makes the file corrupt.
            Err(error) => match serde_json::from_str::<Header>(text) {
                Ok(header) if !header.matches(directory) => Err(Unusable::Outdated),
                _ => Err(Unusable::Corrupt(error.to_string())),
            },
        }
    }

    fn describes(&self, directory: &Path) -> bool {
        Header::matches_fields(self.format, &self.interface, &self.directory, directory)
    }

    /// Compact JSON: the cache is read on every listing, and `jq` makes it readable. JSON
    /// holds text only, so a directory whose name is not UTF-8 has no cache (its plugins are
    /// probed every time): an error naming the reason.
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let mut bytes =
            serde_json::to_vec(self).map_err(|e| format!("cannot be written as JSON: {e}"))?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Removes the entry for `name`, returning its outcome if it still describes the file
    /// whose stat is `stat`. Taking rather than copying leaves only the entries of files that
    /// are gone.
    pub fn take_valid(&mut self, name: &str, stat: &FileStat) -> Option<Outcome> {
        let old_enough =
            self.written_ns.saturating_sub(stat.mtime_ns) >= FRESHNESS.as_nanos() as i64;
        self.entries
            .remove(name)
            .filter(|entry| entry.stat == *stat && old_enough)
            .map(|entry| entry.outcome)
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> CacheFile {
        let stat = FileStat {
            size: 10,
            mtime_ns: 1,
            dev: 2,
            ino: 3,
        };
        let plugin = PluginRecord::new("x", "d", &[], "1.0.0");
        let entries = BTreeMap::from([
            (
                "libx.so".to_string(),
                Entry {
                    stat,
                    outcome: Ok(plugin),
                },
            ),
            (
                "liby.so".to_string(),
                Entry {
                    stat,
                    outcome: Err(LoadError::Crashed { signal: 11 }),
                },
            ),
        ]);
        CacheFile::new(Path::new("/plugins"), entries)
    }

    #[test]
    fn round_trips() {
        let cache = sample();
        assert_eq!(
            CacheFile::parse(&cache.to_bytes().unwrap(), Path::new("/plugins")),
            Ok(cache)
        );
    }

    #[test]
    fn another_version_or_directory_is_outdated_not_corrupt() {
        let cache = sample();
        assert_eq!(
            CacheFile::parse(&cache.to_bytes().unwrap(), Path::new("/other")),
            Err(Unusable::Outdated)
        );
        let mut old = cache.clone();
        old.format = FORMAT_VERSION + 1;
        assert_eq!(
            CacheFile::parse(&old.to_bytes().unwrap(), Path::new("/plugins")),
            Err(Unusable::Outdated)
        );
        old = cache;
        old.interface = "0.9.0".into();
        assert_eq!(
            CacheFile::parse(&old.to_bytes().unwrap(), Path::new("/plugins")),
            Err(Unusable::Outdated)
        );
    }

    #[test]
    fn empty_and_truncated_files_are_corrupt() {
        let bytes = sample().to_bytes().unwrap();
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 3] {
            let parsed = CacheFile::parse(&bytes[..cut], Path::new("/plugins"));
            assert!(
                matches!(parsed, Err(Unusable::Corrupt(_))),
                "cut at {cut}: {parsed:?}"
            );
        }
    }

    #[test]
    fn an_entry_is_taken_only_for_the_same_stat_and_an_old_enough_file() {
        let mut written = sample();
        let stat = written.entries["libx.so"].stat;
        written.written_ns = stat.mtime_ns + FRESHNESS.as_nanos() as i64;
        let mut cache = written.clone();
        assert!(cache.take_valid("libx.so", &stat).is_some());
        assert!(cache.take_valid("libx.so", &stat).is_none(), "taken");
        assert!(cache.take_valid("libz.so", &stat).is_none());
        for changed in [
            FileStat { size: 11, ..stat },
            FileStat {
                mtime_ns: 0,
                ..stat
            },
            FileStat { dev: 9, ..stat },
            FileStat { ino: 9, ..stat },
        ] {
            let mut cache = written.clone();
            assert!(
                cache.take_valid("libx.so", &changed).is_none(),
                "{changed:?}"
            );
        }
        cache = written;
        cache.written_ns -= 1;
        assert!(
            cache.take_valid("libx.so", &stat).is_none(),
            "written too soon after the file"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = CacheFile::parse(&bytes, Path::new("/plugins"));
        }

        #[test]
        fn mutated_caches_never_panic(position in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
            let mut bytes = sample().to_bytes().unwrap();
            let at = position.index(bytes.len());
            bytes[at] = byte;
            bytes.truncate(cut.index(bytes.len() + 1).max(at));
            let _ = CacheFile::parse(&bytes, Path::new("/plugins"));
        }
    }
}
