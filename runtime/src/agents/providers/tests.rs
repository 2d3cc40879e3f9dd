//! The provider client against fake providers on loopback that speak each wire format,
//! scripted answer by answer.

use super::*;
use crate::agents::model::{FinishReason, Message, Role, Sampling, ToolCall, ToolSpec};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::json;
use std::sync::{Arc, Mutex};

const KEY: &str = "sk-test-0123456789";

/// A scripted answer: a status and a body, or a hang.
#[derive(Clone)]
enum Scripted {
    Answer(u16, String),
    Hang,
}

#[derive(Default)]
struct Fake {
    script: Mutex<Vec<Scripted>>,
    /// What was received: headers and bodies.
    seen: Mutex<Vec<(HeaderMap, Value)>>,
}

async fn answer(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    fake.seen.lock().unwrap().push((headers, body));
    let next = {
        let mut script = fake.script.lock().unwrap();
        if script.is_empty() {
            Scripted::Answer(500, "{}".into())
        } else {
            script.remove(0)
        }
    };
    match next {
        Scripted::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK.into_response()
        }
        Scripted::Answer(status, body) => (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/json")],
            body,
        )
            .into_response(),
    }
}

/// A fake provider; its base URL.
async fn fake_provider(kind: ProviderKind, script: Vec<Scripted>) -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake {
        script: Mutex::new(script),
        ..Fake::default()
    });
    let path = match kind {
        ProviderKind::Openai => "/v1/chat/completions",
        ProviderKind::Anthropic => "/v1/messages",
    };
    let app = axum::Router::new()
        .route(path, axum::routing::post(answer))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let base = match kind {
        ProviderKind::Openai => format!("http://{addr}/v1"),
        ProviderKind::Anthropic => format!("http://{addr}"),
    };
    (base, fake)
}

fn providers(kind: ProviderKind, base: &str, timeout_ms: u64) -> Providers {
    let mut secrets = crate::secrets::SecretStore::default();
    secrets.insert("provider_key", Secret::new(KEY));
    Providers::new(
        &[ProviderConfig {
            name: "p".into(),
            kind,
            base_url: base.into(),
            models: vec!["m1".into()],
            api_key_secret: Some("provider_key".into()),
            timeout_ms: Some(timeout_ms),
            max_retries: Some(2),
        }],
        &secrets,
    )
    .unwrap()
}

fn request() -> CompletionRequest {
    CompletionRequest {
        model: "m1".into(),
        messages: vec![
            Message::new(Role::System, "be brief"),
            Message::new(Role::User, "write a note"),
            Message {
                role: Role::Assistant,
                content: String::new(),
                tool_calls: vec![ToolCall {
                    id: "c1".into(),
                    name: "fs.write".into(),
                    arguments: r#"{"path":"n.txt","content":"hi"}"#.into(),
                }],
                tool_call_id: None,
            },
            Message {
                role: Role::Tool,
                content: r#"{"bytes_written":2}"#.into(),
                tool_calls: vec![],
                tool_call_id: Some("c1".into()),
            },
        ],
        tools: vec![
            ToolSpec {
                name: "fs.read".into(),
                description: "Read".into(),
                input_schema: r#"{"type":"object"}"#.into(),
            },
            ToolSpec {
                name: "fs.write".into(),
                description: "Write".into(),
                input_schema: r#"{"type":"object"}"#.into(),
            },
        ],
        sampling: Sampling {
            temperature: Some(0.0),
            top_p: None,
            stop: vec![],
        },
        max_tokens: Some(100),
    }
}

