//! A small blocking FTP client (RFC 959): anonymous login, binary type, and LIST and RETR over
//! passive-mode data connections. Every socket operation has a timeout, so a stuck server
//! fails a session instead of hanging the bench.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds what one reply may hold, so a server that never ends one cannot fill memory.
const MAX_REPLY: usize = 64 * 1024;

/// A logged-in control connection.
pub struct Session {
    control: BufReader<TcpStream>,
    /// The server's address: passive data connections must go there and nowhere else.
    server: IpAddr,
}

impl Session {
    /// Connects, logs in as `anonymous` and switches to binary (image) type, so RETR counts
    /// the file's own bytes.
    pub fn login(addr: SocketAddr) -> io::Result<Self> {
        let mut session = Self {
            control: BufReader::new(connect(addr)?),
            server: addr.ip(),
        };
        session.reply("greeting", &[220])?;
        // vsftpd's `no_anon_password` logs in on USER alone; both servers here ask for PASS.
        if session.command("USER anonymous", &[230, 331])?.code == 331 {
            session.command("PASS bench@", &[230])?;
        }
        session.command("TYPE I", &[200])?;
        Ok(session)
    }

    /// Lists the current directory and returns the listing's length in bytes.
    pub fn list(&mut self, buffer: &mut [u8]) -> io::Result<u64> {
        self.transfer("LIST", buffer)
    }

    /// Retrieves `path` and returns its length in bytes; `buffer` only receives the data.
    pub fn retr(&mut self, path: &str, buffer: &mut [u8]) -> io::Result<u64> {
        self.transfer(&format!("RETR {path}"), buffer)
    }

    pub fn quit(mut self) -> io::Result<()> {
        self.command("QUIT", &[221]).map(drop)
    }

    /// Runs `command` over a passive data connection, which is read to EOF before the
    /// completion reply.
    fn transfer(&mut self, command: &str, buffer: &mut [u8]) -> io::Result<u64> {
        let reply = self.command("PASV", &[227])?;
        let addr = passive_addr(&reply.text)
            .ok_or_else(|| protocol_error(format!("PASV: cannot parse {reply}")))?;
        if addr.ip() != self.server {
            return Err(protocol_error(format!("PASV: {addr} is not the server")));
        }
        let mut data = connect(addr)?;
        self.command(command, &[125, 150])?;
        let mut len = 0;
        loop {
            match data.read(buffer)? {
                0 => break,
                read => len += read as u64,
            }
        }
        self.reply(command, &[226, 250])?;
        Ok(len)
    }

    /// Sends `command` and reads its reply, which must have one of the `expected` codes.
    fn command(&mut self, command: &str, expected: &[u16]) -> io::Result<Reply> {
        self.control
            .get_mut()
            .write_all(format!("{command}\r\n").as_bytes())?;
        self.reply(command, expected)
    }

    /// Reads the reply to `what`, which must have one of the `expected` codes.
    fn reply(&mut self, what: &str, expected: &[u16]) -> io::Result<Reply> {
        let reply = read_reply(&mut self.control)?;
        if expected.contains(&reply.code) {
            Ok(reply)
        } else {
            Err(protocol_error(format!("{what}: {reply}")))
        }
    }
}

/// A reply: its code and its text, every line of a multi-line reply included.
#[derive(Debug)]
struct Reply {
    code: u16,
    text: String,
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Reads one reply: a line `NNN text`, or the lines from `NNN-text` through the first that
/// starts with `NNN ` (the same code and a space).
fn read_reply(reader: &mut impl BufRead) -> io::Result<Reply> {
    let first = read_line(reader, MAX_REPLY)?;
    let code = first
        .get(..3)
        .filter(|code| code.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| protocol_error(format!("not a reply: {first:?}")))?;
    let mut text = first.clone();
    if first.as_bytes().get(3) == Some(&b'-') {
        let last = format!("{} ", &first[..3]);
        loop {
            let line = read_line(reader, MAX_REPLY.saturating_sub(text.len()))?;
            text.push('\n');
            text.push_str(&line);
            if line.starts_with(&last) {
                break;
            }
        }
    }
    Ok(Reply { code, text })
}

/// Reads a line of at most `limit` bytes and strips its line ending.
fn read_line(reader: &mut impl BufRead, limit: usize) -> io::Result<String> {
    let mut line = Vec::new();
    reader.take(limit as u64 + 1).read_until(b'\n', &mut line)?;
    match line.last() {
        None => return Err(io::ErrorKind::UnexpectedEof.into()),
        Some(b'\n') => line.pop(),
        Some(_) if line.len() > limit => return Err(protocol_error("reply too long".into())),
        Some(_) => return Err(io::ErrorKind::UnexpectedEof.into()),
    };
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// The address in `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)`.
fn passive_addr(text: &str) -> Option<SocketAddr> {
    let (_, numbers) = text.split_once('(')?;
    let (numbers, _) = numbers.split_once(')')?;
    let numbers: Vec<u8> = numbers
        .split(',')
        .map(|n| n.trim().parse().ok())
        .collect::<Option<_>>()?;
    let [h1, h2, h3, h4, p1, p2] = numbers[..] else {
        return None;
    };
    Some(SocketAddr::from((
        [h1, h2, h3, h4],
        u16::from_be_bytes([p1, p2]),
    )))
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    // Each command waits for its reply: Nagle's algorithm could only hold it back.
    stream.set_nodelay(true)?;
    Ok(stream)
}

pub fn protocol_error(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_single_and_multi_line_replies() {
        let mut input = &b"220 ready\r\n211-Features:\r\n MDTM\r\n211-x\r\n211 End\r\n226 ok"[..];
        let first = read_reply(&mut input).unwrap();
        assert_eq!((first.code, first.text.as_str()), (220, "220 ready"));
        let second = read_reply(&mut input).unwrap();
        assert_eq!(second.code, 211);
        assert_eq!(second.text, "211-Features:\n MDTM\n211-x\n211 End");
        // A reply cut off before its line ends is an error, not a reply.
        assert!(read_reply(&mut input).is_err());
    }

    #[test]
    fn rejects_overlong_and_malformed_replies() {
        let long = format!("220-{}\r\n", "x".repeat(MAX_REPLY));
        assert!(read_reply(&mut long.as_bytes()).is_err());
        assert!(read_reply(&mut &b"hello\r\n"[..]).is_err());
    }

    #[test]
    fn parses_passive_addresses() {
        let text = "227 Entering Passive Mode (127,0,0,1,175,200).";
        let addr = SocketAddr::from(([127, 0, 0, 1], 175 * 256 + 200));
        assert_eq!(passive_addr(text), Some(addr));
        assert_eq!(
            passive_addr("227 Entering Passive Mode (127,0,0,1,175)"),
            None
        );
        assert_eq!(
            passive_addr("227 Entering Passive Mode (127,0,0,1,175,256)"),
            None
        );
    }
}
