//! The control connection: command lines in, replies out.
//!
//! Every command line is read into one fixed buffer of [`MAX_LINE`] bytes, before and after
//! login, in clear or inside TLS: a client that sends more without a line end gets `500` and is
//! disconnected, so a session costs the same memory whatever the client sends.
//!
//! Nothing here waits on the client without a deadline: until the session first logs in,
//! reading a command, writing a reply and the TLS handshake all end at the login deadline, so a
//! client that pipelines commands and never reads the replies cannot hold its slot for longer
//! than one that says nothing; after login, each wait ends after the idle timeout.

use plugin_api::tokio::io::{AsyncReadExt, AsyncWriteExt};
use plugin_api::tokio::time::{timeout_at, Instant};
use plugin_api::{Stream, TlsConfig};
use std::io;
use std::time::Duration;

/// The longest command line accepted, line end included: vsftpd's limit.
pub const MAX_LINE: usize = 4096;

/// What the client sent next.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// One line, without its line end.
    Line(Vec<u8>),
    /// [`MAX_LINE`] bytes without a line end.
    TooLong,
    /// The client closed the connection.
    Closed,
}

/// One session's control connection.
pub struct Control {
    stream: Stream,
    buffer: Box<[u8]>,
    /// The unread bytes are `buffer[start..end]`.
    start: usize,
    end: usize,
    /// The last line ended with CR: an LF right after it belongs to it.
    after_cr: bool,
    /// How long one command or one reply may take once the session has logged in.
    idle_timeout: Duration,
    /// When the session must have logged in; `None` once it has.
    login_deadline: Option<Instant>,
}

/// Which limit a wait on the client ran into.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    Login,
    Idle,
}

impl Limit {
    /// What the client is told when its next command does not come in time.
    pub fn reply(self) -> &'static str {
        match self {
            Limit::Login => "Not logged in in time; closing.",
            Limit::Idle => "Idle for too long; closing.",
        }
    }

    fn timed_out(self) -> io::Error {
        let why = match self {
            Limit::Login => "the client did not log in in time",
            Limit::Idle => "the client stopped reading replies",
        };
        io::Error::new(io::ErrorKind::TimedOut, why)
    }
}

impl Control {
    pub fn new(stream: Stream, idle_timeout: Duration, login_deadline: Option<Instant>) -> Self {
        Self {
            stream,
            buffer: vec![0; MAX_LINE].into_boxed_slice(),
            start: 0,
            end: 0,
            after_cr: false,
            idle_timeout,
            login_deadline,
        }
    }

    /// The session has logged in: from now on only the idle timeout applies, even if it
    /// later sends `USER` again.
    pub fn logged_in(&mut self) {
        self.login_deadline = None;
    }

    /// When the wait that starts now must end, and which limit that is.
    pub fn deadline(&self) -> (Instant, Limit) {
        let idle = Instant::now() + self.idle_timeout;
        match self.login_deadline {
            Some(login) if login < idle => (login, Limit::Login),
            _ => (idle, Limit::Idle),
        }
    }

    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// The next line. Cancel-safe: what was read stays in the buffer for the next call.
    ///
    /// A line ends with CR LF, LF or CR alone. CR alone matters for ABOR: clients send it as
    /// TCP urgent data (Python's ftplib sends all of `ABOR\r\n` with MSG_OOB), and the kernel
    /// takes the last byte, the LF, out of the stream.
    pub async fn next_line(&mut self) -> io::Result<Incoming> {
        loop {
            if self.after_cr && self.start < self.end {
                if self.buffer[self.start] == b'\n' {
                    self.start += 1;
                }
                self.after_cr = false;
            }
            let unread = &self.buffer[self.start..self.end];
            if let Some(at) = unread.iter().position(|&b| b == b'\n' || b == b'\r') {
                let line = unread[..at].to_vec();
                self.after_cr = unread[at] == b'\r';
                self.start += at + 1;
                return Ok(Incoming::Line(line));
            }
            if self.start > 0 {
                self.buffer.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buffer.len() {
                return Ok(Incoming::TooLong);
            }
            match self.stream.read(&mut self.buffer[self.end..]).await? {
                0 => return Ok(Incoming::Closed),
                read => self.end += read,
            }
        }
    }

    /// Sends a one-line reply.
    pub async fn reply(&mut self, code: u16, text: impl AsRef<[u8]>) -> io::Result<()> {
        let reply = [format!("{code} ").as_bytes(), text.as_ref(), b"\r\n"].concat();
        self.send(&reply).await
    }

    /// Sends a multi-line reply: `code-first`, each line indented by a space (so none can be
    /// taken for the last), then `code last`.
    pub async fn reply_lines(
        &mut self,
        code: u16,
        first: &str,
        lines: &[&[u8]],
        last: &str,
    ) -> io::Result<()> {
        let mut reply = format!("{code}-{first}\r\n").into_bytes();
        for line in lines {
            reply.push(b' ');
            reply.extend_from_slice(line);
            reply.extend_from_slice(b"\r\n");
        }
        reply.extend_from_slice(format!("{code} {last}\r\n").as_bytes());
        self.send(&reply).await
    }

    /// Writes bytes that are already a well-formed part of a reply.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let (deadline, limit) = self.deadline();
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        // Past the deadline (the 421 that says so), a reply goes out only if the socket takes
        // it at once: tokio polls the write before the expired timer.
        timeout_at(deadline, write)
            .await
            .unwrap_or_else(|_| Err(limit.timed_out()))
    }

    /// Switches to TLS after `AUTH TLS` was accepted. Anything the client sent after the
    /// command and before the handshake is discarded, never run as a command: that is how
    /// plain-text commands are kept from being injected into the protected session.
    pub async fn upgrade(self, tls: &TlsConfig) -> io::Result<Self> {
        let (deadline, limit) = self.deadline();
        let tcp = self
            .stream
            .into_tcp()
            .map_err(|_| io::Error::other("the control connection is not plain TCP"))?;
        let tls = timeout_at(deadline, tls.accept(tcp))
            .await
            .unwrap_or_else(|_| Err(limit.timed_out()))?;
        Ok(Self::new(tls, self.idle_timeout, self.login_deadline))
    }

    /// Closes the connection: TLS's `close_notify` first when there is TLS.
    pub async fn close(mut self) {
        let (deadline, _) = self.deadline();
        let _ = timeout_at(deadline, self.stream.shutdown()).await;
    }
}
