//! `fetch`: one HTTP request, the response body read up to a limit.

use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use toolgate_plugin_sdk::{self as sdk, Tool, ToolResult, http, text};

const DEFAULT_MAX_BYTES: u64 = 1 << 20;
/// Larger limits are capped: the body has to fit the task's output budget.
const HARD_MAX_BYTES: u64 = 16 << 20;

pub const TOOL: Tool = Tool {
    name: "fetch",
    description: "Make an HTTP(S) request and return the status, headers and body (UTF-8 text, or \
                  base64 with \"encoding\": \"base64\"). Only destinations the task was granted are \
                  reachable.",
    schema,
    run,
};

fn schema() -> Value {
    sdk::object_schema(
        json!({
            "url": {"type": "string", "description": "Absolute http:// or https:// URL."},
            "method": {"type": "string", "description": "HTTP method (default GET)."},
            "headers": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "Request headers, name to value."
            },
            "body": {"type": "string", "description": "Request body (UTF-8 text)."},
            "max_bytes": {"type": "integer", "minimum": 0, "description": "Read at most this many body bytes and set truncated (default 1048576, capped at 16777216)."},
            "timeout_ms": {"type": "integer", "minimum": 1, "description": "Give up after this many milliseconds."}
        }),
        &["url"],
    )
}

fn get() -> String {
    "GET".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    url: String,
    #[serde(default = "get")]
    method: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    max_bytes: Option<u64>,
    timeout_ms: Option<u64>,
}

fn run(input: &str) -> ToolResult {
    let input: Input = sdk::parse_input(input)?;
    let headers: Vec<(String, String)> = input.headers.into_iter().collect();
    let max_bytes = input
        .max_bytes
        .unwrap_or(DEFAULT_MAX_BYTES)
        .min(HARD_MAX_BYTES) as usize;
    let response = http::send(&http::Request {
        url: &input.url,
        method: &input.method,
        headers: &headers,
        body: input.body.as_deref().map(str::as_bytes),
        max_bytes,
        timeout_ms: input.timeout_ms,
    })?;

    let body = text::encode(response.body, response.truncated);
    let mut out = json!({
        "status": response.status,
        "headers": response.headers,
        "body": body.text,
        "truncated": response.truncated,
    });
    if let Some(encoding) = body.encoding {
        out["encoding"] = encoding.into();
    }
    sdk::output(&out)
}
