//! Where plugins are looked for, in priority order.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The ordered list of plugin directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPath {
    dirs: Vec<PathBuf>,
}

impl SearchPath {
    /// `--plugin-dir` values first, then `HOST_PLUGIN_PATH` (colon-separated), then the directory
    /// of the executable and a `plugins/` directory beside it. Later duplicates are dropped.
    pub fn new(plugin_dirs: &[PathBuf], env_path: Option<&OsStr>, exe_dir: Option<&Path>) -> Self {
        let from_env: Vec<PathBuf> = env_path
            .map(|p| {
                std::env::split_paths(p)
                    .filter(|d| !d.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let beside_exe = exe_dir
            .map(|d| vec![d.to_path_buf(), d.join("plugins")])
            .unwrap_or_default();
        let mut dirs: Vec<PathBuf> = Vec::new();
        for dir in plugin_dirs
            .iter()
            .cloned()
            .chain(from_env)
            .chain(beside_exe)
        {
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        Self { dirs }
    }

    /// The directories, highest priority first.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_flags_then_environment_then_executable() {
        let path = SearchPath::new(
            &[PathBuf::from("/a"), PathBuf::from("/b")],
            Some(OsStr::new("/c::/a:/d")),
            Some(Path::new("/bin")),
        );
        let dirs: Vec<_> = path.dirs().iter().map(|d| d.to_str().unwrap()).collect();
        assert_eq!(dirs, ["/a", "/b", "/c", "/d", "/bin", "/bin/plugins"]);
    }
}
