//! Application files (`host --config FILE`): several named services in one host, checked with
//! `--check`, started in order and stopped in reverse, re-read on SIGHUP, with the pid file,
//! daemon mode and `--uid` as for one plugin.

use host_e2e::{
    fetch, fixture_dir, free_port, poem, run, run_host, write_big_poem, Running, TempDir,
    BIG_POEM_BYTES, PATIENCE,
};
use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// `host ARGS` in a fresh directory, like every test host, with the fixture plugins found too.
fn start_host(args: &[&str]) -> Running {
    let dir = fixture_dir();
    let mut all = vec!["--pidfile", "", "--plugin-dir", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    Running::start(&all)
}

fn check(file: &Path) -> host_e2e::Finished {
    let dir = fixture_dir();
    run_host(&[
        "--plugin-dir",
        dir.to_str().unwrap(),
        "--config",
        file.to_str().unwrap(),
        "--check",
    ])
}

fn refused(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_err()
}

/// Reads one file from an FTP server with Python's ftplib, anonymously.
fn ftp_get(port: u16, name: &str) -> Vec<u8> {
    let script = format!(
        "import ftplib, sys\nftp = ftplib.FTP()\nftp.connect('127.0.0.1', {port}, timeout=20)\nftp.login()\nchunks = []\nftp.retrbinary('RETR {name}', chunks.append)\nsys.stdout.buffer.write(b''.join(chunks))\nftp.quit()\n"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn the_readme_example_serves_both_poems_and_the_ftp_root_byte_for_byte() {
    let example = host_e2e::workspace_root().join("examples/app.toml");
    assert_eq!(check(&example).code(), Some(0));
    let mut host = start_host(&["-n", "--config", example.to_str().unwrap()]);
    host.wait_for_line("[poems] ftp starting on tcp:2121");
    let ecstasy = std::fs::read(poem("ecstasy.txt")).unwrap();
    let science = std::fs::read(poem("science.txt")).unwrap();
    assert_eq!(fetch(10001), ecstasy);
    assert_eq!(fetch(10002), science);
    assert_eq!(
        ftp_get(2121, "fascination.txt"),
        std::fs::read(poem("fascination.txt")).unwrap()
    );
    // Two services of one plugin, each under its own name.
    for line in [
        "[ecstasy] fastpoetry starting on tcp:10001:interface=127.0.0.1",
        "[science] fastpoetry starting on tcp:10002:interface=127.0.0.1",
        &format!("[ecstasy] sending {} bytes of poetry", ecstasy.len()),
        &format!("[science] sending {} bytes of poetry", science.len()),
    ] {
        host.wait_for_line(line);
    }
    host.stop();
    // Stopped in reverse: the FTP server first, then science, then ecstasy.
    let closed: Vec<String> = host
        .stdout()
        .lines()
        .filter(|l| l.contains("Closed)"))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect();
    assert_eq!(closed, ["[poems]", "[science]", "[ecstasy]"]);
}

#[test]
fn check_reports_every_problem_at_its_line_and_column_and_exits_2() {
    let dir = TempDir::new("app-check");
    let taken = free_port();
    std::fs::write(
        dir.join("app.toml"),
        format!(
            r#"[host]
shutdown-timeout = "soon"

[[service]]
name = "a"
plugin = "fastpoety"

[[service]]
name = "b"
plugin = "fastpoetry"
options = {{ port = 70000, pome = "x.txt" }}

[[service]]
name = "b"
plugin = "fastpoetry"
options = {{ port = {taken} }}

[[service]]
name = "c"
plugin = "faulty"
options = {{ listen = "tcp:{taken}:interface=127.0.0.1" }}

[[service]]
name = "d"
plugin = "newkinds"

[[service]]
name = "e"
plugin = "fastpoetry"
options = {{ listen = ["unix:s.sock"] }}

[[service]]
name = "f"
plugin = "fastpoetry"
options = {{ listen = ["unix:{unix}"], port = 0 }}

[[service]]
name = "g h"
plugin = "fastpoetry"
"#,
            unix = dir.join("s.sock").display()
        ),
    )
    .unwrap();
    let out = check(&dir.join("app.toml"));
    assert_eq!(out.code(), Some(2), "{out:?}");
    let file = dir.join("app.toml").display().to_string();
    let expected = [
        "2:20: invalid value 'soon' for '--shutdown-timeout <SECONDS>': 'soon' is not a positive number of seconds".to_string(),
        "6:10: no plugin named 'fastpoety' (did you mean 'fastpoetry'?)".to_string(),
        "11:20: invalid value for option 'port': '70000' is not a port number (0 to 65535)".to_string(),
        "11:27: plugin 'fastpoetry' has no option 'pome' (did you mean 'poem'?)".to_string(),
        format!("14:8: the service name 'b' is taken by the service at {file}:9:8; give each service its own name = \"…\""),
        format!("21:22: service 'c' would listen on TCP port {taken}, as service 'b' does"),
        "23:1: plugin 'newkinds' needs option 'server', which has no default".to_string(),
        format!("35:22: service 'f' would listen on Unix socket {}, as service 'e' does", dir.join("s.sock").display()),
        "38:8: invalid service name 'g h': use up to 64 letters, digits, '-', '_' and '.', not starting with '-'".to_string(),
    ];
    // Lines about the fixture directory's broken plugins come first; then the file's problems.
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.starts_with("host: warning: skipped"))
        .collect();
    for (line, want) in lines.iter().zip(&expected) {
        assert_eq!(*line, format!("{file}:{want}"));
    }
    assert_eq!(lines.len(), expected.len() + 1, "{}", out.stderr);
    assert_eq!(
        lines.last().unwrap(),
        &format!("host: {file}: {} problems; nothing was run", expected.len())
    );

    // A syntax error is placed too, and a file without problems gets a one-line summary.
    std::fs::write(
        dir.join("syntax.toml"),
        "[[service]]\nplugin = \"fastpoetry\"\nname = \n",
    )
    .unwrap();
    let out = check(&dir.join("syntax.toml"));
    assert_eq!(out.code(), Some(2));
    let problems: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.starts_with("host: warning: skipped"))
        .collect();
    assert_eq!(problems.len(), 2, "{}", out.stderr);
    assert!(
        problems[0].starts_with(&format!("{}:3:8: ", dir.join("syntax.toml").display())),
        "{}",
        out.stderr
    );
    std::fs::write(
        dir.join("good.toml"),
        "[[service]]\nname = \"p\"\nplugin = \"fastpoetry\"\noptions = { port = 0 }\n",
    )
    .unwrap();
    let out = check(&dir.join("good.toml"));
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        format!(
            "{}: OK, 1 service: p (fastpoetry)",
            dir.join("good.toml").display()
        )
    );
}

