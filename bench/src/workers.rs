//! `bench workers`: fastpoetry in one process, under a master with one worker and with two, and
//! the minimal tokio server, in the same run, in a different order each round: what supervisor
//! mode costs, and what a second worker buys on this machine.

use crate::load::{self, Load, Outcome};
use crate::report::{format_value, ratio_spread, spread};
use crate::scratch::Scratch;
use crate::servers::{self, Server};
use crate::Options;
use std::ffi::OsString;
use std::time::Duration;
use tokio::runtime::Runtime;

const POEM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../poems/ecstasy.txt");
const CONCURRENCY: [usize; 3] = [1, 10, 100];
/// Time for the last connections' tasks to end before memory is read.
const SETTLE: Duration = Duration::from_millis(500);

/// The servers compared: a name, and the global options host gets (none for the baseline).
const SETUPS: [(&str, Option<&[&str]>); 4] = [
    ("host, one process", Some(&[])),
    ("host --workers 1", Some(&["--workers", "1"])),
    ("host --workers 2", Some(&["--workers", "2"])),
    ("minimal tokio", None),
];

pub fn run(options: &Options) -> Result<(), String> {
    let host = servers::locate_host(options.host.as_deref())?;
    let minimal = servers::locate_minimal_poetry()?;
    let scratch = Scratch::new("workers")?;
    let poem_len = std::fs::metadata(POEM)
        .map_err(|e| format!("cannot read {POEM}: {e}"))?
        .len() as usize;
    let runtime = Runtime::new().map_err(|e| format!("cannot start tokio: {e}"))?;
    println!(
        "{} s per measurement, {} rounds, {} CPUs; poem {poem_len} bytes",
        options.duration.as_secs_f64(),
        options.rounds,
        std::thread::available_parallelism().map_or(0, usize::from),
    );
    let servers = SETUPS
        .iter()
        .enumerate()
        .map(|(i, (_, global))| {
            let name = format!("server-{i}");
            match global {
                Some(global) => {
                    let args: Vec<OsString> = global
                        .iter()
                        .chain(&[
                            "--pidfile",
                            "",
                            "-n",
                            "fastpoetry",
                            "--port",
                            "0",
                            "--iface",
                            "127.0.0.1",
                            "--poem",
                            POEM,
                        ])
                        .map(OsString::from)
                        .collect();
                    Server::start(&name, &host, &args, scratch.path())
                }
                None => Server::start(&name, &minimal, &[POEM.into()], scratch.path()),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (server, (name, _)) in servers.iter().zip(SETUPS) {
        println!("{name}: {}", server.command);
    }

    // rates[concurrency][server][round]
    let mut rates = vec![vec![Vec::new(); SETUPS.len()]; CONCURRENCY.len()];
    let mut errors = vec![0; SETUPS.len()];
    for round in 0..options.rounds {
        for (c, &concurrency) in CONCURRENCY.iter().enumerate() {
            // Each round starts with another server, so drift in the machine's load falls on
            // all of them alike.
            for turn in 0..SETUPS.len() {
                let i = (round + turn) % SETUPS.len();
                let load = Load {
                    addr: servers[i].addr(),
                    poem_len,
                    concurrency,
                    duration: options.duration,
                    max_poems: options.max_poems,
                };
                let outcome: Outcome = runtime.block_on(load::run(&load));
                errors[i] += outcome.errors;
                rates[c][i].push(outcome.poems_per_sec());
            }
        }
    }
    std::thread::sleep(SETTLE);
    let memory: Vec<String> = servers
        .iter()
        .map(|s| s.tree_rss_mb().map_or("–".into(), format_value))
        .collect();

    let (single, minimal) = (0, SETUPS.len() - 1);
    println!();
    print!("| server |");
    for c in CONCURRENCY {
        print!(" poems/s c={c} (min–max) | to one process | to minimal |");
    }
    println!(" RSS MB after, all processes | client errors |");
    println!("|---|{}---:|---:|", "---:|".repeat(3 * CONCURRENCY.len()));
    for (i, (name, _)) in SETUPS.iter().enumerate() {
        print!("| {name} |");
        for rates in &rates {
            print!(
                " {} | {} | {} |",
                spread(&rates[i]),
                ratio_spread(&rates[i], &rates[single]),
                ratio_spread(&rates[i], &rates[minimal]),
            );
        }
        println!(" {} | {} |", memory[i], errors[i]);
    }
    for server in servers {
        server.stop()?;
    }
    Ok(())
}
