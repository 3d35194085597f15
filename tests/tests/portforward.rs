//! The portforward plugin with real clients: curl through it to a real web server, and Python
//! clients for half-close, concurrency, the connection limit, a 1 GiB stream and slow readers.

use host_e2e::proxying::{
    a_slow_origin_holds_the_client_back, a_slow_reader_holds_the_origin_back, python, Origin,
    Unanswering, WebServer,
};
use host_e2e::{curl, run_host, Running, TempDir};
use std::time::{Duration, Instant};

/// `host -n portforward` on a free port of 127.0.0.1, forwarding with `forward` options.
fn forward(forward: &[&str]) -> (Running, u16) {
    let mut args = vec![
        "--pidfile",
        "",
        "-n",
        "portforward",
        "-p",
        "tcp:0:interface=127.0.0.1",
    ];
    args.extend(forward);
    let host = Running::start(&args);
    let port = host.port();
    (host, port)
}

fn to_origin(origin: &Origin) -> Vec<String> {
    vec![
        "-h".into(),
        "127.0.0.1".into(),
        "-d".into(),
        origin.port.to_string(),
    ]
}

#[test]
fn twistd_options_and_defaults() {
    let help = run_host(&["portforward", "--help"]);
    assert_eq!(help.code(), Some(0), "{}", help.stderr);
    for expected in [
        "-p, --port <PORT>",
        "[default: tcp:6666]",
        "-h, --host <HOST>",
        "[default: localhost]",
        "-d, --dest_port <DEST_PORT>",
        "[default: 6665]",
        "--dest <ENDPOINT>",
        "--connect-timeout <DURATION>",
        "--max-connections <N>",
        "--no-splice",
        "--help",
    ] {
        assert!(
            help.stdout.contains(expected),
            "{expected}:\n{}",
            help.stdout
        );
    }
    let bad = run_host(&["-n", "portforward", "--dest", "tcp:nowhere"]);
    assert_eq!(bad.code(), Some(2), "{}", bad.stderr);
    assert!(bad.stderr.contains("--dest"), "{}", bad.stderr);
    // --port takes twistd's bare port number too, so it is checked by the plugin.
    let bad = run_host(&["--pidfile", "", "-n", "portforward", "-p", "tcp:x"]);
    assert_eq!(bad.code(), Some(1), "{}", bad.stderr);
    assert!(
        bad.stderr
            .contains("option --port: invalid endpoint 'tcp:x'"),
        "{}",
        bad.stderr
    );
}

#[test]
fn curl_through_the_forward_with_one_log_line_per_connection() {
    let site = TempDir::new("pf-web");
    std::fs::write(site.join("hello.txt"), "hello through the forward\n").unwrap();
    let web = WebServer::start(site.path());
    for destination in [
        vec![
            "-h".to_string(),
            "127.0.0.1".into(),
            "-d".into(),
            web.port.to_string(),
        ],
        vec!["--dest".to_string(), format!("tcp:localhost:{}", web.port)],
    ] {
        let destination: Vec<&str> = destination.iter().map(String::as_str).collect();
        let (mut host, port) = forward(&destination);
        let out = curl(&[&format!("http://127.0.0.1:{port}/hello.txt")]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hello through the forward\n"
        );
        let line = host.wait_for_line(" bytes down in ");
        assert!(
            line.contains(&format!(":{}: ", web.port)) && line.contains(" bytes up, "),
            "{line}"
        );
        host.stop();
    }
}

#[test]
fn half_close_is_passed_on_both_ways() {
    let origin = Origin::start();
    let to = to_origin(&origin);
    let (mut host, port) = forward(&to.iter().map(String::as_str).collect::<Vec<_>>());
    python(
        port,
        origin.port,
        r#"
# The client shuts down its side; the origin sees the end and still gets its reply through.
s = connect()
assert count_through(s, b'x' * 100000) == b'100000\n'
# The origin shuts down its side first; the client reads the end and can still send.
s = connect()
s.sendall(b'HALF\n')
assert recv_all(s) == b'bye\n'
s.sendall(b'y' * 50000)
s.close()
"#,
    );
    origin.wait_for_received(50000);
    host.stop();
}

#[test]
fn a_hundred_concurrent_connections() {
    let origin = Origin::start();
    let to = to_origin(&origin);
    let (mut host, port) = forward(&to.iter().map(String::as_str).collect::<Vec<_>>());
    python(
        port,
        origin.port,
        r#"
results = []
def client(i):
    s = connect()
    results.append(count_through(s, os.urandom(1000 * i)) == b'%d\n' % (1000 * i))
threads = [threading.Thread(target=client, args=(i,)) for i in range(100)]
for t in threads: t.start()
for t in threads: t.join(30)
assert len(results) == 100 and all(results), results
"#,
    );
    host.stop();
}

