//! What `/mcp` requests pass before rmcp sees them: the API key (401 without one), the
//! caller's rate, and that an MCP session is used only by the principal that started it
//! (403) and only while its toolgate session is open (404, so the client starts a new one).
//! rmcp's own refusals in plain text (a bad `Origin` or `Host`, a body too large, a wrong
//! media type) leave as problem+json with their status kept; JSON-RPC errors pass unchanged.

use super::App;
use super::auth::AuthedKey;
use super::problem::{ErrorCode, Problem};
use crate::mcp::{BindingSlot, McpCaller};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

const SESSION_ID: &str = "mcp-session-id";

pub async fn mcp_gate(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let key = match AuthedKey::from_request_parts(&mut parts, &app).await {
        Ok(key) => key,
        Err(problem) => {
            let mut response = problem.into_response();
            if response.status() == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            return response;
        }
    };
    let who = McpCaller {
        caller: key.caller,
        key_id: key.key_id,
    };
    let shared = &app.mcp.shared;
    let mcp_session = parts
        .headers
        .get(SESSION_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(id) = &mcp_session
        && let Some(binding) = shared.binding(id)
    {
        if binding.principal != who.caller.principal {
            return Problem::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "this MCP session belongs to another principal",
            )
            .into_response();
        }
        if !shared.orchestrator().is_open(&who.caller, &binding.session) {
            shared.end(id).await;
            return Problem::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                format!(
                    "the MCP session ended: its session {} is closed; start a new one",
                    binding.session
                ),
            )
            .into_response();
        }
    }
    // The body is read here, bounded, so that a huge one is 413 and one that is not JSON a
    // JSON-RPC parse error, before any work is done for it.
    let body = if parts.method == axum::http::Method::POST {
        match axum::body::to_bytes(body, app.config.body_limit).await {
            Ok(bytes) => {
                if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
                    return parse_error(&error);
                }
                axum::body::Body::from(bytes)
            }
            Err(_) => {
                return Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "the JSON-RPC body is larger than {} bytes (body_limit_kb)",
                        app.config.body_limit
                    ),
                )
                .into_response();
            }
        }
    } else {
        body
    };
    let slot = BindingSlot::default();
    parts.extensions.insert(who);
    parts.extensions.insert(slot.clone());
    let response = next.run(Request::from_parts(parts, body)).await;
    // A new MCP session: remember whose it is and which toolgate session it works in.
    if mcp_session.is_none()
        && let Some(id) = response
            .headers()
            .get(SESSION_ID)
            .and_then(|v| v.to_str().ok())
        && let Some(binding) = slot.0.get()
    {
        shared.bind(id, binding.clone());
    }
    plain_refusal_as_problem(response).await
}

/// A body that is not JSON: JSON-RPC's parse error (-32700), with no id to answer.
fn parse_error(error: &serde_json::Error) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": -32700, "message": format!("parse error: {error}") },
    });
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// rmcp's plain-text refusals as problem+json, their status kept.
async fn plain_refusal_as_problem(response: Response) -> Response {
    let status = response.status();
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return response;
    }
    let code = match status {
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::NOT_ACCEPTABLE => {
            ErrorCode::UnsupportedMediaType
        }
        _ if status.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::InvalidRequest,
    };
    let bytes = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap_or_default();
    let detail = String::from_utf8_lossy(&bytes).trim().to_owned();
    let detail = if detail.is_empty() {
        status.canonical_reason().unwrap_or("refused").to_owned()
    } else {
        detail
    };
    Problem::new(status, code, detail).into_response()
}
