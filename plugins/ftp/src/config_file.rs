//! Reading the plugin's own configuration files (the password file), bounded and regular only.
//!
//! MERGE: plugin_api::files, once it lands, does this for every plugin.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The largest configuration file read: a password file of thousands of users fits easily.
const MAX_BYTES: u64 = 1 << 20;

/// Reads `path`, a regular file of at most [`MAX_BYTES`], as UTF-8; errors name `what`.
pub fn read(path: &Path, what: &str) -> Result<String, String> {
    let fail = |e: &dyn std::fmt::Display| format!("cannot read {what} {}: {e}", path.display());
    // Non-blocking, so that a FIFO given by mistake cannot hang the start.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| fail(&e))?;
    let meta = file.metadata().map_err(|e| fail(&e))?;
    if !meta.is_file() {
        return Err(fail(&"not a regular file"));
    }
    if meta.len() > MAX_BYTES {
        return Err(fail(&format!("larger than {MAX_BYTES} bytes")));
    }
    let mut text = String::new();
    file.take(MAX_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| fail(&e))?;
    Ok(text)
}
