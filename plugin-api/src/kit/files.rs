//! Opening files named by users: one policy for the host and every plugin.
//!
//! A path on a command line may name anything: a FIFO that blocks a reader forever, a device
//! that never ends (`/dev/zero`), a symlink planted where a daemon writes as root. So:
//!
//! - **Reading** ([`read_regular`]) accepts only a regular file (following symlinks, as any
//!   program does for its configuration) and reads at most a stated number of bytes. A FIFO,
//!   device, socket or directory is a one-line error saying what the path is.
//! - **Opening never blocks**: every open uses `O_NONBLOCK` (a FIFO with no writer would
//!   otherwise block `open` itself) and `O_NOCTTY`, then checks the open file with `fstat`, so
//!   what is checked is what is read, whatever is renamed into place meanwhile.
//! - **Writing never follows a symlink** ([`open_append`], [`open_read_write`]): `O_NOFOLLOW`
//!   refuses one at the final component, and the file must be regular. Temporary files are the
//!   `tempfile` crate's: created with `O_EXCL` under an unpredictable name.
//!
//! Errors are [`io::Error`]s whose text completes a sentence naming the path, e.g.
//! `cannot read the poem /tmp/p: it is a FIFO, not a regular file`.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use plugin_api::files;
//! let text = files::read_regular("users.txt".as_ref(), files::MIB)?;
//! # Ok(())
//! # }
//! ```

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// One mebibyte, for stating limits.
pub const MIB: u64 = 1 << 20;

/// Flags for every open: never block, never acquire a controlling terminal.
const NEVER_BLOCK: i32 = libc::O_NONBLOCK | libc::O_NOCTTY;

/// Reads the regular file at `path` whole, if it holds at most `limit` bytes.
///
/// A larger file is an error of kind [`io::ErrorKind::FileTooLarge`] naming the limit; reading
/// stops one byte past it, so a file that never ends costs no more than a large one.
pub fn read_regular(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = open_regular(path)?;
    read_at_most(&file, limit)
}

/// Opens the regular file at `path` for reading, without blocking.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(NEVER_BLOCK)
        .open(path)?;
    require_regular(&file)?;
    Ok(file)
}

/// Reads what `file` holds from its current position, if that is at most `limit` bytes.
pub fn read_at_most(file: &File, limit: u64) -> io::Result<Vec<u8>> {
    let expected = file.metadata().map_or(0, |m| m.len()).min(limit);
    let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("it is larger than the limit of {}", size_in_words(limit)),
        ));
    }
    Ok(bytes)
}

/// Opens `path` for appending, creating it (mode 0666 less the umask) if it does not exist.
/// A symlink, or anything but a regular file, is refused: for log files.
pub fn open_append(path: &Path) -> io::Result<File> {
    open_for_writing(path, OpenOptions::new().append(true).create(true))
}

/// Opens `path` for reading and writing, creating it if it does not exist, without truncating.
/// A symlink, or anything but a regular file, is refused: for pid and lock files.
pub fn open_read_write(path: &Path) -> io::Result<File> {
    open_for_writing(
        path,
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false),
    )
}

fn open_for_writing(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    let file = options
        .custom_flags(NEVER_BLOCK | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| explain_refusal(path, e))?;
    require_regular(&file)?;
    Ok(file)
}

/// `O_NOFOLLOW` fails with "too many levels of symbolic links", and a FIFO without a reader
/// with "no such device or address": say what the path is instead.
fn explain_refusal(path: &Path, error: io::Error) -> io::Error {
    match (error.raw_os_error(), std::fs::symlink_metadata(path)) {
        (Some(libc::ELOOP | libc::ENXIO), Ok(meta)) => not_regular(&meta).unwrap_or(error),
        _ => error,
    }
}

fn require_regular(file: &File) -> io::Result<()> {
    match not_regular(&file.metadata()?) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// The error for anything that is not a regular file.
fn not_regular(meta: &Metadata) -> Option<io::Error> {
    let kind = meta.file_type();
    let what = if kind.is_file() {
        return None;
    } else if kind.is_symlink() {
        "a symbolic link, which is not written through"
    } else if kind.is_dir() {
        "a directory, not a regular file"
    } else if kind.is_fifo() {
        "a FIFO, not a regular file"
    } else if kind.is_socket() {
        "a socket, not a regular file"
    } else if kind.is_char_device() {
        "a character device, not a regular file"
    } else if kind.is_block_device() {
        "a block device, not a regular file"
    } else {
        "not a regular file"
    };
    Some(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("it is {what}"),
    ))
}

/// `64 MiB`, `4 KiB` or `20 bytes`.
pub fn size_in_words(bytes: u64) -> String {
    match bytes {
        b if b >= MIB && b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b >= 1024 && b % 1024 == 0 => format!("{} KiB", b / 1024),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("files-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn reads_a_regular_file_up_to_its_limit_and_no_further() {
        let scratch = Scratch::new("limit");
        let path = scratch.0.join("f");
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(read_regular(&path, 5).unwrap(), b"12345");
        let error = read_regular(&path, 4).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(error.to_string(), "it is larger than the limit of 4 bytes");
    }

    #[test]
    fn an_endless_device_costs_nothing() {
        let error = read_regular(Path::new("/dev/zero"), MIB).unwrap_err();
        assert_eq!(
            error.to_string(),
            "it is a character device, not a regular file"
        );
    }

    #[test]
    fn a_directory_is_named() {
        let error = read_regular(Path::new("/"), MIB).unwrap_err();
        assert_eq!(error.to_string(), "it is a directory, not a regular file");
    }

    #[test]
    fn writing_refuses_a_symlink_and_leaves_its_target_alone() {
        let scratch = Scratch::new("symlink");
        let victim = scratch.0.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let link = scratch.0.join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        for open in [open_append, open_read_write] {
            let error = open(&link).unwrap_err();
            assert_eq!(
                error.to_string(),
                "it is a symbolic link, which is not written through"
            );
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        let mut file = open_append(&scratch.0.join("new")).unwrap();
        file.write_all(b"x").unwrap();
    }

    #[test]
    fn sizes_read_as_words() {
        assert_eq!(size_in_words(64 * MIB), "64 MiB");
        assert_eq!(size_in_words(4096), "4 KiB");
        assert_eq!(size_in_words(20), "20 bytes");
    }
}
