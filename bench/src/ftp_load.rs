//! The FTP measurements: one client retrieving a large file, and many clients each running
//! whole sessions, each bounded by a duration and a count.

use crate::ftp_client::{protocol_error, Session};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Large enough that a read takes whatever the socket holds.
const READ_BUFFER: usize = 1 << 20;
/// Retrievals of the large file in one measurement, unless the duration runs out first.
const MAX_RETRIEVALS: usize = 3;
/// Caps the sessions of one measurement, so a long `--seconds` stays bounded too.
const MAX_SESSIONS: usize = 100_000;

/// A file in the served root.
pub struct Served {
    pub name: &'static str,
    pub len: u64,
}

#[derive(Default)]
pub struct Outcome {
    /// Sessions or retrievals that completed with the right byte counts.
    completed: usize,
    /// The bytes they retrieved.
    bytes: u64,
    /// The time they took: the wall time of a measurement of sessions, but of retrievals
    /// only the transfers themselves, without connecting and logging in.
    elapsed: Duration,
    /// Sessions or retrievals that failed, timed out or brought the wrong byte count.
    pub errors: usize,
    pub first_error: Option<String>,
}

impl Outcome {
    pub fn per_sec(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }

    /// In MB (10^6 bytes) per second.
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }

    fn fail(&mut self, error: io::Error) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| error.to_string());
    }

    fn add(&mut self, other: Self) {
        self.completed += other.completed;
        self.bytes += other.bytes;
        self.errors += other.errors;
        if let Some(error) = other.first_error {
            self.first_error.get_or_insert(error);
        }
    }
}

/// One session and one retrieval of `large`, unmeasured: fails with the first error, so a
/// misconfigured server stops the bench with its reason rather than a table of errors. It
/// also brings both files into the page cache before anything is timed.
pub fn check(addr: SocketAddr, small: &Served, large: &Served) -> io::Result<()> {
    let mut buffer = vec![0; READ_BUFFER];
    session(addr, small, &mut buffer)?;
    timed_retrieval(addr, large, &mut buffer).map(drop)
}

/// Retrieves `file` over one connection at a time, up to [`MAX_RETRIEVALS`] times or until
/// `duration` has passed, whichever comes first.
pub fn retrievals(addr: SocketAddr, file: &Served, duration: Duration) -> Outcome {
    let started = Instant::now();
    let mut buffer = vec![0; READ_BUFFER];
    let mut outcome = Outcome::default();
    for _ in 0..MAX_RETRIEVALS {
        match timed_retrieval(addr, file, &mut buffer) {
            Ok(elapsed) => {
                outcome.completed += 1;
                outcome.bytes += file.len;
                outcome.elapsed += elapsed;
            }
            Err(error) => outcome.fail(error),
        }
        if started.elapsed() >= duration {
            break;
        }
    }
    outcome
}

/// `clients` clients, each running sessions that retrieve `file` back to back, until
/// `duration` has passed or [`MAX_SESSIONS`] have started.
pub fn sessions(addr: SocketAddr, file: &Served, clients: usize, duration: Duration) -> Outcome {
    let started = Instant::now();
    let deadline = started + duration;
    // Shared by all clients so the cap holds for the measurement, not per client.
    let begun = AtomicUsize::new(0);
    let client = || {
        let mut buffer = vec![0; READ_BUFFER];
        let mut outcome = Outcome::default();
        while Instant::now() < deadline && begun.fetch_add(1, Ordering::Relaxed) < MAX_SESSIONS {
            match session(addr, file, &mut buffer) {
                Ok(()) => outcome.completed += 1,
                Err(error) => outcome.fail(error),
            }
        }
        outcome
    };
    let mut total = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..clients).map(|_| scope.spawn(client)).collect();
        let mut total = Outcome::default();
        for client in clients {
            total.add(client.join().expect("a client panicked"));
        }
        total
    });
    total.elapsed = started.elapsed();
    total
}

/// One session: log in, LIST, RETR `file`, QUIT.
fn session(addr: SocketAddr, file: &Served, buffer: &mut [u8]) -> io::Result<()> {
    let mut session = Session::login(addr)?;
    if session.list(buffer)? == 0 {
        return Err(protocol_error("LIST: empty listing".into()));
    }
    check_len(file, session.retr(file.name, buffer)?)?;
    session.quit()
}

/// Logs in and retrieves `file`, timing the retrieval alone: from RETR's PASV to its
/// completion reply.
fn timed_retrieval(addr: SocketAddr, file: &Served, buffer: &mut [u8]) -> io::Result<Duration> {
    let mut session = Session::login(addr)?;
    let started = Instant::now();
    let len = session.retr(file.name, buffer)?;
    let elapsed = started.elapsed();
    check_len(file, len)?;
    session.quit()?;
    Ok(elapsed)
}

fn check_len(file: &Served, len: u64) -> io::Result<()> {
    if len == file.len {
        Ok(())
    } else {
        Err(protocol_error(format!(
            "RETR {}: {len} bytes, expected {}",
            file.name, file.len
        )))
    }
}
