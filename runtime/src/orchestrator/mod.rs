//! The orchestrator: sessions (workspace, profile, resources, lifetime) and
//! the tasks run in them, from request to policy gate to sandbox to events
//! and store.

mod disclosure;
mod disk;
mod files;
mod listing;
mod plugins;
mod preflight;
mod sessions;
mod tasks;
mod watch;
mod workspace;

pub use disclosure::policy_status;
pub use disk::DiskUsage;
pub use files::{FilesError, Transferred, Workspace, WorkspacePath};
pub use listing::{Page, SessionFilter, TaskFilter};
pub use plugins::{DeletedPlugin, InstalledPlugin};
pub use preflight::{Check, Preflight};
pub use sessions::{CreateSession, SessionView};
pub use tasks::{CreateTask, TaskHandle, TaskLimitsRequest};
pub use watch::{ChangeWatcher, WorkspaceTracker};
pub use workspace::{FileChanges, Snapshot};

use crate::events::EventHub;
use crate::policy::PolicyEngine;
use crate::sandbox::{Catalog, Executor};
use crate::secrets::SecretStore;
use crate::store::{SessionRecord, Store};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Who is calling, from their API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub principal: String,
    pub profile: String,
    pub admin: bool,
}

/// Why an orchestrator call failed; the server maps each to a status and code.
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("denied by policy: {}", reasons.join("; "))]
    Forbidden {
        reasons: Vec<String>,
        decision: Value,
    },
    #[error("{0}")]
    Capacity(String),
    #[error("{0}")]
    Conflict(String),
    /// A plugin that is not an upload cannot be deleted.
    #[error("{0}")]
    NotUploaded(String),
    /// No earlier upload of a plugin is kept to roll back to.
    #[error("{0}")]
    NoPreviousVersion(String),
    #[error("{0}")]
    Invalid(String),
    /// A task or session named a tool no plugin provides.
    #[error("{0}")]
    UnknownTool(String),
    /// `reason` is the plugin error's stable code; `detail` may hold host paths (admins only).
    #[error("not a usable plugin: {detail}")]
    InvalidPlugin {
        reason: &'static str,
        detail: String,
    },
    #[error("{0}")]
    Internal(String),
}

pub struct OrchestratorConfig {
    pub workspaces: PathBuf,
    /// Where uploaded plugins are kept (`<data dir>/plugins`).
    pub uploaded_plugins: PathBuf,
    pub max_sessions: usize,
    pub idle_timeout: Duration,
    pub lifetime: Duration,
}

/// A session that is open in this process.
pub(crate) struct LiveSession {
    pub record: Mutex<SessionRecord>,
    /// From the record's request, read once: every task of the session needs them.
    pub profile: String,
    pub resources: crate::policy::ResourceRequest,
    pub secrets: Vec<String>,
    pub workspace: PathBuf,
    /// How much of its disk quota the workspace uses; shared by the session's tasks.
    pub disk: crate::sandbox::DiskQuota,
    /// What the workspace held after the last look, and whether it changed since.
    pub files: WorkspaceTracker,
    /// Running tasks' cancellation, by task id.
    pub running: Mutex<HashMap<String, CancellationToken>>,
}

impl LiveSession {
    fn new(
        record: SessionRecord,
        files: WorkspaceTracker,
        disk: impl FnOnce(u64) -> crate::sandbox::DiskQuota,
    ) -> Self {
        let request = &record.request;
        let resources: crate::policy::ResourceRequest =
            serde_json::from_value(request["resources"].clone()).unwrap_or_default();
        Self {
            profile: record.profile.clone(),
            resources,
            disk: disk(disk::limit(&resources)),
            secrets: serde_json::from_value(request["secrets"].clone()).unwrap_or_default(),
            workspace: PathBuf::from(&record.workspace),
            record: Mutex::new(record),
            files,
            running: Mutex::default(),
        }
    }

    fn record_id(&self) -> String {
        self.record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .id
            .clone()
    }
}

pub struct Orchestrator {
    config: OrchestratorConfig,
    catalog: Arc<Catalog>,
    executor: Executor,
    policy: Arc<PolicyEngine>,
    store: Store,
    hub: Arc<EventHub>,
    secrets: SecretStore,
    sessions: Mutex<HashMap<String, Arc<LiveSession>>>,
    /// Cancelled on shutdown: running tasks stop and are marked.
    shutdown: CancellationToken,
    metrics: std::sync::OnceLock<Arc<crate::telemetry::Metrics>>,
    /// Watches every workspace, so an unchanged one is not walked around each task.
    watcher: Arc<ChangeWatcher>,
    /// Held while a plugin is installed.
    installing: tokio::sync::Mutex<()>,
    /// One per task that may run at once (the engine's instance slots): a task stays
    /// `queued`, undecided, until it holds one.
    task_slots: Arc<tokio::sync::Semaphore>,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Orchestrator {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: OrchestratorConfig,
        catalog: Arc<Catalog>,
        executor: Executor,
        policy: Arc<PolicyEngine>,
        store: Store,
        hub: Arc<EventHub>,
        secrets: SecretStore,
    ) -> Self {
        let executor_slots = executor.engine().config().concurrent_tasks;
        Self {
            config,
            catalog,
            executor,
            policy,
            store,
            hub,
            secrets,
            sessions: Mutex::default(),
            shutdown: CancellationToken::new(),
            metrics: std::sync::OnceLock::new(),
            watcher: ChangeWatcher::new(),
            installing: tokio::sync::Mutex::new(()),
            task_slots: Arc::new(tokio::sync::Semaphore::new(executor_slots as usize)),
        }
    }

    /// Where task and decision metrics go (set once, after the server built them).
    pub fn set_metrics(&self, metrics: Arc<crate::telemetry::Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    pub fn hub(&self) -> &Arc<EventHub> {
        &self.hub
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn policy(&self) -> &Arc<PolicyEngine> {
        &self.policy
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub fn open_sessions(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// After a restart: tasks cut off by the crash become `interrupted` (with
    /// an event), and open sessions are live again.
    pub fn recover(&self) -> Result<(), OrchestratorError> {
        let interrupted = self
            .store
            .interrupt_unfinished_tasks()
            .map_err(|e| OrchestratorError::Internal(e.to_string()))?;
        for task in &interrupted {
            self.hub.publish(
                &task.session,
                "task.failed",
                serde_json::json!({
                    "task": task.id, "tool": task.tool, "state": "interrupted", "error": task.error,
                }),
            );
        }
        let open = self
            .store
            .open_sessions()
            .map_err(|e| OrchestratorError::Internal(e.to_string()))?;
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        for record in open {
            let workspace = PathBuf::from(&record.workspace);
            let _ = std::fs::create_dir_all(&workspace);
            let files = self.watcher.track(workspace.clone());
            let live = LiveSession::new(record, files, |limit| disk::rebuilt(&workspace, limit));
            sessions.insert(live.record_id(), Arc::new(live));
        }
        if !interrupted.is_empty() {
            tracing::warn!(
                tasks = interrupted.len(),
                "tasks cut off by the last stop are marked interrupted"
            );
        }
        Ok(())
    }

    /// Stops running tasks (they are marked `cancelled`) and flushes the store.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        for _ in 0..100 {
            let busy = self
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .any(|s| {
                    !s.running
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .is_empty()
                });
            if !busy {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.store.flush();
    }
}
