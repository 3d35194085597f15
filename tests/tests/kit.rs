//! The kit's serving loop, endpoints and option kinds, through real host processes: accept
//! errors under EMFILE, the connection limit, handler errors logged with the peer, `ssl:`
//! endpoints with real TLS clients, client endpoints that fail, and the options of plugin-api
//! 1.2 on the command line and in an older host.

use host_e2e::{
    fetch, fixture_dir, run, run_host, self_signed, serve_poem, write_big_poem, Running, TempDir,
    BIG_POEM_BYTES, PATIENCE,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// Connects and reads a little, then stops reading: the server's write stays pending, so the
/// connection holds a descriptor in the server until it is dropped.
fn stalled_client(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut first = [0; 1];
    stream.read_exact(&mut first).unwrap();
    stream
}

fn count_lines(host: &Running, needle: &str) -> usize {
    host.stdout().lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn a_service_out_of_file_descriptors_keeps_running_and_serves_again() {
    let dir = TempDir::new("emfile");
    let big = write_big_poem(dir.path());
    // A hard limit of 40 descriptors: the host cannot raise it, and about 30 are left for clients.
    let mut command = Command::new("prlimit");
    command
        .args(["--nofile=40:40", "--"])
        .arg(host_e2e::host_bin());
    command.args([
        "-n",
        "fastpoetry",
        "--port",
        "0",
        "--poem",
        big.to_str().unwrap(),
    ]);
    let mut host = Running::spawn(host_e2e::prepare(&mut command));
    let port = host.port();
    let mut clients = Vec::new();
    let until = Instant::now() + PATIENCE;
    while count_lines(&host, "Too many open files") == 0 {
        assert!(
            Instant::now() < until,
            "never ran out of descriptors:\n{}",
            host.stdout()
        );
        // Connecting succeeds even when the server cannot accept: the kernel queues it.
        clients.push(TcpStream::connect(("127.0.0.1", port)).unwrap());
        std::thread::sleep(Duration::from_millis(5));
    }
    // Out of descriptors for two seconds: the loop backs off and says so at most once a second.
    std::thread::sleep(Duration::from_secs(2));
    let reports = count_lines(&host, "Too many open files");
    assert!(
        (1..=4).contains(&reports),
        "{reports} reports:\n{}",
        host.stdout()
    );
    assert!(
        host.wait_within(Duration::ZERO).is_none(),
        "the host exited"
    );
    drop(clients);
    // Once the clients are gone the same service serves the whole poem again.
    assert_eq!(fetch(port).len(), BIG_POEM_BYTES);
    host.stop();
}

#[test]
fn over_the_connection_limit_clients_wait_in_the_backlog_until_a_slot_frees() {
    let dir = TempDir::new("limit");
    let big = write_big_poem(dir.path());
    let mut host = Running::start(&[
        "-n",
        "fastpoetry",
        "--port",
        "0",
        "--poem",
        big.to_str().unwrap(),
        "--max-connections",
        "2",
    ]);
    let port = host.port();
    let first = stalled_client(port);
    let _second = stalled_client(port);
    let mut third = TcpStream::connect(("127.0.0.1", port)).unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut byte = [0; 1];
    let waited = third.read(&mut byte);
    assert!(
        waited.is_err(),
        "the third client was served at once: {waited:?}"
    );
    drop(first);
    third.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut poem = Vec::new();
    third.read_to_end(&mut poem).unwrap();
    assert_eq!(poem.len(), BIG_POEM_BYTES);
    host.stop();
}

/// `faulty --listen …`: each connection gets "faulty\n", then the handler fails or panics.
fn faulty_server(step: &str, what: &str) -> (Running, u16) {
    let dir = fixture_dir();
    let host = Running::start(&[
        "--plugin-dir",
        dir.to_str().unwrap(),
        "-n",
        "faulty",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        what,
        step,
    ]);
    let port = host.port();
    (host, port)
}

/// Connects, reads the greeting and returns the client's own address as the server sees it.
fn greeted(port: u16) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).unwrap();
    assert_eq!(line, "faulty\n");
    stream.local_addr().unwrap().to_string()
}

#[test]
fn a_handler_error_is_logged_with_the_peer_by_default_and_the_service_goes_on() {
    let (mut host, port) = faulty_server("connection", "--fail-in");
    for _ in 0..3 {
        let peer = greeted(port);
        host.wait_for_line(&format!(
            "[faulty] warning: connection from {peer} failed: told to fail in connection"
        ));
    }
    host.stop();
}

