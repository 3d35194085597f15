//! Metrics: counters, gauges and histograms a service keeps, which the host serves in the
//! Prometheus format on its admin endpoint (`host --admin …`), labelled with the service's name.
//!
//! Every service gets the serving loop's metrics without writing a line
//! (`host_connections_accepted_total`, `host_connections_open`, `host_connection_duration_seconds`,
//! bytes each way, refusals and errors; see [`Tasks::serve`](crate::Tasks::serve)). A plugin adds
//! its own by name, wherever it runs (in `make_service`, `start`, or a connection's task):
//!
//! ```
//! use plugin_api::metrics;
//!
//! let logins = metrics::counter("ftp_logins_total", "FTP logins, by outcome", &["outcome"]);
//! logins.with(&["ok"]).inc();
//! let transfer = metrics::histogram(
//!     "ftp_transfer_seconds",
//!     "How long transfers take",
//!     &[],
//!     &[0.01, 0.1, 1.0, 10.0],
//! );
//! transfer.with(&[]).observe(0.25);
//! ```
//!
//! Metrics belong to the service whose work registers them (a library may serve several), and
//! reach the host through the `metrics/1` extension, when the host asks. Updating one is an
//! atomic operation; `with` looks the label values up, so keep the child it returns for hot
//! paths. Registering the same name twice gives the same metric.

use crate::kit::scope::ServiceScope;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The metrics of one service.
#[derive(Default)]
pub(crate) struct Registry {
    families: Mutex<Vec<Arc<Family>>>,
}

impl Registry {
    /// The family `name`, registered now if it is new. A name reused with another kind or other
    /// labels gets a family of its own that is not reported, and a warning.
    fn family(&self, name: &str, help: &str, kind: Kind, labels: &[&str]) -> Arc<Family> {
        let fresh = || {
            Arc::new(Family {
                name: name.to_string(),
                help: help.to_string(),
                kind: kind.clone(),
                labels: labels.iter().map(|l| l.to_string()).collect(),
                children: Mutex::default(),
            })
        };
        if let Err(why) = valid_names(name, labels) {
            tracing::warn!("metric {name} is not reported: {why}");
            return fresh();
        }
        let mut families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = families.iter().find(|f| f.name == name) {
            if existing.kind == kind && existing.labels == labels {
                return existing.clone();
            }
            tracing::warn!("metric {name} is registered twice with different kinds or labels; the second is not reported");
            return fresh();
        }
        let family = fresh();
        families.push(family.clone());
        family
    }

    /// Every family and sample, as JSON: the reply of the `metrics/1` extension.
    pub(crate) fn snapshot(&self) -> String {
        let families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let snapshot: Vec<FamilySnapshot<'_>> = families.iter().map(|f| f.snapshot()).collect();
        serde_json::to_string(&snapshot).expect("metrics always serialize")
    }
}

fn valid_names(name: &str, labels: &[&str]) -> Result<(), String> {
    let valid = |text: &str, colons: bool| {
        let mut chars = text.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':'))
    };
    if !valid(name, true) {
        return Err("a name is letters, digits, '_' and ':', not starting with a digit".into());
    }
    match labels.iter().find(|l| !valid(l, false) || **l == "service") {
        Some(label) => Err(format!(
            "label '{label}' is invalid (or 'service', which the host adds)"
        )),
        None => Ok(()),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Counter,
    Gauge,
    Histogram(Vec<f64>),
}

struct Family {
    name: String,
    help: String,
    kind: Kind,
    labels: Vec<String>,
    children: Mutex<HashMap<Vec<String>, Arc<Child>>>,
}

impl Family {
    fn child(&self, values: &[&str]) -> Arc<Child> {
        let mut values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        // Too few or too many values would make a sample no parser accepts.
        values.resize(self.labels.len(), String::new());
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        children
            .entry(values)
            .or_insert_with(|| {
                Arc::new(match &self.kind {
                    Kind::Counter => Child::Counter(AtomicU64::new(0)),
                    Kind::Gauge => Child::Gauge(AtomicI64::new(0)),
                    Kind::Histogram(bounds) => Child::Histogram(HistogramData {
                        bounds: bounds.clone().into(),
                        buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
                        count: AtomicU64::new(0),
                        sum: AtomicU64::new(0f64.to_bits()),
                    }),
                })
            })
            .clone()
    }

