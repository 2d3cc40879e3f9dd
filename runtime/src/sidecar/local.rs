//! The execution half in this process: workspaces on this host's disk, tasks on this
//! process's sandbox engine, capability decisions by the policy source it was given.

use super::disk::{self, DiskUsage};
use super::shipped::PolicySource;
use super::watch::{ChangeWatcher, WorkspaceTracker};
use super::wire::{SessionSpec, SidecarState, TaskEvent, TaskFinished};
use super::workspace::{FileChanges, Snapshot};
use super::{RunTask, Sidecar, SidecarError, SidecarFuture, TaskEvents};
use crate::gate::{CapabilityRequest, Decision, Gate};
use crate::sandbox::{DirGrant, DiskQuota, EventSink, Executor, Grants, TaskRequest, ToolEvent};
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// The guest path of every session's workspace.
const WORKSPACE: &str = "/workspace";

/// A session's workspace on this host.
pub struct SessionWorkspace {
    pub session: String,
    pub root: PathBuf,
    /// How much of its disk quota the workspace uses; shared by the session's tasks.
    pub disk: DiskQuota,
    /// What the workspace held after the last look, and whether it changed since.
    pub files: WorkspaceTracker,
    /// Tasks running in it, cancelled when it closes.
    running: Mutex<HashMap<String, CancellationToken>>,
}

impl SessionWorkspace {
    pub fn disk_usage(&self) -> DiskUsage {
        (&self.disk).into()
    }

    /// The workspace now; a walk, when one is needed, runs on the blocking pool.
    async fn snapshot(self: &Arc<Self>) -> Arc<Snapshot> {
        if let Some(snapshot) = self.files.unchanged() {
            return snapshot;
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.files.snapshot())
            .await
            .unwrap_or_default()
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs sessions in this process.
#[derive(Clone)]
pub struct LocalSidecar {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    executor: Executor,
    policies: Arc<dyn PolicySource>,
    /// Workspaces are created beneath it, one directory per session.
    workspaces: PathBuf,
    watcher: Arc<ChangeWatcher>,
    sessions: Mutex<HashMap<String, Arc<SessionWorkspace>>>,
    draining: AtomicBool,
    /// Tasks may reach loopback and private addresses.
    private_network: bool,
}

impl LocalSidecar {
    pub fn new(
        id: impl Into<String>,
        executor: Executor,
        policies: Arc<dyn PolicySource>,
        workspaces: PathBuf,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                id: id.into(),
                executor,
                policies,
                workspaces,
                watcher: ChangeWatcher::new(),
                sessions: Mutex::default(),
                draining: AtomicBool::new(false),
                private_network: false,
            }),
        }
    }

    /// Lets tasks reach loopback and private addresses (each request still decided by
    /// policy): for an operator whose tools call services on a private network.
    pub fn with_private_network(mut self, allowed: bool) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.private_network = allowed;
        }
        self
    }

    pub fn executor(&self) -> &Executor {
        &self.inner.executor
    }

    /// Where the workspace of `session` is (or would be).
    pub fn workspace_root(&self, session: &str) -> PathBuf {
        self.inner.workspaces.join(session)
    }

    /// Takes no new sessions or tasks from now on.
    pub fn drain(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    pub fn sessions(&self) -> usize {
        self.inner.lock_sessions().len()
    }

    pub fn running_tasks(&self) -> usize {
        self.inner
            .lock_sessions()
            .values()
            .map(|s| s.lock_running().len())
            .sum()
    }

    /// Cancels every running task (a stop); their outcomes say `cancelled`.
    pub fn cancel_all(&self) {
        for session in self.inner.lock_sessions().values() {
            for token in session.lock_running().values() {
                token.cancel();
            }
        }
    }

    /// Cancels one running task; false when it is not running here.
    pub fn cancel_task(&self, session: &str, task: &str) -> bool {
        let Some(workspace) = self.inner.lock_sessions().get(session).cloned() else {
            return false;
        };
        let token = workspace.lock_running().get(task).cloned();
        token.map(|t| t.cancel()).is_some()
    }

    pub fn has_session(&self, session: &str) -> bool {
        self.inner.lock_sessions().contains_key(session)
    }

    fn open(&self, spec: &SessionSpec) -> Result<(), SidecarError> {
        if self.inner.draining.load(Ordering::SeqCst) {
            return Err(SidecarError::Draining);
        }
        if !super::wire::is_session_id(&spec.id) {
            return Err(SidecarError::Invalid(format!(
                "`{}` is not a session id",
                spec.id
            )));
        }
        let mut sessions = self.inner.lock_sessions();
        if sessions.contains_key(&spec.id) {
            return Ok(());
        }
        let root = self.workspace_root(&spec.id);
        if spec.resume && !root.is_dir() {
            return Err(SidecarError::UnknownSession(spec.id.clone()));
        }
        let limit = disk::limit(&spec.resources);
        // A workspace that is already there (a restart of this process) keeps its files.
        let disk = if root.is_dir() {
            disk::rebuilt(&root, limit)
        } else {
            std::fs::create_dir_all(&root).map_err(|e| {
                SidecarError::Internal(format!("cannot create the session workspace: {e}"))
            })?;
            DiskQuota::new(limit)
        };
        let workspace = SessionWorkspace {
            session: spec.id.clone(),
            files: self.inner.watcher.track(root.clone()),
            root,
            disk,
            running: Mutex::default(),
        };
        sessions.insert(spec.id.clone(), Arc::new(workspace));
        Ok(())
    }

    fn close(&self, session: &str) {
        let Some(workspace) = self.inner.lock_sessions().remove(session) else {
            return;
        };
        for token in workspace.lock_running().values() {
            token.cancel();
        }
        // By file descriptor, never following a link: a task still running may be swapping
        // its directories for links to elsewhere.
        if let Err(e) = crate::confined::remove_tree(&workspace.root) {
            tracing::warn!(session, error = %e, "cannot remove the session workspace");
        }
    }
}

