//! vsftpd, the reference FTP server: configured from `bench/vsftpd.conf.template` to serve a
//! directory anonymously, read-only, on a free port of 127.0.0.1, in the foreground.

use crate::servers::{self, Server};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

const PROGRAM: &str = "/usr/sbin/vsftpd";
const TEMPLATE: &str = include_str!("../vsftpd.conf.template");

/// vsftpd itself, or an error saying how to install it.
pub fn locate() -> Result<PathBuf, String> {
    servers::require_file(
        "vsftpd",
        PROGRAM.into(),
        "install it with `apt-get install -y vsftpd`",
    )
}

/// Starts `program` serving `root` with passive ports in `passive_ports`; its configuration
/// and logs go in `dir`.
pub fn start(
    program: &Path,
    root: &Path,
    passive_ports: &RangeInclusive<u16>,
    dir: &Path,
) -> Result<Server, String> {
    let port = servers::free_port()?;
    // vsftpd chroots its unprivileged helper here; it must exist and stay empty.
    let empty = dir.join("vsftpd-empty");
    std::fs::create_dir_all(&empty)
        .map_err(|e| format!("cannot create {}: {e}", empty.display()))?;
    let config = TEMPLATE
        .replace("@PORT@", &port.to_string())
        .replace("@ROOT@", &root.to_string_lossy())
        .replace("@PASVMIN@", &passive_ports.start().to_string())
        .replace("@PASVMAX@", &passive_ports.end().to_string())
        .replace("@EMPTY@", &empty.to_string_lossy());
    let path = dir.join("vsftpd.conf");
    std::fs::write(&path, config).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Server::start_daemon("vsftpd", program, &[path.into()], dir, port)
}
