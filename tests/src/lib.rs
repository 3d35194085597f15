//! The harness for the end-to-end tests: builds the workspace and the fixture plugins once,
//! runs real `host` processes, and talks to them over real sockets on 127.0.0.1.
//!
//! Every wait is bounded: a test that goes wrong fails with what the host printed, never hangs.

pub mod proxying;
pub mod scrape;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long any single wait in a test may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn cargo_build(args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .arg("build")
        .args(args)
        .current_dir(workspace_root())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build {args:?} failed");
}

/// The `host` binary, with the shipped plugins beside it (built once per test run).
pub fn host_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            cargo_build(&["--workspace", "--exclude", "host-e2e", "--exclude", "bench"]);
            workspace_root().join("target/debug/host")
        })
        .clone()
}

/// The directory holding the fixture plugins, which the default plugin path never finds.
pub fn fixture_dir() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = workspace_root();
            let manifest = root.join("tests/fixtures/Cargo.toml");
            let target = root.join("target/fixtures");
            cargo_build(&[
                "--manifest-path",
                manifest.to_str().unwrap(),
                "--target-dir",
                target.to_str().unwrap(),
            ]);
            target.join("debug")
        })
        .clone()
}

/// A path to a bundled poem, e.g. `poem("ecstasy.txt")`.
pub fn poem(name: &str) -> PathBuf {
    workspace_root().join("poems").join(name)
}

/// `host [global options] -n fastpoetry --port 0 --poem POEM`, the tests' usual server.
pub fn serve_poem(global: &[&str], poem: &Path) -> Running {
    let mut args = global.to_vec();
    args.extend([
        "-n",
        "fastpoetry",
        "--port",
        "0",
        "--poem",
        poem.to_str().unwrap(),
    ]);
    Running::start(&args)
}

/// The size of [`write_big_poem`]'s poem: far more than socket buffers hold, so the server's
/// write to a client that does not read stays pending.
pub const BIG_POEM_BYTES: usize = 32 << 20;

