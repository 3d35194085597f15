//! `dropin.cache` and probing in child processes, with real libraries: unchanged directories
//! load nothing, broken libraries are reported and cached, and the cache survives bad input,
//! concurrent writers and read-only directories.

use host_e2e::{fixture_dir, host_command, run, run_host, Finished, Running, TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// Copies a fixture into `dir` as `name`, dated a minute ago so that the cache trusts it at
/// once (a file modified within two seconds of a cache write is always probed again).
fn install(fixture: &str, dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(fixture_dir().join(fixture), &to).unwrap();
    age(&to, 60);
    to
}

fn age(path: &Path, seconds: u64) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(seconds))
        .unwrap();
}

/// A shared library whose constructor runs `body`, built from C with the system compiler.
fn c_library(dir: &Path, name: &str, body: &str) -> PathBuf {
    let source = dir.join(format!("{name}.c"));
    std::fs::write(
        &source,
        format!("#include <stdlib.h>\n#include <unistd.h>\n__attribute__((constructor)) static void init(void) {{ {body} }}\n"),
    )
    .unwrap();
    let library = dir.join(name);
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .unwrap();
    assert!(status.success(), "cc failed for {name}");
    std::fs::remove_file(source).unwrap();
    age(&library, 60);
    library
}

/// `host ARGS` with load tracing into `trace`.
fn traced_run(trace: &Path, args: &[&str]) -> Finished {
    let mut command = host_command(args);
    command.env("HOST_FIXTURE_LOAD_TRACE", trace);
    run(command)
}

