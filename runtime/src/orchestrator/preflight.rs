//! `POST /v1/preflight`: would a session asking for these things work, and if not, why?
//!
//! Nothing the caller owns is created. The answer lists one check per concern, covering the
//! readiness checks of the design: the server (policy set, store, session capacity), the host
//! placement would choose and whether it has room for the requested cpu, memory, disk and
//! timeout, the `create_session` decision, each tool, domain, file, secret and model provider
//! the session means to use with the decision a task of it would get, the event self-test (a
//! probe tool run in a throwaway session of its own principal), and the mode the server runs
//! in. An agent asks once before it starts, instead of learning item by item from failures.

use super::sessions::CreateSession;
use super::{Caller, Orchestrator, OrchestratorError};
use crate::policy::{CapabilityRequest, ConnectRequest, Decision, Gate, TaskIdentity};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;

/// Items of each kind one preflight checks, at most: capability checks are decided once per
/// tool, so the work grows with the product of the lists.
pub const MAX_PREFLIGHT_ITEMS: usize = 64;

/// The session id decisions see during a preflight.
const PREFLIGHT_SESSION: &str = "preflight";

/// Domains and secrets are decided for this tool (the bundled one that uses them) when the
/// request names no tools; files and model providers for no tool.
const DEFAULT_NETWORK_TOOL: &str = "http.fetch";

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Preflight {
    /// Every check passed.
    pub ready: bool,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = PreflightCheck)]
pub struct Check {
    /// `policy_set`, `store`, `sessions` (the server's session limit), `capacity` (the host
    /// placement would choose, named, and whether it has room), `create_session`, `disk`,
    /// `tool`, `domain`, `file`, `secret`, `model_provider`, `events` or `mode`.
    #[schema(value_type = String)]
    pub check: &'static str,
    /// What was checked, for per-item checks (a tool, a domain, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub name: Option<String>,
    pub ok: bool,
    pub detail: String,
    /// The policy decision behind the check, when there is one.
    /// One decision object; for a capability, the first allowing tool's decision or else the
    /// first denial, with the `tool` it was decided for.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Value, nullable = false)]
    pub decision: Option<Value>,
}

impl Check {
    pub(super) fn new(check: &'static str, ok: bool, detail: impl Into<String>) -> Self {
        Self {
            check,
            name: None,
            ok,
            detail: detail.into(),
            decision: None,
        }
    }

    fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    fn decided(mut self, decision: Value) -> Self {
        self.decision = Some(decision);
        self
    }
}

fn decided_detail(allowed: bool, reasons: &[String]) -> String {
    let verdict = if allowed { "allowed" } else { "denied" };
    if reasons.is_empty() {
        format!("{verdict}: no policy permits this (default deny)")
    } else {
        format!("{verdict}: {}", reasons.join("; "))
    }
}

