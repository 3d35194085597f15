//! Supervisor mode (`--workers N`): a master process that holds every listening socket and
//! runs the services in N worker processes, so that a plugin that crashes takes one worker
//! with it, not the host, and a new version of a plugin (or of host) starts in a new generation
//! of workers while the sockets stay open.
//!
//! The master loads no plugin code: it reads the application file and the plugins' cache
//! entries, binds each socket when a worker first asks for it (`channel`), relays the workers'
//! log lines into the one log, and serves the admin endpoint for all of them.

pub mod channel;
mod fleet;
pub mod master;
mod sockets;
pub mod worker;