fn loads(trace: &Path) -> Vec<String> {
    std::fs::read_to_string(trace)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The status line `--plugins-report` gives for the file `name`.
fn report_line(report: &str, name: &str) -> String {
    report
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no line for {name} in:\n{report}"))
        .trim()
        .to_string()
}

fn report(dir: &Path) -> String {
    let out = run_host(&["--plugin-dir", dir.to_str().unwrap(), "--plugins-report"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    out.stdout
}

#[test]
fn an_unchanged_directory_is_listed_without_loading_any_library() {
    let dir = TempDir::new("warm");
    install("libtraced.so", dir.path(), "libtraced_a.so");
    install("libtraced.so", dir.path(), "libtraced_b.so");
    let trace = dir.join("trace");
    let plugin_dir = dir.path().to_str().unwrap();

    let cold = traced_run(&trace, &["--plugin-dir", plugin_dir]);
    assert!(
        cold.stdout.contains("traced_a") && cold.stdout.contains("traced_b"),
        "{cold:?}"
    );
    let probed = loads(&trace);
    assert_eq!(
        probed.len(),
        2,
        "each library loaded once, in a probe: {probed:?}"
    );
    assert!(dir.join("dropin.cache").is_file());

    for args in [
        &["--plugin-dir", plugin_dir][..],
        &["--plugin-dir", plugin_dir, "traced_a", "--help"],
    ] {
        let warm = traced_run(&trace, args);
        assert_eq!(warm.code(), Some(0), "{warm:?}");
        assert_eq!(loads(&trace), probed, "{args:?} loaded a library");
    }
    assert!(report(dir.path())
        .contains("libtraced_a.so: ok: provides 'traced_a' (plugin-api 1.2.0) [cached]"));

    // Running a plugin loads that one library, in the host itself.
    let mut command = host_command(&["--plugin-dir", plugin_dir, "-n", "traced_a"]);
    command.env("HOST_FIXTURE_LOAD_TRACE", &trace);
    let mut host = Running::spawn(&mut command);
    host.wait_for_line("[traced_a] traced started");
    host.stop();
    let after = loads(&trace);
    assert_eq!(after[..2], probed[..]);
    assert_eq!(after[2..], [format!("libtraced_a.so {}", host.pid())]);
}

#[test]
fn libraries_that_crash_exit_or_hang_while_loading_are_reported_and_cached() {
    let dir = TempDir::new("broken");
    let good = install("libtraced.so", dir.path(), "libtraced_ok.so");
    c_library(dir.path(), "libsegv.so", "*(volatile int *)0 = 1;");
    c_library(dir.path(), "libabort.so", "abort();");
    c_library(dir.path(), "libexit7.so", "exit(7);");
    c_library(dir.path(), "libhang.so", "for (;;) sleep(1);");
    let trace = dir.join("trace");
    let plugin_dir = dir.path().to_str().unwrap();

    let out = traced_run(
        &trace,
        &["--plugin-dir", plugin_dir, "--probe-timeout", "1"],
    );
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        out.stdout.lines().any(|l| l.starts_with("  traced_ok ")
            && l.ends_with("Leaves a trace when loaded (a test fixture).")),
        "{}",
        out.stdout
    );
    for (name, why) in [
        ("libsegv.so", "crashed on load: signal 11 (SIGSEGV)"),
        ("libabort.so", "crashed on load: signal 6 (SIGABRT)"),
        ("libexit7.so", "exited on load with status 7"),
        ("libhang.so", "timed out: loading took longer than 1.0 s"),
    ] {
        let line = format!("host: warning: skipped {}: {why}", dir.join(name).display());
        assert!(
            out.stderr.lines().any(|l| l == line),
            "missing {line:?} in:\n{}",
            out.stderr
        );
    }
    assert_eq!(
        loads(&trace).len(),
        1,
        "the good library was probed once: {:?}",
        loads(&trace)
    );

    let report = report(dir.path());
    for name in [
        "libsegv.so",
        "libabort.so",
        "libexit7.so",
        "libhang.so",
        "libtraced_ok.so",
    ] {
        assert!(report_line(&report, name).ends_with("[cached]"), "{report}");
    }
    assert_eq!(loads(&trace).len(), 1);
    assert!(good.exists());
}

#[test]
fn touch_replace_and_delete_reprobe_or_drop_only_that_entry() {
    let dir = TempDir::new("changes");
    let a = install("libtraced.so", dir.path(), "libtraced_a.so");
    install("libtraced.so", dir.path(), "libtraced_b.so");
    let c = install("libtraced.so", dir.path(), "libtraced_c.so");
    report(dir.path());

    age(&a, 30);
    let after_touch = report(dir.path());
    assert!(
        report_line(&after_touch, "libtraced_a.so").ends_with("[probed]"),
        "{after_touch}"
    );
    assert!(
        report_line(&after_touch, "libtraced_b.so").ends_with("[cached]"),
        "{after_touch}"
    );

    // Replace b by rename, as plugins should be installed: a new inode.
    let staged = install("libfaulty.so", dir.path(), "libtraced_b.so.new");
    std::fs::rename(&staged, dir.join("libtraced_b.so")).unwrap();
    let after_replace = report(dir.path());
    assert_eq!(
        report_line(&after_replace, "libtraced_b.so"),
        "libtraced_b.so: ok: provides 'faulty' (plugin-api 1.2.0) [probed]"
    );
    assert!(
        report_line(&after_replace, "libtraced_a.so").ends_with("[cached]"),
        "{after_replace}"
    );

    std::fs::remove_file(&c).unwrap();
    let after_delete = report(dir.path());
    assert!(!after_delete.contains("libtraced_c.so"), "{after_delete}");
    let cache = std::fs::read_to_string(dir.join("dropin.cache")).unwrap();
    assert!(
        !cache.contains("libtraced_c.so") && cache.contains("libtraced_a.so"),
        "{cache}"
    );
    assert!(
        report_line(&after_delete, "libtraced_a.so").ends_with("[cached]"),
        "{after_delete}"
    );
}

#[test]
fn the_cache_records_the_stat_tuple_and_what_each_file_offers() {
    let dir = TempDir::new("format");
    install("libtraced.so", dir.path(), "libtraced_a.so");
    std::fs::write(dir.join("libtext.so"), "not a library").unwrap();
    report(dir.path());
    let cache: String = std::fs::read_to_string(dir.join("dropin.cache")).unwrap();
    for needle in [
        "\"format\":1",
        "\"interface\":\"1.2.0\"",
        "\"size\":",
        "\"mtime_ns\":",
        "\"dev\":",
        "\"ino\":",
        "\"tapname\":\"traced_a\"",
        "\"interface_version\":\"1.2.0\"",
        "\"NotAPlugin\"",
    ] {
        assert!(cache.contains(needle), "missing {needle} in {cache}");
    }
}

#[test]
fn ten_hosts_listing_a_cold_directory_at_once_leave_a_valid_cache() {
    let dir = TempDir::new("race");
    for i in 0..8 {
        install("libtraced.so", dir.path(), &format!("libtraced_{i}.so"));
    }
    let plugin_dir = dir.path().to_str().unwrap().to_string();
    let hosts: Vec<_> = (0..10)
        .map(|_| {
            let plugin_dir = plugin_dir.clone();
            std::thread::spawn(move || run_host(&["--plugin-dir", &plugin_dir]))
        })
        .collect();
    for host in hosts {
        let out = host.join().unwrap();
        assert_eq!(out.code(), Some(0), "{out:?}");
        assert_eq!(
            out.stdout.matches("Leaves a trace").count(),
            8,
            "{}",
            out.stdout
        );
    }
    let report = report(dir.path());
    for i in 0..8 {
        assert!(
            report_line(&report, &format!("libtraced_{i}.so")).ends_with("[cached]"),
            "{report}"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn corrupt_empty_and_truncated_caches_are_rebuilt_with_one_warning() {
    let dir = TempDir::new("corrupt");
    install("libtraced.so", dir.path(), "libtraced_a.so");
    report(dir.path());
    let valid = std::fs::read(dir.join("dropin.cache")).unwrap();
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    for bad in [
        garbage,
        Vec::new(),
        valid[..valid.len() / 2].to_vec(),
        b"{\"format\": 1}".to_vec(),
    ] {
        std::fs::write(dir.join("dropin.cache"), &bad).unwrap();
        let out = run_host(&["--plugin-dir", dir.path().to_str().unwrap()]);
        assert_eq!(out.code(), Some(0), "{out:?}");
        assert!(out.stdout.contains("traced_a"), "{}", out.stdout);
        let warnings: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0]
                .starts_with("host: warning: ignoring a corrupt plugin cache, rebuilding it:"),
            "{warnings:?}"
        );
        let again = run_host(&["--plugin-dir", dir.path().to_str().unwrap()]);
        assert_eq!(again.stderr, "", "rebuilt");
    }
}

#[test]
fn a_cache_from_another_format_or_interface_is_discarded_quietly() {
    let dir = TempDir::new("outdated");
    install("libtraced.so", dir.path(), "libtraced_a.so");
    report(dir.path());
    let cache = std::fs::read_to_string(dir.join("dropin.cache")).unwrap();
    for (from, to) in [
        ("\"format\":1", "\"format\":99"),
        ("\"interface\":\"1.2.0\"", "\"interface\":\"0.9.0\""),
    ] {
        std::fs::write(dir.join("dropin.cache"), cache.replace(from, to)).unwrap();
        let out = run_host(&[
            "--plugin-dir",
            dir.path().to_str().unwrap(),
            "--plugins-report",
        ]);
        assert_eq!(out.stderr, "");
        assert!(
            report_line(&out.stdout, "libtraced_a.so").ends_with("[probed]"),
            "{}",
            out.stdout
        );
        assert!(std::fs::read_to_string(dir.join("dropin.cache"))
            .unwrap()
            .contains(from));
    }
}

#[test]
fn a_cache_listing_deleted_files_drops_them() {
    let dir = TempDir::new("ghosts");
    install("libtraced.so", dir.path(), "libtraced_a.so");
    let ghost = install("libtraced.so", dir.path(), "libtraced_ghost.so");
    report(dir.path());
    std::fs::remove_file(ghost).unwrap();
    let out = run_host(&["--plugin-dir", dir.path().to_str().unwrap()]);
    assert!(
        !out.stdout.contains("traced_ghost") && out.stdout.contains("traced_a"),
        "{}",
        out.stdout
    );
    assert!(!std::fs::read_to_string(dir.join("dropin.cache"))
        .unwrap()
        .contains("libtraced_ghost.so"));
}

/// A `host` command run as an unprivileged user when the tests run as root (root can write
/// anywhere), with `XDG_CACHE_HOME` set.
fn unprivileged(args: &[&str], xdg_cache: &Path) -> Finished {
    let root = host_e2e::is_root();
    let mut command = if root {
        let mut command = Command::new("setpriv");
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        command.arg(host_e2e::host_bin()).args(args);
        command
            .env_remove("HOST_PLUGIN_PATH")
            .env_remove("RUST_LOG");
        command
    } else {
        host_command(args)
    };
    command
        .env("XDG_CACHE_HOME", xdg_cache)
        .env("HOME", xdg_cache);
    run(command)
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn an_unwritable_directory_falls_back_to_the_user_cache_then_to_none() {
    let base = TempDir::new("readonly");
    chmod(base.path(), 0o755);
    let plugins = base.join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    install("libtraced.so", &plugins, "libtraced_a.so");
    chmod(&plugins, 0o555);
    let user_cache = base.join("user-cache");
    std::fs::create_dir(&user_cache).unwrap();
    chmod(&user_cache, 0o777);
    let plugin_dir = plugins.to_str().unwrap();

    let out = unprivileged(&["--plugin-dir", plugin_dir], &user_cache);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stderr, "", "the per-user cache took it");
    assert!(!plugins.join("dropin.cache").exists());
    let report = unprivileged(
        &["--plugin-dir", plugin_dir, "--plugins-report"],
        &user_cache,
    )
    .stdout;
    assert!(
        report_line(&report, "libtraced_a.so").ends_with("[cached]"),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "cache read: {}/host/dropin/",
            user_cache.display()
        )),
        "{report}"
    );

    let nowhere = base.join("no-cache");
    std::fs::create_dir(&nowhere).unwrap();
    chmod(&nowhere, 0o555);
    let out = unprivileged(&["--plugin-dir", plugin_dir], &nowhere);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stdout.contains("traced_a"), "{}", out.stdout);
    let warnings: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(warnings.len(), 1, "warned once: {warnings:?}");
    assert!(
        warnings[0].starts_with("host: warning: cannot write a plugin cache ("),
        "{warnings:?}"
    );
    chmod(&plugins, 0o755);
}

