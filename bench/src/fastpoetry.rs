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
/// Time for the last connections' tasks to end before "idle" memory is read.
const SETTLE: Duration = Duration::from_millis(500);

pub fn run(options: &Options) -> Result<(), String> {
    let host = servers::locate_host(options.host.as_deref())?;
    let baseline = servers::locate(
        "minimal-poetry",
        None,
        "run `cargo build --release -p bench` first",
    )?;
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

    let [host_server, baseline_server] =
        start(&host, &baseline, Path::new(POEM), "poem", &scratch)?;
    let pair = [&host_server, &baseline_server];
    let rss_started = Row::rss("idle RSS MB after start", pair)?;
    let outcomes = measure(&runtime, pair, poem.len(), &CONCURRENCY, options);
    std::thread::sleep(SETTLE);
    let rss_loaded = Row::rss("idle RSS MB after load", pair)?;
    host_server.stop()?;
    baseline_server.stop()?;

    let [host_server, baseline_server] = start(&host, &baseline, &big_poem, "10MB", &scratch)?;
    let pair = [&host_server, &baseline_server];
    let big_outcomes = measure(&runtime, pair, BIG_POEM_LEN, &BIG_CONCURRENCY, options);
    host_server.stop()?;
    baseline_server.stop()?;

    let mut rows = Vec::new();
    for (c, outcomes) in CONCURRENCY.iter().zip(&outcomes) {
        rows.push(Row::of(
            format!("poems/s c={c}"),
            outcomes,
            Outcome::poems_per_sec,
        ));
        rows.push(Row::of(format!("p99 ms c={c}"), outcomes, Outcome::p99_ms));
    }
    for (c, outcomes) in BIG_CONCURRENCY.iter().zip(&big_outcomes) {
        let mb_per_sec = |o: &Outcome| o.mb_per_sec(BIG_POEM_LEN);
        rows.push(Row::of(format!("MB/s 10MB c={c}"), outcomes, mb_per_sec));
    }
    rows.extend([rss_started, rss_loaded]);
    println!();
    report::print_table(COLUMNS, "ratio", &rows);
    let errors = |side: usize| -> usize {
        let all = outcomes.iter().chain(&big_outcomes);
        all.flat_map(|pair| &pair[side]).map(|o| o.errors).sum()
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

/// Starts host's fastpoetry and the baseline, both serving `poem`.
fn start(
    host: &Path,
    baseline: &Path,
    poem: &Path,
    tag: &str,
    scratch: &Scratch,
) -> Result<[Server; 2], String> {
    let host_args: Vec<OsString> = [
        "-n",
        "fastpoetry",
        "--port",
        "0",
        "--iface",
        "127.0.0.1",
        "--poem",
    ]
    .into_iter()
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

/// Runs every concurrency `options.rounds` times on both servers, alternating them. The result
/// holds, per concurrency, each server's outcomes in round order.
fn measure(
    runtime: &Runtime,
    servers: [&Server; 2],
    poem_len: usize,
    concurrencies: &[usize],
    options: &Options,
) -> Vec<[Vec<Outcome>; 2]> {
    let mut outcomes: Vec<[Vec<Outcome>; 2]> =
        concurrencies.iter().map(|_| Default::default()).collect();
    for round in 0..options.rounds {
        for (&concurrency, outcomes) in concurrencies.iter().zip(&mut outcomes) {
            for side in report::sides(round) {
                let load = Load {
                    addr: servers[side].addr(),
                    poem_len,
                    concurrency,
                    duration: options.duration,
                    max_poems: options.max_poems,
                };
                outcomes[side].push(runtime.block_on(load::run(&load)));
            }
        }
    }
    outcomes
}
