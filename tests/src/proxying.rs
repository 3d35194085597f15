//! What the proxy tests (portforward, socks) share: an origin server behind the proxy, a web
//! server for curl, a destination that never answers, and Python clients with SOCKS helpers.

use crate::PATIENCE;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The origin's stream: this block, over and over. Python's `BLOCK` in [`PRELUDE`] is the same.
pub fn block() -> Vec<u8> {
    (0..1u64 << 20)
        .map(|i| ((i.wrapping_mul(2_654_435_761) >> 24) & 0xFF) as u8)
        .collect()
}

/// A server on 127.0.0.1 speaking a tiny protocol: the client's first line says what it wants.
/// - `COUNT`: read until the client shuts down its side, reply with the byte count, close;
/// - `SEND N`: send N bytes of [`block`]s, then close;
/// - `HALF`: send `bye\n` and shut down the sending side, then count what the client sends
///   until it closes (see [`Origin::received`]);
/// - `SLOW`: read 1 KB a second until the client closes or the origin is dropped.
pub struct Origin {
    pub port: u16,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Origin {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let origin = Self {
            port,
            sent: Arc::default(),
            received: Arc::default(),
            stop: Arc::default(),
        };
        let (sent, received, stop) = (
            origin.sent.clone(),
            origin.received.clone(),
            origin.stop.clone(),
        );
        std::thread::spawn(move || {
            let block = Arc::new(block());
            for stream in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (sent, received, block) = (sent.clone(), received.clone(), block.clone());
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &block, &sent, &received, &stop);
                });
            }
        });
        origin
    }

    /// Bytes sent by `SEND` so far, over all connections.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Bytes received after `HALF`, over all connections that have closed.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits until the origin has received `bytes` in all (failing after [`PATIENCE`]): what
    /// a client sent after a half-close arrives a little after the client is done.
    pub fn wait_for_received(&self, bytes: u64) {
        let until = Instant::now() + PATIENCE;
        while self.received() != bytes {
            assert!(
                Instant::now() < until,
                "the origin got {} bytes",
                self.received()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(
    stream: TcpStream,
    block: &[u8],
    sent: &AtomicU64,
    received: &AtomicU64,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(PATIENCE * 3))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    (&mut reader).take(100).read_line(&mut line)?;
    let mut stream = stream;
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["COUNT"] => {
            let n = std::io::copy(&mut reader, &mut std::io::sink())?;
            stream.write_all(format!("{n}\n").as_bytes())?;
        }
        ["SEND", n] => {
            let mut left: u64 = n.parse().unwrap_or(0);
            while left > 0 {
                let n = left.min(block.len() as u64) as usize;
                stream.write_all(&block[..n])?;
                sent.fetch_add(n as u64, Ordering::Relaxed);
                left -= n as u64;
            }
        }
        ["HALF"] => {
            stream.write_all(b"bye\n")?;
            stream.shutdown(Shutdown::Write)?;
            let n = std::io::copy(&mut reader, &mut std::io::sink())?;
            received.fetch_add(n, Ordering::Relaxed);
        }
        ["SLOW"] => {
            let mut kilobyte = [0; 1000];
            while !stop.load(Ordering::Relaxed) && reader.read(&mut kilobyte)? > 0 {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        _ => stream.write_all(b"?\n")?,
    }
    Ok(())
}

/// `python3 -m http.server` serving `dir` on 127.0.0.1; killed on drop.
pub struct WebServer {
    child: Child,
    pub port: u16,
}

impl WebServer {
    pub fn start(dir: &Path) -> Self {
        let mut child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let port = first
            .split(" port ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("http.server said {first:?}"));
        Self { child, port }
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A listening socket whose backlog is full and which never accepts: connecting to it neither
/// succeeds nor fails until the connector gives up. Keep it alive while it is needed.
pub struct Unanswering {
    pub port: u16,
    _sockets: Vec<socket2::Socket>,
}

impl Unanswering {
    pub fn new() -> Self {
        use socket2::{Domain, Socket, Type};
        let full = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        full.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        full.listen(0).unwrap();
        let address = full.local_addr().unwrap();
        let port = address.as_socket().unwrap().port();
        let mut sockets = vec![full];
        for _ in 0..4 {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            s.set_nonblocking(true).unwrap();
            let _ = s.connect(&address);
            sockets.push(s);
        }
        std::thread::sleep(Duration::from_millis(200));
        Self {
            port,
            _sockets: sockets,
        }
    }
}

impl Default for Unanswering {
    fn default() -> Self {
        Self::new()
    }
}

/// Helpers every Python client script starts with; `PROXY` and `ORIGIN` are set before them.
pub const PRELUDE: &str = r#"
import socket, struct, hashlib, threading, time, sys, os

BLOCK = bytes(((i * 2654435761) >> 24) & 0xFF for i in range(1 << 20))

def connect(port=None):
    return socket.create_connection(('127.0.0.1', port or PROXY), timeout=20)

def recv_exact(s, n):
    data = b''
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data

def recv_all(s, limit=1 << 20):
    data = b''
    while len(data) < limit:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data

def socks4(s, port, ip='127.0.0.1', user=b'me', name=None):
    dst = socket.inet_aton('0.0.0.1' if name else ip)
    s.sendall(b'\x04\x01' + struct.pack('>H', port) + dst + user + b'\x00' + ((name + b'\x00') if name else b''))
    return recv_exact(s, 8)

def socks5(s, port, host='127.0.0.1', auth=None, atyp=None):
    s.sendall(b'\x05\x01' + (b'\x02' if auth else b'\x00'))
    chosen = recv_exact(s, 2)
    if chosen != (b'\x05\x02' if auth else b'\x05\x00'):
        return chosen
    if auth:
        user, password = auth
        s.sendall(b'\x01' + bytes([len(user)]) + user + bytes([len(password)]) + password)
        status = recv_exact(s, 2)
        if status != b'\x01\x00':
            return status
    if isinstance(host, bytes):
        address = b'\x03' + bytes([len(host)]) + host
    elif ':' in host:
        address = b'\x04' + socket.inet_pton(socket.AF_INET6, host)
    else:
        address = b'\x01' + socket.inet_aton(host)
    s.sendall(b'\x05\x01\x00' + address + struct.pack('>H', port))
    reply = recv_exact(s, 4)
    if len(reply) == 4:
        reply += recv_exact(s, {1: 6, 4: 18}.get(reply[3], 0))
    return reply

def count_through(s, payload):
    s.sendall(b'COUNT\n' + payload)
    s.shutdown(socket.SHUT_WR)
    return recv_all(s)

def expected_sha256(n):
    h = hashlib.sha256()
    while n > 0:
        h.update(BLOCK[:min(n, len(BLOCK))])
        n -= len(BLOCK)
    return h.hexdigest()

def sha256_of_stream(s):
    h = hashlib.sha256()
    total = 0
    buf = bytearray(1 << 20)
    while True:
        n = s.recv_into(buf)
        if not n:
            return h.hexdigest(), total
        h.update(memoryview(buf)[:n])
        total += n
"#;

/// Runs a Python client with [`PRELUDE`], `PROXY` and `ORIGIN` set; it must print "ok" last.
/// Returns what it printed.
pub fn python(proxy: u16, origin: u16, script: &str) -> String {
    crate::python(&format!(
        "PROXY = {proxy}\nORIGIN = {origin}\n{PRELUDE}\n{script}"
    ))
}

/// A client of `proxy` that, after `handshake` (Python; its socket is `s`), asks the origin for
/// 1 GB and reads 1 KB a second of it for six seconds. The proxy must hold it back: the origin
/// gets no further than what the socket buffers and a pipe hold, and the proxy's memory (process
/// `pid`) does not grow. `what` names the case in a failure.
pub fn a_slow_reader_holds_the_origin_back(
    pid: i32,
    proxy: u16,
    origin: &Origin,
    handshake: &str,
    what: &str,
) {
    let before = rss_kib(pid);
    python(
        proxy,
        origin.port,
        &format!(
            r#"
s = connect()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
{handshake}
s.sendall(b'SEND 1000000000\n')
for _ in range(6):
    assert len(s.recv(1000)) > 0
    time.sleep(1)
s.close()
"#
        ),
    );
    held_back(pid, before, origin.sent(), &format!("{what}: the origin"));
}

/// The same the other way: a client of `proxy` that, after `handshake`, sends as fast as it can
/// for four seconds to an origin that reads 1 KB a second. The client gets no further than what
/// the socket buffers and a pipe hold, and the proxy's memory does not grow.
pub fn a_slow_origin_holds_the_client_back(
    pid: i32,
    proxy: u16,
    origin: &Origin,
    handshake: &str,
    what: &str,
) {
    let before = rss_kib(pid);
    let out = python(
        proxy,
        origin.port,
        &format!(
            r#"
s = connect()
{handshake}
s.sendall(b'SLOW\n')
s.setblocking(False)
sent, chunk, until = 0, b'u' * 65536, time.time() + 4
while time.time() < until:
    try:
        sent += s.send(chunk)
    except BlockingIOError:
        time.sleep(0.01)
print('sent', sent)
s.close()
"#
        ),
    );
    let sent = out
        .lines()
        .find_map(|line| line.strip_prefix("sent "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{what}: the client said {out:?}"));
    held_back(pid, before, sent, &format!("{what}: the client"));
}

/// Checks that a writer behind a slow reader got no further than `sent` bytes allow, and that
/// the proxy's RSS grew little from `before` KiB.
fn held_back(pid: i32, before: u64, sent: u64, writer: &str) {
    let after = rss_kib(pid);
    // What the kernel's socket buffers and one pipe hold: a few MB, never the gigabyte.
    assert!(sent < 48 << 20, "{writer} sent {sent} bytes");
    assert!(
        after < before + 8 * 1024,
        "{writer}: RSS grew from {before} to {after} KiB"
    );
}

/// The resident set size of process `pid`, in KiB.
fn rss_kib(pid: i32) -> u64 {
    status_kib(pid, "VmRSS")
}

/// The largest resident set size process `pid` has had, in KiB.
pub fn peak_rss_kib(pid: i32) -> u64 {
    status_kib(pid, "VmHWM")
}

/// A size from `/proc/PID/status`, in KiB.
fn status_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}