#[tokio::test]
async fn openai_requests_and_answers_map_both_ways_with_the_key_added_by_the_host() {
    let answer = json!({"model": "m1-2026", "choices": [{"finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": null,
        "tool_calls": [{"id": "c2", "type": "function", "function": {"name": "fs_read", "arguments": "{\"path\":\"n.txt\"}"}}]}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5}});
    let (base, fake) = fake_provider(
        ProviderKind::Openai,
        vec![Scripted::Answer(200, answer.to_string())],
    )
    .await;
    let completion = providers(ProviderKind::Openai, &base, 5000)
        .complete("p", &request())
        .await
        .unwrap();
    assert_eq!(completion.finish_reason, FinishReason::ToolCalls);
    assert_eq!(completion.tool_calls[0].name, "fs.read");
    assert_eq!(completion.tool_calls[0].arguments, r#"{"path":"n.txt"}"#);
    assert_eq!(
        (
            completion.usage.prompt_tokens,
            completion.usage.completion_tokens
        ),
        (12, 5)
    );
    let seen = fake.seen.lock().unwrap();
    let (headers, body) = &seen[0];
    assert_eq!(headers["authorization"], format!("Bearer {KEY}"));
    assert_eq!(body["model"], "m1");
    assert_eq!(body["max_tokens"], 100);
    assert_eq!(body["tools"][1]["function"]["name"], "fs_write");
    assert_eq!(
        body["messages"][2]["tool_calls"][0]["function"]["name"],
        "fs_write"
    );
    assert_eq!(body["messages"][3]["tool_call_id"], "c1");
    assert_eq!(body["messages"][3]["role"], "tool");
}

#[tokio::test]
async fn anthropic_requests_and_answers_map_both_ways_with_the_key_added_by_the_host() {
    let answer = json!({"model": "m1", "stop_reason": "end_turn",
        "content": [{"type": "text", "text": "done"}], "usage": {"input_tokens": 30, "output_tokens": 2}});
    let (base, fake) = fake_provider(
        ProviderKind::Anthropic,
        vec![Scripted::Answer(200, answer.to_string())],
    )
    .await;
    let completion = providers(ProviderKind::Anthropic, &base, 5000)
        .complete("p", &request())
        .await
        .unwrap();
    assert_eq!(completion.content, "done");
    assert_eq!(completion.finish_reason, FinishReason::Stop);
    assert_eq!(completion.usage.prompt_tokens, 30);
    let seen = fake.seen.lock().unwrap();
    let (headers, body) = &seen[0];
    assert_eq!(headers["x-api-key"], KEY);
    assert_eq!(headers["anthropic-version"], anthropic::VERSION);
    assert_eq!(body["system"], "be brief");
    // user, assistant (tool_use), user (tool_result): turns alternate.
    let roles: Vec<&str> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user"]);
    assert_eq!(body["messages"][1]["content"][0]["type"], "tool_use");
    assert_eq!(body["messages"][1]["content"][0]["name"], "fs_write");
    assert_eq!(body["messages"][1]["content"][0]["input"]["path"], "n.txt");
    assert_eq!(body["messages"][2]["content"][0]["tool_use_id"], "c1");
    assert_eq!(body["tools"][0]["input_schema"]["type"], "object");
}

#[tokio::test]
async fn a_500_then_a_200_is_retried_and_a_hang_is_a_timeout() {
    let ok = json!({"model": "m1", "choices": [{"finish_reason": "stop", "message": {"content": "hi"}}]});
    let (base, fake) = fake_provider(
        ProviderKind::Openai,
        vec![
            Scripted::Answer(500, r#"{"error": {"message": "overloaded"}}"#.into()),
            Scripted::Answer(429, "{}".into()),
            Scripted::Answer(200, ok.to_string()),
        ],
    )
    .await;
    let completion = providers(ProviderKind::Openai, &base, 5000)
        .complete("p", &request())
        .await
        .unwrap();
    assert_eq!(completion.content, "hi");
    assert_eq!(fake.seen.lock().unwrap().len(), 3);

    let (base, fake) = fake_provider(
        ProviderKind::Openai,
        vec![Scripted::Hang, Scripted::Hang, Scripted::Hang],
    )
    .await;
    let started = std::time::Instant::now();
    let error = providers(ProviderKind::Openai, &base, 300)
        .complete("p", &request())
        .await
        .unwrap_err();
    assert!(matches!(error, ModelError::Timeout(_)), "{error}");
    assert!(error.to_string().contains("after 3 attempts"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(fake.seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn garbage_refusals_and_unknown_models_are_typed_errors_without_the_key() {
    let (base, _) = fake_provider(
        ProviderKind::Openai,
        vec![Scripted::Answer(200, "<html>not json".into())],
    )
    .await;
    let error = providers(ProviderKind::Openai, &base, 5000)
        .complete("p", &request())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ModelError::Provider(ref m) if m.contains("not JSON")),
        "{error}"
    );

    let (base, _) = fake_provider(
        ProviderKind::Openai,
        vec![Scripted::Answer(200, r#"{"choices": []}"#.into())],
    )
    .await;
    let error = providers(ProviderKind::Openai, &base, 5000)
        .complete("p", &request())
        .await
        .unwrap_err();
    assert!(matches!(error, ModelError::Provider(_)), "{error}");

    // A refusal that echoes the key: not retried, the key taken out.
    let echo = json!({"error": {"message": format!("invalid key {KEY}")}});
    let (base, fake) = fake_provider(
        ProviderKind::Anthropic,
        vec![Scripted::Answer(401, echo.to_string())],
    )
    .await;
    let error = providers(ProviderKind::Anthropic, &base, 5000)
        .complete("p", &request())
        .await
        .unwrap_err();
    assert!(matches!(error, ModelError::Provider(_)), "{error}");
    assert!(!error.to_string().contains(KEY), "{error}");
    assert!(error.to_string().contains("[redacted]"), "{error}");
    assert_eq!(fake.seen.lock().unwrap().len(), 1);

    let providers = providers(ProviderKind::Openai, "http://127.0.0.1:9", 5000);
    let mut other = request();
    other.model = "m2".into();
    assert!(matches!(
        providers.complete("p", &other).await,
        Err(ModelError::UnknownModel(_))
    ));
    assert!(matches!(
        providers.complete("nope", &request()).await,
        Err(ModelError::UnknownModel(_))
    ));
}

/// A provider that hides the key: escaped in tool-call arguments, or at the end of a long
/// error text (cut to 500 characters).
#[tokio::test]
async fn the_key_is_taken_out_however_a_provider_hides_it() {
    let escaped: String = KEY
        .chars()
        .map(|c| format!("\\u{:04x}", c as u32))
        .collect();
    let arguments = format!(r#"{{"path": "k.txt", "content": "{escaped}", "{escaped}": 1}}"#);
    let answer = json!({
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function",
            "function": {"name": "fs_write", "arguments": arguments}}]}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
    });
    let (base, _) = fake_provider(
        ProviderKind::Openai,
        vec![Scripted::Answer(200, answer.to_string())],
    )
    .await;
    let completion = providers(ProviderKind::Openai, &base, 5000)
        .complete("p", &request())
        .await
        .unwrap();
    let arguments: Value = serde_json::from_str(&completion.tool_calls[0].arguments).unwrap();
    assert_eq!(arguments["content"], "[redacted]");
    assert!(!arguments.to_string().contains(KEY), "{arguments}");

    let padded = json!({"error": {"message": format!("{}{KEY}", "x".repeat(490))}});
    let (base, _) = fake_provider(
        ProviderKind::Openai,
        vec![Scripted::Answer(400, padded.to_string())],
    )
    .await;
    let error = providers(ProviderKind::Openai, &base, 5000)
        .complete("p", &request())
        .await
        .unwrap_err()
        .to_string();
    assert!(!error.contains(&KEY[..8]), "{error}");
}

/// Token counts a provider writes as strings or floats are read; missing or negative ones are
/// estimated from the sizes, never taken as 0 (token limits must not fail open).
#[tokio::test]
async fn odd_or_missing_usage_is_read_or_estimated_never_zero() {
    let answer = |usage: Value| {
        let body = json!({
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "x".repeat(300)}}],
            "usage": usage,
        });
        Scripted::Answer(200, body.to_string())
    };
    let (base, _) = fake_provider(
        ProviderKind::Openai,
        vec![
            answer(json!({"prompt_tokens": "1200", "completion_tokens": 7.2})),
            answer(json!({"prompt_tokens": -5})),
            answer(Value::Null),
        ],
    )
    .await;
    let providers = providers(ProviderKind::Openai, &base, 5000);
    let first = providers.complete("p", &request()).await.unwrap().usage;
    assert_eq!((first.prompt_tokens, first.completion_tokens), (1200, 8));
    for _ in 0..2 {
        let usage = providers.complete("p", &request()).await.unwrap().usage;
        assert!(usage.prompt_tokens > 100, "{usage:?}");
        assert_eq!(usage.completion_tokens, 100, "{usage:?}");
    }
}

#[test]
fn bad_tables_are_refused_with_their_reason() {
    let good = ProviderConfig {
        name: "openai".into(),
        kind: ProviderKind::Openai,
        base_url: "https://api.openai.com/v1".into(),
        models: vec!["gpt-4.1-mini".into()],
        api_key_secret: Some("openai_key".into()),
        timeout_ms: None,
        max_retries: None,
    };
    assert!(good.check().is_ok());
    for (bad, why) in [
        (
            ProviderConfig {
                name: "Open AI".into(),
                ..good.clone()
            },
            "name",
        ),
        (
            ProviderConfig {
                base_url: "ftp://x".into(),
                ..good.clone()
            },
            "base_url",
        ),
        (
            ProviderConfig {
                models: vec![],
                ..good.clone()
            },
            "models",
        ),
        (
            ProviderConfig {
                timeout_ms: Some(0),
                ..good.clone()
            },
            "timeout_ms",
        ),
    ] {
        let error = bad.check().unwrap_err();
        assert!(error.contains(why), "{error}");
    }
    let secrets = crate::secrets::SecretStore::default();
    let error = Providers::new(&[good], &secrets).err().unwrap();
    assert!(error.contains("no secret `openai_key`"), "{error}");
}
