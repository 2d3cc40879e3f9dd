use super::{Caller, LiveSession, Orchestrator, OrchestratorError, now_ms};
use crate::policy::ResourceRequest;
use crate::sidecar::{SessionSpec, Sidecar, SidecarError};
use crate::store::SessionRecord;
use crate::vocabulary::{CloseReason, EventName, SessionState};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;

/// `POST /v1/sessions`.
/// Every field is optional: `{}` opens a session in the caller's profile with default resources.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// Defaults to the caller's profile.
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub resources: Option<ResourceRequest>,
    /// Tools the session will use (`fs.read`, ...).
    #[serde(default)]
    pub tools: Vec<String>,
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub model_provider: Option<String>,
    /// Where the session would like to run.
    #[serde(default, deserialize_with = "hints_object")]
    pub placement: Option<crate::hosts::PlacementHints>,
}

/// `placement` as a JSON object only (serde would also read a struct from an array).
fn hints_object<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<crate::hosts::PlacementHints>, D::Error> {
    use serde::de::Error;
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(hints @ Value::Object(_)) => serde_json::from_value(hints)
            .map(Some)
            .map_err(|e| D::Error::custom(format!("placement: {e}"))),
        Some(_) => Err(D::Error::custom(
            "`placement` must be an object: {\"region\", \"hosts\", \"avoid\"}",
        )),
    }
}

/// A session as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    #[schema(examples("s_0f8a51c2b6e44d5c9a7e3d1b2c4f6a80"))]
    pub id: String,
    pub principal: String,
    pub profile: String,
    pub state: SessionState,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// The last task start or finish, ms since the epoch.
    pub last_active_ms: i64,
    pub closed_at_ms: Option<i64>,
    /// Why it was closed: `deleted`, `idle`, `lifetime` or `host_lost` (its sidecar died,
    /// was cut off or restarted).
    pub close_reason: Option<CloseReason>,
    /// What the session asked for when it was created, defaults filled in.
    #[schema(value_type = SessionRequest)]
    pub request: Value,
    /// The sequence number of the session's latest event (0 if none).
    pub last_event_id: u64,
    /// The host the session runs on (see `GET /v1/hosts/{id}`): `local` (the server's own
    /// process), a `[[sidecars]]` entry of the server's config, or a host a driver brought up.
    pub host: String,
    /// The same as `host` (each host runs one sidecar); kept for clients of earlier versions.
    pub sidecar: String,
    /// The workspace's use of its disk quota (open sessions).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub disk: Option<super::DiskUsage>,
}

/// The shape of [`SessionView::request`], as `create_session` writes it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SessionRequest {
    resources: ResourceRequest,
    tools: Vec<String>,
    domains: Vec<String>,
    files: Vec<String>,
    secrets: Vec<String>,
    model_provider: Option<String>,
    placement: Option<crate::hosts::PlacementHints>,
}

/// A place among the server's `max_sessions` for a session being opened; given back on drop.
/// (`None`: a session that takes no place.)
struct SessionSlot<'a>(Option<&'a std::sync::atomic::AtomicUsize>);

