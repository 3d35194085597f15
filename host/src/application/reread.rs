//! SIGHUP with an application file: read it again and bring the running services in line with
//! it. A service declared as before keeps running untouched, connections and all (and gets the
//! `reload/1` extension, if it offers it); a removed one stops; an added one starts; a changed
//! one (other options, or its library replaced) is made as declared now, then the old one is
//! stopped, then the new one started, so its sockets are closed while the old one drains; one
//! its plugin refuses to make goes on running as before. A file with any problem changes nothing.

use super::{stop, RELOAD_PATIENCE};
use crate::app::Declared;
use crate::instances::{self, lock, Instance, Maker, Running};
use std::time::Duration;
use tracing::{error, info};

pub fn apply(declared: &Declared, running: &Running, maker: &Maker, stop_timeout: Duration) {
    let file = declared.path.display();
    let wanted = match declared.reread() {
        Ok(wanted) => wanted,
        Err(problems) => {
            for problem in &problems {
                error!("{problem}");
            }
            error!(
                "Received SIGHUP, but {file} has {} problem{}; nothing changed.",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            return;
        }
    };
    let current: Vec<Instance> = running.list().clone();
    let kept = |instance: &Instance| wanted.iter().any(|spec| instance.spec.runs_as(spec));
    let (unchanged, changed_or_gone): (Vec<Instance>, Vec<Instance>) =
        current.into_iter().partition(|instance| kept(instance));
    // Stopping it would wait for that reload, perhaps for ever, and hold up every later SIGHUP.
    if let Some(busy) = changed_or_gone
        .iter()
        .find(|instance| instance.is_reloading())
    {
        error!(
            "Received SIGHUP, but {} would stop, and its last reload has not returned; nothing changed.",
            busy.name()
        );
        return;
    }

    // Made before anything stops, so that a changed service whose new options its plugin
    // refuses goes on serving as before.
    let mut made = Vec::new();
    let mut failed = Vec::new();
    for spec in wanted
        .iter()
        .filter(|spec| !unchanged.iter().any(|i| i.spec.runs_as(spec)))
    {
        match maker.make(spec.clone()) {
            Ok(instance) => made.push(instance),
            Err(message) => {
                match changed_or_gone.iter().any(|i| i.name() == spec.name) {
                    true => error!("{message}; it goes on running as before."),
                    false => error!("{message}"),
                }
                failed.push(spec.name.clone());
            }
        }
    }
    let (outgoing, not_replaced): (Vec<Instance>, Vec<Instance>) = changed_or_gone
        .into_iter()
        .partition(|instance| !failed.iter().any(|name| name == instance.name()));

    // Out first, in reverse, so that a changed service's sockets are free for its successor.
    running
        .list()
        .retain(|instance| outgoing.iter().all(|out| out.id != instance.id));
    for instance in outgoing.iter().rev() {
        stop(instance, stop_timeout);
    }
    let mut started = Vec::new();
    for instance in made {
        let name = instance.name().to_string();
        match start(instance, running) {
            Ok(instance) => started.push(instance),
            Err(message) => {
                error!("{message}");
                failed.push(name);
            }
        }
    }
    if running.is_stopping() {
        info!("Received SIGHUP, but host is stopping: {file} was not applied in full.");
        return;
    }
    instances::reload(&unchanged, RELOAD_PATIENCE);

    // In the file's order; a service that ended meanwhile (and was dropped from the list by
    // the main loop) stays gone. Checked under the list's lock: if the host began to stop
    // meanwhile, the services it stops are those in the list now.
    {
        let mut list = running.list();
        if running.is_stopping() {
            return;
        }
        let still_running: Vec<u64> = list.iter().map(|i| i.id).collect();
        let mut next = Vec::with_capacity(wanted.len());
        for spec in &wanted {
            let same_name = |i: &&Instance| i.name() == spec.name && still_running.contains(&i.id);
            if let Some(instance) =
                started
                    .iter()
                    .chain(&not_replaced)
                    .find(same_name)
                    .or_else(|| {
                        unchanged
                            .iter()
                            .filter(|i| i.spec.runs_as(spec))
                            .find(same_name)
                    })
            {
                let mut instance = instance.clone();
                instance.spec.on_failure = spec.on_failure;
                next.push(instance);
            }
        }
        *list = next;
    }
    running.forget_failures(|name| wanted.iter().any(|spec| spec.name == name));
    let names = |instances: &[Instance]| -> Vec<String> {
        instances.iter().map(|i| i.name().to_string()).collect()
    };
    let (gone, restarted): (Vec<String>, Vec<String>) = names(&outgoing)
        .into_iter()
        .partition(|name| !wanted.iter().any(|spec| &spec.name == name));
    let added: Vec<&str> = wanted
        .iter()
        .map(|spec| spec.name.as_str())
        .filter(|name| !restarted.iter().any(|r| r == name))
        .filter(|name| !unchanged.iter().any(|i| i.name() == *name))
        .filter(|name| !failed.iter().any(|f| f == name))
        .collect();
    let list = |names: &[&str]| match names {
        [] => "none".to_string(),
        names => names.join(", "),
    };
    info!(
        "Received SIGHUP, re-read {file}: added {}; removed {}; restarted {}; unchanged {}{}.",
        list(&added),
        list(&as_strs(&gone)),
        list(&as_strs(&restarted)),
        list(&as_strs(&names(&unchanged))),
        match failed.as_slice() {
            [] => String::new(),
            failed => format!("; failed to start {}", failed.join(", ")),
        }
    );
}

/// Binds and starts a service made after the host started: with the privileges the host has
/// now (a port below 1024 after `--uid` cannot be bound). It is in `running`'s list while it
/// starts, as at the first start; one the host began to stop meanwhile is stopped again.
fn start(instance: Instance, running: &Running) -> Result<Instance, String> {
    if running.is_stopping() {
        stop(&instance, Duration::ZERO);
        return Err(format!(
            "{} was not started: host is stopping",
            instance.name()
        ));
    }
    running.list().push(instance.clone());
    let outcome = {
        let mut service = lock(&instance.service);
        service
            .privileged_start()
            .into_result()
            .and_then(|()| service.start().into_result())
    };
    let outcome = match outcome {
        Ok(()) if running.mark_running(&instance) => return Ok(instance),
        Ok(()) => format!("{} was not started: host is stopping", instance.name()),
        Err(e) => format!("{} failed to start: {e}", instance.name()),
    };
    running.list().retain(|i| i.id != instance.id);
    stop(&instance, Duration::ZERO);
    Err(outcome)
}

fn as_strs(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).collect()
}