#[test]
fn check_reports_an_invalid_value_once_not_also_as_missing_or_at_start() {
    let dir = TempDir::new("app-invalid");
    std::fs::write(
        dir.join("app.toml"),
        r#"[[service]]
name = "d"
plugin = "newkinds"
options = { server = "localhost" }

[[service]]
name = "p"
plugin = "fastpoetry"
options = { port = 0, max-connections = -1 }
"#,
    )
    .unwrap();
    let out = check(&dir.join("app.toml"));
    assert_eq!(out.code(), Some(2), "{out:?}");
    let file = dir.join("app.toml").display().to_string();
    let problems: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.starts_with("host: warning: skipped"))
        .collect();
    assert_eq!(
        problems,
        [
            format!("{file}:4:22: invalid value for option 'server': 'localhost' is not HOST:PORT (e.g. localhost:8080 or [::1]:8080)"),
            format!("{file}:9:41: invalid value for option 'max-connections': '-1' is negative (0 means no limit)"),
            format!("host: {file}: 2 problems; nothing was run"),
        ]
    );
}

#[test]
fn check_loads_no_plugin_and_binds_nothing() {
    let dir = TempDir::new("app-noload");
    let plugins = dir.join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(
        fixture_dir().join("libtraced.so"),
        plugins.join("libtraced_x.so"),
    )
    .unwrap();
    let trace = dir.join("trace");
    // A listing first, so the library is described by the cache, and dated back so the cache
    // trusts it.
    let old = std::time::SystemTime::now() - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(plugins.join("libtraced_x.so"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    assert_eq!(
        run_host(&["--plugin-dir", plugins.to_str().unwrap()]).code(),
        Some(0)
    );
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    std::fs::write(
        dir.join("app.toml"),
        format!("[[service]]\nplugin = \"traced_x\"\n\n[[service]]\nplugin = \"fastpoetry\"\noptions = {{ port = {port} }}\n"),
    )
    .unwrap();
    let mut command = host_e2e::host_command(&[
        "--plugin-dir",
        plugins.to_str().unwrap(),
        "--config",
        dir.join("app.toml").to_str().unwrap(),
        "--check",
    ]);
    command.env("HOST_FIXTURE_LOAD_TRACE", &trace);
    let out = run(command);
    assert_eq!(out.code(), Some(0), "the port in use is not bound: {out:?}");
    assert!(
        !trace.exists(),
        "a library was loaded: {:?}",
        std::fs::read_to_string(&trace)
    );
}

#[test]
fn a_service_that_fails_to_start_stops_those_before_it_and_host_exits_1_naming_it() {
    let dir = TempDir::new("app-fail");
    let first = free_port();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = busy.local_addr().unwrap().port();
    std::fs::write(
        dir.join("app.toml"),
        format!(
            "[[service]]\nname = \"first\"\nplugin = \"fastpoetry\"\noptions = {{ port = {first}, iface = \"127.0.0.1\" }}\n\n[[service]]\nname = \"second\"\nplugin = \"fastpoetry\"\noptions = {{ port = {taken}, iface = \"127.0.0.1\" }}\n"
        ),
    )
    .unwrap();
    let mut host = start_host(&["-n", "-y", dir.join("app.toml").to_str().unwrap()]);
    let status = host.wait();
    assert_eq!(status.code(), Some(1), "{}", host.stdout());
    let message = format!("second failed to start: cannot listen on tcp:{taken}:interface=127.0.0.1: Address already in use (os error 98)");
    assert!(
        host.stderr().contains(&format!("host: {message}")),
        "{}",
        host.stderr()
    );
    host.wait_for_line("[-] Stopped first.");
    assert!(refused(first));
}

#[test]
fn on_failure_decides_whether_the_others_go_on() {
    let dir = TempDir::new("app-onfailure");
    let port = free_port();
    let write = |policy: &str| {
        std::fs::write(
            dir.join("app.toml"),
            format!(
                "[[service]]\nname = \"poetry\"\nplugin = \"fastpoetry\"\noptions = {{ port = {port}, iface = \"127.0.0.1\" }}\n\n[[service]]\nname = \"fragile\"\nplugin = \"faulty\"\non-failure = \"{policy}\"\noptions = {{ fail-in = \"running\" }}\n"
            ),
        )
        .unwrap();
    };
    write("log");
    let mut host = start_host(&["-n", "-y", dir.join("app.toml").to_str().unwrap()]);
    host.wait_for_line("[-] error: fragile failed: told to fail in running; the other services go on (on-failure = \"log\").");
    assert_eq!(fetch(port).len(), 3003);
    host.stop();

    write("stop-host");
    let mut host = start_host(&["-n", "-y", dir.join("app.toml").to_str().unwrap()]);
    let status = host.wait();
    assert_eq!(status.code(), Some(1));
    assert!(
        host.stderr()
            .contains("host: fragile failed: told to fail in running"),
        "{}",
        host.stderr()
    );
    assert!(refused(port));
}

#[test]
fn two_services_cannot_both_have_one_systemd_socket() {
    let dir = TempDir::new("app-systemd");
    std::fs::write(
        dir.join("app.toml"),
        "[[service]]\nname = \"a\"\nplugin = \"fastpoetry\"\noptions = { listen = \"systemd:index=0\" }\n\n[[service]]\nname = \"b\"\nplugin = \"faulty\"\noptions = { listen = \"systemd:index=0\" }\n",
    )
    .unwrap();
    let out = check(&dir.join("app.toml"));
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr
            .contains("9:22: service 'b' would listen on systemd socket 0, as service 'a' does"),
        "{}",
        out.stderr
    );
    // With one service, the socket systemd passes is adopted through the host's claim.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::fs::write(
        dir.join("one.toml"),
        "[[service]]\nname = \"a\"\nplugin = \"fastpoetry\"\noptions = { listen = \"systemd:index=0\" }\n",
    )
    .unwrap();
    let app = dir.join("one.toml");
    let mut command = host_e2e::socket_activated(
        &listener,
        &["--pidfile", "", "-n", "-y", app.to_str().unwrap()],
    );
    let mut host = Running::spawn(&mut command);
    drop(listener);
    host.wait_for_line(&format!("[a] fastpoetry starting on tcp:{port}"));
    assert_eq!(fetch(port).len(), 3003);
    host.stop();
}

