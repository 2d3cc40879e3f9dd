//! The agents a run may name: the components of the `agent` world bundled into the binary,
//! each compiled once, the first time a run asks for it.

use crate::sandbox::{AgentComponent, SandboxEngine};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::OnceCell;

pub(crate) struct AgentCatalog {
    engine: Arc<SandboxEngine>,
    agents: BTreeMap<&'static str, (&'static [u8], OnceCell<Result<Arc<AgentComponent>, String>>)>,
}

impl AgentCatalog {
    pub(crate) fn bundled(engine: Arc<SandboxEngine>) -> Self {
        let agents = crate::sandbox::bundled::BUNDLED_AGENTS
            .iter()
            .map(|(name, bytes)| (*name, (*bytes, OnceCell::new())))
            .collect();
        Self { engine, agents }
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.agents.keys().copied()
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.agents.contains_key(name)
    }

    /// The compiled agent; compiling runs off the async workers, once however many ask.
    pub(crate) async fn get(&self, name: &str) -> Result<Arc<AgentComponent>, String> {
        let Some((name, (bytes, cell))) = self.agents.get_key_value(name) else {
            return Err(format!("there is no agent `{name}`"));
        };
        let (name, bytes) = (*name, *bytes);
        cell.get_or_init(|| async {
            let engine = self.engine.clone();
            tokio::task::spawn_blocking(move || AgentComponent::load(&engine, name, bytes))
                .await
                .map_err(|e| format!("compiling agent `{name}` failed: {e}"))?
                .map(Arc::new)
                .map_err(|e| {
                    tracing::error!(agent = name, error = %e, "a bundled agent cannot be loaded");
                    format!("agent `{name}` cannot be loaded")
                })
        })
        .await
        .clone()
    }
}
