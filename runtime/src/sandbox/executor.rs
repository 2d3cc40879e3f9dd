//! Runs one task: a fresh store built from the task's grants and limits, an
//! instance from the plugin's `InstancePre`, one call, and an account of what
//! it used. Whatever the component does, the outcome is output or a typed
//! [`TaskError`]; the engine goes on serving the next task.

use super::bindings::{Tool, ToolPre, WitToolError, WitToolInfo};
use super::capabilities::{self, OutputLimitExceeded, TaskAccount, TaskSpec};
use super::describe_bounds::{DescribeViolation, MAX_DESCRIBE_COPY_BYTES, ToolsCheck};
use super::engine::SandboxEngine;
use super::error::{OutputBound, TaskError};
use super::grants::Grants;
use super::host::EventSink;
use super::limits::{Limits, MemoryLimitExceeded, TableLimitExceeded};
use super::plugin::{Plugin, ToolInfo};
use super::state::TaskState;
use crate::gate::{AllowAll, DecisionRecord, Gate};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::SemaphorePermit;
use tokio_util::sync::CancellationToken;
use wasmtime::{Store, Trap, UpdateDeadline};

/// One tool call to run.
pub struct TaskRequest {
    /// The tool's short name within its plugin (`read` for `fs.read`).
    pub tool: String,
    /// The input, a JSON object as text.
    pub input: String,
    pub grants: Grants,
    /// Asked-for limits; `None` takes the engine's defaults. Clamped to the engine's ceilings.
    pub limits: Option<Limits>,
    pub events: Option<Arc<dyn EventSink>>,
    pub cancel: Option<CancellationToken>,
    /// Decides this task's capability uses; `None` takes the executor's gate.
    pub gate: Option<Arc<dyn Gate>>,
}

impl TaskRequest {
    pub fn new(tool: impl Into<String>, input: impl Into<String>) -> Self {
        Self {
            tool: tool.into(),
            input: input.into(),
            grants: Grants::default(),
            limits: None,
            events: None,
            cancel: None,
            gate: None,
        }
    }
}

/// What a task used. Reported for every call, success or failure.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Usage {
    pub fuel_consumed: u64,
    pub peak_memory_bytes: u64,
    pub instantiate_us: u64,
    pub execute_us: u64,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
}

/// The result of a task with its account.
#[derive(Debug, Clone, Serialize)]
pub struct TaskOutcome {
    /// The tool's output (JSON text) or why there is none.
    pub result: Result<String, TaskError>,
    pub usage: Usage,
    /// The limits that were in force.
    pub limits: Limits,
    /// Every capability decision taken during the task, in order.
    pub decisions: Vec<DecisionRecord>,
    pub stdout: String,
    pub stderr: String,
}

/// Fuel units between refuels; bounds the error of the fuel account of an interrupted task.
const FUEL_SLICE: u64 = 5_000_000;

/// Runs tasks on one engine with one gate.
#[derive(Clone)]
pub struct Executor {
    engine: Arc<SandboxEngine>,
    gate: Arc<dyn Gate>,
}

impl Executor {
    pub fn new(engine: Arc<SandboxEngine>, gate: Arc<dyn Gate>) -> Self {
        Self { engine, gate }
    }

    pub fn engine(&self) -> &Arc<SandboxEngine> {
        &self.engine
    }

