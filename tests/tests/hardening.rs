//! Issue 9, tried as an attacker would: special files where the host reads and writes, symlinks
//! where it writes, signals while a reload is stuck, a huge `--log-keep`, a library patched in
//! place, and control characters from clients. Each was a hang, a memory blow-up, a write
//! through a symlink or a forged log line; each must now be a clean, quick outcome.

use host_e2e::{
    fetch, fixture_dir, host_command, is_root, poem, run, Finished, Running, TempDir, PATIENCE,
};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// How long a refusal may take. Each of these used to hang for good or eat gigabytes.
const QUICK: Duration = Duration::from_secs(2);

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::S_IRWXU).unwrap();
}

/// `host ARGS` run to completion in `dir`, with the user cache inside it; and how long it took.
fn run_in(dir: &Path, args: &[&str]) -> (Finished, Duration) {
    let mut command = host_command(args);
    command
        .current_dir(dir)
        .env("XDG_CACHE_HOME", dir.join("user-cache"));
    let started = Instant::now();
    let out = run(command);
    (out, started.elapsed())
}

/// Checks that `out` is a quick exit 1 whose whole stderr is `expected`.
fn refused(out: &Finished, took: Duration, expected: &str) {
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert_eq!(out.stderr.trim_end(), expected, "{out:?}");
    assert!(took < QUICK, "took {took:?}: {out:?}");
}

fn text(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let until = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn port_in_log(log: &Path) -> u16 {
    let mut port = None;
    wait_until("the log names the port", || {
        port = text(log).lines().find_map(|l| {
            let rest = l.split("starting on tcp:").nth(1)?;
            rest.split(':').next()?.parse().ok()
        });
        port.is_some()
    });
    port.unwrap()
}

/// Copies the `traced` fixture into `dir` as `libNAME.so`, dated a minute ago so the cache
/// trusts it at once.
fn install_traced(dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(format!("lib{name}.so"));
    std::fs::copy(fixture_dir().join("libtraced.so"), &to).unwrap();
    let file = std::fs::File::options().write(true).open(&to).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(60))
        .unwrap();
    to
}

#[test]
fn a_device_fifo_or_symlink_as_pid_file_is_refused_at_once() {
    let dir = TempDir::new("pid-special");
    let fifo = dir.join("fifo.pid");
    mkfifo(&fifo);
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let link = dir.join("link.pid");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let mut cases = vec![
        (
            PathBuf::from("/dev/zero"),
            "a character device, not a regular file",
        ),
        (fifo.clone(), "a FIFO, not a regular file"),
        (link, "a symbolic link, which is not written through"),
    ];
    if is_root() {
        // The issue's own device: /dev/full's numbers, made here.
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        let device = dir.join("device.pid");
        mknod(&device, SFlag::S_IFCHR, Mode::S_IRUSR, makedev(1, 7)).unwrap();
        cases.push((device, "a character device, not a regular file"));
    }
    for (pid_file, what) in &cases {
        let pid_file = pid_file.to_str().unwrap();
        let expected = format!("host: cannot open the pid file {pid_file}: it is {what}");
        let (out, took) = run_in(
            dir.path(),
            &["--pidfile", pid_file, "-n", "fastpoetry", "--port", "0"],
        );
        refused(&out, took, &expected);
        // As a daemon the pid file is taken after the fork: the status pipe carries the error.
        let (out, took) = run_in(
            dir.path(),
            &["--pidfile", pid_file, "fastpoetry", "--port", "0"],
        );
        refused(&out, took, &expected);
    }
    assert_eq!(text(&victim), "precious\n");
}

