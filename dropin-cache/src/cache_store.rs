//! Where a directory's cache lives, and writing it safely.
//!
//! The cache lives in the plugin directory itself (`DIR/dropin.cache`). When that cannot be
//! written (a read-only install, Twisted's most-reported plugin bug) it lives in the user's
//! cache directory instead, keyed by the plugin directory's path; when neither can be written
//! the host still works, probing what changed on every run.

use crate::cache_file::{CacheFile, Entry, FileStat, Outcome, Unusable};
use plugin_api::files;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The name of the cache file in a plugin directory.
pub const CACHE_NAME: &str = "dropin.cache";

/// The largest cache read. A directory of a thousand plugins with long option lists makes a
/// cache of a few MiB; anything larger is not one this host wrote, and is rebuilt.
pub const CACHE_LIMIT: u64 = 64 * files::MIB;

/// The caches found for one directory, merged, and what was wrong with any of them.
pub struct LoadedCache {
    /// The usable caches; an entry is trusted only if it matches the file's stat, so which
    /// cache supplies it does not matter.
    caches: Vec<CacheFile>,
    /// The files read.
    pub read_from: Vec<PathBuf>,
    /// One line for each cache that could not be read or was not a cache at all.
    pub problems: Vec<String>,
}

impl LoadedCache {
    /// Takes `name`'s entry out of every cache; its outcome if one still describes the file.
    pub fn take_valid(&mut self, name: &str, stat: &FileStat) -> Option<Outcome> {
        let mut found = None;
        for cache in &mut self.caches {
            let taken = cache.take_valid(name, stat);
            found = found.or(taken);
        }
        found
    }

    /// Whether a cache still describes files that were not taken: files that are gone.
    pub fn describes_missing_files(&self) -> bool {
        self.caches.iter().any(|c| !c.entries.is_empty())
    }
}

/// The places a cache for `dir` may be, in the order they are tried for writing.
pub fn locations(dir: &Path) -> Vec<PathBuf> {
    let mut places = vec![dir.join(CACHE_NAME)];
    places.extend(user_cache(dir));
    places
}

/// `$XDG_CACHE_HOME/host/dropin/<hash of DIR>.cache`, or under `~/.cache` when it is unset.
fn user_cache(dir: &Path) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))?;
    let key = fnv1a(dir.as_os_str().as_encoded_bytes());
    Some(base.join("host/dropin").join(format!("{key:016x}.cache")))
}

/// A stable hash for file names (std's hasher may change between Rust releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Reads every cache for `dir`, setting aside those that cannot be used.
pub fn load(dir: &Path) -> LoadedCache {
    let mut loaded = LoadedCache {
        caches: Vec::new(),
        read_from: Vec::new(),
        problems: Vec::new(),
    };
    for place in locations(dir) {
        let bytes = match files::read_regular(&place, CACHE_LIMIT) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                loaded.problems.push(format!(
                    "cannot read the plugin cache {}: {e}; rebuilding it",
                    place.display()
                ));
                continue;
            }
        };
        match CacheFile::parse(&bytes, dir) {
            Ok(cache) => {
                loaded.read_from.push(place);
                loaded.caches.push(cache);
            }
            Err(Unusable::Outdated) => {}
            Err(Unusable::Corrupt(why)) => loaded.problems.push(format!(
                "ignoring a corrupt plugin cache, rebuilding it: {}: {why}",
                place.display()
            )),
        }
    }
    loaded
}

/// Writes the cache for `dir` to the first place that takes it; returns that place, or every
/// place's error.
pub fn save(dir: &Path, entries: BTreeMap<String, Entry>) -> Result<PathBuf, String> {
    write_first(dir, &CacheFile::new(dir, entries))
}

/// Replaces the entry for the file `name` in `dir`'s cache (a library that changed without its
/// stat tuple changing), leaving the other entries as they were.
pub fn refresh(dir: &Path, name: &str, entry: Entry) -> Result<PathBuf, String> {
    let mut cache = locations(dir)
        .iter()
        .find_map(|place| {
            let bytes = files::read_regular(place, CACHE_LIMIT).ok()?;
            CacheFile::parse(&bytes, dir).ok()
        })
        .unwrap_or_else(|| CacheFile::new(dir, BTreeMap::new()));
    // `written_ns` is kept: it dates the other entries, which were not probed again.
    cache.entries.insert(name.to_string(), entry);
    write_first(dir, &cache)
}

fn write_first(dir: &Path, cache: &CacheFile) -> Result<PathBuf, String> {
    let bytes = cache.to_bytes()?;
    let mut errors = Vec::new();
    for place in locations(dir) {
        match write_atomically(&place, &bytes) {
            Ok(()) => return Ok(place),
            Err(e) => errors.push(format!("{}: {e}", place.display())),
        }
    }
    Err(errors.join("; "))
}

/// A temporary file in the same directory, fsync, rename: readers see the old cache or the new
/// one, never a half-written one, however many hosts write at once. The temporary file is
/// `tempfile`'s: a random name, created with `O_EXCL`, so nothing planted at a predictable name
/// (a symlink to a file worth destroying) is ever written through; and rename replaces a
/// symlink at `place` itself, never its target.
fn write_atomically(place: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = place.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let prefix = format!(
        ".{}.",
        place.file_name().unwrap_or_default().to_string_lossy()
    );
    let mut file = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        // Readable by every user of the plugin directory, writable by its owner only.
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(place).map_err(|e| e.error)?;
    Ok(())
}
