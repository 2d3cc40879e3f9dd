use super::task_events::SessionEvents;
use super::{Caller, LiveSession, Orchestrator, OrchestratorError, now_ms};
use crate::policy::{PolicyLimits, TaskIdentity};
use crate::sandbox::{TaskError, Usage};
use crate::sidecar::{SidecarError, TaskFinished, TaskSpec};
use crate::store::TaskRecord;
use crate::vocabulary::{ErrorKind, EventName, TaskState};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// `POST /v1/sessions/{id}/tasks`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    /// `plugin.tool`, e.g. `fs.read`.
    pub tool: String,
    /// The tool's input: a JSON object matching the tool's input schema (`GET /v1/tools`).
    #[serde(default = "empty_object")]
    #[schema(value_type = Object, default = json!({}))]
    pub input: Value,
    /// Wait for the result (default) or return at once with the task id.
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub wait: bool,
    /// Ask for less than the policy allows.
    #[serde(default)]
    pub limits: Option<TaskLimitsRequest>,
}

fn empty_object() -> Value {
    json!({})
}

fn yes() -> bool {
    true
}

/// Tighter limits than the policy grants: a value above the policy's is lowered to it.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskLimitsRequest {
    pub fuel: Option<u64>,
    pub memory_mb: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub output_kb: Option<u64>,
}

impl Orchestrator {
    /// Queues a task and starts it. Returns the task record and, with
    /// `wait`, a handle resolving to the finished record.
    pub async fn create_task(
        self: &Arc<Self>,
        caller: &Caller,
        session_id: &str,
        request: CreateTask,
    ) -> Result<(TaskRecord, Option<TaskHandle>), OrchestratorError> {
        self.create_task_in(caller, session_id, request, None).await
    }

    /// A tool call of an agent run: a task like any other, linked to the run.
    pub(super) async fn create_task_for_run(
        self: &Arc<Self>,
        caller: &Caller,
        session_id: &str,
        request: CreateTask,
        run: &str,
    ) -> Result<(TaskRecord, Option<TaskHandle>), OrchestratorError> {
        self.create_task_in(caller, session_id, request, Some(run))
            .await
    }

