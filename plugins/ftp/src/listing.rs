//! Directory listings: LIST (for people, `ls -l` style), NLST (names), MLSD and MLST
//! (RFC 3659 facts), and the time formats of MDTM.
//!
//! Listings are written as they are read, in chunks, so a directory of a million entries costs
//! no more memory than one of ten. Owners are shown as `ftp`, as vsftpd's `hide_ids` does: the
//! server's account names are nobody's business.

use crate::names;
use crate::tree::Tree;
use crate::vpath::VirtualPath;
use cap_std::fs::{Metadata, MetadataExt};
use chrono::{DateTime, Utc};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime};

/// How much of a listing is gathered before it is handed to the connection.
pub const CHUNK: usize = 64 * 1024;

/// Entries older than this show their year in LIST instead of their time, as `ls -l` does.
const RECENT: Duration = Duration::from_secs(180 * 24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `ls -l` lines.
    List,
    /// Names only.
    Names,
    /// RFC 3659 facts, then the name.
    Facts,
}

/// The facts MLSD and MLST show; clients choose with `OPTS MLST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub kind: bool,
    pub size: bool,
    pub modify: bool,
    pub perm: bool,
}

impl Default for Facts {
    fn default() -> Self {
        Self {
            kind: true,
            size: true,
            modify: true,
            perm: true,
        }
    }
}

impl Facts {
    /// The FEAT line: every fact, the enabled ones starred.
    pub fn feature(&self) -> String {
        let star = |on: bool| if on { "*" } else { "" };
        format!(
            "MLST type{};size{};modify{};perm{};",
            star(self.kind),
            star(self.size),
            star(self.modify),
            star(self.perm)
        )
    }

    /// `OPTS MLST type;size;`: enables exactly the facts named (unknown ones are ignored).
    pub fn select(list: &str) -> Self {
        let named: Vec<String> = list
            .split(';')
            .map(|f| f.trim().to_ascii_lowercase())
            .collect();
        let has = |fact: &str| named.iter().any(|n| n == fact);
        Self {
            kind: has("type"),
            size: has("size"),
            modify: has("modify"),
            perm: has("perm"),
        }
    }

    /// The enabled facts, as `OPTS MLST` confirms them.
    pub fn enabled(&self) -> String {
        [
            (self.kind, "type;"),
            (self.size, "size;"),
            (self.modify, "modify;"),
            (self.perm, "perm;"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect()
    }

    /// `type=file;size=12;modify=20261122000000;perm=r;` for an entry.
    pub fn of(&self, meta: &Metadata, read_only: bool) -> String {
        let mut facts = String::new();
        if self.kind {
            facts += match () {
                _ if meta.is_dir() => "type=dir;",
                _ if meta.is_file() => "type=file;",
                _ => "type=OS.unix=slink;",
            };
        }
        if self.size {
            facts += &format!("size={};", meta.len());
        }
        if self.modify {
            if let Ok(modified) = meta.modified() {
                facts += &format!("modify={};", timestamp(modified.into_std()));
            }
        }
        if self.perm {
            // RFC 3659's letters for what this user may do with the entry.
            facts += match (meta.is_dir(), read_only) {
                (true, true) => "perm=el;",
                (true, false) => "perm=elcmpdf;",
                (false, true) => "perm=r;",
                (false, false) => "perm=radfw;",
            };
        }
        facts
    }
}

/// `YYYYMMDDHHMMSS` in UTC, as MDTM and MLSD write times.
pub fn timestamp(time: SystemTime) -> String {
    DateTime::<Utc>::from(time)
        .format("%Y%m%d%H%M%S")
        .to_string()
}

/// How each entry of a listing is written.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub format: Format,
    pub facts: Facts,
    pub read_only: bool,
}

impl Style {
    /// One entry's line, with its line end; `None` if the entry is not shown (see `names`).
    pub fn line(&self, name: &[u8], meta: &Metadata, now: SystemTime) -> Option<Vec<u8>> {
        let mut line = match self.format {
            Format::Names if !names::is_clean(name) => return None,
            Format::Names => name.to_vec(),
            Format::Facts if !names::is_clean(name) => return None,
            Format::Facts => {
                let mut line = self.facts.of(meta, self.read_only).into_bytes();
                line.push(b' ');
                line.extend_from_slice(name);
                line
            }
            Format::List => {
                let mut line = long_form(meta, now).into_bytes();
                line.extend_from_slice(&names::escaped(name));
                line
            }
        };
        line.extend_from_slice(b"\r\n");
        Some(line)
    }

    /// Writes the listing of `path` (a directory, or one file) in [`CHUNK`]s to `send`, which
    /// returns false to stop early (the client went away). Blocking: run it with `Tree::run`.
    pub fn write(
        &self,
        tree: &Tree,
        path: &VirtualPath,
        mut send: impl FnMut(Vec<u8>) -> bool,
    ) -> io::Result<()> {
        let now = SystemTime::now();
        let meta = tree.metadata(path)?;
        if !meta.is_dir() {
            let name = path.name().map_or(&b"/"[..], |n| n.as_bytes());
            if let Some(line) = self.line(name, &meta, now) {
                send(line);
            }
            return Ok(());
        }
        let mut chunk = Vec::with_capacity(CHUNK);
        for entry in tree.entries(path)? {
            let name = entry?.file_name();
            // An entry removed since the directory was read is simply not listed.
            let Ok(meta) = tree.describe(&path.child(&name)) else {
                continue;
            };
            if let Some(line) = self.line(name.as_bytes(), &meta, now) {
                chunk.extend_from_slice(&line);
            }
            if chunk.len() >= CHUNK && !send(std::mem::take(&mut chunk)) {
                return Ok(());
            }
        }
        if !chunk.is_empty() {
            send(chunk);
        }
        Ok(())
    }
}

/// `drwxr-xr-x    2 ftp      ftp          4096 Nov 22 10:01 ` (the name follows).
fn long_form(meta: &Metadata, now: SystemTime) -> String {
    let kind = match () {
        _ if meta.is_dir() => 'd',
        _ if meta.is_symlink() => 'l',
        _ => '-',
    };
    let mode = meta.mode();
    let mut permissions = String::with_capacity(9);
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        permissions.push(if bits & 4 != 0 { 'r' } else { '-' });
        permissions.push(if bits & 2 != 0 { 'w' } else { '-' });
        permissions.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    let modified = meta
        .modified()
        .map(|t| t.into_std())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let date = DateTime::<Utc>::from(modified);
    let recent = now
        .duration_since(modified)
        .map_or(true, |age| age < RECENT);
    let when = match recent {
        true => date.format("%b %e %H:%M"),
        false => date.format("%b %e  %Y"),
    };
    format!(
        "{kind}{permissions} {:>4} ftp      ftp      {:>12} {when} ",
        meta.nlink(),
        meta.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opts_mlst_selects_facts_and_feat_stars_them() {
        let facts = Facts::select("Size;type;bogus;");
        assert_eq!(facts.enabled(), "type;size;");
        assert_eq!(facts.feature(), "MLST type*;size*;modify;perm;");
        assert_eq!(Facts::default().enabled(), "type;size;modify;perm;");
    }

    #[test]
    fn timestamps_are_utc_digits() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(timestamp(time), "20231114221320");
    }
}
