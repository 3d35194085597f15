//! The signals a main loop answers, one place for the single process and the supervisor's
//! master alike. Installed with tokio, so a signal only sets a flag: the loop that receives it
//! never opens a file or waits for a plugin.

use tokio::signal::unix::{signal, Signal, SignalKind};

pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
    reopen: Signal,
    upgrade: Signal,
}

pub enum Received {
    /// SIGINT or SIGTERM, by name: stop cleanly.
    Shutdown(&'static str),
    /// SIGHUP: reload, or read the application file again.
    Hangup,
    /// SIGUSR1: reopen the log file.
    Reopen,
    /// SIGUSR2: start a new generation of workers.
    Upgrade,
}

impl Signals {
    /// Must run inside a tokio runtime.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
            reopen: signal(SignalKind::user_defined1())?,
            // Answered even where it means nothing, so that it never kills a single process
            // by its default action.
            upgrade: signal(SignalKind::user_defined2())?,
        })
    }

    /// The next SIGINT or SIGTERM, the signals that ask for a clean shutdown.
    pub async fn shutdown(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }

    pub async fn next(&mut self) -> Received {
        tokio::select! {
            _ = self.interrupt.recv() => Received::Shutdown("SIGINT"),
            _ = self.terminate.recv() => Received::Shutdown("SIGTERM"),
            _ = self.hangup.recv() => Received::Hangup,
            _ = self.reopen.recv() => Received::Reopen,
            _ = self.upgrade.recv() => Received::Upgrade,
        }
    }
}
