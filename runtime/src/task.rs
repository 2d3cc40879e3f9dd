//! The path of one task through the policy gate into the sandbox: decide
//! `invoke` first (a denied task never instantiates its component), take the
//! limits from the permits that allowed it, and run it with a gate that
//! decides each capability use for this principal, session and tool.

use crate::policy::{PolicyDecision, PolicyEngine, ResourceRequest, TaskIdentity};
use crate::sandbox::{Executor, Plugin, TaskError, TaskOutcome, TaskRequest, Usage};
use serde::Serialize;
use std::sync::Arc;

/// A task's invoke decision and, if it ran, its outcome.
#[derive(Debug, Clone, Serialize)]
pub struct GatedOutcome {
    pub decision: PolicyDecision,
    pub outcome: TaskOutcome,
    /// False when the policy denied the task: no component was instantiated.
    pub ran: bool,
}

/// Runs `request` (tool short name, input, grants, asked-for limits) as
/// `identity` through `policy` on `executor`.
pub async fn run_gated(
    policy: &Arc<PolicyEngine>,
    executor: &Executor,
    plugin: &Plugin,
    identity: TaskIdentity,
    resources: ResourceRequest,
    mut request: TaskRequest,
) -> GatedOutcome {
    let decision = policy.authorize_invoke(&identity, resources, &request.input);
    let defaults = executor.engine().config().default_limits;
    let allowed_limits = decision.limits.applied_to(defaults);
    if !decision.allowed {
        let outcome = TaskOutcome {
            result: Err(TaskError::Denied {
                reasons: decision.explanation(),
            }),
            usage: Usage::default(),
            limits: allowed_limits,
            decisions: Vec::new(),
            stdout: String::new(),
            stderr: String::new(),
        };
        return GatedOutcome {
            decision,
            outcome,
            ran: false,
        };
    }
    // The caller may ask for less than the policy allows, never more.
    request.limits = Some(
        request
            .limits
            .unwrap_or(allowed_limits)
            .clamp_to(&allowed_limits),
    );
    request.gate = Some(Arc::new(policy.task_gate(identity)));
    let outcome = executor.run(plugin, request).await;
    GatedOutcome {
        decision,
        outcome,
        ran: true,
    }
}
