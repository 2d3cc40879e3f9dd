//! The OpenAPI document of the API, generated from the routes' `#[utoipa::path]` annotations
//! and the types they name, plus what every route of a group answers (the errors of its layers
//! and extractors). `toolgate openapi` prints it; `runtime/openapi.json` is a copy that a test
//! keeps equal to it.
//!
//! A route's annotation names its own answers; errors are named by their status with the
//! markers of [`errors`] (`responses((status = 200, body = T), errors::NotFound)`), each a
//! shared response listing every code sent with that status.

use super::problem::ErrorCode;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa_axum::router::OpenApiRouter;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "toolgate",
        description = "Run AI agents' tools as sandboxed WebAssembly components, every use decided by Cedar policies.\n\nJSON over HTTP. Every `/v1` route needs `Authorization: Bearer <key>` (`toolgate keys create`). Errors are `application/problem+json` documents with a stable `code`; every authenticated request counts against its principal's rate limit (429 `rate_limited` with `Retry-After`). A session's events stream over SSE with replay.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "http://127.0.0.1:8080", description = "`toolgate serve` (default address)")),
    security(("bearer" = [])),
    tags(
        (name = "info", description = "The server, its tools and policies"),
        (name = "plugins", description = "Installing plugins (admin keys)"),
        (name = "keys", description = "API keys (admin keys)"),
        (name = "sessions", description = "Sandbox contexts with their own workspace"),
        (name = "tasks", description = "Tool calls in a session"),
        (name = "runs", description = "Agent runs in a session: an agent calling models and tools"),
        (name = "events", description = "A session's event stream (SSE)"),
        (name = "files", description = "Workspace files in and out without a tool"),
        (name = "hosts", description = "Where sessions run: state, capacity, allocation; drain (admin keys)"),
        (name = "operations", description = "Health, metrics, this document (no key)"),
    ),
    modifiers(&BearerKeys),
)]
struct Base;

struct BearerKeys;

impl utoipa::Modify for BearerKeys {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("tg_<43 base64url characters>")
                    .description(Some(
                        "An API key from `toolgate keys create --principal P --profile R` (or the admin key written to `<data dir>/admin.key` on first start). The key maps to a principal and its profile.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The whole document.
pub fn document() -> Value {
    let mut doc = Base::openapi();
    doc.merge(super::routes().into_openapi());
    for_each_operation(&mut doc, |operation| {
        let json_body = operation
            .request_body
            .as_ref()
            .is_some_and(|body| body.content.contains_key("application/json"));
        // `Body<T>` answers these for any JSON body.
        if json_body {
            answers(operation, &[413, 415, 422]);
        }
        // A path or query the extractors cannot read.
        if operation.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
            answers(operation, &[400]);
        }
        // A fault anywhere. (A method a path does not take is answered 405 `method_not_allowed`,
        // but by no operation.)
        answers(operation, &[500]);
    });
    doc.merge(super::routes::events::EventPayloads::openapi());
    let mut doc = serde_json::to_value(doc).expect("the document is JSON");
    // axum's `{*path}` (the rest of the path, `/`s included) is `{path}` in OpenAPI.
    if let Some(paths) = doc["paths"].as_object_mut() {
        *paths = std::mem::take(paths)
            .into_iter()
            .map(|(template, item)| (template.replace("{*", "{"), item))
            .collect();
    }
    let x_events = |list: &[(crate::vocabulary::EventName, &str)]| {
        let events: serde_json::Map<String, Value> = list
            .iter()
            .map(|(name, schema)| {
                let reference = format!("#/components/schemas/{schema}");
                (name.as_str().to_owned(), json!({ "$ref": reference }))
            })
            .collect();
        Value::Object(events)
    };
    doc["paths"]["/v1/sessions/{id}/events"]["get"]["x-events"] =
        x_events(super::routes::events::EVENTS);
    doc["paths"]["/v1/hosts/events"]["get"]["x-events"] =
        x_events(super::routes::events::HOST_EVENTS);
    let components = doc["components"]
        .as_object_mut()
        .expect("the document has components");
    components
        .entry("schemas")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("schemas are an object")
        .insert("Problem".into(), problem_schema());
    let responses = components
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("responses are an object");
    for status in error_statuses() {
        responses.insert(response_name(status), error_response(status));
    }
    doc
}

/// The document as served and checked in: pretty JSON and a final newline.
pub fn document_text() -> String {
    let mut text = serde_json::to_string_pretty(&document()).expect("the document is JSON");
    text.push('\n');
    text
}

/// The document, made once.
pub fn served() -> Arc<str> {
    static TEXT: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| document_text().into()).clone()
}

/// Adds the shared error responses of `statuses` to every operation of `routes` that does not
/// name them itself: what the layers around a group of routes answer.
pub fn every_route_answers<S>(mut routes: OpenApiRouter<S>, statuses: &[u16]) -> OpenApiRouter<S>
where
    S: Send + Sync + Clone + 'static,
{
    for_each_operation(routes.get_openapi_mut(), |operation| {
        answers(operation, statuses)
    });
    routes
}

/// Marks every operation of `routes` as needing no key.
pub fn without_key<S>(mut routes: OpenApiRouter<S>) -> OpenApiRouter<S>
where
    S: Send + Sync + Clone + 'static,
{
    for_each_operation(routes.get_openapi_mut(), |operation| {
        operation.security = Some(Vec::new())
    });
    routes
}

fn answers(operation: &mut Operation, statuses: &[u16]) {
    for status in statuses {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| error_ref(*status));
    }
}

