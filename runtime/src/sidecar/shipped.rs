//! Where a sidecar's capability decisions come from: the orchestrator's own engine in this
//! process, or policy sets an orchestrator shipped, held by version.

use super::SidecarError;
use super::wire::TaskSpec;
use crate::policy::{PolicyEngine, PolicyOrigin, PolicySources, TaskGate};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Gives a task its capability gate, for the policy-set version its spec names.
pub trait PolicySource: Send + Sync {
    fn task_gate(&self, spec: &TaskSpec) -> Result<TaskGate, SidecarError>;
}

/// In the orchestrator's process: its engine decides, with the entities it keeps itself.
impl PolicySource for Arc<PolicyEngine> {
    fn task_gate(&self, spec: &TaskSpec) -> Result<TaskGate, SidecarError> {
        Ok(PolicyEngine::task_gate(self, spec.identity.clone()))
    }
}

/// Versions a sidecar keeps; an older one is dropped (a task for it is refused and its
/// orchestrator ships it again).
const KEPT_VERSIONS: usize = 8;

/// Policy sets shipped to this sidecar, by version (the hash of their files).
#[derive(Default)]
pub struct ShippedPolicies {
    versions: Mutex<VecDeque<(String, Arc<PolicyEngine>)>>,
}

impl ShippedPolicies {
    /// Compiles and keeps `sources` as `version`; a set whose files hash to another version
    /// is refused. Blocking work (Cedar parses and validates the whole set).
    pub fn install(&self, version: &str, sources: PolicySources) -> Result<(), SidecarError> {
        if self.engine(version).is_some() {
            return Ok(());
        }
        let actual = sources.version();
        if actual != version {
            return Err(SidecarError::Invalid(format!(
                "the policy set shipped as version {version} hashes to {actual}"
            )));
        }
        let engine = PolicyEngine::load(PolicyOrigin::Shipped(Box::new(sources)))
            .map_err(|e| SidecarError::Invalid(format!("the policy set does not load: {e}")))?;
        let mut versions = self.lock();
        if !versions.iter().any(|(v, _)| v == version) {
            versions.push_back((version.to_owned(), Arc::new(engine)));
            while versions.len() > KEPT_VERSIONS {
                versions.pop_front();
            }
        }
        Ok(())
    }

    pub fn versions(&self) -> Vec<String> {
        self.lock().iter().map(|(v, _)| v.clone()).collect()
    }

    fn engine(&self, version: &str) -> Option<Arc<PolicyEngine>> {
        self.lock()
            .iter()
            .find(|(v, _)| v == version)
            .map(|(_, e)| e.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(String, Arc<PolicyEngine>)>> {
        self.versions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PolicySource for ShippedPolicies {
    fn task_gate(&self, spec: &TaskSpec) -> Result<TaskGate, SidecarError> {
        let engine = self
            .engine(&spec.policy_version)
            .ok_or_else(|| SidecarError::PolicyVersionMissing(spec.policy_version.clone()))?;
        if !spec.entities.is_empty() {
            // Registered once per distinct set of entities: a rebuild is not a per-task cost.
            let text = serde_json::to_string(&spec.entities).unwrap_or_default();
            let key = format!("task-entities:{}", hex::encode(Sha256::digest(text)));
            engine
                .register_entities(&key, || spec.entities.clone())
                .map_err(|e| SidecarError::Invalid(format!("the task's entities: {e}")))?;
        }
        Ok(engine.task_gate(spec.identity.clone()))
    }
}
