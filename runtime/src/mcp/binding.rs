//! Which toolgate session an MCP request works in.
//!
//! - A 2025-11-25 client's MCP session is bound at `initialize`: to the caller's open session
//!   named by `?session=` on the endpoint URL (or the `Toolgate-Session` header), else to a new
//!   session opened for it in the key's profile. Closing either one closes the other (a
//!   session it was bound to, rather than opened for it, stays open when the MCP session ends).
//! - A 2026-07-28 request has no MCP session: it names its toolgate session the same way, or
//!   works in the one session its key shares among such requests, opened at the first need.

use super::Shared;
use crate::orchestrator::{Caller, CreateSession, OrchestratorError};
use rmcp::ErrorData;
use std::sync::{Arc, OnceLock};

/// The authenticated caller of an MCP request, put on the request by the server's gate.
#[derive(Debug, Clone)]
pub struct McpCaller {
    pub caller: Caller,
    /// The id of the key that authenticated the request.
    pub key_id: String,
}

/// An MCP session's toolgate session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Only this principal may use the MCP session.
    pub principal: String,
    pub session: String,
    /// The session was opened for the MCP session (and is closed with it).
    pub created: bool,
}

/// Where `initialize` leaves its binding for the gate, which learns the `Mcp-Session-Id` only
/// from rmcp's answer.
#[derive(Debug, Clone, Default)]
pub struct BindingSlot(pub Arc<OnceLock<Binding>>);

/// Header naming the toolgate session, as an alternative to `?session=`.
pub const SESSION_HEADER: &str = "toolgate-session";

/// The session a request names, if any.
pub(super) fn requested_session(parts: &http::request::Parts) -> Result<Option<String>, ErrorData> {
    if let Some(value) = parts.headers.get(SESSION_HEADER) {
        let value = value.to_str().map_err(|_| {
            ErrorData::invalid_request("the Toolgate-Session header is not text", None)
        })?;
        return Ok(Some(value.trim().to_owned()).filter(|v| !v.is_empty()));
    }
    let Some(query) = parts.uri.query() else {
        return Ok(None);
    };
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| ErrorData::invalid_request(format!("bad query string: {e}"), None))?;
    Ok(pairs
        .into_iter()
        .find(|(name, _)| name == "session")
        .map(|(_, value)| value)
        .filter(|v| !v.is_empty()))
}

/// The caller the server's gate authenticated.
pub(super) fn caller_of(extensions: &rmcp::model::Extensions) -> Result<McpCaller, ErrorData> {
    extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<McpCaller>())
        .cloned()
        .ok_or_else(|| ErrorData::invalid_request("the request carries no API key", None))
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
                Ok(_) if orchestrator.is_open(&who.caller, &session) => Ok(Binding {
                    principal: who.caller.principal.clone(),
                    session,
                    created: false,
                }),
                Ok(_) => Err(session_closed(&session)),
                Err(_) => Err(ErrorData::invalid_params(
                    format!("no session `{session}` of yours"),
                    None,
                )),
            };
        }
        if new_session {
            let session = self.open(who).await?;
            return Ok(Binding {
                principal: who.caller.principal.clone(),
                session,
                created: true,
            });
        }
        // One opening at a time, so concurrent first requests of a key share one session.
        let mut defaults = self.default_sessions.lock().await;
        if let Some(session) = defaults.get(&who.key_id)
            && orchestrator.is_open(&who.caller, session)
        {
            return Ok(Binding {
                principal: who.caller.principal.clone(),
                session: session.clone(),
                created: false,
            });
        }
        let session = self.open(who).await?;
        defaults.insert(who.key_id.clone(), session.clone());
        Ok(Binding {
            principal: who.caller.principal.clone(),
            session,
            created: false,
        })
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

pub(super) fn session_closed(session: &str) -> ErrorData {
    ErrorData::invalid_request(
        format!("session {session} is closed; start a new MCP session"),
        Some(serde_json::json!({ "code": "session_closed", "session": session })),
    )
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
