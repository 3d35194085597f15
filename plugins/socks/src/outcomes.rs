//! What the socks plugin counts beside the kit's connection metrics: connections by how they
//! ended, and the bytes relayed each way. Served by the host's admin endpoint with the
//! service's name (`host --admin …`).

use plugin_api::metrics::{self, Counter};

/// How a client's connection ended.
#[derive(Clone, Copy)]
pub enum Outcome {
    /// Relayed to its destination until one side closed.
    Relayed,
    /// The handshake failed: a malformed or unsupported request, a wrong password, a client
    /// that said nothing in time, or one the access rules refused.
    Refused,
    /// The destination could not be reached: denied by the rules, unknown, refusing, silent.
    Unreached,
    /// Connected, but the client was gone before relaying began.
    Abandoned,
}

pub struct Outcomes {
    connections: Counter,
    bytes: Counter,
}

impl Outcomes {
    /// Registers the metrics of the service being made.
    pub fn register() -> Self {
        Self {
            connections: metrics::counter(
                "socks_connections_total",
                "Client connections, by how they ended",
                &["outcome"],
            ),
            bytes: metrics::counter(
                "socks_relayed_bytes_total",
                "Bytes relayed, up (client to destination) and down",
                &["direction"],
            ),
        }
    }

    pub fn count(&self, outcome: Outcome) {
        let outcome = match outcome {
            Outcome::Relayed => "relayed",
            Outcome::Refused => "refused",
            Outcome::Unreached => "unreached",
            Outcome::Abandoned => "abandoned",
        };
        self.connections.with(&[outcome]).inc();
    }

    pub fn relayed(&self, up: u64, down: u64) {
        self.count(Outcome::Relayed);
        self.bytes.with(&["up"]).add(up);
        self.bytes.with(&["down"]).add(down);
    }
}
