//! The agents a run may name: the components of the `agent` world bundled into the binary and
//! those of the operator's `agents_dir`, each compiled once, the first time a run asks for it.

use crate::sandbox::{AgentComponent, SandboxEngine};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::OnceCell;

type Compiled = OnceCell<Result<Arc<AgentComponent>, String>>;

pub(crate) struct AgentCatalog {
    engine: Arc<SandboxEngine>,
    agents: BTreeMap<String, (Arc<[u8]>, Compiled)>,
}

impl AgentCatalog {
    pub(crate) fn bundled(engine: Arc<SandboxEngine>) -> Self {
        let agents = crate::sandbox::bundled::BUNDLED_AGENTS
            .iter()
            .map(|(name, bytes)| ((*name).to_owned(), (Arc::from(*bytes), OnceCell::new())))
            .collect();
        Self { engine, agents }
    }

    /// Adds every `NAME.wasm` of `dir` as agent `NAME` (`_` read as `-`); one of the same name
    /// as a bundled agent replaces it. A file that cannot be read is skipped with a warning;
    /// one that is not an agent fails the runs that name it, with the reason.
    pub(crate) fn add_dir(&mut self, dir: &Path) {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "cannot read the agents directory");
                return;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(stem) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|_| path.extension().is_some_and(|e| e == "wasm"))
            else {
                continue;
            };
            let name = stem.replace('_', "-");
            match std::fs::read(&path) {
                Ok(bytes) => {
                    self.agents
                        .insert(name, (Arc::from(bytes), OnceCell::new()));
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot read an agent");
                }
            }
        }
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.agents.keys().map(String::as_str)
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.agents.contains_key(name)
    }

    /// The compiled agent; compiling runs off the async workers, once however many ask.
    pub(crate) async fn get(&self, name: &str) -> Result<Arc<AgentComponent>, String> {
        let Some((bytes, cell)) = self.agents.get(name) else {
            return Err(format!("there is no agent `{name}`"));
        };
        cell.get_or_init(|| async {
            let (engine, bytes, owned) = (self.engine.clone(), bytes.clone(), name.to_owned());
            tokio::task::spawn_blocking(move || AgentComponent::load(&engine, &owned, &bytes))
                .await
                .map_err(|e| format!("compiling agent `{name}` failed: {e}"))?
                .map(Arc::new)
                .map_err(|e| {
                    tracing::error!(agent = name, error = %e, "an agent cannot be loaded");
                    format!("agent `{name}` cannot be loaded ({})", e.code())
                })
        })
        .await
        .clone()
    }
}