#[test]
fn a_handler_panic_ends_only_that_connection() {
    let (mut host, port) = faulty_server("connection", "--panic-in");
    for _ in 0..3 {
        let peer = greeted(port);
        host.wait_for_line(&format!(
            "[faulty] warning: connection from {peer} failed: the handler panicked"
        ));
    }
    assert!(
        host.stdout().contains("[faulty] error: panicked at"),
        "{}",
        host.stdout()
    );
    host.stop();
}

#[test]
fn a_client_that_resets_is_logged_at_info_with_its_address() {
    let dir = TempDir::new("reset");
    let big = write_big_poem(dir.path());
    let mut host = serve_poem(&[], &big);
    let port = host.port();
    let client = stalled_client(port);
    let peer = client.local_addr().unwrap().to_string();
    // Closing with unread data makes the kernel send a reset.
    drop(client);
    let line = host.wait_for_line(&format!("connection from {peer} ended:"));
    assert!(!line.contains("warning"), "{line}");
    host.stop();
}

/// fastpoetry on an `ssl:` endpoint with a certificate made by openssl in `dir`.
fn tls_poetry(dir: &TempDir) -> (Running, u16, std::path::PathBuf) {
    let (cert, key) = self_signed(dir.path());
    let endpoint = format!(
        "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}",
        key.display(),
        cert.display()
    );
    let host = Running::start(&["-n", "fastpoetry", "--listen", &endpoint]);
    let line = host.wait_for_line("fastpoetry starting on ssl:");
    let port = line
        .split("starting on ssl:")
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (host, port, cert)
}

const BUNDLED_POEM: &str = include_str!("../../poems/ecstasy.txt");

#[test]
fn an_ssl_endpoint_serves_python_and_openssl_clients() {
    let dir = TempDir::new("ssl");
    let (mut host, port, cert) = tls_poetry(&dir);
    let script = format!(
        r#"
import socket, ssl
context = ssl.create_default_context(cafile={cert:?})
with socket.create_connection(("127.0.0.1", {port})) as raw:
    with context.wrap_socket(raw, server_hostname="localhost") as tls:
        print(tls.version())
        data = b""
        while True:
            chunk = tls.recv(65536)
            if not chunk:
                break
            data += chunk
        print(len(data))
"#,
        cert = cert.to_str().unwrap()
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("TLSv1."), "{stdout}");
    assert_eq!(lines[1], BUNDLED_POEM.len().to_string());

    let mut s_client = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-quiet",
            "-verify_return_error",
        ])
        .arg("-CAfile")
        .arg(&cert)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut poem = String::new();
    s_client
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut poem)
        .unwrap();
    drop(s_client.stdin.take());
    let _ = s_client.wait();
    assert_eq!(poem, BUNDLED_POEM);

    // Clients that speak no TLS (a port scan, a browser pointed at http://) are their own
    // problem: the first is logged, at info level, and the next ones only counted until the
    // next report, 10 s later.
    for _ in 0..20 {
        let mut plain = TcpStream::connect(("127.0.0.1", port)).unwrap();
        plain.set_read_timeout(Some(PATIENCE)).unwrap();
        plain.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        // Until the server has given up on this one.
        let _ = plain.read_to_end(&mut Vec::new());
    }
    let line = host.wait_for_line("TLS handshake failed");
    assert!(!line.contains("warning"), "{line}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        count_lines(&host, "TLS handshake failed"),
        1,
        "{}",
        host.stdout()
    );
    assert_eq!(
        Command::new("python3")
            .args(["-c", &script])
            .output()
            .unwrap()
            .status
            .code(),
        Some(0)
    );
    host.stop();
}