impl Orchestrator {
    /// Runs every check for `request` as `caller` would create it. More than
    /// [`MAX_PREFLIGHT_ITEMS`] of any kind is refused.
    pub async fn preflight(
        self: &Arc<Self>,
        caller: &Caller,
        request: &CreateSession,
        event_self_test: bool,
    ) -> Result<Preflight, OrchestratorError> {
        let lists = [
            ("tools", request.tools.len()),
            ("domains", request.domains.len()),
            ("files", request.files.len()),
            ("secrets", request.secrets.len()),
        ];
        if let Some((list, len)) = lists.iter().find(|(_, len)| *len > MAX_PREFLIGHT_ITEMS) {
            return Err(OrchestratorError::Invalid(format!(
                "`{list}` has {len} items; a preflight checks at most {MAX_PREFLIGHT_ITEMS} of each"
            )));
        }
        if let Some(hints) = &request.placement {
            hints.check().map_err(OrchestratorError::Invalid)?;
        }
        let profile = request
            .profile
            .clone()
            .unwrap_or_else(|| caller.profile.clone());
        let mut checks = self.server_checks(caller).await;
        let host = self.capacity_check(request);
        // The self-test runs on the chosen host when it is ready now (a standby host it would
        // promote, or none at all, leaves it to any ready host).
        let chosen = host.ok.then(|| host.name.clone()).flatten().filter(|id| {
            self.hosts
                .host(id)
                .is_some_and(|h| h.state == crate::vocabulary::HostState::Ready)
        });
        checks.push(host);

        let decision = self.policy.authorize_session(
            &caller.principal,
            &profile,
            request.resources.unwrap_or_default(),
            &request.tools,
            &request.domains,
            &request.files,
            &request.secrets,
            request.model_provider.as_deref(),
        );
        checks.push(
            Check::new(
                "create_session",
                decision.allowed,
                decided_detail(decision.allowed, &decision.explanation()),
            )
            .decided(serde_json::to_value(&decision).unwrap_or(Value::Null)),
        );

        checks.push(self.disk_check(caller, request.resources.unwrap_or_default().disk_mb));

        let identity = |tool: &str| TaskIdentity {
            principal: caller.principal.clone(),
            profile: profile.clone(),
            session: PREFLIGHT_SESSION.into(),
            tool: tool.to_owned(),
        };
        for tool in &request.tools {
            checks.push(self.tool_check(tool, identity(tool), request).await);
        }
        let listed: Vec<&str> = request.tools.iter().map(String::as_str).collect();
        let (network_tools, other_tools) = if listed.is_empty() {
            (vec![DEFAULT_NETWORK_TOOL], vec![""])
        } else {
            (listed.clone(), listed)
        };
        for domain in &request.domains {
            let asked = CapabilityRequest::Connect(ConnectRequest {
                scheme: "https".into(),
                host: domain.clone(),
                port: 443,
                method: "GET".into(),
                path: "/".into(),
                addr: None,
            });
            checks.push(self.capability_check("domain", domain, &asked, &network_tools, &identity));
        }
        for file in &request.files {
            let asked = CapabilityRequest::ReadFile { path: file.clone() };
            checks.push(self.capability_check("file", file, &asked, &other_tools, &identity));
        }
        for secret in &request.secrets {
            let asked = CapabilityRequest::ReadSecret {
                name: secret.clone(),
                host: None,
            };
            let mut check =
                self.capability_check("secret", secret, &asked, &network_tools, &identity);
            if self.secrets.select([secret.as_str()]).is_empty() {
                check.ok = false;
                check.detail = format!("no secret `{secret}` is configured on this server");
            }
            checks.push(check);
        }
        if let Some(provider) = &request.model_provider {
            let asked = CapabilityRequest::UseModel {
                provider: provider.clone(),
                model: None,
                run: None,
            };
            checks.push(self.capability_check(
                "model_provider",
                provider,
                &asked,
                &other_tools,
                &identity,
            ));
        }
        if event_self_test {
            checks.push(self.event_self_test(chosen.as_deref()).await);
        }
        checks.push(Check::new(
            "mode",
            true,
            "api: sessions are served by this server's HTTP API; there is no protocol-backed service whose chain state a client must match",
        ));
        Ok(Preflight {
            ready: checks.iter().all(|c| c.ok),
            checks,
        })
    }

    /// The host placement would choose now, and whether it has room for the session's cpu,
    /// memory and disk and takes its timeout. Reserves nothing.
    fn capacity_check(&self, request: &CreateSession) -> Check {
        let resources = request.resources.unwrap_or_default();
        let demand = crate::hosts::Demand {
            resources: resources.into(),
            timeout_ms: resources.timeout_ms,
            hints: request.placement.clone().unwrap_or_default(),
            passive: false,
        };
        let asked = format!(
            "{} cpu_millis, {} memory_mb, {} disk_mb and a {} ms timeout",
            resources.cpu_millis, resources.memory_mb, resources.disk_mb, resources.timeout_ms
        );
        match self.hosts.would_place(&demand) {
            Ok((host, false)) => {
                Check::new("capacity", true, format!("ready, with room for {asked}")).named(&host)
            }
            Ok((host, true)) => Check::new(
                "capacity",
                true,
                format!("standby, with room for {asked}: it would be promoted to ready"),
            )
            .named(&host),
            Err(no_fit) => {
                let mut detail = format!("no host has room for {asked}: {no_fit}");
                let provisioning: Vec<&str> = self
                    .hosts
                    .drivers()
                    .iter()
                    .filter(|d| d.can_provision)
                    .map(|d| d.name.as_str())
                    .collect();
                if !provisioning.is_empty() {
                    detail.push_str(&format!(
                        "; driver {} may bring one up while the session waits",
                        provisioning.join(", ")
                    ));
                }
                Check::new("capacity", false, detail)
            }
        }
    }