/// Writes a [`BIG_POEM_BYTES`] poem into `dir` and returns its path.
pub fn write_big_poem(dir: &Path) -> PathBuf {
    let big = dir.join("big.txt");
    std::fs::write(&big, vec![b'x'; BIG_POEM_BYTES]).unwrap();
    big
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("host-e2e-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where each `host` runs unless a test says otherwise: a fresh directory per process, so
/// the default pid file (`host.pid`, in the working directory) never collides between tests.
fn runs_root() -> PathBuf {
    std::env::temp_dir().join("host-e2e-runs")
}

fn fresh_run_dir() -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = runs_root().join(format!("{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `host` command with a clean environment (no plugin path, log filter or systemd variables
/// from the caller), run in a fresh directory.
pub fn host_command(args: &[&str]) -> Command {
    let mut command = Command::new(host_bin());
    command.args(args);
    prepare(&mut command);
    command
}

/// Gives any command that runs `host` (directly or through a wrapper such as `prlimit`) the
/// clean environment and fresh directory of [`host_command`].
pub fn prepare(command: &mut Command) -> &mut Command {
    command
        .current_dir(fresh_run_dir())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove("HOST_PLUGIN_PATH")
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
}

/// What a finished `host` printed, and how it exited.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Runs `host` to completion (killing it after [`PATIENCE`]).
pub fn run_host(args: &[&str]) -> Finished {
    run(host_command(args))
}

/// Runs a prepared command to completion (killing it after [`PATIENCE`]).
pub fn run(mut command: Command) -> Finished {
    let mut host = Running::spawn(&mut command);
    let status = host.wait();
    Finished {
        status,
        stdout: host.stdout(),
        stderr: host.stderr(),
    }
}

#[derive(Default)]
struct Lines {
    lines: Mutex<(Vec<String>, bool)>,
    changed: Condvar,
}

impl Lines {
    fn collect(self: &Arc<Self>, stream: impl Read + Send + 'static) {
        let lines = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                lines
                    .lines
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .0
                    .push(line);
                lines.changed.notify_all();
            }
            lines.lines.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
            lines.changed.notify_all();
        });
    }

    fn text(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .join("\n")
    }

    fn wait_closed(&self, until: Instant) {
        let mut guard = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        while !guard.1 && Instant::now() < until {
            guard = self
                .changed
                .wait_timeout(guard, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// A running `host` process whose output is collected line by line; killed on drop.
pub struct Running {
    child: Child,
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
    /// The fresh directory it ran in, removed on drop.
    run_dir: Option<PathBuf>,
}

impl Running {
    /// Starts `host` with `args`.
    pub fn start(args: &[&str]) -> Self {
        Self::spawn(&mut host_command(args))
    }

    pub fn spawn(command: &mut Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("host starts");
        let stdout = Arc::new(Lines::default());
        let stderr = Arc::new(Lines::default());
        stdout.collect(child.stdout.take().unwrap());
        stderr.collect(child.stderr.take().unwrap());
        let run_dir = command
            .get_current_dir()
            .filter(|dir| dir.starts_with(runs_root()))
            .map(Path::to_path_buf);
        Self {
            child,
            stdout,
            stderr,
            run_dir,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Waits until a line of stdout contains `needle`, and returns that line.
    pub fn wait_for_line(&self, needle: &str) -> String {
        let until = Instant::now() + PATIENCE;
        let mut guard = self.stdout.lines.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(line) = guard.0.iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            assert!(
                !guard.1 && Instant::now() < until,
                "no line with {needle:?} in stdout:\n{}\nstderr:\n{}",
                guard.0.join("\n"),
                self.stderr.text()
            );
            guard = self
                .stdout
                .changed
                .wait_timeout(guard, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The last `n` lines of stdout, newest first, without their timestamps.
    pub fn log_tail(&self, n: usize) -> Vec<String> {
        self.stdout()
            .lines()
            .rev()
            .take(n)
            .map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest).to_string())
            .collect()
    }

    /// The TCP port from the first `starting on tcp:PORT` line.
    pub fn port(&self) -> u16 {
        let line = self.wait_for_line("starting on tcp:");
        let after = line.split("starting on tcp:").nth(1).unwrap();
        after.split(':').next().unwrap().parse().unwrap()
    }

    pub fn signal(&self, signal: i32) {
        send_signal(self.pid(), signal).expect("the host is still there to signal");
    }

    /// Stops the host with SIGTERM and checks that it shut down cleanly (exit 0).
    pub fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        let status = self.wait();
        assert_eq!(
            status.code(),
            Some(0),
            "unclean stop:\n{}\n{}",
            self.stdout(),
            self.stderr()
        );
    }

    /// Waits for the process to exit (killing it after [`PATIENCE`]) and for its output to end.
    pub fn wait(&mut self) -> ExitStatus {
        self.wait_within(PATIENCE)
            .unwrap_or_else(|| panic!("host did not exit within {PATIENCE:?}:\n{}", self.stdout()))
    }

    /// Waits at most `limit` for the process to exit.
    pub fn wait_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.stdout.wait_closed(Instant::now() + PATIENCE);
                self.stderr.wait_closed(Instant::now() + PATIENCE);
                return Some(status);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(dir) = &self.run_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Connects to 127.0.0.1:`port` and reads until the server closes the connection.
pub fn fetch(port: u16) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut poem = Vec::new();
    stream.read_to_end(&mut poem).expect("reads to EOF");
    poem
}

/// Runs `program` with python3, then `print('ok')`: it must print "ok" last, so a script that
/// stops early fails the test with what it printed. Killed if it runs past 3 × [`PATIENCE`].
pub fn python(program: &str) -> String {
    let program = format!("{program}\nprint('ok')");
    let mut child = Command::new("python3")
        .args(["-c", &program])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let until = Instant::now() + PATIENCE * 3;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > until {
            let _ = child.kill();
            panic!("the python client hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "python failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `curl ARGS`, silent but for errors, and bounded: at most 60 s.
pub fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "60"])
        .args(args)
        .output()
        .expect("curl runs")
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Raises this process's open-files limit so a test can hold thousands of sockets.
pub fn raise_open_files(wanted: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, wanted.min(hard), hard);
    }
}

/// A self-signed certificate for localhost and its key, made with openssl in `dir`:
/// (`cert.pem`, `key.pem`).
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// Sends `signal` (a `libc::SIG*` number) to the process `pid`.
pub fn send_signal(pid: i32, signal: i32) -> nix::Result<()> {
    let signal = nix::sys::signal::Signal::try_from(signal)?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
}

/// Whether the tests run as root (some skip otherwise).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `host ARGS` started as systemd starts a socket-activated service: `listener` passed as
/// descriptor 3, `LISTEN_FDS=1` and `LISTEN_PID` set to host's own pid (by a shell that then
/// becomes host with `exec`, keeping its pid).
pub fn socket_activated(listener: &std::net::TcpListener, args: &[&str]) -> Command {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let fd = listener.as_raw_fd();
    let mut command = Command::new("sh");
    command
        .args(["-c", "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\""])
        .arg(host_bin())
        .args(args);
    prepare(&mut command);
    #[allow(unsafe_code)]
    // SAFETY: dup2 and fcntl are async-signal-safe; they run in the child between fork and
    // exec. The explicit fcntl matters when the listener already is descriptor 3: dup2 onto
    // itself would leave its close-on-exec flag set.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(fd, 3) == -1 || libc::fcntl(3, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}
