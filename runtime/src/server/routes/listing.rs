//! `GET /v1/sessions` and `GET /v1/sessions/{id}/tasks`: newest first, filtered, a page at a
//! time. `limit` (1-200, 50 by default) sizes a page; `next_cursor` in the body (and a
//! `Link: <...>; rel="next"` header) continues after it, and is `null` on the last page.
//! Every query parameter is checked: an unknown one, a bad value or a malformed cursor is a
//! 422 with a stable code (`invalid_query`, `invalid_cursor`).

use crate::orchestrator::{SessionFilter, SessionView, TaskFilter};
use crate::server::App;
use crate::server::api_doc::errors;
use crate::server::auth::Authed;
use crate::server::problem::{ErrorCode, Problem};
use crate::store::{Position, TaskRecord};
use crate::vocabulary::{SessionState, TaskState, UnknownWord};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

/// Items on a page when the caller does not say.
pub const DEFAULT_LIMIT: usize = 50;
/// The most items a page may have.
pub const MAX_LIMIT: usize = 200;

/// `GET /v1/sessions?state=&principal=&limit=&cursor=`. Values are read as text and checked
/// here, so each bad one gets its own `invalid_query` naming it.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SessionsQuery {
    /// Only sessions in this state: `open` or `closed`.
    #[param(pattern = "^(open|closed)$")]
    state: Option<String>,
    /// Admin keys only: list this principal's sessions instead of their own.
    principal: Option<String>,
    /// Items on a page, 1-200 (50 by default).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// `next_cursor` of the page before.
    cursor: Option<String>,
}

/// `GET /v1/sessions/{id}/tasks?state=&tool=&limit=&cursor=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TasksQuery {
    /// Only tasks in this state.
    #[param(pattern = "^(queued|running|completed|failed|cancelled|interrupted)$")]
    state: Option<String>,
    /// Only tasks of this tool, `plugin.tool`.
    tool: Option<String>,
    /// Items on a page, 1-200 (50 by default).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// `next_cursor` of the page before.
    cursor: Option<String>,
}

/// A page of sessions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionPage {
    /// Newest first.
    pub sessions: Vec<SessionView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A page of tasks.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskPage {
    /// Newest first.
    pub tasks: Vec<TaskRecord>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The caller's sessions
///
/// Newest first, a page at a time; a `Link: <...>; rel="next"` header points at the next page.
/// An admin key may pass `principal` to list another principal's sessions (others get 403).
#[utoipa::path(get, path = "/v1/sessions", operation_id = "listSessions", tag = "sessions",
    params(SessionsQuery),
    responses((status = 200, description = "A page of sessions.", body = SessionPage,
            headers(("Link" = String, description = "`<...>; rel=\"next\"` when another page follows."))),
        errors::Forbidden, errors::UnprocessableEntity))]
pub async fn sessions(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    OriginalUri(uri): OriginalUri,
    query: Result<Query<SessionsQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(query) = query.map_err(bad_query)?;
    let state = one_of::<SessionState>("state", query.state)?;
    let principal = match query.principal {
        Some(p) if p.is_empty() || p.len() > 128 || p.chars().any(char::is_control) => {
            return Err(invalid_query(
                "principal",
                "`principal` must be 1-128 printable characters",
            )
            .into());
        }
        principal => principal,
    };
    if principal.as_ref().is_some_and(|p| *p != caller.principal) {
        crate::server::auth::require_admin(&caller, "list another principal's sessions")?;
    }
    let limit = limit(query.limit.as_deref())?;
    let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let filter = SessionFilter {
        principal: principal.clone(),
        state: state.clone(),
        after,
        limit,
    };
    let page = super::blocking(&app, move |o| o.list_sessions(&caller, &filter)).await?;
    let params = [("state", state), ("principal", principal)];
    let next_cursor = page.next.as_ref().map(encode_cursor);
    let body = SessionPage {
        sessions: page.items,
        next_cursor,
    };
    let next = body.next_cursor.clone();
    Ok(respond(body, next, uri.path(), limit, &params))
}

/// The session's tasks
///
/// Newest first, a page at a time; a `Link: <...>; rel="next"` header points at the next page.
#[utoipa::path(get, path = "/v1/sessions/{id}/tasks", operation_id = "listTasks", tag = "tasks",
    params(super::sessions::SessionPath, TasksQuery),
    responses((status = 200, description = "A page of tasks.", body = TaskPage,
            headers(("Link" = String, description = "`<...>; rel=\"next\"` when another page follows."))),
        errors::NotFound, errors::UnprocessableEntity))]
