//! A log file rotated by size, like twistd's: `host.log`, then `host.log.1`, `host.log.2`, ….

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

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
        let file = open_append(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            size: file.metadata()?.len(),
            file,
            max_size,
            keep,
        })
    }

    /// Writes one whole line; rotates first if the line would not fit.
    ///
    /// If rotating fails (say, privileges were dropped and the directory is not writable), the
    /// line goes to the current file anyway and rotation stops: losing log lines is worse than
    /// a large file.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.max_size > 0 && self.size > 0 && self.size + line.len() as u64 > self.max_size {
            if let Err(e) = self.rotate() {
                self.max_size = 0;
                let warning = format!(
                    "[-] warning: cannot rotate {}: {e}; rotation stopped\n",
                    self.path.display()
                );
                self.append(warning.as_bytes())?;
            }
        }
        self.append(line)
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Opens the file at the path again: after `logrotate` moved it away (SIGUSR1).
    pub fn reopen(&mut self) -> io::Result<()> {
        self.file = open_append(&self.path)?;
        self.size = self.file.metadata()?.len();
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let numbered = |n: usize| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                match std::fs::rename(numbered(n), numbered(n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.reopen()
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
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

    #[test]
    fn rotates_by_size_and_keeps_the_newest_files() {
        let dir = std::env::temp_dir().join(format!("host-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("host.log");
        let mut log = RotatingFile::open(&path, 20, 2).unwrap();
        for n in 0..10 {
            log.write_line(format!("line {n:02}\n").as_bytes()).unwrap();
        }
        // Eight-byte lines, at most 20 bytes a file: two lines each.
        assert_eq!(lines_in(&path), ["line 08", "line 09"]);
        assert_eq!(lines_in(&dir.join("host.log.1")), ["line 06", "line 07"]);
        assert_eq!(lines_in(&dir.join("host.log.2")), ["line 04", "line 05"]);
        assert!(!dir.join("host.log.3").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
