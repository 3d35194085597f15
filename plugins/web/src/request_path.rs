//! The request target's path: percent-decoded exactly once, split into names, and normalized
//! so that it can only name something under the root.
//!
//! This is the first of two locks. The second is the kernel's: every name that survives here
//! is opened with `openat2(RESOLVE_BENEATH)` below the root's descriptor (see `root`), so
//! even a path this module got wrong could not leave the root.

use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// What is escaped in a path segment we write (a link or a redirect): everything but RFC 3986's
/// unreserved characters, so any file name survives a round trip through a browser.
pub const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A request path that names something under the root.
#[derive(Debug, PartialEq, Eq)]
pub struct RequestPath {
    /// The names from the root down, decoded; none is empty, `.`, `..`, or holds `/` or NUL.
    names: Vec<Vec<u8>>,
    /// Whether the path ended with `/` (a directory asked for as one).
    pub trailing_slash: bool,
}

/// Why a request path was refused: the client gets `400 Bad Request`.
#[derive(Debug, PartialEq, Eq)]
pub enum BadPath {
    /// Not an absolute path (`*`, or an empty path).
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// A NUL byte, which no file name can hold.
    Nul,
    /// More `..` than there are names above it.
    AboveRoot,
}

impl RequestPath {
    /// Decodes and normalizes `raw`, the path part of the request target (no query).
    ///
    /// `%2f` decodes to `/` and separates names, as in nginx; `.` and empty names vanish; `..`
    /// removes the name before it, and is refused when there is none. Decoding happens once, so
    /// `%252e` is the three characters `%2e`, never a dot.
    pub fn parse(raw: &str) -> Result<Self, BadPath> {
        if !raw.starts_with('/') {
            return Err(BadPath::NotAbsolute);
        }
        let decoded = decode(raw.as_bytes())?;
        if decoded.contains(&0) {
            return Err(BadPath::Nul);
        }
        let mut names: Vec<Vec<u8>> = Vec::new();
        let mut last = &b""[..];
        for name in decoded.split(|&b| b == b'/') {
            last = name;
            match name {
                b"" | b"." => {}
                b".." => {
                    names.pop().ok_or(BadPath::AboveRoot)?;
                }
                _ => names.push(name.to_vec()),
            }
        }
        Ok(Self {
            names,
            // `/dir/.` and `/dir/sub/..` name directories just as `/dir/` does.
            trailing_slash: matches!(last, b"" | b"." | b".."),
        })
    }

    /// Whether any name is hidden (starts with a dot), like `.git` or `.env`.
    pub fn is_hidden(&self) -> bool {
        self.names.iter().any(|name| crate::root::is_hidden(name))
    }

    /// The path relative to the root (empty for the root itself).
    pub fn relative(&self) -> PathBuf {
        self.names
            .iter()
            .map(|name| OsStr::from_bytes(name))
            .collect()
    }

    /// The last name, if the path is not the root.
    pub fn last_name(&self) -> Option<&[u8]> {
        self.names.last().map(Vec::as_slice)
    }

