//! Agent runs: an agent component runs once in the sandbox; its model calls are decided by
//! `use_model`, bounded by the run's and the policy's limits and made by the host (which holds
//! the provider's key); its tool calls are tasks of the session, linked to the run.
//!
//! Where it runs: the agent itself is pure logic with no capability of its own, so it runs in
//! this process's engine; its tools run where the session is placed, like any task. Provider
//! keys stay in this process and never travel to a sidecar or into a guest.

use super::tasks::{CreateTask, RunnerHandle};
use super::{Caller, LiveSession, Orchestrator, OrchestratorError, now_ms};
use crate::agents::{Completion, CompletionRequest, Message, ModelError, ToolSpec};
use crate::gate::{CapabilityRequest, RunUse};
use crate::policy::{PolicyDecision, TaskGate, TaskIdentity};
use crate::sandbox::{
    AgentError, AgentRun, EventSink, Limits, RunServices, TaskError, ToolCallError, ToolEvent,
};
use crate::store::{RunLimits, RunRecord, RunUsage};
use crate::vocabulary::{ErrorKind, EventName, RunState, TaskState};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// `POST /v1/sessions/{id}/runs`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    /// The agent, e.g. `tool-loop` (`GET /v1/info` lists them).
    pub agent: String,
    /// The agent's input, a JSON object (for `tool-loop`: `{"prompt": "..."}`).
    #[serde(default = "empty_object")]
    #[schema(value_type = Object, default = json!({}))]
    pub input: Value,
    /// A configured model provider; may be left out when only one is configured.
    #[serde(default)]
    pub provider: Option<String>,
    /// One of the provider's models; the first it lists when left out.
    #[serde(default)]
    pub model: Option<String>,
    /// Ask for less than the defaults and the policy allow.
    #[serde(default)]
    pub limits: Option<RunLimitsRequest>,
    /// Wait for the run to end (default) or answer 202 at once.
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub wait: bool,
}

fn empty_object() -> Value {
    json!({})
}

fn yes() -> bool {
    true
}

/// Lower limits for one run. Each must be at least 1; a value above the default (or the
/// policy's, for model calls and tokens) is lowered to it.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunLimitsRequest {
    /// Model calls in the run.
    pub model_calls: Option<u64>,
    /// Prompt and completion tokens of all its model calls.
    pub tokens: Option<u64>,
    /// Tokens one answer may have.
    pub tokens_per_call: Option<u64>,
    /// Tool calls (tasks) in the run.
    pub tool_calls: Option<u64>,
    /// Wall time of the whole run, tool calls and model calls included.
    pub timeout_ms: Option<u64>,
    /// Fuel of the agent component itself (its tools have their own).
    pub fuel: Option<u64>,
    /// Memory of the agent component.
    pub memory_mb: Option<u64>,
}

const DEFAULT_MODEL_CALLS: u64 = 50;
const DEFAULT_TOOL_CALLS: u64 = 100;
const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// Below this, what is left of a run's tokens is sent as `max_tokens` even when nothing else
/// bounds the answer (models answer at least this much).
const UNASKED_TOKEN_BOUND: u64 = 4096;

/// A running run a caller waits for; dropping it before the run ends cancels the run.
pub type RunHandle = RunnerHandle<RunRecord>;

