//! Plugins installed by an admin while the server runs (`PUT /v1/plugins/{name}`).
//!
//! An upload is validated and compiled like any plugin (off the async workers, what it
//! describes within the describe bounds) before anything else happens; a bad one changes
//! nothing, and the same bytes uploaded again are refused at once. A good one is written
//! into the data directory's `plugins/` (loaded after the bundled plugins and `--plugins` at
//! the next start, so it stays in force) and replaces the plugin of that name for the next
//! task. Running tasks keep the plugin they started with.
//!
//! One earlier upload of each name is kept in `plugins/previous/`: the one an upload replaced,
//! or the one an admin deleted (`DELETE /v1/plugins/{name}`, after which the bundled or
//! `--plugins` plugin of that name, if any, is in force again). A rollback swaps the upload in
//! force with the kept one, so a second rollback undoes the first.

use super::{Caller, Orchestrator, OrchestratorError};
use crate::sandbox::{Plugin, PluginOrigin, RemoveUploadError, is_valid_plugin_name};
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

/// What the API answers about a deleted upload.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeletedPlugin {
    pub name: String,
    /// The plugin of that name in force again (`bundled` or `directory`), or `null` when the
    /// name is gone.
    pub restored: Option<PluginOrigin>,
    /// The deleted upload is kept: a rollback installs it again.
    pub rollback_available: bool,
}

/// Where the upload an upload replaced (or a delete removed) is kept, inside the uploads.
const PREVIOUS: &str = "previous";

impl Orchestrator {
    /// Validates, stores and activates the plugin `name` from `bytes`. Admins only.
    pub async fn install_plugin(
        &self,
        caller: &Caller,
        name: &str,
        bytes: bytes::Bytes,
    ) -> Result<InstalledPlugin, OrchestratorError> {
        check_admin_and_name(caller, name, "install plugins")?;
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
        let path = on_disk(move || {
            // The upload it replaces, if one, is kept for a rollback.
            keep_previous(&dir, &file_name)?;
            write_atomically(&dir, &file_name, &bytes)
        })
        .await?;
        let plugin = Arc::new(plugin);
        self.register_tools(&plugin).await;
        let replaced = self.catalog.install(plugin.clone(), path);
        tracing::info!(plugin = name, digest = plugin.digest(), replaced, principal = %caller.principal, "plugin installed");
        self.tools_changed
            .send_modify(|generation| *generation += 1);
        Ok(describe(&plugin, replaced))
    }
}

