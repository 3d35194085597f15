//! Moving bytes over a data connection: files down (with `sendfile(2)` over plain TCP), files
//! up, listings down; ending the connection properly; and the transfer log.
//!
//! Every wait is bounded by the stall timeout: a client that stops reading or sending is cut
//! off, never waited for forever. Memory is fixed per transfer, whatever the file's size.

use crate::metrics::{Direction, Metrics};
use crate::names;
use plugin_api::tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use plugin_api::tokio::sync::mpsc;
use plugin_api::tokio::time::timeout;
use plugin_api::tracing::info;
use plugin_api::{tokio, Stream};
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The block size for copies through user space (TLS, uploads).
const BLOCK: usize = 256 * 1024;

/// The most one `sendfile` call is asked to send, so one transfer cannot hold a worker thread.
const SENDFILE_MAX: usize = 4 << 20;

/// How long a TLS data connection waits for the client's `close_notify` after the server's.
const LINGER: Duration = Duration::from_secs(2);

/// Bytes moved so far, shared with the transfer's log record.
pub type Progress = Arc<AtomicU64>;

/// `operation` within `stall`, or a timeout error saying the client stalled.
async fn within<T>(
    stall: Duration,
    operation: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match timeout(stall, operation).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no progress for {stall:?}"),
        )),
    }
}

/// Sends `file` from `offset` to its end.
pub async fn send_file(
    data: &mut Stream,
    file: std::fs::File,
    offset: u64,
    len: u64,
    sent: &Progress,
    stall: Duration,
) -> io::Result<()> {
    match data.tcp() {
        Some(socket) => sendfile(socket, &file, offset, len, sent, stall).await,
        None => copy_file(data, file, offset, sent, stall).await,
    }
}

