use super::*;
use proptest::prelude::*;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

#[test]
fn parses_tcp_with_parameters() {
    let e: Endpoint = "tcp:10000:interface=127.0.0.1:backlog=5".parse().unwrap();
    assert_eq!(
        e,
        Endpoint::Tcp {
            port: 10000,
            interface: Some("127.0.0.1".into()),
            backlog: 5
        }
    );
    assert_eq!(e.to_string(), "tcp:10000:interface=127.0.0.1:backlog=5");
    let keyword: Endpoint = "tcp:port=10000:interface=127.0.0.1:backlog=5"
        .parse()
        .unwrap();
    assert_eq!(keyword, e);
}

#[test]
fn parses_ipv6_interfaces_both_ways() {
    for text in ["tcp:80:interface=[::1]", r"tcp:80:interface=\:\:1"] {
        let e: Endpoint = text.parse().unwrap();
        assert_eq!(e, Endpoint::tcp(80, "::1"), "{text}");
        assert_eq!(e.to_string(), "tcp:80:interface=[::1]");
    }
}

#[test]
fn parses_unix_with_mode() {
    let e: Endpoint = "unix:/run/x.sock:mode=0660".parse().unwrap();
    assert_eq!(
        e,
        Endpoint::Unix {
            path: "/run/x.sock".into(),
            mode: Some(0o660),
            backlog: DEFAULT_BACKLOG
        }
    );
    assert_eq!(e.to_string(), "unix:/run/x.sock:mode=0660");
}

#[test]
fn parses_ssl_as_twisted_writes_it() {
    let e: Endpoint = "ssl:8443:privateKey=key.pem:certKey=cert.pem:interface=127.0.0.1"
        .parse()
        .unwrap();
    assert_eq!(
        e,
        Endpoint::Ssl {
            port: 8443,
            interface: Some("127.0.0.1".into()),
            backlog: DEFAULT_BACKLOG,
            private_key: "key.pem".into(),
            cert_key: Some("cert.pem".into()),
        }
    );
    assert_eq!(e.to_string().parse::<Endpoint>().unwrap(), e);
    let both: Endpoint = "ssl:443:privateKey=server.pem".parse().unwrap();
    assert!(matches!(both, Endpoint::Ssl { cert_key: None, .. }));
}

#[test]
fn parses_systemd_sockets() {
    let e: Endpoint = "systemd:domain=INET:index=1".parse().unwrap();
    assert_eq!(
        e,
        Endpoint::Systemd {
            index: 1,
            domain: Some(SocketDomain::Inet)
        }
    );
    assert_eq!(e.to_string(), "systemd:domain=INET:index=1");
    let e: Endpoint = "systemd:index=0".parse().unwrap();
    assert_eq!(e.to_string(), "systemd:index=0");
}

#[test]
fn rejects_bad_strings_with_a_reason() {
    for (text, why) in [
        ("tcp", "expected tcp:PORT"),
        ("unix", "socket path is missing"),
        ("systemd:domain=INET", "systemd needs index=N"),
        ("systemd:index=x", "index must be a number"),
        ("systemd:index=0:domain=IPX", "unknown domain 'IPX'"),
        ("tcp:70000", "not in 0..=65535"),
        ("tcp:1:colour=red", "unknown parameter 'colour'"),
        ("tcp:1:backlog=x", "backlog 'x'"),
        ("tcp:1:2", "unexpected field '2'"),
        ("tcp:1:port=2", "port is given twice"),
        ("tcp:1:interface=", "interface is empty"),
        ("unix:", "socket path is missing"),
        ("unix:/x:mode=999", "octal"),
        ("ssl:443", "ssl needs privateKey"),
        (
            "udp:53",
            "unknown type 'udp' (expected tcp, ssl, unix or systemd)",
        ),
        ("tcp:1:interface", "unexpected field 'interface'"),
        ("tcp:1:interface=[::1", "never closed"),
    ] {
        let err = text.parse::<Endpoint>().unwrap_err().to_string();
        assert!(err.contains(why), "{text}: {err}");
        assert!(
            err.starts_with(&format!("invalid endpoint '{text}'")),
            "{err}"
        );
    }
}

