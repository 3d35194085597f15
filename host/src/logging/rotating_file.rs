//! A log file rotated by size, like twistd's: `host.log`, then `host.log.1` (newest),
//! `host.log.2`, … up to `--log-keep`.
//!
//! Every open, reopen and rotation goes through `plugin_api::files`: a symlink, FIFO or device
//! at the log's path is refused, never written through or blocked on.

use plugin_api::files;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The most rotated files `--log-keep` may ask for. Rotation renames every rotated file that
/// exists, so this bounds the work one rotation can take.
pub const MAX_KEEP: usize = 1000;

pub struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    /// Rotate before a line would take the file past this many bytes; 0 never rotates.
    max_size: u64,
    /// How many rotated files to keep.
    keep: usize,
}

impl RotatingFile {
    pub fn open(path: &Path, max_size: u64, keep: usize) -> io::Result<Self> {
        let file = files::open_append(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            size: file.metadata()?.len(),
            file,
            max_size,
            keep,
        })
    }

    /// Writes whole lines, as few writes as rotation allows (one, unless a rotation falls
    /// among them): a busy log costs a system call per batch, not per line. Rotates before a
    /// line that would not fit.
    ///
    /// If rotating fails (say, privileges were dropped and the directory is not writable), the
    /// lines go to the current file anyway and rotation stops: losing log lines is worse than
    /// a large file.
    pub fn write_lines<'a>(&mut self, lines: impl IntoIterator<Item = &'a [u8]>) -> io::Result<()> {
        let mut pending: Vec<u8> = Vec::new();
        for line in lines {
            let size = self.size + pending.len() as u64;
            if self.max_size > 0 && size > 0 && size + line.len() as u64 > self.max_size {
                self.append(&std::mem::take(&mut pending))?;
                if let Err(e) = self.rotate() {
                    self.max_size = 0;
                    let warning = format!(
                        "[-] warning: cannot rotate {}: {e}; rotation stopped\n",
                        self.path.display()
                    );
                    self.append(warning.as_bytes())?;
                }
            }
            pending.extend_from_slice(line);
        }
        self.append(&pending)
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Opens the file at the path again: after `logrotate` moved it away (SIGUSR1). If that
    /// fails, lines go on to the file already open.
    pub fn reopen(&mut self) -> io::Result<()> {
        self.open_again().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot reopen the log file {}: {e}", self.path.display()),
            )
        })
    }

    fn open_again(&mut self) -> io::Result<()> {
        let file = files::open_append(&self.path)?;
        self.size = file.metadata()?.len();
        self.file = file;
        Ok(())
    }

    /// Shifts the rotated files that exist up by one, dropping those past `keep`, then moves
    /// the log to `.1`. The directory is read once, so the cost is that of the files there,
    /// whatever `keep` is.
    fn rotate(&mut self) -> io::Result<()> {
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
            return self.open_again();
        }
        let mut rotated = self.rotated_files()?;
        rotated.sort_unstable_by(|a, b| b.cmp(a));
        for n in rotated {
            if n >= self.keep {
                std::fs::remove_file(self.numbered(n))?;
            } else {
                std::fs::rename(self.numbered(n), self.numbered(n + 1))?;
            }
        }
        std::fs::rename(&self.path, self.numbered(1))?;
        self.open_again()
    }

    /// The numbers N of the `PATH.N` files beside the log.
    fn rotated_files(&self) -> io::Result<Vec<usize>> {
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut prefix = self.path.file_name().unwrap_or_default().to_os_string();
        prefix.push(".");
        let prefix = prefix.as_encoded_bytes();
        let mut numbers = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            let Some(number) = name.as_encoded_bytes().strip_prefix(prefix) else {
                continue;
            };
            // Only the names rotation itself writes: `host.log.7`, not `host.log.07`.
            let parsed = std::str::from_utf8(number)
                .ok()
                .and_then(|n| n.parse::<usize>().ok().filter(|p| p.to_string() == n));
            numbers.extend(parsed.filter(|n| *n > 0));
        }
        Ok(numbers)
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut name = OsString::from(&self.path);
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_in(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("host-rotate-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_batch_rotates_between_its_lines_as_single_lines_would() {
        let dir = scratch("batch");
        let path = dir.join("host.log");
        let mut log = RotatingFile::open(&path, 20, 2).unwrap();
        let lines: Vec<String> = (0..10).map(|n| format!("line {n:02}\n")).collect();
        log.write_lines(lines.iter().map(String::as_bytes)).unwrap();
        assert_eq!(lines_in(&path), ["line 08", "line 09"]);
        assert_eq!(lines_in(&dir.join("host.log.1")), ["line 06", "line 07"]);
        assert_eq!(lines_in(&dir.join("host.log.2")), ["line 04", "line 05"]);
        assert!(!dir.join("host.log.3").exists());
    }

    #[test]
    fn rotates_by_size_and_keeps_the_newest_files() {
        let dir = scratch("keep");
        let path = dir.join("host.log");
        let mut log = RotatingFile::open(&path, 20, 2).unwrap();
        for n in 0..10 {
            log.write_lines([format!("line {n:02}\n").as_bytes()])
                .unwrap();
        }
        // Eight-byte lines, at most 20 bytes a file: two lines each.
        assert_eq!(lines_in(&path), ["line 08", "line 09"]);
        assert_eq!(lines_in(&dir.join("host.log.1")), ["line 06", "line 07"]);
        assert_eq!(lines_in(&dir.join("host.log.2")), ["line 04", "line 05"]);
        assert!(!dir.join("host.log.3").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotation_shifts_the_files_that_exist_and_leaves_other_names_alone() {
        let dir = scratch("gaps");
        let path = dir.join("host.log");
        for name in [
            "host.log.2",
            "host.log.5",
            "host.log.07",
            "host.log.x",
            "other.1",
        ] {
            std::fs::write(dir.join(name), name).unwrap();
        }
        let mut log = RotatingFile::open(&path, 10, 5).unwrap();
        log.write_lines([&b"first line\n"[..], b"second\n"])
            .unwrap();
        assert_eq!(lines_in(&dir.join("host.log.1")), ["first line"]);
        assert_eq!(lines_in(&dir.join("host.log.3")), ["host.log.2"]);
        assert!(!dir.join("host.log.5").exists() && !dir.join("host.log.6").exists());
        for untouched in ["host.log.07", "host.log.x", "other.1"] {
            assert_eq!(lines_in(&dir.join(untouched)), [untouched]);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
