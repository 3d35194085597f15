//! The pid file: written once the process is the daemon, locked while it runs (so a second host
//! with the same pid file refuses to start, and a file left by a crash is known to be stale),
//! removed on clean shutdown.
//!
//! Opened through `plugin_api::files`: a symlink at the path is refused rather than written
//! through (as root, in a directory others can write, that would truncate any file), and so is
//! anything but a regular file.

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use plugin_api::files;
use std::fs::File;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The most a pid file is read: a pid and a newline, with room to spare.
const PID_FILE_LIMIT: u64 = 32;

pub struct PidFile {
    path: PathBuf,
    file: Flock<File>,
}

impl PidFile {
    /// Takes the pid file at `path`. `Ok` carries a warning when a stale file was replaced.
    pub fn acquire(path: &Path) -> Result<(Self, Option<String>), String> {
        let file = files::open_read_write(path)
            .map_err(|e| format!("cannot open the pid file {}: {e}", path.display()))?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((file, Errno::EWOULDBLOCK)) => {
                return Err(format!(
                    "Another host is running (PID {}, pid file {})",
                    holder_pid(&file),
                    path.display()
                ))
            }
            Err((_, error)) => {
                return Err(format!(
                    "cannot lock the pid file {}: {error}",
                    path.display()
                ))
            }
        };
        let warning = read_pid(&file).map(|pid| {
            format!(
                "replacing the stale pid file {} (PID {pid} no longer holds it)",
                path.display()
            )
        });
        let written = (|| {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(*file, "{}", std::process::id())?;
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

/// The pid in the file, if it holds one (and nothing much else).
fn read_pid(mut file: &File) -> Option<u32> {
    file.rewind().ok()?;
    let bytes = files::read_at_most(file, PID_FILE_LIMIT).ok()?;
    std::str::from_utf8(&bytes).ok()?.trim().parse().ok()
}

/// The pid of the process holding the lock; it may not have written it yet if it started at the
/// same instant, so wait a moment for it.
fn holder_pid(file: &File) -> String {
    for _ in 0..50 {
        if let Some(pid) = read_pid(file) {
            return pid.to_string();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    "unknown".to_string()
}
