//! Becoming a daemon: double fork, `setsid`, stdio to /dev/null, and a status pipe so the
//! command the user typed waits until the daemon's services have started, then exits 0, or
//! prints the daemon's start-up error and exits 1 (twistd does the same).
//!
//! Must run before any thread exists: `fork` copies only the calling thread.

use super::os_error;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};

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
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array with new descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("cannot create the status pipe: {}", os_error()));
    }
    // SAFETY: both descriptors were just created and are owned here alone.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other thread exists yet (see the module documentation).
    match unsafe { libc::fork() } {
        -1 => Err(format!("cannot fork: {}", os_error())),
        0 => {
            drop(read);
            become_daemon()?;
            Ok(StatusPipe(Some(File::from(write))))
        }
        child => {
            drop(write);
            wait_for_daemon(File::from(read), child)
        }
    }
}

/// In the first child: a new session, then a second fork so the daemon can never acquire a
/// controlling terminal, and stdio pointed at /dev/null.
fn become_daemon() -> Result<(), String> {
    // SAFETY: setsid and fork have no memory-safety preconditions; still a single thread.
    unsafe {
        if libc::setsid() == -1 {
            return Err(format!("cannot start a new session: {}", os_error()));
        }
        match libc::fork() {
            -1 => return Err(format!("cannot fork: {}", os_error())),
            0 => {}
            _ => libc::_exit(0),
        }
    }
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("cannot open /dev/null: {e}"))?;
    for fd in [libc::STDIN_FILENO, libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: dup2 onto the standard descriptors, which this process owns.
        if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) } == -1 {
            return Err(format!("cannot redirect stdio: {}", os_error()));
        }
    }
    Ok(())
}

/// In the command the user typed: wait for the daemon's word, then exit with it.
fn wait_for_daemon(mut status: File, child: libc::pid_t) -> ! {
    // Reap the first child, which exits as soon as it has forked the daemon.
    // SAFETY: waitpid on our own child with a valid status pointer.
    unsafe { libc::waitpid(child, &mut 0, 0) };
    let mut message = String::new();
    let _ = status.read_to_string(&mut message);
    match message.strip_prefix("error:") {
        None if message == "ok" => std::process::exit(0),
        Some(error) => eprintln!("host: {error}"),
        None => eprintln!("host: the daemon exited during start-up; see its log file"),
    }
    std::process::exit(1)
}
