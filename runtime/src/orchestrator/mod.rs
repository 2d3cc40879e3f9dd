//! The orchestrator: sessions (workspace, profile, resources, lifetime) and
//! the tasks run in them, from request to policy gate to sandbox to events
//! and store.

mod agents;
mod approvals;
mod disclosure;
mod files;
mod listing;
mod plugins;
mod preflight;
mod runs;
mod self_test;
mod sessions;
mod task_events;
mod tasks;
mod tool_access;

pub use crate::sidecar::{ChangeWatcher, DiskUsage, FileChanges, Snapshot, WorkspaceTracker};
pub use approvals::{ApprovalAnswer, PendingApproval};
pub use disclosure::policy_status;
pub use files::{FilesError, Transferred, Workspace, WorkspacePath};
pub use listing::{Page, SessionFilter, TaskFilter};
pub use plugins::{DeletedPlugin, InstalledPlugin};
pub use preflight::{Check, Preflight};
pub use runs::{CreateRun, RunHandle, RunLimitsRequest};
pub use sessions::{CreateSession, SessionView};
pub use tasks::{CreateTask, RunnerHandle, TaskHandle, TaskLimitsRequest};
pub use tool_access::ToolDescription;

use crate::events::EventHub;
use crate::hosts::Registry;
use crate::policy::PolicyEngine;
use crate::sandbox::Catalog;
use crate::secrets::SecretStore;
use crate::sidecar::{SessionSpec, Sidecar};
use crate::store::{SessionRecord, Store};
use crate::vocabulary::EventName;
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
    /// No room: the server's session limit, or no host fits. Try again after `retry_after_s`.
    #[error("{message}")]
    Capacity { message: String, retry_after_s: u64 },
    /// No sidecar could take the session (none ready, none answering).
    #[error("{0}")]
    SidecarUnavailable(String),
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
    /// A run named an agent the server does not have.
    #[error("{0}")]
    UnknownAgent(String),
    /// A run named a provider or model the operator did not configure.
    #[error("{0}")]
    UnknownModel(String),
    /// The session already has a run queued or running (`run`).
    #[error("session already has run {run} queued or running; cancel it or wait for it")]
    RunActive { run: String },
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
    /// How long a task waits for a person's approval before it is denied.
    pub approval_timeout: Duration,
    /// Secrets bound to hosts (`[[credentials]]`), their values resolved.
    pub credentials: Vec<crate::sandbox::Credential>,
    /// Extra agents beside the bundled ones (`agents_dir`).
    pub agents_dir: Option<PathBuf>,
}

/// A session that is open.
pub(crate) struct LiveSession {
    pub record: Mutex<SessionRecord>,
    /// From the record's request, read once: every task of the session needs them.
    pub profile: String,
    pub resources: crate::policy::ResourceRequest,
    pub secrets: Vec<String>,
    /// Where it runs: its workspace is there, and its tasks.
    pub sidecar: Arc<dyn Sidecar>,
    /// Running tasks' and runs' cancellation, by task or run id.
    pub running: Mutex<HashMap<String, CancellationToken>>,
    /// The session's run that is queued or running, if any: one at a time.
    pub run: Mutex<Option<String>>,
    /// It takes a place among the server's `max_sessions` (all but the self-test's probe).
    pub counted: bool,
}

impl LiveSession {
    fn new(record: SessionRecord, sidecar: Arc<dyn Sidecar>) -> Self {
        let request = &record.request;
        let resources: crate::policy::ResourceRequest =
            serde_json::from_value(request["resources"].clone()).unwrap_or_default();
        Self {
            profile: record.profile.clone(),
            resources,
            secrets: serde_json::from_value(request["secrets"].clone()).unwrap_or_default(),
            sidecar,
            record: Mutex::new(record),
            running: Mutex::default(),
            run: Mutex::default(),
            counted: true,
        }
    }

