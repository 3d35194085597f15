//! The admin endpoint as its clients see it: HTTP GETs, waiting for a status, and metrics parsed
//! by Prometheus's own Python parser.

use crate::PATIENCE;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// An HTTP GET over TCP to 127.0.0.1:`port`: the status code and the body.
pub fn get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// Waits until GET `path` answers `status`.
pub fn wait_for_status(port: u16, path: &str, status: u16) -> String {
    let until = Instant::now() + PATIENCE;
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let (got, body) = get(port, path);
            if got == status {
                return body;
            }
        }
        assert!(Instant::now() < until, "{path} never answered {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The samples of an exposition parsed by prometheus_client's strict OpenMetrics parser, one
/// per line: `name{label="value",...} value`, labels sorted.
pub fn parse_metrics(text: &str) -> Vec<String> {
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {s.value}")
"#;
    let mut python = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    python
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

pub fn sample(samples: &[String], prefix: &str) -> f64 {
    let line = samples
        .iter()
        .find(|s| s.starts_with(prefix))
        .unwrap_or_else(|| panic!("no sample {prefix} in:\n{}", samples.join("\n")));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Scrapes `/metrics` on 127.0.0.1:`port` until the sample starting with `prefix` has `value`,
/// and returns that scrape's samples; fails with the last scrape after [`PATIENCE`].
pub fn wait_for_sample(port: u16, prefix: &str, value: f64) -> Vec<String> {
    let until = Instant::now() + PATIENCE;
    loop {
        let (status, text) = get(port, "/metrics");
        assert_eq!(status, 200, "{text}");
        let samples = parse_metrics(&text);
        let found = samples
            .iter()
            .find(|s| s.starts_with(prefix))
            .and_then(|s| s.rsplit(' ').next()?.parse::<f64>().ok());
        if found == Some(value) {
            return samples;
        }
        assert!(
            Instant::now() < until,
            "{prefix} never reached {value} (last {found:?}):\n{}",
            samples.join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