impl Orchestrator {
    /// Removes the upload `name`: the bundled or `--plugins` plugin it replaced is in force
    /// again for the next task. The upload is kept for a rollback. Admins only.
    pub async fn delete_plugin(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<DeletedPlugin, OrchestratorError> {
        check_admin_and_name(caller, name, "delete plugins")?;
        let _installing = self.installing.lock().await;
        match self.catalog.origin(name) {
            None => return Err(OrchestratorError::NotFound("plugin")),
            Some(PluginOrigin::Uploaded) => {}
            Some(origin) => return Err(not_uploaded(name, origin)),
        }
        let dir = self.config.uploaded_plugins.clone();
        let file_name = format!("{name}.wasm");
        // The file goes first: if it cannot be moved, nothing changed.
        on_disk(move || {
            let kept = dir.join(PREVIOUS);
            std::fs::create_dir_all(&kept)?;
            std::fs::rename(dir.join(&file_name), kept.join(&file_name))?;
            sync_dir(&dir)
        })
        .await?;
        let restored = self.catalog.remove_upload(name).map_err(|e| match e {
            RemoveUploadError::Unknown(_) => OrchestratorError::NotFound("plugin"),
            RemoveUploadError::NotUploaded(name, origin) => not_uploaded(&name, origin),
        })?;
        tracing::info!(plugin = name, ?restored, principal = %caller.principal, "plugin upload deleted");
        self.tools_changed
            .send_modify(|generation| *generation += 1);
        Ok(DeletedPlugin {
            name: name.to_owned(),
            restored,
            rollback_available: true,
        })
    }

    /// Swaps the upload `name` in force (if any) with the one kept: the kept one is loaded
    /// first (a plugin that no longer loads changes nothing), then put in force for the next
    /// task, and the one it displaced is kept in its place. Admins only.
    pub async fn rollback_plugin(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<InstalledPlugin, OrchestratorError> {
        check_admin_and_name(caller, name, "roll plugins back")?;
        let _installing = self.installing.lock().await;
        let dir = self.config.uploaded_plugins.clone();
        let file_name = format!("{name}.wasm");
        let kept_path = dir.join(PREVIOUS).join(&file_name);
        let kept = on_disk(move || match std::fs::read(&kept_path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await?
        .ok_or_else(|| {
            OrchestratorError::NoPreviousVersion(format!(
                "no earlier upload of plugin `{name}` is kept"
            ))
        })?;
        let plugin = self.catalog.load_bytes(name, &kept).await.map_err(|e| {
            OrchestratorError::InvalidPlugin {
                reason: e.code(),
                detail: e.to_string(),
            }
        })?;
        let path = on_disk(move || {
            let displaced = match std::fs::read(dir.join(&file_name)) {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            };
            // What the admin asked for first: a crash after it may lose the displaced upload,
            // never the one rolled back to.
            let path = write_atomically(&dir, &file_name, &kept)?;
            // The upload in force becomes the kept one; with none, nothing is kept any more.
            let previous = dir.join(PREVIOUS);
            match displaced {
                Some(bytes) => {
                    write_atomically(&previous, &file_name, &bytes)?;
                }
                None => std::fs::remove_file(previous.join(&file_name))?,
            }
            Ok(path)
        })
        .await?;
        let plugin = Arc::new(plugin);
        self.register_tools(&plugin).await;
        let replaced = self.catalog.install(plugin.clone(), path);
        tracing::info!(plugin = name, digest = plugin.digest(), principal = %caller.principal, "plugin rolled back");
        self.tools_changed
            .send_modify(|generation| *generation += 1);
        Ok(describe(&plugin, replaced))
    }
}

fn check_admin_and_name(caller: &Caller, name: &str, what: &str) -> Result<(), OrchestratorError> {
    if !caller.admin {
        return Err(OrchestratorError::Forbidden {
            reasons: vec![format!("only admin keys may {what}")],
            decision: serde_json::Value::Null,
        });
    }
    if !is_valid_plugin_name(name) {
        return Err(OrchestratorError::Invalid(format!(
            "`{name}` is not a valid plugin name (use [a-z0-9_-], 1-64 characters)"
        )));
    }
    Ok(())
}

fn not_uploaded(name: &str, origin: PluginOrigin) -> OrchestratorError {
    let origin = match origin {
        PluginOrigin::Bundled => "bundled with the server",
        PluginOrigin::Directory => "from the server's plugins directory",
        PluginOrigin::Uploaded => "uploaded",
    };
    OrchestratorError::NotUploaded(format!(
        "plugin `{name}` is {origin}, not an upload: only uploads can be deleted"
    ))
}

/// File work of a plugin change, on the blocking pool.
async fn on_disk<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, OrchestratorError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| OrchestratorError::Internal(e.to_string()))?
        .map_err(|e| OrchestratorError::Internal(format!("cannot store the plugin: {e}")))
}

/// Copies the upload `dir/name`, if there is one, to `dir/previous/name` (replacing what was
/// kept there): a reader or a crash sees the old kept file or the new one.
fn keep_previous(dir: &Path, name: &str) -> std::io::Result<()> {
    let current = match std::fs::File::open(dir.join(name)) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let kept = dir.join(PREVIOUS);
    std::fs::create_dir_all(&kept)?;
    let mut temp = tempfile::NamedTempFile::new_in(&kept)?;
    std::io::copy(&mut std::io::BufReader::new(current), &mut temp)?;
    temp.as_file().sync_all()?;
    temp.persist(kept.join(name)).map_err(|e| e.error)?;
    Ok(())
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
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
