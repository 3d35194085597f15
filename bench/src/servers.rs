//! Server processes under test: started with their log in a file, found by the port they
//! announce, stopped with SIGINT, and never left behind.

use std::ffi::OsString;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long a server may take to announce its port, and to exit after SIGINT.
const PATIENCE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);
/// The announcement both host plugins and baselines log, in twistd's words.
const ANNOUNCEMENT: &str = " starting on tcp:";

/// A running server; dropping it stops it.
pub struct Server {
    pub name: String,
    /// The command line, with its redirections, for the report.
    pub command: String,
    pub port: u16,
    pid: u32,
    child: Option<Child>,
}

impl Server {
    /// Starts `program args` with stdout and stderr in files under `dir` and waits until it
    /// announces its port.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[OsString],
        dir: &Path,
    ) -> Result<Self, String> {
        let log = dir.join(format!("{name}.log"));
        let errors = dir.join(format!("{name}.stderr"));
        let create = |path: &Path| {
            File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
        };
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(create(&log)?)
            .stderr(create(&errors)?)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let mut command = vec![program.display().to_string()];
        command.extend(args.iter().map(|a| a.to_string_lossy().into_owned()));
        let mut server = Self {
            name: name.to_owned(),
            command: format!("{} > {}", command.join(" "), log.display()),
            port: 0,
            pid: child.id(),
            child: Some(child),
        };
        server.port = server.wait_for_port(&log, &errors)?;
        Ok(server)
    }

    pub fn addr(&self) -> SocketAddr {
        (Ipv4Addr::LOCALHOST, self.port).into()
    }

    /// The resident set size, in MB (10^6 bytes, like the throughput figures).
    pub fn rss_mb(&self) -> Result<f64, String> {
        let path = format!("/proc/{}/status", self.pid);
        let status =
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().strip_suffix("kB")?.trim().parse::<f64>().ok())
            .map(|kib| kib * 1024.0 / 1e6)
            .ok_or_else(|| format!("no VmRSS in {path}"))
    }

    /// Stops the server with SIGINT and checks that it exits, and exits cleanly.
    pub fn stop(mut self) -> Result<(), String> {
        let Some(child) = self.child.take() else {
            return Ok(());
        };
        match interrupt_and_wait(child) {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(format!("{} exited on SIGINT with {status}", self.name)),
            None => Err(format!(
                "{} did not exit within {PATIENCE:?} of SIGINT; killed it",
                self.name
            )),
        }
    }

    fn wait_for_port(&mut self, log: &Path, errors: &Path) -> Result<u16, String> {
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(port) = text.lines().find_map(announced_port) {
                return Ok(port);
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                return Err(format!(
                    "{} exited during start-up ({status}): {}",
                    self.name,
                    last_line(errors)
                ));
            }
            if started.elapsed() > PATIENCE {
                return Err(format!(
                    "{} announced no port within {PATIENCE:?}; see {}",
                    self.name,
                    log.display()
                ));
            }
            sleep(POLL);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = interrupt_and_wait(child);
        }
    }
}

/// SIGINT, then SIGKILL if the process outlives [`PATIENCE`]; `None` if it had to be killed.
fn interrupt_and_wait(mut child: Child) -> Option<ExitStatus> {
    let pid = libc::pid_t::try_from(child.id()).expect("pids fit in pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions, and the child is not yet reaped,
    // so the pid cannot belong to another process.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let started = Instant::now();
    while started.elapsed() < PATIENCE {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        sleep(POLL);
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn announced_port(line: &str) -> Option<u16> {
    let (_, rest) = line.split_once(ANNOUNCEMENT)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn last_line(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let line = text.lines().rev().find(|l| !l.trim().is_empty());
    line.unwrap_or("(nothing on stderr)").to_owned()
}

/// The host binary: `explicit` if given, else the one cargo built beside bench.
pub fn locate_host(explicit: Option<&Path>) -> Result<PathBuf, String> {
    locate(
        "host",
        explicit,
        "run `cargo build --release` first, or pass --host PATH",
    )
}

/// `explicit` if given, else the binary `name` next to the running executable, where cargo
/// puts every binary of the workspace; `build` says how to make it when it is missing.
pub fn locate(name: &str, explicit: Option<&Path>, build: &str) -> Result<PathBuf, String> {
    let path = match explicit {
        Some(path) => path.to_owned(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find bench itself: {e}"))?
            .with_file_name(name),
    };
    require_file(name, path, build)
}

/// `path` if it is a file, else an error saying how to `build` it.
pub fn require_file(name: &str, path: PathBuf, build: &str) -> Result<PathBuf, String> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{name} not found at {} ({build})", path.display()))
    }
}