    /// What the sidecar is told when the session opens there.
    fn spec(&self) -> SessionSpec {
        let record = self.record.lock().unwrap_or_else(|e| e.into_inner());
        SessionSpec {
            id: record.id.clone(),
            principal: record.principal.clone(),
            profile: record.profile.clone(),
            resources: self.resources,
            resume: false,
        }
    }

    /// The workspace's use of its quota, when the workspace is in this process.
    fn disk(&self, id: &str) -> Option<DiskUsage> {
        self.sidecar.workspace(id).map(|w| w.disk_usage())
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
    hosts: Arc<Registry>,
    policy: Arc<PolicyEngine>,
    store: Store,
    hub: Arc<EventHub>,
    secrets: SecretStore,
    sessions: Mutex<HashMap<String, Arc<LiveSession>>>,
    /// Cancelled on shutdown: running tasks stop and are marked.
    shutdown: CancellationToken,
    metrics: std::sync::OnceLock<Arc<crate::telemetry::Metrics>>,
    /// Held while a plugin is installed.
    installing: tokio::sync::Mutex<()>,
    /// One per task that may run at once (the engine's instance slots): a task stays
    /// `queued`, undecided, until it holds one.
    task_slots: Arc<tokio::sync::Semaphore>,
    /// Sessions being opened (placed, waiting for a host, opening on a sidecar): they count
    /// against `max_sessions` with the open ones.
    opening: std::sync::atomic::AtomicUsize,
    /// Event self-tests running at once, at most: each holds a session for a moment.
    self_tests: tokio::sync::Semaphore,
    /// Counts installs, deletions and rollbacks of plugins: what watchers of the tool list
    /// (MCP's `list_changed`) wait on.
    tools_changed: tokio::sync::watch::Sender<u64>,
    /// Tasks waiting for a person's approval: where to send the answer, by task id.
    approval_waiters: Mutex<HashMap<String, tokio::sync::oneshot::Sender<approvals::Outcome>>>,
    /// The model providers of the config, their keys resolved: only runs' model calls use them.
    providers: Arc<crate::agents::Providers>,
    /// The agents runs may name.
    agents: agents::AgentCatalog,
    /// Runs that may go at once: each holds an instance slot while its tool calls need
    /// others, so at most half of them are for runs.
    run_slots: Arc<tokio::sync::Semaphore>,
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
        hosts: Arc<Registry>,
        policy: Arc<PolicyEngine>,
        store: Store,
        hub: Arc<EventHub>,
        secrets: SecretStore,
        providers: Arc<crate::agents::Providers>,
    ) -> Self {
        let executor_slots = catalog.engine().config().concurrent_tasks;
        let mut agents = agents::AgentCatalog::bundled(catalog.engine().clone());
        if let Some(dir) = &config.agents_dir {
            agents.add_dir(dir);
        }
        Self {
            providers,
            agents,
            run_slots: Arc::new(tokio::sync::Semaphore::new(
                (executor_slots as usize / 2).max(1),
            )),
            config,
            catalog,
            hosts,
            policy,
            store,
            hub,
            secrets,
            sessions: Mutex::default(),
            shutdown: CancellationToken::new(),
            metrics: std::sync::OnceLock::new(),
            installing: tokio::sync::Mutex::new(()),
            task_slots: Arc::new(tokio::sync::Semaphore::new(executor_slots as usize)),
            opening: std::sync::atomic::AtomicUsize::new(0),
            self_tests: tokio::sync::Semaphore::new(2),
            tools_changed: tokio::sync::watch::Sender::new(0),
            approval_waiters: Mutex::default(),
        }
    }

