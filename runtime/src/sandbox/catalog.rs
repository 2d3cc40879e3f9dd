//! The plugins a process knows: the bundled defaults, the `.wasm` files of
//! plugin directories and plugins installed while running (an admin's upload).
//! An upload shadows the bundled or directory plugin of its name, which comes back when the
//! upload is removed.
//! Each is validated and compiled on first use, once, on the blocking pool (compiling and
//! describing a component is long work; the runtime's workers keep answering meanwhile). A
//! plugin that fails is remembered by digest and not tried again until its bytes change.

use super::bundled;
use super::cache::ArtifactCache;
use super::engine::SandboxEngine;
use super::error::PluginError;
use super::failures::FailedLoads;
use super::plugin::Plugin;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::OnceCell;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("no plugin named `{name}` (available: {})", available.join(", "))]
    UnknownPlugin {
        name: String,
        available: Vec<String>,
    },
    #[error("cannot read plugins directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: `{name}` is not a valid plugin name (use [a-z0-9_-], 1-64 characters)")]
    BadName { path: PathBuf, name: String },
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

impl CatalogError {
    /// The stable, machine-readable name of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownPlugin { .. } => "unknown_plugin",
            Self::Directory { .. } => "plugins_directory",
            Self::BadName { .. } => "bad_plugin_name",
            Self::Plugin(error) => error.code(),
        }
    }

    /// What a caller who is not an admin may see of why `plugin` cannot be used: its name
    /// and the error's code, never a host path or what the component said.
    pub fn public_message(&self, plugin: &str) -> String {
        match self {
            Self::UnknownPlugin { .. } => self.to_string(),
            _ => format!("plugin `{plugin}` cannot be used ({})", self.code()),
        }
    }
}

enum Source {
    Bundled(&'static [u8]),
    File(PathBuf),
}

struct Entry {
    source: Source,
    loaded: OnceCell<Arc<Plugin>>,
    /// An admin's upload (not bundled, not from `--plugins`).
    uploaded: bool,
}

/// Where the plugin in force of a name comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PluginOrigin {
    Bundled,
    /// A `.wasm` file of a plugins directory (`--plugins`).
    Directory,
    Uploaded,
}

impl Entry {
    fn origin(&self) -> PluginOrigin {
        match (&self.source, self.uploaded) {
            (_, true) => PluginOrigin::Uploaded,
            (Source::Bundled(_), false) => PluginOrigin::Bundled,
            (Source::File(_), false) => PluginOrigin::Directory,
        }
    }
}

/// The plugins in force by name, and the bundled or directory plugins that uploads shadow.
#[derive(Default)]
struct Entries {
    active: BTreeMap<String, Arc<Entry>>,
    shadowed: BTreeMap<String, Arc<Entry>>,
}

impl Entries {
    /// Puts `entry` in force; an upload keeps the non-upload it displaces. True if it
    /// displaced one.
    fn insert(&mut self, name: String, entry: Arc<Entry>) -> bool {
        let uploaded = entry.uploaded;
        match self.active.insert(name.clone(), entry) {
            Some(displaced) if uploaded && !displaced.uploaded => {
                self.shadowed.insert(name, displaced);
                true
            }
            Some(_) => true,
            None => false,
        }
    }
}

/// Why an upload cannot be removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoveUploadError {
    #[error("no plugin named `{0}`")]
    Unknown(String),
    #[error("plugin `{0}` is not an upload (it is {1:?}); only uploads can be removed")]
    NotUploaded(String, PluginOrigin),
}

pub struct Catalog {
    engine: Arc<SandboxEngine>,
    cache: Option<Arc<ArtifactCache>>,
    /// Read on every task, written only when a plugin is installed or removed.
    entries: RwLock<Entries>,
    failures: Arc<FailedLoads>,
    /// Loads that compiled or described a component (remembered failures not counted).
    attempts: Arc<AtomicU64>,
}

/// Where the bytes of a plugin to load are.
enum Input {
    Bytes(Bytes),
    File(PathBuf),
}