    fn snapshot(&self) -> FamilySnapshot<'_> {
        let children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        let mut samples: Vec<Sample> = children
            .iter()
            .map(|(labels, child)| child.sample(labels.clone()))
            .collect();
        samples.sort_by(|a, b| a.labels.cmp(&b.labels));
        FamilySnapshot {
            name: &self.name,
            help: &self.help,
            kind: match self.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram(_) => "histogram",
            },
            labels: &self.labels,
            buckets: match &self.kind {
                Kind::Histogram(bounds) => bounds,
                _ => &[],
            },
            samples,
        }
    }
}

enum Child {
    Counter(AtomicU64),
    Gauge(AtomicI64),
    Histogram(HistogramData),
}

struct HistogramData {
    /// The upper bounds, ascending.
    bounds: Arc<[f64]>,
    /// Per bucket, not cumulative: the host adds them up when it encodes.
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// An `f64`, as its bits.
    sum: AtomicU64,
}

impl Child {
    fn sample(&self, labels: Vec<String>) -> Sample {
        match self {
            Self::Counter(value) => Sample {
                labels,
                value: value.load(Ordering::Relaxed) as f64,
                ..Sample::default()
            },
            Self::Gauge(value) => Sample {
                labels,
                value: value.load(Ordering::Relaxed) as f64,
                ..Sample::default()
            },
            Self::Histogram(data) => Sample {
                labels,
                value: 0.0,
                counts: data
                    .buckets
                    .iter()
                    .map(|b| b.load(Ordering::Relaxed))
                    .collect(),
                count: data.count.load(Ordering::Relaxed),
                sum: f64::from_bits(data.sum.load(Ordering::Relaxed)),
            },
        }
    }
}

#[derive(Serialize)]
struct FamilySnapshot<'a> {
    name: &'a str,
    help: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    labels: &'a [String],
    buckets: &'a [f64],
    samples: Vec<Sample>,
}

#[derive(Serialize, Default)]
struct Sample {
    labels: Vec<String>,
    value: f64,
    counts: Vec<u64>,
    count: u64,
    sum: f64,
}

/// The registry of the service the calling thread works for; outside any service (a unit
/// test), one that nobody reports.
fn current() -> Arc<Registry> {
    ServiceScope::current_metrics().unwrap_or_else(|| {
        static NOWHERE: OnceLock<Arc<Registry>> = OnceLock::new();
        NOWHERE.get_or_init(Arc::default).clone()
    })
}

/// A counter: a count that only goes up, such as requests served. Its name should end in
/// `_total`.
#[derive(Clone)]
pub struct Counter(Arc<Family>);

/// One labelled series of a [`Counter`].
#[derive(Clone)]
pub struct CounterChild(Arc<Child>);

/// Registers a counter with these label names for the current service.
pub fn counter(name: &str, help: &str, labels: &[&str]) -> Counter {
    Counter(current().family(name, help, Kind::Counter, labels))
}

impl Counter {
    /// The series with these label values, in the order of the label names.
    pub fn with(&self, values: &[&str]) -> CounterChild {
        CounterChild(self.0.child(values))
    }
}

impl CounterChild {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        if let Child::Counter(value) = &*self.0 {
            value.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// A gauge: a value that goes up and down, such as connections open.
#[derive(Clone)]
pub struct Gauge(Arc<Family>);

/// One labelled series of a [`Gauge`].
#[derive(Clone)]
pub struct GaugeChild(Arc<Child>);

/// Registers a gauge with these label names for the current service.
pub fn gauge(name: &str, help: &str, labels: &[&str]) -> Gauge {
    Gauge(current().family(name, help, Kind::Gauge, labels))
}

impl Gauge {
    /// The series with these label values, in the order of the label names.
    pub fn with(&self, values: &[&str]) -> GaugeChild {
        GaugeChild(self.0.child(values))
    }
}

impl GaugeChild {
    /// Sets the value.
    pub fn set(&self, value: i64) {
        if let Child::Gauge(gauge) = &*self.0 {
            gauge.store(value, Ordering::Relaxed);
        }
    }

