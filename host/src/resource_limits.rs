//! Raising the open-files limit, so a server can hold thousands of connections.

/// Raises the soft limit on open files to the hard limit, as nginx and vsftpd expect an
/// administrator to allow; the default soft limit (often 1024) caps a server at about 1000
/// clients. Failure only leaves the limit where it was.
pub fn raise_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
