//! SIGHUP with an application file: read it again and bring the running services in line with
//! it. A service declared as before keeps running untouched, connections and all (and gets the
//! `reload/1` extension, if it offers it); a removed one stops; an added one starts; a changed
//! one (other options, or its library replaced) is stopped, then started as declared now, so
//! its sockets are closed for the moment in between. A file with any problem changes nothing.

use super::{stop, RELOAD_PATIENCE};
use crate::app::Declared;
use crate::instances::{self, lock, Instance, Maker, Running, State};
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
    let (unchanged, outgoing): (Vec<Instance>, Vec<Instance>) =
        current.into_iter().partition(|instance| kept(instance));
    // Stopping it would wait for that reload, perhaps for ever, and hold up every later SIGHUP.
    if let Some(busy) = outgoing.iter().find(|instance| instance.is_reloading()) {
        error!(
            "Received SIGHUP, but {} would stop, and its last reload has not returned; nothing changed.",
            busy.name()
        );
        return;
    }

    // Out first, in reverse, so that a changed service's sockets are free for its successor.
    running
        .list()
        .retain(|instance| outgoing.iter().all(|out| out.id != instance.id));
    for instance in outgoing.iter().rev() {
        stop(instance, stop_timeout);
    }
    let mut started = Vec::new();
    let mut failed = Vec::new();
    for spec in wanted
        .iter()
        .filter(|spec| !unchanged.iter().any(|i| i.spec.runs_as(spec)))
    {
        match maker.make(spec.clone()).and_then(start) {
            Ok(instance) => started.push(instance),
            Err(message) => {
                error!("{message}");
                failed.push(spec.name.clone());
            }
        }
    }
    instances::reload(&unchanged, RELOAD_PATIENCE);

    // In the file's order; a service that ended meanwhile (and was dropped from the list by
    // the main loop) stays gone.
    {
        let mut list = running.list();
        let still_running: Vec<u64> = list.iter().map(|i| i.id).collect();
        let mut next = Vec::with_capacity(wanted.len());
        for spec in &wanted {
            if let Some(index) = started.iter().position(|i| i.spec.name == spec.name) {
                next.push(started.remove(index));
            } else if let Some(instance) = unchanged
                .iter()
                .find(|i| i.spec.runs_as(spec) && still_running.contains(&i.id))
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
/// now (a port below 1024 after `--uid` cannot be bound).
fn start(instance: Instance) -> Result<Instance, String> {
    let outcome = {
        let mut service = lock(&instance.service);
        service
            .privileged_start()
            .into_result()
            .and_then(|()| service.start().into_result())
    };
    match outcome {
        Ok(()) => {
            instance.set_state(State::Running);
            Ok(instance)
        }
        Err(e) => {
            stop(&instance, Duration::ZERO);
            Err(format!("{} failed to start: {e}", instance.name()))
        }
    }
}

fn as_strs(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).collect()
}
