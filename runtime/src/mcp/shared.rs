//! What every MCP session and request of the server shares: the orchestrator, the bindings of
//! MCP sessions to toolgate sessions, and the sessions stateless requests share per key.

use super::binding::{Binding, McpCaller, session_closed};
use crate::orchestrator::{CreateSession, Orchestrator, OrchestratorError};
use rmcp::ErrorData;
use rmcp::transport::streamable_http_server::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// What every MCP session and request of the server shares.
pub struct Shared {
    pub(super) orchestrator: Arc<Orchestrator>,
    /// MCP sessions (2025-11-25 clients): their toolgate session and principal, by
    /// `Mcp-Session-Id`.
    pub(super) bindings: Mutex<HashMap<String, Binding>>,
    /// Stateless requests (2026-07-28 clients) that name no session share one toolgate
    /// session per key, opened at their first need: by key id.
    pub(super) default_sessions: tokio::sync::Mutex<HashMap<String, String>>,
    pub(super) sessions: Arc<LocalSessionManager>,
    /// Cancelled when the server stops.
    pub(super) stop: CancellationToken,
    /// Open MCP sessions, by principal.
    pub(super) opened: Mutex<HashMap<String, usize>>,
    pub(super) max_per_principal: usize,
}

impl Shared {
    /// The toolgate session and principal of MCP session `mcp_session`, if it has one.
    pub fn binding(&self, mcp_session: &str) -> Option<Binding> {
        self.bindings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(mcp_session)
            .cloned()
    }

    /// Records what `initialize` bound MCP session `mcp_session` to.
    pub fn bind(&self, mcp_session: &str, binding: Binding) {
        self.bindings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(mcp_session.to_owned(), binding);
    }

    /// Forgets MCP session `mcp_session` (its client deleted it, or its toolgate session
    /// closed), answering what it was bound to.
    pub fn unbind(&self, mcp_session: &str) -> Option<Binding> {
        self.bindings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(mcp_session)
    }

    /// Ends MCP session `mcp_session` in rmcp too: its client's next request is answered 404
    /// and it starts a new one.
    pub async fn end(&self, mcp_session: &str) {
        self.unbind(mcp_session);
        let id: rmcp::transport::streamable_http_server::SessionId = mcp_session.into();
        if let Err(error) = self.sessions.close_session(&id).await {
            tracing::debug!(%error, "cannot close an MCP session");
        }
    }

    /// An MCP session bound to `binding` ended: its record goes, and a session opened for it
    /// is closed (on a blocking thread: closing waits for its cancelled tasks' last events).
    pub(super) fn ended(&self, binding: Binding) {
        self.bindings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, bound| bound.instance != binding.instance);
        self.uncount_session(&binding.principal);
        if !binding.created || self.stop.is_cancelled() {
            return;
        }
        let orchestrator = self.orchestrator.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn_blocking(move || {
            // Sessions are looked up by their owner's principal alone.
            let owner = crate::orchestrator::Caller {
                principal: binding.principal.clone(),
                profile: String::new(),
                admin: false,
            };
            let _ = orchestrator.close_session(
                &owner,
                &binding.session,
                crate::vocabulary::CloseReason::Deleted,
            );
        });
    }

    pub fn orchestrator(&self) -> &Arc<Orchestrator> {
        &self.orchestrator
    }
}

impl Shared {
    /// The session a request or a new MCP session works in: the one it names (which must be
    /// the caller's and open), else a new one (`initialize`) or the key's shared one
    /// (stateless requests).
    pub(super) async fn resolve(
        &self,
        who: &McpCaller,
        named: Option<String>,
        new_session: bool,
    ) -> Result<Binding, ErrorData> {
        let orchestrator = &self.orchestrator;
        if let Some(session) = named {
            return match orchestrator.get_session(&who.caller, &session) {
                Ok(_) if orchestrator.is_open(&who.caller, &session) => {
                    Ok(Binding::new(&who.caller.principal, session, false))
                }
                Ok(_) => Err(session_closed(&session)),
                Err(_) => Err(ErrorData::invalid_params(
                    format!("no session `{session}` of yours"),
                    None,
                )),
            };
        }
        if new_session {
            let session = self.open(who).await?;
            return Ok(Binding::new(&who.caller.principal, session, true));
        }
        // One opening at a time, so concurrent first requests of a key share one session.
        let mut defaults = self.default_sessions.lock().await;
        if let Some(session) = defaults.get(&who.key_id)
            && orchestrator.is_open(&who.caller, session)
        {
            return Ok(Binding::new(&who.caller.principal, session.clone(), false));
        }
        let session = self.open(who).await?;
        defaults.insert(who.key_id.clone(), session.clone());
        Ok(Binding::new(&who.caller.principal, session, false))
    }

    /// Takes one of the principal's places for MCP sessions, or says there is none left: an
    /// MCP session lives (and may hold a session opened for it) until deleted or idle, and one
    /// principal must not take the server's every place by never closing them.
    pub(super) fn count_new_session(&self, principal: &str) -> Result<(), ErrorData> {
        let mut open = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(principal.to_owned()).or_default();
        if *count >= self.max_per_principal {
            return Err(ErrorData::invalid_request(
                format!(
                    "`{principal}` has {count} MCP sessions open, the most a principal may \
                     (mcp_max_sessions_per_principal); end one (DELETE /mcp with its \
                     Mcp-Session-Id; an unused one ends after 5 minutes idle)"
                ),
                Some(serde_json::json!({ "code": "too_many_sessions" })),
            ));
        }
        *count += 1;
        Ok(())
    }

    pub(super) fn uncount_session(&self, principal: &str) {
        let mut open = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(principal) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(principal);
            }
        }
    }

    /// A new session in the key's profile, with default resources.
    async fn open(&self, who: &McpCaller) -> Result<String, ErrorData> {
        match self
            .orchestrator
            .create_session(&who.caller, CreateSession::default())
            .await
        {
            Ok(view) => Ok(view.id),
            Err(error) => Err(refused_session(error)),
        }
    }
}

/// Why no session could be opened for an MCP client, as a JSON-RPC error with toolgate's code.
fn refused_session(error: OrchestratorError) -> ErrorData {
    let code = match &error {
        OrchestratorError::Forbidden { .. } => "forbidden",
        OrchestratorError::Capacity { .. } => "capacity",
        OrchestratorError::SidecarUnavailable(_) => "sidecar_unavailable",
        _ => "internal",
    };
    ErrorData::invalid_request(
        format!("cannot open a session: {error}"),
        Some(serde_json::json!({ "code": code })),
    )
}