fn for_each_operation(doc: &mut utoipa::openapi::OpenApi, mut f: impl FnMut(&mut Operation)) {
    for item in doc.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
        {
            f(operation);
        }
    }
}

/// Every status some code is sent with, in order.
fn error_statuses() -> Vec<u16> {
    let mut statuses: Vec<u16> = ErrorCode::ALL
        .iter()
        .flat_map(|code| code.statuses().iter().copied())
        .collect();
    statuses.sort_unstable();
    statuses.dedup();
    statuses
}

fn codes_of(status: u16) -> impl Iterator<Item = ErrorCode> {
    ErrorCode::ALL
        .iter()
        .copied()
        .filter(move |code| code.statuses().contains(&status))
}

/// `404` → `NotFound`: the reason phrase, run together.
fn response_name(status: u16) -> String {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
        .split([' ', '-'])
        .collect()
}

fn error_ref(status: u16) -> RefOr<utoipa::openapi::response::Response> {
    RefOr::Ref(Ref::from_response_name(response_name(status)))
}

fn problem_schema() -> Value {
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    json!({
        "type": "object",
        "description": "An error (RFC 9457, `application/problem+json`). Match on `code`, which is stable; `detail` is for people and may change. Some codes add members (`forbidden`: `reasons`, `explanation` and `decision`; `invalid_plugin`: `reason`; `invalid_query` and `invalid_cursor`: `parameter`; `quota_exceeded`: `used_bytes` and `quota_bytes`).",
        "required": ["type", "title", "status", "code", "detail"],
        "properties": {
            "type": {
                "type": "string",
                "format": "uri",
                "description": "`https://toolgate.dev/problems/<code>`"
            },
            "title": { "type": "string", "description": "The reason phrase of `status`." },
            "status": { "type": "integer", "description": "The HTTP status." },
            "code": { "type": "string", "enum": codes },
            "detail": { "type": "string" }
        }
    })
}

/// The shared response of an error status: a problem with one of the codes sent with it.
fn error_response(status: u16) -> Value {
    let codes: Vec<ErrorCode> = codes_of(status).collect();
    let description = codes
        .iter()
        .map(|code| format!("`{code}`: {}", code.meaning()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut properties = json!({
        "status": { "const": status },
        "code": { "enum": codes.iter().map(|c| c.as_str()).collect::<Vec<_>>() },
    });
    if codes.contains(&ErrorCode::Forbidden) {
        // A policy denial says why; a missing admin role does not.
        properties["reasons"] = json!({
            "type": "array",
            "items": { "type": "string" },
            "description": "The determining policy ids, as in `decision.reasons` (empty for a default deny)."
        });
        properties["explanation"] = json!({
            "type": "array",
            "items": { "type": "string" },
            "description": "The same in words: ``policy `<id>`: <its @reason>`` for each determining policy, or `no policy permits this (default deny)`, and any evaluation errors."
        });
        properties["decision"] = json!({ "$ref": "#/components/schemas/PolicyDecision" });
    }
    if codes.contains(&ErrorCode::InvalidPlugin) {
        properties["reason"] = json!({
            "type": "string",
            "description": "`invalid_plugin`: the stable reason, as `error_code` of `GET /v1/plugins`."
        });
    }
    if codes.contains(&ErrorCode::QuotaExceeded) {
        properties["used_bytes"] = json!({ "type": "integer", "description": "`quota_exceeded`: bytes the workspace uses now." });
        properties["quota_bytes"] = json!({ "type": "integer", "description": "`quota_exceeded`: the session's disk quota." });
    }
    let mut response = json!({
        "description": description,
        "content": {
            "application/problem+json": {
                "schema": {
                    "allOf": [
                        { "$ref": "#/components/schemas/Problem" },
                        { "type": "object", "properties": properties }
                    ]
                }
            }
        }
    });
    if status == 429 {
        response["headers"] = json!({
            "Retry-After": {
                "description": "Seconds to wait before trying again.",
                "schema": { "type": "integer", "minimum": 1 }
            }
        });
    }
    if status == 401 {
        response["headers"] = json!({
            "WWW-Authenticate": { "schema": { "type": "string", "const": "Bearer" } }
        });
    }
    response
}

/// Error markers for `#[utoipa::path(responses(...))]`: each names the shared response of its
/// status (every code sent with it).
pub mod errors {
    use std::collections::BTreeMap;
    use utoipa::openapi::RefOr;
    use utoipa::openapi::response::Response;

    macro_rules! markers {
        ($($name:ident = $status:literal,)*) => {$(
            #[doc = concat!("The problem answered with status ", $status, ".")]
            pub struct $name;

            impl utoipa::IntoResponses for $name {
                fn responses() -> BTreeMap<String, RefOr<Response>> {
                    BTreeMap::from([($status.to_string(), super::error_ref($status))])
                }
            }
        )*};
    }

    markers! {
        BadRequest = 400,
        Unauthorized = 401,
        Forbidden = 403,
        NotFound = 404,
        MethodNotAllowed = 405,
        RequestTimeout = 408,
        Conflict = 409,
        PayloadTooLarge = 413,
        UnsupportedMediaType = 415,
        UnprocessableEntity = 422,
        TooManyRequests = 429,
        InternalServerError = 500,
        ServiceUnavailable = 503,
        InsufficientStorage = 507,
    }
}
