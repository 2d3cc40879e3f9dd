//! `agent-spy`: a test agent that gathers everything it can see (environment, arguments,
//! directories, tools, a model completion, a secret) and returns it as one JSON text, so a
//! test can check that the model provider's key never reaches an agent's memory.

use serde_json::{Map, Value, json};

use toolgate::plugin::agent_events::emit_message;
use toolgate::plugin::host::{self, SecretError};
use toolgate::plugin::model::complete;
use toolgate::plugin::model_types::{
    Completion, CompletionRequest, FinishReason, Message, ModelError, Role, Sampling, ToolCall,
};
use toolgate::plugin::tools;

// The world re-exports `RunOutput` and `RunError` at the crate root.
wit_bindgen::generate!({ path: "../../../wit", world: "agent" });

struct AgentSpy;

impl Guest for AgentSpy {
    fn run(input: String) -> Result<RunOutput, RunError> {
        let env: Vec<Value> = std::env::vars_os()
            .map(|(name, value)| {
                Value::String(format!(
                    "{}={}",
                    name.to_string_lossy(),
                    value.to_string_lossy()
                ))
            })
            .collect();
        let args: Vec<Value> = std::env::args_os()
            .map(|arg| Value::String(arg.to_string_lossy().into_owned()))
            .collect();
        let cwd = match std::env::current_dir() {
            Ok(dir) => json!({ "ok": dir.to_string_lossy() }),
            Err(error) => json!({ "error": error.to_string() }),
        };
        let root = list_dir("/");
        let dot = list_dir(".");

        let tools: Vec<Value> = tools::available()
            .into_iter()
            .map(|spec| {
                json!({
                    "name": spec.name,
                    "description": spec.description,
                    "input_schema": spec.input_schema,
                })
            })
            .collect();

        let request = CompletionRequest {
            model: None,
            messages: vec![Message {
                role: Role::User,
                content: prompt(&input),
                tool_calls: Vec::new(),
                tool_call_id: None,
            }],
            tools: Vec::new(),
            sampling: Sampling {
                temperature: None,
                top_p: None,
                stop: Vec::new(),
            },
            max_tokens: None,
        };
        let completion = match complete(&request) {
            Ok(completion) => json!({ "ok": completion_json(completion) }),
            Err(error) => {
                let (kind, message) = model_error(error);
                json!({ "error": kind, "message": message })
            }
        };

        let secret = match host::get_secret("model_key") {
            Ok(value) => json!({ "ok": value }),
            Err(SecretError::Denied(message)) => json!({ "error": "denied", "message": message }),
            Err(SecretError::NotFound) => json!({ "error": "not_found" }),
        };

        emit_message(&Message {
            role: Role::Assistant,
            content: "spied".to_string(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        });

        let mut report = Map::new();
        report.insert("env".to_string(), Value::Array(env));
        report.insert("args".to_string(), Value::Array(args));
        report.insert("cwd".to_string(), cwd);
        report.insert("root".to_string(), root);
        report.insert("dot".to_string(), dot);
        report.insert("tools".to_string(), Value::Array(tools));
        report.insert("completion".to_string(), completion);
        report.insert("secret".to_string(), secret);
        Ok(RunOutput {
            content: Value::Object(report).to_string(),
            data: "{}".to_string(),
        })
    }
}

/// The `prompt` of the input object, or "spy" when there is none.
fn prompt(input: &str) -> String {
    serde_json::from_str::<Value>(input)
        .ok()
        .and_then(|value| {
            value
                .get("prompt")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "spy".to_string())
}

/// The entries of a directory (`{"ok": [names]}`), or why it could not be read.
fn list_dir(path: &str) -> Value {
    match std::fs::read_dir(path) {
        Ok(entries) => {
            let entries: Vec<Value> = entries
                .map(|entry| match entry {
                    Ok(entry) => Value::String(entry.file_name().to_string_lossy().into_owned()),
                    Err(error) => json!({ "error": error.to_string() }),
                })
                .collect();
            json!({ "ok": entries })
        }
        Err(error) => json!({ "error": error.to_string() }),
    }
}

fn completion_json(completion: Completion) -> Value {
    let finish_reason = match completion.finish_reason {
        FinishReason::Stop => "stop",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::Length => "length",
        FinishReason::Other => "other",
    };
    json!({
        "content": completion.content,
        "tool_calls": completion.tool_calls.into_iter().map(tool_call_json).collect::<Vec<_>>(),
        "finish_reason": finish_reason,
        "usage": {
            "prompt_tokens": completion.usage.prompt_tokens,
            "completion_tokens": completion.usage.completion_tokens,
        },
        "model": completion.model,
    })
}

fn tool_call_json(call: ToolCall) -> Value {
    json!({ "id": call.id, "name": call.name, "arguments": call.arguments })
}

/// The variant name and text of a model error.
fn model_error(error: ModelError) -> (&'static str, String) {
    match error {
        ModelError::Denied(m) => ("denied", m),
        ModelError::LimitExceeded(m) => ("limit_exceeded", m),
        ModelError::UnknownModel(m) => ("unknown_model", m),
        ModelError::Timeout(m) => ("timeout", m),
        ModelError::Provider(m) => ("provider", m),
        ModelError::InvalidRequest(m) => ("invalid_request", m),
    }
}

export!(AgentSpy);
