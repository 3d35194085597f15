//! The served root: a directory descriptor under which the kernel resolves every request.
//!
//! A path is first opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` relative to
//! the root's descriptor: one system call, and nothing on the way can be a symlink, so nothing
//! can change between a check and the open. Only when a symlink is on the way (`ELOOP`) does
//! the slower path run:
//! - without `--follow-symlinks`, `RESOLVE_BENEATH` alone: a relative link that stays inside
//!   works, and one that leads outside fails with `EXDEV`. An absolute link, or one that goes
//!   up and comes back, also fails there although its target may be inside the root (nginx
//!   and Apache serve those), so it is opened again following links, and kept only if the file
//!   the descriptor names (`/proc/self/fd`) lies under the root;
//! - with `--follow-symlinks`, plain `openat`, wherever the links lead.
//!
//! Either way, when dotfiles are hidden the file actually opened is checked too, so a link
//! named `vis` cannot publish `.git` or `.env`. Without `/proc` (a chroot that lacks it) where
//! a link leads cannot be known, and such links are refused rather than guessed.

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;
use std::collections::BinaryHeap;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The served directory.
pub struct Root {
    fd: OwnedFd,
    follow_symlinks: bool,
    show_hidden: bool,
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
    pub fn open(path: &Path, follow_symlinks: bool, show_hidden: bool) -> Result<Self, String> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("cannot serve {}: {}", path.display(), io::Error::from(e)))?;
        let root = Self {
            fd,
            follow_symlinks,
            show_hidden,
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

    /// The entries of the directory `rel` that can be served (each resolved as a request for
    /// it would be, so a symlink leading outside is left out): the first `limit` names in byte
    /// order, and how many names the directory holds. Hidden names are left out unless shown.
    ///
    /// Every name is read but only `limit` are kept (the smallest so far, in a heap), so a
    /// directory of millions of entries costs memory for `limit` of them, and the page shows
    /// the first names in order rather than whichever the file system returned first.
    pub fn list(&self, rel: &Path, limit: usize) -> io::Result<(Vec<Listed>, usize)> {
        let fd = self.resolve(rel, READ | OFlags::DIRECTORY)?;
        let mut dir = rustix::fs::Dir::new(fd)?;
        let mut first = BinaryHeap::with_capacity(limit.saturating_add(1).min(1 << 16));
        let mut count = 0;
        while let Some(entry) = dir.read() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." || (!self.show_hidden && is_hidden(name)) {
                continue;
            }
            count += 1;
            if first.len() < limit {
                first.push(name.to_vec());
            } else if first.peek().is_some_and(|last| name < last.as_slice()) {
                first.pop();
                first.push(name.to_vec());
            }
        }
        let mut listed = Vec::with_capacity(first.len());
        for name in first.into_vec() {
            let path = rel.join(OsStr::from_bytes(&name));
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
                name,
                is_dir,
                len: u64::try_from(stat.st_size).unwrap_or(0),
                modified: modified(&stat),
            });
        }
        Ok((listed, count))
    }

    /// Opens `rel` under the root as the module's comment says.
    fn resolve(&self, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let strict = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
        match self.openat2(rel, flags, strict) {
            Err(Errno::LOOP) => {}
            other => return Ok(other?),
        }
        let fd = match self.follow_symlinks {
            true => rustix::fs::openat(&self.fd, rel, flags, Mode::empty())?,
            false => match self.openat2(rel, flags, ResolveFlags::BENEATH) {
                Err(Errno::XDEV) => {
                    let fd = rustix::fs::openat(&self.fd, rel, flags, Mode::empty())?;
                    self.beneath(&fd)?;
                    fd
                }
                other => other?,
            },
        };
        if !self.show_hidden {
            let shown = match self.beneath(&fd) {
                Ok(below) => below,
                // Outside the root (a followed link) every name counts: `~/.ssh` stays hidden.
                Err(_) => self.target(&fd)?,
            };
            if shown
                .as_os_str()
                .as_bytes()
                .split(|&b| b == b'/')
                .any(is_hidden)
            {
                return Err(Errno::NOENT.into());
            }
        }
        Ok(fd)
    }

    fn openat2(&self, rel: &Path, flags: OFlags, how: ResolveFlags) -> Result<OwnedFd, Errno> {
        let how = how | ResolveFlags::NO_MAGICLINKS;
        // EAGAIN: a rename elsewhere raced with the lookup; the kernel asks us to try again.
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(&self.fd, rel, flags, Mode::empty(), how) {
                Err(Errno::AGAIN) if tries < 8 => tries += 1,
                other => return other,
            }
        }
    }

    /// Where `fd`'s file lies, relative to the root; `EXDEV` if outside it.
    fn beneath(&self, fd: &OwnedFd) -> io::Result<PathBuf> {
        let root = self.target(&self.fd)?;
        let target = self.target(fd)?;
        match target.strip_prefix(&root) {
            Ok(below) => Ok(below.to_path_buf()),
            Err(_) => Err(Errno::XDEV.into()),
        }
    }

    /// The path the kernel has for the file `fd` names. Without `/proc`, or for a file
    /// deleted since, there is none to trust: `EXDEV`, which callers treat as "not served".
    fn target(&self, fd: &OwnedFd) -> io::Result<PathBuf> {
        let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let path = std::fs::read_link(link).map_err(|_| io::Error::from(Errno::XDEV))?;
        match path.as_os_str().as_bytes().ends_with(b" (deleted)") || !path.is_absolute() {
            true => Err(Errno::XDEV.into()),
            false => Ok(path),
        }
    }
}

