//! Response bodies: bytes in memory, or ranges of an open file streamed in fixed chunks.
//!
//! A file is read by the blocking pool one chunk at a time, one chunk ahead of the socket:
//! while hyper writes a chunk, the next is being read. hyper takes the next chunk only once
//! its write buffer (capped by `max_buf_size` in `connection`) has room, so a connection holds
//! at most about two chunks, whatever the file's size or the client's speed. No thread is held
//! while a slow client reads.

use crate::access_log::PendingLine;
use crate::connection::Watched;
use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use plugin_api::tokio::task::{spawn_blocking, JoinHandle};
use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// How much of a file one read takes over HTTP/1.1. Measured with `bench web` (see
/// BENCHMARKS.md).
pub const CHUNK: usize = 512 * 1024;
/// The same over HTTP/2, where every stream of a connection may hold a chunk waiting for the
/// client's flow-control window: smaller, so 64 streams hold at most a few MiB.
pub const STREAM_CHUNK: usize = 64 * 1024;

/// One piece of a body.
pub enum Part {
    Bytes(Bytes),
    /// `len` bytes of `file` from `offset`.
    File {
        file: Arc<File>,
        offset: u64,
        len: u64,
    },
}

impl Part {
    fn len(&self) -> u64 {
        match self {
            Part::Bytes(bytes) => bytes.len() as u64,
            Part::File { len, .. } => *len,
        }
    }
}

/// A response body of a known length.
pub struct Body {
    parts: VecDeque<Part>,
    /// The read of the next chunk, when one is under way.
    reading: Option<JoinHandle<io::Result<Bytes>>>,
    /// Bytes not yet handed to hyper.
    remaining: u64,
    /// The access-log line, written when the body is done with (sent, or dropped because the
    /// client went away), with the bytes actually handed over.
    log: Option<PendingLine>,
    /// Counts this body as open, and its bytes as progress, for the connection's watchdog.
    watched: Option<Watched>,
    /// How much one read takes.
    chunk: usize,
}

impl Body {
    pub fn empty() -> Self {
        Self::from_parts(Vec::new())
    }

    pub fn bytes(bytes: impl Into<Bytes>) -> Self {
        Self::from_parts(vec![Part::Bytes(bytes.into())])
    }

    pub fn from_parts(parts: Vec<Part>) -> Self {
        Self {
            remaining: parts.iter().map(Part::len).sum(),
            parts: parts.into_iter().filter(|p| p.len() > 0).collect(),
            reading: None,
            log: None,
            watched: None,
            chunk: CHUNK,
        }
    }

    /// The length in bytes.
    pub fn len(&self) -> u64 {
        self.remaining
    }

    pub fn with_log(mut self, line: PendingLine) -> Self {
        self.log = Some(line);
        self
    }

    pub fn in_chunks_of(mut self, chunk: usize) -> Self {
        self.chunk = chunk;
        self
    }

    pub fn watched_by(mut self, watched: Watched) -> Self {
        self.watched = Some(watched);
        self
    }

    /// Starts reading the next chunk, if the next part is a file and no read is under way.
    fn read_ahead(&mut self) {
        if self.reading.is_some() {
            return;
        }
        let Some(Part::File { file, offset, len }) = self.parts.front_mut() else {
            return;
        };
        let take = (*len).min(self.chunk as u64);
        let (file_now, at) = (file.clone(), *offset);
        *offset += take;
        *len -= take;
        if *len == 0 {
            self.parts.pop_front();
        }
        self.reading = Some(spawn_blocking(move || {
            read_exact_at(&file_now, at, take as usize)
        }));
    }

    fn yielded(&mut self, data: Bytes) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        self.remaining -= data.len() as u64;
        if let Some(log) = &mut self.log {
            log.sent(data.len() as u64);
        }
        if let Some(watched) = &self.watched {
            watched.sent(data.len() as u64);
        }
        Poll::Ready(Some(Ok(Frame::data(data))))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let this = self.get_mut();
        if let Some(reading) = &mut this.reading {
            let read = ready!(Pin::new(reading).poll(cx));
            this.reading = None;
            let data = read.map_err(io::Error::other).and_then(|read| read)?;
            this.read_ahead();
            return this.yielded(data);
        }
        match this.parts.front() {
            None => Poll::Ready(None),
            Some(Part::Bytes(_)) => match this.parts.pop_front() {
                Some(Part::Bytes(data)) => this.yielded(data),
                _ => unreachable!("the front part is bytes"),
            },
            Some(Part::File { .. }) => {
                this.read_ahead();
                Pin::new(this).poll_frame(cx)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Reads exactly `len` bytes of `file` from `offset`. A file that shrank under us is an error:
/// the response has promised its length.
pub fn read_exact_at(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    let mut buffer = BytesMut::zeroed(len);
    file.read_exact_at(&mut buffer, offset)
        .map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                io::Error::other("the file shrank while it was being sent")
            }
            _ => e,
        })?;
    Ok(buffer.freeze())
}
