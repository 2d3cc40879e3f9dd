//! A remote sidecar's plugins, by content digest: shipped by its orchestrator once, kept on
//! disk and compiled into this sidecar's own cache.

use super::SidecarError;
use crate::sandbox::{Catalog, Plugin};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub struct PluginStore {
    catalog: Catalog,
    /// `<digest>.wasm` for every plugin shipped here.
    dir: PathBuf,
    loaded: Mutex<HashMap<String, Arc<Plugin>>>,
}

/// A digest as the sandbox writes them: lowercase hex (it names a file here).
fn is_digest(digest: &str) -> bool {
    (16..=128).contains(&digest.len())
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl PluginStore {
    pub fn new(catalog: Catalog, dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            catalog,
            dir,
            loaded: Mutex::default(),
        })
    }

    /// The plugin `name` with `digest`, loaded from what was shipped before; else the
    /// orchestrator is told to ship it.
    pub async fn get(&self, name: &str, digest: &str) -> Result<Arc<Plugin>, SidecarError> {
        if !is_digest(digest) {
            return Err(SidecarError::Invalid(format!(
                "`{digest}` is not a plugin digest"
            )));
        }
        let key = format!("{name}@{digest}");
        if let Some(plugin) = self.lock().get(&key) {
            return Ok(plugin.clone());
        }
        let path = self.dir.join(format!("{digest}.wasm"));
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SidecarError::PluginMissing(digest.to_owned()));
            }
            Err(e) => return Err(SidecarError::Internal(format!("cannot read a plugin: {e}"))),
        };
        self.load(name, digest, &bytes).await
    }

    /// Keeps and loads a shipped plugin; bytes that do not hash to `digest` are refused.
    pub async fn put(&self, name: &str, digest: &str, bytes: &[u8]) -> Result<(), SidecarError> {
        if !is_digest(digest) {
            return Err(SidecarError::Invalid(format!(
                "`{digest}` is not a plugin digest"
            )));
        }
        let actual = crate::sandbox::plugin_digest(bytes);
        if actual != digest {
            return Err(SidecarError::Invalid(format!(
                "the plugin shipped as {digest} hashes to {actual}"
            )));
        }
        self.load(name, digest, bytes).await?;
        // Written aside and renamed in: a reader never sees half a plugin.
        let path = self.dir.join(format!("{digest}.wasm"));
        let partial = self
            .dir
            .join(format!(".{digest}.{}.part", uuid::Uuid::new_v4().simple()));
        let written = tokio::fs::write(&partial, bytes).await;
        let renamed = match written {
            Ok(()) => tokio::fs::rename(&partial, &path).await,
            Err(e) => Err(e),
        };
        if let Err(e) = renamed {
            let _ = tokio::fs::remove_file(&partial).await;
            tracing::warn!(digest, error = %e, "cannot keep a shipped plugin on disk");
        }
        Ok(())
    }

    async fn load(
        &self,
        name: &str,
        digest: &str,
        bytes: &[u8],
    ) -> Result<Arc<Plugin>, SidecarError> {
        if !crate::sandbox::is_valid_plugin_name(name) {
            return Err(SidecarError::Invalid(format!(
                "`{name}` is not a plugin name"
            )));
        }
        let plugin = self.catalog.load_bytes(name, bytes).await.map_err(|e| {
            SidecarError::Invalid(format!("plugin `{name}` cannot be used ({})", e.code()))
        })?;
        let plugin = Arc::new(plugin);
        self.lock()
            .insert(format!("{name}@{digest}"), plugin.clone());
        Ok(plugin)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Plugin>>> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }
}
