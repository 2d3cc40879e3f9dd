//! The MCP methods toolgate answers. rmcp makes one [`McpServer`] per MCP session (2025-11-25
//! clients, from `initialize` on) and one per stateless request (2026-07-28 clients).

use super::binding::{
    Binding, BindingSlot, McpCaller, caller_of, requested_session, session_closed,
};
use super::calls::{self, Feedback};
use super::shared::Shared;
#[allow(deprecated)]
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, InitializeRequestParams,
    InitializeResult, ListToolsResult, LoggingLevel, MetaObject, PaginatedRequestParams,
    ProtocolVersion, ServerCapabilities, ServerConfig, SetLevelRequestParams, SubscriptionFilter,
    Tool,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

pub struct McpServer {
    shared: Arc<Shared>,
    /// What an MCP session keeps between requests (unused by stateless requests).
    state: Mutex<SessionState>,
    /// Cancelled when the MCP session (or the stateless request) ends.
    ended: CancellationToken,
}

#[derive(Default)]
struct SessionState {
    /// Set at `initialize`.
    binding: Option<Binding>,
    /// The tool list, fixed for the session once listed, until a plugin changes: with the
    /// generation of plugins it was made for.
    tools: Option<(u64, Vec<Tool>)>,
    /// From `logging/setLevel`.
    #[allow(deprecated)]
    log_level: Option<LoggingLevel>,
}

impl McpServer {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            state: Mutex::default(),
            ended: CancellationToken::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The caller and the session a request works in. In an MCP session, only the principal
    /// that started it may use it (the server's gate refuses others before this), and only
    /// while its toolgate session is open.
    async fn session_for(
        &self,
        context: &RequestContext<RoleServer>,
    ) -> Result<(McpCaller, Binding), ErrorData> {
        let who = caller_of(&context.extensions)?;
        let bound = self.state().binding.clone();
        if let Some(binding) = bound {
            if binding.principal != who.caller.principal {
                return Err(ErrorData::invalid_request(
                    "this MCP session belongs to another principal",
                    None,
                ));
            }
            if !self
                .shared
                .orchestrator
                .is_open(&who.caller, &binding.session)
            {
                return Err(session_closed(&binding.session));
            }
            return Ok((who, binding));
        }
        let parts = context.extensions.get::<http::request::Parts>();
        let named = match parts {
            Some(parts) => requested_session(parts)?,
            None => None,
        };
        let binding = self.shared.resolve(&who, named, false).await?;
        Ok((who, binding))
    }

    /// The level of log messages a request gets: what a 2026-07-28 request asks for in its
    /// `_meta` (none unless it asks), else the session's `logging/setLevel` (default `info`).
    #[allow(deprecated)]
    fn log_level(&self, context: &RequestContext<RoleServer>) -> Option<LoggingLevel> {
        let stateless = context
            .protocol_version()
            .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28);
        if stateless {
            context.meta.log_level()
        } else {
            Some(self.state().log_level.unwrap_or(LoggingLevel::Info))
        }
    }
}

fn session_meta(binding: &Binding) -> MetaObject {
    let mut map = serde_json::Map::new();
    map.insert("toolgate/session".into(), binding.session.clone().into());
    MetaObject(map)
}

impl ServerHandler for McpServer {
    #[allow(deprecated)]
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_logging()
                .build(),
        )
        .with_server_info(Implementation::new("toolgate", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "toolgate runs each tool call as a sandboxed task of a session, after a policy \
             decision. A denied call, a limit hit or a tool error comes back as a result with \
             isError and the reason; `_meta` names the session and the task, whose events are \
             at GET /v1/sessions/{session}/events.",
        )
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        let who = caller_of(&context.extensions)?;
        let parts = context.extensions.get::<http::request::Parts>();
        let named = match parts {
            Some(parts) => requested_session(parts)?,
            None => None,
        };
        self.shared.count_new_session(&who.caller.principal)?;
        let binding = match self.shared.resolve(&who, named, true).await {
            Ok(binding) => binding,
            Err(error) => {
                self.shared.uncount_session(&who.caller.principal);
                return Err(error);
            }
        };
        // The gate records the binding under the Mcp-Session-Id rmcp answers with.
        if let Some(slot) = parts.and_then(|p| p.extensions.get::<BindingSlot>()) {
            let _ = slot.0.set(binding.clone());
        }
        self.state().binding = Some(binding.clone());
        context.peer.set_peer_info(request.clone());
        let mut result = self.negotiate_initialize(&request)?;
        result.meta = Some(session_meta(&binding));
        Ok(result)
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        // Tells the client when an admin installs, deletes or rolls back a plugin.
        let peer = context.peer.clone();
        let mut changed = self.shared.orchestrator.tools_changed();
        changed.mark_unchanged();
        let ended = self.ended.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = ended.cancelled() => return,
                    result = changed.changed() => {
                        if result.is_err()
                            || peer.is_transport_closed()
                            || peer.notify_tool_list_changed().await.is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let (who, binding) = self.session_for(&context).await?;
        let generation = *self.shared.orchestrator.tools_changed().borrow();
        if let Some((made_for, tools)) = self.state().tools.clone()
            && made_for == generation
        {
            return Ok(ListToolsResult::with_all_items(tools));
        }
        let tools: Vec<Tool> = self
            .shared
            .orchestrator
            .invocable_tools(&who.caller, &binding.session)
            .await
            .map_err(|_| session_closed(&binding.session))?
            .iter()
            .map(super::tools::definition)
            .collect();
        // Kept for an MCP session; a stateless request's server ends with it.
        self.state().tools = Some((generation, tools.clone()));
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let (who, binding) = self.session_for(&context).await?;
        let feedback = Feedback {
            progress: context.meta.get_progress_token(),
            log_level: self.log_level(&context),
        };
        let result = calls::call(
            &self.shared.orchestrator,
            &who,
            &binding,
            request,
            feedback,
            &context,
        )
        .await?;
        Ok(result.into())
    }

    #[allow(deprecated)]
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.state().log_level = Some(request.level);
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.supported_by(&self.get_info().capabilities))
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let mut changed = self.shared.orchestrator.tools_changed();
        changed.mark_unchanged();
        loop {
            tokio::select! {
                () = context.cancelled() => return Ok(()),
                result = changed.changed() => {
                    if result.is_err() || context.sink().notify_tool_list_changed().await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

impl Drop for McpServer {
    /// The MCP session ended (its client deleted it, it idled out, or the server stops): a
    /// session opened for it closes too, unless the server is stopping (sessions outlive a
    /// restart).
    fn drop(&mut self) {
        self.ended.cancel();
        let binding = self.state().binding.take();
        if let Some(binding) = binding {
            self.shared.ended(binding);
        }
    }
}