/// Plain TCP: the kernel copies from the page cache to the socket, as vsftpd and nginx do.
async fn sendfile(
    socket: &tokio::net::TcpStream,
    file: &std::fs::File,
    mut offset: u64,
    len: u64,
    sent: &Progress,
    stall: Duration,
) -> io::Result<()> {
    while offset < len {
        let count = (len - offset).min(SENDFILE_MAX as u64) as usize;
        let written = within(
            stall,
            socket.async_io(Interest::WRITABLE, || {
                rustix::fs::sendfile(socket, file, Some(&mut offset), count)
                    .map_err(io::Error::from)
            }),
        )
        .await?;
        if written == 0 {
            // The file was cut short while being sent.
            break;
        }
        sent.fetch_add(written as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// TLS: the file is read by a blocking thread one block ahead of the encrypting writer; two
/// blocks are reused throughout.
async fn copy_file(
    data: &mut Stream,
    mut file: std::fs::File,
    offset: u64,
    sent: &Progress,
    stall: Duration,
) -> io::Result<()> {
    use std::io::Seek;
    file.seek(io::SeekFrom::Start(offset))?;
    let (full, mut filled) = mpsc::channel::<Vec<u8>>(1);
    let (empty, mut spare) = mpsc::channel::<Vec<u8>>(2);
    for _ in 0..2 {
        let _ = empty.send(vec![0; BLOCK]).await;
    }
    let reader = tokio::task::spawn_blocking(move || -> io::Result<()> {
        while let Some(mut block) = spare.blocking_recv() {
            block.resize(BLOCK, 0);
            let mut length = 0;
            while length < block.len() {
                match file.read(&mut block[length..])? {
                    0 => break,
                    read => length += read,
                }
            }
            block.truncate(length);
            // An empty block is the end; a closed channel means the writer gave up.
            if full.blocking_send(block).is_err() || length == 0 {
                break;
            }
        }
        Ok(())
    });
    while let Some(block) = filled.recv().await {
        if block.is_empty() {
            break;
        }
        within(stall, data.write_all(&block)).await?;
        sent.fetch_add(block.len() as u64, Ordering::Relaxed);
        let _ = empty.send(block).await;
    }
    drop(filled);
    reader.await.map_err(io::Error::other)?
}

/// Receives an upload into `file` until the client ends the data connection. A blocking
/// thread writes each block while the next one is received; two blocks are reused throughout.
pub async fn receive_file(
    data: &mut Stream,
    mut file: std::fs::File,
    received: &Progress,
    stall: Duration,
) -> io::Result<()> {
    let tls = data.is_tls();
    let (full, mut filled) = mpsc::channel::<Vec<u8>>(1);
    let (empty, mut spare) = mpsc::channel::<Vec<u8>>(2);
    for _ in 0..2 {
        let _ = empty.send(vec![0; BLOCK]).await;
    }
    let writer = tokio::task::spawn_blocking(move || -> io::Result<()> {
        while let Some(block) = filled.blocking_recv() {
            file.write_all(&block)?;
            // A closed channel means the receiver is done.
            let _ = empty.blocking_send(block);
        }
        Ok(())
    });
    let receiving = async {
        while let Some(mut block) = spare.recv().await {
            block.resize(BLOCK, 0);
            let read = match within(stall, data.read(&mut block)).await {
                Ok(read) => read,
                // A TLS client that never reads the session tickets the server sends after
                // the handshake (curl does not, on uploads) closes with a reset, often before
                // its close_notify can be read. The upload has ended: vsftpd's default
                // (strict_ssl_read_eof=NO) takes it the same way.
                Err(e) if tls && ended_abruptly(&e) => 0,
                Err(e) => return Err(e),
            };
            if read == 0 {
                break;
            }
            block.truncate(read);
            received.fetch_add(read as u64, Ordering::Relaxed);
            if full.send(block).await.is_err() {
                break; // The writer failed; its error is reported below.
            }
        }
        Ok::<_, io::Error>(())
    };
    let received = receiving.await;
    drop(full);
    let written = writer.await.map_err(io::Error::other)?;
    received.and(written)
}

fn ended_abruptly(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
    )
}

/// Sends what a blocking listing producer hands over, chunk by chunk.
pub async fn send_chunks(
    data: &mut Stream,
    mut chunks: mpsc::Receiver<Vec<u8>>,
    sent: &Progress,
    stall: Duration,
) -> io::Result<()> {
    while let Some(chunk) = chunks.recv().await {
        within(stall, data.write_all(&chunk)).await?;
        sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// Ends a data connection after a transfer: TLS's `close_notify` (which ftplib insists on) and
/// the TCP FIN. Over TLS the client answers with its own `close_notify`; the connection is kept
/// a moment, off the session's path, to read it, since closing a socket with unread data would
/// reset the connection under the client's feet.
pub async fn finish(mut data: Stream, stall: Duration) -> io::Result<()> {
    within(stall, data.shutdown()).await?;
    if data.is_tls() {
        tokio::spawn(async move {
            let mut sink = [0u8; 512];
            let _ = timeout(LINGER, async {
                while let Ok(1..) = data.read(&mut sink).await {}
            })
            .await;
        });
    }
    Ok(())
}

/// One transfer, for the log: completed, failed, or cut off by the server stopping.
pub struct Record {
    pub user: String,
    pub direction: Direction,
    pub path: Vec<u8>,
    pub client: IpAddr,
    pub bytes: Progress,
    metrics: Metrics,
    started: Instant,
    logged: bool,
}

impl Record {
    pub fn new(
        user: &str,
        direction: Direction,
        path: Vec<u8>,
        client: IpAddr,
        metrics: &Metrics,
    ) -> Self {
        Self {
            user: user.to_string(),
            direction,
            path,
            client,
            bytes: Progress::default(),
            metrics: metrics.clone(),
            started: Instant::now(),
            logged: false,
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// `alice downloaded /big.bin (50000000 bytes in 0.048 s) from 127.0.0.1`.
    pub fn completed(mut self) {
        self.logged = true;
        self.metrics.transfer(self.direction, true, self.bytes());
        info!(
            "{} {} {} ({} bytes in {:.3} s) from {}",
            self.user,
            self.direction.verb(),
            names::for_log(&self.path),
            self.bytes(),
            self.started.elapsed().as_secs_f64(),
            self.client
        );
    }

    /// `alice downloaded /big.bin: aborted after 1234 bytes (2.000 s) from 127.0.0.1: why`.
    pub fn aborted(mut self, why: &str) {
        self.logged = true;
        self.log_abort(why);
    }

    fn log_abort(&self, why: &str) {
        self.metrics.transfer(self.direction, false, self.bytes());
        info!(
            "{} {} {}: aborted after {} bytes ({:.3} s) from {}: {why}",
            self.user,
            self.direction.verb(),
            names::for_log(&self.path),
            self.bytes(),
            self.started.elapsed().as_secs_f64(),
            self.client
        );
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        // Dropped unlogged: the session was cancelled, which happens when the host's
        // --shutdown-timeout ends a transfer that was still running.
        if !self.logged {
            self.log_abort("the server stopped");
        }
    }
}
