//! The experiment behind the web plugin's choice between `sendfile(2)` and a large buffer:
//! the least an HTTP/1.1 server can do to send one file, one way or the other, so `bench web`
//! can measure the two ways alone, with nothing else different.
//!
//! Usage: `file-sender sendfile|buffer FILE`. Listens on 127.0.0.1 on a free port, announced in
//! twistd's words like every server the benches start; a thread per connection answers every
//! request with the whole file: by `sendfile`, kernel to kernel, or by `pread` into a buffer of
//! the web plugin's chunk size and `write`. Exits 0 on SIGINT.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// The web plugin's chunk (`plugins/web/src/body.rs`).
const CHUNK: usize = 512 * 1024;

#[derive(Clone, Copy)]
enum Mode {
    Sendfile,
    Buffer,
}

/// Exits 0 on SIGINT, as the benches stop their servers, from a thread of its own.
fn exit_on_sigint() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut interrupt = runtime.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
    })?;
    std::thread::spawn(move || {
        runtime.block_on(interrupt.recv());
        std::process::exit(0)
    });
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: file-sender sendfile|buffer FILE";
    let mode = match args.get(1).map(String::as_str) {
        Some("sendfile") => Mode::Sendfile,
        Some("buffer") => Mode::Buffer,
        _ => return Err(usage.into()),
    };
    let file = Arc::new(File::open(args.get(2).ok_or(usage)?)?);
    exit_on_sigint()?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    println!("file-sender starting on tcp:{port}:interface=127.0.0.1");
    std::io::stdout().flush()?;
    for stream in listener.incoming().flatten() {
        let file = file.clone();
        std::thread::spawn(move || serve(stream, &file, mode));
    }
    Ok(())
}

/// Answers each request on `stream` with the whole file until the client closes.
fn serve(mut stream: TcpStream, file: &File, mode: Mode) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    let mut request = Vec::new();
    let mut buffer = vec![0u8; CHUNK];
    loop {
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let read = stream.read(&mut buffer[..4096])?;
            if read == 0 || request.len() > 65536 {
                return Ok(());
            }
            request.extend_from_slice(&buffer[..read]);
        }
        request.clear();
        write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n")?;
        match mode {
            Mode::Sendfile => send_file(&stream, file, len)?,
            Mode::Buffer => {
                let mut offset = 0;
                while offset < len {
                    let take = (len - offset).min(CHUNK as u64) as usize;
                    file.read_exact_at(&mut buffer[..take], offset)?;
                    stream.write_all(&buffer[..take])?;
                    offset += take as u64;
                }
            }
        }
    }
}

fn send_file(stream: &TcpStream, file: &File, len: u64) -> std::io::Result<()> {
    let mut offset: u64 = 0;
    while offset < len {
        let left = (len - offset).min(1 << 30) as usize;
        let sent = rustix::fs::sendfile(stream, file, Some(&mut offset), left)?;
        if sent == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}