    /// The credentials a task of a session that named `secrets` may have added to its
    /// requests: those bound to one of them.
    fn credentials_for(&self, secrets: &[String]) -> Vec<crate::sandbox::Credential> {
        self.config
            .credentials
            .iter()
            .filter(|c| secrets.contains(&c.secret))
            .cloned()
            .collect()
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

    pub fn hosts(&self) -> &Arc<Registry> {
        &self.hosts
    }

    pub fn open_sessions(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// After a restart: tasks cut off by the crash become `interrupted` (with
    /// an event), and open sessions are live again on their sidecars. A session whose
    /// sidecar is gone (no longer configured, or it does not have the session) ends
    /// `host_lost`.
    pub async fn recover(&self) -> Result<(), OrchestratorError> {
        self.interrupt_runs()?;
        let interrupted = self
            .store
            .interrupt_unfinished_tasks()
            .map_err(|e| OrchestratorError::Internal(e.to_string()))?;
        for task in &interrupted {
            self.hub.publish(
                &task.session,
                EventName::TaskFailed,
                serde_json::json!({
                    "task": task.id, "tool": task.tool, "state": task.state, "error": task.error,
                }),
            );
        }
        let open = self
            .store
            .open_sessions()
            .map_err(|e| OrchestratorError::Internal(e.to_string()))?;
        // Reopened all at once: a sidecar that does not answer costs its health timeout
        // once, not once per session.
        let mut reopening = Vec::new();
        for record in open {
            let Some(sidecar) = self.hosts.sidecar(&record.sidecar) else {
                let lost = format!("its host `{}` is no longer known", record.sidecar);
                self.end_lost(record, &lost);
                continue;
            };
            let live = LiveSession::new(record, sidecar.clone());
            // A sidecar keeps a session's workspace across a restart of either side; one
            // that no longer has it (or does not answer) has lost it.
            let spec = SessionSpec {
                resume: true,
                ..live.spec()
            };
            reopening.push(async move { (sidecar.open_session(spec).await, live) });
        }
        for (opened, live) in futures_util::future::join_all(reopening).await {
            match opened {
                Ok(()) => {
                    // Its capacity is reserved again where it runs.
                    let host = live.sidecar.id().to_owned();
                    self.hosts
                        .restore_session(&live.record_id(), &host, live.resources.into());
                    self.sessions
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(live.record_id(), Arc::new(live));
                }
                Err(error) => {
                    let record = live
                        .record
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone();
                    self.end_lost(record, &error.to_string());
                }
            }
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

impl Orchestrator {
    /// Ends the sessions `loss` names (all of a lost sidecar's, or one it no longer holds):
    /// their running tasks have failed `host_lost` (each with its one terminal event) before
    /// the session closes.
    pub async fn sidecar_lost(&self, loss: &crate::sidecar::Loss) {
        let sidecar = loss.sidecar.as_str();
        let lost: Vec<Arc<LiveSession>> = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            let ids: Vec<String> = sessions
                .iter()
                .filter(|(id, s)| {
                    s.sidecar.id() == sidecar
                        && loss.session.as_ref().is_none_or(|only| only == *id)
                })
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| sessions.remove(id)).collect()
        };
        for live in lost {
            let until = tokio::time::Instant::now() + Duration::from_secs(5);
            loop {
                let running = live.running.lock().unwrap_or_else(|e| e.into_inner()).len();
                if running == 0 || tokio::time::Instant::now() >= until {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let record = live
                .record
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            self.end_lost(record, &format!("sidecar `{sidecar}` was lost"));
        }
    }

    /// Ends a session whose sidecar was lost, without asking the sidecar anything.
    fn end_lost(&self, mut record: SessionRecord, why: &str) {
        self.hosts.release_session(&record.id);
        tracing::warn!(session = %record.id, sidecar = %record.sidecar, why, "session lost with its sidecar");
        record.state = crate::vocabulary::SessionState::Closed;
        record.closed_at_ms = Some(now_ms());
        record.close_reason = Some(crate::vocabulary::CloseReason::HostLost);
        self.store.put_session(&record);
        self.hub.publish(
            &record.id,
            EventName::SessionClosed,
            serde_json::json!({ "session": record.id, "reason": crate::vocabulary::CloseReason::HostLost, "message": why }),
        );
        self.hub.close(&record.id);
        self.hub.forget(&record.id);
    }
}
