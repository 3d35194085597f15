//! `bench ftp`: host's ftp plugin against vsftpd, both serving the same directory to anonymous
//! clients on 127.0.0.1: the throughput of one large RETR, and whole sessions per second.

use crate::ftp_load::{self, Outcome, Served};
use crate::report::{self, Row};
use crate::scratch::Scratch;
use crate::servers::{self, Server};
use crate::{vsftpd, Options};
use std::ffi::OsString;
use std::fs::{File, Permissions};
use std::io::Write;
use std::ops::RangeInclusive;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LARGE: Served = Served {
    name: "large.bin",
    len: 200_000_000,
};
const SMALL: Served = Served {
    name: "small.bin",
    len: 64 * 1024,
};
/// Disjoint, so neither server can find a passive port taken by the other.
const HOST_PASSIVE_PORTS: RangeInclusive<u16> = 40000..=44999;
const VSFTPD_PASSIVE_PORTS: RangeInclusive<u16> = 45000..=49999;
const CLIENTS: usize = 20;
const COLUMNS: [&str; 2] = ["host ftp", "vsftpd"];
/// Time for the last sessions to end before "idle" memory is read.
const SETTLE: Duration = Duration::from_millis(500);

pub fn run(options: &Options) -> Result<(), String> {
    let host = servers::locate_host(options.host.as_deref())?;
    let vsftpd = vsftpd::locate()?;
    let scratch = Scratch::new("ftp")?;
    let root = make_root(&scratch)?;
    println!(
        "{} s per sessions measurement, {} rounds, {} CPUs; RETR of {} bytes, sessions of \
         {CLIENTS} clients: login, LIST, RETR {} bytes, QUIT",
        options.duration.as_secs_f64(),
        options.rounds,
        std::thread::available_parallelism().map_or(0, usize::from),
        LARGE.len,
        SMALL.len,
    );

    let host_server = start_host(&host, &root, &scratch)?;
    let vsftpd_server = vsftpd::start(&vsftpd, &root, &VSFTPD_PASSIVE_PORTS, scratch.path())?;
    let pair = [&host_server, &vsftpd_server];
    for server in pair {
        println!("{}: {}", server.name, server.command);
    }
    let rss_started = Row::rss("idle RSS MB after start", pair)?;
    for server in pair {
        ftp_load::check(server.addr(), &SMALL, &LARGE)
            .map_err(|e| format!("{}: first session failed: {e}", server.name))?;
    }
    let [retrievals, sessions] = measure(pair, options);
    std::thread::sleep(SETTLE);
    let rss_loaded = Row::rss("idle RSS MB after load", pair)?;
    host_server.stop()?;
    vsftpd_server.stop()?;

    let rows = [
        Row::of("RETR MB/s, 200 MB".into(), &retrievals, Outcome::mb_per_sec),
        Row::of(
            format!("sessions/s, {CLIENTS} clients"),
            &sessions,
            Outcome::per_sec,
        ),
        rss_started,
        rss_loaded,
    ];
    println!();
    report::print_table(COLUMNS, "ratio (host/vsftpd)", &rows);
    println!();
    println!(
        "RSS: vsftpd's is its listening process only; each session runs in processes of its own."
    );
    println!("command: {}", crate::command_line());
    print_errors(&retrievals, &sessions);
    for (goal, row) in [("RETR MB/s", &rows[0]), ("sessions/s", &rows[1])] {
        let ratio = row.ratio();
        println!(
            "goal: {goal} at least vsftpd's: {ratio:.2}×, {}",
            report::verdict(ratio >= 1.0)
        );
    }
    Ok(())
}

/// Creates the served directory with [`LARGE`] and [`SMALL`] in it.
fn make_root(scratch: &Scratch) -> Result<PathBuf, String> {
    let root = scratch.path().join("root");
    let large = root.join(LARGE.name);
    let small = root.join(SMALL.name);
    // Non-zero bytes, so no layer can take the files for sparse ones.
    let block: Vec<u8> = (1..=u8::MAX).cycle().take(1_000_000).collect();
    let write = |path: &Path, len: u64| -> std::io::Result<()> {
        let mut file = File::create(path)?;
        let mut left = len;
        while left > 0 {
            let chunk = left.min(block.len() as u64);
            file.write_all(&block[..chunk as usize])?;
            left -= chunk;
        }
        file.set_permissions(Permissions::from_mode(0o644))
    };
    std::fs::create_dir(&root)
        .and_then(|()| write(&large, LARGE.len))
        .and_then(|()| write(&small, SMALL.len))
        // vsftpd serves anonymous users as the user `ftp`, who must reach the files whatever
        // the umask.
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

fn start_host(host: &Path, root: &Path, scratch: &Scratch) -> Result<Server, String> {
    let passive_ports = format!(
        "{}-{}",
        HOST_PASSIVE_PORTS.start(),
        HOST_PASSIVE_PORTS.end()
    );
    let args: Vec<OsString> = [
        "--pidfile",
        "",
        "-n",
        "ftp",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--passive-ports",
        &passive_ports,
        "--root",
    ]
    .into_iter()
    .map(OsString::from)
    .chain([root.as_os_str().to_owned()])
    .collect();
    Server::start("host-ftp", host, &args, scratch.path())
}

/// Runs both measurements `options.rounds` times on both servers, alternating them. The result
/// holds, per measurement, each server's outcomes in round order.
fn measure(servers: [&Server; 2], options: &Options) -> [[Vec<Outcome>; 2]; 2] {
    let mut retrievals: [Vec<Outcome>; 2] = Default::default();
    let mut sessions: [Vec<Outcome>; 2] = Default::default();
    for round in 0..options.rounds {
        for side in report::sides(round) {
            let addr = servers[side].addr();
            retrievals[side].push(ftp_load::retrievals(addr, &LARGE, options.duration));
        }
        for side in report::sides(round) {
            let addr = servers[side].addr();
            sessions[side].push(ftp_load::sessions(addr, &SMALL, CLIENTS, options.duration));
        }
    }
    [retrievals, sessions]
}

fn print_errors(retrievals: &[Vec<Outcome>; 2], sessions: &[Vec<Outcome>; 2]) {
    for (side, name) in COLUMNS.iter().enumerate() {
        let outcomes = || retrievals[side].iter().chain(&sessions[side]);
        let errors: usize = outcomes().map(|o| o.errors).sum();
        let first = outcomes().find_map(|o| o.first_error.as_deref());
        match first {
            Some(first) => println!("{name}: {errors} client errors, the first: {first}"),
            None => println!("{name}: {errors} client errors"),
        }
    }
}
