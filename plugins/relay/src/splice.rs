//! Moving bytes between two TCP sockets: small reads are copied, and once a read fills the
//! buffer (a bulk transfer) the direction switches to `splice(2)`, socket to pipe to socket, so
//! the bytes stay in the kernel's pages and are never copied into user space.
//!
//! Starting with a copy keeps short connections cheap: a pipe costs two descriptors and a few
//! system calls to make, which a request and a small reply never pay back (BENCHMARKS.md).

use crate::End;
use plugin_api::tokio::io::Interest;
use plugin_api::tokio::net::TcpStream;
use rustix::pipe::{
    fcntl_getpipe_size, fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags,
};
use std::io;
use std::os::fd::OwnedFd;

/// A direction's first buffer, small so that idle relays hold little memory; a read that fills
/// it grows it to [`COPY_BYTES`].
const FIRST_BYTES: usize = 4 << 10;
/// A read that fills a buffer this large marks a bulk transfer.
const COPY_BYTES: usize = 16 << 10;

/// How much one pipe holds, if the kernel lets us set it (the default is 64 KiB; an
/// unprivileged process over its pipe quota keeps the default).
const PIPE_BYTES: usize = 1 << 20;

/// One direction's pipe: what was read from the source and not yet written.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Pipe {
    fn new() -> io::Result<Self> {
        let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let capacity =
            fcntl_setpipe_size(&write, PIPE_BYTES).or_else(|_| fcntl_getpipe_size(&write))?;
        Ok(Self {
            read,
            write,
            capacity,
        })
    }
}

const FLAGS: SpliceFlags = SpliceFlags::MOVE.union(SpliceFlags::NONBLOCK);

/// Moves bytes from `from` to `to` until `from` closes (then shuts down `to`'s write side) or
/// either fails: copied while reads are small, spliced from the first full read on (copied to
/// the end if no pipe can be made, say out of descriptors).
pub async fn one_way(from: &TcpStream, to: &TcpStream, moved: &mut u64) -> End {
    let mut buffer = vec![0; FIRST_BYTES];
    loop {
        let n = match read(from, &mut buffer).await {
            Ok(0) => return closed(to),
            Ok(n) => n,
            Err(e) => return End::ReadFailed(e),
        };
        if let Err(e) = write_all(to, &buffer[..n]).await {
            return End::WriteFailed(e);
        }
        *moved += n as u64;
        if n < buffer.len() {
            continue;
        }
        if buffer.len() < COPY_BYTES {
            buffer.resize(COPY_BYTES, 0);
        } else if let Ok(pipe) = Pipe::new() {
            drop(buffer);
            return spliced(from, to, &pipe, moved).await;
        }
    }
}

/// The source has closed: pass it on.
fn closed(to: &TcpStream) -> End {
    match rustix::net::shutdown(to, rustix::net::Shutdown::Write) {
        Ok(()) => End::Closed,
        Err(e) => End::close_failed(e.into()),
    }
}

async fn read(from: &TcpStream, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        from.readable().await?;
        match from.try_read(buffer) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            read => return read,
        }
    }
}

async fn write_all(to: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        to.writable().await?;
        match to.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The rest of the direction through `pipe`. The pipe is filled only when empty, so it never
/// holds more than its capacity.
async fn spliced(from: &TcpStream, to: &TcpStream, pipe: &Pipe, moved: &mut u64) -> End {
    loop {
        let filled = loop {
            if let Err(e) = from.readable().await {
                return End::ReadFailed(e);
            }
            let read = from.try_io(Interest::READABLE, || {
                Ok(splice(from, None, &pipe.write, None, pipe.capacity, FLAGS)?)
            });
            match read {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return End::ReadFailed(e),
            }
        };
        if filled == 0 {
            return closed(to);
        }
        let mut left = filled;
        while left > 0 {
            if let Err(e) = to.writable().await {
                return End::WriteFailed(e);
            }
            let written = to.try_io(Interest::WRITABLE, || {
                Ok(splice(&pipe.read, None, to, None, left, FLAGS)?)
            });
            match written {
                Ok(n) => {
                    left -= n;
                    *moved += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return End::WriteFailed(e),
            }
        }
    }
}
