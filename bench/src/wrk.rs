//! wrk, the HTTP load generator (Debian's `wrk`): runs it against a URL and reads its summary.

use crate::servers;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PROGRAM: &str = "/usr/bin/wrk";

/// wrk itself, or an error saying how to install it.
pub fn locate() -> Result<PathBuf, String> {
    servers::require_file(
        "wrk",
        PROGRAM.into(),
        "install it with `apt-get install -y wrk`",
    )
}

/// What one wrk run measured.
pub struct Outcome {
    /// Responses received in the whole run.
    pub requests: u64,
    pub requests_per_sec: f64,
    /// In MB (10^6 bytes) per second, the unit of the other benches.
    pub mb_per_sec: f64,
    /// Socket errors and responses that were not 2xx or 3xx.
    pub errors: u64,
}

/// Runs `wrk -t THREADS -c CONNECTIONS -d SECONDS url` (keep-alive, as wrk always is).
pub fn run(
    wrk: &Path,
    url: &str,
    connections: usize,
    threads: usize,
    duration: Duration,
) -> Result<Outcome, String> {
    let out = Command::new(wrk)
        .args(["-t", &threads.to_string(), "-c", &connections.to_string()])
        .args(["-d", &format!("{}s", duration.as_secs_f64().ceil() as u64)])
        .arg(url)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", wrk.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "wrk failed on {url}: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    parse(&text).ok_or_else(|| format!("cannot read wrk's summary:\n{text}"))
}

fn parse(text: &str) -> Option<Outcome> {
    let value = |label: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(str::trim)
    };
    let requests_per_sec = value("Requests/sec:")?.parse().ok()?;
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let mb_per_sec = bytes(value("Transfer/sec:")?)? / 1e6;
    let socket_errors: u64 = value("Socket errors:").map_or(0, |errors| {
        errors
            .split(',')
            .filter_map(|e| e.split_whitespace().last()?.parse::<u64>().ok())
            .sum()
    });
    let bad_status: u64 = value("Non-2xx or 3xx responses:").map_or(0, |n| n.parse().unwrap_or(0));
    Some(Outcome {
        requests,
        requests_per_sec,
        mb_per_sec,
        errors: socket_errors + bad_status,
    })
}

/// wrk's sizes: a number with B, KB, MB, GB or TB, in powers of 1024.
fn bytes(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "B" => 1.0,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(number.parse::<f64>().ok()? * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_summary() {
        let text = "Running 2s test @ http://127.0.0.1:1/small.bin
  2 threads and 50 connections
  80000 requests in 2.00s, 95.00MB read
  Socket errors: connect 0, read 2, write 1, timeout 0
  Non-2xx or 3xx responses: 3
Requests/sec:  40000.50
Transfer/sec:      1.50GB
";
        let outcome = parse(text).unwrap();
        assert_eq!(outcome.requests_per_sec, 40000.5);
        assert_eq!(outcome.requests, 80000);
        assert!((outcome.mb_per_sec - 1610.612736).abs() < 1e-6);
        assert_eq!(outcome.errors, 6);
    }
}