impl Catalog {
    /// A catalog of the bundled plugins. `cache_dir` keeps compiled plugins
    /// across runs; `None` compiles in memory only.
    pub fn new(engine: Arc<SandboxEngine>, cache_dir: Option<&Path>) -> Self {
        let cache = cache_dir.and_then(|dir| match ArtifactCache::open(dir, engine.engine()) {
            Ok(cache) => Some(Arc::new(cache)),
            Err(err) => {
                tracing::warn!(dir = %dir.display(), error = %err, "cannot use the compilation cache; compiling in memory");
                None
            }
        });
        let active = bundled::BUNDLED
            .iter()
            .map(|(name, bytes)| {
                (
                    name.to_string(),
                    Arc::new(Entry {
                        source: Source::Bundled(bytes),
                        loaded: OnceCell::new(),
                        uploaded: false,
                    }),
                )
            })
            .collect();
        let entries = Entries {
            active,
            shadowed: BTreeMap::new(),
        };
        Self {
            engine,
            cache,
            entries: RwLock::new(entries),
            failures: Arc::default(),
            attempts: Arc::default(),
        }
    }

    /// Adds every `NAME.wasm` in `dir` as plugin `NAME`; a file overrides a
    /// bundled plugin of the same name. Returns the names added.
    pub fn add_dir(&mut self, dir: &Path) -> Result<Vec<String>, CatalogError> {
        self.add_files(dir, false)
    }

    /// Like [`Catalog::add_dir`] for the directory of an admin's uploads: each shadows the
    /// plugin of its name until it is removed ([`Catalog::remove_upload`]).
    pub fn add_uploads(&mut self, dir: &Path) -> Result<Vec<String>, CatalogError> {
        self.add_files(dir, true)
    }

