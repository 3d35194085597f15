//! Paths as the client sees them: absolute, below the root, `..` never above it.
//!
//! A client's path is resolved here against the current directory without touching the
//! filesystem; what it names is then opened through the session's cap-std directory (see
//! `tree`), which refuses symlinks that lead outside. Two layers: this one refuses `..` above
//! the root; cap-std makes escaping impossible whatever the path.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// A normalized path below the root: its components, none empty, `.` or `..`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VirtualPath(Vec<OsString>);

impl VirtualPath {
    pub fn root() -> Self {
        Self::default()
    }

    /// `arg` resolved against this directory (from the root if it starts with `/`); `None` if
    /// its `..` climb above the root, which no file is.
    pub fn resolve(&self, arg: &[u8]) -> Option<Self> {
        let mut components = match arg.first() {
            Some(b'/') => Vec::new(),
            _ => self.0.clone(),
        };
        for part in arg.split(|&b| b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => {
                    components.pop()?;
                }
                name => components.push(OsString::from_vec(name.to_vec())),
            }
        }
        Some(Self(components))
    }

    /// The entry `name` of this directory.
    pub fn child(&self, name: &OsStr) -> Self {
        let mut components = self.0.clone();
        components.push(name.to_os_string());
        Self(components)
    }

    /// The directory above, or the root itself.
    pub fn parent(&self) -> Self {
        Self(self.0[..self.0.len().saturating_sub(1)].to_vec())
    }

    /// The last component; `None` for the root.
    pub fn name(&self) -> Option<&OsStr> {
        self.0.last().map(OsString::as_os_str)
    }

    /// The path relative to the root directory, for cap-std (`.` for the root itself).
    pub fn relative(&self) -> PathBuf {
        match self.0.is_empty() {
            true => PathBuf::from("."),
            false => self.0.iter().collect(),
        }
    }

    /// The path as the client sees it: `/`, `/sub/b.txt`.
    pub fn absolute(&self) -> Vec<u8> {
        if self.0.is_empty() {
            return b"/".to_vec();
        }
        let mut path = Vec::new();
        for component in &self.0 {
            path.push(b'/');
            path.extend_from_slice(component.as_bytes());
        }
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(path: &str) -> VirtualPath {
        VirtualPath::root().resolve(path.as_bytes()).unwrap()
    }

    #[test]
    fn dot_dot_never_climbs_above_the_root() {
        for path in [
            "..",
            "/../outside.txt",
            "../../../../etc/passwd",
            "sub/../../x",
            "/a/../..",
        ] {
            assert_eq!(VirtualPath::root().resolve(path.as_bytes()), None, "{path}");
        }
        for (path, expected) in [("a/./b//c/", "/a/b/c"), ("", "/"), ("a/../b", "/b")] {
            assert_eq!(at(path).absolute(), expected.as_bytes(), "{path}");
        }
        assert_eq!(VirtualPath::root().parent(), VirtualPath::root());
    }

    #[test]
    fn relative_paths_start_from_the_current_directory() {
        let sub = at("/sub");
        let resolve = |arg: &[u8]| sub.resolve(arg).unwrap();
        assert_eq!(resolve(b"b.txt").absolute(), b"/sub/b.txt");
        assert_eq!(resolve(b"/a.txt").absolute(), b"/a.txt");
        assert_eq!(resolve(b"..").relative(), PathBuf::from("."));
        assert_eq!(resolve(b"x/y").relative(), PathBuf::from("sub/x/y"));
        assert_eq!(at("/sub/b.txt").parent(), sub);
    }
}