#[test]
fn a_special_or_huge_dropin_cache_is_rebuilt_with_one_warning() {
    for case in ["fifo", "dev-zero", "huge"] {
        let dir = TempDir::new(&format!("cache-{case}"));
        let plugins = dir.join("plugins");
        std::fs::create_dir(&plugins).unwrap();
        install_traced(&plugins, "traced_c");
        let cache = plugins.join("dropin.cache");
        let what = match case {
            "fifo" => {
                mkfifo(&cache);
                "it is a FIFO, not a regular file".to_string()
            }
            "dev-zero" => {
                std::os::unix::fs::symlink("/dev/zero", &cache).unwrap();
                "it is a character device, not a regular file".to_string()
            }
            _ => {
                // Sparse: 64 MiB and one byte of zeros, past the cap.
                let file = std::fs::File::create(&cache).unwrap();
                file.set_len((64 << 20) + 1).unwrap();
                "it is larger than the limit of 64 MiB".to_string()
            }
        };
        let args = ["--plugin-dir", plugins.to_str().unwrap()];
        let (out, took) = run_in(dir.path(), &args);
        assert_eq!(out.code(), Some(0), "{case}: {out:?}");
        assert!(took < QUICK, "{case}: took {took:?}");
        assert!(out.stdout.contains("traced_c"), "{case}: {}", out.stdout);
        assert_eq!(
            out.stderr.trim_end(),
            format!(
                "host: warning: cannot read the plugin cache {}: {what}; rebuilding it",
                cache.display()
            ),
            "{case}"
        );
        let meta = std::fs::symlink_metadata(&cache).unwrap();
        assert!(meta.is_file(), "{case}: the cache was rebuilt as a file");
        let (again, _) = run_in(dir.path(), &args);
        assert_eq!(
            (again.code(), again.stderr.as_str()),
            (Some(0), ""),
            "{case}"
        );
    }
}

