use std::path::{Path, PathBuf};
use std::sync::Arc;
use toolgate::policy::{
    PolicyEngine, PolicyLimits, PolicyOrigin, ResourceRequest, TaskIdentity, principal_entity,
};
use toolgate::sandbox::{Executor, Plugin, TaskRequest};
use toolgate::task::{GatedOutcome, run_gated};

pub fn repo_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

pub use crate::plugins::{artifact, engine, plugin};

/// A policy directory: the shipped schema with the given policies and entities.
pub fn policy_dir(policies: &str, entities: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo_policies().join("schema.cedarschema"),
        dir.path().join("schema.cedarschema"),
    )
    .unwrap();
    std::fs::write(dir.path().join("test.cedar"), policies).unwrap();
    std::fs::write(dir.path().join("entities.json"), entities).unwrap();
    dir
}

pub fn load(dir: &Path) -> Arc<PolicyEngine> {
    let engine =
        PolicyEngine::load(PolicyOrigin::Dir(dir.to_owned())).unwrap_or_else(|e| panic!("{e}"));
    Arc::new(engine)
}

/// Adds `principal` as a member of `profile` (what an API key would do).
pub fn member(policy: &PolicyEngine, principal: &str, profile: &str) {
    policy
        .upsert_entities([principal_entity(principal, &[profile])])
        .unwrap();
}

pub fn identity(principal: &str, profile: &str, tool: &str) -> TaskIdentity {
    TaskIdentity {
        principal: principal.into(),
        profile: profile.into(),
        session: "s-test".into(),
        tool: tool.into(),
    }
}

pub async fn run(
    policy: &Arc<PolicyEngine>,
    plugin: &Plugin,
    who: TaskIdentity,
    request: TaskRequest,
) -> GatedOutcome {
    run_asking(policy, plugin, who, PolicyLimits::default(), request).await
}

/// A task whose caller asks for limits of its own.
pub async fn run_asking(
    policy: &Arc<PolicyEngine>,
    plugin: &Plugin,
    who: TaskIdentity,
    asked: PolicyLimits,
    request: TaskRequest,
) -> GatedOutcome {
    let executor = Executor::new(engine(), Arc::new(toolgate::policy::AllowAll));
    run_gated(
        policy,
        &executor,
        plugin,
        who,
        ResourceRequest::default(),
        asked,
        request,
    )
    .await
}

pub fn kind(outcome: &GatedOutcome) -> &'static str {
    match &outcome.outcome.result {
        Ok(output) => panic!("expected an error, got {output}"),
        Err(e) => e.kind().as_str(),
    }
}

pub fn reasons(outcome: &GatedOutcome) -> Vec<String> {
    match &outcome.outcome.result {
        Err(toolgate::sandbox::TaskError::Denied { reasons }) => reasons.clone(),
        other => panic!("expected denied, got {other:?}"),
    }
}