    pub async fn run(&self, plugin: &Plugin, request: TaskRequest) -> TaskOutcome {
        let limits = request
            .limits
            .unwrap_or(self.engine.config().default_limits)
            .clamp_to(&self.engine.config().max_limits);
        let empty = |result| TaskOutcome {
            result,
            usage: Usage::default(),
            limits,
            decisions: Vec::new(),
            stdout: String::new(),
            stderr: String::new(),
        };
        if plugin.tool(&request.tool).is_none() {
            let names: Vec<&str> = plugin.tools().iter().map(|t| t.name.as_str()).collect();
            return empty(Err(TaskError::InvalidInput {
                message: format!(
                    "plugin `{}` has no tool `{}` (it has: {})",
                    plugin.name(),
                    request.tool,
                    names.join(", ")
                ),
                path: None,
            }));
        }
        let input = match serde_json::from_str::<serde_json::Value>(&request.input) {
            Ok(input @ serde_json::Value::Object(_)) => input,
            Ok(_) => {
                return empty(Err(TaskError::InvalidInput {
                    message: "input must be a JSON object".into(),
                    path: None,
                }));
            }
            Err(e) => {
                return empty(Err(TaskError::InvalidInput {
                    message: format!("input must be a JSON object: {e}"),
                    path: None,
                }));
            }
        };
        // The tool's declared schema is enforced here, before any component exists for it.
        if let Some(Err(mismatch)) = plugin.check_input(&request.tool, &input) {
            let at = if mismatch.path.is_empty() {
                "the input".to_owned()
            } else {
                format!("`{}`", mismatch.path)
            };
            return empty(Err(TaskError::InvalidInput {
                message: format!(
                    "{at} does not match the input schema of `{}.{}`: {}",
                    plugin.name(),
                    request.tool,
                    mismatch.message
                ),
                path: Some(mismatch.path),
            }));
        }
        let gate = request.gate.as_ref().unwrap_or(&self.gate);
        let spec = TaskSpec {
            grants: &request.grants,
            limits: &limits,
            gate,
            events: request.events.as_ref(),
            agent: None,
        };
        let call = Export::Call {
            name: &request.tool,
            input: &request.input,
        };
        let run = execute(
            &self.engine,
            Entry::Tool(plugin.pre(), call),
            &spec,
            request.cancel.as_ref(),
            None,
        )
        .await;
        let result = match run.result {
            Ok(Returned::Output(output)) => check_output(output, &limits),
            Ok(Returned::ToolError(error)) => Err(tool_error(error, &run.decisions)),
            Ok(Returned::Tools(_) | Returned::Driver(_) | Returned::Agent(_)) => {
                unreachable!("a call returns its output or its error")
            }
            Err(error) => Err(error),
        };
        TaskOutcome {
            result,
            usage: run.usage,
            limits,
            decisions: run.decisions,
            stdout: run.stdout,
            stderr: run.stderr,
        }
    }
}

/// Why `describe` gave no usable tool list.
pub(crate) enum DescribeFailure {
    /// It did not return (trap, fuel, memory, deadline, ...).
    Failed(TaskError),
    /// It returned tools beyond the bounds or not well formed.
    Refused(DescribeViolation),
}

/// Asks a freshly validated plugin for its tools, with no grants and default limits, and
/// checks them against the describe bounds.
pub(crate) async fn describe(
    engine: &SandboxEngine,
    pre: &ToolPre<TaskState>,
) -> Result<Vec<ToolInfo>, DescribeFailure> {
    // Wait for a free instance slot as long as it takes: the deadline starts once the plugin
    // has one, so a busy engine never makes a good plugin fail (and be remembered as failed).
    let permit = engine.slots().acquire().await.map_err(|_| {
        DescribeFailure::Failed(TaskError::Internal {
            message: "the engine is shutting down".into(),
        })
    })?;
    let gate: Arc<dyn Gate> = Arc::new(AllowAll);
    let grants = Grants::default();
    let limits = engine.config().default_limits;
    let spec = TaskSpec {
        grants: &grants,
        limits: &limits,
        gate: &gate,
        events: None,
        agent: None,
    };
    let run = execute(
        engine,
        Entry::Tool(pre, Export::Describe),
        &spec,
        None,
        Some(permit),
    )
    .await;
    match run.result.map_err(DescribeFailure::Failed)? {
        Returned::Tools(tools) => tools.map_err(DescribeFailure::Refused),
        _ => unreachable!("describe returns a tool list"),
    }
}

/// Calls `describe` and checks what it returned. wasmtime copies the answer out of the guest
/// within [`MAX_DESCRIBE_COPY_BYTES`] (else the call fails); the bounds then decide, the count
/// first, in one pass.
async fn describe_tools(
    store: &mut Store<TaskState>,
    tool: &Tool,
) -> wasmtime::Result<Result<Vec<ToolInfo>, DescribeViolation>> {
    store.set_hostcall_fuel(MAX_DESCRIBE_COPY_BYTES);
    let tools = tool.call_describe(&mut *store).await?;
    Ok(check_tools(tools))
}