/// Whether a name is hidden from clients unless `--show-dotfiles`: `.git`, `.env`.
pub fn is_hidden(name: &[u8]) -> bool {
    name.starts_with(b".")
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
        symlink(dir.join("root/sub/a.txt"), dir.join("root/abs-in")).unwrap();
        symlink("../root/sub", dir.join("root/round-trip")).unwrap();
        std::fs::create_dir_all(dir.join("root/.git")).unwrap();
        std::fs::write(dir.join("root/.git/config"), "[core]").unwrap();
        symlink(".git", dir.join("root/visible")).unwrap();
        symlink(".git/config", dir.join("root/config")).unwrap();
        dir
    }

    fn names(listed: &[Listed]) -> Vec<String> {
        let mut names: Vec<_> = listed
            .iter()
            .map(|l| String::from_utf8_lossy(&l.name).into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn symlinks_stay_inside_unless_followed() {
        let dir = scratch("confine");
        let root = Root::open(&dir.join("root"), false, true).unwrap();
        assert!(root.open_file(Path::new("sub/a.txt")).is_ok());
        for inside in ["in", "sub/up/sub/a.txt", "abs-in", "round-trip/a.txt"] {
            assert!(root.open_file(Path::new(inside)).is_ok(), "{inside}");
        }
        for escaping in [
            "out",
            "abs",
            "sub/up/../secret.txt",
            "../secret.txt",
            "/etc/passwd",
        ] {
            assert!(root.open_file(Path::new(escaping)).is_err(), "{escaping}");
        }
        let (listed, count) = root.list(Path::new(""), 100).unwrap();
        assert_eq!(
            names(&listed),
            [
                ".git",
                "abs-in",
                "config",
                "in",
                "round-trip",
                "sub",
                "visible"
            ],
            "escaping links are not listed"
        );
        assert_eq!(count, 9);
        let followed = Root::open(&dir.join("root"), true, true).unwrap();
        assert!(followed.open_file(Path::new("out")).is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_link_does_not_show_a_hidden_name() {
        let dir = scratch("hidden");
        for follow in [false, true] {
            let root = Root::open(&dir.join("root"), follow, false).unwrap();
            for hidden in ["visible/config", "config"] {
                assert!(root.open_file(Path::new(hidden)).is_err(), "{hidden}");
            }
            assert!(root.open_file(Path::new("abs-in")).is_ok());
            let (listed, count) = root.list(Path::new(""), 100).unwrap();
            let shown = names(&listed);
            assert!(
                !shown.iter().any(|n| n == "visible" || n == "config"),
                "{shown:?}"
            );
            assert_eq!(count, 8, "names counted, hidden ones left out");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_long_listing_keeps_the_first_names_in_order() {
        let dir = scratch("long");
        let many = dir.join("root/many");
        std::fs::create_dir(&many).unwrap();
        for n in (0..300).rev() {
            std::fs::write(many.join(format!("f{n:03}")), "").unwrap();
        }
        let root = Root::open(&dir.join("root"), false, false).unwrap();
        let (listed, count) = root.list(Path::new("many"), 100).unwrap();
        assert_eq!(count, 300);
        let expected: Vec<_> = (0..100).map(|n| format!("f{n:03}")).collect();
        assert_eq!(names(&listed), expected);
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
        let root = Root::open(&dir.join("root"), false, false).unwrap();
        assert!(root.open_entry(Path::new("fifo")).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