    async fn create_task_in(
        self: &Arc<Self>,
        caller: &Caller,
        session_id: &str,
        request: CreateTask,
        run: Option<&str>,
    ) -> Result<(TaskRecord, Option<TaskHandle>), OrchestratorError> {
        let Some(live) = self.live(caller, session_id) else {
            return match self.get_session(caller, session_id) {
                Ok(_) => Err(OrchestratorError::Conflict(format!(
                    "session {session_id} is closed"
                ))),
                Err(e) => Err(e),
            };
        };
        if !request.input.is_object() {
            return Err(OrchestratorError::Invalid(
                "`input` must be a JSON object".into(),
            ));
        }
        // An unknown tool is the caller's mistake (422), told apart from a denial; a plugin
        // that exists but cannot be loaded fails the task, on the record.
        let Some((_, tool_name)) = request.tool.split_once('.') else {
            return Err(OrchestratorError::UnknownTool(format!(
                "unknown tool `{}` (tools are named plugin.tool)",
                request.tool
            )));
        };
        // Looked up once: the runner uses what was found here.
        let plugin = match self.plugin_with(&request.tool).await {
            Err(ToolUnavailable::Unknown(message)) => {
                return Err(OrchestratorError::UnknownTool(message));
            }
            found => found,
        };
        let id = format!("t_{}", uuid::Uuid::now_v7().simple());
        let record = TaskRecord {
            id: id.clone(),
            session: session_id.into(),
            tool: request.tool.clone(),
            input: request.input.clone(),
            state: TaskState::Queued,
            created_at_ms: now_ms(),
            started_at_ms: None,
            finished_at_ms: None,
            output: None,
            error: None,
            usage: None,
            decision: None,
            run: run.map(str::to_owned),
        };
        self.store.put_task(&record);
        let mut queued = json!({ "task": id, "tool": request.tool });
        if let Some(run) = run {
            queued["run"] = run.into();
        }
        self.hub.publish(session_id, EventName::TaskQueued, queued);
        let cancel = self.shutdown.child_token();
        live.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), cancel.clone());
        touch(&live);

        let this = self.clone();
        let run = RunTask {
            plugin,
            caller: caller.clone(),
            live: live.clone(),
            record: record.clone(),
            tool: tool_name.to_owned(),
            limits: request.limits,
            cancel: cancel.clone(),
            resumed: None,
        };
        let join = tokio::spawn(async move { this.run_task(run).await });
        let handle = request.wait.then(|| TaskHandle::new(join, cancel));
        Ok((record, handle))
    }

    pub fn get_task(
        &self,
        caller: &Caller,
        session_id: &str,
        task_id: &str,
    ) -> Result<TaskRecord, OrchestratorError> {
        self.get_session(caller, session_id)?;
        let _ = self.store.flush();
        match self.store.get_task(session_id, task_id) {
            Ok(Some(task)) => Ok(task),
            Ok(None) => Err(OrchestratorError::NotFound("task")),
            Err(e) => Err(OrchestratorError::Internal(e.to_string())),
        }
    }

    /// Cancels a queued or running task; a finished one is a conflict. A task cancelled while
    /// queued ends without a decision and never starts (the runner checks under the same lock).
    pub fn cancel_task(
        &self,
        caller: &Caller,
        session_id: &str,
        task_id: &str,
    ) -> Result<TaskRecord, OrchestratorError> {
        let task = self.get_task(caller, session_id, task_id)?;
        let token = self.live(caller, session_id).and_then(|live| {
            live.running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(task_id)
                .cloned()
        });
        match token {
            Some(token) => {
                token.cancel();
                Ok(task)
            }
            None => Err(OrchestratorError::Conflict(format!(
                "task {task_id} is already {}",
                task.state
            ))),
        }
    }

    async fn run_task(self: Arc<Self>, run: RunTask) -> TaskRecord {
        let RunTask {
            plugin,
            caller,
            live,
            mut record,
            tool,
            limits,
            cancel,
            resumed,
        } = run;
        let session = record.session.clone();
        let finish = |record: &TaskRecord| {
            live.running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&record.id);
            touch(&live);
        };
        // A plugin that cannot be loaded, or lacks the tool, fails the task before it starts.
        let fail_early = |mut record: TaskRecord, message: String| {
            record.state = TaskState::Failed;
            record.error = Some(json!({ "kind": "invalid_input", "message": message }));
            record.finished_at_ms = Some(now_ms());
            self.store.put_task(&record);
            self.hub.publish(
                &session,
                EventName::TaskFailed,
                json!({ "task": record.id, "error": record.error }),
            );
            finish(&record);
            record
        };
        let plugin = match plugin {
            Ok(plugin) => plugin,
            Err(why) => return fail_early(record, why.to_string()),
        };
        // Queued until a slot is free; a cancel meanwhile ends the wait.
        let mut slot = tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            slot = self.task_slots.clone().acquire_owned() => slot.ok(),
        };
        // Still queued: a cancel that came first ends the task here, undecided and unstarted.
        // Holding the lock the canceller takes makes "queued" and "decided" exclusive.
        {
            let _running = live.running.lock().unwrap_or_else(|e| e.into_inner());
            if cancel.is_cancelled() {
                record.state = TaskState::Cancelled;
                record.error = Some(crate::sandbox::TaskError::Cancelled.to_json());
                record.finished_at_ms = Some(now_ms());
                self.store.put_task(&record);
                self.hub.publish(
                    &session,
                    EventName::TaskFailed,
                    json!({ "task": record.id, "state": record.state, "error": record.error }),
                );
                drop(_running);
                finish(&record);
                return record;
            }
        }

        let resources = live.resources;
        let limits_json = serde_json::to_value(&limits).unwrap_or(Value::Null);
        let asked = limits.map_or_else(PolicyLimits::default, |l| PolicyLimits {
            fuel: l.fuel,
            memory_mb: l.memory_mb,
            timeout_ms: l.timeout_ms,
            output_kb: l.output_kb,
        });
        let identity = TaskIdentity {
            principal: caller.principal.clone(),
            profile: live.profile.clone(),
            session: session.clone(),
            tool: record.tool.clone(),
        };
        let input = record.input.to_string();

        // The invoke decision is announced before anything runs; a denied
        // task never starts.
        let mut decision = self.policy.authorize_invoke(&identity, resources, &input);
        // What is recorded are the limits the task runs with, not only the permits'.
        let in_force =
            crate::task::settle_limits(&mut decision, self.catalog.engine().config(), asked);
        let invoke_us = decision.elapsed_us;
        let decision_json = serde_json::to_value(&decision).unwrap_or(Value::Null);
        self.store.put_decision(
            &session,
            Some(&record.id),
            &json!({ "action": "invoke", "decision": decision_json }),
        );
        self.hub.publish(
            &session,
            EventName::PolicyDecision,
            json!({ "task": record.id, "action": "invoke", "decision": decision_json }),
        );
        // Allowed once a person approves: the task waits for the answer holding no run slot.
        let approval = match &in_force {
            Some(_) if decision.approval_required || resumed.is_some() => {
                drop(slot.take());
                let answered = match &resumed {
                    Some(approval) => {
                        let answer = self.waiter_for(&approval.task);
                        self.wait_for_answer(approval, answer, &cancel).await
                    }
                    None => {
                        self.request_approval(
                            &mut record,
                            &caller.principal,
                            &decision_json,
                            limits_json,
                            &cancel,
                        )
                        .await
                    }
                };
                match answered {
                    Err(super::approvals::Unapproved::ServerStopping) => {
                        // Left waiting in the store: the next start resumes it.
                        finish(&record);
                        return record;
                    }
                    Err(super::approvals::Unapproved::Task(error)) => Err(error),
                    Ok(()) => {
                        slot = tokio::select! {
                            biased;
                            _ = cancel.cancelled() => None,
                            slot = self.task_slots.clone().acquire_owned() => slot.ok(),
                        };
                        if slot.is_none() {
                            Err(TaskError::Cancelled)
                        } else {
                            Ok(())
                        }
                    }
                }
            }
            _ => Ok(()),
        };
        let finished = match (in_force, approval) {
            (_, Err(error)) => TaskFinished {
                result: Err(error),
                usage: Usage::default(),
                decision_us: Vec::new(),
            },
            (None, Ok(())) => TaskFinished {
                result: Err(TaskError::Denied {
                    reasons: decision.explanation(),
                }),
                usage: Usage::default(),
                decision_us: Vec::new(),
            },
            (Some(limits), Ok(())) => {
                record.state = TaskState::Running;
                record.started_at_ms = Some(now_ms());
                self.store.put_task(&record);
                self.hub.publish(
                    &session,
                    EventName::TaskStarted,
                    json!({ "task": record.id, "tool": record.tool }),
                );
                // A remote sidecar decides with the entities this engine keeps for the task.
                let entities = if live.sidecar.is_remote() {
                    vec![
                        crate::policy::principal_entity(&caller.principal, &[&caller.profile]),
                        crate::policy::tool_entity(plugin.name(), &tool),
                    ]
                } else {
                    Vec::new()
                };
                let run = crate::sidecar::RunTask {
                    spec: TaskSpec {
                        id: record.id.clone(),
                        identity,
                        input,
                        limits,
                        policy_version: decision.policy_version.clone(),
                        entities,
                    },
                    plugin,
                    secrets: self.secrets.select(live.secrets.iter().map(String::as_str)),
                    credentials: self.credentials_for(&live.secrets),
                    events: Arc::new(SessionEvents {
                        hub: self.hub.clone(),
                        store: self.store.clone(),
                        session: session.clone(),
                        task: record.id.clone(),
                    }),
                    cancel,
                };
                live.sidecar
                    .run_task(run)
                    .await
                    .unwrap_or_else(|error| TaskFinished {
                        result: Err(sidecar_failure(&error)),
                        usage: Usage::default(),
                        decision_us: Vec::new(),
                    })
            }
        };
        let decision = decision_json;
        if let Some(metrics) = self.metrics.get() {
            metrics.decision("invoke", invoke_us as f64 / 1e6);
            for elapsed in &finished.decision_us {
                metrics.decision("capability", *elapsed as f64 / 1e6);
            }
            let kind = finished
                .result
                .as_ref()
                .err()
                .map_or(TaskState::Completed.as_str(), |e| e.kind().as_str());
            let seconds = (finished.usage.instantiate_us + finished.usage.execute_us) as f64 / 1e6;
            metrics.task_finished(kind, seconds, finished.usage.fuel_consumed);
        }
        let outcome = finished;
        record.finished_at_ms = Some(now_ms());
        record.usage = serde_json::to_value(&outcome.usage).ok();
        record.decision = Some(decision);
        match outcome.result {
            Ok(output) => {
                record.state = TaskState::Completed;
                record.output =
                    Some(serde_json::from_str(&output).unwrap_or(Value::String(output)));
                self.hub.publish(
                    &session,
                    EventName::TaskCompleted,
                    json!({ "task": record.id, "output": record.output, "usage": record.usage }),
                );
            }
            Err(error) => {
                record.state = if error.kind() == ErrorKind::Cancelled {
                    TaskState::Cancelled
                } else {
                    TaskState::Failed
                };
                record.error = Some(error.to_json());
                self.hub.publish(&session, EventName::TaskFailed, json!({ "task": record.id, "state": record.state, "error": record.error, "usage": record.usage }));
            }
        }
        self.store.put_task(&record);
        finish(&record);
        record
    }
}

