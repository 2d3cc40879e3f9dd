//! Plugins installed by an admin while the server runs (`PUT /v1/plugins/{name}`).
//!
//! An upload is validated and compiled like any plugin (off the async workers, what it
//! describes within the describe bounds) before anything else happens; a bad one changes
//! nothing, and the same bytes uploaded again are refused at once. A good one is written
//! into the data directory's `plugins/` (loaded after the bundled plugins and `--plugins` at
//! the next start, so it stays in force) and replaces the plugin of that name for the next
//! task. Running tasks keep the plugin they started with.

use super::{Caller, Orchestrator, OrchestratorError};
use crate::sandbox::{Plugin, is_valid_plugin_name};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the API answers about an installed plugin.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InstalledPlugin {
    pub name: String,
    pub digest: String,
    pub tools: Vec<String>,
    /// It took the place of a plugin of the same name.
    pub replaced: bool,
}

impl Orchestrator {
    /// Validates, stores and activates the plugin `name` from `bytes`. Admins only.
    pub async fn install_plugin(
        &self,
        caller: &Caller,
        name: &str,
        bytes: bytes::Bytes,
    ) -> Result<InstalledPlugin, OrchestratorError> {
        if !caller.admin {
            return Err(OrchestratorError::Forbidden {
                reasons: vec!["only admin keys may install plugins".into()],
                decision: serde_json::Value::Null,
            });
        }
        if !is_valid_plugin_name(name) {
            return Err(OrchestratorError::Invalid(format!(
                "`{name}` is not a valid plugin name (use [a-z0-9_-], 1-64 characters)"
            )));
        }
        // Loading runs off the async workers and needs no lock: uploads load side by side.
        let plugin = self.catalog.load_bytes(name, &bytes).await.map_err(|e| {
            OrchestratorError::InvalidPlugin {
                reason: e.code(),
                detail: e.to_string(),
            }
        })?;
        // One install at a time, so the file on disk and the plugin in use are the same one.
        let _installing = self.installing.lock().await;
        let dir = self.config.uploaded_plugins.clone();
        let file_name = format!("{name}.wasm");
        let path = tokio::task::spawn_blocking(move || write_atomically(&dir, &file_name, &bytes))
            .await
            .map_err(|e| OrchestratorError::Internal(e.to_string()))?
            .map_err(|e| OrchestratorError::Internal(format!("cannot store the plugin: {e}")))?;
        let plugin = Arc::new(plugin);
        self.register_tools(&plugin).await;
        let replaced = self.catalog.install(plugin.clone(), path);
        tracing::info!(plugin = name, digest = plugin.digest(), replaced, principal = %caller.principal, "plugin installed");
        Ok(describe(&plugin, replaced))
    }
}

fn describe(plugin: &Plugin, replaced: bool) -> InstalledPlugin {
    InstalledPlugin {
        name: plugin.name().to_owned(),
        digest: format!("sha256:{}", plugin.digest()),
        tools: plugin
            .tools()
            .iter()
            .map(|t| format!("{}.{}", plugin.name(), t.name))
            .collect(),
        replaced,
    }
}

/// Writes `dir/name` so that a reader (or a crash) sees the old file or the new one, never
/// half of one: a temporary file in the same directory, synced, then renamed over it.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(&path).map_err(|e| e.error)?;
    Ok(path)
}