fn check_tools(tools: Vec<WitToolInfo>) -> Result<Vec<ToolInfo>, DescribeViolation> {
    let mut check = ToolsCheck::new(tools.len())?;
    for tool in tools {
        check.add(&tool.name, &tool.description, &tool.input_schema)?;
    }
    Ok(check.finish())
}

enum Export<'a> {
    Describe,
    Call { name: &'a str, input: &'a str },
}

/// One export of a host-driver component, with its arguments.
pub enum DriverCall {
    Describe {
        config: String,
    },
    List {
        config: String,
    },
    Provision {
        config: String,
        request: super::driver::WitProvisionRequest,
    },
    Release {
        config: String,
        host: String,
    },
}

/// What runs in the store: a tool's export, a driver's, or an agent's run.
enum Entry<'a> {
    Tool(&'a ToolPre<TaskState>, Export<'a>),
    Driver(&'a super::driver::wit::HostDriverPre<TaskState>, DriverCall),
    Agent(&'a super::agent::wit::AgentPre<TaskState>, &'a str),
}

pub(crate) enum Returned {
    Tools(Result<Vec<ToolInfo>, DescribeViolation>),
    Output(String),
    ToolError(WitToolError),
    Driver(super::driver::DriverAnswer),
    Agent(Result<super::agent::AgentOutput, super::agent::AgentError>),
}

/// Runs one driver export with the driver's grants, gate and limits, like a task.
pub(crate) async fn run_driver(
    engine: &SandboxEngine,
    pre: &super::driver::wit::HostDriverPre<TaskState>,
    run: &super::driver::DriverRun,
    limits: &Limits,
    call: DriverCall,
) -> Result<Returned, TaskError> {
    let spec = TaskSpec {
        grants: &run.grants,
        limits,
        gate: &run.gate,
        events: run.events.as_ref(),
        agent: None,
    };
    execute(
        engine,
        Entry::Driver(pre, call),
        &spec,
        run.cancel.as_ref(),
        None,
    )
    .await
    .result
}

/// Runs an agent's `run` with the run's gate, services and limits, like a task.
pub(crate) async fn run_agent(
    engine: &SandboxEngine,
    pre: &super::agent::wit::AgentPre<TaskState>,
    run: &super::agent::AgentRun,
    limits: &Limits,
) -> (Result<Returned, TaskError>, Usage) {
    let spec = TaskSpec {
        grants: &Grants::default(),
        limits,
        gate: &run.gate,
        events: run.events.as_ref(),
        agent: Some(&run.services),
    };
    let done = execute(
        engine,
        Entry::Agent(pre, &run.input),
        &spec,
        run.cancel.as_ref(),
        None,
    )
    .await;
    (done.result, done.usage)
}

struct Run {
    result: Result<Returned, TaskError>,
    usage: Usage,
    decisions: Vec<DecisionRecord>,
    stdout: String,
    stderr: String,
}

/// Where a failure happened: instantiation errors that are not the guest's
/// doing are the host's problem, not a trap.
enum Failure {
    Instantiate(wasmtime::Error),
    Call(wasmtime::Error),
    Cancelled,
    DeadlinePassed,
}

