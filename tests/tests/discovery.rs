//! Discovery over real plugin directories: files that are not plugins, broken plugins, an
//! incompatible interface, shadowed tapnames, and the search path order.

use host_e2e::{fixture_dir, host_bin, run, run_host, Running, TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    fixture_dir().join(name)
}

fn shipped(name: &str) -> PathBuf {
    host_bin().parent().unwrap().join(name)
}

/// Copies `from` into `dir` as `name`.
fn install(from: &Path, dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(from, &to).unwrap();
    to
}

/// A shared library with no service maker, built from C with the system compiler.
fn c_library(dir: &Path) -> PathBuf {
    let source = dir.join("plain.c");
    std::fs::write(&source, "int plain_answer(void) { return 42; }\n").unwrap();
    let library = dir.join("libplain.so");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .expect("the system C compiler runs");
    assert!(status.success());
    library
}

#[test]
fn files_that_are_not_plugins_are_skipped_silently() {
    let dir = TempDir::new("notplugins");
    std::fs::write(dir.join("libx.so"), "this is a text file\n").unwrap();
    std::fs::write(dir.join("libempty.so"), "").unwrap();
    c_library(dir.path());
    std::fs::create_dir(dir.join("libdir.so")).unwrap();
    let out = run_host(&["--plugin-dir", dir.path().to_str().unwrap()]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("fastpoetry ")
                && l.ends_with(" A fast poetry service.")),
        "{}",
        out.stdout
    );
    assert_eq!(out.stderr, "");
}

#[test]
fn a_plugin_that_panics_in_make_service_is_a_clean_error() {
    let dir = fixture_dir();
    let out = run_host(&[
        "--plugin-dir",
        dir.to_str().unwrap(),
        "-n",
        "faulty",
        "--panic-in",
        "make_service",
    ]);
    assert_eq!(out.code(), Some(1), "not an abort: {out:?}");
    assert!(
        out.stderr
            .ends_with("host: faulty: panicked: told to panic in make_service"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("RUST_BACKTRACE") && !out.stderr.contains("thread '"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout
            .contains("[faulty] error: panicked at faulty/src/lib.rs:"),
        "the panic's location is logged: {}",
        out.stdout
    );
}

#[test]
fn every_failing_step_of_a_plugin_is_one_line_and_exit_1() {
    let dir = fixture_dir();
    for (args, expected) in [
        (
            ["--fail-in", "make_service"],
            "host: faulty: told to fail in make_service",
        ),
        (
            ["--fail-in", "privileged_start"],
            "host: faulty failed to start: told to fail in privileged_start",
        ),
        (
            ["--panic-in", "privileged_start"],
            "host: faulty failed to start: panicked: told to panic in privileged_start",
        ),
        (
            ["--fail-in", "start"],
            "host: faulty failed to start: told to fail in start",
        ),
        (
            ["--panic-in", "start"],
            "host: faulty failed to start: panicked: told to panic in start",
        ),
        (
            ["--fail-in", "running"],
            "host: faulty failed: told to fail in running",
        ),
    ] {
        let mut all = vec!["--plugin-dir", dir.to_str().unwrap(), "-n", "faulty"];
        all.extend(args);
        let out = run_host(&all);
        assert_eq!(out.code(), Some(1), "{args:?}: {out:?}");
        assert!(out.stderr.ends_with(expected), "{args:?}: {}", out.stderr);
    }
}

#[test]
fn a_service_that_fails_while_running_still_shuts_down_in_order() {
    let dir = fixture_dir();
    let mut host = Running::start(&[
        "--plugin-dir",
        dir.to_str().unwrap(),
        "-n",
        "faulty",
        "--fail-in",
        "running",
    ]);
    assert_eq!(host.wait().code(), Some(1));
    assert_eq!(
        host.log_tail(3),
        [
            "[-] Server Shut Down.",
            "[-] Main loop terminated.",
            "[-] error: faulty failed: told to fail in running"
        ]
    );
}

#[test]
fn an_incompatible_interface_is_one_line_naming_the_file_and_both_versions() {
    let dir = TempDir::new("incompatible");
    let library = install(
        &fixture("libincompatible_major.so"),
        dir.path(),
        "libfuture.so",
    );
    let out = run_host(&["--plugin-dir", dir.path().to_str().unwrap()]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(
        out.stderr,
        format!(
            "host: warning: skipped {}: incompatible plugin-api: the plugin was built against 2.0.0, this host has 1.2.0 (different major version)",
            library.display()
        )
    );
    assert!(out.stdout.contains("fastpoetry"), "the listing still works");
}

#[test]
fn the_first_plugin_in_search_order_wins_a_tapname() {
    let first = TempDir::new("first");
    let second = TempDir::new("second");
    let winner = install(&fixture("libfaulty.so"), first.path(), "libfaulty.so");
    let loser = install(&fixture("libfaulty.so"), second.path(), "libfaulty_copy.so");
    let out = run_host(&[
        "--plugin-dir",
        first.path().to_str().unwrap(),
        "--plugin-dir",
        second.path().to_str().unwrap(),
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(
        out.stderr,
        format!(
            "host: warning: skipped {}: shadowed: 'faulty' is already provided by {}",
            loser.display(),
            winner.display()
        )
    );
    assert_eq!(out.stdout.matches("faulty  ").count(), 1, "{}", out.stdout);
}

#[test]
fn host_plugin_path_is_searched_after_plugin_dir_and_before_the_executable_dir() {
    let from_env = TempDir::new("env");
    install(&fixture("libfaulty.so"), from_env.path(), "libfaulty.so");
    // A copy of fastpoetry in the environment's directory shadows the one beside the executable.
    let copy = install(
        &shipped("libfastpoetry.so"),
        from_env.path(),
        "libfastpoetry.so",
    );
    let mut command = host_e2e::host_command(&[]);
    command.env(
        "HOST_PLUGIN_PATH",
        format!("/nonexistent:{}", from_env.path().display()),
    );
    let out = run(command);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stdout.contains("faulty  "), "{}", out.stdout);
    assert!(
        out.stderr.contains(&format!(
            "'fastpoetry' is already provided by {}",
            copy.display()
        )),
        "{}",
        out.stderr
    );
}

#[test]
fn each_plugin_library_gets_its_own_service_maker() {
    // abi_stable's load_from_file would hand the first library's module to the second.
    let dir = fixture_dir();
    let out = run_host(&["--plugin-dir", dir.to_str().unwrap(), "faulty", "--help"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        out.stdout.contains("--panic-in <PANIC-IN>"),
        "{}",
        out.stdout
    );
    let out = run_host(&[
        "--plugin-dir",
        dir.to_str().unwrap(),
        "fastpoetry",
        "--help",
    ]);
    assert!(out.stdout.contains("--poem <POEM>"), "{}", out.stdout);
}
