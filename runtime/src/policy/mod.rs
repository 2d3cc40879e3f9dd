//! Policy decisions. The sandbox asks a [`Gate`] before every capability use;
//! [`PolicyEngine`] answers with Cedar: it loads and strictly validates a
//! policy set, decides requests against the active set, takes limits from
//! the permits that allowed a task, and reloads a changed set only whole and
//! valid.

mod engine;
mod errors;
mod index;
mod limits;
mod locations;
pub(crate) mod model_limits;
mod runtime_entities;
mod snapshot;
mod sources;
mod task_gate;
mod testing;
#[cfg(test)]
mod tests;

pub use engine::{AuthzRequest, PolicyDecision, PolicyEngine, PolicyOrigin, PolicyStatus};
pub use errors::{PolicyLoadError, PolicyProblem};
// The sandbox asks through `crate::gate`; the policy engine is one of its answers.
pub use crate::gate::{
    AllowAll, CapabilityRequest, ConnectRequest, Decision, DecisionRecord, Gate,
};
pub use limits::PolicyLimits;
pub use model_limits::ModelLimits;
pub use snapshot::{Action, PolicySnapshot, principal_entity, tool_entity};
pub use sources::PolicySources;
pub use task_gate::{ResourceRequest, TaskGate, TaskIdentity};
pub use testing::{
    CaseResult, Expect, PolicyTestError, TestCase, TestFile, parse_entity_ref, run_tests,
};
