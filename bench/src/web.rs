//! `bench web`: host's web plugin against nginx (Debian's nginx-light with Debian's defaults),
//! both serving the same directory on 127.0.0.1, loaded by wrk: requests per second for a 1 KiB
//! file over 50 keep-alive connections, and MB/s for a 100 MB file.

use crate::report::{self, Row};
use crate::scratch::Scratch;
use crate::servers::{self, Server};
use crate::{nginx, wrk, Options};
use std::ffi::OsString;
use std::fs::{File, Permissions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SMALL: (&str, u64) = ("small.bin", 1024);
const LARGE: (&str, u64) = ("large.bin", 100_000_000);
const SMALL_CONNECTIONS: usize = 50;
const LARGE_CONNECTIONS: usize = 1;
const COLUMNS: [&str; 2] = ["host web", "nginx"];
/// The goal for both measurements, as a ratio to nginx.
const GOAL: f64 = 0.8;

pub fn run(options: &Options) -> Result<(), String> {
    let host = servers::locate_host(options.host.as_deref())?;
    let nginx = nginx::locate()?;
    let wrk = wrk::locate()?;
    let scratch = Scratch::new("web")?;
    let root = make_root(&scratch)?;
    println!(
        "{} s per measurement, {} rounds, {} CPUs; wrk: {} B file over {SMALL_CONNECTIONS} \
         keep-alive connections (2 threads), {} B file over {LARGE_CONNECTIONS} connection",
        options.duration.as_secs_f64(),
        options.rounds,
        std::thread::available_parallelism().map_or(0, usize::from),
        SMALL.1,
        LARGE.1,
    );
    let host_server = start_host(&host, &root, &scratch)?;
    let nginx_server = nginx::start(&nginx, &root, scratch.path())?;
    let pair = [&host_server, &nginx_server];
    for server in pair {
        println!("{}: {}", server.name, server.command);
        check(server.addr(), SMALL)
            .and_then(|()| check(server.addr(), LARGE))
            .map_err(|e| format!("{}: {e}", server.name))?;
    }
    let rss_started = Row::rss("idle RSS MB after start", pair)?;
    let url = |server: &Server, (name, _): (&str, u64)| format!("http://{}/{name}", server.addr());
    let mut small: [Vec<wrk::Outcome>; 2] = Default::default();
    let mut large: [Vec<wrk::Outcome>; 2] = Default::default();
    // CPU time per request: what a request costs the server, whatever else the shared machine
    // is doing; requests per second move with that.
    let mut cpu_per_request: [Vec<f64>; 2] = Default::default();
    for round in 0..options.rounds {
        for side in report::sides(round) {
            let target = url(pair[side], SMALL);
            let before = pair[side].cpu_seconds()?;
            let outcome = wrk::run(&wrk, &target, SMALL_CONNECTIONS, 2, options.duration)?;
            let used = pair[side].cpu_seconds()? - before;
            cpu_per_request[side].push(used * 1e6 / outcome.requests.max(1) as f64);
            small[side].push(outcome);
        }
        for side in report::sides(round) {
            let target = url(pair[side], LARGE);
            large[side].push(wrk::run(
                &wrk,
                &target,
                LARGE_CONNECTIONS,
                1,
                options.duration,
            )?);
        }
    }
    let rss_loaded = Row::rss("idle RSS MB after load", pair)?;
    host_server.stop()?;
    nginx_server.stop()?;
    let senders = compare_senders(&root, &scratch, &wrk, options)?;

    let rows = [
        Row::of(
            format!("requests/s, 1 KiB, {SMALL_CONNECTIONS} connections"),
            &small,
            |o| o.requests_per_sec,
        ),
        Row::of(
            format!("MB/s, 100 MB, {LARGE_CONNECTIONS} connection"),
            &large,
            |o| o.mb_per_sec,
        ),
        Row::of(
            "server CPU µs per request, 1 KiB".into(),
            &cpu_per_request,
            |&us| us,
        ),
        rss_started,
        rss_loaded,
    ];
    println!();
    report::print_table(COLUMNS, "ratio (host/nginx)", &rows);
    println!();
    report::print_spread(COLUMNS, &rows[..3]);
    println!();
    println!(
        "Sending the {} B file alone, one connection, by minimal servers that differ only in \
         how (bench/src/bin/file-sender.rs):",
        LARGE.1
    );
    println!();
    report::print_table(
        ["sendfile", "512 KiB buffer"],
        "ratio (sendfile/buffer)",
        &[senders],
    );
    println!();
    println!("command: {}", crate::command_line());
    for (side, name) in COLUMNS.iter().enumerate() {
        let errors: u64 = small[side]
            .iter()
            .chain(&large[side])
            .map(|o| o.errors)
            .sum();
        println!("{name}: {errors} errors (socket errors and non-2xx/3xx responses)");
    }
    for row in &rows[..2] {
        let ratio = row.ratio();
        println!(
            "goal: {} at least {GOAL}× nginx's: {ratio:.2}×, {}",
            row.label,
            report::verdict(ratio >= GOAL)
        );
    }
    Ok(())
}

/// MB/s of `sendfile(2)` against `pread` and `write` through a buffer of the web plugin's
/// chunk size, for the large file: the experiment that decides how the plugin sends files.
fn compare_senders(
    root: &Path,
    scratch: &Scratch,
    wrk: &Path,
    options: &Options,
) -> Result<Row, String> {
    let program = servers::locate("file-sender", None, "run `cargo build --release` first")?;
    let start = |mode: &str| {
        let args = [OsString::from(mode), root.join(LARGE.0).into()];
        Server::start(
            &format!("file-sender-{mode}"),
            &program,
            &args,
            scratch.path(),
        )
    };
    let senders = [start("sendfile")?, start("buffer")?];
    let mut outcomes: [Vec<wrk::Outcome>; 2] = Default::default();
    for round in 0..options.rounds {
        for side in report::sides(round) {
            let target = format!("http://{}/{}", senders[side].addr(), LARGE.0);
            outcomes[side].push(wrk::run(
                wrk,
                &target,
                LARGE_CONNECTIONS,
                1,
                options.duration,
            )?);
        }
    }
    for sender in senders {
        sender.stop()?;
    }
    Ok(Row::of(
        format!("MB/s, 100 MB, {LARGE_CONNECTIONS} connection"),
        &outcomes,
        |o| o.mb_per_sec,
    ))
}

/// Creates the served directory, readable by nginx's unprivileged workers.
fn make_root(scratch: &Scratch) -> Result<PathBuf, String> {
    let root = scratch.path().join("root");
    // Non-zero bytes, so no layer can take the files for sparse ones.
    let block: Vec<u8> = (1..=u8::MAX).cycle().take(1_000_000).collect();
    let write = |(name, len): (&str, u64)| -> std::io::Result<()> {
        let path = root.join(name);
        let mut file = File::create(&path)?;
        let mut left = len;
        while left > 0 {
            let chunk = left.min(block.len() as u64);
            file.write_all(&block[..chunk as usize])?;
            left -= chunk;
        }
        file.set_permissions(Permissions::from_mode(0o644))
    };
    std::fs::create_dir(&root)
        .and_then(|()| write(SMALL))
        .and_then(|()| write(LARGE))
        .and_then(|()| std::fs::set_permissions(&root, Permissions::from_mode(0o755)))
        .and_then(|()| std::fs::set_permissions(scratch.path(), Permissions::from_mode(0o755)))
        .map_err(|e| {
            format!(
                "cannot create the files to serve in {}: {e}",
                root.display()
            )
        })?;
    Ok(root)
}

/// host with an access log in a file, as nginx has: both servers log every request.
fn start_host(host: &Path, root: &Path, scratch: &Scratch) -> Result<Server, String> {
    let args: Vec<OsString> = vec![
        "--pidfile".into(),
        "".into(),
        "-n".into(),
        "web".into(),
        "--listen".into(),
        "tcp:0:interface=127.0.0.1".into(),
        "--path".into(),
        root.into(),
        "--access-log".into(),
        scratch.path().join("host-access.log").into(),
    ];
    Server::start("host-web", host, &args, scratch.path())
}

/// Fetches `name` once and checks that all `len` bytes came back with a 200.
fn check(addr: SocketAddr, (name, len): (&str, u64)) -> Result<(), String> {
    let fetch = || -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(stream, "GET /{name} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        Ok(response)
    };
    let response = fetch().map_err(|e| format!("GET /{name} failed: {e}"))?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(format!("GET /{name}: no response header"))?;
    let status_ok = response.starts_with(b"HTTP/1.1 200") || response.starts_with(b"HTTP/1.0 200");
    let body = (response.len() - split - 4) as u64;
    match status_ok && body == len {
        true => Ok(()),
        false => Err(format!(
            "GET /{name}: expected 200 and {len} bytes, got {body} bytes after {:?}",
            String::from_utf8_lossy(&response[..split.min(200)])
        )),
    }
}