#[test]
fn client_endpoints_parse_and_print() {
    let e: ClientEndpoint = "tcp:example.com:80:timeout=2.5".parse().unwrap();
    assert_eq!(
        e,
        ClientEndpoint::tcp("example.com", 80).with_timeout(Duration::from_millis(2500))
    );
    assert_eq!(e.to_string(), "tcp:example.com:80:timeout=2.5");
    let keywords: ClientEndpoint = "tcp:host=example.com:port=80:timeout=2.5".parse().unwrap();
    assert_eq!(keywords, e);
    let v6: ClientEndpoint = "tcp:[::1]:6665".parse().unwrap();
    assert_eq!(v6, ClientEndpoint::tcp("::1", 6665));
    assert_eq!(v6.to_string(), "tcp:[::1]:6665");
    let unix: ClientEndpoint = "unix:/run/app.sock".parse().unwrap();
    assert_eq!(unix.to_string(), "unix:/run/app.sock");
    for (text, why) in [
        ("tcp:localhost", "expected tcp:HOST:PORT"),
        ("tcp::80", "expected tcp:HOST:PORT"),
        ("tcp:h:99999", "not in 0..=65535"),
        ("tcp:h:1:timeout=0", "not a positive number"),
        ("unix:", "expected unix:PATH"),
        ("ssl:h:1", "unknown type 'ssl' (expected tcp or unix)"),
    ] {
        let err = text.parse::<ClientEndpoint>().unwrap_err().to_string();
        assert!(err.contains(why), "{text}: {err}");
    }
}

#[test]
fn host_port_pairs() {
    assert_eq!(
        "localhost:6665".parse(),
        Ok(HostPort {
            host: "localhost".into(),
            port: 6665
        })
    );
    assert_eq!("[::1]:80".parse::<HostPort>().unwrap().host, "::1");
    assert_eq!(
        "[::1]:80".parse::<HostPort>().unwrap().to_string(),
        "[::1]:80"
    );
    for bad in [
        "localhost",
        ":80",
        "::1:80",
        "[x]:80",
        "h:70000",
        "h:",
        "a b:1",
    ] {
        assert!(bad.parse::<HostPort>().is_err(), "{bad}");
    }
}

/// Any string a value could hold, awkward characters and the empty string included.
fn value() -> impl Strategy<Value = String> {
    proptest::string::string_regex(r"[a-z0-9:\\\[\]=/. é日\-]{0,12}").unwrap()
}

/// Any path: a value, or bytes that need not be UTF-8.
fn path() -> impl Strategy<Value = PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    prop_oneof![
        value().prop_map(PathBuf::from),
        proptest::collection::vec(any::<u8>(), 0..8)
            .prop_map(|bytes| PathBuf::from(std::ffi::OsString::from_vec(bytes))),
    ]
}

/// Whether a path has no string form: the syntax rejects an empty one, and prints only UTF-8.
fn unsayable(path: &std::path::Path) -> bool {
    path.as_os_str().is_empty() || path.to_str().is_none()
}

/// Endpoints as plugins build them, with the constructors (and, for what none of them sets,
/// the variants).
fn listen_endpoint() -> impl Strategy<Value = Endpoint> {
    let backlog = prop_oneof![Just(DEFAULT_BACKLOG), 0u32..5000];
    let with_backlog = |mut endpoint: Endpoint, wanted: u32| {
        if let Endpoint::Tcp { backlog, .. }
        | Endpoint::Ssl { backlog, .. }
        | Endpoint::Unix { backlog, .. } = &mut endpoint
        {
            *backlog = wanted;
        }
        endpoint
    };
    prop_oneof![
        (any::<u16>(), proptest::option::of(value()), backlog.clone()).prop_map(
            move |(port, interface, backlog)| {
                with_backlog(Endpoint::tcp(port, interface.as_deref()), backlog)
            }
        ),
        (
            any::<u16>(),
            proptest::option::of(value()),
            backlog.clone(),
            path(),
            path()
        )
            .prop_map(move |(port, interface, backlog, cert, key)| {
                with_backlog(
                    Endpoint::ssl(port, interface.as_deref(), cert, key),
                    backlog,
                )
            }),
        (
            any::<u16>(),
            proptest::option::of(value()),
            backlog.clone(),
            path()
        )
            .prop_map(|(port, interface, backlog, key)| Endpoint::Ssl {
                port,
                interface: interface.filter(|i| !i.is_empty()),
                backlog,
                private_key: key,
                cert_key: None,
            }),
        (path(), proptest::option::of(0u32..=0o7777), backlog).prop_map(|(path, mode, backlog)| {
            Endpoint::Unix {
                path,
                mode,
                backlog,
            }
        }),
        (
            0usize..64,
            proptest::option::of(prop_oneof![
                Just(SocketDomain::Inet),
                Just(SocketDomain::Inet6),
                Just(SocketDomain::Unix)
            ])
        )
            .prop_map(|(index, domain)| Endpoint::Systemd { index, domain }),
    ]
}

fn unsayable_listen(endpoint: &Endpoint) -> bool {
    match endpoint {
        Endpoint::Unix { path, .. } => unsayable(path),
        Endpoint::Ssl {
            private_key,
            cert_key,
            ..
        } => unsayable(private_key) || cert_key.as_deref().is_some_and(unsayable),
        _ => false,
    }
}