    /// The path as a client should write it: every name percent-encoded, starting with a single
    /// `/` (so a redirect can never become `//host`, a link to another site).
    pub fn encoded(&self) -> String {
        let mut out = String::new();
        for name in &self.names {
            out.push('/');
            out.extend(percent_encode(name, SEGMENT));
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }
}

/// Percent-encodes one name for a link (`a#b?c.txt` → `a%23b%3Fc.txt`).
pub fn encode_name(name: &[u8]) -> String {
    percent_encode(name, SEGMENT).to_string()
}

/// Decodes `%XX` escapes, refusing a `%` without two hex digits after it.
fn decode(raw: &[u8]) -> Result<Vec<u8>, BadPath> {
    let mut escapes = raw.iter().enumerate().filter(|(_, &b)| b == b'%');
    if escapes.any(|(at, _)| {
        !raw.get(at + 1..at + 3)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    }) {
        return Err(BadPath::BadEscape);
    }
    Ok(percent_encoding::percent_decode(raw).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(raw: &str) -> Result<Vec<String>, BadPath> {
        RequestPath::parse(raw).map(|p| {
            p.names
                .iter()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect()
        })
    }

    #[test]
    fn plain_paths_split_into_names() {
        assert_eq!(names("/"), Ok(vec![]));
        assert_eq!(names("/a/b.txt"), Ok(vec!["a".into(), "b.txt".into()]));
        assert_eq!(names("//a///b/"), Ok(vec!["a".into(), "b".into()]));
        assert_eq!(names("/caf%C3%A9.txt"), Ok(vec!["café.txt".into()]));
        assert_eq!(names("/100%2541.txt"), Ok(vec!["100%41.txt".into()]));
        assert!(RequestPath::parse("/a/").unwrap().trailing_slash);
        assert!(!RequestPath::parse("/a").unwrap().trailing_slash);
        assert!(RequestPath::parse("/a/.").unwrap().trailing_slash);
    }

    #[test]
    fn dot_segments_normalize_but_never_climb_above_the_root() {
        assert_eq!(names("/a/../b"), Ok(vec!["b".into()]));
        assert_eq!(names("/a/./b"), Ok(vec!["a".into(), "b".into()]));
        for raw in [
            "/..",
            "/../secret",
            "/a/../../secret",
            "/%2e%2e/secret",
            "/%2E%2E%2Fsecret",
            "/.%2e/secret",
            "/a%2f..%2f..%2fsecret",
        ] {
            assert_eq!(names(raw), Err(BadPath::AboveRoot), "{raw}");
        }
    }

    #[test]
    fn malformed_paths_are_refused() {
        assert_eq!(names("*"), Err(BadPath::NotAbsolute));
        assert_eq!(names(""), Err(BadPath::NotAbsolute));
        assert_eq!(names("/a%00.txt"), Err(BadPath::Nul));
        assert_eq!(names("/a%zz"), Err(BadPath::BadEscape));
        assert_eq!(names("/a%4"), Err(BadPath::BadEscape));
        assert_eq!(names("/a%"), Err(BadPath::BadEscape));
    }

    #[test]
    fn tricks_stay_literal_names() {
        // Decoded once: a double-encoded dot is the text "%2e", not a dot.
        assert_eq!(
            names("/%252e%252e/secret"),
            Ok(vec!["%2e%2e".into(), "secret".into()])
        );
        // An overlong encoding of '.' is two bytes that are not a dot.
        let overlong = RequestPath::parse("/%c0%ae%c0%ae/secret").unwrap();
        assert_eq!(overlong.names[0], vec![0xc0, 0xae, 0xc0, 0xae]);
        // A backslash is an ordinary character in a Unix file name.
        assert_eq!(names("/..\\secret"), Ok(vec!["..\\secret".into()]));
    }

    #[test]
    fn hidden_names_are_spotted_anywhere() {
        assert!(RequestPath::parse("/.git/config").unwrap().is_hidden());
        assert!(RequestPath::parse("/a/%2eenv").unwrap().is_hidden());
        assert!(!RequestPath::parse("/a/b.txt").unwrap().is_hidden());
    }

    #[test]
    fn encoded_paths_round_trip() {
        for name in [
            "<b>x&\"'.txt",
            "a#b?c.txt",
            "100%41.txt",
            "café.txt",
            "日本.txt",
            "a b",
        ] {
            let link = encode_name(name.as_bytes());
            assert!(
                link.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
                "{link}"
            );
            assert_eq!(names(&format!("/{link}")), Ok(vec![name.to_string()]));
        }
        assert_eq!(
            RequestPath::parse("//evil.example/").unwrap().encoded(),
            "/evil.example"
        );
        assert_eq!(RequestPath::parse("/").unwrap().encoded(), "/");
    }
}