#[test]
fn sighup_adds_removes_restarts_and_leaves_the_rest_untouched() {
    let dir = TempDir::new("app-hup");
    write_big_poem(dir.path());
    std::fs::copy(poem("science.txt"), dir.join("science.txt")).unwrap();
    let (kept, removed, changed, added) = (free_port(), free_port(), free_port(), free_port());
    let service = |name: &str, port: u16, poem: &str| {
        format!("[[service]]\nname = \"{name}\"\nplugin = \"fastpoetry\"\noptions = {{ port = {port}, iface = \"127.0.0.1\", poem = \"{poem}\" }}\n\n")
    };
    let app = dir.join("app.toml");
    std::fs::write(
        &app,
        [
            service("kept", kept, "big.txt"),
            service("removed", removed, "science.txt"),
            service("changed", changed, "science.txt"),
        ]
        .concat(),
    )
    .unwrap();
    let mut host = start_host(&["-n", "-y", app.to_str().unwrap()]);
    host.wait_for_line(&format!("[changed] fastpoetry starting on tcp:{changed}"));
    // A client of the unchanged service, in the middle of its poem.
    let mut reader = TcpStream::connect(("127.0.0.1", kept)).unwrap();
    reader.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut first = vec![0; 1000];
    reader.read_exact(&mut first).unwrap();

    std::fs::write(
        &app,
        [
            service("kept", kept, "big.txt"),
            service(
                "changed",
                changed,
                &poem("ecstasy.txt").display().to_string(),
            ),
            service("added", added, "science.txt"),
        ]
        .concat(),
    )
    .unwrap();
    host.signal(libc::SIGHUP);
    host.wait_for_line("Received SIGHUP, re-read");
    let summary = host.wait_for_line("Received SIGHUP, re-read");
    assert!(
        summary.ends_with("added added; removed removed; restarted changed; unchanged kept."),
        "{summary}"
    );
    assert!(refused(removed));
    assert_eq!(fetch(changed).len(), 3003, "restarted with the new poem");
    assert_eq!(fetch(added).len(), 653);
    // The unchanged service was not restarted: the same connection goes on to the end.
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert_eq!(first.len() + rest.len(), BIG_POEM_BYTES);
    assert_eq!(
        host.stdout()
            .matches("[kept] fastpoetry starting on")
            .count(),
        1
    );

    // A broken file changes nothing.
    std::fs::write(
        &app,
        "[[service]]\nplugin = \"fastpoetry\"\noptions = { port = \"x\" }\n",
    )
    .unwrap();
    host.signal(libc::SIGHUP);
    host.wait_for_line("has 1 problem; nothing changed.");
    assert!(host.stdout().contains("error: "), "{}", host.stdout());
    assert_eq!(fetch(added).len(), 653);
    assert_eq!(fetch(kept).len(), BIG_POEM_BYTES);
    host.stop();
}

#[test]
fn a_plugin_on_the_command_line_joins_the_file_services() {
    let dir = TempDir::new("app-cli");
    let (from_file, from_cli) = (free_port(), free_port());
    std::fs::write(
        dir.join("app.toml"),
        format!("[[service]]\nname = \"filed\"\nplugin = \"fastpoetry\"\noptions = {{ port = {from_file}, iface = \"127.0.0.1\" }}\n"),
    )
    .unwrap();
    let app = dir.join("app.toml");
    let port = from_cli.to_string();
    let mut host = start_host(&[
        "-n",
        "-y",
        app.to_str().unwrap(),
        "fastpoetry",
        "--port",
        &port,
        "--iface",
        "127.0.0.1",
    ]);
    host.wait_for_line(&format!(
        "[fastpoetry] fastpoetry starting on tcp:{from_cli}"
    ));
    assert_eq!(fetch(from_file).len(), 3003);
    assert_eq!(fetch(from_cli).len(), 3003);
    host.stop();
    // The command line's service is checked with the file's: same port, same name.
    let out = run_host(&[
        "-y",
        app.to_str().unwrap(),
        "--check",
        "fastpoetry",
        "--port",
        &from_file.to_string(),
    ]);
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr.contains(&format!("the service on the command line: service 'fastpoetry' would listen on TCP port {from_file}, as service 'filed' does")), "{}", out.stderr);
}

