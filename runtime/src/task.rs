//! The path of one task through the policy gate into the sandbox: decide
//! `invoke` first (a denied task never instantiates its component), take the
//! limits from the permits that allowed it, and run it with a gate that
//! decides each capability use for this principal, session and tool.

use crate::policy::{
    Gate, PolicyDecision, PolicyEngine, PolicyLimits, ResourceRequest, TaskIdentity,
};
use crate::sandbox::{
    EngineConfig, Executor, Limits, Plugin, TaskError, TaskOutcome, TaskRequest, Usage,
};
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

/// Settles an allowed task's limits: the permits' limits over the engine's defaults, within
/// its ceilings, tightened where the caller asked for less (`asked`, never more). The decision
/// then records the limits in force (`limits`), the permits' own (`policy_limits`) and the
/// bounds the caller asked more of than allowed (`capped`). A denied decision is left as is.
pub fn settle_limits(
    decision: &mut PolicyDecision,
    config: &EngineConfig,
    asked: PolicyLimits,
) -> Option<Limits> {
    if !decision.allowed {
        return None;
    }
    let allowed = decision
        .limits
        .applied_to(config.default_limits)
        .clamp_to(&config.max_limits);
    let in_force = allowed
        .with_asked(
            asked.fuel,
            asked.memory_mb,
            asked.timeout_ms,
            asked.output_kb,
        )
        .clamp_to(&allowed);
    decision.capped = PolicyLimits::above(&asked, &PolicyLimits::of(&allowed));
    decision.policy_limits = Some(decision.limits);
    decision.limits = PolicyLimits::of(&in_force);
    Some(in_force)
}

/// Runs `request` (tool short name, input, grants) as `identity` through `policy` on
/// `executor`, within the limits the policy allows and `asked` tightens.
pub async fn run_gated(
    policy: &Arc<PolicyEngine>,
    executor: &Executor,
    plugin: &Plugin,
    identity: TaskIdentity,
    resources: ResourceRequest,
    asked: PolicyLimits,
    mut request: TaskRequest,
) -> GatedOutcome {
    let mut decision = policy.authorize_invoke(&identity, resources, &request.input);
    request.limits = settle_limits(&mut decision, executor.engine().config(), asked);
    let gate: Arc<dyn Gate> = Arc::new(policy.task_gate(identity));
    run_decided(executor, plugin, decision, gate, request).await
}

/// The second half of [`run_gated`], for callers that announce the invoke
/// decision before the task starts: runs the task if `decision` allowed it,
/// within the limits settled for it ([`settle_limits`]), with `gate` deciding its
/// capability uses.
pub async fn run_decided(
    executor: &Executor,
    plugin: &Plugin,
    decision: PolicyDecision,
    gate: Arc<dyn Gate>,
    mut request: TaskRequest,
) -> GatedOutcome {
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
    request.gate = Some(gate);
    let outcome = executor.run(plugin, request).await;
    GatedOutcome {
        decision,
        outcome,
        ran: true,
    }
}
