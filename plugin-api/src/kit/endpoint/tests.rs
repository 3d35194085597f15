use super::*;
use proptest::prelude::*;
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

/// Any string a value could hold, awkward characters included.
fn value() -> impl Strategy<Value = String> {
    proptest::string::string_regex(r"[a-z0-9:\\\[\]=/. é日\-]{1,12}").unwrap()
}

fn listen_endpoint() -> impl Strategy<Value = Endpoint> {
    let backlog = prop_oneof![Just(DEFAULT_BACKLOG), 0u32..5000];
    prop_oneof![
        (any::<u16>(), proptest::option::of(value()), backlog.clone()).prop_map(
            |(port, interface, backlog)| Endpoint::Tcp {
                port,
                interface,
                backlog
            }
        ),
        (
            any::<u16>(),
            proptest::option::of(value()),
            backlog.clone(),
            value(),
            proptest::option::of(value())
        )
            .prop_map(|(port, interface, backlog, key, cert)| Endpoint::Ssl {
                port,
                interface,
                backlog,
                private_key: key.into(),
                cert_key: cert.map(Into::into),
            }),
        (value(), proptest::option::of(0u32..=0o7777), backlog).prop_map(
            |(path, mode, backlog)| Endpoint::Unix {
                path: path.into(),
                mode,
                backlog
            }
        ),
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

fn client_endpoint() -> impl Strategy<Value = ClientEndpoint> {
    let timeout = prop_oneof![
        Just(client::DEFAULT_CONNECT_TIMEOUT),
        (1u64..10_000_000).prop_map(Duration::from_millis)
    ];
    prop_oneof![
        (value(), any::<u16>(), timeout.clone()).prop_map(|(host, port, timeout)| {
            ClientEndpoint::tcp(host, port).with_timeout(timeout)
        }),
        (value(), timeout).prop_map(|(path, timeout)| ClientEndpoint::Unix {
            path: path.into(),
            timeout
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn listen_endpoints_round_trip(endpoint in listen_endpoint()) {
        let text = endpoint.to_string();
        prop_assert_eq!(text.parse::<Endpoint>().map_err(|e| e.to_string()), Ok(endpoint), "{}", text);
    }

    #[test]
    fn client_endpoints_round_trip(endpoint in client_endpoint()) {
        let text = endpoint.to_string();
        prop_assert_eq!(text.parse::<ClientEndpoint>().map_err(|e| e.to_string()), Ok(endpoint), "{}", text);
    }

    #[test]
    fn arbitrary_strings_never_panic(text in "\\PC{0,40}") {
        let _ = text.parse::<Endpoint>();
        let _ = text.parse::<ClientEndpoint>();
    }
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
