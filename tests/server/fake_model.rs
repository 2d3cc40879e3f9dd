//! A model provider on loopback that speaks the OpenAI chat-completions or the Anthropic
//! Messages wire format, answering from a script, turn by turn, and keeping what it received.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use toolgate::agents::{ProviderConfig, ProviderKind};

pub const KEY: &str = "sk-fake-6c1f0e9a7b2d48e3a5c4";

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Turn {
    Answer(u16, String),
    /// Never answers (until the connection is dropped or 60 s pass).
    Hang,
}

impl Turn {
    pub fn json(body: Value) -> Self {
        Turn::Answer(200, body.to_string())
    }
}

/// A request the fake received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Default)]
struct Script {
    turns: Mutex<VecDeque<Turn>>,
    seen: Mutex<Vec<Seen>>,
}

pub struct FakeModel {
    pub kind: ProviderKind,
    pub base_url: String,
    script: Arc<Script>,
}

async fn reply(
    State(script): State<Arc<Script>>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let body = serde_json::from_str(&body).unwrap_or(Value::Null);
    script.seen.lock().unwrap().push(Seen { headers, body });
    let next = script.turns.lock().unwrap().pop_front();
    match next {
        None => (StatusCode::INTERNAL_SERVER_ERROR, "the script has ended").into_response(),
        Some(Turn::Hang) => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            StatusCode::OK.into_response()
        }
        Some(Turn::Answer(status, body)) => (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/json")],
            body,
        )
            .into_response(),
    }
}

impl FakeModel {
    pub async fn start(kind: ProviderKind, turns: Vec<Turn>) -> Self {
        let script = Arc::new(Script {
            turns: Mutex::new(turns.into()),
            ..Script::default()
        });
        let path = match kind {
            ProviderKind::Openai => "/v1/chat/completions",
            ProviderKind::Anthropic => "/v1/messages",
        };
        let app = axum::Router::new()
            .route(path, axum::routing::post(reply))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let base_url = match kind {
            ProviderKind::Openai => format!("http://{addr}/v1"),
            ProviderKind::Anthropic => format!("http://{addr}"),
        };
        Self {
            kind,
            base_url,
            script,
        }
    }

    /// The requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.script.seen.lock().unwrap().clone()
    }

    /// The `[[model_providers]]` table for it, named `name`, its key in secret `model_key`.
    pub fn provider(&self, name: &str, timeout_ms: u64, max_retries: u32) -> ProviderConfig {
        ProviderConfig {
            name: name.into(),
            kind: self.kind,
            base_url: self.base_url.clone(),
            models: vec!["fake-large".into(), "fake-small".into()],
            api_key_secret: Some("model_key".into()),
            timeout_ms: Some(timeout_ms),
            max_retries: Some(max_retries),
        }
    }
}

/// An answer asking for one tool call (`wire_name` as the model writes it).
pub fn tool_call(
    kind: ProviderKind,
    id: &str,
    wire_name: &str,
    arguments: Value,
    tokens: (u64, u64),
) -> Turn {
    Turn::json(match kind {
        ProviderKind::Openai => json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "fake-large",
            "choices": [{ "index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": null,
                "tool_calls": [{ "id": id, "type": "function", "function": {
                    "name": wire_name, "arguments": arguments.to_string() } }] } }],
            "usage": { "prompt_tokens": tokens.0, "completion_tokens": tokens.1,
                       "total_tokens": tokens.0 + tokens.1 },
        }),
        ProviderKind::Anthropic => json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "fake-large",
            "content": [{ "type": "tool_use", "id": id, "name": wire_name, "input": arguments }],
            "stop_reason": "tool_use",
            "usage": { "input_tokens": tokens.0, "output_tokens": tokens.1 },
        }),
    })
}

/// A final answer.
pub fn answer(kind: ProviderKind, text: &str, tokens: (u64, u64)) -> Turn {
    Turn::json(match kind {
        ProviderKind::Openai => json!({
            "id": "chatcmpl-2", "object": "chat.completion", "model": "fake-large",
            "choices": [{ "index": 0, "finish_reason": "stop",
                          "message": { "role": "assistant", "content": text } }],
            "usage": { "prompt_tokens": tokens.0, "completion_tokens": tokens.1,
                       "total_tokens": tokens.0 + tokens.1 },
        }),
        ProviderKind::Anthropic => json!({
            "id": "msg_2", "type": "message", "role": "assistant", "model": "fake-large",
            "content": [{ "type": "text", "text": text }],
            "stop_reason": "end_turn",
            "usage": { "input_tokens": tokens.0, "output_tokens": tokens.1 },
        }),
    })
}

/// A secrets file holding the fake's key as `model_key` (and `extra` secrets).
pub fn secrets_file(dir: &std::path::Path, extra: &[(&str, &str)]) -> std::path::PathBuf {
    let mut secrets = serde_json::Map::new();
    secrets.insert("model_key".into(), KEY.into());
    for (name, value) in extra {
        secrets.insert((*name).into(), (*value).into());
    }
    let path = dir.join("secrets.json");
    std::fs::write(&path, Value::Object(secrets).to_string()).unwrap();
    path
}
