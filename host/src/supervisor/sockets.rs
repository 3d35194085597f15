//! The listening sockets the master holds for its workers, by what they listen on: bound when a
//! worker first asks, handed to every worker that asks again, kept while any worker of the
//! current generation uses them, so a worker that dies or a generation that is replaced never
//! closes a socket clients are connecting to. Workers ask by name (`Endpoint::socket_name`),
//! and two names may spell one socket (`interface=localhost` and `interface=127.0.0.1`, another
//! backlog, `x.sock` and `./x.sock`): a new generation whose file respells an endpoint gets the
//! socket the old one listens on, rather than a second bind that fails.

use plugin_api::Endpoint;
use std::collections::{BTreeMap, BTreeSet};
use std::net::ToSocketAddrs;
use std::os::fd::OwnedFd;
use std::path::{Component, PathBuf};
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
        let endpoint: Endpoint = name.parse().map_err(|e| format!("{e}"))?;
        let key = listens_on(&endpoint).unwrap_or_else(|| name.to_string());
        let mut held = self.held();
        if let Some(socket) = held.get_mut(&key) {
            socket.generations.insert(generation);
            return socket
                .socket
                .try_clone()
                .map_err(|e| format!("cannot hand over {name}: {e}"));
        }
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
            key,
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

/// What `endpoint` listens on, however it is spelled: a TCP address (the interface resolved,
/// as binding resolves it), or a Unix socket's absolute path with `.` and `..` taken out.
/// `None` for what is known by its name alone (port 0, systemd's sockets).
fn listens_on(endpoint: &Endpoint) -> Option<String> {
    match endpoint {
        Endpoint::Tcp {
            port, interface, ..
        }
        | Endpoint::Ssl {
            port, interface, ..
        } if *port > 0 => {
            let host = interface.as_deref().unwrap_or("0.0.0.0");
            let address = (host, *port).to_socket_addrs().ok()?.next()?;
            Some(format!("tcp {address}"))
        }
        Endpoint::Unix { path, .. } => {
            let mut plain = PathBuf::new();
            for part in std::path::absolute(path).ok()?.components() {
                match part {
                    Component::CurDir => {}
                    Component::ParentDir => {
                        plain.pop();
                    }
                    other => plain.push(other),
                }
            }
            Some(format!("unix {}", plain.display()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Option<String> {
        listens_on(&name.parse().unwrap())
    }

    #[test]
    fn one_socket_however_it_is_spelled() {
        let tcp = key("tcp:8080:interface=127.0.0.1");
        assert!(tcp.is_some());
        for spelling in [
            "tcp:8080:interface=127.0.0.1:backlog=100",
            "tcp:8080:interface=localhost",
        ] {
            assert_eq!(key(spelling), tcp, "{spelling}");
        }
        assert_ne!(key("tcp:8081:interface=127.0.0.1"), tcp);
        assert_ne!(key("tcp:8080:interface=127.0.0.2"), tcp);
        assert_eq!(key("unix:./x.sock"), key("unix:sub/../x.sock"));
        assert_eq!(key("unix:x.sock:mode=0600"), key("unix:x.sock"));
        assert_eq!(
            key("tcp:0:interface=127.0.0.1"),
            None,
            "port 0 is a new socket each time"
        );
    }
}
