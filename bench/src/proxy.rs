//! `bench proxy`: the portforward and socks plugins against socat doing the same forward, and
//! against no proxy at all, in the same run: MB/s of one large stream, and short connections
//! per second. portforward runs twice, relaying with splice(2) and with `--no-splice` (a
//! buffer copy), so the table also shows which relay is faster.
//!
//! The origin server and the clients run in this process: a client sends the number of bytes
//! it wants (8 bytes, big-endian), the origin sends that many and closes.

use crate::report::{format_value, ratio, spread};
use crate::scratch::Scratch;
use crate::servers::{self, Server};
use crate::Options;
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// One large stream: far more than any buffer on the way.
const STREAM_BYTES: u64 = 1 << 30;
/// A short connection's reply.
const SHORT_BYTES: u64 = 64;
/// Clients opening short connections at once.
const CLIENTS: usize = 16;
const TIMEOUT: Duration = Duration::from_secs(10);
const BUFFER: usize = 256 << 10;
const SETTLE: Duration = Duration::from_millis(200);

/// How a client reaches the origin.
#[derive(Clone, Copy)]
enum Via {
    Direct,
    Forward(SocketAddr),
    Socks5(SocketAddr),
}

struct Route {
    name: &'static str,
    via: Via,
    server: Option<Server>,
}

pub fn run(options: &Options) -> Result<(), String> {
    let host = servers::locate_host(options.host.as_deref())?;
    let socat = socat()?;
    let scratch = Scratch::new("proxy")?;
    let runtime = Runtime::new().map_err(|e| format!("cannot start tokio: {e}"))?;
    let origin = runtime.block_on(origin())?;
    println!(
        "{} rounds, {} CPUs; one stream of {} MiB, then short connections ({SHORT_BYTES}-byte \
         replies) by {CLIENTS} clients for {} s",
        options.rounds,
        std::thread::available_parallelism().map_or(0, usize::from),
        STREAM_BYTES >> 20,
        options.duration.as_secs_f64(),
    );

    let dest = format!("tcp:{origin}");
    let host_args = |plugin: &str, extra: &[&str]| -> Vec<OsString> {
        let mut args = vec!["--pidfile", "", "-n", plugin];
        args.extend(extra);
        args.into_iter().map(OsString::from).collect()
    };
    let listen = "tcp:0:interface=127.0.0.1";
    let forward = ["-p", listen, "--dest", &dest];
    let mut paths = vec![Route {
        name: "direct",
        via: Via::Direct,
        server: None,
    }];
    let mut start = |name: &'static str, server: Server, socks: bool| {
        println!("{name}: {}", server.command);
        let via = match socks {
            true => Via::Socks5(server.addr()),
            false => Via::Forward(server.addr()),
        };
        paths.push(Route {
            name,
            via,
            server: Some(server),
        });
    };
    let splice_args = host_args("portforward", &forward);
    start(
        "portforward",
        Server::start("portforward", &host, &splice_args, scratch.path())?,
        false,
    );
    let mut copy = forward.to_vec();
    copy.push("--no-splice");
    let copy_args = host_args("portforward", &copy);
    // Right after "portforward": the splice/copy ratio below relies on the order.
    start(
        "portforward --no-splice",
        Server::start("portforward-copy", &host, &copy_args, scratch.path())?,
        false,
    );
    let socks_args = host_args("socks", &["--listen", listen, "--allow", "127.0.0.0/8"]);
    start(
        "socks (SOCKS5)",
        Server::start("socks", &host, &socks_args, scratch.path())?,
        true,
    );
    let socat_port = servers::free_port()?;
    let socat_args: Vec<OsString> = [
        "-t30".to_string(),
        format!("TCP-LISTEN:{socat_port},bind=127.0.0.1,fork,reuseaddr,backlog=1024"),
        format!("TCP:{origin}"),
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    start(
        "socat",
        Server::start_daemon("socat", &socat, &socat_args, scratch.path(), socat_port)?,
        false,
    );

    for path in &paths {
        runtime
            .block_on(fetch(path.via, origin, SHORT_BYTES))
            .map_err(|e| format!("{}: first connection failed: {e}", path.name))?;
    }
    let mut throughput = vec![Vec::new(); paths.len()];
    let mut rates = vec![Vec::new(); paths.len()];
    // The proxy's CPU time: seconds per GiB streamed, microseconds per short connection.
    let mut stream_cpu = vec![Vec::new(); paths.len()];
    let mut connection_cpu = vec![Vec::new(); paths.len()];
    for round in 0..options.rounds {
        // A different path goes first each round, so drift in the machine's load is shared.
        for offset in 0..paths.len() {
            let i = (round + offset) % paths.len();
            let path = &paths[i];
            let cpu = || path.server.as_ref().map(Server::cpu_seconds).transpose();
            let (started, cpu_before) = (Instant::now(), cpu()?);
            runtime
                .block_on(fetch(path.via, origin, STREAM_BYTES))
                .map_err(|e| format!("{}: the stream failed: {e}", path.name))?;
            throughput[i].push(STREAM_BYTES as f64 / started.elapsed().as_secs_f64() / 1e6);
            // Time for a forked child (socat's) to exit and be counted.
            std::thread::sleep(SETTLE);
            let cpu_between = cpu()?;
            let (done, errors) =
                runtime.block_on(short_connections(path.via, origin, options.duration));
            if errors > 0 {
                return Err(format!("{}: {errors} short connections failed", path.name));
            }
            rates[i].push(done as f64 / options.duration.as_secs_f64());
            std::thread::sleep(SETTLE);
            if let (Some(before), Some(between), Some(after)) = (cpu_before, cpu_between, cpu()?) {
                let gib = STREAM_BYTES as f64 / f64::from(1 << 30);
                stream_cpu[i].push((between - before) / gib);
                connection_cpu[i].push((after - between) * 1e6 / done as f64);
            }
        }
    }
    let rss: Vec<String> = paths
        .iter()
        .map(|p| match &p.server {
            Some(server) if !p.name.starts_with("socat") => {
                server.rss_mb().map_or("–".into(), format_value)
            }
            _ => "–".into(),
        })
        .collect();
    let baseline = paths
        .iter()
        .position(|p| p.name == "socat")
        .expect("socat is measured");
    println!();
    println!("| path | stream MB/s (min–max) | ratio to socat | short connections/s (min–max) | ratio to socat | proxy CPU s per GiB | proxy CPU µs per connection | RSS MB after |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (i, path) in paths.iter().enumerate() {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            path.name,
            spread(&throughput[i]),
            ratio(&throughput[i], &throughput[baseline]),
            spread(&rates[i]),
            ratio(&rates[i], &rates[baseline]),
            cost(&stream_cpu[i]),
            cost(&connection_cpu[i]),
            rss[i],
        );
    }
    let splice = paths
        .iter()
        .position(|p| p.name == "portforward")
        .expect("measured");
    let copy = splice + 1;
    println!();
    println!(
        "splice against --no-splice (portforward, median of per-round ratios): stream MB/s {}, \
         short connections/s {}, CPU per GiB {}, CPU per connection {}",
        ratio(&throughput[splice], &throughput[copy]),
        ratio(&rates[splice], &rates[copy]),
        ratio(&stream_cpu[splice], &stream_cpu[copy]),
        ratio(&connection_cpu[splice], &connection_cpu[copy]),
    );
    println!();
    println!("MB = 10^6 bytes. Ratios are medians of per-round ratios. CPU is the proxy process's user and system time, with its reaped children's (socat forks one per connection). socat's RSS is its listening process only and not shown.");
    for path in paths {
        if let Some(server) = path.server {
            server.stop()?;
        }
    }
    Ok(())
}

