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
}
