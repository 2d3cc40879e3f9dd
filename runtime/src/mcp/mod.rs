//! The MCP endpoint (`/mcp`, Streamable HTTP, through rmcp): the tools of toolgate for agents
//! that speak the Model Context Protocol. A tool call is a task of a toolgate session, on the
//! same path as one over the HTTP API: policy gate, sandbox, limits, events, store.
//!
//! - `binding`: which toolgate session an MCP request works in, and who may use it;
//! - `handler`: the MCP methods (initialize, tools/list, tools/call, logging, subscriptions);
//! - `calls`: one `tools/call` as a task, its progress and logs sent back as MCP notifications;
//! - `tools`: toolgate's tools as MCP tool definitions.
//!
//! Authentication, and keeping one MCP session to one principal, happen before rmcp sees a
//! request (the server's `/mcp` gate): rmcp itself ties a session to no credential.

mod binding;
mod calls;
mod handler;
mod tools;

pub use binding::{Binding, BindingSlot, McpCaller};

use crate::orchestrator::Orchestrator;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{
    SessionManager, StreamableHttpServerConfig, StreamableHttpService,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How the endpoint checks where requests come from (DNS rebinding, cross-site pages).
#[derive(Debug, Clone)]
pub struct McpConfig {
    /// `Host` header values served (a name without a port matches any port).
    pub allowed_hosts: Vec<String>,
    /// `Origin` header values accepted (`scheme://host[:port]`, `:*` for any port). A request
    /// with an `Origin` outside this list is refused with 403; an empty list refuses every
    /// request that has one. Requests without `Origin` (non-browser clients) pass.
    pub allowed_origins: Vec<String>,
    /// The largest JSON-RPC body taken, in bytes.
    pub body_limit: usize,
}

/// The endpoint: the rmcp service to mount, and what the gate in front of it consults.
pub struct Mcp {
    pub shared: Arc<Shared>,
    pub service: StreamableHttpService<handler::McpServer, LocalSessionManager>,
}

/// What every MCP session and request of the server shares.
pub struct Shared {
    orchestrator: Arc<Orchestrator>,
    /// MCP sessions (2025-11-25 clients): their toolgate session and principal, by
    /// `Mcp-Session-Id`.
    bindings: Mutex<HashMap<String, Binding>>,
    /// Stateless requests (2026-07-28 clients) that name no session share one toolgate
    /// session per key, opened at their first need: by key id.
    default_sessions: tokio::sync::Mutex<HashMap<String, String>>,
    sessions: Arc<LocalSessionManager>,
    /// Cancelled when the server stops.
    stop: CancellationToken,
}

impl Mcp {
    pub fn new(
        orchestrator: Arc<Orchestrator>,
        config: McpConfig,
        stop: CancellationToken,
    ) -> Self {
        let sessions = Arc::new(LocalSessionManager::default());
        let shared = Arc::new(Shared {
            orchestrator,
            bindings: Mutex::default(),
            default_sessions: tokio::sync::Mutex::default(),
            sessions: sessions.clone(),
            stop: stop.clone(),
        });
        let mut rmcp_config = StreamableHttpServerConfig::default()
            .with_allowed_hosts(config.allowed_hosts)
            .with_max_request_body_bytes(config.body_limit)
            .with_sse_keep_alive(Some(Duration::from_secs(15)))
            .with_cancellation_token(stop);
        rmcp_config = if config.allowed_origins.is_empty() {
            rmcp_config.enforce_origin_validation()
        } else {
            rmcp_config.with_allowed_origins(config.allowed_origins)
        };
        let for_factory = shared.clone();
        let service = StreamableHttpService::new(
            move || Ok(handler::McpServer::new(for_factory.clone())),
            sessions,
            rmcp_config,
        );
        Self { shared, service }
    }
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
    fn ended(&self, binding: Binding) {
        self.bindings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, bound| *bound != binding);
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