    fn add_files(&mut self, dir: &Path, uploaded: bool) -> Result<Vec<String>, CatalogError> {
        let read = std::fs::read_dir(dir).map_err(|source| CatalogError::Directory {
            path: dir.into(),
            source,
        })?;
        let mut added = Vec::new();
        let entries = self.entries.get_mut().unwrap_or_else(|e| e.into_inner());
        for entry in read {
            let path = entry
                .map_err(|source| CatalogError::Directory {
                    path: dir.into(),
                    source,
                })?
                .path();
            if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
                continue;
            }
            let name = plugin_name(&path)?;
            let entry = Arc::new(Entry {
                source: Source::File(path.clone()),
                loaded: OnceCell::new(),
                uploaded,
            });
            if entries.insert(name.clone(), entry) {
                tracing::info!(plugin = %name, path = %path.display(), "plugin file overrides an earlier plugin");
            }
            added.push(name);
        }
        added.sort();
        Ok(added)
    }

    pub fn names(&self) -> Vec<String> {
        self.entries().active.keys().cloned().collect()
    }

    /// Whether a plugin is called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.entries().active.contains_key(name)
    }

    /// Where the plugin called `name` comes from, if there is one.
    pub fn origin(&self, name: &str) -> Option<PluginOrigin> {
        self.entries().active.get(name).map(|e| e.origin())
    }

    /// Takes the upload `name` out of force: the bundled or directory plugin it shadowed comes
    /// back (returned; `None` when there was none and the name is gone). Running tasks keep
    /// the plugin they started with.
    pub fn remove_upload(&self, name: &str) -> Result<Option<PluginOrigin>, RemoveUploadError> {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        match entries.active.get(name).map(|e| e.origin()) {
            None => return Err(RemoveUploadError::Unknown(name.to_owned())),
            Some(PluginOrigin::Uploaded) => {}
            Some(origin) => return Err(RemoveUploadError::NotUploaded(name.to_owned(), origin)),
        }
        entries.active.remove(name);
        Ok(entries.shadowed.remove(name).map(|base| {
            let origin = base.origin();
            entries.active.insert(name.to_owned(), base);
            origin
        }))
    }

    /// Makes `plugin`, already loaded from `path`, the plugin of its name: the next task
    /// uses it; running tasks keep the one they started with. True if it replaced one.
    pub fn install(&self, plugin: Arc<Plugin>, path: PathBuf) -> bool {
        let name = plugin.name().to_owned();
        let entry = Arc::new(Entry {
            source: Source::File(path),
            loaded: OnceCell::new_with(Some(plugin)),
            uploaded: true,
        });
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, entry)
    }

    fn entries(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn engine(&self) -> &Arc<SandboxEngine> {
        &self.engine
    }

    /// The plugin called `name`, validated and compiled on first use.
    pub async fn get(&self, name: &str) -> Result<Arc<Plugin>, CatalogError> {
        let found = self.entries().active.get(name).cloned();
        let entry = found.ok_or_else(|| CatalogError::UnknownPlugin {
            name: name.into(),
            available: self.names(),
        })?;
        let plugin = entry
            .loaded
            .get_or_try_init(|| async {
                let (origin, input) = match &entry.source {
                    Source::Bundled(bytes) => (
                        format!("bundled plugin `{name}`"),
                        Input::Bytes(Bytes::from_static(bytes)),
                    ),
                    Source::File(path) => (path.display().to_string(), Input::File(path.clone())),
                };
                self.load(name, origin, input).await.map(Arc::new)
            })
            .await?;
        Ok(plugin.clone())
    }

    /// The bytes of the plugin `name` in force, if they hash to `digest` (what a remote
    /// sidecar is shipped); `None` when it is gone or has changed since.
    pub async fn bytes_of(&self, name: &str, digest: &str) -> Option<Bytes> {
        let entry = self.entries().active.get(name).cloned()?;
        let bytes = match &entry.source {
            Source::Bundled(bytes) => Bytes::from_static(bytes),
            Source::File(path) => Bytes::from(tokio::fs::read(path).await.ok()?),
        };
        (super::cache::digest(&bytes) == digest).then_some(bytes)
    }

    /// Loads a plugin from a file outside the catalog (named after the file).
    pub async fn load_file(&self, path: &Path) -> Result<Plugin, CatalogError> {
        let name = plugin_name(path)?;
        let origin = path.display().to_string();
        Ok(self.load(&name, origin, Input::File(path.into())).await?)
    }

    /// Loads a plugin from bytes (an upload), named `name`.
    pub async fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Plugin, CatalogError> {
        let origin = format!("plugin `{name}`");
        let bytes = Bytes::copy_from_slice(bytes);
        Ok(self.load(name, origin, Input::Bytes(bytes)).await?)
    }

    /// How many failed plugins (distinct bytes) are remembered.
    pub fn remembered_failures(&self) -> usize {
        self.failures.len()
    }

    /// How many times a component was loaded (validated, compiled, described) so far.
    pub fn load_attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// Reads, hashes, compiles and describes a plugin on the blocking pool. `describe` runs
    /// on wasmtime's async support, driven there by the runtime's handle.
    async fn load(&self, name: &str, origin: String, input: Input) -> Result<Plugin, PluginError> {
        let engine = self.engine.clone();
        let cache = self.cache.clone();
        let failures = self.failures.clone();
        let attempts = self.attempts.clone();
        let runtime = tokio::runtime::Handle::current();
        let plugin = name.to_owned();
        let work_origin = origin.clone();
        let work = move || -> Result<Plugin, PluginError> {
            let bytes = match input {
                Input::Bytes(bytes) => bytes,
                Input::File(path) => Bytes::from(read(&path)?),
            };
            let digest = super::cache::digest(&bytes);
            if let Some(failure) = failures.get(&digest, &work_origin) {
                tracing::debug!(plugin, digest, "plugin failed before; not loading it again");
                return Err(failure);
            }
            attempts.fetch_add(1, Ordering::Relaxed);
            let loaded = runtime.block_on(Plugin::load(
                &engine,
                cache.as_deref(),
                &plugin,
                &work_origin,
                &bytes,
                digest.clone(),
            ));
            if let Err(error) = &loaded {
                // The whole story, host paths included, goes to the log; callers who are
                // not admins only see the plugin's name and the error's code.
                tracing::warn!(plugin, digest, code = error.code(), %error, "plugin cannot be loaded");
                failures.remember(&digest, error);
            }
            loaded
        };
        tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
            Err(PluginError::Unavailable {
                origin,
                message: format!("loading was interrupted: {e}"),
            })
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, PluginError> {
    std::fs::read(path).map_err(|source| PluginError::Read {
        path: path.into(),
        source: Arc::new(source),
    })
}

/// Plugin names: `[a-z0-9_-]`, 1 to 64 characters (they become file names and policy ids).
pub fn is_valid_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn plugin_name(path: &Path) -> Result<String, CatalogError> {
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_owned();
    if is_valid_plugin_name(&name) {
        Ok(name)
    } else {
        Err(CatalogError::BadName {
            path: path.into(),
            name,
        })
    }
}