#[test]
fn a_directory_named_dropin_cache_does_not_hurt() {
    let dir = TempDir::new("cachedir");
    let user_cache = TempDir::new("cachedir-user");
    install("libtraced.so", dir.path(), "libtraced_a.so");
    std::fs::create_dir(dir.join("dropin.cache")).unwrap();
    let mut command = host_command(&["--plugin-dir", dir.path().to_str().unwrap()]);
    command.env("XDG_CACHE_HOME", user_cache.path());
    let out = run(command);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stdout.contains("traced_a"), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("dropin.cache: it is a directory, not a regular file"),
        "{}",
        out.stderr
    );
    assert!(dir.join("dropin.cache").is_dir());
}

/// The children of `pid`, from /proc.
fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

#[test]
fn a_probe_child_does_not_outlive_a_killed_host() {
    let dir = TempDir::new("orphan");
    c_library(dir.path(), "libhang.so", "for (;;) sleep(1);");
    let mut host = Running::start(&[
        "--plugin-dir",
        dir.path().to_str().unwrap(),
        "--probe-timeout",
        "60",
    ]);
    let mut probe = Vec::new();
    let until = std::time::Instant::now() + host_e2e::PATIENCE;
    while probe.is_empty() {
        assert!(std::time::Instant::now() < until, "no probe child appeared");
        std::thread::sleep(Duration::from_millis(20));
        probe = children(host.pid());
    }
    host.signal(libc::SIGKILL);
    host.wait();
    let gone = |pid: &i32| {
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z"))
    };
    let until = std::time::Instant::now() + host_e2e::PATIENCE;
    while !probe.iter().all(gone) {
        assert!(
            std::time::Instant::now() < until,
            "probe children {probe:?} outlived the host"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