/// socat, installed from Debian's package if it is missing.
fn socat() -> Result<std::path::PathBuf, String> {
    const SOCAT: &str = "/usr/bin/socat";
    if !Path::new(SOCAT).is_file() {
        println!("socat is missing: apt-get install -y socat");
        let _ = std::process::Command::new("apt-get")
            .args(["install", "-y", "-q", "socat"])
            .status();
    }
    servers::require_file(
        "socat",
        SOCAT.into(),
        "install it with `apt-get install -y socat`",
    )
}

/// A cost's median and range; "–" where it was not measured (no proxy process).
fn cost(samples: &[f64]) -> String {
    match samples.is_empty() {
        true => "–".into(),
        false => spread(samples),
    }
}

/// The origin: reads how many bytes a client wants, sends them, closes.
async fn origin() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(|e| format!("cannot start the origin server: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut wanted = [0; 8];
                stream.read_exact(&mut wanted).await?;
                let mut left = u64::from_be_bytes(wanted);
                let chunk = vec![b'x'; BUFFER];
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    stream.write_all(&chunk[..n]).await?;
                    left -= n as u64;
                }
                stream.shutdown().await
            });
        }
    });
    Ok(address)
}

/// One connection through `via`: asks the origin for `bytes` and reads them to the end.
async fn fetch(via: Via, origin: SocketAddr, bytes: u64) -> Result<(), String> {
    let exchange = async {
        let mut stream = match via {
            Via::Direct => TcpStream::connect(origin).await?,
            Via::Forward(proxy) => TcpStream::connect(proxy).await?,
            Via::Socks5(proxy) => {
                let mut stream = TcpStream::connect(proxy).await?;
                stream.write_all(&[5, 1, 0]).await?;
                let mut chosen = [0; 2];
                stream.read_exact(&mut chosen).await?;
                let SocketAddr::V4(v4) = origin else {
                    unreachable!("the origin is on 127.0.0.1")
                };
                let mut request = vec![5, 1, 0, 1];
                request.extend(v4.ip().octets());
                request.extend(v4.port().to_be_bytes());
                stream.write_all(&request).await?;
                let mut reply = [0; 10];
                stream.read_exact(&mut reply).await?;
                if chosen != [5, 0] || reply[1] != 0 {
                    return Err(std::io::Error::other(format!(
                        "SOCKS5 refused: {chosen:?} {reply:?}"
                    )));
                }
                stream
            }
        };
        stream.set_nodelay(true)?;
        stream.write_all(&bytes.to_be_bytes()).await?;
        let mut buffer = vec![0; BUFFER.min(bytes as usize + 1)];
        let mut received = 0u64;
        loop {
            match stream.read(&mut buffer).await? {
                0 => break,
                n => received += n as u64,
            }
        }
        match received == bytes {
            true => Ok(()),
            false => Err(std::io::Error::other(format!(
                "received {received} of {bytes} bytes"
            ))),
        }
    };
    let limit = TIMEOUT + Duration::from_secs(bytes >> 27);
    match tokio::time::timeout(limit, exchange).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

/// [`CLIENTS`] clients making short connections until `duration` is up: (done, failed).
async fn short_connections(via: Via, origin: SocketAddr, duration: Duration) -> (usize, usize) {
    let until = Instant::now() + duration;
    let (done, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (done, failed) = (done.clone(), failed.clone());
        clients.spawn(async move {
            while Instant::now() < until {
                let counter = match fetch(via, origin, SHORT_BYTES).await {
                    Ok(()) => &done,
                    Err(_) => &failed,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while clients.join_next().await.is_some() {}
    (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed))
}
