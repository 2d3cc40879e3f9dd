//! The OpenAI chat-completions wire format (`POST {base_url}/chat/completions`), which most
//! providers and local servers also speak.

use super::names::ToolNames;
use crate::agents::model::{
    Completion, CompletionRequest, FinishReason, ModelError, Role, ToolCall, Usage,
};
use serde_json::{Value, json};

pub const PATH: &str = "/chat/completions";

/// The request body.
pub fn request_body(request: &CompletionRequest, names: &ToolNames) -> Value {
    let messages: Vec<Value> = request
        .messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::Tool => "tool",
            };
            let mut message = json!({ "role": role, "content": m.content });
            if !m.tool_calls.is_empty() {
                message["tool_calls"] = m
                    .tool_calls
                    .iter()
                    .map(|c| {
                        json!({ "id": c.id, "type": "function",
                                "function": { "name": names.wire(&c.name), "arguments": c.arguments } })
                    })
                    .collect();
                if m.content.is_empty() {
                    message["content"] = Value::Null;
                }
            }
            if let Some(id) = &m.tool_call_id {
                message["tool_call_id"] = id.clone().into();
            }
            message
        })
        .collect();
    let mut body = json!({ "model": request.model, "messages": messages });
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| {
                let parameters: Value =
                    serde_json::from_str(&t.input_schema).unwrap_or_else(|_| json!({"type": "object"}));
                json!({ "type": "function", "function": {
                    "name": names.wire(&t.name), "description": t.description, "parameters": parameters } })
            })
            .collect();
    }
    if let Some(max) = request.max_tokens {
        body["max_tokens"] = max.into();
    }
    if let Some(t) = request.sampling.temperature {
        body["temperature"] = t.into();
    }
    if let Some(p) = request.sampling.top_p {
        body["top_p"] = p.into();
    }
    if !request.sampling.stop.is_empty() {
        body["stop"] = request.sampling.stop.clone().into();
    }
    body
}

/// The answer, read from the response body.
pub fn completion(
    body: &Value,
    names: &ToolNames,
    request_bytes: usize,
) -> Result<Completion, ModelError> {
    let choice = body["choices"]
        .get(0)
        .ok_or_else(|| ModelError::Provider("the answer has no choices".into()))?;
    let message = &choice["message"];
    if !message.is_object() {
        return Err(ModelError::Provider(
            "the answer's choice has no message".into(),
        ));
    }
    let content = match &message["content"] {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        // Some servers answer content parts.
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => {
            return Err(ModelError::Provider(
                "the message content is not text".into(),
            ));
        }
    };
    let mut tool_calls = Vec::new();
    if let Some(calls) = message["tool_calls"].as_array() {
        for call in calls {
            let function = &call["function"];
            let name = function["name"]
                .as_str()
                .ok_or_else(|| ModelError::Provider("a tool call has no name".into()))?;
            let arguments = match &function["arguments"] {
                Value::String(text) => text.clone(),
                Value::Null => "{}".into(),
                other => other.to_string(),
            };
            tool_calls.push(ToolCall {
                id: call["id"].as_str().unwrap_or_default().to_owned(),
                name: names.real(name),
                arguments,
            });
        }
    }
    let finish_reason = match choice["finish_reason"].as_str() {
        Some("stop") => FinishReason::Stop,
        Some("tool_calls") | Some("function_call") => FinishReason::ToolCalls,
        Some("length") => FinishReason::Length,
        _ if !tool_calls.is_empty() => FinishReason::ToolCalls,
        None => FinishReason::Stop,
        Some(_) => FinishReason::Other,
    };
    let usage = Usage {
        prompt_tokens: super::tokens(&body["usage"]["prompt_tokens"], request_bytes),
        completion_tokens: super::tokens(
            &body["usage"]["completion_tokens"],
            super::answer_bytes(&content, &tool_calls),
        ),
        cost: body["usage"]["cost"]
            .as_f64()
            .filter(|c| c.is_finite() && *c >= 0.0),
    };
    Ok(Completion {
        content,
        tool_calls,
        finish_reason,
        usage,
        model: body["model"].as_str().unwrap_or_default().to_owned(),
    })
}
