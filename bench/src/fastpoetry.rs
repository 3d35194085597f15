//! `bench fastpoetry`: host's fastpoetry plugin against `minimal-poetry`, a bare tokio server
//! giving out the same poem, so the table shows what the host and the plugin ABI cost.

use crate::load::{self, Load, Outcome};
use crate::report::{self, Row};
use crate::scratch::Scratch;
use crate::servers::{self, Server};
use crate::Options;
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;
use tokio::runtime::Runtime;

const POEM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../poems/ecstasy.txt");
/// Large enough that copying bytes, not accepting connections, sets the pace.
const BIG_POEM_LEN: usize = 10_000_000;
const CONCURRENCY: [usize; 3] = [1, 10, 100];
const BIG_CONCURRENCY: [usize; 2] = [1, 10];
const COLUMNS: [&str; 2] = ["host fastpoetry", "minimal tokio"];
const ADMIN_COLUMNS: [&str; 2] = ["host fastpoetry --admin", "minimal tokio"];
/// Time for the last connections' tasks to end before "idle" memory is read.
const SETTLE: Duration = Duration::from_millis(500);

pub fn run(options: &Options) -> Result<(), String> {
    let host = servers::locate_host(options.host.as_deref())?;
    let baseline = servers::locate_minimal_poetry()?;
    let scratch = Scratch::new("fastpoetry")?;
    let poem = std::fs::read(POEM).map_err(|e| format!("cannot read {POEM}: {e}"))?;
    let big_poem = scratch.path().join("big-poem.txt");
    let big: Vec<u8> = poem.iter().copied().cycle().take(BIG_POEM_LEN).collect();
    std::fs::write(&big_poem, big)
        .map_err(|e| format!("cannot write {}: {e}", big_poem.display()))?;
    let runtime = Runtime::new().map_err(|e| format!("cannot start tokio: {e}"))?;
    println!(
        "{} s per measurement, {} rounds, {} CPUs; poem {} bytes",
        options.duration.as_secs_f64(),
        options.rounds,
        std::thread::available_parallelism().map_or(0, usize::from),
        poem.len()
    );

    let admin = options.admin_scrape;
    let [host_server, baseline_server] =
        start(&host, &baseline, Path::new(POEM), "poem", admin, &scratch)?;
    let scraper = admin
        .map(|every| Scraper::start(&host_server, every))
        .transpose()?;
    let pair = [&host_server, &baseline_server];
    let rss_started = Row::rss("idle RSS MB after start", pair)?;
    let outcomes = measure(&runtime, pair, poem.len(), &CONCURRENCY, options)?;
    std::thread::sleep(SETTLE);
    let rss_loaded = Row::rss("idle RSS MB after load", pair)?;
    let scrapes = scraper.map(Scraper::stop);
    host_server.stop()?;
    baseline_server.stop()?;

    let [host_server, baseline_server] =
        start(&host, &baseline, &big_poem, "10MB", admin, &scratch)?;
    let pair = [&host_server, &baseline_server];
    let big_outcomes = measure(&runtime, pair, BIG_POEM_LEN, &BIG_CONCURRENCY, options)?;
    host_server.stop()?;
    baseline_server.stop()?;

    let mut rows = Vec::new();
    for (c, outcomes) in CONCURRENCY.iter().zip(&outcomes) {
        let poems_per_sec = |m: &Measured| m.outcome.poems_per_sec();
        rows.push(Row::of(format!("poems/s c={c}"), outcomes, poems_per_sec));
        let p99 = |m: &Measured| m.outcome.p99_ms();
        rows.push(Row::of(format!("p99 ms c={c}"), outcomes, p99));
        rows.push(Row::of(
            format!("server CPU µs per poem c={c}"),
            outcomes,
            Measured::cpu_us_per_poem,
        ));
    }
    for (c, outcomes) in BIG_CONCURRENCY.iter().zip(&big_outcomes) {
        let mb_per_sec = |m: &Measured| m.outcome.mb_per_sec(BIG_POEM_LEN);
        rows.push(Row::of(format!("MB/s 10MB c={c}"), outcomes, mb_per_sec));
    }
    rows.extend([rss_started, rss_loaded]);
    println!();
    let columns = if admin.is_some() {
        ADMIN_COLUMNS
    } else {
        COLUMNS
    };
    report::print_table(columns, "ratio", &rows);
    if let Some(scrapes) = scrapes {
        println!();
        println!(
            "/metrics scraped {} times during the poem measurements, every one answered",
            scrapes?
        );
    }
    let errors = |side: usize| -> usize {
        let all = outcomes.iter().chain(&big_outcomes);
        all.flat_map(|pair| &pair[side])
            .map(|m| m.outcome.errors)
            .sum()
    };
    println!();
    println!(
        "client errors (connect/read failures, timeouts, short poems): {} {}, {} {}",
        COLUMNS[0],
        errors(0),
        COLUMNS[1],
        errors(1)
    );
    Ok(())
}

