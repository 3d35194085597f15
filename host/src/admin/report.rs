//! What the admin endpoint reports, gathered from the services of this process: each service's
//! facts and metric families, and the process's own figures. A worker of a supervisor sends
//! the same report to its master, which serves them all.

use crate::instances::{Running, State};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a report waits for a service busy with a reload before it takes the service's last
/// answer. A service stopping at shutdown holds on while it drains, so it is not waited for.
const SERVICE_PATIENCE: Duration = Duration::from_millis(200);

/// Everything one process reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub services: Vec<ServiceReport>,
    pub process: ProcessReport,
}

/// One service, as `/services` shows it, with its metric families for `/metrics`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceReport {
    pub name: String,
    pub plugin: String,
    pub plugin_version: Option<String>,
    pub plugin_api_version: String,
    pub library: String,
    pub state: String,
    pub state_since: f64,
    pub started: Option<f64>,
    pub endpoints: Vec<String>,
    pub families: Vec<Family>,
}

/// One metric family as the kit reports it (`metrics/1`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Family {
    pub name: String,
    pub help: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub labels: Vec<String>,
    pub buckets: Vec<f64>,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    pub labels: Vec<String>,
    pub value: f64,
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

/// The process's own figures, read from /proc.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcessReport {
    pub start_time: f64,
    pub resident_bytes: Option<i64>,
    pub virtual_bytes: Option<i64>,
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<i64>,
    pub max_fds: Option<i64>,
}

fn seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The report of this process's services; each busy one is given [`SERVICE_PATIENCE`].
pub fn gather(running: &Running, started_at: SystemTime) -> Report {
    let services = running
        .reported()
        .iter()
        .map(|instance| {
            let status = instance.status();
            let patience = match status.state {
                State::Stopping => Duration::ZERO,
                _ => SERVICE_PATIENCE,
            };
            let about: serde_json::Value = instance
                .ask(plugin_api::abi::ABOUT, patience)
                .and_then(|about| serde_json::from_str(&about).ok())
                .unwrap_or_default();
            let families = instance
                .ask(plugin_api::abi::METRICS, patience)
                .and_then(|json| serde_json::from_str(&json).ok())
                .unwrap_or_default();
            ServiceReport {
                name: instance.name().to_string(),
                plugin: instance.spec.record.tapname.clone(),
                plugin_version: about["plugin_version"].as_str().map(str::to_string),
                plugin_api_version: instance.spec.record.interface_version.clone(),
                library: instance.spec.path.display().to_string(),
                state: status.state.name().to_string(),
                state_since: seconds(status.since),
                started: status.started.map(seconds),
                endpoints: about["endpoints"]
                    .as_array()
                    .map(|endpoints| {
                        endpoints
                            .iter()
                            .filter_map(|e| e.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
                families,
            }
        })
        .collect();
    Report {
        services,
        process: ProcessReport::read(started_at),
    }
}

impl ProcessReport {
    pub fn read(started_at: SystemTime) -> Self {
        use nix::unistd::{sysconf, SysconfVar};
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // The command name, in parentheses, may hold spaces: count fields after its end.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| fields.get(n - 3)?.parse::<i64>().ok();
        let ticks = sysconf(SysconfVar::CLK_TCK).ok().flatten();
        let page = sysconf(SysconfVar::PAGE_SIZE).ok().flatten();
        Self {
            start_time: seconds(started_at),
            cpu_seconds: (|| Some((field(14)? + field(15)?) as f64 / ticks? as f64))(),
            virtual_bytes: field(23),
            resident_bytes: (|| Some(field(24)? * page?))(),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|fds| fds.count() as i64),
            max_fds: nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .ok()
                .map(|(soft, _)| i64::try_from(soft).unwrap_or(i64::MAX)),
        }
    }
}
