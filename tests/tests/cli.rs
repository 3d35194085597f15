//! The `host` command line: listing, help, version, and a clear error for every bad input.

use host_e2e::{free_port, poem, run_host, TempDir};

#[test]
fn no_arguments_lists_the_shipped_plugins_and_exits_0() {
    for args in [&[][..], &["--help"], &["-h"]] {
        let out = run_host(args);
        assert_eq!(out.code(), Some(0), "{args:?}: {out:?}");
        assert!(
            out.stdout.contains("Usage: host [OPTIONS] PLUGIN"),
            "{}",
            out.stdout
        );
        assert!(out.stdout.contains("--nodaemon"), "{}", out.stdout);
        let plugins = out
            .stdout
            .split("Plugins:")
            .nth(1)
            .expect("a Plugins: section");
        // The description column is as wide as the longest tapname needs.
        let listed: Vec<String> = plugins
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        for shipped in [
            "fastpoetry A fast poetry service.",
            "ftp An FTP server: read-only anonymous access by default, confined paths, FTPS.",
            "web A static file server: HTTP/1.1 and HTTP/2, every path confined to its root.",
            "portforward A simple port-forwarder.",
            "socks A SOCKSv4, SOCKSv4a and SOCKSv5 proxy service.",
        ] {
            assert!(listed.iter().any(|l| l == shipped), "{shipped}: {plugins}");
        }
        assert!(
            !plugins.contains("faulty"),
            "fixtures must not be on the default path: {plugins}"
        );
        assert_eq!(out.stderr, "", "a clean build lists without warnings");
    }
}

#[test]
fn version_is_printed() {
    let out = run_host(&["--version"]);
    assert_eq!(out.code(), Some(0));
    let manifest =
        std::fs::read_to_string(host_e2e::workspace_root().join("host/Cargo.toml")).unwrap();
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .unwrap()
        .trim_matches('"');
    assert_eq!(out.stdout.trim(), format!("host {version}"));
}

#[test]
fn plugin_help_shows_its_options_with_defaults() {
    let out = run_host(&["fastpoetry", "--help"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    for expected in [
        "Usage: host fastpoetry [OPTIONS]",
        "-p, --port <PORT>",
        "[default: 10000]",
        "--iface <IFACE>",
        "[default: localhost]",
        "--poem <POEM>",
        "--listen <ENDPOINT>",
    ] {
        assert!(
            out.stdout.contains(expected),
            "missing {expected:?} in:\n{}",
            out.stdout
        );
    }
}

#[test]
fn the_readme_shows_the_usage_and_fastpoetry_help_as_they_are() {
    let readme = std::fs::read_to_string(host_e2e::workspace_root().join("README.md")).unwrap();
    for args in [&[][..], &["fastpoetry", "--help"]] {
        let out = run_host(args);
        // The harness gives the output as lines joined by newlines, without the last one.
        let shown = ["$ host"].iter().chain(args).cloned().collect::<Vec<_>>();
        let sample = format!("```text\n{}\n{}\n```", shown.join(" "), out.stdout);
        assert!(
            readme.contains(&sample),
            "README.md's `{}` differs from the real output:\n{}",
            shown.join(" "),
            out.stdout
        );
    }
}

#[test]
fn unknown_plugin_suggests_the_nearest_and_says_where_it_looked() {
    let out = run_host(&["-n", "fastpoety"]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    let mut lines = out.stderr.lines();
    assert_eq!(
        lines.next(),
        Some("host: no plugin named 'fastpoety' (did you mean 'fastpoetry'?)")
    );
    let searched = lines.next().unwrap();
    assert!(
        searched.starts_with("host: searched: ") && searched.contains("target/debug"),
        "{searched}"
    );

    let out = run_host(&["-n", "zzz"]);
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr.starts_with("host: no plugin named 'zzz'\n"),
        "{}",
        out.stderr
    );
}

#[test]
fn bad_option_values_name_the_option_and_exit_2() {
    for (args, expected) in [
        (
            &["-n", "fastpoetry", "--port", "notanumber"][..],
            "invalid value 'notanumber' for '--port <PORT>': 'notanumber' is not a port number",
        ),
        (
            &["-n", "fastpoetry", "-p", "70000"],
            "invalid value '70000' for '--port <PORT>': '70000' is not a port number",
        ),
        (&["-n", "fastpoetry", "--port"], "a value is required for '--port <PORT>'"),
        (
            &["-n", "fastpoetry", "--listen", "udp:53"],
            "invalid value 'udp:53' for '--listen <ENDPOINT>': invalid endpoint 'udp:53': unknown type 'udp'",
        ),
        (&["-n", "fastpoetry", "--colour", "red"], "unexpected argument '--colour'"),
        (&["--bogus"], "unexpected argument '--bogus'"),
        (&["--log-level", "loud", "-n", "fastpoetry"], "invalid value 'loud' for '--log-level <LEVEL>'"),
    ] {
        let out = run_host(args);
        assert_eq!(out.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stderr.contains(expected), "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
}

#[test]
fn invalid_rust_log_is_a_usage_error() {
    let mut command = host_e2e::host_command(&["-n", "fastpoetry", "--port", "0"]);
    command.env("RUST_LOG", "info,=[");
    let out = host_e2e::run(command);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.starts_with("host: invalid RUST_LOG 'info,=['"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_unreadable_poem_is_one_line_and_exit_1_before_anything_listens() {
    let dir = TempDir::new("poem");
    let missing = dir.join("missing.txt");
    let port = free_port();
    for (path, os_error) in [
        (
            missing.to_str().unwrap(),
            "No such file or directory (os error 2)",
        ),
        (
            dir.path().to_str().unwrap(),
            "it is a directory, not a regular file",
        ),
    ] {
        let out = run_host(&[
            "-n",
            "fastpoetry",
            "--port",
            &port.to_string(),
            "--poem",
            path,
        ]);
        assert_eq!(out.code(), Some(1), "{out:?}");
        assert_eq!(
            out.stderr.trim_end(),
            format!("host: fastpoetry: cannot read the poem {path}: {os_error}")
        );
        assert!(!out.stdout.contains("starting on"), "{}", out.stdout);
    }
    assert!(poem("ecstasy.txt").exists());
}