pub async fn tasks(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path(session): Path<String>,
    OriginalUri(uri): OriginalUri,
    query: Result<Query<TasksQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(query) = query.map_err(bad_query)?;
    let state = one_of::<TaskState>("state", query.state)?;
    let tool = match query.tool {
        Some(tool) if !is_tool_name(&tool) => {
            return Err(invalid_query("tool", "`tool` must be a tool name, plugin.tool").into());
        }
        tool => tool,
    };
    let limit = limit(query.limit.as_deref())?;
    let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let filter = TaskFilter {
        state: state.clone(),
        tool: tool.clone(),
        after,
        limit,
    };
    let page = super::blocking(&app, move |o| o.list_tasks(&caller, &session, &filter)).await?;
    let params = [("state", state), ("tool", tool)];
    let next_cursor = page.next.as_ref().map(encode_cursor);
    let body = TaskPage {
        tasks: page.items,
        next_cursor,
    };
    let next = body.next_cursor.clone();
    Ok(respond(body, next, uri.path(), limit, &params))
}

/// The page, with a `Link` to the next one when there is one.
fn respond(
    body: impl Serialize,
    next: Option<String>,
    path: &str,
    limit: usize,
    params: &[(&str, Option<String>)],
) -> Response {
    let mut response = Json(body).into_response();
    if let Some(cursor) = &next {
        let mut query: Vec<(&str, String)> = params
            .iter()
            .filter_map(|(name, value)| value.clone().map(|v| (*name, v)))
            .collect();
        query.push(("limit", limit.to_string()));
        query.push(("cursor", cursor.clone()));
        let link = serde_urlencoded::to_string(&query)
            .ok()
            .and_then(|q| HeaderValue::from_str(&format!("<{path}?{q}>; rel=\"next\"")).ok());
        if let Some(link) = link {
            response.headers_mut().insert(header::LINK, link);
        }
    }
    response
}

fn is_tool_name(tool: &str) -> bool {
    tool.split_once('.').is_some_and(|(plugin, name)| {
        crate::sandbox::is_valid_plugin_name(plugin) && crate::sandbox::is_valid_plugin_name(name)
    })
}

/// A query a listing cannot use: the stable code, the parameter at fault, and why.
#[derive(Debug)]
pub struct BadQuery {
    code: ErrorCode,
    parameter: Option<&'static str>,
    detail: String,
}

impl From<BadQuery> for Problem {
    fn from(bad: BadQuery) -> Self {
        let problem = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, bad.code, bad.detail);
        match bad.parameter {
            Some(parameter) => problem.with(json!({ "parameter": parameter })),
            None => problem,
        }
    }
}

/// A cursor is opaque to clients: the position of the last item shown, base64url-encoded.
fn encode_cursor(position: &Position) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{}:{}", position.created_at_ms, position.id))
}

fn decode_cursor(text: &str) -> Result<Position, BadQuery> {
    let bad = || BadQuery {
        code: ErrorCode::InvalidCursor,
        parameter: Some("cursor"),
        detail: "`cursor` is not a cursor this listing returned (pass `next_cursor` as it is)"
            .into(),
    };
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let rest = text.strip_prefix("v1:").ok_or_else(bad)?;
    let (at, id) = rest.split_once(':').ok_or_else(bad)?;
    let created_at_ms: i64 = at.parse().map_err(|_| bad())?;
    let id_ok = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if created_at_ms < 0 || !id_ok {
        return Err(bad());
    }
    Ok(Position {
        created_at_ms,
        id: id.to_owned(),
    })
}

fn limit(text: Option<&str>) -> Result<usize, BadQuery> {
    let Some(text) = text else {
        return Ok(DEFAULT_LIMIT);
    };
    text.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            invalid_query(
                "limit",
                format!("`limit` must be a whole number from 1 to {MAX_LIMIT}"),
            )
        })
}

/// A parameter that must be a word of vocabulary `W`, kept as text for the store's query.
fn one_of<W: std::str::FromStr<Err = UnknownWord>>(
    name: &'static str,
    value: Option<String>,
) -> Result<Option<String>, BadQuery> {
    match value {
        Some(v) => match v.parse::<W>() {
            Ok(_) => Ok(Some(v)),
            Err(unknown) => Err(invalid_query(
                name,
                format!("`{name}` must be one of {}", unknown.expected),
            )),
        },
        None => Ok(None),
    }
}

fn invalid_query(parameter: &'static str, detail: impl Into<String>) -> BadQuery {
    BadQuery {
        code: ErrorCode::InvalidQuery,
        parameter: Some(parameter),
        detail: detail.into(),
    }
}

/// An unknown or repeated parameter, or a query string that is not one.
fn bad_query(rejection: QueryRejection) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::InvalidQuery,
        rejection.body_text(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_anything_else_is_refused() {
        let position = Position {
            created_at_ms: 1_795_474_724_604,
            id: "s_0199f0a1b2c3".into(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&position)).unwrap(), position);
        let forged = |text: &str| URL_SAFE_NO_PAD.encode(text);
        for bad in [
            "".to_owned(),
            "not base64!".to_owned(),
            forged("v2:1:s_1"),
            forged("v1:x:s_1"),
            forged("v1:-1:s_1"),
            forged("v1:1:"),
            forged("v1:1:s_1' OR 1=1"),
        ] {
            let problem = decode_cursor(&bad).unwrap_err();
            assert_eq!(problem.code, ErrorCode::InvalidCursor, "{bad}");
        }
    }
}
