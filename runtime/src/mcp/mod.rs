//! The MCP endpoint (`/mcp`, Streamable HTTP, through rmcp): the tools of toolgate for agents
//! that speak the Model Context Protocol. A tool call is a task of a toolgate session, on the
//! same path as one over the HTTP API: policy gate, sandbox, limits, events, store.
//!
//! - `binding`: which toolgate session an MCP request works in, and who may use it;
//! - `shared`: what every session and request shares (the bindings, the per-key sessions);
//! - `handler`: the MCP methods (initialize, tools/list, tools/call, logging, subscriptions);
//! - `calls`: one `tools/call` as a task, its progress and logs sent back as MCP notifications;
//! - `tools`: toolgate's tools as MCP tool definitions.
//!
//! Authentication, and keeping one MCP session to one principal, happen before rmcp sees a
//! request (the server's `/mcp` gate): rmcp itself ties a session to no credential.

mod binding;
mod calls;
mod handler;
mod shared;
mod tools;

pub use binding::{Binding, BindingSlot, McpCaller};
pub use shared::Shared;

use crate::orchestrator::Orchestrator;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
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
    /// MCP sessions one principal may have open at once.
    pub max_sessions_per_principal: usize,
}

/// The endpoint: the rmcp service to mount, and what the gate in front of it consults.
pub struct Mcp {
    pub shared: Arc<Shared>,
    pub service: StreamableHttpService<handler::McpServer, LocalSessionManager>,
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
            opened: Mutex::default(),
            max_per_principal: config.max_sessions_per_principal,
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
