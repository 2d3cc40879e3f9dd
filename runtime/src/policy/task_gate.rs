//! The Cedar-backed gate for one task: every capability the running tool uses
//! becomes a Cedar request for the task's principal, session and tool.

use super::engine::{AuthzRequest, PolicyDecision, PolicyEngine};
use super::snapshot::Action;
use crate::gate::{CapabilityRequest, Decision, Gate};
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Who runs a task, where, and which tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TaskIdentity {
    pub principal: String,
    /// The session's profile (a `Profile` entity id).
    pub profile: String,
    pub session: String,
    /// Qualified tool name, `plugin.tool`.
    pub tool: String,
}

/// The resources a session asked for; part of `create_session` and `invoke` contexts. Every
/// field is optional in a request; a missing one takes its default (1000 millicores, 256 MiB of
/// memory, 512 MiB of disk, 600,000 ms), a misspelt one is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceRequest {
    pub cpu_millis: u64,
    pub memory_mb: u64,
    pub disk_mb: u64,
    pub timeout_ms: u64,
}

impl Default for ResourceRequest {
    fn default() -> Self {
        Self {
            cpu_millis: 1000,
            memory_mb: 256,
            disk_mb: 512,
            timeout_ms: 600_000,
        }
    }
}

impl ResourceRequest {
    fn to_context(self) -> Value {
        json!({
            "cpu_millis": self.cpu_millis.min(i64::MAX as u64),
            "memory_mb": self.memory_mb.min(i64::MAX as u64),
            "disk_mb": self.disk_mb.min(i64::MAX as u64),
            "timeout_ms": self.timeout_ms.min(i64::MAX as u64),
        })
    }
}

fn entity(ty: &str, id: &str) -> Value {
    json!({ "__entity": { "type": ty, "id": id } })
}

impl From<PolicyDecision> for Decision {
    fn from(d: PolicyDecision) -> Self {
        let reasons = d.explanation();
        Decision {
            allowed: d.allowed,
            reasons,
            errors: d.errors,
            policy_version: Some(d.policy_version),
        }
    }
}

impl PolicyEngine {
    /// `invoke`: may this principal run this tool in this session? The
    /// decision carries the limits its permits set.
    pub fn authorize_invoke(
        &self,
        task: &TaskIdentity,
        resources: ResourceRequest,
        input: &str,
    ) -> PolicyDecision {
        // Only the plainly named fields policies may look at; never the whole input.
        let parsed: Value = serde_json::from_str(input).unwrap_or(Value::Null);
        let mut fields = serde_json::Map::new();
        for key in ["path", "url", "method"] {
            if let Some(Value::String(s)) = parsed.get(key) {
                fields.insert(key.into(), Value::String(s.clone()));
            }
        }
        self.decide_trusted(&AuthzRequest {
            principal: task.principal.clone(),
            action: Action::Invoke,
            resource: ("Tool".into(), task.tool.clone()),
            context: json!({
                "session": task.session,
                "profile": entity("Profile", &task.profile),
                "resources": resources.to_context(),
                "input": fields,
            }),
        })
    }

    /// `approve`: may `approver` answer task `task` (of `requester`, asking for its tool in
    /// its session) that waits for a person's approval?
    pub fn authorize_approve(
        &self,
        approver: &str,
        task: &TaskIdentity,
        task_id: &str,
    ) -> PolicyDecision {
        self.decide_trusted(&AuthzRequest {
            principal: approver.to_owned(),
            action: Action::Approve,
            resource: ("Tool".into(), task.tool.clone()),
            context: json!({
                "session": task.session,
                "profile": entity("Profile", &task.profile),
                "requester": entity("Principal", &task.principal),
                "task": task_id,
            }),
        })
    }

    /// `create_session`: may this principal open a session with this profile,
    /// asking for these resources and these things to use?
    #[allow(clippy::too_many_arguments)]
    pub fn authorize_session(
        &self,
        principal: &str,
        profile: &str,
        resources: ResourceRequest,
        tools: &[String],
        domains: &[String],
        files: &[String],
        secrets: &[String],
        model_provider: Option<&str>,
    ) -> PolicyDecision {
        let mut context = json!({
            "resources": resources.to_context(),
            "tools": tools,
            "domains": domains,
            "files": files,
            "secrets": secrets,
        });
        if let Some(provider) = model_provider {
            context["model_provider"] = provider.into();
        }
        self.decide_trusted(&AuthzRequest {
            principal: principal.into(),
            action: Action::CreateSession,
            resource: ("Profile".into(), profile.into()),
            context,
        })
    }

