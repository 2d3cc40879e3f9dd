//! Errors as `application/problem+json` (RFC 9457) with a stable `code`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Declares [`ErrorCode`]: each code once, with the statuses it is sent with.
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $code:literal: $($status:literal)|+;)*) => {
        /// Every `code` the API can send. Clients match on it; the README's error table lists
        /// each one (a test checks), and the OpenAPI document's error responses come from here.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
        pub enum ErrorCode {
            $($(#[doc = $doc])* #[serde(rename = $code)] $variant,)*
        }

        impl ErrorCode {
            pub const ALL: &[ErrorCode] = &[$(Self::$variant),*];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)*
                }
            }

            /// What it means, in a sentence.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(Self::$variant => concat!($($doc),*).trim(),)*
                }
            }

            /// The HTTP statuses this code comes with.
            pub const fn statuses(self) -> &'static [u16] {
                match self {
                    $(Self::$variant => &[$($status),+],)*
                }
            }
        }
    };
}

error_codes! {
    /// A malformed request: bad JSON, an unknown field, a bad path or query.
    InvalidRequest = "invalid_request": 400 | 422;
    /// No key, or an unknown one.
    Unauthorized = "unauthorized": 401;
    /// The policy (or the key's role) does not allow it.
    Forbidden = "forbidden": 403;
    /// No such session, task or route.
    NotFound = "not_found": 404;
    /// The route does not take that method.
    MethodNotAllowed = "method_not_allowed": 405;
    /// The request took longer than `request_timeout_s`.
    RequestTimeout = "request_timeout": 408;
    /// The resource is in the wrong state.
    Conflict = "conflict": 409;
    /// The body is larger than the server accepts.
    PayloadTooLarge = "payload_too_large": 413;
    /// The body's `Content-Type` is not the one the route takes.
    UnsupportedMediaType = "unsupported_media_type": 415;
    /// An uploaded plugin is not a usable tool component.
    InvalidPlugin = "invalid_plugin": 422;
    /// A task or session names a tool no plugin provides.
    UnknownTool = "unknown_tool": 422;
    /// A run names an agent the server does not have.
    UnknownAgent = "unknown_agent": 422;
    /// A run names a model provider or a model the operator did not configure.
    UnknownModel = "unknown_model": 422;
    /// The session already has a run queued or running.
    RunActive = "run_active": 409;
    /// A listing's query parameter is unknown, repeated or has a bad value.
    InvalidQuery = "invalid_query": 422;
    /// A listing's `cursor` is not one it returned.
    InvalidCursor = "invalid_cursor": 422;
    /// A new key names a profile the policy entities lack.
    UnknownProfile = "unknown_profile": 422;
    /// A workspace path that is absolute, leaves with `..`, or goes through (or names) a symbolic link.
    InvalidPath = "invalid_path": 422;
    /// A tar that is not one, or holds an entry that may not be extracted.
    InvalidArchive = "invalid_archive": 422;
    /// An upload that does not fit the session's disk quota; nothing of it was written.
    QuotaExceeded = "quota_exceeded": 507;
    /// Only uploaded plugins can be deleted.
    PluginNotUploaded = "plugin_not_uploaded": 409;
    /// No earlier upload of the plugin is kept to roll back to.
    NoPreviousVersion = "no_previous_version": 409;
    /// Over the principal's rate or its requests in flight.
    RateLimited = "rate_limited": 429;
    /// A fault in the server.
    Internal = "internal": 500;
    /// Too many open sessions or event streams.
    Capacity = "capacity": 503;
    /// Starting or shutting down.
    NotReady = "not_ready": 503;
    /// No sidecar is ready to take a session, or none answers.
    SidecarUnavailable = "sidecar_unavailable": 503;
    /// The server cannot take the request now.
    Unavailable = "unavailable": 503;
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An API error. `code` is stable: clients match on it, never on `detail`.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub detail: String,
    pub extra: Option<Value>,
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> Self {
        debug_assert!(
            code.statuses().contains(&status.as_u16()),
            "`{code}` is not declared with status {status}"
        );
        Self {
            status,
            code,
            detail: detail.into(),
            extra: None,
            retry_after: None,
        }
    }

    /// Tells the client when to try again (`Retry-After`, seconds).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn with(mut self, extra: Value) -> Self {
        self.extra = Some(extra);
        self
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "a valid `Authorization: Bearer <key>` header is required",
        )
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no such {what}"),
        )
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidRequest,
            detail,
        )
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            detail,
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": format!("https://toolgate.dev/problems/{}", self.code),
            "title": self.status.canonical_reason().unwrap_or("error"),
            "status": self.status.as_u16(),
            "code": self.code.as_str(),
            "detail": self.detail,
        });
        if let (Some(Value::Object(extra)), Value::Object(map)) = (self.extra, &mut body) {
            map.extend(extra);
        }
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Errors produced by layers and extractors outside the routes (a request
/// timeout, a malformed query) become problems too, so every error a client
/// sees has the same shape.
pub async fn plain_errors_as_problems(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let code = match status {
        StatusCode::REQUEST_TIMEOUT => ErrorCode::RequestTimeout,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
        _ if status.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::InvalidRequest,
    };
    // Statuses no code is declared with are sent as the nearest declared one.
    let status = match code {
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::InvalidRequest if status != StatusCode::BAD_REQUEST => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        _ => status,
    };
    let detail = match status {
        StatusCode::REQUEST_TIMEOUT => "the request took longer than the server allows".to_owned(),
        _ => {
            let bytes = axum::body::to_bytes(response.into_body(), 4096)
                .await
                .unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        }
    };
    Problem::new(status, code, detail).into_response()
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;
    use std::collections::BTreeSet;

    /// `(status, code)` of each row of the README's error table.
    fn readme_table() -> Vec<(u16, String)> {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("| status | `code` | when |")
            .expect("the README has the error table");
        readme[start..]
            .lines()
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .flat_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let status: u16 = cells[1].parse().expect("a status in the first column");
                cells[2]
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(|code| (status, code.to_owned()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn every_code_is_in_the_readme_error_table_with_its_statuses() {
        let table: BTreeSet<(u16, String)> = readme_table().into_iter().collect();
        for code in ErrorCode::ALL {
            for status in code.statuses() {
                assert!(
                    table.contains(&(*status, code.as_str().to_owned())),
                    "the README's error table has no row `| {status} | `{code}` |`"
                );
            }
        }
    }

    #[test]
    fn every_code_in_the_readme_error_table_exists() {
        for (status, code) in readme_table() {
            let known = ErrorCode::ALL
                .iter()
                .find(|c| c.as_str() == code)
                .unwrap_or_else(|| {
                    panic!("the README lists `{code}`, which the server never sends")
                });
            assert!(
                known.statuses().contains(&status),
                "the README lists `{code}` with {status}, which it is never sent with"
            );
        }
    }

    #[test]
    fn a_code_is_serialized_as_its_name() {
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }
}