/// Starts host's fastpoetry (with an admin endpoint if `admin` is given) and the baseline,
/// both serving `poem`.
fn start(
    host: &Path,
    baseline: &Path,
    poem: &Path,
    tag: &str,
    admin: Option<Duration>,
    scratch: &Scratch,
) -> Result<[Server; 2], String> {
    let admin_args = match admin {
        Some(_) => vec!["--admin", "tcp:0:interface=127.0.0.1"],
        None => vec![],
    };
    let host_args: Vec<OsString> = admin_args
        .into_iter()
        .chain([
            "-n",
            "fastpoetry",
            "--port",
            "0",
            "--iface",
            "127.0.0.1",
            "--poem",
        ])
        .map(OsString::from)
        .chain([poem.as_os_str().to_owned()])
        .collect();
    let host = Server::start(&format!("host-{tag}"), host, &host_args, scratch.path())?;
    let baseline_args = [poem.as_os_str().to_owned()];
    let baseline = Server::start(
        &format!("minimal-poetry-{tag}"),
        baseline,
        &baseline_args,
        scratch.path(),
    )?;
    for server in [&host, &baseline] {
        println!("{}: {}", server.name, server.command);
    }
    Ok([host, baseline])
}

/// One measurement of one server: what the clients saw, and the CPU time the server used
/// meanwhile (steadier than throughput on a shared machine).
struct Measured {
    outcome: Outcome,
    cpu_seconds: f64,
}

impl Measured {
    fn cpu_us_per_poem(&self) -> f64 {
        self.cpu_seconds * 1e6 / self.outcome.poems() as f64
    }
}

/// Runs every concurrency `options.rounds` times on both servers, alternating them. The result
/// holds, per concurrency, each server's measurements in round order.
fn measure(
    runtime: &Runtime,
    servers: [&Server; 2],
    poem_len: usize,
    concurrencies: &[usize],
    options: &Options,
) -> Result<Vec<[Vec<Measured>; 2]>, String> {
    let mut measured: Vec<[Vec<Measured>; 2]> =
        concurrencies.iter().map(|_| Default::default()).collect();
    for round in 0..options.rounds {
        for (&concurrency, measured) in concurrencies.iter().zip(&mut measured) {
            for side in report::sides(round) {
                let load = Load {
                    addr: servers[side].addr(),
                    poem_len,
                    concurrency,
                    duration: options.duration,
                    max_poems: options.max_poems,
                };
                let before = servers[side].cpu_seconds()?;
                let outcome = runtime.block_on(load::run(&load));
                let cpu_seconds = servers[side].cpu_seconds()? - before;
                measured[side].push(Measured {
                    outcome,
                    cpu_seconds,
                });
            }
        }
    }
    Ok(measured)
}

/// Scrapes host's `/metrics` at an interval on a thread of its own, as Prometheus would.
struct Scraper {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Result<usize, String>>,
}

impl Scraper {
    fn start(host: &Server, every: Duration) -> Result<Self, String> {
        let port = host.logged_port(" admin endpoint on tcp:")?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut scrapes = 0;
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                scrape(port)?;
                scrapes += 1;
                std::thread::sleep(every);
            }
            Ok(scrapes)
        });
        Ok(Self { stop, thread })
    }

    /// Stops scraping; how many scrapes there were, or the first that failed.
    fn stop(self) -> Result<usize, String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| "the scraper panicked".to_string())?
    }
}

fn scrape(port: u16) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| format!("cannot connect to the admin endpoint: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("reading /metrics: {e}"))?;
    match response.starts_with("HTTP/1.1 200")
        && response.contains("host_connections_accepted_total")
    {
        true => Ok(()),
        false => Err(format!(
            "unexpected /metrics answer: {}",
            response.lines().next().unwrap_or("")
        )),
    }
}