impl Inner {
    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<SessionWorkspace>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn run(&self, run: RunTask) -> Result<TaskFinished, SidecarError> {
        let RunTask {
            plugin,
            spec,
            secrets,
            credentials,
            events,
            cancel,
        } = run;
        let workspace = self
            .lock_sessions()
            .get(spec.session())
            .cloned()
            .ok_or_else(|| SidecarError::UnknownSession(spec.session().to_owned()))?;
        let policy_gate = self.policies.task_gate(&spec)?;
        workspace
            .lock_running()
            .insert(spec.id.clone(), cancel.clone());
        let _running = Deregister {
            workspace: &workspace,
            task: spec.id.clone(),
        };
        let mut grants = Grants {
            dirs: vec![DirGrant {
                host: workspace.root.clone(),
                guest: WORKSPACE.into(),
                writable: true,
                quota: Some(workspace.disk.clone()),
            }],
            cwd: Some(WORKSPACE.into()),
            secrets,
            credentials,
            ..Grants::default()
        };
        grants.network.http = true;
        grants.network.allow_private_addresses = self.private_network;
        let gate: Arc<dyn Gate> = Arc::new(EmittingGate {
            inner: policy_gate,
            events: events.clone(),
        });
        let tool = spec.tool_name().to_owned();
        let request = TaskRequest {
            grants,
            limits: Some(spec.limits),
            events: Some(Arc::new(ToolEvents(events.clone()))),
            cancel: Some(cancel),
            gate: Some(gate),
            ..TaskRequest::new(tool, spec.input)
        };
        let before = workspace.snapshot().await;
        let outcome = self.executor.run(&plugin, request).await;
        let after = workspace.snapshot().await;
        let changes = if Arc::ptr_eq(&before, &after) {
            FileChanges::default()
        } else {
            before.changes(&after)
        };
        if !changes.is_empty() {
            events.emit(TaskEvent::FilesChanged { changes });
        }
        Ok(TaskFinished {
            result: outcome.result,
            usage: outcome.usage,
            decision_us: outcome.decisions.iter().map(|d| d.elapsed_us).collect(),
        })
    }
}

/// Takes a finished task off its workspace's running list.
struct Deregister<'a> {
    workspace: &'a SessionWorkspace,
    task: String,
}

impl Drop for Deregister<'_> {
    fn drop(&mut self) {
        self.workspace.lock_running().remove(&self.task);
    }
}

impl Sidecar for LocalSidecar {
    fn id(&self) -> &str {
        &self.inner.id
    }

    fn open_session(&self, spec: SessionSpec) -> SidecarFuture<Result<(), SidecarError>> {
        let opened = self.open(&spec);
        Box::pin(std::future::ready(opened))
    }

    fn run_task(&self, run: RunTask) -> SidecarFuture<Result<TaskFinished, SidecarError>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.run(run).await })
    }

    fn close_session(&self, session: &str) -> SidecarFuture<Result<(), SidecarError>> {
        self.close(session);
        Box::pin(std::future::ready(Ok(())))
    }

    fn workspace(&self, session: &str) -> Option<Arc<SessionWorkspace>> {
        self.inner.lock_sessions().get(session).cloned()
    }

    fn state(&self) -> SidecarState {
        if self.inner.draining.load(Ordering::SeqCst) {
            SidecarState::Draining
        } else {
            SidecarState::Ready
        }
    }
}

/// Tool logs and progress, as task events.
struct ToolEvents(Arc<dyn TaskEvents>);

impl EventSink for ToolEvents {
    fn emit(&self, event: ToolEvent) {
        self.0.emit(TaskEvent::Tool { event });
    }
}

/// Decides a running task's capability uses and tells each decision as it is made.
struct EmittingGate {
    inner: crate::policy::TaskGate,
    events: Arc<dyn TaskEvents>,
}

impl Gate for EmittingGate {
    fn decide(&self, request: &CapabilityRequest) -> Decision {
        let decision = self.inner.decide(request);
        self.events.emit(TaskEvent::Decision {
            decision: json!({ "request": request, "decision": decision }),
        });
        decision
    }
}
