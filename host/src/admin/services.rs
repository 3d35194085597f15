//! `/services`: each service as JSON, for people and scripts; under a supervisor, each
//! worker's, with the worker's number.

use super::Source;

pub fn render(sources: &[Source]) -> String {
    let services: Vec<serde_json::Value> = sources
        .iter()
        .flat_map(|source| {
            source.report.services.iter().map(move |service| {
                let mut entry = serde_json::json!({
                    "name": service.name,
                    "plugin": service.plugin,
                    "plugin_version": service.plugin_version,
                    "plugin_api_version": service.plugin_api_version,
                    "library": service.library,
                    "state": service.state,
                    "state_since": service.state_since,
                    "started": service.started,
                    "endpoints": service.endpoints,
                });
                if let Some(worker) = source.worker {
                    entry["worker"] = worker.into();
                }
                entry
            })
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&services).expect("JSON always serializes");
    text.push('\n');
    text
}
