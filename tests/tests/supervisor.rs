//! Supervisor mode (`--workers N`): a master that holds the sockets and workers that run the
//! plugins. A client hammers a fastpoetry service through upgrades (with the library and the
//! executable replaced on disk), a SIGKILLed worker and a changed application file, and counts
//! every refused connection and every short poem; a plugin that segfaults takes only its worker;
//! a new generation that cannot start leaves the old one serving; and the master's pid file,
//! daemon mode, `--uid`, log and admin endpoint cover every worker.

use host_e2e::scrape::{get, parse_metrics, wait_for_status};
use host_e2e::{
    fetch, fixture_dir, free_port, host_bin, is_root, poem, run_host, send_signal, write_big_poem,
    Running, TempDir, BIG_POEM_BYTES, PATIENCE,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The hammering clients: each connects, reads to EOF and checks the length, with a short pause
/// between connections, so a few threads make hundreds of connections a second.
const CLIENTS: usize = 4;

/// The longest a hammer runs, whatever the test does.
const HAMMER_LIMIT: Duration = Duration::from_secs(120);

/// What the hammering clients saw.
#[derive(Debug, Default)]
struct Tally {
    /// Whole poems, by which of the expected lengths they had.
    whole: Vec<u64>,
    /// Connections refused (or failing to connect at all).
    refused: u64,
    /// Connections that ended before a whole poem, or with a length not expected.
    short: u64,
}

struct Hammer {
    stop: Arc<AtomicBool>,
    whole: Arc<AtomicU64>,
    threads: Vec<JoinHandle<Tally>>,
}

impl Hammer {
    /// Starts [`CLIENTS`] clients of 127.0.0.1:`port`, each poem having one of `lengths`.
    fn start(port: u16, lengths: &[usize]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let whole = Arc::new(AtomicU64::new(0));
        let threads = (0..CLIENTS)
            .map(|_| {
                let (stop, whole, lengths) = (stop.clone(), whole.clone(), lengths.to_vec());
                std::thread::spawn(move || {
                    let mut tally = Tally {
                        whole: vec![0; lengths.len()],
                        ..Tally::default()
                    };
                    let began = Instant::now();
                    while !stop.load(Ordering::Relaxed) && began.elapsed() < HAMMER_LIMIT {
                        match fetch_poem(port) {
                            Err(_) => tally.refused += 1,
                            Ok(len) => match lengths.iter().position(|l| *l == len) {
                                Some(which) => {
                                    tally.whole[which] += 1;
                                    whole.fetch_add(1, Ordering::Relaxed);
                                }
                                None => tally.short += 1,
                            },
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    tally
                })
            })
            .collect();
        Self {
            stop,
            whole,
            threads,
        }
    }

    /// Waits until the clients have had `more` whole poems beyond what they had so far.
    fn wait_for(&self, more: u64) {
        let target = self.whole.load(Ordering::Relaxed) + more;
        let until = Instant::now() + PATIENCE;
        while self.whole.load(Ordering::Relaxed) < target {
            assert!(
                Instant::now() < until,
                "the clients got no further than {} whole poems",
                self.whole.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the clients, and checks that none was refused and no poem was short.
    fn finish_clean(self) -> Tally {
        let tally = self.finish();
        println!("{tally:?}");
        assert_eq!((tally.refused, tally.short), (0, 0), "{tally:?}");
        tally
    }

    fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Tally::default();
        for thread in self.threads {
            let tally = thread.join().expect("a client thread");
            total.whole.resize(tally.whole.len(), 0);
            for (sum, n) in total.whole.iter_mut().zip(&tally.whole) {
                *sum += n;
            }
            total.refused += tally.refused;
            total.short += tally.short;
        }
        total
    }
}

/// One connection: how many bytes came before EOF; an error if it could not connect.
fn fetch_poem(port: u16) -> std::io::Result<usize> {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut received = Vec::new();
    // A reset or a timeout mid-poem counts as short, like an early EOF.
    let _ = stream.read_to_end(&mut received);
    Ok(received.len())
}

fn poem_len(path: &Path) -> usize {
    std::fs::metadata(path).unwrap().len() as usize
}

/// `(worker id, pid)` from the master's "Started worker N (pid P, generation G)." lines.
fn started_workers(host: &Running) -> Vec<(u32, i32)> {
    host.stdout()
        .lines()
        .filter_map(|line| {
            let rest = line.split("Started worker ").nth(1)?;
            let (id, rest) = rest.split_once(" (pid ")?;
            let (pid, _) = rest.split_once(',')?;
            Some((id.parse().ok()?, pid.parse().ok()?))
        })
        .collect()
}

fn pid_of_worker(host: &Running, id: u32) -> i32 {
    host.wait_for_line(&format!("Started worker {id} (pid"));
    started_workers(host)
        .into_iter()
        .find(|(worker, _)| *worker == id)
        .map(|(_, pid)| pid)
        .unwrap()
}

/// The inodes of the files named `path` that process `pid` has mapped.
fn mapped_inodes(pid: i32, path: &Path) -> Vec<u64> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let path = path.to_str().unwrap();
    let mut inodes: Vec<u64> = maps
        .lines()
        .filter(|line| line.ends_with(path))
        .map(|line| line.split_whitespace().nth(4).unwrap().parse().unwrap())
        .collect();
    inodes.dedup();
    inodes
}

/// Installs `from` at `to` as package managers do: a copy beside it, renamed over it, so a
/// process that has the old file mapped keeps it.
fn install(from: &Path, to: &Path) {
    let beside = to.with_extension("installing");
    std::fs::copy(from, &beside).unwrap();
    std::fs::rename(&beside, to).unwrap();
}

/// Another build of fastpoetry, as a new release would ship: the library with bytes appended
/// past the end of its ELF image. The loader ignores them, so it is the same plugin in a
/// file that differs in size, content and inode, which is all the upgrade can tell a new
/// build by; a second real build would cost CI half a gigabyte of disk for nothing more.
fn other_fastpoetry_build(dir: &TempDir) -> PathBuf {
    let mut bytes = std::fs::read(host_bin().parent().unwrap().join("libfastpoetry.so")).unwrap();
    bytes.extend_from_slice(b"\0release 2\0");
    let next = dir.join("libfastpoetry-next.so");
    std::fs::write(&next, bytes).unwrap();
    next
}

/// A directory holding a copy of `host` and of the fastpoetry library beside it, so that what
/// a new generation finds "beside the executable" is up to the test.
fn installation(dir: &TempDir) -> (PathBuf, PathBuf) {
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let (host, library) = (bin.join("host"), bin.join("libfastpoetry.so"));
    std::fs::copy(host_bin(), &host).unwrap();
    std::fs::copy(
        host_bin().parent().unwrap().join("libfastpoetry.so"),
        &library,
    )
    .unwrap();
    (host, library)
}

/// The installed `host` running fastpoetry with two workers, serving `poem` on a free port.
fn serve_installed(host: &Path, poem: &Path) -> Running {
    serve_installed_as(host, poem, &[])
}

/// [`serve_installed`], with more global options.
fn serve_installed_as(host: &Path, poem: &Path, global: &[&str]) -> Running {
    let mut command = Command::new(host);
    command.args(["--pidfile", "", "-n", "--workers", "2"]);
    command.args(global);
    command.args([
        "fastpoetry",
        "--port",
        "0",
        "--iface",
        "127.0.0.1",
        "--poem",
    ]);
    command.arg(poem);
    host_e2e::prepare(&mut command);
    Running::spawn(&mut command)
}

#[test]
fn an_upgrade_to_a_new_build_refuses_no_connection_and_maps_the_new_library() {
    let dir = TempDir::new("supervisor-upgrade");
    let (host, library) = installation(&dir);
    let next = other_fastpoetry_build(&dir);
    assert_ne!(
        std::fs::read(&next).unwrap(),
        std::fs::read(&library).unwrap(),
        "the second build must be a different file"
    );
    let poem = poem("ecstasy.txt");
    let mut server = serve_installed(&host, &poem);
    let port = server.port();
    server.wait_for_line("All 2 workers are ready.");
    let hammer = Hammer::start(port, &[poem_len(&poem)]);
    hammer.wait_for(100);

    // A new release: the plugin rebuilt, and host itself installed again.
    install(&next, &library);
    install(&host_bin(), &host);
    server.signal(libc::SIGUSR2);
    server.wait_for_line("Generation 2 is ready and serving (SIGUSR2)");
    server.wait_for_line("Worker 1 (generation 1) has stopped.");
    server.wait_for_line("Worker 2 (generation 1) has stopped.");
    hammer.wait_for(100);
    hammer.finish_clean();

    let (library_inode, host_inode) = (
        std::fs::metadata(&library).unwrap().ino(),
        std::fs::metadata(&host).unwrap().ino(),
    );
    for id in [3, 4] {
        let pid = pid_of_worker(&server, id);
        assert_eq!(
            mapped_inodes(pid, &library),
            [library_inode],
            "worker {id} maps the new library, and only it"
        );
        let exe = std::fs::metadata(format!("/proc/{pid}/exe")).unwrap();
        assert_eq!(exe.ino(), host_inode, "worker {id} runs the new executable");
    }
    server.stop();
}

#[test]
fn a_killed_worker_is_replaced_and_only_its_connections_fail() {
    let poem = poem("ecstasy.txt");
    let mut server = host_e2e::serve_poem(&["--pidfile", "", "--workers", "2"], &poem);
    let port = server.port();
    server.wait_for_line("All 2 workers are ready.");
    let hammer = Hammer::start(port, &[poem_len(&poem)]);
    hammer.wait_for(100);
    send_signal(pid_of_worker(&server, 1), libc::SIGKILL).unwrap();
    server.wait_for_line("was killed by signal 9 (SIGKILL); starting another.");
    server.wait_for_line("Worker 3 is ready.");
    hammer.wait_for(100);
    let tally = hammer.finish();
    println!("{tally:?}");
    // The master holds the socket: nothing is refused. Only the poems the killed worker was
    // sending can be cut, at most one per client.
    assert_eq!(tally.refused, 0, "{tally:?}");
    assert!(tally.short <= CLIENTS as u64, "{tally:?}");
    server.stop();
}

#[test]
fn a_plugin_that_segfaults_takes_only_its_worker() {
    let fixtures = fixture_dir();
    let mut server = Running::start(&[
        "--pidfile",
        "",
        "-n",
        "--workers",
        "2",
        "--plugin-dir",
        fixtures.to_str().unwrap(),
        "faulty",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--crash-on",
        "segfault",
    ]);
    let port = server.port();
    server.wait_for_line("All 2 workers are ready.");
    let greet = |word: &str| -> Vec<u8> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.write_all(format!("{word}\n").as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        answer
    };
    assert_eq!(greet("hello"), b"faulty\n");
    greet("segfault");
    let line = server.wait_for_line("(SIGSEGV)");
    assert!(line.contains("starting another"), "{line}");
    // The other worker serves meanwhile, and the master starts a third.
    for _ in 0..20 {
        assert_eq!(greet("hello"), b"faulty\n");
    }
    server.wait_for_line("Worker 3 is ready.");
    assert_eq!(greet("hello"), b"faulty\n");
    server.stop();
}

#[test]
fn a_new_generation_that_cannot_start_leaves_the_old_one_serving() {
    let dir = TempDir::new("supervisor-failed-upgrade");
    let (host, library) = installation(&dir);
    let good = std::fs::read(&library).unwrap();
    let poem = poem("ecstasy.txt");
    let mut server = serve_installed(&host, &poem);
    let port = server.port();
    server.wait_for_line("All 2 workers are ready.");
    let hammer = Hammer::start(port, &[poem_len(&poem)]);
    hammer.wait_for(50);

    // A botched install: a library cut short after its first page.
    let cut = dir.join("cut.so");
    std::fs::write(&cut, &good[..4096]).unwrap();
    install(&cut, &library);
    server.signal(libc::SIGUSR2);
    let failed = server.wait_for_line("the upgrade (SIGUSR2) failed");
    assert!(failed.contains("no plugin named 'fastpoetry'"), "{failed}");
    assert!(failed.contains("generation 1 goes on serving"), "{failed}");
    hammer.wait_for(50);

    // Put right, the next upgrade goes through.
    let whole = dir.join("whole.so");
    std::fs::write(&whole, &good).unwrap();
    install(&whole, &library);
    server.signal(libc::SIGUSR2);
    server.wait_for_line("Generation 3 is ready and serving (SIGUSR2)");
    hammer.wait_for(50);
    hammer.finish_clean();
    server.stop();
}

#[test]
fn sighup_restarts_a_changed_service_with_no_gap_and_keeps_it_on_failure() {
    let dir = TempDir::new("supervisor-sighup");
    let port = free_port();
    let (first, second) = (poem("ecstasy.txt"), poem("science.txt"));
    let file = dir.join("app.toml");
    let declare = |poem: &Path, extra: &str| {
        declare_verse(
            &file,
            &format!("port = {port}, iface = \"127.0.0.1\""),
            poem,
            extra,
        );
    };
    declare(&first, "");
    let mut server = Running::start(&["--pidfile", "", "-n", "-y", file.to_str().unwrap()]);
    server.wait_for_line("All 2 workers are ready.");
    let hammer = Hammer::start(port, &[poem_len(&first), poem_len(&second)]);
    hammer.wait_for(50);

    // A second service on a port that is taken: the new generation cannot start.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    declare(
        &second,
        &format!("\n[[service]]\nname = \"more\"\nplugin = \"fastpoetry\"\noptions = {{ port = {taken_port}, iface = \"127.0.0.1\" }}\n"),
    );
    server.signal(libc::SIGHUP);
    let failed = server.wait_for_line("the upgrade (SIGHUP) failed");
    assert!(failed.contains("generation 1 goes on serving"), "{failed}");
    hammer.wait_for(50);
    assert_eq!(fetch(port).len(), poem_len(&first), "still the first poem");

    declare(&second, "");
    // The number of workers is the master's, and changes only with it.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("workers = 2", "workers = 3")).unwrap();
    server.signal(libc::SIGHUP);
    server.wait_for_line(
        "sets workers = 3, which applies when host is started again; 2 workers go on.",
    );
    server.wait_for_line("is ready and serving (SIGHUP)");
    server.wait_for_line("Worker 2 (generation 1) has stopped.");
    server.wait_for_line("Worker 1 (generation 1) has stopped.");
    hammer.wait_for(50);
    let tally = hammer.finish_clean();
    assert!(tally.whole[1] > 0, "the new poem was served: {tally:?}");
    assert_eq!(
        fetch(port).len(),
        poem_len(&second),
        "only the new poem now"
    );
    server.stop();
}

#[test]
fn sigterm_to_every_process_lets_a_slow_transfer_finish_then_exits_0() {
    let dir = TempDir::new("supervisor-drain");
    let big = write_big_poem(dir.path());
    let mut server = host_e2e::serve_poem(
        &[
            "--pidfile",
            "",
            "--workers",
            "2",
            "--shutdown-timeout",
            "60",
        ],
        &big,
    );
    let port = server.port();
    server.wait_for_line("All 2 workers are ready.");
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut first = vec![0u8; 1 << 20];
    client.read_exact(&mut first).unwrap();
    // SIGTERM to every process of the host at once, as systemd's default KillMode does: the
    // workers hear it from it and again from the master, and still drain.
    server.signal(libc::SIGTERM);
    for (_, worker) in started_workers(&server) {
        send_signal(worker, libc::SIGTERM).unwrap();
    }
    server.wait_for_line("Received SIGTERM, shutting down: the workers drain");
    // The client takes its time; the worker waits for it.
    std::thread::sleep(Duration::from_secs(1));
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert_eq!(first.len() + rest.len(), BIG_POEM_BYTES);
    let status = server.wait();
    assert_eq!(status.code(), Some(0), "{}", server.stdout());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn logs_health_and_metrics_cover_every_worker() {
    let admin = free_port();
    let admin_endpoint = format!("tcp:{admin}:interface=127.0.0.1");
    let poem = poem("ecstasy.txt");
    let mut server = host_e2e::serve_poem(
        &[
            "--pidfile",
            "",
            "--workers",
            "2",
            "--admin",
            &admin_endpoint,
        ],
        &poem,
    );
    let port = server.port();
    assert_eq!(wait_for_status(admin, "/readyz", 200), "ready\n");
    assert_eq!(get(admin, "/healthz"), (200, "ok\n".to_string()));
    let connections = 400;
    let per_thread = connections / 8;
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..per_thread {
                    assert!(fetch_poem(port).is_ok());
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }

    let (status, text) = get(admin, "/metrics");
    assert_eq!(status, 200);
    let samples = parse_metrics(&text);
    let accepted: Vec<&String> = samples
        .iter()
        .filter(|s| s.starts_with("host_connections_accepted_total{"))
        .collect();
    let total: f64 = accepted
        .iter()
        .map(|s| s.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(total, connections as f64, "{accepted:?}");
    for worker in ["worker=\"1\"", "worker=\"2\""] {
        assert!(
            samples
                .iter()
                .any(|s| s.starts_with("process_resident_memory_bytes{") && s.contains(worker)),
            "each worker's process is reported: {worker}"
        );
    }
    assert!(
        accepted.iter().all(|s| s.contains("worker=\"")),
        "{accepted:?}"
    );

    // Every line whole: a timestamp, a [system] tag naming its worker or none, a message.
    server.stop();
    let out = server.stdout();
    let mut sent = 0;
    for line in out.lines() {
        let (stamp, rest) = line.split_once(' ').unwrap();
        assert_eq!(stamp.len(), 24, "torn line: {line:?}");
        assert!(rest.starts_with('['), "torn line: {line:?}");
        let (system, message) = rest[1..].split_once("] ").expect("a whole tag");
        assert!(!message.is_empty(), "{line:?}");
        if message.starts_with("sending ") {
            sent += 1;
            assert!(
                system.ends_with(" w1") || system.ends_with(" w2"),
                "which worker: {line:?}"
            );
        }
    }
    assert_eq!(sent, connections, "one line per connection");
}

#[test]
fn a_daemon_with_workers_names_its_master_and_drops_their_privileges() {
    if !is_root() {
        println!("skipped: --uid needs root");
        return;
    }
    let dir = TempDir::new("supervisor-daemon");
    // The run directory must be reachable by the user the workers become.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let port = free_port();
    let (pid_file, log) = (dir.join("host.pid"), dir.join("host.log"));
    let poem = poem("ecstasy.txt");
    let started = run_host(&[
        "--workers",
        "2",
        "--uid",
        "nobody",
        "--pidfile",
        pid_file.to_str().unwrap(),
        "--logfile",
        log.to_str().unwrap(),
        "fastpoetry",
        "--port",
        &port.to_string(),
        "--iface",
        "127.0.0.1",
        "--poem",
        poem.to_str().unwrap(),
    ]);
    assert_eq!(started.code(), Some(0), "{started:?}");
    let master: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(fetch(port).len(), poem_len(&poem));
    let uid_of = |pid: i32| -> u32 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let workers: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let after = stat.rsplit_once(')')?.1.to_string();
                    after.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(master)
        })
        .collect();
    assert_eq!(workers.len(), 2, "two workers under the master {master}");
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    assert_eq!(
        uid_of(master),
        0,
        "the master keeps root to bind for new workers"
    );
    for worker in &workers {
        assert_eq!(uid_of(*worker), nobody, "worker {worker} runs as nobody");
    }
    send_signal(master, libc::SIGTERM).unwrap();
    let until = Instant::now() + PATIENCE;
    // Gone, or a zombie where PID 1 does not reap.
    while std::fs::read_to_string(format!("/proc/{master}/stat"))
        .is_ok_and(|stat| !stat.rsplit_once(')').unwrap().1.starts_with(" Z"))
    {
        assert!(Instant::now() < until, "the master did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!pid_file.exists(), "the pid file is removed");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("[- w1] Log opened."), "{text}");
    assert!(text.contains("[- w2] Log opened."), "{text}");
    assert!(text.contains("w1] Server Shut Down."), "{text}");
    assert!(text.contains("w2] Server Shut Down."), "{text}");
    assert!(text.contains("[-] Server Shut Down."), "{text}");
}

#[test]
fn the_master_adopts_systemds_socket_for_its_workers() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut server = Running::spawn(&mut host_e2e::socket_activated(
        &listener,
        &[
            "--pidfile",
            "",
            "-n",
            "--workers",
            "2",
            "fastpoetry",
            "--listen",
            "systemd:domain=INET:index=0",
        ],
    ));
    drop(listener);
    server.wait_for_line("All 2 workers are ready.");
    server.wait_for_line("Listening on systemd:domain=INET:index=0 for the workers");
    for _ in 0..10 {
        assert_eq!(fetch(port).len(), 3003);
    }
    server.stop();
}

#[test]
fn a_plugin_older_than_1_2_is_refused_with_workers() {
    let fixtures = fixture_dir();
    let out = run_host(&[
        "--pidfile",
        "",
        "-n",
        "--workers",
        "2",
        "--plugin-dir",
        fixtures.to_str().unwrap(),
        "oldminor",
    ]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    // The fixtures' directory holds broken libraries too, whose warnings come first.
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("host: --workers needs plugins built against plugin-api 1.2 or later")
            && last.ends_with("was built against 1.0.0"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_worker_cannot_have_the_master_bind_once_it_has_given_up_privileges() {
    let fixtures = fixture_dir();
    let late = ["--listen-late", "tcp:0:interface=127.0.0.1"];
    let plugin = ["--plugin-dir", fixtures.to_str().unwrap(), "faulty"];
    // In one process, binding late is the plugin's own business: it binds as the user it is.
    let mut alone = Running::start(&[&["--pidfile", "", "-n"][..], &plugin, &late].concat());
    alone.wait_for_line("faulty bound tcp:");
    alone.stop();
    // A worker's master, root, binds nothing for it once it has said it is done binding.
    let out = run_host(
        &[
            &["--pidfile", "", "-n", "--workers", "1"][..],
            &plugin,
            &late,
        ]
        .concat(),
    );
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stdout
            .contains("sockets are bound before a worker gives up its privileges, not after"),
        "{}",
        out.stdout
    );
}

/// Whether process `pid` has ended: gone, or a zombie where nothing reaps it.
fn has_ended(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(')').unwrap().1.starts_with(" Z")
    })
}

/// Waits up to `limit` for process `pid` to end.
fn ends_within(pid: i32, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while !has_ended(pid) {
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn a_killed_worker_whose_child_holds_its_pipes_is_still_replaced() {
    let dir = TempDir::new("supervisor-grandchild");
    let (host, sleeps) = (dir.join("host"), dir.join("sleeps"));
    std::os::unix::fs::symlink(host_bin(), &host).unwrap();
    let mut server = serve_installed(&host, &poem("ecstasy.txt"));
    server.wait_for_line("All 2 workers are ready.");
    // A new release whose `host` is a wrapper that leaves a process behind, holding the new
    // worker's stdout, stderr and log pipes open.
    let wrapper = dir.join("wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nsleep 60 & echo $! >>{}\nexec {} \"$@\"\n",
            sleeps.display(),
            host_bin().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::rename(&wrapper, &host).unwrap();
    server.signal(libc::SIGUSR2);
    server.wait_for_line("Generation 2 is ready and serving (SIGUSR2)");
    send_signal(pid_of_worker(&server, 3), libc::SIGKILL).unwrap();
    server.wait_for_line("was killed by signal 9 (SIGKILL); starting another.");
    server.wait_for_line("Worker 5 is ready.");
    server.stop();
    let sleeps = std::fs::read_to_string(&sleeps).unwrap();
    assert_eq!(sleeps.lines().count(), 3, "every worker ran the wrapper");
    for pid in sleeps.lines() {
        let _ = send_signal(pid.parse().unwrap(), libc::SIGKILL);
    }
}

#[test]
fn workers_that_gave_up_root_die_with_a_killed_master() {
    if !is_root() {
        println!("skipped: --uid needs root");
        return;
    }
    let mut server = serve_installed_as(&host_bin(), &poem("ecstasy.txt"), &["--uid", "nobody"]);
    let port = server.port();
    server.wait_for_line("All 2 workers are ready.");
    let workers = [pid_of_worker(&server, 1), pid_of_worker(&server, 2)];
    server.signal(libc::SIGKILL);
    server.wait();
    for worker in workers {
        assert!(
            ends_within(worker, Duration::from_secs(3)),
            "worker {worker} outlived its master"
        );
    }
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free again");
}

/// One worker serving fastpoetry with `--shutdown-timeout shutdown_timeout`, SIGSTOPped, then
/// upgraded with SIGUSR2: the host, and the pid of the old worker that cannot stop by itself.
fn upgraded_past_a_stopped_worker(shutdown_timeout: &str) -> (Running, i32) {
    let server = host_e2e::serve_poem(
        &[
            "--pidfile",
            "",
            "--workers",
            "1",
            "--shutdown-timeout",
            shutdown_timeout,
        ],
        &poem("ecstasy.txt"),
    );
    server.wait_for_line("All 1 workers are ready.");
    let old = pid_of_worker(&server, 1);
    send_signal(old, libc::SIGSTOP).unwrap();
    server.signal(libc::SIGUSR2);
    server.wait_for_line("Generation 2 is ready and serving (SIGUSR2)");
    (server, old)
}

#[test]
fn a_retiring_worker_that_does_not_stop_is_killed_after_the_shutdown_timeout() {
    let (mut server, old) = upgraded_past_a_stopped_worker("1");
    // --shutdown-timeout 1 and 2 s of grace.
    assert!(
        ends_within(old, Duration::from_secs(6)),
        "the stopped worker lives on"
    );
    server.wait_for_line("did not stop within the shutdown timeout and 2s; killed.");
    server.wait_for_line("Worker 1 (generation 1) has stopped.");
    server.stop();
}

#[test]
fn an_upgrade_runs_the_host_the_symlink_names_now() {
    let dir = TempDir::new("supervisor-symlink");
    for release in ["v1", "v2"] {
        let bin = dir.join(release);
        std::fs::create_dir(&bin).unwrap();
        std::fs::copy(host_bin(), bin.join("host")).unwrap();
        let library = host_bin().parent().unwrap().join("libfastpoetry.so");
        std::fs::hard_link(&library, bin.join("libfastpoetry.so"))
            .or_else(|_| std::fs::copy(&library, bin.join("libfastpoetry.so")).map(drop))
            .unwrap();
    }
    let current = dir.join("current");
    std::os::unix::fs::symlink("v1", &current).unwrap();
    let mut server = serve_installed(&current.join("host"), &poem("ecstasy.txt"));
    server.wait_for_line("All 2 workers are ready.");
    // A release switched as deployment tools do: a new link renamed over the old one, and the
    // old release removed.
    let next = dir.join("current.next");
    std::os::unix::fs::symlink("v2", &next).unwrap();
    std::fs::rename(&next, &current).unwrap();
    std::fs::remove_dir_all(dir.join("v1")).unwrap();
    server.signal(libc::SIGUSR2);
    server.wait_for_line("Generation 2 is ready and serving (SIGUSR2)");
    let v2 = std::fs::metadata(dir.join("v2/host")).unwrap().ino();
    for id in [3, 4] {
        let exe = std::fs::metadata(format!("/proc/{}/exe", pid_of_worker(&server, id)));
        assert_eq!(exe.unwrap().ino(), v2, "worker {id} runs v2");
    }
    // With the release gone, the error names the path it could not run.
    std::fs::remove_file(&current).unwrap();
    server.signal(libc::SIGUSR2);
    let line = server.wait_for_line("the upgrade (SIGUSR2) failed");
    assert!(
        line.contains(&format!("({})", current.join("host").display())),
        "{line}"
    );
    server.stop();
}

#[test]
fn workers_that_crash_soon_after_they_are_ready_back_off() {
    let fixtures = fixture_dir();
    let mut server = Running::start(&[
        "--pidfile",
        "",
        "-n",
        "--workers",
        "1",
        "--plugin-dir",
        fixtures.to_str().unwrap(),
        "faulty",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--crash-on",
        "segfault",
    ]);
    let port = server.port();
    server.wait_for_line("All 1 workers are ready.");
    for next in 2..=4 {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(b"segfault\n").unwrap();
        let _ = stream.read_to_end(&mut Vec::new());
        if next < 4 {
            server.wait_for_line(&format!("Worker {next} is ready."));
        }
    }
    let line = server.wait_for_line("workers keep failing (3 times in a row)");
    assert!(line.contains("the next starts in 1.0 s"), "{line}");
    server.stop();
}

#[test]
fn sighup_right_after_sigusr2_reaches_the_new_workers_once_they_are_ready() {
    let mut server =
        host_e2e::serve_poem(&["--pidfile", "", "--workers", "2"], &poem("ecstasy.txt"));
    server.wait_for_line("All 2 workers are ready.");
    server.signal(libc::SIGUSR2);
    server.wait_for_line("starting generation 2");
    server.signal(libc::SIGHUP);
    server.wait_for_line("Generation 2 is ready and serving (SIGUSR2)");
    let until = Instant::now() + PATIENCE;
    let reloaded = |id: u32| {
        server
            .stdout()
            .lines()
            .any(|l| l.contains(&format!(" w{id}]")) && l.contains("Received SIGHUP"))
    };
    while !(reloaded(3) && reloaded(4)) {
        assert!(Instant::now() < until, "{}", server.stdout());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!server.stdout().contains("(SIGHUP)"), "{}", server.stdout());
    server.stop();
}

/// Writes an application file at `file` for two workers: a fastpoetry service `verse` of
/// `poem` with the options `listening` (TOML, e.g. `port = 80`), then `extra`.
fn declare_verse(file: &Path, listening: &str, poem: &Path, extra: &str) {
    std::fs::write(
        file,
        format!(
            "[host]\nworkers = 2\n\n[[service]]\nname = \"verse\"\nplugin = \"fastpoetry\"\noptions = {{ {listening}, poem = {:?} }}\n{extra}",
            poem.to_str().unwrap()
        ),
    )
    .unwrap();
}

/// Writes an application file at `file` with a fastpoetry service of `poem` on `port` and a
/// faulty service with `faulty`'s options, served by two workers.
fn declare_with_faulty(file: &Path, port: u16, poem: &Path, faulty: &str) {
    std::fs::write(
        file,
        format!(
            "[host]\nworkers = 2\n\n[[service]]\nname = \"verse\"\nplugin = \"fastpoetry\"\noptions = {{ port = {port}, iface = \"127.0.0.1\", poem = {:?} }}\n\n[[service]]\nname = \"odd\"\nplugin = \"faulty\"\noptions = {{ {faulty} }}\n",
            poem.to_str().unwrap()
        ),
    )
    .unwrap();
}

fn serve_declared(file: &Path, global: &[&str]) -> Running {
    let fixtures = fixture_dir();
    let mut args = vec![
        "--pidfile",
        "",
        "-n",
        "--plugin-dir",
        fixtures.to_str().unwrap(),
    ];
    args.extend(global);
    args.extend(["-y", file.to_str().unwrap()]);
    Running::start(&args)
}

#[test]
fn a_failed_new_generation_drains_the_connections_it_accepted() {
    let dir = TempDir::new("supervisor-failed-drain");
    let big = write_big_poem(dir.path());
    let port = free_port();
    let file = dir.join("app.toml");
    declare_with_faulty(&file, port, &big, "");
    let mut server = serve_declared(&file, &["--shutdown-timeout", "60"]);
    server.wait_for_line("All 2 workers are ready.");

    // The new generation's fastpoetry accepts while its faulty takes its time to start. Worker
    // 3 is held still, so the clients land on the others, and then dies: the upgrade fails,
    // and worker 4 is asked to go with connections of its own.
    declare_with_faulty(&file, port, &big, "slow-start = 5000");
    server.signal(libc::SIGHUP);
    server.wait_for_line("Started worker 4");
    let third = pid_of_worker(&server, 3);
    send_signal(third, libc::SIGSTOP).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let clients: Vec<TcpStream> = (0..12)
        .map(|_| {
            let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
            client.set_read_timeout(Some(PATIENCE)).unwrap();
            let mut first = vec![0u8; 1 << 20];
            client.read_exact(&mut first).unwrap();
            client
        })
        .collect();
    send_signal(third, libc::SIGKILL).unwrap();
    server.wait_for_line("the upgrade (SIGHUP) failed");
    for (n, mut client) in clients.into_iter().enumerate() {
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest);
        assert_eq!((1 << 20) + rest.len(), BIG_POEM_BYTES, "client {n} was cut");
    }
    server.wait_for_line("Worker 4 (generation 2) has stopped.");
    server.stop();
}

#[test]
fn a_sighup_while_a_generation_starts_is_queued_not_lost() {
    let dir = TempDir::new("supervisor-queued");
    let port = free_port();
    let (first, second) = (poem("ecstasy.txt"), poem("science.txt"));
    let file = dir.join("app.toml");
    declare_with_faulty(&file, port, &first, "slow-start = 3000");
    let mut server = serve_declared(&file, &[]);
    server.wait_for_line("All 2 workers are ready.");
    server.signal(libc::SIGUSR2);
    server.wait_for_line("starting generation 2");
    declare_with_faulty(&file, port, &second, "slow-start = 3000");
    std::thread::sleep(Duration::from_secs(1));
    server.signal(libc::SIGHUP);
    server.wait_for_line("Received SIGHUP while generation 2 is starting; queued");
    server.wait_for_line("Generation 2 is ready and serving (SIGUSR2)");
    server.wait_for_line("Generation 3 is ready and serving (SIGHUP)");
    server.wait_for_line("Worker 4 (generation 2) has stopped.");
    assert_eq!(fetch(port).len(), poem_len(&second));
    server.stop();
}

#[test]
fn a_second_upgrade_keeps_the_kill_deadline_of_retiring_workers() {
    let (mut server, old) = upgraded_past_a_stopped_worker("3");
    let retired = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    server.signal(libc::SIGUSR2);
    // --shutdown-timeout 3 and 2 s of grace from the first upgrade, checked each second; a
    // deadline reset by the second upgrade would be 3 s later.
    assert!(
        ends_within(
            old,
            Duration::from_secs(7).saturating_sub(retired.elapsed())
        ),
        "the stopped worker lives on"
    );
    server.stop();
}

#[test]
fn readyz_is_503_while_no_worker_is_ready() {
    let admin = free_port();
    let admin_endpoint = format!("tcp:{admin}:interface=127.0.0.1");
    let fixtures = fixture_dir();
    let mut server = Running::start(&[
        "--pidfile",
        "",
        "-n",
        "--workers",
        "1",
        "--admin",
        &admin_endpoint,
        "--plugin-dir",
        fixtures.to_str().unwrap(),
        "faulty",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--crash-on",
        "segfault",
        "--slow-start",
        "2000",
    ]);
    let port = server.port();
    server.wait_for_line("All 1 workers are ready.");
    assert_eq!(wait_for_status(admin, "/readyz", 200), "ready\n");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(b"segfault\n").unwrap();
    let _ = stream.read_to_end(&mut Vec::new());
    let why = wait_for_status(admin, "/readyz", 503);
    assert!(why.contains("no worker is ready"), "{why}");
    server.wait_for_line("Worker 2 is ready.");
    assert_eq!(wait_for_status(admin, "/readyz", 200), "ready\n");
    server.stop();
}

#[test]
fn a_respelled_endpoint_is_the_socket_the_workers_already_listen_on() {
    let dir = TempDir::new("supervisor-respelled");
    let port = free_port();
    let (first, second) = (poem("ecstasy.txt"), poem("science.txt"));
    let file = dir.join("app.toml");
    let declare = |listen: &str, poem: &Path| {
        declare_verse(&file, &format!("listen = \"{listen}\""), poem, "");
    };
    declare(&format!("tcp:{port}:interface=127.0.0.1"), &first);
    let mut server = Running::start(&["--pidfile", "", "-n", "-y", file.to_str().unwrap()]);
    server.wait_for_line("All 2 workers are ready.");
    // Another backlog and a name for the same address: the same socket, not a second bind.
    declare(
        &format!("tcp:{port}:interface=localhost:backlog=64"),
        &second,
    );
    server.signal(libc::SIGHUP);
    server.wait_for_line("is ready and serving (SIGHUP)");
    server.wait_for_line("Worker 1 (generation 1) has stopped.");
    server.wait_for_line("Worker 2 (generation 1) has stopped.");
    assert_eq!(fetch(port).len(), poem_len(&second));
    server.stop();
}
