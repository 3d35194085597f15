//! The pid file: written once the process is the daemon, locked while it runs (so a second host
//! with the same pid file refuses to start, and a file left by a crash is known to be stale),
//! removed on clean shutdown.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct PidFile {
    path: PathBuf,
    file: File,
}

impl PidFile {
    /// Takes the pid file at `path`. `Ok` carries a warning when a stale file was replaced.
    pub fn acquire(path: &Path) -> Result<(Self, Option<String>), String> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| format!("cannot open the pid file {}: {e}", path.display()))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(format!(
                    "cannot lock the pid file {}: {error}",
                    path.display()
                ));
            }
            return Err(format!(
                "Another host is running (PID {}, pid file {})",
                holder_pid(&mut file),
                path.display()
            ));
        }
        let previous = read_pid(&mut file);
        let warning = previous.map(|pid| {
            format!(
                "replacing the stale pid file {} (PID {pid} no longer holds it)",
                path.display()
            )
        });
        let written = (|| {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())?;
            file.sync_all()
        })();
        written.map_err(|e| format!("cannot write the pid file {}: {e}", path.display()))?;
        Ok((
            Self {
                path: path.to_path_buf(),
                file,
            },
            warning,
        ))
    }

    /// Removes the file on clean shutdown. After a chroot or a privilege drop the path may be
    /// out of reach; then the file is emptied instead, which the next start treats as free.
    pub fn remove(self) {
        if std::fs::remove_file(&self.path).is_err() {
            let _ = self.file.set_len(0);
        }
    }
}

/// The pid in the file, if it holds one.
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// The pid of the process holding the lock; it may not have written it yet if it started at the
/// same instant, so wait a moment for it.
fn holder_pid(file: &mut File) -> String {
    for _ in 0..50 {
        if let Some(pid) = read_pid(file) {
            return pid.to_string();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    "unknown".to_string()
}
