//! Tools that make many small records, each an event of the session: the host must charge
//! every one of them to the task's output budget, however little it carries.

use crate::toolgate::plugin::host::{self, LogLevel};
use serde::Deserialize;
use serde_json::json;
use toolgate_plugin_sdk::{self as sdk, Tool, ToolResult, http};

fn count_schema(extra: serde_json::Value) -> serde_json::Value {
    let mut properties = json!({
        "count": {"type": "integer", "minimum": 0, "description": "How many (default 1000000)."}
    });
    if let (Some(all), Some(more)) = (properties.as_object_mut(), extra.as_object()) {
        all.extend(more.clone());
    }
    sdk::object_schema(properties, &[])
}

#[derive(Deserialize)]
#[serde(default)]
struct FloodInput {
    count: u64,
    message_bytes: usize,
    url: String,
}

impl Default for FloodInput {
    fn default() -> Self {
        Self {
            count: 1_000_000,
            message_bytes: 0,
            url: "http://flood.invalid/".into(),
        }
    }
}

pub const LOG_EMPTY: Tool = Tool {
    name: "log_empty",
    description: "Logs `count` empty records, then returns {\"logged\": count}.",
    schema: || count_schema(json!({})),
    run: |input| {
        let input: FloodInput = sdk::parse_input(input)?;
        for _ in 0..input.count {
            host::log(LogLevel::Info, "");
        }
        sdk::output(&json!({ "logged": input.count }))
    },
};

pub const PROGRESS_FLOOD: Tool = Tool {
    name: "progress_flood",
    description: "Reports progress `count` times, each with a message of `message_bytes` bytes, then returns {\"reported\": count}.",
    schema: || {
        count_schema(json!({
            "message_bytes": {"type": "integer", "minimum": 0, "description": "Size of each message (default 0: none)."}
        }))
    },
    run: |input| {
        let input: FloodInput = sdk::parse_input(input)?;
        let message = (input.message_bytes > 0).then(|| "p".repeat(input.message_bytes));
        for done in 1..=input.count {
            host::progress(done, Some(input.count), message.as_deref());
        }
        sdk::output(&json!({ "reported": input.count }))
    },
};

pub const FETCH_FLOOD: Tool = Tool {
    name: "fetch_flood",
    description: "Sends `count` GET requests to `url`, ignoring every refusal and error, then returns {\"sent\": count} \
                  (each request is a capability decision).",
    schema: || {
        count_schema(json!({
            "url": {"type": "string", "description": "URL to GET (default http://flood.invalid/)."}
        }))
    },
    run: fetch_flood,
};

fn fetch_flood(input: &str) -> ToolResult {
    let input: FloodInput = sdk::parse_input(input)?;
    for _ in 0..input.count {
        let _ = http::send(&http::Request {
            url: &input.url,
            method: "GET",
            headers: &[],
            body: None,
            max_bytes: 0,
            timeout_ms: None,
        });
    }
    sdk::output(&json!({ "sent": input.count }))
}