#[test]
fn a_gibibyte_arrives_whole_with_splice_and_with_copy() {
    let origin = Origin::start();
    for engine in [None, Some("--no-splice")] {
        let mut options = to_origin(&origin);
        options.extend(engine.map(str::to_string));
        let (mut host, port) = forward(&options.iter().map(String::as_str).collect::<Vec<_>>());
        python(
            port,
            origin.port,
            r#"
n = 1 << 30
s = connect()
s.settimeout(60)
s.sendall(b'SEND %d\n' % n)
digest, total = sha256_of_stream(s)
assert total == n, total
assert digest == expected_sha256(n), digest
"#,
        );
        let line = host.wait_for_line("1073741824 bytes down");
        assert!(
            line.contains("bytes up, 1073741824 bytes down in "),
            "{line}"
        );
        host.stop();
    }
}

#[test]
fn memory_stays_flat_behind_a_slow_reader_either_way() {
    for engine in [None, Some("--no-splice")] {
        let origin = Origin::start();
        let mut options = to_origin(&origin);
        options.extend(engine.map(str::to_string));
        let (mut host, port) = forward(&options.iter().map(String::as_str).collect::<Vec<_>>());
        let what = format!("{engine:?}");
        a_slow_reader_holds_the_origin_back(host.pid(), port, &origin, "", &what);
        a_slow_origin_holds_the_client_back(host.pid(), port, &origin, "", &what);
        host.stop();
    }
}

#[test]
fn over_max_connections_a_client_waits_for_a_slot() {
    let origin = Origin::start();
    let mut options = to_origin(&origin);
    options.extend(["--max-connections".to_string(), "2".into()]);
    let (mut host, port) = forward(&options.iter().map(String::as_str).collect::<Vec<_>>());
    let out = python(
        port,
        origin.port,
        r#"
def held():
    s = connect()
    s.sendall(b'HALF\n')
    assert recv_exact(s, 4) == b'bye\n'
    return s
first, second = held(), held()
# The third is connected (the kernel's backlog) but not served: nothing comes back.
third = connect()
third.sendall(b'HALF\n')
third.settimeout(1)
try:
    raise AssertionError('served over the limit: %r' % third.recv(4))
except socket.timeout:
    pass
# A fourth leaves while it waits, with its reply on the way when it is served.
fourth = connect()
fourth.sendall(b'COUNT\nabc')
print('fourth', fourth.getsockname()[1])
fourth.close()
# A slot frees: the third is served.
first.close()
third.settimeout(20)
assert recv_exact(third, 4) == b'bye\n'
second.close()
third.close()
"#,
    );
    let fourth = out
        .lines()
        .find_map(|line| line.strip_prefix("fourth "))
        .unwrap();
    // The client that left is the client's doing, logged as the reset it is.
    let line = host.wait_for_line(&format!("127.0.0.1:{fourth} to "));
    assert!(
        !line.contains("not connected") && line.contains(": 9 bytes up, "),
        "{line}"
    );
    host.stop();
}

#[test]
fn a_destination_that_refuses_or_does_not_answer_closes_the_client_and_is_logged() {
    let closed = host_e2e::free_port();
    let dest = format!("tcp:127.0.0.1:{closed}");
    let (mut host, port) = forward(&["--dest", &dest]);
    python(port, 0, "s = connect()\nassert recv_all(s) == b''");
    host.wait_for_line("warning: connection from 127.0.0.1:");
    let line = host.wait_for_line("cannot connect to");
    assert!(
        line.contains(&format!("{dest}: Connection refused")),
        "{line}"
    );
    host.stop();

    let silent = Unanswering::new();
    let dest = format!("tcp:127.0.0.1:{}", silent.port);
    let (mut host, port) = forward(&["--dest", &dest, "--connect-timeout", "500ms"]);
    let started = Instant::now();
    python(port, 0, "s = connect()\nassert recv_all(s) == b''");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let line = host.wait_for_line("cannot connect to");
    assert!(line.contains("timed out after 0.5s"), "{line}");
    host.stop();
}

#[test]
fn sigterm_lets_a_transfer_in_progress_finish() {
    let origin = Origin::start();
    let to = to_origin(&origin);
    let (mut host, port) = forward(&to.iter().map(String::as_str).collect::<Vec<_>>());
    let pid = host.pid();
    python(
        port,
        origin.port,
        &format!(
            r#"
s = connect()
s.sendall(b'SEND 200000000\n')
first = recv_exact(s, 1 << 20)
os.kill({pid}, 15)
digest, total = sha256_of_stream(s)
assert total + len(first) == 200000000, total
"#
        ),
    );
    let status = host.wait();
    assert_eq!(status.code(), Some(0), "{}", host.stdout());
    assert!(
        host.stdout().contains("200000000 bytes down"),
        "{}",
        host.stdout()
    );
}
