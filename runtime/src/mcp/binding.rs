//! Which toolgate session an MCP request works in.
//!
//! - A 2025-11-25 client's MCP session is bound at `initialize`: to the caller's open session
//!   named by `?session=` on the endpoint URL (or the `Toolgate-Session` header), else to a new
//!   session opened for it in the key's profile. Closing either one closes the other (a
//!   session it was bound to, rather than opened for it, stays open when the MCP session ends).
//! - A 2026-07-28 request has no MCP session: it names its toolgate session the same way, or
//!   works in the one session its key shares among such requests, opened at the first need.

use crate::orchestrator::Caller;
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
    /// Tells apart MCP sessions bound to the same session.
    pub instance: u64,
}

impl Binding {
    pub fn new(principal: &str, session: String, created: bool) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Self {
            principal: principal.to_owned(),
            session,
            created,
            instance: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }
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

pub(super) fn session_closed(session: &str) -> ErrorData {
    ErrorData::invalid_request(
        format!("session {session} is closed; start a new MCP session"),
        Some(serde_json::json!({ "code": "session_closed", "session": session })),
    )
}
