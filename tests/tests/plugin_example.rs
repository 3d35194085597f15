//! The plugin example in the README and the crate docs is real: built as a plugin library, run
//! through `host`, and shown verbatim in the README.

use host_e2e::{fetch, workspace_root, Running, TempDir};
use std::process::Command;

#[test]
fn the_readme_shows_the_hello_example_verbatim() {
    let root = workspace_root();
    let example = std::fs::read_to_string(root.join("plugin-api/examples/hello.rs")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("```rust\n{example}```\n")),
        "README.md must show plugin-api/examples/hello.rs as it is"
    );
}

#[test]
fn the_hello_example_runs_as_a_plugin() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "plugin-api", "--example", "hello"])
        .current_dir(workspace_root())
        .status()
        .unwrap();
    assert!(status.success());
    let dir = TempDir::new("hello");
    std::fs::copy(
        workspace_root().join("target/debug/examples/libhello.so"),
        dir.join("libhello.so"),
    )
    .unwrap();
    let plugin_dir = dir.path().to_str().unwrap();

    let help = host_e2e::run_host(&["--plugin-dir", plugin_dir, "hello", "--help"]);
    assert!(
        help.stdout
            .contains("[default: tcp:7000:interface=127.0.0.1]"),
        "{help:?}"
    );

    let mut host = Running::start(&[
        "--plugin-dir",
        plugin_dir,
        "-n",
        "hello",
        "--listen",
        "tcp:0:interface=127.0.0.1",
    ]);
    let port = host.port();
    assert_eq!(fetch(port), b"hello\n");
    host.wait_for_line("[hello] greeting 127.0.0.1:");
    host.stop();
}