impl Orchestrator {
    /// Checks a run and starts it. With `wait`, also a handle resolving to the ended record.
    pub async fn create_run(
        self: &Arc<Self>,
        caller: &Caller,
        session_id: &str,
        request: CreateRun,
    ) -> Result<(RunRecord, Option<RunHandle>), OrchestratorError> {
        let Some(live) = self.live(caller, session_id) else {
            self.get_session(caller, session_id)?;
            return Err(OrchestratorError::Conflict(format!(
                "session {session_id} is closed"
            )));
        };
        if !request.input.is_object() {
            return Err(OrchestratorError::Invalid(
                "`input` must be a JSON object".into(),
            ));
        }
        if !self.agents.contains(&request.agent) {
            let known: Vec<&str> = self.agents.names().collect();
            return Err(OrchestratorError::UnknownAgent(format!(
                "there is no agent `{}` (there is: {})",
                request.agent,
                known.join(", ")
            )));
        }
        let (provider, model) = self.choose_model(&request)?;
        let limits = self.run_limits(request.limits)?;
        let id = format!("r_{}", uuid::Uuid::now_v7().simple());
        let identity = TaskIdentity {
            principal: caller.principal.clone(),
            profile: live.profile.clone(),
            session: session_id.to_owned(),
            tool: format!("agent:{}", request.agent),
        };
        // A run whose first model call would be refused is refused now, with the reasons.
        let gate = self.policy.task_gate(identity.clone());
        let first = gate.decide_fully(&CapabilityRequest::UseModel {
            provider: provider.clone(),
            model: Some(model.clone()),
            run: Some(RunUse {
                run: id.clone(),
                calls: 0,
                tokens: 0,
            }),
        });
        if !first.allowed {
            let decision = serde_json::to_value(&first).unwrap_or(Value::Null);
            self.store.put_decision(
                session_id,
                None,
                &json!({ "action": "use_model", "run": id, "decision": decision }),
            );
            return Err(OrchestratorError::Forbidden {
                reasons: first.explanation(),
                decision,
            });
        }
        let record = RunRecord {
            id: id.clone(),
            session: session_id.to_owned(),
            principal: caller.principal.clone(),
            agent: request.agent.clone(),
            provider,
            model,
            input: request.input,
            state: RunState::Queued,
            created_at_ms: now_ms(),
            started_at_ms: None,
            finished_at_ms: None,
            output: None,
            error: None,
            usage: RunUsage::default(),
            limits,
        };
        let cancel = self.shutdown.child_token();
        // One run at a time per session: claimed under the lock, before anything is stored.
        {
            let mut active = live.run.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(run) = active.as_ref() {
                return Err(OrchestratorError::RunActive { run: run.clone() });
            }
            *active = Some(id.clone());
        }
        if let Err(e) = self.store.put_run(&record) {
            *live.run.lock().unwrap_or_else(|e| e.into_inner()) = None;
            return Err(OrchestratorError::Internal(e.to_string()));
        }
        live.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), cancel.clone());
        let context = Arc::new(RunContext {
            orchestrator: Arc::downgrade(self),
            caller: caller.clone(),
            live: live.clone(),
            run: id,
            provider: record.provider.clone(),
            model: record.model.clone(),
            limits,
            gate,
            identity,
            usage: Mutex::default(),
            cancel: cancel.clone(),
        });
        let this = self.clone();
        let started = record.clone();
        let join = tokio::spawn(async move { this.run_agent(started, context).await });
        let handle = request.wait.then(|| RunHandle::new(join, cancel));
        Ok((record, handle))
    }

    pub fn get_run(
        &self,
        caller: &Caller,
        session_id: &str,
        run_id: &str,
    ) -> Result<RunRecord, OrchestratorError> {
        self.get_session(caller, session_id)?;
        match self.store.get_run(session_id, run_id) {
            Ok(Some(run)) => Ok(run),
            Ok(None) => Err(OrchestratorError::NotFound("run")),
            Err(e) => Err(OrchestratorError::Internal(e.to_string())),
        }
    }

    /// Cancels a queued or running run (its tool calls with it); an ended one is a conflict.
    pub fn cancel_run(
        &self,
        caller: &Caller,
        session_id: &str,
        run_id: &str,
    ) -> Result<RunRecord, OrchestratorError> {
        let run = self.get_run(caller, session_id, run_id)?;
        let token = self.live(caller, session_id).and_then(|live| {
            live.running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(run_id)
                .cloned()
        });
        match token {
            Some(token) if !run.state.is_terminal() => {
                token.cancel();
                Ok(run)
            }
            _ => Err(OrchestratorError::Conflict(format!(
                "run {run_id} is already {}",
                run.state
            ))),
        }
    }

    /// The agents a run may name.
    pub fn agent_names(&self) -> Vec<String> {
        self.agents.names().map(str::to_owned).collect()
    }

    fn choose_model(&self, request: &CreateRun) -> Result<(String, String), OrchestratorError> {
        let configured: Vec<&str> = self.providers.names().collect();
        let provider = match (&request.provider, configured.as_slice()) {
            (Some(name), _) => name.clone(),
            (None, [only]) => (*only).to_owned(),
            (None, []) => {
                return Err(OrchestratorError::UnknownModel(
                    "no model provider is configured (`[[model_providers]]` in the config)".into(),
                ));
            }
            (None, many) => {
                return Err(OrchestratorError::UnknownModel(format!(
                    "name a `provider`: one of {}",
                    many.join(", ")
                )));
            }
        };
        let Some(models) = self.providers.models(&provider) else {
            return Err(OrchestratorError::UnknownModel(format!(
                "there is no model provider `{provider}` (there is: {})",
                configured.join(", ")
            )));
        };
        let model = match &request.model {
            Some(model) if models.contains(model) => model.clone(),
            Some(model) => {
                return Err(OrchestratorError::UnknownModel(format!(
                    "provider `{provider}` offers no model `{model}` (it offers: {})",
                    models.join(", ")
                )));
            }
            None => models.first().cloned().unwrap_or_default(),
        };
        Ok((provider, model))
    }

    fn run_limits(&self, asked: Option<RunLimitsRequest>) -> Result<RunLimits, OrchestratorError> {
        let asked = asked.unwrap_or_default();
        let fields = [
            ("model_calls", asked.model_calls),
            ("tokens", asked.tokens),
            ("tokens_per_call", asked.tokens_per_call),
            ("tool_calls", asked.tool_calls),
            ("timeout_ms", asked.timeout_ms),
            ("fuel", asked.fuel),
            ("memory_mb", asked.memory_mb),
        ];
        if let Some((name, _)) = fields.iter().find(|(_, v)| *v == Some(0)) {
            return Err(OrchestratorError::Invalid(format!(
                "`limits.{name}` must be at least 1"
            )));
        }
        let engine = self.catalog.engine().config();
        let lower = |asked: Option<u64>, default: u64| asked.map_or(default, |a| a.min(default));
        let max_timeout = engine.max_limits.timeout.as_millis() as u64;
        Ok(RunLimits {
            model_calls: lower(asked.model_calls, DEFAULT_MODEL_CALLS),
            tokens: asked.tokens,
            tokens_per_call: asked.tokens_per_call,
            tool_calls: lower(asked.tool_calls, DEFAULT_TOOL_CALLS),
            timeout_ms: lower(
                asked.timeout_ms,
                (DEFAULT_RUN_TIMEOUT.as_millis() as u64).min(max_timeout),
            ),
            fuel: lower(asked.fuel, engine.default_limits.fuel),
            memory_mb: lower(asked.memory_mb, engine.default_limits.memory_bytes >> 20),
        })
    }

    async fn run_agent(
        self: Arc<Self>,
        mut record: RunRecord,
        context: Arc<RunContext>,
    ) -> RunRecord {
        let live = context.live.clone();
        let cancel = context.cancel.clone();
        // Queued until a place among the runs that may go at once is free.
        let slot = tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            slot = self.run_slots.clone().acquire_owned() => slot.ok(),
        };
        let ended = match slot {
            None => Err(RunFailure::Task(TaskError::Cancelled, 0)),
            Some(_slot) => {
                record.state = RunState::Running;
                record.started_at_ms = Some(now_ms());
                self.save_run(&record);
                self.hub.publish(
                    &record.session,
                    EventName::RunStarted,
                    json!({
                        "run": record.id, "agent": record.agent,
                        "provider": record.provider, "model": record.model,
                        "limits": record.limits,
                    }),
                );
                self.execute_agent(&record, &context).await
            }
        };
        let mut usage = context.usage();
        let (Ok((_, fuel)) | Err(RunFailure::Agent(_, fuel) | RunFailure::Task(_, fuel))) = &ended;
        usage.fuel_consumed = *fuel;
        record.usage = usage;
        record.finished_at_ms = Some(now_ms());
        let outcome = match ended {
            Ok((output, _)) => {
                record.state = RunState::Completed;
                let data = serde_json::from_str::<Value>(&output.data)
                    .unwrap_or(Value::String(output.data));
                record.output = Some(json!({ "content": output.content, "data": data }));
                RunState::Completed.as_str()
            }
            Err(failure) => {
                let (mut kind, mut message) = failure.describe();
                // A run cut by the server stopping is `interrupted`, as after a crash.
                record.state = if kind == ErrorKind::Cancelled && self.shutdown.is_cancelled() {
                    kind = ErrorKind::Interrupted;
                    message = "the server stopped while the run was queued or running".into();
                    RunState::Interrupted
                } else if kind == ErrorKind::Cancelled {
                    RunState::Cancelled
                } else {
                    RunState::Failed
                };
                record.error = Some(json!({ "kind": kind, "message": message }));
                kind.as_str()
            }
        };
        self.save_run(&record);
        let (name, payload) = if record.state == RunState::Completed {
            (
                EventName::RunCompleted,
                json!({ "run": record.id, "output": record.output, "usage": record.usage }),
            )
        } else {
            (
                EventName::RunFailed,
                json!({ "run": record.id, "state": record.state, "error": record.error, "usage": record.usage }),
            )
        };
        self.hub.publish(&record.session, name, payload);
        if let Some(metrics) = self.metrics.get() {
            metrics.run_finished(&record.agent, outcome);
        }
        live.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&record.id);
        let mut active = live.run.lock().unwrap_or_else(|e| e.into_inner());
        if active.as_deref() == Some(record.id.as_str()) {
            *active = None;
        }
        record
    }

    async fn execute_agent(
        &self,
        record: &RunRecord,
        context: &Arc<RunContext>,
    ) -> Result<(crate::sandbox::AgentOutput, u64), RunFailure> {
        let agent = self
            .agents
            .get(&record.agent)
            .await
            .map_err(|message| RunFailure::Task(TaskError::Internal { message }, 0))?;
        let limits = context.limits;
        // A run's messages carry whole tool outputs and answers: they share the largest log
        // budget a task may have, not a tool's default.
        let engine = self.catalog.engine().config();
        let engine_limits = Limits {
            fuel: limits.fuel,
            memory_bytes: limits.memory_mb.saturating_mul(1 << 20),
            timeout: Duration::from_millis(limits.timeout_ms),
            log_bytes: engine.max_limits.log_bytes,
            log_records: engine.max_limits.log_records,
            ..engine.default_limits
        };
        let run = AgentRun {
            input: record.input.to_string(),
            limits: engine_limits,
            gate: Arc::new(self.policy.task_gate(context.gate_identity())),
            services: context.clone(),
            events: Some(Arc::new(RunEvents {
                hub: self.hub.clone(),
                session: record.session.clone(),
                run: record.id.clone(),
            })),
            cancel: Some(context.cancel.clone()),
        };
        let outcome = agent.run(self.catalog.engine(), run).await;
        let fuel = outcome.usage.fuel_consumed;
        match outcome.result {
            Ok(Ok(output)) => Ok((output, fuel)),
            Ok(Err(error)) => Err(RunFailure::Agent(error, fuel)),
            Err(error) => Err(RunFailure::Task(error, fuel)),
        }
    }

    /// Writes the run's record now. A failed write is logged: the run goes on, and its
    /// events still tell what happened.
    fn save_run(&self, record: &RunRecord) {
        if let Err(error) = self.store.put_run(record) {
            tracing::error!(run = %record.id, %error, "cannot store the run");
        }
    }

    /// After a restart: runs cut off by the stop become `interrupted`, each with its event.
    pub(super) fn interrupt_runs(&self) -> Result<(), OrchestratorError> {
        let runs = self
            .store
            .interrupt_unfinished_runs()
            .map_err(|e| OrchestratorError::Internal(e.to_string()))?;
        for run in &runs {
            self.hub.publish(
                &run.session,
                EventName::RunFailed,
                json!({ "run": run.id, "state": run.state, "error": run.error, "usage": run.usage }),
            );
        }
        if !runs.is_empty() {
            tracing::warn!(
                runs = runs.len(),
                "runs cut off by the last stop are marked interrupted"
            );
        }
        Ok(())
    }
}

