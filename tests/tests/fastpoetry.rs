//! fastpoetry end to end: real `host` processes serving real sockets on 127.0.0.1.

use host_e2e::{
    fetch, poem, raise_open_files, serve_poem, write_big_poem, Running, TempDir, BIG_POEM_BYTES,
};
use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn serve(poem_file: &str) -> Running {
    serve_poem(&[], &poem(poem_file))
}

#[test]
fn every_one_of_200_concurrent_clients_gets_the_whole_poem() {
    let host = serve("ecstasy.txt");
    let port = host.port();
    let expected = std::fs::read(poem("ecstasy.txt")).unwrap();
    let clients: Vec<_> = (0..200)
        .map(|_| std::thread::spawn(move || fetch(port)))
        .collect();
    for client in clients {
        assert!(
            client.join().unwrap() == expected,
            "a client got different bytes"
        );
    }
    host.wait_for_line(&format!(
        "sending {} bytes of poetry to 127.0.0.1:",
        expected.len()
    ));
}

#[test]
fn logs_like_twistd_and_port_0_reports_the_chosen_port() {
    let path = poem("science.txt");
    let host = serve("science.txt");
    let port = host.port();
    assert_ne!(port, 0);
    fetch(port);
    let log = host.wait_for_line("sending 653 bytes of poetry to 127.0.0.1:");
    // 2026-11-21T22:57:14+0000 [fastpoetry] sending ...
    let (stamp, rest) = log.split_once(' ').unwrap();
    assert_eq!(stamp.len(), "2026-11-21T22:57:14+0000".len(), "{log}");
    assert!(rest.starts_with("[fastpoetry] sending"), "{log}");
    let out = host.stdout();
    let lines: Vec<&str> = out.lines().map(|l| l.split_once(' ').unwrap().1).collect();
    assert_eq!(lines[0], "[-] Log opened.");
    assert!(
        lines[1].starts_with("[-] host ")
            && lines[1].contains("starting up with plugin fastpoetry")
    );
    assert_eq!(
        lines[2],
        format!("[fastpoetry] loaded a poem from: {}", path.display())
    );
    assert_eq!(
        lines[3],
        format!("[fastpoetry] fastpoetry starting on tcp:{port}:interface=127.0.0.1")
    );
}

#[test]
fn without_poem_option_serves_the_bundled_ecstasy() {
    let host = Running::start(&["-n", "fastpoetry", "--port", "0"]);
    assert_eq!(
        fetch(host.port()),
        std::fs::read(poem("ecstasy.txt")).unwrap()
    );
}

fn stops_cleanly_on(signal: i32, name: &str) {
    let mut host = serve("science.txt");
    let port = host.port();
    fetch(port);
    host.wait_for_line("sending 653 bytes");
    let asked = Instant::now();
    host.signal(signal);
    let status = host
        .wait_within(Duration::from_secs(1))
        .expect("exits within a second");
    assert!(asked.elapsed() < Duration::from_secs(1));
    assert_eq!(status.code(), Some(0), "{}", host.stdout());
    assert_eq!(
        host.log_tail(4),
        [
            "[-] Server Shut Down.",
            "[-] Main loop terminated.",
            &format!("[fastpoetry] (Port tcp:{port}:interface=127.0.0.1 Closed)"),
            &format!("[-] Received {name}, shutting down."),
        ]
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the port is closed"
    );
}

#[test]
fn sigint_shuts_down_cleanly_within_a_second() {
    stops_cleanly_on(libc::SIGINT, "SIGINT");
}

#[test]
fn sigterm_shuts_down_cleanly_within_a_second() {
    stops_cleanly_on(libc::SIGTERM, "SIGTERM");
}

#[test]
fn a_slow_reader_does_not_hold_up_other_clients() {
    let dir = TempDir::new("big");
    let host = serve_poem(&[], &write_big_poem(dir.path()));
    let port = host.port();
    let stalled: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let started = Instant::now();
    assert_eq!(fetch(port).len(), BIG_POEM_BYTES);
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(stalled);
}

#[test]
fn thousands_of_concurrent_connections_are_served() {
    raise_open_files(8192);
    let host = serve("science.txt");
    let port = host.port();
    let open: Vec<TcpStream> = (0..3000)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connects"))
        .collect();
    for mut stream in open {
        stream.set_read_timeout(Some(host_e2e::PATIENCE)).unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), 653);
    }
}

#[test]
fn listens_on_several_endpoints_including_a_unix_socket() {
    let dir = TempDir::new("unix");
    let socket = dir.join("poetry.sock");
    let unix = format!("unix:{}:mode=0600", socket.display());
    let mut host = Running::start(&[
        "-n",
        "fastpoetry",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--listen",
        &unix,
    ]);
    let port = host.port();
    host.wait_for_line(&format!("starting on unix:{}", socket.display()));
    assert_eq!(fetch(port).len(), 3003);
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), 3003);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o600
    );
    host.stop();
    assert!(!socket.exists(), "the socket file is removed on shutdown");
}

#[test]
fn a_port_in_use_fails_start_up_with_exit_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = host_e2e::run_host(&["-n", "fastpoetry", "--iface", "127.0.0.1", "--port", &port]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert_eq!(
        out.stderr.trim_end(),
        format!(
            "host: fastpoetry failed to start: cannot listen on tcp:{port}:interface=127.0.0.1: Address already in use (os error 98)"
        )
    );
}

#[test]
fn log_level_options_and_rust_log_filter_plugin_lines_too() {
    for (args, rust_log, shows_info) in [
        (&["-q"][..], None, false),
        (&["--log-level", "warn"], None, false),
        (&["-v"], None, true),
        (&[], None, true),
        (&[], Some("warn"), false),
        (&["--log-level", "info"], Some("warn"), true),
    ] {
        let mut all = args.to_vec();
        all.extend(["-n", "fastpoetry", "--listen", "tcp:0:interface=127.0.0.1"]);
        let mut command = host_e2e::host_command(&all);
        if let Some(filter) = rust_log {
            command.env("RUST_LOG", filter);
        }
        let mut host = Running::spawn(&mut command);
        // With info hidden there is no start-up line to wait for, so give it a moment.
        std::thread::sleep(Duration::from_millis(300));
        host.signal(libc::SIGINT);
        assert_eq!(host.wait().code(), Some(0));
        let out = host.stdout();
        let case = format!("{args:?} RUST_LOG={rust_log:?}: {out}");
        assert_eq!(
            out.contains("[fastpoetry] fastpoetry starting on"),
            shows_info,
            "{case}"
        );
        assert_eq!(out.contains("[-] Log opened."), shows_info, "{case}");
    }
}