async fn execute(
    engine: &SandboxEngine,
    entry: Entry<'_>,
    spec: &TaskSpec<'_>,
    cancel: Option<&CancellationToken>,
    slot: Option<SemaphorePermit<'_>>,
) -> Run {
    let limits = spec.limits;
    let no_run = |result: Result<Returned, TaskError>| Run {
        result,
        usage: Usage::default(),
        decisions: Vec::new(),
        stdout: String::new(),
        stderr: String::new(),
    };
    let deadline = Instant::now() + limits.timeout;

    // Take a free instance slot, or wait for one within the task's own deadline.
    let _permit = match slot.map_or_else(|| engine.slots().try_acquire(), Ok) {
        Ok(permit) => permit,
        Err(_) => tokio::select! {
        permit = engine.slots().acquire() => match permit {
            Ok(permit) => permit,
            Err(_) => return no_run(Err(TaskError::Internal { message: "the engine is shutting down".into() })),
        },
        _ = tokio::time::sleep_until(deadline.into()) => return no_run(Err(timeout(limits))),
        _ = cancelled(cancel) => return no_run(Err(TaskError::Cancelled)),
        },
    };

    let (state, account) = match capabilities::build(spec, deadline) {
        Ok(built) => built,
        Err(error) => return no_run(Err(error)),
    };
    let mut store = Store::new(engine.engine(), state);
    store.limiter(|state| &mut state.limiter);
    // Fuel is handed out in slices: the account stays exact to within one
    // slice even when the task is interrupted mid-loop.
    let fuel = store
        .set_fuel(limits.fuel)
        .and_then(|()| store.fuel_async_yield_interval(Some(FUEL_SLICE)));
    if let Err(e) = fuel {
        return no_run(Err(TaskError::Internal {
            message: format!("cannot set fuel: {e}"),
        }));
    }
    // On every tick: stop if cancelled, past the deadline or out of output budget (a
    // guest may ignore a refused request and carry on), otherwise yield, so a busy task
    // never holds a runtime thread for more than one tick.
    store.set_epoch_deadline(1);
    let stop = cancel.cloned();
    store.epoch_deadline_callback(move |ctx| {
        let state = ctx.data();
        let stopped = Instant::now() >= state.deadline
            || stop.as_ref().is_some_and(|c| c.is_cancelled())
            || state.host.budget.is_exceeded();
        Ok(if stopped {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Yield(1)
        })
    });

    let mut instantiate_time = Duration::ZERO;
    let mut execute_time = Duration::ZERO;
    let outcome = {
        let work = async {
            let started = Instant::now();
            let returned = match entry {
                Entry::Tool(pre, export) => {
                    let tool = pre
                        .instantiate_async(&mut store)
                        .await
                        .map_err(Failure::Instantiate);
                    instantiate_time = started.elapsed();
                    let tool = tool?;
                    let started = Instant::now();
                    let returned = match export {
                        Export::Describe => {
                            describe_tools(&mut store, &tool).await.map(Returned::Tools)
                        }
                        Export::Call { name, input } => tool
                            .call_call(&mut store, name, input)
                            .await
                            .map(|r| match r {
                                Ok(output) => Returned::Output(output),
                                Err(error) => Returned::ToolError(error),
                            }),
                    };
                    execute_time = started.elapsed();
                    returned
                }
                Entry::Driver(pre, call) => {
                    let driver = pre
                        .instantiate_async(&mut store)
                        .await
                        .map_err(Failure::Instantiate);
                    instantiate_time = started.elapsed();
                    let driver = driver?;
                    let started = Instant::now();
                    let returned = super::driver::invoke(&mut store, &driver, call)
                        .await
                        .map(Returned::Driver);
                    execute_time = started.elapsed();
                    returned
                }
                Entry::Agent(pre, input) => {
                    let agent = pre
                        .instantiate_async(&mut store)
                        .await
                        .map_err(Failure::Instantiate);
                    instantiate_time = started.elapsed();
                    let agent = agent?;
                    let started = Instant::now();
                    let returned = super::agent::invoke(&mut store, &agent, input)
                        .await
                        .map(Returned::Agent);
                    execute_time = started.elapsed();
                    returned
                }
            };
            returned.map_err(Failure::Call)
        };
        // Running wasm is stopped by the epoch callback, which keeps the fuel
        // account exact. A component blocked in a host call (a sleep, the
        // network) sees no epochs: a little after the deadline, it is dropped.
        let grace = engine.config().epoch_tick * 4;
        tokio::select! {
            biased;
            result = work => result,
            _ = async { cancelled(cancel).await; tokio::time::sleep(grace).await } => Err(Failure::Cancelled),
            _ = tokio::time::sleep_until((deadline + grace).into()) => Err(Failure::DeadlinePassed),
        }
    };

    let fuel_left = store.get_fuel().unwrap_or(0);
    let peak_memory_bytes = store.data().limiter.peak_memory();
    drop(store);
    let TaskAccount {
        budget,
        decisions,
        stdout,
        stderr,
    } = account;
    let usage = Usage {
        fuel_consumed: limits.fuel.saturating_sub(fuel_left),
        peak_memory_bytes,
        instantiate_us: instantiate_time.as_micros() as u64,
        execute_us: execute_time.as_micros() as u64,
        stdout_bytes: stdout.len() as u64,
        stderr_bytes: stderr.len() as u64,
    };
    // Past its output budget a task has failed, whatever it returned: what it
    // wrote and logged until then is kept.
    let result = match (outcome, budget.exceeded()) {
        (_, Some(exceeded)) => Err(exceeded.into()),
        (Ok(returned), None) => Ok(returned),
        (Err(failure), None) => Err(classify(failure, limits, cancel)),
    };
    Run {
        result,
        usage,
        decisions: decisions.snapshot(),
        stdout: stdout.text(),
        stderr: stderr.text(),
    }
}