/// How a run ended without an answer.
enum RunFailure {
    /// The agent said so (with the fuel it used).
    Agent(AgentError, u64),
    /// The component did not return: a trap, fuel, memory, the deadline, a cancel (with the
    /// fuel it used until then).
    Task(TaskError, u64),
}

impl RunFailure {
    fn describe(self) -> (ErrorKind, String) {
        match self {
            RunFailure::Agent(AgentError::InvalidInput(m), _) => (ErrorKind::InvalidInput, m),
            RunFailure::Agent(AgentError::BudgetExhausted(m), _) => (ErrorKind::BudgetExhausted, m),
            RunFailure::Agent(AgentError::Failed(m), _) => (ErrorKind::AgentFailed, m),
            RunFailure::Task(error, _) => (error.kind(), error.to_string()),
        }
    }
}

/// A run's log and progress, published as `run.log` and `run.progress`.
struct RunEvents {
    hub: Arc<crate::events::EventHub>,
    session: String,
    run: String,
}

impl EventSink for RunEvents {
    fn emit(&self, event: ToolEvent) {
        let name = match &event {
            ToolEvent::Log { .. } => EventName::RunLog,
            ToolEvent::Progress { .. } => EventName::RunProgress,
        };
        let mut data = serde_json::to_value(&event).unwrap_or_default();
        data["run"] = self.run.clone().into();
        self.hub.publish(&self.session, name, data);
    }
}