impl Orchestrator {
    /// The loaded plugin that has `qualified` (`plugin.tool`), its tools registered as
    /// policy entities; else why not.
    pub(super) async fn plugin_with(
        &self,
        qualified: &str,
    ) -> Result<Arc<crate::sandbox::Plugin>, ToolUnavailable> {
        let Some((plugin_name, tool_name)) = qualified.split_once('.') else {
            return Err(ToolUnavailable::Unknown(format!(
                "unknown tool `{qualified}` (tools are named plugin.tool)"
            )));
        };
        if !self.catalog.contains(plugin_name) {
            return Err(ToolUnavailable::Unknown(format!(
                "unknown tool `{qualified}`: there is no plugin `{plugin_name}`"
            )));
        }
        // Callers see the plugin's name and a stable code; the log has the detail.
        let plugin = self
            .catalog
            .get(plugin_name)
            .await
            .map_err(|e| ToolUnavailable::Unusable(e.public_message(plugin_name)))?;
        if plugin.tool(tool_name).is_none() {
            let names: Vec<String> = plugin
                .tools()
                .iter()
                .map(|t| format!("{plugin_name}.{}", t.name))
                .collect();
            return Err(ToolUnavailable::Unknown(format!(
                "unknown tool `{qualified}`: plugin `{plugin_name}` has {}",
                names.join(", ")
            )));
        }
        self.register_tools(&plugin).await;
        Ok(plugin)
    }

