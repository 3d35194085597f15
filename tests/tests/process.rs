//! Process life: daemon mode and its status pipe, the pid file, rotated and reopened log files,
//! JSON and syslog logging, privilege dropping, signals, and systemd's protocols.

use host_e2e::{fetch, host_command, is_root, poem, run, Finished, Running, TempDir, PATIENCE};
use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// `host ARGS` run to completion in `dir`.
fn run_in(dir: &Path, args: &[&str]) -> Finished {
    let mut command = host_command(args);
    command.current_dir(dir);
    run(command)
}

/// Polls `condition` until it holds, failing the test after PATIENCE.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let until = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn alive(pid: i32) -> bool {
    // Zombies count as gone: /proc/PID/stat says "Z".
    read(Path::new(&format!("/proc/{pid}/stat")))
        .rsplit(')')
        .next()
        .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
}

fn signal(pid: i32, signal: i32) {
    let _ = host_e2e::send_signal(pid, signal);
}

/// The port from the `starting on tcp:PORT` line of a log file.
fn port_in_log(log: &Path) -> u16 {
    let mut port = None;
    wait_until("the log names the port", || {
        port = read(log).lines().find_map(|l| {
            l.split("starting on tcp:")
                .nth(1)
                .map(|rest| rest.split(':').next().unwrap().parse().unwrap())
        });
        port.is_some()
    });
    port.unwrap()
}

fn pid_in(file: &Path) -> i32 {
    read(file)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no pid in {}", file.display()))
}

