//! What the ftp plugin counts beside the kit's connection metrics: logins by outcome, and
//! transfers (by direction and outcome) and their bytes (by direction). Served by the host's
//! admin endpoint with the service's name (`host --admin …`).

use plugin_api::metrics::{self, Counter};

#[derive(Clone)]
pub struct Metrics {
    logins: Counter,
    transfers: Counter,
    bytes: Counter,
}

/// How a login attempt ended.
#[derive(Clone, Copy)]
pub enum Login {
    Accepted,
    /// A wrong password or an unknown user.
    Failed,
    /// Refused unheard: the address is banned for its failed logins.
    Banned,
}

/// Which way a file went.
#[derive(Clone, Copy)]
pub enum Direction {
    Download,
    Upload,
}

impl Direction {
    /// The verb of the log line: `alice downloaded /big.bin …`.
    pub fn verb(self) -> &'static str {
        match self {
            Self::Download => "downloaded",
            Self::Upload => "uploaded",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Download => "download",
            Self::Upload => "upload",
        }
    }
}

impl Metrics {
    /// Registers the metrics of the service being started.
    pub fn register() -> Self {
        Self {
            logins: metrics::counter(
                "ftp_logins_total",
                "Login attempts, by outcome",
                &["outcome"],
            ),
            transfers: metrics::counter(
                "ftp_transfers_total",
                "File transfers, by direction and outcome",
                &["direction", "outcome"],
            ),
            bytes: metrics::counter(
                "ftp_transferred_bytes_total",
                "Bytes of files transferred, complete or not, by direction",
                &["direction"],
            ),
        }
    }

    pub fn login(&self, outcome: Login) {
        let outcome = match outcome {
            Login::Accepted => "accepted",
            Login::Failed => "failed",
            Login::Banned => "banned",
        };
        self.logins.with(&[outcome]).inc();
    }

    pub fn transfer(&self, direction: Direction, completed: bool, bytes: u64) {
        let outcome = if completed { "completed" } else { "aborted" };
        self.transfers.with(&[direction.label(), outcome]).inc();
        self.bytes.with(&[direction.label()]).add(bytes);
    }
}
