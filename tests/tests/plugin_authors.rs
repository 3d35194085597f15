//! What plugin authors rely on: the template builds out of tree and runs through `host`, a
//! plugin built against an older 1.x minor still loads and runs, a wrong option list is
//! reported at probe time, and the guide's code compiles (as plugin-api doc tests).

use host_e2e::{fetch, fixture_dir, run_host, workspace_root, Running, TempDir};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "target" {
                copy_dir(&entry.path(), &target);
            }
        } else if entry.file_name() != "Cargo.lock" {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn the_template_builds_out_of_tree_tests_and_runs_through_host() {
    let outside = TempDir::new("template");
    let crate_dir = outside.join("echo");
    copy_dir(
        &workspace_root().join("examples/plugin-template"),
        &crate_dir,
    );
    // What an author does after copying: point plugin-api at their checkout.
    let manifest = crate_dir.join("Cargo.toml");
    let plugin_api = workspace_root().join("plugin-api");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let text = text.replace(
        "path = \"../../plugin-api\"",
        &format!("path = {:?}", plugin_api.to_str().unwrap()),
    );
    std::fs::write(&manifest, text).unwrap();

    // Sharing the fixtures' target directory only saves compiling the dependencies again.
    let target = workspace_root().join("target/fixtures");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for command in ["build", "test"] {
        let status = Command::new(&cargo)
            .arg(command)
            .current_dir(&crate_dir)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("CARGO_MANIFEST_DIR")
            .status()
            .unwrap();
        assert!(status.success(), "cargo {command} of the template failed");
    }
    let plugins = outside.join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(target.join("debug/libecho.so"), plugins.join("libecho.so")).unwrap();
    let plugin_dir = plugins.to_str().unwrap();

    let help = run_host(&["--plugin-dir", plugin_dir, "echo", "--help"]);
    assert_eq!(help.code(), Some(0), "{help:?}");
    for option in [
        "--listen <ENDPOINT>",
        "--greeting <GREETING>",
        "--max-line <N>",
        "--max-connections <N>",
        "--upper",
    ] {
        assert!(
            help.stdout.contains(option),
            "{option} missing:\n{}",
            help.stdout
        );
    }

    let mut host = Running::start(&[
        "--plugin-dir",
        plugin_dir,
        "-n",
        "echo",
        "--upper",
        "--listen",
        "tcp:0:interface=127.0.0.1",
    ]);
    let port = host.port();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(host_e2e::PATIENCE)).unwrap();
    stream.write_all(b"hello\n").unwrap();
    let mut lines = BufReader::new(stream).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "echo ready");
    assert_eq!(lines.next().unwrap().unwrap(), "HELLO");
    host.stop();
}

#[test]
fn a_plugin_built_against_an_older_minor_loads_and_runs() {
    let dir = fixture_dir();
    let plugin_dir = dir.to_str().unwrap();
    let report = run_host(&["--plugin-dir", plugin_dir, "--plugins-report"]).stdout;
    assert!(
        report.contains("libold_minor.so: ok: provides 'oldminor' (plugin-api 1.0.0)"),
        "{report}"
    );
    let help = run_host(&["--plugin-dir", plugin_dir, "oldminor", "--help"]);
    assert!(help.stdout.contains("--listen <ENDPOINT>"), "{help:?}");

    let mut host = Running::start(&["--plugin-dir", plugin_dir, "-n", "oldminor"]);
    let port = host.port();
    assert_eq!(fetch(port), b"built against plugin-api 1.0.0\n");
    // reload/1 arrived in 1.1: the older plugin does not offer it, and nothing breaks.
    host.signal(libc::SIGHUP);
    host.wait_for_line("[-] Received SIGHUP, ignored (oldminor cannot reload).");
    host.stop();
}

#[test]
fn an_invalid_option_list_is_reported_at_probe_time_naming_plugin_and_option() {
    let dir = TempDir::new("badopts");
    std::fs::copy(
        fixture_dir().join("libbadopts.so"),
        dir.join("libbadopts.so"),
    )
    .unwrap();
    let out = run_host(&["--plugin-dir", dir.path().to_str().unwrap()]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(
        out.stderr,
        format!(
            "host: warning: skipped {}: broken plugin: plugin 'badopts': option --port has an invalid default: 'seventy' is not a port number (0 to 65535)",
            dir.join("libbadopts.so").display()
        )
    );
    assert!(
        !out.stdout.contains("badopts"),
        "not offered: {}",
        out.stdout
    );
}
