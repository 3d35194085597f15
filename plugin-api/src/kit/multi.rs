//! [`MultiService`]: several services run as one, like Twisted's `MultiService`.

use crate::kit::error::Result;
use crate::kit::service::{Service, Tasks};

/// A service made of child services, started in the order they were added and stopped in
/// reverse, so a service that others depend on is added first and stopped last.
pub struct MultiService {
    name: String,
    children: Vec<Box<dyn Service>>,
}

impl MultiService {
    /// An empty collection named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            children: Vec::new(),
        }
    }

    /// Adds a child; it starts after every child added before it.
    pub fn with(mut self, child: impl Service) -> Self {
        self.children.push(Box::new(child));
        self
    }
}

impl Service for MultiService {
    fn name(&self) -> &str {
        &self.name
    }

    fn privileged_start(&mut self) -> Result<()> {
        for child in &mut self.children {
            child
                .privileged_start()
                .map_err(|e| format!("{}: {e}", child.name()))?;
        }
        Ok(())
    }

    fn start(&mut self, tasks: &Tasks) -> Result<()> {
        for child in &mut self.children {
            child
                .start(&tasks.child())
                .map_err(|e| format!("{}: {e}", child.name()))?;
        }
        Ok(())
    }

    /// Reloads every child that can, in order; `None` if none can.
    fn reload(&mut self) -> Option<Result<()>> {
        let mut reloaded = None;
        for child in &mut self.children {
            let outcome = child
                .reload()
                .map(|r| r.map_err(|e| format!("{}: {e}", child.name()).into()));
            reloaded = match (reloaded, outcome) {
                (Some(Err(first)), _) => Some(Err(first)),
                (earlier, None) => earlier,
                (_, Some(outcome)) => Some(outcome),
            };
        }
        reloaded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Records when it starts and when its task sees the shutdown request.
    struct Recorder {
        name: &'static str,
        events: Arc<Mutex<Vec<String>>>,
    }

    impl Service for Recorder {
        fn name(&self) -> &str {
            self.name
        }

        fn start(&mut self, tasks: &Tasks) -> Result<()> {
            self.events
                .lock()
                .unwrap()
                .push(format!("start {}", self.name));
            let (name, events, shutdown) = (self.name, self.events.clone(), tasks.shutdown());
            tasks.spawn(async move {
                shutdown.requested().await;
                // Yield so a sibling stopped at the same time would interleave here.
                tokio::task::yield_now().await;
                events.lock().unwrap().push(format!("stop {name}"));
                Ok(())
            });
            Ok(())
        }
    }

    #[test]
    fn starts_children_in_order_and_stops_them_in_reverse() {
        let events = Arc::new(Mutex::new(Vec::new()));
        let recorder = |name| Recorder {
            name,
            events: events.clone(),
        };
        let mut service = MultiService::new("all")
            .with(recorder("a"))
            .with(recorder("b"))
            .with(recorder("c"));
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let _entered = runtime.enter();
        let tasks = Tasks::root(Arc::new(|ended| {
            panic!("no child ends by itself: {ended:?}")
        }));
        service.start(&tasks).unwrap();
        runtime.block_on(tasks.stop());
        assert_eq!(
            *events.lock().unwrap(),
            ["start a", "start b", "start c", "stop c", "stop b", "stop a"]
        );
    }
}
