//! `bench`: measures host's plugins against minimal baselines, in the same run.
//!
//! Usage: `bench SUBCOMMAND [--seconds S] [--rounds N] [--max-poems N] [--host PATH]`; run
//! `cargo build --release` first, as bench starts the binaries it finds next to itself.

mod fastpoetry;
mod load;
mod report;
mod scratch;
mod servers;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str =
    "usage: bench fastpoetry [--seconds S] [--rounds N] [--max-poems N] [--host PATH]

  --seconds S    length of each measurement [default: 2]
  --rounds N     repetitions of each measurement per server; the median is reported [default: 3]
  --max-poems N  cap on the poems one measurement asks for [default: 100000]
  --host PATH    the host binary [default: host next to bench]";

/// Options shared by every benchmark.
pub struct Options {
    pub host: Option<PathBuf>,
    pub duration: Duration,
    pub rounds: usize,
    pub max_poems: usize,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    println!("command: {}", args.join(" "));
    let result = match args.get(1).map(String::as_str) {
        Some("fastpoetry") => parse_options(&args[2..]).and_then(|o| fastpoetry::run(&o)),
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

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        host: None,
        duration: Duration::from_secs(2),
        rounds: 3,
        max_poems: 100_000,
    };
    let mut args = args.iter();
    while let Some(name) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))?;
        let invalid = || format!("invalid value for {name}: {value}");
        match name.as_str() {
            "--host" => options.host = Some(PathBuf::from(value)),
            "--seconds" => {
                options.duration = value
                    .parse()
                    .ok()
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .filter(|d| !d.is_zero())
                    .ok_or_else(invalid)?;
            }
            "--rounds" => options.rounds = positive(value).ok_or_else(invalid)?,
            "--max-poems" => options.max_poems = positive(value).ok_or_else(invalid)?,
            _ => return Err(format!("unknown option {name}\n{USAGE}")),
        }
    }
    Ok(options)
}

fn positive(value: &str) -> Option<usize> {
    value.parse().ok().filter(|&n| n > 0)
}
