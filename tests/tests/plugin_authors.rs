//! What plugin authors rely on: the template builds out of tree and runs through `host`, the
//! guide's chat builds without a warning and runs with the guide's commands, a plugin built
//! against an older 1.x minor still loads and runs, and a wrong option list is reported at probe
//! time. (Each of the guide's blocks also compiles on its own, as a plugin-api doc test.)

use host_e2e::{fetch, fixture_dir, run_host, workspace_root, Running, TempDir};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// Sharing the fixtures' target directory only saves compiling the dependencies again.
fn shared_target() -> PathBuf {
    workspace_root().join("target/fixtures")
}

/// Runs `cargo COMMAND` in an author's crate, as its author would.
fn cargo(crate_dir: &Path, command: &str) -> Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new(cargo)
        .arg(command)
        .current_dir(crate_dir)
        .env("CARGO_TARGET_DIR", shared_target())
        .env_remove("CARGO_MANIFEST_DIR")
        .output()
        .unwrap()
}

/// The library `cargo build` made of the crate named `name`.
fn built(name: &str) -> PathBuf {
    shared_target().join(format!("debug/lib{name}.so"))
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

    for command in ["build", "test"] {
        let out = cargo(&crate_dir, command);
        assert!(
            out.status.success(),
            "cargo {command} of the template failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let plugins = outside.join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(built("echo"), plugins.join("libecho.so")).unwrap();
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

/// The fenced blocks of `language` in the part of the guide from heading `from` to heading `to`.
fn guide_blocks(guide: &str, language: &str, from: &str, to: &str) -> Vec<String> {
    let start = guide.find(from).expect("the guide has the first heading");
    let end = start
        + guide[start..]
            .find(to)
            .expect("the guide has the last heading");
    let fence = format!("```{language}\n");
    guide[start..end]
        .split(fence.as_str())
        .skip(1)
        .map(|block| block.split("```").next().unwrap().to_string())
        .collect()
}

#[test]
fn the_guide_builds_without_a_warning_and_runs_with_its_own_commands() {
    let guide = std::fs::read_to_string(workspace_root().join("docs/writing-a-plugin.md")).unwrap();
    let outside = TempDir::new("guide");
    let crate_dir = outside.join("chat");
    std::fs::create_dir_all(crate_dir.join("src")).unwrap();
    let manifest = &guide_blocks(&guide, "toml", "## 1.", "## 2.")[0];
    let plugin_api = workspace_root().join("plugin-api");
    std::fs::write(
        crate_dir.join("Cargo.toml"),
        manifest.replace(
            "\"/path/to/host/plugin-api\"",
            &format!("{:?}", plugin_api.to_str().unwrap()),
        ),
    )
    .unwrap();
    // What the reader types: every block of sections 2 to 5, without rustdoc's hidden lines.
    let lib: String = guide_blocks(&guide, "rust", "## 2.", "## 6.")
        .iter()
        .flat_map(|block| block.lines())
        .filter(|line| !(line.trim_start().starts_with("# ") || line.trim() == "#"))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(crate_dir.join("src/lib.rs"), lib).unwrap();

    let plugins = outside.join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let plugin_dir = plugins.to_str().unwrap();
    let commands = &guide_blocks(&guide, "sh", "## 6.", "## Logging")[0];
    let mut ran = Vec::new();
    for line in commands.lines() {
        let command = line.split('#').next().unwrap().trim();
        let mut words = command.split_whitespace();
        match words.next() {
            Some("cargo") => {
                let out = cargo(&crate_dir, words.next().unwrap());
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(out.status.success(), "{command}:\n{stderr}");
                assert!(!stderr.contains("warning"), "{command}:\n{stderr}");
                std::fs::copy(built("chat"), plugins.join("libchat.so")).unwrap();
            }
            Some("host") => {
                // The guide's port, 7002, may be taken on a test machine: any free one will do.
                // And a short `--idle`, to see a silent client let go while the room talks.
                let mut args: Vec<String> = words
                    .map(|word| match word {
                        "target/debug" => plugin_dir.to_string(),
                        other => other.replace(":7002:", ":0:"),
                    })
                    .collect();
                if !args.iter().any(|a| a == "--help") {
                    args.extend(["--idle".to_string(), "2s".to_string()]);
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                match args.contains(&"--help") {
                    true => {
                        let help = run_host(&args);
                        assert_eq!(help.code(), Some(0), "{command}: {help:?}");
                        assert!(help.stdout.contains("--name <NAME>"), "{help:?}");
                    }
                    false => ran.push(Running::start(&args)),
                }
            }
            Some("nc") => {
                let host = ran.last().expect("nc talks to the chat started above");
                let port = host.port();
                let client = || {
                    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    stream.set_read_timeout(Some(host_e2e::PATIENCE)).unwrap();
                    let mut lines = BufReader::new(stream.try_clone().unwrap()).lines();
                    assert_eq!(lines.next().unwrap().unwrap(), "welcome to lobby");
                    (stream, lines)
                };
                let (mut alice, _) = client();
                let (_, mut bob) = client();
                alice.write_all(b"hello, room\n").unwrap();
                let heard = bob
                    .find(|line| !line.as_ref().unwrap().starts_with('*'))
                    .unwrap()
                    .unwrap();
                assert!(heard.ends_with(": hello, room"), "{heard}");
                // A client that says nothing is idle, however much the room says to it: let go
                // after `--idle` while the room still talks.
                let (_carol, carol_hears) = client();
                let started = std::time::Instant::now();
                let talker = std::thread::spawn(move || {
                    for _ in 0..16 {
                        alice.write_all(b"still here\n").unwrap();
                        std::thread::sleep(std::time::Duration::from_millis(500));
                    }
                });
                let mut carol_hears = carol_hears.map(|line| line.unwrap());
                assert!(carol_hears.any(|line| line == "* idle for too long"));
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(6),
                    "a silent client was kept while the room talked: {:?}",
                    started.elapsed()
                );
                talker.join().unwrap();
            }
            _ => assert!(
                command.is_empty(),
                "a command the test does not know: {command}"
            ),
        }
    }
    assert_eq!(ran.len(), 1, "{commands}");
    ran[0].stop();
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