    /// Makes a plugin's tools policy entities (`Tool::"p.t" in Plugin::"p"`),
    /// once per plugin digest: rebuilding the entities is not a per-task cost.
    /// Returns once the active policy snapshot has them, however many tasks
    /// asked at the same time, so no task of the plugin is decided before.
    pub(super) async fn register_tools(&self, plugin: &Arc<crate::sandbox::Plugin>) {
        let key = format!("plugin:{}@{}", plugin.name(), plugin.digest());
        if self.policy.snapshot().is_registered(&key) {
            return;
        }
        // The first registration rebuilds the entities, maybe after a reload in progress.
        let (policy, plugin) = (self.policy.clone(), plugin.clone());
        let registered = tokio::task::spawn_blocking(move || {
            policy
                .register_entities(&key, || {
                    plugin
                        .tools()
                        .iter()
                        .map(|t| crate::policy::tool_entity(plugin.name(), &t.name))
                        .collect()
                })
                .map_err(|e| (plugin.name().to_owned(), e.to_string()))
        })
        .await;
        match registered {
            Ok(Ok(())) => {}
            Ok(Err((plugin, error))) => {
                tracing::warn!(
                    plugin,
                    error,
                    "cannot add the plugin's tools to the policy entities"
                )
            }
            Err(error) => tracing::warn!(error = %error, "registering a plugin's tools failed"),
        }
    }
}