    /// The policy set in force, the store's writer, the session capacity.
    async fn server_checks(&self, caller: &Caller) -> Vec<Check> {
        let status = super::policy_status(self.policy.status(), caller);
        let mut policy_detail = format!(
            "version {} ({} policies, from {})",
            status.version, status.policies, status.origin
        );
        if let Some(error) = &status.last_error {
            policy_detail.push_str(&format!(
                "; the set on disk was refused and the last good one is in force: {error}"
            ));
        }
        let writer = self.store.clone();
        let flushed = tokio::task::spawn_blocking(move || writer.flush()).await;
        let store = match flushed {
            Ok(Ok(())) => Check::new(
                "store",
                true,
                format!(
                    "writable; {} writes failed since the start",
                    self.store.failed_writes()
                ),
            ),
            Ok(Err(e)) => Check::new("store", false, format!("cannot write: {e}")),
            Err(e) => Check::new("store", false, format!("cannot reach the writer: {e}")),
        };
        let open = self.counted_sessions();
        let max = self.config.max_sessions;
        vec![
            Check::new("policy_set", true, policy_detail),
            store,
            Check::new(
                "sessions",
                open < max,
                format!("{open} of {max} sessions open"),
            ),
        ]
    }

    /// The session's disk quota against the space the workspaces' filesystem has left,
    /// beside what open sessions already use of theirs (figures of the host for admins only).
    fn disk_check(&self, caller: &Caller, disk_mb: u64) -> Check {
        let quota = crate::sidecar::disk::limit(&crate::policy::ResourceRequest {
            disk_mb,
            ..Default::default()
        });
        let free = crate::sidecar::disk::free_space(&self.config.workspaces);
        let fits = free.is_none_or(|free| quota <= free);
        if !caller.admin {
            let detail = if fits {
                format!("quota {quota} bytes; the server has room for it")
            } else {
                format!("quota {quota} bytes; the server has not that much free space")
            };
            return Check::new("disk", fits, detail);
        }
        let (used, reserved) = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|(id, s)| s.disk(id))
            .fold((0u64, 0u64), |(used, reserved), disk| {
                (
                    used.saturating_add(disk.used_bytes),
                    reserved.saturating_add(disk.quota_bytes),
                )
            });
        let free = free.map_or("free space unknown".into(), |free| {
            format!("{free} bytes free where workspaces are kept")
        });
        Check::new(
            "disk",
            fits,
            format!(
                "quota {quota} bytes; {free}; open sessions use {used} bytes of their quotas ({reserved} bytes in all)"
            ),
        )
    }

    /// The tool exists (its plugin loads and has it) and a task of it would be allowed.
    async fn tool_check(
        &self,
        tool: &str,
        identity: TaskIdentity,
        request: &CreateSession,
    ) -> Check {
        if let Err(why) = self.plugin_with(tool).await {
            return Check::new("tool", false, why.to_string()).named(tool);
        }
        let decision =
            self.policy
                .authorize_invoke(&identity, request.resources.unwrap_or_default(), "{}");
        Check::new(
            "tool",
            decision.allowed,
            decided_detail(decision.allowed, &decision.explanation()),
        )
        .named(tool)
        .decided(serde_json::to_value(&decision).unwrap_or(Value::Null))
    }

    /// A capability use by any of `tools` (a task of which would ask for it): the first
    /// decision that allows it, else the first denial. Either way the check carries one
    /// decision object, like every decided check, with the `tool` it was decided for.
    fn capability_check(
        &self,
        check: &'static str,
        name: &str,
        asked: &CapabilityRequest,
        tools: &[&str],
        identity: &dyn Fn(&str) -> TaskIdentity,
    ) -> Check {
        let mut first_denial = None;
        for tool in tools {
            let decision = self.policy.task_gate(identity(tool)).decide(asked);
            if decision.allowed {
                return decided_check(check, name, tool, &decision);
            }
            first_denial.get_or_insert((*tool, decision));
        }
        match first_denial {
            Some((tool, decision)) => decided_check(check, name, tool, &decision),
            None => Check::new(check, false, "no tool to decide it for").named(name),
        }
    }
}

fn decided_check(check: &'static str, name: &str, tool: &str, decision: &Decision) -> Check {
    let mut value = serde_json::to_value(decision).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value
        && !tool.is_empty()
    {
        map.insert("tool".into(), tool.into());
    }
    Check::new(
        check,
        decision.allowed,
        decided_detail(decision.allowed, &decision.reasons),
    )
    .named(name)
    .decided(value)
}
