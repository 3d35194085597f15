//! `bench`: measures host's plugins against minimal baselines, in the same run.
//!
//! Usage: `bench SUBCOMMAND [OPTIONS]` (see [`USAGE`]); run `cargo build --release` first, as
//! bench starts the binaries it finds next to itself.

mod fastpoetry;
mod ftp;
mod ftp_client;
mod ftp_load;
mod listing;
mod load;
mod nginx;
mod proxy;
mod report;
mod scratch;
mod servers;
mod vsftpd;
mod web;
mod workers;
mod wrk;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str =
    "usage: bench fastpoetry [--seconds S] [--rounds N] [--max-poems N] [--admin S] [--host PATH]
       bench listing [--rounds N] [--fixture PATH] [--host PATH]
       bench ftp [--seconds S] [--rounds N] [--host PATH]
       bench web [--seconds S] [--rounds N] [--host PATH]
       bench proxy [--seconds S] [--rounds N] [--host PATH]
       bench workers [--seconds S] [--rounds N] [--max-poems N] [--host PATH]

fastpoetry: host's fastpoetry plugin against a minimal tokio server.
listing: `host --plugin-dir DIR` listing 1 and 100 plugins, with and without DIR's
dropin.cache, against `host --version`.
ftp: host's ftp plugin against vsftpd (/usr/sbin/vsftpd, from `apt-get install -y vsftpd`),
both on 127.0.0.1 serving the same files: RETR of 200 MB by one client, and sessions (login,
LIST, RETR 64 KiB, QUIT) by 20 clients at once.
web: host's web plugin against nginx (/usr/sbin/nginx, from `apt-get install -y nginx-light`),
both on 127.0.0.1 serving the same files, loaded by wrk (`apt-get install -y wrk`): requests/s
for a 1 KiB file over 50 keep-alive connections, and MB/s for a 100 MB file.
proxy: host's portforward (with splice and with --no-splice) and socks plugins against socat
(/usr/bin/socat; installed with `apt-get install -y socat` if missing) and a direct connection: MB/s of one 1 GiB
stream, and short connections per second by 16 clients.
workers: fastpoetry in one process, with --workers 1 and with --workers 2, and the minimal
tokio server: poems/s at 1, 10 and 100 concurrent clients, and the memory of all processes.

  --seconds S     length of each measurement; ftp retrieves 200 MB at most 3 times in it
                  [default: 2]
  --rounds N      repetitions of each measurement, at most 1000; listing runs its cold
                  listings in one round out of three
                  [default: fastpoetry 3, listing 30, ftp 5, proxy 5, workers 5]
  --max-poems N   cap on the poems one measurement asks for [default: 100000]
  --admin S       fastpoetry: run host with --admin and scrape its /metrics every S
                  seconds while measuring [default: no admin endpoint]
  --fixture PATH  the plugin listing copies 100 times
                  [default: target/fixtures/release/libtraced.so]
  --host PATH     the host binary [default: host next to bench]";
/// Keeps a mistyped `--rounds` from running for days.
const MAX_ROUNDS: usize = 1000;

/// The options of all benchmarks; each takes some of them.
pub struct Options {
    pub host: Option<PathBuf>,
    /// How often to scrape host's `/metrics`, if host serves an admin endpoint at all.
    pub admin_scrape: Option<Duration>,
    pub duration: Duration,
    pub rounds: usize,
    pub max_poems: usize,
    pub fixture: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    println!("command: {}", command_line());
    let result = match args.get(1).map(String::as_str) {
        Some("fastpoetry") => {
            let accepted = ["--seconds", "--rounds", "--max-poems", "--admin", "--host"];
            parse_options(&args[2..], &accepted, 3).and_then(|o| fastpoetry::run(&o))
        }
        Some("listing") => {
            let accepted = ["--rounds", "--fixture", "--host"];
            parse_options(&args[2..], &accepted, 30).and_then(|o| listing::run(&o))
        }
        Some("ftp") => {
            let accepted = ["--seconds", "--rounds", "--host"];
            parse_options(&args[2..], &accepted, 5).and_then(|o| ftp::run(&o))
        }
        Some("web") => {
            let accepted = ["--seconds", "--rounds", "--host"];
            parse_options(&args[2..], &accepted, 5).and_then(|o| web::run(&o))
        }
        Some("proxy") => {
            let accepted = ["--seconds", "--rounds", "--host"];
            parse_options(&args[2..], &accepted, 5).and_then(|o| proxy::run(&o))
        }
        Some("workers") => {
            let accepted = ["--seconds", "--rounds", "--max-poems", "--host"];
            parse_options(&args[2..], &accepted, 5).and_then(|o| workers::run(&o))
        }
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// This run's command line, for the report.
pub fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// Parses the options of a subcommand that takes those `accepted`.
fn parse_options(args: &[String], accepted: &[&str], rounds: usize) -> Result<Options, String> {
    let mut options = Options {
        host: None,
        admin_scrape: None,
        duration: Duration::from_secs(2),
        rounds,
        max_poems: 100_000,
        fixture: None,
    };
    let mut args = args.iter();
    while let Some(name) = args.next() {
        if !accepted.contains(&name.as_str()) {
            return Err(format!("unknown option {name}\n{USAGE}"));
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))?;
        let invalid = || format!("invalid value for {name}: {value}");
        match name.as_str() {
            "--host" => options.host = Some(PathBuf::from(value)),
            "--admin" => {
                options.admin_scrape = Some(
                    value
                        .parse()
                        .ok()
                        .and_then(|s| Duration::try_from_secs_f64(s).ok())
                        .filter(|d| !d.is_zero())
                        .ok_or_else(invalid)?,
                )
            }
            "--seconds" => {
                options.duration = value
                    .parse()
                    .ok()
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .filter(|d| !d.is_zero())
                    .ok_or_else(invalid)?;
            }
            "--rounds" => {
                options.rounds = positive(value)
                    .filter(|&n| n <= MAX_ROUNDS)
                    .ok_or_else(invalid)?;
            }
            "--max-poems" => options.max_poems = positive(value).ok_or_else(invalid)?,
            "--fixture" => options.fixture = Some(PathBuf::from(value)),
            _ => unreachable!("{name} is accepted but not parsed"),
        }
    }
    Ok(options)
}

fn positive(value: &str) -> Option<usize> {
    value.parse().ok().filter(|&n| n > 0)
}