/// Any timeout, from zero to the longest a `Duration` holds, to the nanosecond.
fn timeout() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(client::DEFAULT_CONNECT_TIMEOUT),
        Just(Duration::ZERO),
        Just(Duration::MAX),
        Just(Duration::from_secs(u64::MAX)),
        (0u64..2_000_000_000).prop_map(Duration::from_nanos),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(secs, nanos)| Duration::new(secs, nanos)),
    ]
}

fn client_endpoint() -> impl Strategy<Value = ClientEndpoint> {
    prop_oneof![
        (value(), any::<u16>(), timeout()).prop_map(|(host, port, timeout)| {
            ClientEndpoint::tcp(host, port).with_timeout(timeout)
        }),
        (path(), timeout()).prop_map(|(path, timeout)| ClientEndpoint::Unix {
            path,
            timeout: timeout.max(Duration::from_nanos(1)),
        }),
    ]
}

fn unsayable_client(endpoint: &ClientEndpoint) -> bool {
    match endpoint {
        ClientEndpoint::Tcp { host, .. } => host.is_empty(),
        ClientEndpoint::Unix { path, .. } => unsayable(path),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Every endpoint prints as a string that parses back to it, but for the few values no
    /// string says, which binding refuses.
    #[test]
    fn listen_endpoints_round_trip(endpoint in listen_endpoint()) {
        let text = endpoint.to_string();
        match unsayable_listen(&endpoint) {
            false => prop_assert_eq!(text.parse::<Endpoint>().map_err(|e| e.to_string()), Ok(endpoint), "{}", text),
            true => prop_assert!(writable(&endpoint).is_err(), "{}", text),
        }
    }

    #[test]
    fn client_endpoints_round_trip(endpoint in client_endpoint()) {
        let text = endpoint.to_string();
        match unsayable_client(&endpoint) {
            false => prop_assert_eq!(text.parse::<ClientEndpoint>().map_err(|e| e.to_string()), Ok(endpoint), "{}", text),
            true => prop_assert!(writable(&endpoint).is_err(), "{}", text),
        }
    }

    #[test]
    fn arbitrary_strings_never_panic(text in "\\PC{0,40}") {
        let _ = text.parse::<Endpoint>();
        let _ = text.parse::<ClientEndpoint>();
    }
}

#[test]
fn what_no_string_says_is_normalised_or_refused() {
    assert_eq!(Endpoint::tcp(80, ""), Endpoint::tcp(80, None));
    assert_eq!(Endpoint::tcp(80, "").to_string(), "tcp:80");
    let zero = ClientEndpoint::tcp("h", 1).with_timeout(Duration::ZERO);
    assert_eq!(zero.to_string(), "tcp:h:1:timeout=0.000000001");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let refused = |e: EndpointError| e.to_string();
    assert_eq!(
        refused(Endpoint::unix("").bind().unwrap_err()),
        "invalid endpoint 'unix:': the socket path is missing or empty"
    );
    let not_utf8 = std::ffi::OsStr::from_bytes(b"/tmp/\xff.sock");
    let err = refused(
        runtime
            .block_on(async { Endpoint::unix(not_utf8).bind() })
            .unwrap_err(),
    );
    assert!(err.ends_with("a path in it is not UTF-8"), "{err}");
    let err = refused(
        runtime
            .block_on(ClientEndpoint::tcp("", 80).connect())
            .unwrap_err(),
    );
    assert_eq!(err, "invalid endpoint 'tcp::80': expected tcp:HOST:PORT");
}

#[test]
fn relative_paths_are_taken_relative_to_a_directory() {
    let dir = std::path::Path::new("/srv/app");
    let unix: Endpoint = "unix:run/x.sock".parse().unwrap();
    assert_eq!(
        unix.relative_to(dir).to_string(),
        "unix:/srv/app/run/x.sock"
    );
    let absolute: Endpoint = "unix:/run/x.sock".parse().unwrap();
    assert_eq!(absolute.relative_to(dir), absolute);
    let ssl: Endpoint = "ssl:443:privateKey=k.pem:certKey=/etc/c.pem"
        .parse()
        .unwrap();
    assert_eq!(
        ssl.relative_to(dir).to_string(),
        "ssl:443:privateKey=/srv/app/k.pem:certKey=/etc/c.pem"
    );
    let client: ClientEndpoint = "unix:s.sock:timeout=2".parse().unwrap();
    assert_eq!(
        client.relative_to(dir).to_string(),
        "unix:/srv/app/s.sock:timeout=2"
    );
}

#[test]
fn a_unix_socket_gets_its_mode_before_it_appears_at_its_path() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.sock");
    let endpoint: Endpoint = format!("unix:{}:mode=0640", path.display())
        .parse()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let listener = endpoint.bind().unwrap();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(
        left.len(),
        1,
        "the private directory it was bound in is gone"
    );
    drop(listener);
}
