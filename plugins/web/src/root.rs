//! The served root: a directory descriptor under which the kernel resolves every request.
//!
//! Without `--follow-symlinks`, paths are opened with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS)` relative to the root's descriptor: a symlink (absolute or relative,
//! file or directory, created before or during the request) that would lead outside the root
//! fails with `EXDEV`. Unlike canonicalizing a path and checking its prefix, nothing can change
//! between the check and the open, because they are one system call. With
//! `--follow-symlinks`, plain `openat` follows symlinks wherever they lead.

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The served directory.
pub struct Root {
    fd: OwnedFd,
    follow_symlinks: bool,
}

/// What a path names under the root.
pub enum Opened {
    File(OpenFile),
    Dir,
}

/// A regular file, opened, with what `fstat` said about it at that moment.
pub struct OpenFile {
    pub file: File,
    pub len: u64,
    pub modified: SystemTime,
}

/// One entry of a directory listing.
pub struct Listed {
    pub name: Vec<u8>,
    pub is_dir: bool,
    pub len: u64,
    pub modified: SystemTime,
}

/// Opens `rel` with these flags: for reading, never blocking on a FIFO, never becoming our
/// controlling terminal.
const READ: OFlags = OFlags::RDONLY
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);

impl Root {
    /// Opens the directory `path`. Fails at start-up, with one line, if the kernel lacks
    /// `openat2` (Linux before 5.6) and symlinks are to be confined.
    pub fn open(path: &Path, follow_symlinks: bool) -> Result<Self, String> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("cannot serve {}: {}", path.display(), io::Error::from(e)))?;
        let root = Self {
            fd,
            follow_symlinks,
        };
        root.resolve(Path::new("."), OFlags::PATH | OFlags::CLOEXEC)
            .map_err(|e| {
                format!(
                    "cannot serve {}: confining paths to it needs openat2 (Linux 5.6 or later): {e}",
                    path.display()
                )
            })?;
        Ok(root)
    }

    /// Opens what `rel` names: a regular file or a directory. FIFOs, sockets and devices are
    /// refused (`NotRegular`), without blocking on them.
    ///
    /// The one place where served files are opened (when `plugin_api::files` lands, its
    /// checks belong here).
    pub fn open_entry(&self, rel: &Path) -> io::Result<Opened> {
        let fd = self.resolve(rel, READ)?;
        let stat = rustix::fs::fstat(&fd)?;
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => Ok(Opened::Dir),
            FileType::RegularFile => Ok(Opened::File(OpenFile {
                file: File::from(fd),
                len: u64::try_from(stat.st_size).unwrap_or(0),
                modified: modified(&stat),
            })),
            _ => Err(not_regular()),
        }
    }

    /// Opens `rel` only if it is a regular file.
    pub fn open_file(&self, rel: &Path) -> io::Result<OpenFile> {
        match self.open_entry(rel)? {
            Opened::File(file) => Ok(file),
            Opened::Dir => Err(not_regular()),
        }
    }

    /// The entries of the directory `rel` that can be served (each resolved under the root,
    /// so a symlink leading outside is left out), at most `limit` of them, and whether there
    /// were more. Hidden names are left out unless `show_hidden`.
    pub fn list(
        &self,
        rel: &Path,
        show_hidden: bool,
        limit: usize,
    ) -> io::Result<(Vec<Listed>, bool)> {
        let fd = self.resolve(rel, READ | OFlags::DIRECTORY)?;
        let mut dir = rustix::fs::Dir::new(fd)?;
        let mut listed = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." || (!show_hidden && name.starts_with(b".")) {
                continue;
            }
            if listed.len() == limit {
                return Ok((listed, true));
            }
            let path = rel.join(OsStr::from_bytes(name));
            let Ok(target) = self.resolve(&path, OFlags::PATH | OFlags::CLOEXEC) else {
                continue;
            };
            let Ok(stat) = rustix::fs::fstat(&target) else {
                continue;
            };
            let is_dir = match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory => true,
                FileType::RegularFile => false,
                _ => continue,
            };
            listed.push(Listed {
                name: name.to_vec(),
                is_dir,
                len: u64::try_from(stat.st_size).unwrap_or(0),
                modified: modified(&stat),
            });
        }
        Ok((listed, false))
    }

    fn resolve(&self, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        if self.follow_symlinks {
            return Ok(rustix::fs::openat(&self.fd, rel, flags, Mode::empty())?);
        }
        let beneath = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        // EAGAIN: a rename elsewhere raced with the lookup; the kernel asks us to try again.
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(&self.fd, rel, flags, Mode::empty(), beneath) {
                Err(Errno::AGAIN) if tries < 8 => tries += 1,
                other => return Ok(other?),
            }
        }
    }
}

fn not_regular() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "not a regular file")
}

fn modified(stat: &Stat) -> SystemTime {
    let seconds = u64::try_from(stat.st_mtime).unwrap_or(0);
    let nanos = u32::try_from(stat.st_mtime_nsec).unwrap_or(0);
    UNIX_EPOCH + Duration::new(seconds, nanos.min(999_999_999))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("web-root-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("root/sub")).unwrap();
        std::fs::write(dir.join("root/sub/a.txt"), "a").unwrap();
        std::fs::write(dir.join("secret.txt"), "secret").unwrap();
        symlink("../secret.txt", dir.join("root/out")).unwrap();
        symlink(dir.join("secret.txt"), dir.join("root/abs")).unwrap();
        symlink("sub/a.txt", dir.join("root/in")).unwrap();
        symlink("..", dir.join("root/sub/up")).unwrap();
        dir
    }

    #[test]
    fn symlinks_stay_inside_unless_followed() {
        let dir = scratch("confine");
        let root = Root::open(&dir.join("root"), false).unwrap();
        assert!(root.open_file(Path::new("sub/a.txt")).is_ok());
        assert!(
            root.open_file(Path::new("in")).is_ok(),
            "a link inside the root works"
        );
        assert!(root.open_file(Path::new("sub/up/sub/a.txt")).is_ok());
        for escaping in [
            "out",
            "abs",
            "sub/up/../secret.txt",
            "../secret.txt",
            "/etc/passwd",
        ] {
            assert!(root.open_file(Path::new(escaping)).is_err(), "{escaping}");
        }
        let (listed, more) = root.list(Path::new(""), false, 100).unwrap();
        let mut names: Vec<_> = listed
            .iter()
            .map(|l| String::from_utf8_lossy(&l.name).into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["in", "sub"], "escaping links are not listed");
        assert!(!more);
        let followed = Root::open(&dir.join("root"), true).unwrap();
        assert!(followed.open_file(Path::new("out")).is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn fifos_are_refused_without_blocking() {
        let dir = scratch("fifo");
        let fifo = dir.join("root/fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::RUSR | Mode::WUSR,
            0,
        )
        .unwrap();
        let root = Root::open(&dir.join("root"), false).unwrap();
        assert!(root.open_entry(Path::new("fifo")).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