    /// The gate a task's capability uses are decided by.
    pub fn task_gate(self: &Arc<Self>, task: TaskIdentity) -> TaskGate {
        TaskGate {
            engine: self.clone(),
            task,
        }
    }
}

/// Decides a running task's capability uses with Cedar.
pub struct TaskGate {
    engine: Arc<PolicyEngine>,
    task: TaskIdentity,
}

impl TaskGate {
    fn base_context(&self) -> serde_json::Map<String, Value> {
        let mut context = serde_json::Map::new();
        context.insert("session".into(), self.task.session.clone().into());
        context.insert("profile".into(), entity("Profile", &self.task.profile));
        context.insert("tool".into(), self.task.tool.clone().into());
        context
    }

    fn request(&self, request: &CapabilityRequest) -> AuthzRequest {
        let mut context = self.base_context();
        let (action, resource) = match request {
            CapabilityRequest::Connect(c) => {
                context.insert("scheme".into(), c.scheme.clone().into());
                context.insert("host".into(), c.host.clone().into());
                context.insert("port".into(), i64::from(c.port).into());
                context.insert("method".into(), c.method.clone().into());
                context.insert("path".into(), c.path.clone().into());
                if let Some(addr) = c.addr {
                    context.insert(
                        "address".into(),
                        json!({ "__extn": { "fn": "ip", "arg": addr.to_string() } }),
                    );
                }
                (Action::Connect, ("Domain", c.host.clone()))
            }
            CapabilityRequest::ReadSecret { name, host } => {
                if let Some(host) = host {
                    context.insert("host".into(), host.clone().into());
                }
                (Action::ReadSecret, ("Secret", name.clone()))
            }
            CapabilityRequest::ReadFile { path } | CapabilityRequest::WriteFile { path } => {
                context.insert("path".into(), path.clone().into());
                let action = if matches!(request, CapabilityRequest::ReadFile { .. }) {
                    Action::ReadFile
                } else {
                    Action::WriteFile
                };
                (action, ("Path", path.clone()))
            }
            CapabilityRequest::UseModel {
                provider,
                model,
                run,
            } => {
                if let Some(model) = model {
                    context.insert("model".into(), model.clone().into());
                }
                if let Some(run) = run {
                    context.insert("run".into(), run.run.clone().into());
                    context.insert("calls".into(), run.calls.into());
                    context.insert("tokens".into(), run.tokens.into());
                }
                (Action::UseModel, ("ModelProvider", provider.clone()))
            }
        };
        AuthzRequest {
            principal: self.task.principal.clone(),
            action,
            resource: (resource.0.into(), resource.1),
            context: Value::Object(context),
        }
    }
}

/// Stack for a capability decision. Capability uses are decided from host
/// calls, which run on the component's fiber stack; Cedar measures the
/// remaining stack against the OS thread's and may find "none" there. When
/// the measure says less than `DECISION_RED_ZONE` is left, the decision runs
/// on a fresh segment of known size, which keeps Cedar's recursion guard
/// meaningful; otherwise it runs in place.
const DECISION_STACK: usize = 1 << 20;
const DECISION_RED_ZONE: usize = 256 << 10;

impl TaskGate {
    /// The whole decision for a capability use, limits from annotations included (a model
    /// call's `model_limits`). Safe on a component's stack, like [`Gate::decide`].
    pub fn decide_fully(&self, request: &CapabilityRequest) -> PolicyDecision {
        let request = self.request(request);
        stacker::maybe_grow(DECISION_RED_ZONE, DECISION_STACK, || {
            self.engine.decide_trusted(&request)
        })
    }
}

impl Gate for TaskGate {
    fn decide(&self, request: &CapabilityRequest) -> Decision {
        let request = self.request(request);
        stacker::maybe_grow(DECISION_RED_ZONE, DECISION_STACK, || {
            self.engine.decide_trusted(&request)
        })
        .into()
    }
}