/// Why a named tool cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ToolUnavailable {
    /// No plugin provides it: the caller's mistake.
    #[error("{0}")]
    Unknown(String),
    /// Its plugin exists but cannot be loaded now.
    #[error("{0}")]
    Unusable(String),
}

struct RunTask {
    /// The tool's plugin as `create_task` found it, or why it cannot be used.
    plugin: Result<Arc<crate::sandbox::Plugin>, ToolUnavailable>,
    caller: Caller,
    live: Arc<LiveSession>,
    record: TaskRecord,
    /// The tool's name within its plugin.
    tool: String,
    limits: Option<TaskLimitsRequest>,
    cancel: CancellationToken,
    /// A task that was waiting for its approval when the server stopped: it waits for the
    /// answer to that approval rather than asking again.
    resumed: Option<crate::store::ApprovalRecord>,
}

impl Orchestrator {
    /// Runs again, after a restart, a task that waits for the answer to `approval`.
    pub(super) fn resume_task(
        self: Arc<Self>,
        live: Arc<LiveSession>,
        record: TaskRecord,
        approval: crate::store::ApprovalRecord,
    ) {
        let cancel = self.shutdown.child_token();
        live.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(record.id.clone(), cancel.clone());
        let caller = Caller {
            principal: approval.requester.clone(),
            profile: live.profile.clone(),
            admin: false,
        };
        let limits = serde_json::from_value(approval.limits.clone())
            .ok()
            .flatten();
        tokio::spawn(async move {
            let plugin = self.plugin_with(&record.tool).await;
            let tool = record
                .tool
                .split_once('.')
                .map_or_else(String::new, |(_, tool)| tool.to_owned());
            let run = RunTask {
                plugin,
                caller,
                live,
                record,
                tool,
                limits,
                cancel,
                resumed: Some(approval),
            };
            self.run_task(run).await
        });
    }
}

fn touch(live: &LiveSession) {
    live.record
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .last_active_ms = now_ms();
}

/// A running task a caller waits for. Dropping it before the task finishes
/// (the client went away) cancels the task.
pub type TaskHandle = RunnerHandle<TaskRecord>;

/// Something running (a task, a run) that a caller waits for: dropping the handle before it
/// ends cancels it.
pub struct RunnerHandle<R> {
    join: tokio::task::JoinHandle<R>,
    cancel: Option<CancellationToken>,
}

impl<R> RunnerHandle<R> {
    pub(super) fn new(join: tokio::task::JoinHandle<R>, cancel: CancellationToken) -> Self {
        Self {
            join,
            cancel: Some(cancel),
        }
    }

    pub async fn finished(mut self) -> Result<R, OrchestratorError> {
        let result = (&mut self.join).await;
        self.cancel = None;
        result.map_err(|e| OrchestratorError::Internal(format!("the runner failed: {e}")))
    }
}

impl<R> Drop for RunnerHandle<R> {
    fn drop(&mut self) {
        if let Some(cancel) = self.cancel.take() {
            cancel.cancel();
        }
    }
}

/// A task whose sidecar failed it: lost with the sidecar, or refused by it.
fn sidecar_failure(error: &SidecarError) -> TaskError {
    if error.is_lost() {
        TaskError::HostLost {
            message: error.to_string(),
        }
    } else {
        TaskError::Internal {
            message: error.to_string(),
        }
    }
}