#[test]
fn paths_in_the_file_are_relative_to_it_and_the_command_line_wins_over_host() {
    let dir = TempDir::new("app-paths");
    std::fs::copy(poem("science.txt"), dir.join("science.txt")).unwrap();
    let port = free_port();
    std::fs::write(
        dir.join("app.toml"),
        format!("[host]\nlogfile = \"from-file.log\"\npidfile = \"app.pid\"\nshutdown-timeout = 3\n\n[[service]]\nplugin = \"fastpoetry\"\noptions = {{ port = {port}, iface = \"127.0.0.1\", poem = \"science.txt\" }}\n"),
    )
    .unwrap();
    let app = dir.join("app.toml");
    // As a daemon, started from another directory: the pid file and log land beside the file.
    let out = run_host(&["-y", app.to_str().unwrap()]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(fetch(port).len(), 653, "the poem beside the file");
    let pid: i32 = std::fs::read_to_string(dir.join("app.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    host_e2e::send_signal(pid, libc::SIGTERM).unwrap();
    let until = Instant::now() + PATIENCE;
    while dir.join("app.pid").exists() {
        assert!(Instant::now() < until, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = std::fs::read_to_string(dir.join("from-file.log")).unwrap();
    assert!(log.contains("loaded a poem from"), "{log}");

    // The command line wins: its log file, not the file's.
    let elsewhere = TempDir::new("app-paths-cli");
    let cli_log = elsewhere.join("cli.log");
    let mut host = Running::start(&[
        "--logfile",
        cli_log.to_str().unwrap(),
        "--pidfile",
        "",
        "-n",
        "-y",
        app.to_str().unwrap(),
    ]);
    let until = Instant::now() + PATIENCE;
    while !std::fs::read_to_string(&cli_log)
        .unwrap_or_default()
        .contains("starting on")
    {
        assert!(
            Instant::now() < until,
            "nothing logged to the command line's log file"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    host.stop();
}

#[test]
fn with_uid_every_service_runs_as_that_user() {
    if !host_e2e::is_root() {
        eprintln!("skipped: needs root to switch users");
        return;
    }
    let dir = TempDir::new("app-uid");
    let (a, b) = (free_port(), free_port());
    std::fs::write(
        dir.join("app.toml"),
        format!("[host]\nuid = \"nobody\"\n\n[[service]]\nname = \"a\"\nplugin = \"fastpoetry\"\noptions = {{ port = {a}, iface = \"127.0.0.1\" }}\n\n[[service]]\nname = \"b\"\nplugin = \"fastpoetry\"\noptions = {{ port = {b}, iface = \"127.0.0.1\" }}\n"),
    )
    .unwrap();
    let mut host = start_host(&["-n", "-y", dir.join("app.toml").to_str().unwrap()]);
    host.wait_for_line("Switched to uid");
    assert_eq!(fetch(a).len(), 3003);
    assert_eq!(fetch(b).len(), 3003);
    let status = std::fs::read_to_string(format!("/proc/{}/status", host.pid())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid.split_whitespace().skip(1).all(|id| id == "65534"),
        "{uid}"
    );
    host.stop();
}

/// The lines of `--check`'s stderr about the file (not the fixture directory's broken plugins).
fn problems(out: &host_e2e::Finished) -> Vec<&str> {
    out.stderr
        .lines()
        .filter(|l| !l.starts_with("host: warning: skipped"))
        .collect()
}

#[test]
fn check_judges_sockets_by_the_options_a_plugin_listens_on() {
    let dir = TempDir::new("app-sockets");
    std::fs::create_dir(dir.join("sub")).unwrap();
    // portforward listens on `port` (a string: a number or an endpoint); `dest_port` is where
    // it connects, and two services may well connect to one place.
    let (a, b, shared) = (free_port(), free_port(), free_port());
    std::fs::write(
        dir.join("forwards.toml"),
        format!("[[service]]\nname = \"pf1\"\nplugin = \"portforward\"\noptions = {{ port = \"tcp:{a}\" }}\n\n[[service]]\nname = \"pf2\"\nplugin = \"portforward\"\noptions = {{ port = [\"{b}\", \"unix:pf.sock\"] }}\n"),
    )
    .unwrap();
    let out = check(&dir.join("forwards.toml"));
    assert_eq!(out.code(), Some(0), "{out:?}");

    std::fs::write(
        dir.join("clash.toml"),
        format!(
            r#"[[service]]
name = "pf"
plugin = "portforward"
options = {{ port = ["tcp:{shared}:interface=127.0.0.1", "unix:pf.sock"] }}

[[service]]
name = "poetry"
plugin = "fastpoetry"
options = {{ port = {shared} }}

[[service]]
name = "dot"
plugin = "fastpoetry"
options = {{ listen = ["unix:./pf.sock", "unix:sub/../x.sock"] }}

[[service]]
name = "x"
plugin = "fastpoetry"
options = {{ listen = "unix:x.sock" }}

[[service]]
name = "bad"
plugin = "fastpoetry"
options = {{ port = 70000 }}

[[service]]
name = "default"
plugin = "fastpoetry"

[[service]]
name = "-"
plugin = "fastpoetry"
options = {{ port = 0 }}
"#
        ),
    )
    .unwrap();
    let out = check(&dir.join("clash.toml"));
    assert_eq!(out.code(), Some(2), "{out:?}");
    let file = dir.join("clash.toml").display().to_string();
    let socket = |name: &str| dir.join(name).display().to_string();
    assert_eq!(
        problems(&out),
        [
            format!("{file}:9:20: service 'poetry' would listen on TCP port {shared}, as service 'pf' does"),
            format!("{file}:14:22: service 'dot' would listen on Unix socket {}, as service 'pf' does", socket("pf.sock")),
            format!("{file}:19:22: service 'x' would listen on Unix socket {}, as service 'dot' does", socket("x.sock")),
            // The bad port is reported once: its default does not clash with 'default' too.
            format!("{file}:24:20: invalid value for option 'port': '70000' is not a port number (0 to 65535)"),
            format!("{file}:31:8: invalid service name '-': use up to 64 letters, digits, '-', '_' and '.', not starting with '-'"),
            format!("host: {file}: 5 problems; nothing was run"),
        ]
    );
}

#[test]
fn sighup_runs_the_check_on_a_relative_file_after_rundir_and_refuses_an_empty_one() {
    let dir = TempDir::new("app-hup-relative");
    let rundir = TempDir::new("app-hup-rundir");
    std::fs::create_dir(dir.join("conf")).unwrap();
    let (first, added) = (free_port(), free_port());
    let service = |name: &str, port: u16| {
        format!("[[service]]\nname = \"{name}\"\nplugin = \"fastpoetry\"\noptions = {{ port = {port}, iface = \"127.0.0.1\", poem = \"../science.txt\" }}\n\n")
    };
    std::fs::copy(poem("science.txt"), dir.join("science.txt")).unwrap();
    let app = dir.join("conf/app.toml");
    std::fs::write(&app, service("first", first)).unwrap();
    let plugins = fixture_dir();
    let mut command = host_e2e::host_command(&[
        "--pidfile",
        "",
        "--plugin-dir",
        plugins.to_str().unwrap(),
        "--rundir",
        rundir.path().to_str().unwrap(),
        "-n",
        "-y",
        "conf/app.toml",
    ]);
    command.current_dir(dir.path());
    let mut host = Running::spawn(&mut command);
    host.wait_for_line(&format!("[first] fastpoetry starting on tcp:{first}"));

    // Read again from where it was, whatever the run directory.
    std::fs::write(
        &app,
        [service("first", first), service("added", added)].concat(),
    )
    .unwrap();
    host.signal(libc::SIGHUP);
    let summary = host.wait_for_line("Received SIGHUP, re-read");
    assert!(
        summary.ends_with("added added; removed none; restarted none; unchanged first."),
        "{summary}"
    );
    assert_eq!(fetch(added).len(), 653);

    // A file that --check refuses changes nothing on SIGHUP either.
    for (index, empty) in ["", "# every service is gone\n[host]\n"]
        .into_iter()
        .enumerate()
    {
        std::fs::write(&app, empty).unwrap();
        let out = check(&app);
        assert_eq!(out.code(), Some(2), "{out:?}");
        let refusal = format!(
            "{}: declares no service (add a [[service]] table) and no plugin was named",
            app.display()
        );
        assert_eq!(problems(&out)[0], refusal);
        host.signal(libc::SIGHUP);
        let until = Instant::now() + PATIENCE;
        while host
            .stdout()
            .matches("has 1 problem; nothing changed.")
            .count()
            <= index
        {
            assert!(Instant::now() < until, "no refusal:\n{}", host.stdout());
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(host.stdout().contains(&format!("error: {refusal}")));
        assert_eq!(fetch(first).len(), 653);
        assert_eq!(fetch(added).len(), 653);
    }
    host.stop();
}

#[test]
fn with_chroot_the_host_says_at_start_that_sighup_cannot_read_the_file_again() {
    if !host_e2e::is_root() {
        eprintln!("skipped: needs root to chroot");
        return;
    }
    let dir = TempDir::new("app-chroot");
    let root = TempDir::new("app-chroot-root");
    let port = free_port();
    std::fs::write(
        dir.join("app.toml"),
        format!("[[service]]\nname = \"poetry\"\nplugin = \"fastpoetry\"\noptions = {{ port = {port}, iface = \"127.0.0.1\" }}\n"),
    )
    .unwrap();
    let app = dir.join("app.toml");
    let mut host = start_host(&[
        "--chroot",
        root.path().to_str().unwrap(),
        "-n",
        "-y",
        app.to_str().unwrap(),
    ]);
    host.wait_for_line(&format!(
        "warning: With --chroot {}, SIGHUP cannot read {} again: it only reloads the services; restart host to apply a changed file.",
        root.path().display(),
        app.display()
    ));
    host.wait_for_line("Changed root to");
    host.signal(libc::SIGHUP);
    host.wait_for_line("Received SIGHUP, reloaded poetry.");
    assert_eq!(fetch(port).len(), 3003);
    host.stop();
}

#[test]
fn a_systemd_socket_follows_its_service_through_a_restart_and_a_rename() {
    let dir = TempDir::new("app-systemd-hup");
    std::fs::copy(poem("science.txt"), dir.join("science.txt")).unwrap();
    let app = dir.join("app.toml");
    let write = |name: &str, poem: &str| {
        std::fs::write(
            &app,
            format!("[[service]]\nname = \"{name}\"\nplugin = \"fastpoetry\"\noptions = {{ listen = \"systemd:index=0\", poem = \"{poem}\" }}\n"),
        )
        .unwrap();
    };
    write("s0", "science.txt");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut command = host_e2e::socket_activated(
        &listener,
        &["--pidfile", "", "-n", "-y", app.to_str().unwrap()],
    );
    let mut host = Running::spawn(&mut command);
    drop(listener);
    host.wait_for_line(&format!("[s0] fastpoetry starting on tcp:{port}"));
    assert_eq!(fetch(port).len(), 653);

    write("s0", &poem("ecstasy.txt").display().to_string());
    host.signal(libc::SIGHUP);
    let summary = host.wait_for_line("Received SIGHUP, re-read");
    assert!(
        summary.ends_with("restarted s0; unchanged none."),
        "{summary}"
    );
    assert_eq!(fetch(port).len(), 3003, "restarted on the same socket");

    write("s1", "science.txt");
    host.signal(libc::SIGHUP);
    host.wait_for_line(&format!("[s1] fastpoetry starting on tcp:{port}"));
    assert_eq!(fetch(port).len(), 653, "renamed, on the same socket");
    assert!(!host.stdout().contains("already used"), "{}", host.stdout());
    host.stop();
}

#[test]
fn a_stuck_reload_is_named_and_later_sighups_go_on_without_it() {
    let dir = TempDir::new("app-stuck");
    let (poetry, added) = (free_port(), free_port());
    let app = dir.join("app.toml");
    let stuck = "[[service]]\nname = \"stuck\"\nplugin = \"faulty\"\noptions = { hang-in-reload = true }\n\n";
    let service = |name: &str, port: u16| {
        format!("[[service]]\nname = \"{name}\"\nplugin = \"fastpoetry\"\noptions = {{ port = {port}, iface = \"127.0.0.1\" }}\n\n")
    };
    std::fs::write(
        &app,
        [stuck.to_string(), service("poetry", poetry)].concat(),
    )
    .unwrap();
    let mut host = start_host(&[
        "--shutdown-timeout",
        "0.5",
        "-n",
        "-y",
        app.to_str().unwrap(),
    ]);
    host.wait_for_line("[stuck] faulty started");
    host.signal(libc::SIGHUP);
    host.wait_for_line("[stuck] reloading, and never finishing");
    host.wait_for_line(
        "[-] warning: A reload of stuck is still running after 2s; SIGHUP goes on without it.",
    );
    host.wait_for_line("Received SIGHUP, re-read");

    // The next SIGHUP applies the file, leaving the stuck service alone.
    std::fs::write(
        &app,
        [
            stuck.to_string(),
            service("poetry", poetry),
            service("added", added),
        ]
        .concat(),
    )
    .unwrap();
    host.signal(libc::SIGHUP);
    host.wait_for_line(
        "[-] warning: Received SIGHUP, but the last reload of stuck has not returned; not reloaded again.",
    );
    let summary = host.wait_for_line("added added;");
    assert!(summary.ends_with("unchanged stuck, poetry."), "{summary}");
    assert_eq!(fetch(added).len(), 3003);

    // Stopping it would wait for the reload: a file without it changes nothing.
    std::fs::write(&app, service("poetry", poetry)).unwrap();
    host.signal(libc::SIGHUP);
    host.wait_for_line(
        "Received SIGHUP, but stuck would stop, and its last reload has not returned; nothing changed.",
    );
    assert_eq!(fetch(added).len(), 3003);

    host.signal(libc::SIGTERM);
    let status = host.wait();
    assert_eq!(status.code(), Some(1));
    assert!(
        host.stderr().contains(
            "host: could not stop: a reload of stuck was still running after 2.5s; exiting"
        ),
        "{}",
        host.stderr()
    );
}

#[test]
fn a_service_that_panics_while_running_has_failed() {
    let dir = TempDir::new("app-panic");
    let port = free_port();
    std::fs::write(
        dir.join("app.toml"),
        format!("[[service]]\nname = \"poetry\"\nplugin = \"fastpoetry\"\noptions = {{ port = {port}, iface = \"127.0.0.1\" }}\n\n[[service]]\nname = \"fragile\"\nplugin = \"faulty\"\noptions = {{ panic-in = \"running\" }}\n"),
    )
    .unwrap();
    let mut host = start_host(&["-n", "-y", dir.join("app.toml").to_str().unwrap()]);
    assert_eq!(host.wait().code(), Some(1), "{}", host.stdout());
    assert!(
        host.stderr()
            .contains("host: fragile failed: panicked: told to panic in running"),
        "{}",
        host.stderr()
    );
    assert!(refused(port));

    // One plugin, no file: the same.
    let mut host = start_host(&["-n", "faulty", "--panic-in", "running"]);
    assert_eq!(host.wait().code(), Some(1), "{}", host.stdout());
    assert!(
        host.stderr()
            .contains("host: faulty failed: panicked: told to panic in running"),
        "{}",
        host.stderr()
    );
}

#[test]
fn a_stop_signal_during_the_start_starts_nothing_more_and_waits_at_most_the_shutdown_timeout() {
    let dir = TempDir::new("app-slow");
    let port = free_port();
    let app = dir.join("app.toml");
    let write = |slow_ms: u32| {
        std::fs::write(
            &app,
            format!("[[service]]\nname = \"slow\"\nplugin = \"faulty\"\noptions = {{ slow-start = {slow_ms} }}\n\n[[service]]\nname = \"poetry\"\nplugin = \"fastpoetry\"\noptions = {{ port = {port}, iface = \"127.0.0.1\" }}\n"),
        )
        .unwrap();
    };
    write(2000);
    let mut host = start_host(&["-n", "-y", app.to_str().unwrap()]);
    host.wait_for_line(&format!("[poetry] fastpoetry starting on tcp:{port}"));
    // Bound; now well into the slow start, which logs nothing before it ends.
    std::thread::sleep(Duration::from_millis(500));
    host.signal(libc::SIGTERM);
    host.wait_for_line(
        "[-] Received SIGTERM while starting: the services not yet started will not start.",
    );
    assert_eq!(host.wait().code(), Some(0), "{}", host.stdout());
    let log = host.stdout();
    let (before, after) = log.split_once("[slow] faulty started").unwrap();
    assert!(!before.contains("Stopped poetry."), "{log}");
    assert!(after.contains("[-] Stopped poetry."), "{log}");
    assert!(refused(port));

    // A start that never ends is waited for as long as a stop may take.
    write(60_000);
    let mut host = start_host(&[
        "--shutdown-timeout",
        "0.5",
        "-n",
        "-y",
        app.to_str().unwrap(),
    ]);
    host.wait_for_line(&format!("[poetry] fastpoetry starting on tcp:{port}"));
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    host.signal(libc::SIGTERM);
    let status = host
        .wait_within(Duration::from_secs(10))
        .expect("gives up on the start");
    assert_eq!(status.code(), Some(1));
    assert!(
        signalled.elapsed() < Duration::from_secs(6),
        "{:?}",
        signalled.elapsed()
    );
    assert!(
        host.stderr()
            .contains("host: could not stop: slow was still starting after 2.5s; exiting"),
        "{}",
        host.stderr()
    );
    assert!(refused(port));
}

#[test]
fn sighup_restarts_a_service_whose_library_was_installed_anew() {
    // A new build installed as package managers do (renamed into place: a new inode) is a
    // change: the service starts again from the new file, which the process then maps.
    let dir = TempDir::new("app-new-library");
    let plugins = dir.join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let library = plugins.join("libfastpoetry.so");
    let built = host_e2e::host_bin()
        .parent()
        .unwrap()
        .join("libfastpoetry.so");
    std::fs::copy(&built, &library).unwrap();
    let port = free_port();
    let app = dir.join("app.toml");
    std::fs::write(
        &app,
        format!("[[service]]\nplugin = \"fastpoetry\"\noptions = {{ port = {port}, iface = \"127.0.0.1\" }}\n"),
    )
    .unwrap();
    let poem_path = poem("science.txt");
    let mut host = start_host(&[
        "-n",
        "--plugin-dir",
        plugins.to_str().unwrap(),
        "-y",
        app.to_str().unwrap(),
    ]);
    host.wait_for_line(&format!("fastpoetry starting on tcp:{port}"));
    let inode =
        |path: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap());
    let mapped = |ino: u64| {
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", host.pid())).unwrap();
        maps.lines().any(|l| {
            l.ends_with("libfastpoetry.so") && l.split_whitespace().nth(4) == Some(&ino.to_string())
        })
    };
    let old = inode(&library);
    assert!(mapped(old));
    let poem = fetch(port);

    let beside = plugins.join("libfastpoetry.so.new");
    std::fs::copy(&built, &beside).unwrap();
    std::fs::rename(&beside, &library).unwrap();
    let new = inode(&library);
    assert_ne!(old, new);
    host.signal(libc::SIGHUP);
    let summary = host.wait_for_line("Received SIGHUP, re-read");
    assert!(
        summary.ends_with("restarted fastpoetry; unchanged none."),
        "{summary}"
    );
    assert!(mapped(new), "the new library is loaded");
    assert_eq!(fetch(port), poem, "and serves");
    // Loading it kept one descriptor open (its name); services made again from the same file
    // reuse it rather than opening another each time.
    let descriptors = || {
        std::fs::read_dir(format!("/proc/{}/fd", host.pid()))
            .unwrap()
            .filter_map(|fd| std::fs::read_link(fd.unwrap().path()).ok())
            .filter(|target| target.ends_with("libfastpoetry.so"))
            .count()
    };
    assert_eq!(descriptors(), 1);
    std::fs::write(&app, format!("[[service]]\nplugin = \"fastpoetry\"\noptions = {{ port = {port}, iface = \"127.0.0.1\", poem = {:?} }}\n", poem_path.display().to_string())).unwrap();
    host.signal(libc::SIGHUP);
    let until = Instant::now() + PATIENCE;
    while host.stdout().matches("restarted fastpoetry").count() < 2 {
        assert!(
            Instant::now() < until,
            "no second restart:\n{}",
            host.stdout()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(fetch(port), std::fs::read(&poem_path).unwrap());
    assert_eq!(descriptors(), 1, "no descriptor more for the same file");
    host.stop();
}

/// Whether `port` refuses connections within `limit`.
fn refused_within(port: u16, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while !refused(port) {
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn a_stop_signal_during_a_reread_stops_the_running_services_at_once() {
    let dir = TempDir::new("app-hup-term");
    let port = free_port();
    let app = dir.join("app.toml");
    let poetry = format!("[[service]]\nname = \"poetry\"\nplugin = \"fastpoetry\"\noptions = {{ port = {port}, iface = \"127.0.0.1\" }}\n\n");
    std::fs::write(&app, &poetry).unwrap();
    let mut host = start_host(&[
        "--shutdown-timeout",
        "0.5",
        "-n",
        "-y",
        app.to_str().unwrap(),
    ]);
    host.wait_for_line(&format!("[poetry] fastpoetry starting on tcp:{port}"));
    std::fs::write(
        &app,
        format!("{poetry}[[service]]\nname = \"slow\"\nplugin = \"faulty\"\noptions = {{ slow-start = 50000 }}\n"),
    )
    .unwrap();
    host.signal(libc::SIGHUP);
    // Well into the slow start, which logs nothing before it ends.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(fetch(port).len(), 3003);
    let signalled = Instant::now();
    host.signal(libc::SIGTERM);
    assert!(
        refused_within(port, Duration::from_secs(1)),
        "{}",
        host.stdout()
    );
    let status = host
        .wait_within(Duration::from_secs(10))
        .expect("gives up on the start");
    assert_eq!(status.code(), Some(1));
    assert!(signalled.elapsed() < Duration::from_secs(6));
    assert!(
        host.stderr()
            .contains("host: could not stop: slow was still starting after 2.5s; exiting"),
        "{}",
        host.stderr()
    );
}

#[test]
fn a_stuck_reload_does_not_hold_up_the_other_services_stop() {
    let dir = TempDir::new("app-stuck-last");
    let port = free_port();
    let app = dir.join("app.toml");
    std::fs::write(
        &app,
        format!("[[service]]\nname = \"a\"\nplugin = \"fastpoetry\"\noptions = {{ port = {port}, iface = \"127.0.0.1\" }}\n\n[[service]]\nname = \"stuck\"\nplugin = \"faulty\"\noptions = {{ hang-in-reload = true }}\n"),
    )
    .unwrap();
    let mut host = start_host(&[
        "--shutdown-timeout",
        "0.5",
        "-n",
        "-y",
        app.to_str().unwrap(),
    ]);
    host.wait_for_line("[stuck] faulty started");
    host.signal(libc::SIGHUP);
    host.wait_for_line("[stuck] reloading, and never finishing");
    host.wait_for_line("Received SIGHUP, re-read");
    host.signal(libc::SIGTERM);
    assert!(
        refused_within(port, Duration::from_secs(1)),
        "{}",
        host.stdout()
    );
    let status = host
        .wait_within(Duration::from_secs(10))
        .expect("gives up on the stuck one");
    assert_eq!(status.code(), Some(1));
    assert!(
        host.stderr().contains(
            "host: could not stop: a reload of stuck was still running after 2.5s; exiting"
        ),
        "{}",
        host.stderr()
    );
}

#[test]
fn a_changed_service_its_plugin_refuses_goes_on_serving_as_before() {
    let dir = TempDir::new("app-hup-refused");
    let port = free_port();
    let app = dir.join("app.toml");
    let write = |poem: &str| {
        std::fs::write(
            &app,
            format!("[[service]]\nname = \"poetry\"\nplugin = \"fastpoetry\"\noptions = {{ port = {port}, iface = \"127.0.0.1\", poem = \"{poem}\" }}\n"),
        )
        .unwrap();
    };
    write(&poem("ecstasy.txt").display().to_string());
    let mut host = start_host(&["-n", "-y", app.to_str().unwrap()]);
    host.wait_for_line(&format!("[poetry] fastpoetry starting on tcp:{port}"));
    write("/nonexistent");
    assert_eq!(check(&app).code(), Some(0), "only the plugin can tell");
    host.signal(libc::SIGHUP);
    host.wait_for_line("it goes on running as before.");
    let summary = host.wait_for_line("Received SIGHUP, re-read");
    assert!(summary.ends_with("failed to start poetry."), "{summary}");
    assert_eq!(fetch(port).len(), 3003);
    host.stop();
}

#[test]
fn check_tells_other_addresses_on_one_port_from_one_socket_listened_on_twice() {
    let dir = TempDir::new("app-check-addresses");
    let app = dir.join("app.toml");
    std::fs::write(
        &app,
        "[[service]]\nname = \"a\"\nplugin = \"fastpoetry\"\noptions = { port = 18010, iface = \"127.0.0.1\" }\n[[service]]\nname = \"b\"\nplugin = \"fastpoetry\"\noptions = { port = 18010, iface = \"127.0.0.2\" }\n[[service]]\nname = \"c\"\nplugin = \"fastpoetry\"\noptions = { listen = [\"tcp:18020\", \"tcp:18020:interface=0.0.0.0\"] }\n",
    )
    .unwrap();
    let out = check(&app);
    assert_eq!(out.code(), Some(2));
    assert_eq!(
        problems(&out),
        [
            format!(
                "{}:12:22: service 'c' would listen on TCP port 18020 twice",
                app.display()
            ),
            format!("host: {}: 1 problem; nothing was run", app.display())
        ]
    );
}

#[test]
fn a_failed_start_lets_the_services_already_running_finish_their_connections() {
    // What a worker of a new generation that fails does too: the clients its first services
    // took keep their connections while those services drain.
    let dir = TempDir::new("app-fail-drain");
    write_big_poem(dir.path());
    let port = free_port();
    std::fs::write(
        dir.join("app.toml"),
        format!("[[service]]\nname = \"poems\"\nplugin = \"fastpoetry\"\noptions = {{ port = {port}, iface = \"127.0.0.1\", poem = \"big.txt\" }}\n\n[[service]]\nname = \"late\"\nplugin = \"faulty\"\noptions = {{ slow-start = \"1500\", fail-in = \"start\" }}\n"),
    )
    .unwrap();
    let mut host = start_host(&[
        "-n",
        "--shutdown-timeout",
        "20",
        "-y",
        dir.join("app.toml").to_str().unwrap(),
    ]);
    host.wait_for_line("[poems] fastpoetry starting on");
    let mut reader = TcpStream::connect(("127.0.0.1", port)).unwrap();
    reader.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut first = vec![0; 1000];
    reader.read_exact(&mut first).unwrap();
    // The second service fails meanwhile, and the host stops.
    host.wait_for_line("Stopped late.");
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert_eq!(
        first.len() + rest.len(),
        BIG_POEM_BYTES,
        "the poem in flight was cut"
    );
    assert_eq!(host.wait().code(), Some(1));
}

#[test]
fn check_sees_the_admin_endpoint_on_a_services_port() {
    let dir = TempDir::new("app-admin-clash");
    let port = free_port();
    let file = dir.join("app.toml");
    std::fs::write(
        &file,
        format!("[host]\nadmin = \"tcp:{port}:interface=127.0.0.1\"\n\n[[service]]\nname = \"verse\"\nplugin = \"fastpoetry\"\noptions = {{ port = {port}, iface = \"127.0.0.1\" }}\n"),
    )
    .unwrap();
    let out = check(&file);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains(&format!("app.toml:2:9: the admin endpoint would listen on TCP port {port}, as service 'verse' does")),
        "{out:?}"
    );
}
