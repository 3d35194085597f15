//! The channel between the master and one worker: a Unix `SOCK_SEQPACKET` pair, one message a
//! request or a reply, listening sockets passed with `SCM_RIGHTS`.
//!
//! The worker asks, the master answers:
//! - `bind NAME` → `ok` with the socket the master holds for endpoint NAME (bound now if it was
//!   not yet), or `error WHY`;
//! - `bound` → `ok`: the worker is about to give up its privileges; later `bind`s are refused;
//! - `ready` → `ok`: every service of the worker has started.
//!
//! A second, ordinary stream pair carries the master's questions to the worker (`report\n`,
//! answered by one line of JSON): a report can be larger than one datagram.

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The largest message: a `bind` of a long Unix socket path, or an error line.
const MAX_MESSAGE: usize = 8192;

/// The environment variable that tells a `host` process it is worker N of a master, and where
/// its channels are: `ID:CONTROL_FD:QUERY_FD:LOG_FD`.
pub const WORKER_ENV: &str = "HOST_SUPERVISOR_WORKER";

/// One end of a control channel.
pub struct Channel(OwnedFd);

/// A message and the descriptor that came with it, if any.
pub struct Message {
    pub text: String,
    pub fd: Option<OwnedFd>,
}

impl Channel {
    /// A connected pair: (the master's end, the worker's end). The worker's end is inheritable
    /// (no close-on-exec) so the worker process gets it; the master closes it once spawned.
    pub fn pair() -> std::io::Result<(Self, OwnedFd)> {
        let (master, worker) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::empty(),
        )?;
        nix::fcntl::fcntl(
            &master,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )?;
        Ok((Self(master), worker))
    }

    pub fn from_fd(fd: OwnedFd) -> Self {
        Self(fd)
    }

    /// Sends `text`, with `fd` if given.
    pub fn send(&self, text: &str, fd: Option<&OwnedFd>) -> std::io::Result<()> {
        let iov = [IoSlice::new(text.as_bytes())];
        let fds: Vec<RawFd> = fd.iter().map(|fd| fd.as_raw_fd()).collect();
        let cmsgs = [ControlMessage::ScmRights(&fds)];
        let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsgs };
        sendmsg::<()>(
            self.0.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        Ok(())
    }

    /// Receives one message; `Ok(None)` when the other end has closed.
    pub fn receive(&self) -> std::io::Result<Option<Message>> {
        let mut buffer = vec![0u8; MAX_MESSAGE];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let (length, fds) = {
            let mut iov = [IoSliceMut::new(&mut buffer)];
            let received = recvmsg::<()>(
                self.0.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )?;
            let mut fds = Vec::new();
            for message in received.cmsgs()? {
                if let ControlMessageOwned::ScmRights(received) = message {
                    fds.extend(received);
                }
            }
            (received.bytes, fds)
        };
        // SAFETY: the kernel has just installed these descriptors in this process for this
        // message (SCM_RIGHTS): nothing else owns them.
        #[allow(unsafe_code)]
        let mut fds: Vec<OwnedFd> = fds
            .into_iter()
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
            .collect();
        if length == 0 && fds.is_empty() {
            return Ok(None);
        }
        buffer.truncate(length);
        Ok(Some(Message {
            text: String::from_utf8_lossy(&buffer).into_owned(),
            fd: fds.pop(),
        }))
    }
}