    /// Adds `delta`, which may be negative.
    pub fn add(&self, delta: i64) {
        if let Child::Gauge(gauge) = &*self.0 {
            gauge.fetch_add(delta, Ordering::Relaxed);
        }
    }
}

/// A histogram: how many observations fell at or below each bound, their count and sum, such
/// as request durations.
#[derive(Clone)]
pub struct Histogram(Arc<Family>);

/// One labelled series of a [`Histogram`].
#[derive(Clone)]
pub struct HistogramChild(Arc<Child>);

/// Registers a histogram with these label names and bucket upper bounds (ascending; `+Inf` is
/// added by the host) for the current service.
pub fn histogram(name: &str, help: &str, labels: &[&str], bounds: &[f64]) -> Histogram {
    let mut bounds: Vec<f64> = bounds.iter().copied().filter(|b| b.is_finite()).collect();
    bounds.sort_by(f64::total_cmp);
    bounds.dedup();
    Histogram(current().family(name, help, Kind::Histogram(bounds), labels))
}

impl Histogram {
    /// The series with these label values, in the order of the label names.
    pub fn with(&self, values: &[&str]) -> HistogramChild {
        HistogramChild(self.0.child(values))
    }
}

impl HistogramChild {
    /// Records one observation.
    pub fn observe(&self, value: f64) {
        let Child::Histogram(data) = &*self.0 else {
            return;
        };
        // Above every bound it counts only in the host's +Inf bucket, which is the count.
        if let Some(bucket) = data.bounds.iter().position(|bound| value <= *bound) {
            data.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        data.count.fetch_add(1, Ordering::Relaxed);
        let _ = data
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(registry: &Registry) -> serde_json::Value {
        serde_json::from_str(&registry.snapshot()).unwrap()
    }

    #[test]
    fn counts_gauges_and_buckets_come_out_in_the_snapshot() {
        let registry = Registry::default();
        let requests =
            Counter(registry.family("requests_total", "Requests", Kind::Counter, &["class"]));
        requests.with(&["2xx"]).add(3);
        requests.with(&["5xx"]).inc();
        let open = Gauge(registry.family("open", "Open", Kind::Gauge, &[]));
        open.with(&[]).add(2);
        open.with(&[]).add(-1);
        let took = Histogram(registry.family(
            "took_seconds",
            "Took",
            Kind::Histogram(vec![0.1, 1.0]),
            &[],
        ));
        for value in [0.05, 0.5, 0.7, 5.0] {
            took.with(&[]).observe(value);
        }
        let families = snapshot(&registry);
        assert_eq!(
            families[0]["samples"][0]["labels"],
            serde_json::json!(["2xx"])
        );
        assert_eq!(families[0]["samples"][0]["value"], 3.0);
        assert_eq!(families[0]["samples"][1]["value"], 1.0);
        assert_eq!(families[1]["samples"][0]["value"], 1.0);
        assert_eq!(families[2]["type"], "histogram");
        assert_eq!(
            families[2]["samples"][0]["counts"],
            serde_json::json!([1, 2])
        );
        assert_eq!(families[2]["samples"][0]["count"], 4);
        assert_eq!(families[2]["samples"][0]["sum"], 6.25);
    }

    #[test]
    fn a_name_registered_twice_is_one_metric_unless_it_changes_kind() {
        let registry = Registry::default();
        let a = Counter(registry.family("x_total", "X", Kind::Counter, &[]));
        let b = Counter(registry.family("x_total", "X", Kind::Counter, &[]));
        a.with(&[]).inc();
        b.with(&[]).inc();
        let clash = Gauge(registry.family("x_total", "X", Kind::Gauge, &[]));
        clash.with(&[]).set(9);
        let bad = Counter(registry.family("9bad", "bad", Kind::Counter, &["service"]));
        bad.with(&[]).inc();
        let families = snapshot(&registry);
        assert_eq!(families.as_array().unwrap().len(), 1);
        assert_eq!(families[0]["samples"][0]["value"], 2.0);
    }
}