impl Drop for SessionSlot<'_> {
    fn drop(&mut self) {
        if let Some(opening) = self.0 {
            opening.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

impl Orchestrator {
    /// Sessions that take a place among `max_sessions`: open ones (the self-test's probe
    /// aside) and those being opened.
    pub(super) fn counted_sessions(&self) -> usize {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.values().filter(|s| s.counted).count()
            + self.opening.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A slot for one more session, when open and opening sessions leave room. Taken under
    /// the sessions' lock, so two openings never both take the last one.
    fn take_session_slot(&self) -> Option<SessionSlot<'_>> {
        use std::sync::atomic::Ordering;
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let open = sessions.values().filter(|s| s.counted).count();
        if open + self.opening.load(Ordering::SeqCst) >= self.config.max_sessions {
            return None;
        }
        self.opening.fetch_add(1, Ordering::SeqCst);
        Some(SessionSlot(Some(&self.opening)))
    }
}

/// Hosts tried for one session before giving up (each that fails is avoided after).
const PLACEMENT_ATTEMPTS: usize = 3;

/// How long closing a session waits for its cancelled tasks' last events.
const CANCELLED_TASKS_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

impl Orchestrator {
    /// Refuses a session request naming a tool no plugin provides (a plugin that exists but
    /// cannot be loaded now is not the caller's mistake: its tasks fail on the record).
    pub async fn check_tools(&self, tools: &[String]) -> Result<(), OrchestratorError> {
        for tool in tools {
            if let Err(super::tasks::ToolUnavailable::Unknown(message)) =
                self.plugin_with(tool).await
            {
                return Err(OrchestratorError::UnknownTool(message));
            }
        }
        Ok(())
    }

    pub(super) fn view(
        &self,
        record: &SessionRecord,
        disk: Option<super::DiskUsage>,
    ) -> SessionView {
        self.view_at(record, disk, self.hub.last_seq(&record.id))
    }

    pub(super) fn view_at(
        &self,
        record: &SessionRecord,
        disk: Option<super::DiskUsage>,
        last_event_id: u64,
    ) -> SessionView {
        SessionView {
            id: record.id.clone(),
            principal: record.principal.clone(),
            profile: record.profile.clone(),
            state: record.state,
            created_at_ms: record.created_at_ms,
            last_active_ms: record.last_active_ms,
            closed_at_ms: record.closed_at_ms,
            close_reason: record.close_reason,
            request: record.request.clone(),
            last_event_id,
            host: record.sidecar.clone(),
            sidecar: record.sidecar.clone(),
            disk,
        }
    }

    pub async fn create_session(
        &self,
        caller: &Caller,
        request: CreateSession,
    ) -> Result<SessionView, OrchestratorError> {
        self.open_session(caller, request, true).await
    }

    /// Opens a session; one not `counted` (the self-test's probe, bounded on its own) takes
    /// no place among the server's `max_sessions`.
    pub(super) async fn open_session(
        &self,
        caller: &Caller,
        request: CreateSession,
        counted: bool,
    ) -> Result<SessionView, OrchestratorError> {
        let profile = request
            .profile
            .clone()
            .unwrap_or_else(|| caller.profile.clone());
        let resources = request.resources.unwrap_or_default();
        if let Some(hints) = &request.placement {
            hints.check().map_err(OrchestratorError::Invalid)?;
        }
        for tool in &request.tools {
            let known = tool
                .split_once('.')
                .is_some_and(|(plugin, _)| self.catalog.contains(plugin));
            if !known {
                return Err(OrchestratorError::UnknownTool(format!(
                    "unknown tool `{tool}` (tools are named plugin.tool)"
                )));
            }
        }
        // Held until the session is open (or fails): sessions being opened count too.
        let slot = if counted {
            self.take_session_slot()
        } else {
            Some(SessionSlot(None))
        };
        let Some(_slot) = slot else {
            return Err(OrchestratorError::Capacity {
                message: format!(
                    "the server is at its limit of {} open sessions; try again later",
                    self.config.max_sessions
                ),
                retry_after_s: 5,
            });
        };
        let decision = self.policy.authorize_session(
            &caller.principal,
            &profile,
            resources,
            &request.tools,
            &request.domains,
            &request.files,
            &request.secrets,
            request.model_provider.as_deref(),
        );
        let decision_json = serde_json::to_value(&decision).unwrap_or(Value::Null);
        if !decision.allowed {
            return Err(OrchestratorError::Forbidden {
                reasons: decision.explanation(),
                decision: decision_json,
            });
        }
        let id = format!("s_{}", uuid::Uuid::now_v7().simple());
        let spec = SessionSpec {
            id: id.clone(),
            principal: caller.principal.clone(),
            profile: profile.clone(),
            resources,
            resume: false,
        };
        let placement = request.placement.clone().unwrap_or_default();
        let demand = crate::hosts::Demand {
            resources: resources.into(),
            timeout_ms: resources.timeout_ms,
            hints: placement,
            // The self-test's probe takes a ready host as it is: it never promotes a standby
            // host or makes a driver bring one up.
            passive: !counted,
        };
        // Nothing is recorded before a sidecar has the session's workspace.
        let sidecar = self.place(spec, demand).await?;
        let workspace = sidecar
            .workspace(&id)
            .map(|w| w.root.display().to_string())
            .unwrap_or_default();
        let now = now_ms();
        let record = SessionRecord {
            id: id.clone(),
            principal: caller.principal.clone(),
            profile: profile.clone(),
            state: SessionState::Open,
            created_at_ms: now,
            last_active_ms: now,
            closed_at_ms: None,
            close_reason: None,
            workspace,
            sidecar: sidecar.id().to_owned(),
            request: json!({
                "resources": resources,
                "tools": request.tools,
                "domains": request.domains,
                "files": request.files,
                "secrets": request.secrets,
                "model_provider": request.model_provider,
                "placement": request.placement,
            }),
        };
        self.store.put_session(&record);
        self.store.put_decision(
            &id,
            None,
            &json!({ "action": "create_session", "decision": decision_json }),
        );
        self.hub.publish(
            &id,
            EventName::SessionCreated,
            json!({ "session": id, "principal": caller.principal, "profile": profile }),
        );
        self.hub.publish(
            &id,
            EventName::PolicyDecision,
            json!({ "action": "create_session", "decision": decision_json }),
        );
        let mut live = LiveSession::new(record, sidecar);
        live.counted = counted;
        let view = self.view(
            &live.record.lock().unwrap_or_else(|e| e.into_inner()),
            live.disk(&id),
        );
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Arc::new(live));
        Ok(view)
    }

    /// The caller's session, live or from the store. Another principal's session is "not found".
    pub fn get_session(&self, caller: &Caller, id: &str) -> Result<SessionView, OrchestratorError> {
        if let Some(live) = self.live(caller, id) {
            let record = live
                .record
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            return Ok(self.view(&record, live.disk(id)));
        }
        let _ = self.store.flush();
        match self.store.get_session(id) {
            Ok(Some(record)) if record.principal == caller.principal => {
                Ok(self.view(&record, None))
            }
            Ok(_) => Err(OrchestratorError::NotFound("session")),
            Err(e) => Err(OrchestratorError::Internal(e.to_string())),
        }
    }

    pub(crate) fn live(&self, caller: &Caller, id: &str) -> Option<Arc<LiveSession>> {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let live = sessions.get(id)?;
        let owner = live
            .record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .principal
            .clone();
        (owner == caller.principal).then(|| live.clone())
    }

    /// Closes a session: running tasks are cancelled, the workspace removed,
    /// `session.closed` published, and its event stream ends.
    pub fn close_session(
        &self,
        caller: &Caller,
        id: &str,
        reason: CloseReason,
    ) -> Result<SessionView, OrchestratorError> {
        let live = self.live(caller, id);
        let Some(live) = live else {
            // Already closed sessions answer with their record; others are not found.
            return self.get_session(caller, id);
        };
        Ok(self.close_live(id, &live, reason, CANCELLED_TASKS_GRACE))
    }

    /// Closes a live session. Running tasks are cancelled; the stream's `session.closed`
    /// waits up to `grace` for their last events, so a live subscriber sees every task end
    /// before the stream does. (Blocks the caller meanwhile: a request's blocking thread, or
    /// nothing when `grace` is zero.)
    fn close_live(
        &self,
        id: &str,
        live: &Arc<LiveSession>,
        reason: CloseReason,
        grace: std::time::Duration,
    ) -> SessionView {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        self.hosts.release_session(id);
        for token in live
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            token.cancel();
        }
        let record = {
            let mut record = live.record.lock().unwrap_or_else(|e| e.into_inner());
            record.state = SessionState::Closed;
            record.closed_at_ms = Some(now_ms());
            record.close_reason = Some(reason);
            record.clone()
        };
        self.store.put_session(&record);
        let until = std::time::Instant::now() + grace;
        while std::time::Instant::now() < until
            && !live
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
        {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        // The in-process sidecar removes the workspace before this returns; a remote one is
        // told in the background (a sidecar that does not answer has lost it anyway).
        let closing = live.sidecar.close_session(id);
        let session = id.to_owned();
        tokio::spawn(async move {
            if let Err(error) = closing.await {
                tracing::warn!(session, %error, "the sidecar did not close the session");
            }
        });
        self.hub.publish(
            id,
            EventName::SessionClosed,
            json!({ "session": id, "reason": reason }),
        );
        self.hub.close(id);
        // Frees the in-memory events once the last subscriber has left.
        self.hub.forget(id);
        self.view(&record, None)
    }

    /// Places the session on a host (see [`crate::hosts::Registry::place`]) and opens it
    /// on the host's sidecar. A sidecar that does not answer or is draining is passed over
    /// for the next best host, a few times.
    async fn place(
        &self,
        spec: SessionSpec,
        mut demand: crate::hosts::Demand,
    ) -> Result<Arc<dyn Sidecar>, OrchestratorError> {
        let mut refused = Vec::new();
        for _ in 0..PLACEMENT_ATTEMPTS {
            let placed = self.hosts.place(&spec.id, &demand).await.map_err(|no| {
                if refused.is_empty() {
                    OrchestratorError::Capacity {
                        message: no.to_string(),
                        retry_after_s: no.retry_after.as_secs().max(1),
                    }
                } else {
                    // Hosts had room, but their sidecars could not open the session.
                    OrchestratorError::SidecarUnavailable(format!(
                        "no host could open the session ({}); try again later",
                        refused.join(", ")
                    ))
                }
            })?;
            match placed.sidecar.open_session(spec.clone()).await {
                Ok(()) => return Ok(placed.sidecar),
                // Unreachable, lost, refused as arriving too late (stale) or draining: the
                // next best host is tried.
                Err(error) if error.is_lost() || error == SidecarError::Draining => {
                    self.hosts.release_session(&spec.id);
                    tracing::warn!(host = %placed.host, %error, "host passed over for a session");
                    refused.push(format!("{}: {}", placed.host, error.code()));
                    demand.hints.avoid.push(placed.host);
                }
                Err(error) => {
                    self.hosts.release_session(&spec.id);
                    return Err(OrchestratorError::Internal(format!(
                        "host `{}` cannot open the session: {error}",
                        placed.host
                    )));
                }
            }
        }
        Err(OrchestratorError::SidecarUnavailable(format!(
            "no host could open the session ({}); try again later",
            refused.join(", ")
        )))
    }

    /// Closes sessions idle past their idle timeout or older than their lifetime.
    pub fn reap(&self) -> usize {
        let now = now_ms();
        let idle = self.config.idle_timeout.as_millis() as i64;
        let lifetime = self.config.lifetime.as_millis() as i64;
        let expired: Vec<(String, Arc<LiveSession>, CloseReason)> = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|(id, live)| {
                let record = live.record.lock().unwrap_or_else(|e| e.into_inner());
                let busy = !live
                    .running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_empty();
                if now - record.created_at_ms > lifetime {
                    Some((id.clone(), live.clone(), CloseReason::Lifetime))
                } else if !busy && now - record.last_active_ms > idle {
                    Some((id.clone(), live.clone(), CloseReason::Idle))
                } else {
                    None
                }
            })
            .collect();
        // On the reaper's async task: no waiting (an idle session has no running tasks).
        for (id, live, reason) in &expired {
            self.close_live(id, live, *reason, std::time::Duration::ZERO);
        }
        expired.len()
    }
}
