//! Becoming a daemon: double fork, `setsid`, stdio to /dev/null, and a status pipe so the
//! command the user typed waits until the daemon's services have started, then exits 0, or
//! prints the daemon's start-up error and exits 1 (twistd does the same).
//!
//! Must run before any thread exists: `fork` copies only the calling thread.

use nix::fcntl::OFlag;
use nix::sys::wait::waitpid;
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, fork, pipe2, setsid, ForkResult, Pid};
use std::fs::File;
use std::io::{Read, Write};

/// The daemon's end of the status pipe.
pub struct StatusPipe(Option<File>);

impl StatusPipe {
    /// Tells the waiting command that the services started; it exits 0.
    pub fn started(&mut self) {
        self.send("ok");
    }

    /// Tells the waiting command why start-up failed; it prints `message` and exits 1.
    pub fn failed(&mut self, message: &str) {
        self.send(&format!("error:{message}"));
    }

    /// Whether the waiting command has been told anything yet.
    pub fn is_waiting(&self) -> bool {
        self.0.is_some()
    }

    fn send(&mut self, message: &str) {
        if let Some(mut pipe) = self.0.take() {
            // The command may have been killed; the daemon goes on regardless.
            let _ = pipe.write_all(message.as_bytes());
        }
    }
}

/// Detaches from the terminal. Returns in the daemon; the calling process waits for the
/// daemon's status and exits.
pub fn daemonize() -> Result<StatusPipe, String> {
    let (read, write) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("cannot create the status pipe: {e}"))?;
    match fork_single_threaded()? {
        ForkResult::Child => {
            drop(read);
            become_daemon()?;
            Ok(StatusPipe(Some(File::from(write))))
        }
        ForkResult::Parent { child } => {
            drop(write);
            wait_for_daemon(File::from(read), child)
        }
    }
}

/// `fork`, which is sound only while this process has one thread (see the module doc).
fn fork_single_threaded() -> Result<ForkResult, String> {
    #[allow(unsafe_code)]
    // SAFETY: no other thread exists yet: the log writer and the plugin's runtime start after
    // the daemon is made, and discovery joins its probe threads before returning. The child
    // may therefore call anything, not only async-signal-safe functions.
    unsafe { fork() }.map_err(|e| format!("cannot fork: {e}"))
}

/// In the first child: a new session, then a second fork so the daemon can never acquire a
/// controlling terminal, and stdio pointed at /dev/null.
fn become_daemon() -> Result<(), String> {
    setsid().map_err(|e| format!("cannot start a new session: {e}"))?;
    if let ForkResult::Parent { .. } = fork_single_threaded()? {
        // The first child's only job is done. It exits as the waiting command does: every log
        // line is written whole when logged, so no buffered output is flushed twice.
        std::process::exit(0);
    }
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("cannot open /dev/null: {e}"))?;
    dup2_stdin(&null)
        .and_then(|()| dup2_stdout(&null))
        .and_then(|()| dup2_stderr(&null))
        .map_err(|e| format!("cannot redirect stdio: {e}"))
}

/// In the command the user typed: wait for the daemon's word, then exit with it.
fn wait_for_daemon(status: File, child: Pid) -> ! {
    // Reap the first child, which exits as soon as it has forked the daemon.
    let _ = waitpid(child, None);
    let mut message = String::new();
    // The daemon writes one short message; more is not one it wrote.
    let _ = (&status).take(64 * 1024).read_to_string(&mut message);
    match message.strip_prefix("error:") {
        None if message == "ok" => std::process::exit(0),
        Some(error) => eprintln!("host: {error}"),
        None => eprintln!("host: the daemon exited during start-up; see its log file"),
    }
    std::process::exit(1)
}