#[test]
fn a_daemon_starts_serves_and_stops_with_kill_like_twistd() {
    let dir = TempDir::new("daemon");
    let started = run_in(dir.path(), &["fastpoetry", "--port", "0"]);
    assert_eq!(started.code(), Some(0), "{started:?}");
    assert_eq!(started.stderr, "");
    let pid = pid_in(&dir.join("host.pid"));
    assert!(alive(pid));
    let port = port_in_log(&dir.join("host.log"));
    assert_eq!(fetch(port).len(), 3003);

    // Detached: a new session, but not its leader (the double fork), so it can never acquire
    // a controlling terminal; no terminal now; stdio on /dev/null; private files (umask 0077).
    let stat = read(Path::new(&format!("/proc/{pid}/stat")));
    let fields: Vec<i64> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .take(4)
        .map(|f| f.parse().unwrap())
        .collect();
    let (session, tty) = (fields[2], fields[3]);
    let own_session = nix::unistd::getsid(None).unwrap().as_raw();
    assert_ne!(session, i64::from(own_session), "a new session");
    assert_ne!(session, i64::from(pid), "not the session leader");
    assert_eq!(tty, 0, "no controlling terminal");
    for fd in 0..3 {
        let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
        assert_eq!(target, Path::new("/dev/null"), "fd {fd}");
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(dir.join("host.pid"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    signal(pid, libc::SIGTERM);
    wait_until("the daemon exits", || !alive(pid));
    assert!(!dir.join("host.pid").exists(), "the pid file is removed");
    let log = read(&dir.join("host.log"));
    assert!(
        log.contains("[-] Received SIGTERM, shutting down."),
        "{log}"
    );
    assert!(log.trim_end().ends_with("[-] Server Shut Down."), "{log}");
}

#[test]
fn the_launching_command_reports_a_daemon_start_up_failure() {
    let dir = TempDir::new("daemon-fails");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run_in(
        dir.path(),
        &["fastpoetry", "--iface", "127.0.0.1", "--port", &port],
    );
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert_eq!(
        out.stderr.trim_end(),
        format!("host: fastpoetry failed to start: cannot listen on tcp:{port}:interface=127.0.0.1: Address already in use (os error 98)")
    );
    assert!(!dir.join("host.pid").exists(), "no daemon is left behind");
    assert!(read(&dir.join("host.log")).contains("error: fastpoetry failed to start"));

    let out = run_in(
        dir.path(),
        &["fastpoetry", "--poem", "/nonexistent/poem.txt"],
    );
    assert_eq!(out.code(), Some(1));
    assert_eq!(
        out.stderr.trim_end(),
        "host: fastpoetry: cannot read the poem /nonexistent/poem.txt: No such file or directory (os error 2)"
    );

    let out = run_in(
        dir.path(),
        &["--logfile", "/nonexistent/dir/host.log", "fastpoetry"],
    );
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr
            .starts_with("host: cannot open the log file /nonexistent/dir/host.log: No such file"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_live_pid_file_refuses_a_second_host_and_a_stale_one_is_replaced() {
    let dir = TempDir::new("pidfile");
    assert_eq!(
        run_in(dir.path(), &["fastpoetry", "--port", "0"]).code(),
        Some(0)
    );
    let pid = pid_in(&dir.join("host.pid"));
    let second = run_in(dir.path(), &["fastpoetry", "--port", "0"]);
    assert_eq!(second.code(), Some(1), "{second:?}");
    assert_eq!(
        second.stderr.trim_end(),
        format!("host: Another host is running (PID {pid}, pid file host.pid)")
    );
    let foreground = run_in(dir.path(), &["-n", "fastpoetry", "--port", "0"]);
    assert_eq!(foreground.code(), Some(1));
    assert!(
        foreground
            .stderr
            .contains(&format!("Another host is running (PID {pid}")),
        "{}",
        foreground.stderr
    );
    signal(pid, libc::SIGTERM);
    wait_until("the daemon exits", || !alive(pid));

    std::fs::write(dir.join("host.pid"), "999999\n").unwrap();
    let mut command = host_command(&["-n", "fastpoetry", "--port", "0"]);
    command.current_dir(dir.path());
    let mut host = Running::spawn(&mut command);
    host.wait_for_line(
        "warning: replacing the stale pid file host.pid (PID 999999 no longer holds it)",
    );
    host.port();
    assert_eq!(pid_in(&dir.join("host.pid")), host.pid());
    host.signal(libc::SIGINT);
    assert_eq!(host.wait().code(), Some(0));
    assert!(!dir.join("host.pid").exists());
}

#[test]
fn of_two_hosts_started_at_once_with_one_pid_file_exactly_one_runs() {
    let dir = TempDir::new("race-pid");
    let pidfile = dir.join("shared.pid");
    let start = || {
        let mut command = host_command(&[
            "--pidfile",
            pidfile.to_str().unwrap(),
            "-n",
            "fastpoetry",
            "--port",
            "0",
        ]);
        command.current_dir(dir.path());
        Running::spawn(&mut command)
    };
    let mut hosts = [start(), start()];
    let loser = loop {
        if let Some(index) = hosts
            .iter_mut()
            .position(|h| h.wait_within(Duration::from_millis(10)).is_some())
        {
            break index;
        }
    };
    let winner = 1 - loser;
    assert!(
        hosts[loser]
            .stderr()
            .contains("Another host is running (PID "),
        "{}",
        hosts[loser].stderr()
    );
    assert_eq!(hosts[loser].wait().code(), Some(1));
    hosts[winner].port();
    assert!(
        hosts[winner]
            .wait_within(Duration::from_millis(300))
            .is_none(),
        "the winner keeps running"
    );
    assert_eq!(pid_in(&pidfile), hosts[winner].pid());
    hosts[winner].signal(libc::SIGTERM);
    assert_eq!(hosts[winner].wait().code(), Some(0));
}

/// Every `sending` line across `host.log` and its rotated files, checking that each line is whole.
fn logged_poems(dir: &Path) -> usize {
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.starts_with("host.log") {
            continue;
        }
        let text = read(&dir.join(&name));
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{name} ends mid-line"
        );
        for line in text.lines() {
            assert!(
                line.len() > 25 && line.as_bytes()[4] == b'-' && line.contains(" ["),
                "torn line in {name}: {line:?}"
            );
            count +=
                line.contains("[fastpoetry] sending 653 bytes of poetry to 127.0.0.1:") as usize;
        }
    }
    count
}

/// Fetches the poem `count` times from 8 threads.
fn load(port: u16, count: usize) {
    let workers: Vec<_> = (0..8)
        .map(|w| {
            std::thread::spawn(move || {
                for _ in (w..count).step_by(8) {
                    assert_eq!(fetch(port).len(), 653);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
}

#[test]
fn the_log_rotates_by_size_under_load_without_losing_or_tearing_a_line() {
    let dir = TempDir::new("rotate");
    let science = poem("science.txt");
    let mut command = host_command(&[
        "--logfile",
        "host.log",
        "--log-rotate-size",
        "20000",
        "--log-keep",
        "1000",
        "-n",
        "fastpoetry",
        "--port",
        "0",
        "--poem",
        science.to_str().unwrap(),
    ]);
    command.current_dir(dir.path());
    let mut host = Running::spawn(&mut command);
    let port = port_in_log(&dir.join("host.log"));
    load(port, 2000);
    wait_until("every line is logged", || logged_poems(dir.path()) == 2000);
    host.stop();
    assert_eq!(logged_poems(dir.path()), 2000);
    assert!(
        dir.join("host.log.1").exists() && dir.join("host.log.5").exists(),
        "rotated"
    );
    for n in 1..5 {
        let size = std::fs::metadata(dir.join(&format!("host.log.{n}")))
            .unwrap()
            .len();
        assert!(size <= 20000, "host.log.{n} has {size} bytes");
    }
}

#[test]
fn sigusr1_reopens_the_log_file_for_logrotate() {
    let dir = TempDir::new("reopen");
    let science = poem("science.txt");
    let mut command = host_command(&[
        "--logfile",
        "host.log",
        "-n",
        "fastpoetry",
        "--port",
        "0",
        "--poem",
        science.to_str().unwrap(),
    ]);
    command.current_dir(dir.path());
    let mut host = Running::spawn(&mut command);
    let port = port_in_log(&dir.join("host.log"));
    load(port, 300);
    // Each line is logged once its poem is sent: wait for the last before moving the file.
    wait_until("300 connections are logged", || {
        read(&dir.join("host.log"))
            .matches("sending 653 bytes")
            .count()
            == 300
    });
    std::fs::rename(dir.join("host.log"), dir.join("moved")).unwrap();
    host.signal(libc::SIGUSR1);
    wait_until("the log is reopened", || {
        read(&dir.join("host.log")).contains("Received SIGUSR1, reopened the log file.")
    });
    load(port, 300);
    host.stop();
    let moved = read(&dir.join("moved"))
        .matches("sending 653 bytes")
        .count();
    let reopened = read(&dir.join("host.log"))
        .matches("sending 653 bytes")
        .count();
    assert_eq!((moved, reopened), (300, 300));
}

#[test]
fn json_log_lines_parse() {
    let host = Running::start(&[
        "--log-format",
        "json",
        "-n",
        "fastpoetry",
        "--listen",
        "tcp:0:interface=127.0.0.1",
    ]);
    let port = host.port();
    fetch(port);
    host.wait_for_line("sending 3003 bytes");
    host.signal(libc::SIGINT);
    let mut host = host;
    assert_eq!(host.wait().code(), Some(0));
    let lines: Vec<serde_json::Value> = host
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert_eq!(lines[0]["message"], "Log opened.");
    assert_eq!(lines[0]["system"], "-");
    assert_eq!(lines[0]["level"], "info");
    assert!(lines[0]["time"].as_str().unwrap().starts_with("20"));
    assert!(lines.iter().any(|l| l["system"] == "fastpoetry"
        && l["message"]
            .as_str()
            .unwrap()
            .starts_with("sending 3003 bytes")));
    assert_eq!(lines.last().unwrap()["message"], "Server Shut Down.");
}

#[test]
fn syslog_gets_the_log_with_the_prefix() {
    let socket_path = Path::new("/dev/log");
    let Ok(syslog) = std::os::unix::net::UnixDatagram::bind(socket_path) else {
        eprintln!("skipped: /dev/log exists or cannot be created here, so the test cannot stand in for syslog");
        return;
    };
    struct Remove<'a>(&'a Path);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _remove = Remove(socket_path);
    syslog.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut host = Running::start(&[
        "--syslog",
        "--prefix",
        "poetryd",
        "-n",
        "fastpoetry",
        "--listen",
        "tcp:0:interface=127.0.0.1",
    ]);
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !received
        .iter()
        .any(|m: &String| m.contains("fastpoetry starting on"))
    {
        let n = syslog.recv(&mut buffer).expect("a syslog message");
        received.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
    }
    host.stop();
    let first = &received[0];
    assert!(
        first.starts_with("<30>"),
        "daemon facility, info priority: {first}"
    );
    assert!(
        first.contains(&format!("poetryd[{}]: [-] Log opened.", host.pid())),
        "{first}"
    );
    assert!(
        received
            .iter()
            .any(|m| m.contains("[fastpoetry] fastpoetry starting on tcp:")),
        "{received:?}"
    );
    assert_eq!(host.stdout(), "", "nothing on stdout with --syslog");
}

/// A free port below 1024, which only root may bind.
fn free_privileged_port() -> Option<u16> {
    (900..1000).find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
}

#[test]
fn binds_as_root_then_runs_every_thread_as_nobody() {
    if !is_root() {
        eprintln!("skipped: dropping privileges needs the tests to run as root");
        return;
    }
    let port = free_privileged_port()
        .expect("a free port below 1024")
        .to_string();
    let mut host = Running::start(&[
        "--uid",
        "nobody",
        "--gid",
        "nogroup",
        "--pidfile",
        "",
        "-n",
        "fastpoetry",
        "--iface",
        "127.0.0.1",
        "--port",
        &port,
    ]);
    host.wait_for_line("[-] Switched to uid 65534 (nobody), gid 65534.");
    assert_eq!(fetch(port.parse().unwrap()).len(), 3003);
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{}/task", host.pid()))
        .unwrap()
        .collect();
    assert!(tasks.len() > 1, "the plugin runtime has threads");
    for task in tasks {
        let status = read(&task.unwrap().path().join("status"));
        let line = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap()
                .split_whitespace()
                .skip(1)
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(line("Uid:"), "65534 65534 65534 65534", "{status}");
        assert_eq!(line("Gid:"), "65534 65534 65534 65534", "{status}");
        assert_eq!(line("Groups:"), "65534", "{status}");
    }
    host.stop();
}

#[test]
fn chroot_happens_after_binding_and_before_the_drop() {
    if !is_root() {
        eprintln!("skipped: chroot needs the tests to run as root");
        return;
    }
    let jail = TempDir::new("jail");
    let mut host = Running::start(&[
        "--chroot",
        jail.path().to_str().unwrap(),
        "--uid",
        "65534",
        "--pidfile",
        "",
        "-n",
        "fastpoetry",
        "--listen",
        "tcp:0:interface=127.0.0.1",
    ]);
    let port = host.port();
    host.wait_for_line(&format!("[-] Changed root to {}.", jail.path().display()));
    assert_eq!(fetch(port).len(), 3003);
    let root = std::fs::read_link(format!("/proc/{}/root", host.pid())).unwrap();
    assert_eq!(root, jail.path());
    host.stop();
}

#[test]
fn asking_for_another_user_without_root_is_a_clear_error() {
    let (mut command, uid) = if is_root() {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(host_e2e::host_bin());
        command.current_dir(std::env::temp_dir());
        (command, 65534)
    } else {
        (host_command(&[]), nix::unistd::geteuid().as_raw())
    };
    let user_cache = TempDir::new("uid-cache");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(user_cache.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    command.env("XDG_CACHE_HOME", user_cache.path());
    command.args(["--uid", "0", "-n", "fastpoetry", "--port", "0"]);
    let out = run(command);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert_eq!(
        out.stderr.trim_end(),
        format!("host: --uid needs root, but host runs as uid {uid}")
    );
}

#[test]
fn sighup_reloads_a_service_that_can_and_is_ignored_by_one_that_cannot() {
    let dir = TempDir::new("reload");
    let poem_file = dir.join("poem.txt");
    std::fs::write(&poem_file, "first version\n").unwrap();
    let mut host = host_e2e::serve_poem(&[], &poem_file);
    let port = host.port();
    assert_eq!(fetch(port), b"first version\n");
    std::fs::write(&poem_file, "second version\n").unwrap();
    host.signal(libc::SIGHUP);
    host.wait_for_line("[-] Received SIGHUP, reloaded fastpoetry.");
    assert_eq!(fetch(port), b"second version\n");
    std::fs::remove_file(&poem_file).unwrap();
    host.signal(libc::SIGHUP);
    host.wait_for_line(
        "[-] error: Received SIGHUP, but fastpoetry could not reload: cannot read the poem",
    );
    assert_eq!(
        fetch(port),
        b"second version\n",
        "a failed reload keeps the old poem"
    );
    host.signal(libc::SIGINT);
    assert_eq!(host.wait().code(), Some(0));

    let fixtures = host_e2e::fixture_dir();
    let mut host = Running::start(&["--plugin-dir", fixtures.to_str().unwrap(), "-n", "traced"]);
    host.wait_for_line("[traced] traced started");
    host.signal(libc::SIGHUP);
    host.wait_for_line("[-] Received SIGHUP, ignored (traced cannot reload).");
    host.signal(libc::SIGINT);
    assert_eq!(host.wait().code(), Some(0));
}

/// A host serving a 32 MB poem to a client that does not read: its shutdown has in-flight work.
fn host_with_a_stalled_client(extra: &[&str]) -> (Running, TcpStream, TempDir) {
    let dir = TempDir::new("stalled");
    let host = host_e2e::serve_poem(extra, &host_e2e::write_big_poem(dir.path()));
    let mut stalled = TcpStream::connect(("127.0.0.1", host.port())).unwrap();
    // One byte read proves the server is sending; then the client stops reading.
    stalled.read_exact(&mut [0u8; 1]).unwrap();
    (host, stalled, dir)
}

#[test]
fn shutdown_waits_for_in_flight_work_until_the_timeout() {
    let (mut host, _stalled, _dir) = host_with_a_stalled_client(&["--shutdown-timeout", "0.5"]);
    host.signal(libc::SIGTERM);
    assert!(
        host.wait_within(Duration::from_millis(300)).is_none(),
        "waits for the connection"
    );
    assert_eq!(host.wait().code(), Some(0));
    assert!(
        host.stdout().contains(
            "did not stop cleanly: in-flight work did not finish within 500ms; abandoned"
        ),
        "{}",
        host.stdout()
    );
}

#[test]
fn in_flight_work_finishes_during_a_graceful_shutdown() {
    let (mut host, mut stalled, _dir) = host_with_a_stalled_client(&[]);
    host.signal(libc::SIGTERM);
    host.wait_for_line("Received SIGTERM, shutting down.");
    let mut poem = Vec::new();
    stalled.read_to_end(&mut poem).unwrap();
    assert_eq!(
        poem.len() + 1,
        host_e2e::BIG_POEM_BYTES,
        "the client still gets the whole poem"
    );
    assert_eq!(host.wait().code(), Some(0));
}

#[test]
fn a_second_signal_forces_an_immediate_exit() {
    let (mut host, _stalled, _dir) = host_with_a_stalled_client(&[]);
    host.signal(libc::SIGTERM);
    host.wait_for_line("Received SIGTERM, shutting down.");
    host.signal(libc::SIGINT);
    let status = host
        .wait_within(Duration::from_secs(2))
        .expect("exits at once");
    assert_eq!(status.code(), Some(1));
    assert!(
        host.stdout()
            .contains("Received SIGINT again, exiting immediately."),
        "{}",
        host.stdout()
    );
}

#[test]
fn systemd_hears_ready_once_serving_and_stopping_on_shutdown() {
    let dir = TempDir::new("notify");
    let socket = dir.join("notify.sock");
    let manager = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    manager.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut command = host_command(&["-n", "fastpoetry", "--port", "0"]);
    command.env("NOTIFY_SOCKET", &socket);
    let mut host = Running::spawn(&mut command);
    let mut buffer = [0u8; 256];
    let n = manager.recv(&mut buffer).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&buffer[..n]),
        format!("READY=1\nMAINPID={}", host.pid())
    );
    assert_eq!(fetch(host.port()).len(), 3003, "ready means serving");
    let n = manager.recv(&mut buffer).unwrap();
    assert_eq!(&buffer[..n], b"STATUS=Serving 1 service");
    host.signal(libc::SIGTERM);
    let n = manager.recv(&mut buffer).unwrap();
    assert_eq!(&buffer[..n], b"STOPPING=1\nSTATUS=Stopping");
    assert_eq!(host.wait().code(), Some(0));
}

#[test]
fn socket_activation_adopts_the_listening_socket_systemd_passes() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut command = host_e2e::socket_activated(
        &listener,
        &[
            "--pidfile",
            "",
            "-n",
            "fastpoetry",
            "--listen",
            "systemd:domain=INET:index=0",
        ],
    );
    let mut host = Running::spawn(&mut command);
    drop(listener);
    let line = host.wait_for_line("starting on");
    assert!(
        line.ends_with(&format!(
            "fastpoetry starting on tcp:{port}:interface=127.0.0.1"
        )),
        "{line}"
    );
    assert_eq!(fetch(port).len(), 3003);
    host.stop();

    let out = host_e2e::run_host(&[
        "--pidfile",
        "",
        "-n",
        "fastpoetry",
        "--listen",
        "systemd:index=0",
    ]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr
            .contains("cannot listen on systemd:index=0: no sockets were passed to this process"),
        "{}",
        out.stderr
    );
}
