//! Process life, like twistd and better: becoming a daemon, the pid file, dropping privileges,
//! and telling systemd.

pub mod daemon;
pub mod pid_file;
pub mod privileges;
pub mod systemd;