/// What a running agent reaches through the host: one per run.
struct RunContext {
    /// Weak: a run must not keep a stopped orchestrator alive.
    orchestrator: std::sync::Weak<Orchestrator>,
    caller: Caller,
    live: Arc<LiveSession>,
    run: String,
    provider: String,
    model: String,
    limits: RunLimits,
    /// Decides the run's model calls (`use_model`).
    gate: TaskGate,
    /// Who runs it, where: `tool` is `agent:<name>` in its decisions' context.
    identity: TaskIdentity,
    usage: Mutex<RunUsage>,
    cancel: CancellationToken,
}

impl RunContext {
    fn usage(&self) -> RunUsage {
        self.usage.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn session(&self) -> String {
        self.live.record_id()
    }

    fn gate_identity(&self) -> TaskIdentity {
        self.identity.clone()
    }

    /// Decides one model call and sets its token bound; `Err` when it may not be made.
    fn admit(
        &self,
        orchestrator: &Orchestrator,
        model: &str,
        asked_max_tokens: Option<u32>,
    ) -> Result<Option<u32>, ModelError> {
        let used = self.usage();
        let limit = |what: &str, n: u64| {
            ModelError::LimitExceeded(format!("the run's {what} limit of {n} is reached"))
        };
        if used.model_calls >= self.limits.model_calls {
            return Err(limit("model-call", self.limits.model_calls));
        }
        if let Some(tokens) = self.limits.tokens
            && used.tokens() >= tokens
        {
            return Err(limit("token", tokens));
        }
        let decision = self.gate.decide_fully(&CapabilityRequest::UseModel {
            provider: self.provider.clone(),
            model: Some(model.to_owned()),
            run: Some(RunUse {
                run: self.run.clone(),
                calls: used.model_calls,
                tokens: used.tokens(),
            }),
        });
        self.record_decision(orchestrator, &decision);
        if !decision.allowed {
            return Err(ModelError::Denied(decision.explanation().join("; ")));
        }
        let policy = decision.model_limits;
        if let Some(calls) = policy.model_calls
            && used.model_calls >= calls
        {
            return Err(limit("model-call (policy)", calls));
        }
        let tokens_left = [self.limits.tokens, policy.tokens_per_run]
            .into_iter()
            .flatten()
            .min()
            .map(|limit| limit.saturating_sub(used.tokens()));
        if tokens_left == Some(0) {
            return Err(limit("token (policy)", policy.tokens_per_run.unwrap_or(0)));
        }
        let per_call = [
            asked_max_tokens.map(u64::from),
            self.limits.tokens_per_call,
            policy.tokens_per_call,
        ]
        .into_iter()
        .flatten()
        .min();
        // What is left of the run's tokens bounds the answer too, but is sent on its own only
        // when it is below what any model answers anyway: a provider may refuse a
        // `max_tokens` above its model's output limit.
        let bound = match (per_call, tokens_left) {
            (Some(call), Some(left)) => Some(call.min(left)),
            (Some(call), None) => Some(call),
            (None, Some(left)) if left < UNASKED_TOKEN_BOUND => Some(left),
            (None, _) => None,
        };
        Ok(bound.map(|n| n.min(u64::from(u32::MAX)) as u32))
    }

    fn record_decision(&self, orchestrator: &Orchestrator, decision: &PolicyDecision) {
        let session = self.session();
        let decision_json = serde_json::to_value(decision).unwrap_or(Value::Null);
        orchestrator.store.put_decision(
            &session,
            None,
            &json!({ "action": "use_model", "run": self.run, "decision": decision_json }),
        );
        orchestrator.hub.publish(
            &session,
            EventName::PolicyDecision,
            json!({ "run": self.run, "action": "use_model", "decision": decision_json }),
        );
        if let Some(metrics) = orchestrator.metrics.get() {
            metrics.decision("use_model", decision.elapsed_us as f64 / 1e6);
        }
    }

    async fn complete_call(
        self: Arc<Self>,
        mut request: CompletionRequest,
    ) -> Result<Completion, ModelError> {
        let Some(orchestrator) = self.orchestrator.upgrade() else {
            return Err(ModelError::Provider("the server is stopping".into()));
        };
        if request.model.is_empty() {
            request.model = self.model.clone();
        } else if !orchestrator
            .providers
            .offers(&self.provider, &request.model)
        {
            return Err(ModelError::UnknownModel(format!(
                "provider `{}` offers no model `{}`",
                self.provider, request.model
            )));
        }
        if request.messages.is_empty() {
            return Err(ModelError::InvalidRequest(
                "a request needs at least one message".into(),
            ));
        }
        request.max_tokens = self.admit(&orchestrator, &request.model, request.max_tokens)?;
        let started = Instant::now();
        let answer = orchestrator
            .providers
            .complete(&self.provider, &request)
            .await;
        let duration_ms = started.elapsed().as_millis() as u64;
        let session = self.session();
        match &answer {
            Ok(completion) => {
                {
                    // Counts a provider reports are not trusted not to overflow.
                    let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
                    usage.model_calls += 1;
                    usage.prompt_tokens = usage
                        .prompt_tokens
                        .saturating_add(completion.usage.prompt_tokens);
                    usage.completion_tokens = usage
                        .completion_tokens
                        .saturating_add(completion.usage.completion_tokens);
                    if let Some(cost) = completion.usage.cost {
                        usage.cost_usd = Some(usage.cost_usd.unwrap_or(0.0) + cost);
                    }
                }
                orchestrator.hub.publish(
                    &session,
                    EventName::ModelCalled,
                    json!({
                        "run": self.run, "provider": self.provider, "model": completion.model,
                        "finish_reason": completion.finish_reason, "usage": completion.usage,
                        "tool_calls": completion.tool_calls.len(), "duration_ms": duration_ms,
                    }),
                );
            }
            Err(error) => {
                // A call that reached the provider counts, answered or not.
                self.usage
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .model_calls += 1;
                orchestrator.hub.publish(
                    &session,
                    EventName::ModelCalled,
                    json!({
                        "run": self.run, "provider": self.provider, "model": request.model,
                        "error": { "kind": error.kind(), "message": error.to_string() },
                        "duration_ms": duration_ms,
                    }),
                );
            }
        }
        if let Some(metrics) = orchestrator.metrics.get() {
            let (outcome, tokens) = match &answer {
                Ok(c) => (
                    "ok",
                    Some((c.usage.prompt_tokens, c.usage.completion_tokens)),
                ),
                Err(e) => (e.kind(), None),
            };
            metrics.model_call(&self.provider, &request.model, outcome, tokens);
        }
        answer
    }

    async fn list_tools(self: Arc<Self>) -> Vec<ToolSpec> {
        let Some(orchestrator) = self.orchestrator.upgrade() else {
            return Vec::new();
        };
        let session = self.session();
        match orchestrator.invocable_tools(&self.caller, &session).await {
            Ok(tools) => tools
                .into_iter()
                .map(|tool| ToolSpec {
                    name: tool.name,
                    description: tool.description,
                    input_schema: tool.input_schema.to_string(),
                })
                .collect(),
            Err(error) => {
                tracing::warn!(run = %self.run, %error, "cannot list the run's tools");
                Vec::new()
            }
        }
    }

    async fn run_tool(
        self: Arc<Self>,
        name: String,
        input: String,
    ) -> Result<String, ToolCallError> {
        let Some(orchestrator) = self.orchestrator.upgrade() else {
            return Err(ToolCallError::Failed("the server is stopping".into()));
        };
        {
            let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
            if usage.tool_calls >= self.limits.tool_calls {
                return Err(ToolCallError::Denied(format!(
                    "the run's tool-call limit of {} is reached",
                    self.limits.tool_calls
                )));
            }
            usage.tool_calls += 1;
        }
        let input: Value = serde_json::from_str(&input)
            .map_err(|e| ToolCallError::Failed(format!("the tool's input is not JSON: {e}")))?;
        let request = CreateTask {
            tool: name,
            input,
            wait: true,
            limits: None,
        };
        let session = self.session();
        let (_, handle) = orchestrator
            .create_task_for_run(&self.caller, &session, request, &self.run)
            .await
            .map_err(|error| match error {
                OrchestratorError::UnknownTool(m) => ToolCallError::UnknownTool(m),
                other => ToolCallError::Failed(other.to_string()),
            })?;
        let Some(handle) = handle else {
            return Err(ToolCallError::Failed("the task did not start".into()));
        };
        // Dropped with the run (cancelled, past its deadline): the task is cancelled too.
        let task = handle
            .finished()
            .await
            .map_err(|e| ToolCallError::Failed(e.to_string()))?;
        match task.state {
            TaskState::Completed => {
                Ok(task.output.map_or_else(|| "null".into(), |o| o.to_string()))
            }
            _ => {
                let error = task.error.unwrap_or(Value::Null);
                let message = error["message"]
                    .as_str()
                    .map_or_else(|| error.to_string(), str::to_owned);
                let reasons = error["reasons"].as_array().map(|r| {
                    r.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("; ")
                });
                match error["kind"].as_str() {
                    Some("denied") => Err(ToolCallError::Denied(reasons.unwrap_or(message))),
                    Some(kind) => Err(ToolCallError::Failed(format!("{kind}: {message}"))),
                    None => Err(ToolCallError::Failed(format!(
                        "the task ended {}",
                        task.state
                    ))),
                }
            }
        }
    }
}

impl RunServices for RunContext {
    fn complete(
        self: Arc<Self>,
        request: CompletionRequest,
    ) -> BoxFuture<'static, Result<Completion, ModelError>> {
        RunContext::complete_call(self, request).boxed()
    }

    fn tools(self: Arc<Self>) -> BoxFuture<'static, Vec<ToolSpec>> {
        RunContext::list_tools(self).boxed()
    }

    fn call_tool(
        self: Arc<Self>,
        name: String,
        input: String,
    ) -> BoxFuture<'static, Result<String, ToolCallError>> {
        RunContext::run_tool(self, name, input).boxed()
    }

    fn message(&self, message: Message) {
        self.usage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .messages += 1;
        let Some(orchestrator) = self.orchestrator.upgrade() else {
            return;
        };
        let mut data = serde_json::to_value(&message).unwrap_or_default();
        data["run"] = self.run.clone().into();
        orchestrator
            .hub
            .publish(&self.session(), EventName::Message, data);
    }
}
