//! The listening sockets the master holds for its workers, by name (`Endpoint::socket_name`):
//! bound when a worker first asks, handed to every worker that asks again, kept while any
//! worker of the current generation uses them, so a worker that dies or a generation that is
//! replaced never closes a socket clients are connecting to.

use plugin_api::Endpoint;
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use tracing::info;

struct Held {
    socket: OwnedFd,
    /// The socket file of a Unix endpoint, removed when the socket is let go.
    file: Option<PathBuf>,
    /// The generations of workers that asked for it.
    generations: BTreeSet<u32>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Every socket held, by name. Cheap to clone; clones share the sockets.
#[derive(Clone, Default)]
pub struct Sockets(Arc<Mutex<BTreeMap<String, Held>>>);

impl Sockets {
    fn held(&self) -> MutexGuard<'_, BTreeMap<String, Held>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A descriptor of the socket named `name` for a worker of `generation`, bound now if no
    /// worker asked for it before; the error says why it cannot be had.
    pub fn give(&self, name: &str, generation: u32, worker: u32) -> Result<OwnedFd, String> {
        let mut held = self.held();
        if let Some(socket) = held.get_mut(name) {
            socket.generations.insert(generation);
            return socket
                .socket
                .try_clone()
                .map_err(|e| format!("cannot hand over {name}: {e}"));
        }
        let endpoint: Endpoint = name.parse().map_err(|e| format!("{e}"))?;
        let socket = endpoint.bind_socket().map_err(|e| e.to_string())?;
        info!("Listening on {name} for the workers (asked by worker {worker}).");
        let file = match &endpoint {
            Endpoint::Unix { path, .. } => Some(path.clone()),
            _ => None,
        };
        let given = socket
            .try_clone()
            .map_err(|e| format!("cannot hand over {name}: {e}"))?;
        held.insert(
            name.to_string(),
            Held {
                socket,
                file,
                generations: BTreeSet::from([generation]),
            },
        );
        Ok(given)
    }

    /// Closes the sockets no worker of `generation` asked for: those only an older generation
    /// (now stopped) listened on.
    pub fn keep_only(&self, generation: u32) {
        let mut held = self.held();
        let unused: Vec<String> = held
            .iter()
            .filter(|(_, socket)| !socket.generations.contains(&generation))
            .map(|(name, _)| name.clone())
            .collect();
        for name in unused {
            held.remove(&name);
            info!("Closed {name}: no worker of the current generation listens on it.");
        }
    }

    /// Closes every socket (removing Unix socket files): the master is done.
    pub fn close_all(&self) {
        self.held().clear();
    }
}
