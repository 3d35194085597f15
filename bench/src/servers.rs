//! Server processes under test: started with their log in a file, found by the port they
//! announce or listen on, stopped with a signal, and never left behind.

use rustix::process::{Pid, Signal};
use std::ffi::OsString;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long a server may take to be ready, and to exit once told to stop.
const PATIENCE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);
/// The announcement both host plugins and baselines log, in twistd's words.
const ANNOUNCEMENT: &str = " starting on tcp:";

/// The kinds of server the benches run, which differ in how they start and stop.
#[derive(Clone, Copy)]
enum Kind {
    /// host and the baselines written for it: they announce their port in twistd's words,
    /// and exit with status 0 on SIGINT.
    Twistd,
    /// A daemon such as vsftpd or socat: it listens on the port its configuration gives, dies of
    /// SIGTERM, and reports start-up errors ("500 OOPS: …") on fd 0, which is the client's
    /// connection when inetd starts it.
    Daemon,
}

impl Kind {
    fn stop_signal(self) -> (Signal, &'static str) {
        match self {
            Self::Twistd => (Signal::INT, "SIGINT"),
            Self::Daemon => (Signal::TERM, "SIGTERM"),
        }
    }

    fn stopped_cleanly(self, status: ExitStatus) -> bool {
        match self {
            Self::Twistd => status.success(),
            // Killed by SIGTERM, or (socat) caught it and exited with 128 + SIGTERM.
            Self::Daemon => {
                status.success()
                    || status.signal() == Some(Signal::TERM.as_raw())
                    || status.code() == Some(128 + Signal::TERM.as_raw())
            }
        }
    }
}

/// A running server; dropping it stops it.
pub struct Server {
    pub name: String,
    /// The command line, with its redirections, for the report.
    pub command: String,
    pub port: u16,
    pid: u32,
    child: Option<Child>,
    kind: Kind,
    log: PathBuf,
    errors: PathBuf,
}

