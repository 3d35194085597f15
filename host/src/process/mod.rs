//! Process life, like twistd and better: becoming a daemon, the pid file, dropping privileges,
//! and telling systemd.

pub mod daemon;
pub mod pid_file;
pub mod privileges;
pub mod systemd;

/// The last OS error, as a message.
fn os_error() -> String {
    std::io::Error::last_os_error().to_string()
}