#[test]
fn ssl_endpoints_with_bad_files_fail_at_start_up_in_one_line() {
    let dir = TempDir::new("ssl-bad");
    let (cert, _) = self_signed(dir.path());
    let other = TempDir::new("ssl-other");
    let (_, other_key) = self_signed(other.path());
    std::fs::write(dir.join("garbage.pem"), "not a key\n").unwrap();
    for (key, cert, expected) in [
        (
            other_key.clone(),
            cert.clone(),
            format!("does not match the certificate {}", cert.display()),
        ),
        (
            dir.join("missing.pem"),
            cert.clone(),
            "cannot read the private key".to_string(),
        ),
        (
            dir.join("garbage.pem"),
            cert.clone(),
            "holds no usable PEM private key".to_string(),
        ),
        (
            other_key.clone(),
            dir.join("garbage.pem"),
            "holds no PEM certificate".to_string(),
        ),
    ] {
        let endpoint = format!(
            "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}",
            key.display(),
            cert.display()
        );
        let out = run_host(&["-n", "fastpoetry", "--listen", &endpoint]);
        assert_eq!(out.code(), Some(1), "{out:?}");
        let first = out.stderr.lines().next().unwrap_or_default().to_string();
        assert!(first.contains(&expected), "{expected}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
}

fn newkinds(args: &[&str]) -> Running {
    let dir = fixture_dir();
    let mut all = vec!["--plugin-dir", dir.to_str().unwrap(), "-n", "newkinds"];
    all.extend_from_slice(args);
    Running::start(&all)
}

#[test]
fn client_endpoints_say_when_the_destination_refuses_or_does_not_answer() {
    let closed = host_e2e::free_port();
    let upstream = format!("tcp:127.0.0.1:{closed}:timeout=5");
    let mut host = newkinds(&["--server", "localhost:1", "--upstream", &upstream]);
    host.wait_for_line(&format!(
        "[newkinds] warning: cannot connect to tcp:127.0.0.1:{closed}:timeout=5: Connection refused"
    ));
    host.stop();

    // A listener whose backlog is full and never accepts: the kernel drops further handshakes,
    // so a connection attempt neither succeeds nor fails until the timeout.
    let full = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    full.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    full.listen(0).unwrap();
    let port = full.local_addr().unwrap().as_socket().unwrap().port();
    let _queued: Vec<_> = (0..4)
        .filter_map(|_| {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
            s.set_nonblocking(true).ok()?;
            let _ = s.connect(
                &format!("127.0.0.1:{port}")
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            );
            Some(s)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let upstream = format!("tcp:127.0.0.1:{port}:timeout=0.5");
    let mut host = newkinds(&["--server", "localhost:1", "--upstream", &upstream]);
    let line = host.wait_for_line("[newkinds] warning: cannot connect to");
    assert!(
        line.contains(&format!(
            "tcp:127.0.0.1:{port}:timeout=0.5: timed out after 0.5s"
        )),
        "{line}"
    );
    let waited: u64 = line
        .split("(after ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((450..3000).contains(&waited), "{line}");
    host.stop();
}

#[test]
fn required_host_port_and_duration_options_are_checked_on_the_command_line() {
    let dir = fixture_dir();
    let plugin_dir = dir.to_str().unwrap();
    let help = run_host(&["--plugin-dir", plugin_dir, "newkinds", "--help"]);
    assert!(
        help.stdout
            .contains("Usage: host newkinds [OPTIONS] --server <HOST:PORT>"),
        "{}",
        help.stdout
    );
    assert!(
        help.stdout.contains("--patience <DURATION>"),
        "{}",
        help.stdout
    );
    for (args, expected) in [
        (
            &[][..],
            "the following required arguments were not provided:\n  --server <HOST:PORT>",
        ),
        (&["--server", "localhost"], "'localhost' is not HOST:PORT"),
        (
            &["--server", "localhost:99999"],
            "port '99999' is not in 0..=65535",
        ),
        (
            &["--server", "h:1", "--patience", "5 minutes"],
            "'5 minutes' is not a duration",
        ),
        (
            &["--server", "h:1", "--upstream", "tcp:nowhere"],
            "expected tcp:HOST:PORT",
        ),
    ] {
        let mut all = vec!["--plugin-dir", plugin_dir, "-n", "newkinds"];
        all.extend_from_slice(args);
        let out = run_host(&all);
        assert_eq!(out.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stderr.contains(expected), "{args:?}: {}", out.stderr);
    }
    let mut host = newkinds(&["--server", "[::1]:8080", "--patience", "1.5m"]);
    host.wait_for_line("[newkinds] server ::1 port 8080 patience 90000ms upstream none");
    host.wait_for_line("[newkinds] newkinds started");
    host.stop();
}

#[test]
fn a_negative_connection_limit_is_a_usage_error() {
    for option in [
        "--max-connections=-1",
        "--max-connections=-9223372036854775808",
    ] {
        let out = run_host(&["-n", "fastpoetry", option]);
        assert_eq!(out.code(), Some(2), "{out:?}");
        assert!(
            out.stderr.contains("is negative (0 means no limit)"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn an_older_host_refuses_a_plugin_using_new_kinds_naming_the_option_and_the_version() {
    let dir = fixture_dir();
    let old_host = dir.join("old-host");
    let out = run({
        let mut command = Command::new(&old_host);
        command
            .arg(dir.join("libnewkinds.so"))
            .args(["--server", "localhost:1"]);
        command
    });
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        "error: option --server (required host:port) needs a host built with plugin-api 1.2 or later; this host has plugin-api 1.0 or 1.1"
    );
    // A plugin that uses nothing new runs in the older host as before.
    let out = run({
        let mut command = Command::new(&old_host);
        command.arg(dir.join("libfaulty.so"));
        command
    });
    assert_eq!(out.stdout.trim(), "started", "{out:?}");
}
