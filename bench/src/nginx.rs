//! nginx, the reference web server: Debian's nginx-light, configured from
//! `bench/nginx.conf.template` to serve a directory on a free port of 127.0.0.1, in the
//! foreground.

use crate::servers::{self, Server};
use std::path::{Path, PathBuf};

const PROGRAM: &str = "/usr/sbin/nginx";
const TEMPLATE: &str = include_str!("../nginx.conf.template");

/// nginx itself, or an error saying how to install it.
pub fn locate() -> Result<PathBuf, String> {
    servers::require_file(
        "nginx",
        PROGRAM.into(),
        "install it with `apt-get install -y nginx-light`",
    )
}

/// Starts `program` serving `root`; its configuration, logs and pid file go in `dir`.
pub fn start(program: &Path, root: &Path, dir: &Path) -> Result<Server, String> {
    let port = servers::free_port()?;
    let config = TEMPLATE
        .replace("@PORT@", &port.to_string())
        .replace("@ROOT@", &root.to_string_lossy())
        .replace("@DIR@", &dir.to_string_lossy());
    let path = dir.join("nginx.conf");
    std::fs::write(&path, config).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let args = [
        "-c".into(),
        path.into_os_string(),
        "-e".into(),
        dir.join("nginx-error.log").into_os_string(),
    ];
    Server::start_daemon("nginx", program, &args, dir, port)
}