impl Server {
    /// Starts `program args` with stdout and stderr in files under `dir` and waits until it
    /// announces its port; it is stopped with SIGINT and must then exit with status 0.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[OsString],
        dir: &Path,
    ) -> Result<Self, String> {
        let mut server = Self::spawn(name, program, args, dir, Kind::Twistd)?;
        server.port = server.wait_until("announced no port", |server| {
            let text = std::fs::read_to_string(&server.log).unwrap_or_default();
            text.lines().find_map(announced_port)
        })?;
        Ok(server)
    }

    /// Starts a daemon configured to listen on 127.0.0.1:`port` (see [`free_port`]) like
    /// [`Server::start`], and waits until it accepts connections; it is stopped with SIGTERM.
    pub fn start_daemon(
        name: &str,
        program: &Path,
        args: &[OsString],
        dir: &Path,
        port: u16,
    ) -> Result<Self, String> {
        let mut server = Self::spawn(name, program, args, dir, Kind::Daemon)?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let what = format!("accepted no connection on port {port}");
        server.port = server.wait_until(&what, |_| {
            TcpStream::connect_timeout(&addr, POLL).ok().map(|_| port)
        })?;
        Ok(server)
    }

    fn spawn(
        name: &str,
        program: &Path,
        args: &[OsString],
        dir: &Path,
        kind: Kind,
    ) -> Result<Self, String> {
        let log = dir.join(format!("{name}.log"));
        let errors = dir.join(format!("{name}.stderr"));
        let create = |path: &Path| {
            File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
        };
        let errors_file = create(&errors)?;
        let stdin = match kind {
            Kind::Twistd => Stdio::null(),
            // Start-up errors written to fd 0 (see `Kind::Daemon`) land beside the others.
            Kind::Daemon => {
                let clone = errors_file.try_clone();
                Stdio::from(clone.map_err(|e| format!("cannot reopen {}: {e}", errors.display()))?)
            }
        };
        let child = Command::new(program)
            .args(args)
            .stdin(stdin)
            .stdout(create(&log)?)
            .stderr(errors_file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let mut command = vec![shell_word(program.as_os_str())];
        command.extend(args.iter().map(|a| shell_word(a)));
        Ok(Self {
            name: name.to_owned(),
            command: format!("{} > {}", command.join(" "), log.display()),
            port: 0,
            pid: child.id(),
            child: Some(child),
            kind,
            log,
            errors,
        })
    }

    /// A port the server logged after `announcement`, e.g. its admin endpoint's.
    pub fn logged_port(&self, announcement: &str) -> Result<u16, String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .find_map(|line| {
                let after = line.split(announcement).nth(1)?;
                after.split(':').next()?.parse().ok()
            })
            .ok_or_else(|| format!("{} logged no{announcement}PORT", self.name))
    }

    pub fn addr(&self) -> SocketAddr {
        (Ipv4Addr::LOCALHOST, self.port).into()
    }

    /// The resident set size, in MB (10^6 bytes, like the throughput figures).
    pub fn rss_mb(&self) -> Result<f64, String> {
        rss_mb(self.pid)
    }

    /// The resident set size of the server and its running children (host's workers,
    /// nginx's), in MB.
    pub fn tree_rss_mb(&self) -> Result<f64, String> {
        let children: f64 = processes()?
            .filter(|(_, stat)| parent(stat) == Some(self.pid))
            .filter_map(|(pid, _)| rss_mb(pid).ok())
            .sum();
        Ok(self.rss_mb()? + children)
    }

    /// The CPU time (user and system) the server has used so far, in seconds, with what its
    /// child processes used: those running (nginx's workers) and those it has reaped. A cost
    /// that, unlike throughput, hardly moves when other work shares the machine.
    pub fn cpu_seconds(&self) -> Result<f64, String> {
        // After the command name, which may hold spaces, closed by ')': utime, stime, cutime
        // and cstime are the 12th to 15th fields.
        let ticks = |stat: &str| -> Option<(u64, u64)> {
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let field = |n: usize| fields.get(n)?.parse::<u64>().ok();
            Some((field(11)? + field(12)?, field(13)? + field(14)?))
        };
        let own = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|stat| ticks(&stat))
            .ok_or_else(|| format!("cannot read the CPU time of {}", self.name))?;
        let children: u64 = processes()?
            .filter(|(_, stat)| parent(stat) == Some(self.pid))
            .filter_map(|(_, stat)| ticks(&stat))
            .map(|(used, _)| used)
            .sum();
        let per_second = rustix::param::clock_ticks_per_second().max(1) as f64;
        Ok((own.0 + own.1 + children) as f64 / per_second)
    }

    /// Stops the server and checks that it exits, and exits cleanly.
    pub fn stop(mut self) -> Result<(), String> {
        let Some(child) = self.child.take() else {
            return Ok(());
        };
        let (signal, signal_name) = self.kind.stop_signal();
        match signal_and_wait(child, signal) {
            Some(status) if self.kind.stopped_cleanly(status) => Ok(()),
            Some(status) => Err(format!(
                "{} exited on {signal_name} with {status}",
                self.name
            )),
            None => Err(format!(
                "{} did not exit within {PATIENCE:?} of {signal_name}; killed it",
                self.name
            )),
        }
    }

    /// Polls `ready` until it gives the port, failing if the server exits first or takes
    /// longer than [`PATIENCE`]; `what` says what it failed to do.
    fn wait_until(
        &mut self,
        what: &str,
        mut ready: impl FnMut(&Self) -> Option<u16>,
    ) -> Result<u16, String> {
        let started = Instant::now();
        loop {
            if let Some(port) = ready(self) {
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
                    last_line(&self.errors)
                ));
            }
            if started.elapsed() > PATIENCE {
                return Err(format!(
                    "{} {what} within {PATIENCE:?}; see {}",
                    self.name,
                    self.log.display()
                ));
            }
            sleep(POLL);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = signal_and_wait(child, self.kind.stop_signal().0);
        }
    }
}

/// Every process now, with its `/proc/PID/stat` line.
fn processes() -> Result<impl Iterator<Item = (u32, String)>, String> {
    let entries = std::fs::read_dir("/proc").map_err(|e| format!("cannot read /proc: {e}"))?;
    Ok(entries.flatten().filter_map(|entry| {
        let pid = entry.file_name().to_str()?.parse().ok()?;
        Some((
            pid,
            std::fs::read_to_string(entry.path().join("stat")).ok()?,
        ))
    }))
}

/// The parent's pid in a `/proc/PID/stat` line: the second field after the command name.
fn parent(stat: &str) -> Option<u32> {
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Process `pid`'s resident set size, in MB.
fn rss_mb(pid: u32) -> Result<f64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().strip_suffix("kB")?.trim().parse::<f64>().ok())
        .map(|kib| kib * 1024.0 / 1e6)
        .ok_or_else(|| format!("no VmRSS in {path}"))
}

/// `signal`, then SIGKILL if the process outlives [`PATIENCE`]; `None` if it had to be killed.
fn signal_and_wait(mut child: Child, signal: Signal) -> Option<ExitStatus> {
    // The child is not yet reaped, so its pid cannot belong to another process.
    let _ = rustix::process::kill_process(Pid::from_child(&child), signal);
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

/// A port on 127.0.0.1 free right now, for a server that cannot be told to take any free one.
/// Another socket may take it before the server binds it; the server then fails to start,
/// which [`Server::start_daemon`] reports.
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// `word` as a shell would need it, so the reported command line can be pasted.
fn shell_word(word: &std::ffi::OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=,@+%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
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

/// The minimal tokio poetry server the fastpoetry benches compare against, built with bench.
pub fn locate_minimal_poetry() -> Result<PathBuf, String> {
    locate(
        "minimal-poetry",
        None,
        "run `cargo build --release -p bench` first",
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
