//! Capabilities: a fixed, ordered set of small builders, each turning the
//! task's grants into its part of the store (in the manner of Spin's factors).
//! A capability that was not granted contributes nothing, so the component
//! sees an empty filesystem, an empty environment and refused connections.

mod address;
mod budget;
mod credential_echo;
mod decisions;
mod env;
mod filesystem;
mod network;
mod outbound_http;
mod outside_dirs;
mod request_path;
mod secrets;
mod stdio;
mod wasi_base;

pub use address::{AddressClass, classify};
pub(crate) use budget::{OutputBudget, OutputLimitExceeded};
pub(crate) use decisions::DecisionLog;
pub(crate) use outbound_http::OutboundHttp;
pub(crate) use stdio::CapturedOutput;

use super::error::TaskError;
use super::grants::Grants;
use super::host::{EventSink, HostServices};
use super::limits::{Limits, TaskLimiter};
use super::run_services::RunServices;
use super::state::TaskState;
use crate::gate::Gate;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiHttpCtx;

/// What a task brings to the capability builders.
pub(crate) struct TaskSpec<'a> {
    pub grants: &'a Grants,
    pub limits: &'a Limits,
    pub gate: &'a Arc<dyn Gate>,
    pub events: Option<&'a Arc<dyn EventSink>>,
    /// An agent run's model, tools and messages; `None` for tools and drivers.
    pub agent: Option<&'a Arc<dyn RunServices>>,
}

/// The parts of a store under construction.
pub(crate) struct StoreParts {
    pub wasi: WasiCtxBuilder,
    pub outbound: OutboundHttp,
    pub host: HostServices,
    pub stdout: CapturedOutput,
    pub stderr: CapturedOutput,
}

/// Handles kept by the executor to account for the task after the call.
pub(crate) struct TaskAccount {
    pub budget: Arc<OutputBudget>,
    pub decisions: DecisionLog,
    pub stdout: CapturedOutput,
    pub stderr: CapturedOutput,
}

/// Builds a task's store state from its grants, capability by capability.
pub(crate) fn build(
    spec: &TaskSpec<'_>,
    deadline: Instant,
) -> Result<(TaskState, TaskAccount), TaskError> {
    let budget = Arc::new(OutputBudget::new(
        spec.limits.log_bytes,
        spec.limits.log_records,
    ));
    let decisions = DecisionLog::new(budget.clone());
    let mut parts = StoreParts {
        wasi: WasiCtxBuilder::new(),
        outbound: OutboundHttp::denied(spec.gate.clone(), decisions.clone()),
        host: HostServices {
            events: spec.events.cloned(),
            budget: budget.clone(),
            secrets: Default::default(),
            gate: spec.gate.clone(),
            decisions: decisions.clone(),
            agent: spec.agent.cloned(),
        },
        stdout: CapturedOutput::new("stdout", budget.clone()),
        stderr: CapturedOutput::new("stderr", budget.clone()),
    };

    wasi_base::apply(spec, &mut parts);
    stdio::apply(spec, &mut parts);
    filesystem::apply(spec, &mut parts)?;
    outside_dirs::apply(spec, &mut parts)?;
    env::apply(spec, &mut parts);
    network::apply(spec, &mut parts);
    secrets::apply(spec, &mut parts);

    let account = TaskAccount {
        budget,
        decisions,
        stdout: parts.stdout.clone(),
        stderr: parts.stderr.clone(),
    };
    let state = TaskState {
        wasi: parts.wasi.build(),
        table: ResourceTable::new(),
        http: WasiHttpCtx::new(),
        outbound: parts.outbound,
        host: parts.host,
        limiter: TaskLimiter::new(spec.limits),
        disk: filesystem::quotas(spec),
        deadline,
    };
    Ok((state, account))
}
