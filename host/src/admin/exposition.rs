//! `/metrics`: the process, the host, and every service's metrics in the OpenMetrics text format
//! (prometheus-client encodes it). A service's metrics come from the kit inside its plugin
//! (`metrics/1`), each sample labelled with the service's name; families that several
//! services share (the serving loop's, two services of one plugin) are encoded once.

use super::health::Health;
use crate::instances::Running;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a scrape waits for a service busy with a reload or a stop before leaving it out.
const SERVICE_PATIENCE: Duration = Duration::from_millis(200);

/// One metric family as the kit reports it.
#[derive(Debug, Deserialize)]
struct Family {
    name: String,
    help: String,
    #[serde(rename = "type")]
    kind: String,
    labels: Vec<String>,
    buckets: Vec<f64>,
    samples: Vec<Sample>,
}

#[derive(Debug, Deserialize)]
struct Sample {
    labels: Vec<String>,
    value: f64,
    counts: Vec<u64>,
    count: u64,
    sum: f64,
}

/// The whole exposition, as served. Blocks for at most [`SERVICE_PATIENCE`] per busy service.
pub fn render(health: &Health, running: &Running) -> String {
    let instances = running.list().clone();
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
    for instance in &instances {
        let plugin_version = instance
            .ask(plugin_api::abi::ABOUT, SERVICE_PATIENCE)
            .and_then(|about| serde_json::from_str::<serde_json::Value>(&about).ok())
            .and_then(|about| about["plugin_version"].as_str().map(str::to_string))
            .unwrap_or_else(|| "unknown".to_string());
        services.info.push(vec![
            ("service".to_string(), instance.name().to_string()),
            ("plugin".to_string(), instance.spec.record.tapname.clone()),
            ("plugin_version".to_string(), plugin_version),
            (
                "plugin_api_version".to_string(),
                instance.spec.record.interface_version.clone(),
            ),
            (
                "library".to_string(),
                instance.spec.path.display().to_string(),
            ),
            (
                "state".to_string(),
                instance.status().state.name().to_string(),
            ),
        ]);
        let snapshot = instance
            .ask(plugin_api::abi::METRICS, SERVICE_PATIENCE)
            .and_then(|json| serde_json::from_str::<Vec<Family>>(&json).ok())
            .unwrap_or_default();
        for family in snapshot {
            services.add(instance.name(), family);
        }
    }
    registry.register_collector(Box::new(services));
    registry.register_collector(Box::new(Process {
        started_at: health.started_at,
    }));
    let mut text = String::new();
    // Writing to a String cannot fail; an error here would be an encoder bug.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

/// Every service's families, merged by name.
#[derive(Debug, Default)]
struct ServiceFamilies {
    /// One label set per service for `host_service_info`.
    info: Vec<Vec<(String, String)>>,
    families: BTreeMap<String, (Family, Vec<(String, Sample)>)>,
}

impl ServiceFamilies {
    fn add(&mut self, service: &str, mut family: Family) {
        let samples: Vec<(String, Sample)> = std::mem::take(&mut family.samples)
            .into_iter()
            .map(|sample| (service.to_string(), sample))
            .collect();
        match self.families.get_mut(&family.name) {
            // The same name from two plugins with different shapes cannot be one family.
            Some((first, _)) if first.kind != family.kind || first.labels != family.labels => {
                tracing::debug!(
                    "metric {} differs between services; {service}'s is left out",
                    family.name
                )
            }
            Some((_, all)) => all.extend(samples),
            None => {
                self.families.insert(family.name.clone(), (family, samples));
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
            let mut descriptor = encoder.encode_descriptor(name, &family.help, None, kind)?;
            for (service, sample) in samples {
                let mut labels = vec![("service".to_string(), service.clone())];
                labels.extend(
                    family
                        .labels
                        .iter()
                        .cloned()
                        .zip(sample.labels.iter().cloned()),
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

/// The process's own metrics, with the names Prometheus client libraries use, read from /proc.
#[derive(Debug)]
struct Process {
    started_at: SystemTime,
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = |encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64| {
            ConstGauge::new(value).encode(encoder.encode_descriptor(
                name,
                help,
                None,
                MetricType::Gauge,
            )?)
        };
        let start = self
            .started_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds.",
            start,
        )?;
        if let Some(stat) = ProcStat::read() {
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                stat.resident_bytes,
            )?;
            gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                stat.virtual_bytes,
            )?;
            let cpu = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent, in seconds.",
                None,
                MetricType::Counter,
            )?;
            prometheus_client::metrics::counter::ConstCounter::new(stat.cpu_seconds).encode(cpu)?;
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors.",
                fds.count() as i64,
            )?;
        }
        if let Ok((soft, _)) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                i64::try_from(soft).unwrap_or(i64::MAX),
            )?;
        }
        Ok(())
    }
}

/// What /proc/self/stat says about memory and CPU time.
struct ProcStat {
    resident_bytes: i64,
    virtual_bytes: i64,
    cpu_seconds: f64,
}

impl ProcStat {
    fn read() -> Option<Self> {
        use nix::unistd::{sysconf, SysconfVar};
        let text = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name, in parentheses, may hold spaces: count fields after its end.
        let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<i64>().ok();
        let ticks = sysconf(SysconfVar::CLK_TCK).ok()??;
        let page = sysconf(SysconfVar::PAGE_SIZE).ok()??;
        Some(Self {
            cpu_seconds: (field(14)? + field(15)?) as f64 / ticks as f64,
            virtual_bytes: field(23)?,
            resident_bytes: field(24)? * page,
        })
    }
}
