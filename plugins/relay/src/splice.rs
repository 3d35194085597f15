//! Moving bytes between two TCP sockets with `splice(2)`: socket to pipe, pipe to socket, so
//! they stay in the kernel's pages and are never copied into user space.

use crate::End;
use plugin_api::tokio::io::Interest;
use plugin_api::tokio::net::TcpStream;
use rustix::pipe::{fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags};
use std::io;
use std::os::fd::OwnedFd;

/// How much one pipe holds, if the kernel lets us set it (the default is 64 KiB; an
/// unprivileged process over its pipe quota keeps the default).
const PIPE_BYTES: usize = 1 << 20;

/// One direction's pipe: what was read from the source and not yet written.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Pipe {
    fn new() -> io::Result<Self> {
        let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let capacity = fcntl_setpipe_size(&write, PIPE_BYTES)
            .or_else(|_| rustix::pipe::fcntl_getpipe_size(&write))?;
        Ok(Self {
            read,
            write,
            capacity,
        })
    }
}

/// A pipe for each direction.
pub struct Pipes {
    pub up: Pipe,
    pub down: Pipe,
}

impl Pipes {
    /// Fails when the process is out of descriptors; the relay then copies instead.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            up: Pipe::new()?,
            down: Pipe::new()?,
        })
    }
}

const FLAGS: SpliceFlags = SpliceFlags::MOVE.union(SpliceFlags::NONBLOCK);

/// Moves bytes from `from` to `to` until `from` closes (then shuts down `to`'s write side) or
/// either fails. The pipe is filled only when empty, so it never holds more than its capacity.
pub async fn one_way(from: &TcpStream, to: &TcpStream, pipe: &Pipe, moved: &mut u64) -> End {
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
            return match rustix::net::shutdown(to, rustix::net::Shutdown::Write) {
                Ok(()) => End::Closed,
                Err(e) => End::WriteFailed(e.into()),
            };
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