async fn cancelled(cancel: Option<&CancellationToken>) {
    match cancel {
        Some(token) => token.cancelled().await,
        None => std::future::pending().await,
    }
}

fn timeout(limits: &Limits) -> TaskError {
    TaskError::Timeout {
        timeout_ms: limits.timeout.as_millis() as u64,
    }
}

/// Turns a wasmtime failure into the typed error the caller sees.
fn classify(failure: Failure, limits: &Limits, cancel: Option<&CancellationToken>) -> TaskError {
    let (error, instantiating) = match failure {
        Failure::Cancelled => return TaskError::Cancelled,
        Failure::DeadlinePassed => return timeout(limits),
        Failure::Instantiate(error) => (error, true),
        Failure::Call(error) => (error, false),
    };
    tracing::debug!(error = format!("{error:?}"), instantiating, "task failed");
    if let Some(e) = error.downcast_ref::<MemoryLimitExceeded>() {
        return TaskError::MemoryLimit {
            limit_bytes: e.limit,
            requested_bytes: e.requested,
        };
    }
    if let Some(e) = error.downcast_ref::<OutputLimitExceeded>() {
        return e.clone().into();
    }
    if let Some(e) = error.downcast_ref::<TableLimitExceeded>() {
        return TaskError::Trap {
            message: e.to_string(),
        };
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return TaskError::Trap {
            message: format!("the component exited with status {}", exit.0),
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => TaskError::FuelExhausted { limit: limits.fuel },
        Some(Trap::Interrupt) if cancel.is_some_and(|c| c.is_cancelled()) => TaskError::Cancelled,
        Some(Trap::Interrupt) => timeout(limits),
        Some(Trap::StackOverflow) => TaskError::Trap {
            message: "call stack exhausted (runaway recursion)".into(),
        },
        Some(trap) => TaskError::Trap {
            message: trap.to_string(),
        },
        None if instantiating => TaskError::Internal {
            message: format!("instantiation failed: {error:#}"),
        },
        None => TaskError::Trap {
            message: format!("{error:#}"),
        },
    }
}

fn check_output(output: String, limits: &Limits) -> Result<String, TaskError> {
    if output.len() as u64 > limits.output_bytes {
        return Err(TaskError::OutputTooLarge {
            what: "result".into(),
            limit: OutputBound::Bytes(limits.output_bytes),
        });
    }
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&output) {
        return Err(TaskError::ToolError {
            message: format!("the tool returned invalid JSON: {e}"),
        });
    }
    Ok(output)
}

/// A tool's own error; a failure that follows a denied capability is a denial.
fn tool_error(error: WitToolError, decisions: &[DecisionRecord]) -> TaskError {
    let mut denials: Vec<String> = decisions
        .iter()
        .filter(|d| !d.decision.allowed)
        .flat_map(|d| d.decision.reasons.iter().cloned())
        .collect();
    match error {
        WitToolError::InvalidInput(message) => TaskError::InvalidInput {
            message,
            path: None,
        },
        WitToolError::UnknownTool(name) => TaskError::InvalidInput {
            message: format!("unknown tool `{name}`"),
            path: None,
        },
        WitToolError::Denied(message) => {
            denials.push(message);
            TaskError::Denied { reasons: denials }
        }
        WitToolError::Failed(message) if denials.is_empty() => TaskError::ToolError { message },
        WitToolError::Failed(message) => {
            denials.push(message);
            TaskError::Denied { reasons: denials }
        }
    }
}
