//! `/metrics`: the process, the host, and every service's metrics in the OpenMetrics text format
//! (prometheus-client encodes it). A service's metrics come from the kit inside its plugin
//! (`metrics/1`), each sample labelled with the service's name; families that several
//! services share (the serving loop's, two services of one plugin) are encoded once.

use super::health::Health;
use super::report::{Family, ProcessReport, Sample};
use super::Source;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelValue, EncodeMetric, LabelValueEncoder, NoLabelSet,
};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The whole exposition of `sources`: this process's services, or each worker's.
pub fn render(health: &Health, own: &ProcessReport, sources: &[Source]) -> String {
    let mut registry = Registry::default();
    registry.register(
        "host_build",
        "The host's version",
        Info::new(vec![(
            "version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        )]),
    );
    registry.register(
        "host_ready",
        "Whether every service has started and no shutdown has begun (as /readyz)",
        ConstGauge::new(i64::from(health.ready().is_ok())),
    );
    registry.register(
        "host_healthy",
        "Whether the main loop runs and no service has failed (as /healthz)",
        ConstGauge::new(i64::from(health.healthy().is_ok())),
    );
    let mut services = ServiceFamilies::default();
    // A master's own figures are labelled as the master's beside its workers'.
    let own_labels = match sources.iter().any(|s| s.worker.is_some()) {
        true => vec![label("worker", "master")],
        false => Vec::new(),
    };
    let mut processes = vec![(own_labels, own.clone())];
    for source in sources {
        let worker: Scope = source
            .worker
            .iter()
            .map(|id| label("worker", &id.to_string()))
            .collect();
        for service in &source.report.services {
            let mut labels = vec![
                label("service", &service.name),
                label("plugin", &service.plugin),
                label(
                    "plugin_version",
                    service.plugin_version.as_deref().unwrap_or("unknown"),
                ),
                label("plugin_api_version", &service.plugin_api_version),
                label("library", &service.library),
                label("state", &service.state),
            ];
            labels.extend(worker.iter().cloned());
            services.info.push(labels);
            let mut scope = vec![label("service", &service.name)];
            scope.extend(worker.iter().cloned());
            for family in &service.families {
                services.add(&scope, family);
            }
        }
        if source.worker.is_some() {
            processes.push((worker, source.report.process.clone()));
        }
    }
    registry.register_collector(Box::new(services));
    registry.register_collector(Box::new(Processes(processes)));
    let mut text = String::new();
    // Writing to a String cannot fail; an error here would be an encoder bug.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

/// The labels that say whose a sample is: service and, under a supervisor, worker.
type Scope = Vec<(String, Value)>;

fn label(name: &str, value: &str) -> (String, Value) {
    (name.to_string(), Value(value.to_string()))
}

/// A label value, escaped as the exposition format asks: a value holding `"`, `\` or a
/// newline (a library's path may) would otherwise end the label early and spoil the whole
/// scrape. prometheus-client writes label values as they are.
#[derive(Debug, Clone)]
struct Value(String);

impl EncodeLabelValue for Value {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(&escaped(&self.0))
    }
}

/// `text` with `\`, `"` and newlines escaped, for a label value or a HELP line (which
/// prometheus-client writes as it is given, too).
fn escaped(text: &str) -> Cow<'_, str> {
    if !text.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Every service's families, merged by name, each sample with its service's labels.
#[derive(Debug, Default)]
struct ServiceFamilies {
    /// One label set per service for `host_service_info`.
    info: Vec<Scope>,
    /// A family's shape (its first service's), then every service's samples of it.
    families: BTreeMap<String, (Family, Vec<(Scope, Sample)>)>,
}

impl ServiceFamilies {
    fn add(&mut self, scope: &[(String, Value)], family: &Family) {
        let samples = family
            .samples
            .iter()
            .map(|sample| (scope.to_vec(), sample.clone()));
        match self.families.get_mut(&family.name) {
            // The same name from two plugins with different shapes cannot be one family.
            Some((first, _)) if first.kind != family.kind || first.labels != family.labels => {
                tracing::debug!(
                    "metric {} differs between services; one is left out",
                    family.name
                )
            }
            Some((_, all)) => all.extend(samples),
            None => {
                let shape = Family {
                    samples: Vec::new(),
                    ..family.clone()
                };
                self.families
                    .insert(family.name.clone(), (shape, samples.collect()));
            }
        }
    }
}

impl Collector for ServiceFamilies {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if !self.info.is_empty() {
            let mut metric = encoder.encode_descriptor(
                "host_service",
                "Each service: its plugin, the plugin's version and plugin-api version, its library and state",
                None,
                MetricType::Info,
            )?;
            for labels in &self.info {
                metric.encode_info(labels)?;
            }
        }
        for (family, samples) in self.families.values() {
            let (kind, name) = match family.kind.as_str() {
                // The encoder adds `_total` to a counter's samples itself.
                "counter" => (MetricType::Counter, family.name.trim_end_matches("_total")),
                "gauge" => (MetricType::Gauge, family.name.as_str()),
                "histogram" => (MetricType::Histogram, family.name.as_str()),
                _ => continue,
            };
            let mut descriptor =
                encoder.encode_descriptor(name, &escaped(&family.help), None, kind)?;
            for (scope, sample) in samples {
                let mut labels = scope.clone();
                labels.extend(
                    family
                        .labels
                        .iter()
                        .zip(&sample.labels)
                        .map(|(name, value)| label(name, value)),
                );
                let mut metric = descriptor.encode_family(&labels)?;
                match kind {
                    MetricType::Counter => {
                        metric.encode_counter::<NoLabelSet, _, u64>(&(sample.value as u64), None)?
                    }
                    MetricType::Gauge => metric.encode_gauge(&(sample.value as i64))?,
                    _ => {
                        let mut buckets: Vec<(f64, u64)> = family
                            .buckets
                            .iter()
                            .copied()
                            .zip(sample.counts.iter().copied())
                            .collect();
                        let below: u64 = sample.counts.iter().sum();
                        buckets.push((f64::MAX, sample.count.saturating_sub(below)));
                        metric.encode_histogram::<NoLabelSet>(
                            sample.sum,
                            sample.count,
                            &buckets,
                            None,
                        )?
                    }
                }
            }
        }
        Ok(())
    }
}

/// The processes' own metrics, with the names Prometheus client libraries use: this one, and
/// each worker's, labelled with its number.
#[derive(Debug)]
struct Processes(Vec<(Scope, ProcessReport)>);

impl Collector for Processes {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        type Read = fn(&ProcessReport) -> Option<i64>;
        let gauges: [(&str, &str, Read); 5] = [
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds.",
                |p| Some(p.start_time as i64),
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                |p| p.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                |p| p.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                |p| p.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                |p| p.max_fds,
            ),
        ];
        for (name, help, read) in gauges {
            let mut descriptor = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            match self.0.as_slice() {
                // One process: one sample, unlabelled, as every client library writes it.
                [(labels, process)] if labels.is_empty() => {
                    if let Some(value) = read(process) {
                        ConstGauge::new(value).encode(descriptor)?;
                    }
                }
                all => {
                    for (labels, process) in all {
                        if let Some(value) = read(process) {
                            ConstGauge::new(value).encode(descriptor.encode_family(labels)?)?;
                        }
                    }
                }
            }
        }
        let mut cpu = encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent, in seconds.",
            None,
            MetricType::Counter,
        )?;
        match self.0.as_slice() {
            [(labels, process)] if labels.is_empty() => {
                if let Some(seconds) = process.cpu_seconds {
                    cpu.encode_counter::<NoLabelSet, _, u64>(&seconds, None)?;
                }
            }
            all => {
                for (labels, process) in all {
                    if let Some(seconds) = process.cpu_seconds {
                        cpu.encode_family(labels)?
                            .encode_counter::<NoLabelSet, _, u64>(&seconds, None)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn backslashes_quotes_and_newlines_are_escaped() {
        assert_eq!(super::escaped("plain"), "plain");
        assert_eq!(
            super::escaped("we\"ird\\dir\nnext"),
            "we\\\"ird\\\\dir\\nnext"
        );
    }
}
