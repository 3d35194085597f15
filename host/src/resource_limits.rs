//! Raising the open-files limit, so a server can hold thousands of connections.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Raises the soft limit on open files to the hard limit, as nginx and vsftpd expect an
/// administrator to allow; the default soft limit (often 1024) caps a server at about 1000
/// clients. Failure only leaves the limit where it was.
pub fn raise_open_files() {
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}
