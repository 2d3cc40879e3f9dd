//! Agent components: a component of the `agent` world (see `wit/agent.wit`) runs once per run,
//! like a tool: a fresh instance from one `InstancePre`, no ambient authority, a fuel budget,
//! a memory cap and a deadline. Its model calls, tool calls and messages go to the
//! [`RunServices`] its caller provides: the sandbox decides nothing about them itself.

use super::engine::SandboxEngine;
use super::error::{PluginError, TaskError};
use super::executor::{self, Returned};
use super::host::EventSink;
use super::limits::Limits;
use super::run_services::{RunServices, ToolCallError};
use super::state::TaskState;
use crate::agents::{Completion, CompletionRequest, Message, ModelError, ToolSpec};
use crate::gate::Gate;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub(crate) mod wit {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "toolgate:plugin/agent",
        imports: {
            "toolgate:plugin/model.complete": async | trappable,
            "toolgate:plugin/tools.available": async | trappable,
            "toolgate:plugin/tools.call": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: { "toolgate:plugin/host": crate::sandbox::bindings::toolgate::plugin::host },
    });
}

use wit::toolgate::plugin::model_types as w;
use wit::toolgate::plugin::tools::CallError as WitCallError;

/// The export the `agent` world requires.
const REQUIRED_EXPORTS: [&str; 1] = ["run"];

/// What the agent answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentOutput {
    pub content: String,
    /// JSON text.
    pub data: String,
}

/// Why the agent said its run failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentError {
    InvalidInput(String),
    BudgetExhausted(String),
    Failed(String),
}

/// How one run executes.
pub struct AgentRun {
    pub input: String,
    pub limits: Limits,
    /// Decides the run's own capability uses (secrets through `host`).
    pub gate: Arc<dyn Gate>,
    pub services: Arc<dyn RunServices>,
    pub events: Option<Arc<dyn EventSink>>,
    pub cancel: Option<CancellationToken>,
}

/// The result of a run's component with its account.
pub struct AgentOutcome {
    /// `Err` when the component did not return (a trap, fuel, memory, the deadline, cancel).
    pub result: Result<Result<AgentOutput, AgentError>, TaskError>,
    pub usage: super::executor::Usage,
    pub limits: Limits,
}

/// A compiled agent component, ready to be instantiated for any run.
pub struct AgentComponent {
    name: String,
    pre: wit::AgentPre<TaskState>,
}