#[test]
fn no_name_the_cache_writer_could_use_is_written_through() {
    let dir = TempDir::new("cache-symlinks");
    let plugins = dir.join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    install_traced(&plugins, "traced_s");
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let plant = |name: &str| std::os::unix::fs::symlink(&victim, plugins.join(name)).unwrap();
    plant("dropin.cache");
    // The temporary names host used to write, for every process id the next run could get.
    let last_pid: u32 = text(Path::new("/proc/sys/kernel/ns_last_pid"))
        .trim()
        .parse()
        .unwrap();
    for pid in last_pid + 1..last_pid + 2000 {
        plant(&format!(".dropin.cache.{pid}.0.tmp"));
    }
    let (out, _) = run_in(dir.path(), &["--plugin-dir", plugins.to_str().unwrap()]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(text(&victim), "precious\n", "the target is untouched");
    let cache = plugins.join("dropin.cache");
    assert!(std::fs::symlink_metadata(&cache).unwrap().is_file());
    let parsed: serde_json::Value = serde_json::from_str(&text(&cache)).unwrap();
    assert!(parsed["entries"]["libtraced_s.so"].is_object(), "{parsed}");
    let leftovers = std::fs::read_dir(&plugins)
        .unwrap()
        .filter(|e| {
            let meta = e.as_ref().unwrap().metadata().unwrap();
            meta.is_file() && e.as_ref().unwrap().file_name() != "dropin.cache"
        })
        .count();
    assert_eq!(leftovers, 1, "only the library and the cache are files");
}

#[test]
fn a_special_or_oversized_poem_is_a_one_line_error() {
    let dir = TempDir::new("poem-special");
    let fifo = dir.join("fifo.txt");
    mkfifo(&fifo);
    let zero_link = dir.join("zero.txt");
    std::os::unix::fs::symlink("/dev/zero", &zero_link).unwrap();
    let eleven = dir.join("eleven.txt");
    std::fs::write(&eleven, "eleven byte").unwrap();
    let cases = [
        (fifo, "10", "it is a FIFO, not a regular file"),
        (
            PathBuf::from("/dev/zero"),
            "10",
            "it is a character device, not a regular file",
        ),
        (
            zero_link,
            "10",
            "it is a character device, not a regular file",
        ),
        (
            eleven,
            "10",
            "it is larger than the limit of 10 bytes (--max-size)",
        ),
    ];
    for (path, max_size, what) in &cases {
        let path = path.to_str().unwrap();
        let expected = format!("host: fastpoetry: cannot read the poem {path}: {what}");
        let poem_args = [
            "fastpoetry",
            "--port",
            "0",
            "--poem",
            path,
            "--max-size",
            max_size,
        ];
        let foreground: Vec<&str> = ["--pidfile", "", "-n"]
            .into_iter()
            .chain(poem_args)
            .collect();
        let (out, took) = run_in(dir.path(), &foreground);
        refused(&out, took, &expected);
        let (out, took) = run_in(dir.path(), &poem_args);
        refused(&out, took, &expected);
    }
    let (out, _) = run_in(dir.path(), &["fastpoetry", "--help"]);
    assert!(
        out.stdout.contains("--max-size <N>") && out.stdout.contains("[default: 67108864]"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_fifo_device_or_symlink_as_log_file_is_refused_with_a_hint() {
    let dir = TempDir::new("log-special");
    let fifo = dir.join("fifo.log");
    mkfifo(&fifo);
    let cases = [
        (fifo.to_str().unwrap(), "a FIFO, not a regular file"),
        ("/dev/zero", "a character device, not a regular file"),
        (
            "/dev/stdout",
            "a symbolic link, which is not written through",
        ),
    ];
    for (log, what) in cases {
        let (out, took) = run_in(
            dir.path(),
            &[
                "--logfile",
                log,
                "--pidfile",
                "",
                "-n",
                "fastpoetry",
                "--port",
                "0",
            ],
        );
        refused(
            &out,
            took,
            &format!(
                "host: cannot open the log file {log}: it is {what}; to log to stdout, use --logfile -"
            ),
        );
    }
}

#[test]
fn sigusr1_never_reopens_the_log_onto_a_fifo_or_through_a_symlink() {
    let dir = TempDir::new("reopen-special");
    let log = dir.join("host.log");
    let moved = dir.join("moved.log");
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let science = poem("science.txt");
    let mut command = host_command(&[
        "--logfile",
        log.to_str().unwrap(),
        "--pidfile",
        "",
        "-n",
        "fastpoetry",
        "--port",
        "0",
        "--poem",
        science.to_str().unwrap(),
    ]);
    let mut host = Running::spawn(&mut command);
    let port = port_in_log(&log);
    std::fs::rename(&log, &moved).unwrap();
    let refusal = |what: &str| {
        format!(
            "error: Received SIGUSR1, but cannot reopen the log file {}: it is {what}",
            log.display()
        )
    };
    // A FIFO with no reader (open would block without O_NONBLOCK), then with one.
    mkfifo(&log);
    for reader in [false, true] {
        let _reader = reader.then(|| {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::File::options()
                .read(true)
                .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
                .open(&log)
                .unwrap()
        });
        let before = text(&moved).matches("a FIFO").count();
        host.signal(libc::SIGUSR1);
        wait_until("the reopen is refused", || {
            text(&moved)
                .matches(&refusal("a FIFO, not a regular file"))
                .count()
                > before
        });
        assert_eq!(fetch(port).len(), 653, "still serving");
    }
    std::fs::remove_file(&log).unwrap();
    std::os::unix::fs::symlink(&victim, &log).unwrap();
    host.signal(libc::SIGUSR1);
    wait_until("the reopen is refused", || {
        text(&moved).contains(&refusal("a symbolic link, which is not written through"))
    });
    assert_eq!(fetch(port).len(), 653);
    wait_until("the connection is logged", || {
        text(&moved).matches("sending 653 bytes").count() == 3
    });
    assert_eq!(
        text(&victim),
        "precious\n",
        "nothing was written through the link"
    );
    std::fs::remove_file(&log).unwrap();
    host.signal(libc::SIGUSR1);
    wait_until("the log is reopened", || {
        text(&log).contains("Received SIGUSR1, reopened the log file.")
    });
    host.stop();
}

#[test]
fn sighup_with_a_fifo_or_endless_poem_then_sigterm_exits_0_at_once() {
    let dir = TempDir::new("reload-special");
    let poem_file = dir.join("poem.txt");
    std::fs::write(&poem_file, "the first poem\n").unwrap();
    let mut host = host_e2e::serve_poem(&["--pidfile", ""], &poem_file);
    let port = host.port();
    let refusal = |what: &str| {
        format!(
            "[-] error: Received SIGHUP, but fastpoetry could not reload: cannot read the poem {}: it is {what}",
            poem_file.display()
        )
    };
    std::fs::remove_file(&poem_file).unwrap();
    mkfifo(&poem_file);
    host.signal(libc::SIGHUP);
    host.wait_for_line(&refusal("a FIFO, not a regular file"));
    std::fs::remove_file(&poem_file).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &poem_file).unwrap();
    host.signal(libc::SIGHUP);
    host.wait_for_line(&refusal("a character device, not a regular file"));
    assert_eq!(fetch(port), b"the first poem\n", "the old poem stays");
    let stopping = Instant::now();
    host.stop();
    assert!(stopping.elapsed() < QUICK, "took {:?}", stopping.elapsed());
}

/// `host -n faulty --hang-in-reload`, sent SIGHUP until its reload is stuck for good.
fn stuck_in_reload(shutdown_timeout: &str) -> Running {
    let fixtures = fixture_dir();
    let host = Running::start(&[
        "--plugin-dir",
        fixtures.to_str().unwrap(),
        "--pidfile",
        "",
        "--shutdown-timeout",
        shutdown_timeout,
        "-n",
        "faulty",
        "--hang-in-reload",
    ]);
    host.wait_for_line("[faulty] faulty started");
    host.signal(libc::SIGHUP);
    host.wait_for_line("[faulty] reloading, and never finishing");
    host
}

#[test]
fn a_stuck_reload_never_holds_up_the_signals() {
    let mut host = stuck_in_reload("0.5");
    host.signal(libc::SIGHUP);
    host.wait_for_line(
        "[-] Received SIGHUP during a reload of faulty; it runs again once that one ends.",
    );
    host.wait_for_line(
        "[-] warning: A reload of faulty is still running after 2s; SIGHUP goes on without it.",
    );
    host.wait_for_line(
        "[-] warning: Received SIGHUP, but the last reload of faulty has not returned; not reloaded again.",
    );
    let signalled = Instant::now();
    host.signal(libc::SIGTERM);
    host.wait_for_line("[-] Received SIGTERM, shutting down.");
    assert!(signalled.elapsed() < QUICK, "the shutdown starts at once");
    let status = host
        .wait_within(Duration::from_secs(10))
        .expect("gives up on the reload");
    assert_eq!(status.code(), Some(1));
    let message = "could not stop: a reload of faulty was still running after 2.5s; exiting";
    assert!(host.stdout().contains(&format!("[-] error: {message}")));
    assert_eq!(
        host.stderr().lines().last(),
        Some(format!("host: {message}").as_str())
    );

    let mut host = stuck_in_reload("60");
    host.signal(libc::SIGTERM);
    host.wait_for_line("[-] Received SIGTERM, shutting down.");
    let signalled = Instant::now();
    host.signal(libc::SIGTERM);
    let status = host
        .wait_within(QUICK)
        .expect("a second signal exits at once");
    assert_eq!(status.code(), Some(1));
    assert!(signalled.elapsed() < QUICK);
    assert!(host
        .stdout()
        .contains("[-] warning: Received SIGTERM again, exiting immediately."));
}

/// Every `sending 653 bytes` line in `dir`'s log files, checking each line is whole.
fn logged_poems(dir: &Path) -> usize {
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.starts_with("host.log") {
            continue;
        }
        let log = text(&dir.join(&name));
        assert!(
            log.is_empty() || log.ends_with('\n'),
            "{name} ends mid-line"
        );
        count += log
            .matches("[fastpoetry] sending 653 bytes of poetry to")
            .count();
    }
    count
}

#[test]
fn log_keep_is_capped_and_rotation_at_the_cap_keeps_normal_speed() {
    let out = host_e2e::run_host(&["--log-keep", "100000", "-n", "fastpoetry"]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains("100000 is more than the 1000 rotated files host keeps"),
        "{}",
        out.stderr
    );

    let dir = TempDir::new("rotate-keep");
    let science = poem("science.txt");
    let mut command = host_command(&[
        "--logfile",
        "host.log",
        "--log-rotate-size",
        "3000",
        "--log-keep",
        "1000",
        "--pidfile",
        "",
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
    let started = Instant::now();
    let workers: Vec<_> = (0..8)
        .map(|w| {
            std::thread::spawn(move || {
                for _ in (w..1000).step_by(8) {
                    assert_eq!(fetch(port).len(), 653);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    wait_until("every line is logged", || logged_poems(dir.path()) == 1000);
    let took = started.elapsed();
    host.stop();
    // 1,000 connections took 19 s with --log-keep 100000 before; a few hundred ms is normal.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(dir.join("host.log.20").exists(), "rotated about 28 times");
}

/// Replaces the one occurrence of `from` in `bytes` with `to`, of the same length.
fn patch(bytes: &mut [u8], from: &str, to: &str) {
    assert_eq!(from.len(), to.len());
    let at: Vec<usize> = bytes
        .windows(from.len())
        .enumerate()
        .filter(|(_, w)| *w == from.as_bytes())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "{from:?} occurs once");
    bytes[at[0]..at[0] + to.len()].copy_from_slice(to.as_bytes());
}

#[test]
fn a_library_patched_in_place_with_the_same_stat_tuple_is_believed_at_run_time() {
    use std::os::unix::fs::MetadataExt;
    let dir = TempDir::new("patched");
    let plugins = dir.join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let library = install_traced(&plugins, "traced_p");
    let listing = || {
        let (out, _) = run_in(dir.path(), &["--plugin-dir", plugins.to_str().unwrap()]);
        assert_eq!(out.code(), Some(0), "{out:?}");
        out.stdout
    };
    assert!(listing().contains("Leaves a trace when loaded (a test fixture)."));

    // Patched in place (same inode, same size), then dated back to the nanosecond.
    let before = std::fs::metadata(&library).unwrap();
    let mut bytes = std::fs::read(&library).unwrap();
    patch(&mut bytes, "when loaded (a test", "when LOADED (a test");
    patch(&mut bytes, "traced started", "traced patched");
    let mut file = std::fs::File::options().write(true).open(&library).unwrap();
    file.write_all(&bytes).unwrap();
    file.set_modified(before.modified().unwrap()).unwrap();
    drop(file);
    let after = std::fs::metadata(&library).unwrap();
    let tuple = |m: &std::fs::Metadata| (m.size(), m.mtime(), m.mtime_nsec(), m.dev(), m.ino());
    assert_eq!(tuple(&before), tuple(&after), "the same stat tuple");
    assert!(
        listing().contains("when loaded (a test"),
        "the cache still trusts the old description"
    );

    let mut command = host_command(&[
        "--plugin-dir",
        plugins.to_str().unwrap(),
        "--pidfile",
        "",
        "-n",
        "traced_p",
    ]);
    command.env("XDG_CACHE_HOME", dir.join("user-cache"));
    let mut host = Running::spawn(&mut command);
    host.wait_for_line(&format!(
        "[-] warning: the library {} changed without its file times changing; using what it says now (its entry in {} was refreshed)",
        library.display(),
        plugins.join("dropin.cache").display()
    ));
    // The live option list won: its default greeting is the patched one.
    host.wait_for_line("[traced_p] traced patched");
    host.stop();
    assert_eq!(
        host.stdout()
            .matches("changed without its file times")
            .count(),
        1
    );
    assert!(listing().contains("Leaves a trace when LOADED (a test fixture)."));
}

#[test]
fn an_ftp_user_name_with_escape_codes_is_logged_escaped() {
    let dir = TempDir::new("ftp-escape");
    let mut host = Running::start(&[
        "--pidfile",
        "",
        "-n",
        "ftp",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--root",
        dir.path().to_str().unwrap(),
    ]);
    let stream = TcpStream::connect(("127.0.0.1", host.port())).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut replies = BufReader::new(stream.try_clone().unwrap());
    let mut reply = || {
        let mut line = String::new();
        replies.read_line(&mut line).unwrap();
        line
    };
    assert!(reply().starts_with("220"));
    let mut writer = stream;
    // ESC[2J clears a terminal, CSI (U+009B) starts a sequence on some, backspace and DEL
    // rub out what came before. (LF ends a command, so a newline inside a message is the next
    // test's.)
    writer
        .write_all("USER eve\x1b[2Jroot\x7f\u{9b}\x08\r\n".as_bytes())
        .unwrap();
    assert!(reply().starts_with("331"));
    writer.write_all(b"PASS nothing\r\n").unwrap();
    assert!(reply().starts_with("530"));
    host.wait_for_line(
        "[ftp] warning: failed login for 'eve\\x1b[2Jroot\\x7f\\u{9b}\\x08' from 127.0.0.1",
    );
    host.stop();
    let log = host.stdout();
    assert!(!log.contains(['\x1b', '\x7f', '\u{9b}', '\x08']), "{log:?}");
}

#[test]
fn a_plugin_cannot_forge_a_log_line_with_a_newline_in_text_or_json() {
    let fixtures = fixture_dir();
    let greeting = "hi\n2026-01-01T00:00:00+0000 [-] Server Shut Down.\x1b[2J\u{9b}";
    for format in ["text", "json"] {
        let mut host = Running::start(&[
            "--plugin-dir",
            fixtures.to_str().unwrap(),
            "--log-format",
            format,
            "--pidfile",
            "",
            "-n",
            "traced",
            "--greeting",
            greeting,
        ]);
        host.wait_for_line(match format {
            "text" => "hi\\n2026",
            _ => "hi\\\\n2026",
        });
        host.stop();
        let log = host.stdout();
        assert!(!log.contains(['\x1b', '\u{9b}']), "{log:?}");
        let escaped = "hi\\n2026-01-01T00:00:00+0000 [-] Server Shut Down.\\x1b[2J\\u{9b}";
        match format {
            "text" => assert!(log.contains(&format!("[traced] {escaped}\n")), "{log}"),
            _ => assert!(log.lines().any(|line| {
                let object: serde_json::Value = serde_json::from_str(line).unwrap();
                object["system"] == "traced" && object["message"] == escaped
            })),
        }
        assert!(
            !log.lines()
                .any(|l| l.starts_with("2026-01-01T00:00:00+0000")),
            "a forged line: {log}"
        );
    }
}

#[test]
fn a_fifo_as_the_ftp_password_file_or_certificate_is_refused_at_once() {
    let dir = TempDir::new("ftp-fifo");
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let fifo = fifo.to_str().unwrap();
    for option in ["--password-file", "--tls-cert"] {
        let mut args = vec![
            "--pidfile",
            "",
            "-n",
            "ftp",
            "--port",
            "0",
            "--root",
            dir.path().to_str().unwrap(),
        ];
        args.extend([option, fifo]);
        if option == "--tls-cert" {
            args.extend(["--tls-key", fifo]);
        }
        let (out, took) = run_in(dir.path(), &args);
        let expected = format!("host: ftp: {option} {fifo}: it is a FIFO, not a regular file");
        refused(&out, took, &expected);
    }
}

#[test]
fn plugin_logs_are_never_written_through_a_symlink_or_waited_on() {
    let dir = TempDir::new("plugin-logs");
    let www = dir.join("www");
    std::fs::create_dir(&www).unwrap();
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let link = dir.join("link.log");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let fifo = dir.join("fifo.log");
    mkfifo(&fifo);
    let www = www.to_str().unwrap();
    for (path, what) in [
        (&link, "a symbolic link, which is not written through"),
        (&fifo, "a FIFO, not a regular file"),
    ] {
        let path = path.to_str().unwrap();
        let web = ["web", "--path", www, "--port", "0", "--access-log", path];
        let socks = ["socks", "--listen", "tcp:0:interface=127.0.0.1", "-l", path];
        for (plugin, log) in [(&web[..], "access log"), (&socks[..], "connection log")] {
            let mut args = vec!["--pidfile", "", "-n"];
            args.extend(plugin);
            let (out, took) = run_in(dir.path(), &args);
            assert_eq!(out.code(), Some(1), "{out:?}");
            let stderr = out.stderr.trim_end();
            assert!(!stderr.contains('\n'), "one line: {out:?}");
            assert!(
                stderr.contains(&format!("cannot open the {log} {path}: it is {what}")),
                "{out:?}"
            );
            assert!(took < QUICK, "took {took:?}: {out:?}");
        }
    }
    assert_eq!(text(&victim), "precious\n");

    // SIGHUP reopens the access log: a FIFO put there meanwhile is refused, not waited on,
    // and the signals after it still work.
    let log = dir.join("access.log");
    let mut host = Running::start(&[
        "--pidfile",
        "",
        "-n",
        "web",
        "--path",
        www,
        "--port",
        "0",
        "--access-log",
        log.to_str().unwrap(),
    ]);
    host.port();
    std::fs::remove_file(&log).unwrap();
    mkfifo(&log);
    host.signal(libc::SIGHUP);
    host.wait_for_line("it is a FIFO, not a regular file");
    let stopped = Instant::now();
    host.stop();
    assert!(stopped.elapsed() < QUICK, "{:?}", stopped.elapsed());
}

#[test]
fn an_ssl_key_or_certificate_that_is_a_fifo_is_refused_at_once() {
    // Read with one open, checked with fstat: a FIFO put in place of a key cannot hang the host,
    // however it is timed against a check.
    let dir = TempDir::new("ssl-fifo");
    let fifo = dir.join("key.pem");
    mkfifo(&fifo);
    let fifo = fifo.to_str().unwrap();
    let listen = format!("ssl:0:interface=127.0.0.1:privateKey={fifo}:certKey={fifo}");
    let (out, took) = run_in(
        dir.path(),
        &["--pidfile", "", "-n", "fastpoetry", "--listen", &listen],
    );
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("{fifo}: it is a FIFO, not a regular file"))
            && !out.stderr.trim_end().contains('\n'),
        "{out:?}"
    );
    assert!(took < QUICK, "took {took:?}: {out:?}");
}
