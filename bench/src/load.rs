//! The poetry client: `concurrency` clients, each connecting, reading to EOF and connecting
//! again, until the time is up or enough poems have been asked for.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::timeout;

/// A connect or a read that makes no progress for this long counts as an error, so a stuck
/// server cannot hang the bench.
const TIMEOUT: Duration = Duration::from_secs(5);
const READ_BUFFER: usize = 64 * 1024;

pub struct Load {
    pub addr: SocketAddr,
    /// The poem's size: a poem of any other size is an error.
    pub poem_len: usize,
    pub concurrency: usize,
    pub duration: Duration,
    /// Stops the measurement early if the duration would allow more poems than this.
    pub max_poems: usize,
}

#[derive(Default)]
pub struct Outcome {
    /// One per poem received whole.
    latencies: Vec<Duration>,
    /// Connections that failed, timed out or brought a poem of the wrong size.
    pub errors: usize,
    elapsed: Duration,
}

impl Outcome {
    pub fn poems_per_sec(&self) -> f64 {
        self.poems() as f64 / self.elapsed.as_secs_f64()
    }

    /// Poems received whole.
    pub fn poems(&self) -> usize {
        self.latencies.len()
    }

    /// Poem bytes received whole, in MB (10^6 bytes) per second.
    pub fn mb_per_sec(&self, poem_len: usize) -> f64 {
        self.poems_per_sec() * poem_len as f64 / 1e6
    }

    /// The 99th percentile latency in milliseconds; NaN if no poem arrived.
    pub fn p99_ms(&self) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let rank = (sorted.len() * 99).div_ceil(100).saturating_sub(1);
        sorted.get(rank).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    }
}

/// Runs `load` to the end; errors are counted, never returned.
pub async fn run(load: &Load) -> Outcome {
    let started = Instant::now();
    let deadline = started + load.duration;
    // Shared by all clients so the cap holds for the measurement, not per client.
    let asked = Arc::new(AtomicUsize::new(0));
    let mut clients = JoinSet::new();
    for _ in 0..load.concurrency {
        let (addr, poem_len, max_poems) = (load.addr, load.poem_len, load.max_poems);
        let asked = Arc::clone(&asked);
        clients.spawn(async move {
            let mut outcome = Outcome::default();
            let mut buffer = vec![0; READ_BUFFER];
            while Instant::now() < deadline && asked.fetch_add(1, Ordering::Relaxed) < max_poems {
                let start = Instant::now();
                match fetch(addr, &mut buffer).await {
                    Ok(len) if len == poem_len => outcome.latencies.push(start.elapsed()),
                    _ => outcome.errors += 1,
                }
            }
            outcome
        });
    }
    let mut total = Outcome::default();
    while let Some(joined) = clients.join_next().await {
        match joined {
            Ok(outcome) => {
                total.latencies.extend(outcome.latencies);
                total.errors += outcome.errors;
            }
            Err(_) => total.errors += 1,
        }
    }
    total.elapsed = started.elapsed();
    total
}

/// One poem: connect, read to EOF, return how many bytes came.
async fn fetch(addr: SocketAddr, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut stream = timeout(TIMEOUT, TcpStream::connect(addr)).await??;
    let mut len = 0;
    loop {
        match timeout(TIMEOUT, stream.read(buffer)).await?? {
            0 => return Ok(len),
            read => len += read,
        }
    }
}