impl AgentComponent {
    /// Compiles `bytes` and checks it is an `agent` component whose imports the host
    /// provides. Long work: callers run it off the async workers.
    pub fn load(engine: &SandboxEngine, name: &str, bytes: &[u8]) -> Result<Self, PluginError> {
        let origin = format!("agent `{name}`");
        let instance_pre =
            super::plugin::link_component(engine, &origin, bytes, &REQUIRED_EXPORTS)?;
        let pre = wit::AgentPre::new(instance_pre).map_err(|e| PluginError::WrongSignature {
            origin,
            message: format!("{e:#}"),
        })?;
        Ok(Self {
            name: name.to_owned(),
            pre,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs the agent once in a fresh instance.
    pub async fn run(&self, engine: &SandboxEngine, run: AgentRun) -> AgentOutcome {
        let limits = run.limits.clamp_to(&engine.config().max_limits);
        let (result, usage) = executor::run_agent(engine, &self.pre, &run, &limits).await;
        let result = match result {
            Ok(Returned::Agent(answer)) => Ok(answer),
            Ok(_) => Err(TaskError::Internal {
                message: "an agent returned a tool's answer".into(),
            }),
            Err(error) => Err(error),
        };
        AgentOutcome {
            result,
            usage,
            limits,
        }
    }
}

/// Calls `run` on an instance (inside the executor's store and limits).
pub(crate) async fn invoke(
    store: &mut wasmtime::Store<TaskState>,
    agent: &wit::Agent,
    input: &str,
) -> wasmtime::Result<Result<AgentOutput, AgentError>> {
    use wit::toolgate::plugin::agent_types::RunError;
    Ok(match agent.call_run(&mut *store, input).await? {
        Ok(output) => Ok(AgentOutput {
            content: output.content,
            data: output.data,
        }),
        Err(RunError::InvalidInput(m)) => Err(AgentError::InvalidInput(m)),
        Err(RunError::BudgetExhausted(m)) => Err(AgentError::BudgetExhausted(m)),
        Err(RunError::Failed(m)) => Err(AgentError::Failed(m)),
    })
}

/// Runs a service's work on the runtime, off the component's fiber stack: policy decisions
/// and tasks need a full thread stack. Dropped with the call (a cancel, the deadline), the
/// work is aborted, and what it started (a tool call's task) is cancelled with it.
async fn off_fiber<T: Send + 'static>(work: BoxFuture<'static, T>) -> wasmtime::Result<T> {
    struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);
    impl<T> Drop for AbortOnDrop<T> {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut handle = AbortOnDrop(tokio::spawn(work));
    (&mut handle.0)
        .await
        .map_err(|e| wasmtime::Error::msg(format!("a host service of the run failed: {e}")))
}

/// The services of this store's run; a tool that imports the agent interfaces has none.
fn services(state: &TaskState) -> Option<Arc<dyn RunServices>> {
    state.host.agent.clone()
}

impl wit::toolgate::plugin::model_types::Host for TaskState {}
impl wit::toolgate::plugin::agent_types::Host for TaskState {}

impl wit::toolgate::plugin::model::Host for TaskState {
    async fn complete(
        &mut self,
        request: w::CompletionRequest,
    ) -> wasmtime::Result<Result<w::Completion, w::ModelError>> {
        let Some(services) = services(self) else {
            return Ok(Err(w::ModelError::Denied(
                "only agent runs may call models".into(),
            )));
        };
        let request = CompletionRequest {
            model: request.model.unwrap_or_default(),
            messages: request.messages.into_iter().map(from_wit_message).collect(),
            tools: request.tools.into_iter().map(from_wit_spec).collect(),
            sampling: crate::agents::Sampling {
                temperature: request.sampling.temperature,
                top_p: request.sampling.top_p,
                stop: request.sampling.stop,
            },
            max_tokens: request.max_tokens,
        };
        Ok(off_fiber(services.complete(request))
            .await?
            .map(to_wit_completion)
            .map_err(to_wit_model_error))
    }
}

impl wit::toolgate::plugin::tools::Host for TaskState {
    async fn available(&mut self) -> wasmtime::Result<Vec<w::ToolSpec>> {
        let Some(services) = services(self) else {
            return Ok(Vec::new());
        };
        Ok(off_fiber(services.tools())
            .await?
            .into_iter()
            .map(|spec| w::ToolSpec {
                name: spec.name,
                description: spec.description,
                input_schema: spec.input_schema,
            })
            .collect())
    }

    async fn call(
        &mut self,
        name: String,
        input: String,
    ) -> wasmtime::Result<Result<String, WitCallError>> {
        let Some(services) = services(self) else {
            return Ok(Err(WitCallError::Denied(
                "only agent runs may call tools".into(),
            )));
        };
        Ok(off_fiber(services.call_tool(name, input))
            .await?
            .map_err(|e| match e {
                ToolCallError::Denied(m) => WitCallError::Denied(m),
                ToolCallError::UnknownTool(m) => WitCallError::UnknownTool(m),
                ToolCallError::Failed(m) => WitCallError::Failed(m),
            }))
    }
}

impl wit::toolgate::plugin::agent_events::Host for TaskState {
    fn emit_message(&mut self, message: w::Message) -> wasmtime::Result<()> {
        // Messages are records of the run: they count against its log budget like logs.
        let size = message.content.len()
            + message
                .tool_calls
                .iter()
                .map(|c| c.id.len() + c.name.len() + c.arguments.len())
                .sum::<usize>();
        self.host.budget.charge_record(size as u64)?;
        if let Some(services) = services(self) {
            services.message(from_wit_message(message));
        }
        Ok(())
    }
}

fn from_wit_message(message: w::Message) -> Message {
    use crate::agents::Role;
    Message {
        role: match message.role {
            w::Role::System => Role::System,
            w::Role::User => Role::User,
            w::Role::Assistant => Role::Assistant,
            w::Role::Tool => Role::Tool,
        },
        content: message.content,
        tool_calls: message.tool_calls.into_iter().map(from_wit_call).collect(),
        tool_call_id: message.tool_call_id,
    }
}

fn from_wit_call(call: w::ToolCall) -> crate::agents::ToolCall {
    crate::agents::ToolCall {
        id: call.id,
        name: call.name,
        arguments: call.arguments,
    }
}

fn from_wit_spec(spec: w::ToolSpec) -> ToolSpec {
    ToolSpec {
        name: spec.name,
        description: spec.description,
        input_schema: spec.input_schema,
    }
}

fn to_wit_completion(completion: Completion) -> w::Completion {
    use crate::agents::FinishReason;
    w::Completion {
        content: completion.content,
        tool_calls: completion
            .tool_calls
            .into_iter()
            .map(|c| w::ToolCall {
                id: c.id,
                name: c.name,
                arguments: c.arguments,
            })
            .collect(),
        finish_reason: match completion.finish_reason {
            FinishReason::Stop => w::FinishReason::Stop,
            FinishReason::ToolCalls => w::FinishReason::ToolCalls,
            FinishReason::Length => w::FinishReason::Length,
            FinishReason::Other => w::FinishReason::Other,
        },
        usage: w::Usage {
            prompt_tokens: completion.usage.prompt_tokens,
            completion_tokens: completion.usage.completion_tokens,
        },
        model: completion.model,
    }
}

fn to_wit_model_error(error: ModelError) -> w::ModelError {
    match error {
        ModelError::Denied(m) => w::ModelError::Denied(m),
        ModelError::LimitExceeded(m) => w::ModelError::LimitExceeded(m),
        ModelError::UnknownModel(m) => w::ModelError::UnknownModel(m),
        ModelError::Timeout(m) => w::ModelError::Timeout(m),
        ModelError::Provider(m) => w::ModelError::Provider(m),
        ModelError::InvalidRequest(m) => w::ModelError::InvalidRequest(m),
    }
}
