//! `/services`: each running service as JSON, for people and scripts.

use crate::instances::Running;
use std::time::{Duration, UNIX_EPOCH};

/// How long to wait for a service busy with a reload or a stop before leaving its endpoints out.
const SERVICE_PATIENCE: Duration = Duration::from_millis(200);

pub fn render(running: &Running) -> String {
    let instances = running.list().clone();
    let services: Vec<serde_json::Value> = instances
        .iter()
        .map(|instance| {
            let about: serde_json::Value = instance
                .ask(plugin_api::abi::ABOUT, SERVICE_PATIENCE)
                .and_then(|about| serde_json::from_str(&about).ok())
                .unwrap_or_default();
            let status = instance.status();
            let seconds = |time: std::time::SystemTime| {
                time.duration_since(UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64())
            };
            serde_json::json!({
                "name": instance.name(),
                "plugin": instance.spec.record.tapname,
                "plugin_version": about.get("plugin_version"),
                "plugin_api_version": instance.spec.record.interface_version,
                "library": instance.spec.path,
                "state": status.state.name(),
                "state_since": seconds(status.since),
                "started": status.started.map(seconds),
                "endpoints": about.get("endpoints"),
            })
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&services).expect("JSON always serializes");
    text.push('\n');
    text
}
