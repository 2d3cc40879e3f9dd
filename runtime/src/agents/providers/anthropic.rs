//! The Anthropic Messages wire format (`POST {base_url}/v1/messages`).

use super::names::ToolNames;
use crate::agents::model::{
    Completion, CompletionRequest, FinishReason, ModelError, Role, ToolCall, Usage,
};
use serde_json::{Value, json};

pub const PATH: &str = "/v1/messages";
/// The API version sent in `anthropic-version`.
pub const VERSION: &str = "2023-06-01";
/// The Messages API needs `max_tokens`; this is it when the request leaves it out.
const DEFAULT_MAX_TOKENS: u32 = 4096;

/// The request body. System messages become `system`; tool results become `tool_result`
/// blocks of a user turn; consecutive turns of one role are merged (the API alternates).
pub fn request_body(request: &CompletionRequest, names: &ToolNames) -> Result<Value, ModelError> {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in &request.messages {
        let (role, blocks) = match m.role {
            Role::System => {
                system.push(m.content.clone());
                continue;
            }
            Role::User => ("user", vec![json!({ "type": "text", "text": m.content })]),
            Role::Assistant => {
                let mut blocks = Vec::new();
                if !m.content.is_empty() {
                    blocks.push(json!({ "type": "text", "text": m.content }));
                }
                for call in &m.tool_calls {
                    let input: Value = serde_json::from_str(&call.arguments).map_err(|e| {
                        ModelError::InvalidRequest(format!(
                            "the arguments of tool call `{}` are not JSON: {e}",
                            call.id
                        ))
                    })?;
                    blocks.push(json!({ "type": "tool_use", "id": call.id,
                                        "name": names.wire(&call.name), "input": input }));
                }
                ("assistant", blocks)
            }
            Role::Tool => {
                let id = m.tool_call_id.as_ref().ok_or_else(|| {
                    ModelError::InvalidRequest("a tool message needs the call's id".into())
                })?;
                (
                    "user",
                    vec![json!({ "type": "tool_result", "tool_use_id": id, "content": m.content })],
                )
            }
        };
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, content)| json!({ "role": role, "content": content }))
        .collect();
    let mut body = json!({
        "model": request.model,
        "max_tokens": request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        "messages": messages,
    });
    if !system.is_empty() {
        body["system"] = system.join("\n\n").into();
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| {
                let schema: Value = serde_json::from_str(&t.input_schema)
                    .unwrap_or_else(|_| json!({"type": "object"}));
                json!({ "name": names.wire(&t.name), "description": t.description, "input_schema": schema })
            })
            .collect();
    }
    if let Some(t) = request.sampling.temperature {
        body["temperature"] = t.into();
    }
    if let Some(p) = request.sampling.top_p {
        body["top_p"] = p.into();
    }
    if !request.sampling.stop.is_empty() {
        body["stop_sequences"] = request.sampling.stop.clone().into();
    }
    Ok(body)
}

/// The answer, read from the response body.
pub fn completion(
    body: &Value,
    names: &ToolNames,
    request_bytes: usize,
) -> Result<Completion, ModelError> {
    let blocks = body["content"]
        .as_array()
        .ok_or_else(|| ModelError::Provider("the answer has no content".into()))?;
    let mut content = String::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block["type"].as_str() {
            Some("text") => content.push_str(block["text"].as_str().unwrap_or_default()),
            Some("tool_use") => tool_calls.push(ToolCall {
                id: block["id"].as_str().unwrap_or_default().to_owned(),
                name: names.real(
                    block["name"]
                        .as_str()
                        .ok_or_else(|| ModelError::Provider("a tool call has no name".into()))?,
                ),
                arguments: block["input"].to_string(),
            }),
            _ => {}
        }
    }
    let finish_reason = match body["stop_reason"].as_str() {
        Some("end_turn") | Some("stop_sequence") => FinishReason::Stop,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("max_tokens") => FinishReason::Length,
        _ if !tool_calls.is_empty() => FinishReason::ToolCalls,
        _ => FinishReason::Other,
    };
    let usage = Usage {
        prompt_tokens: super::tokens(&body["usage"]["input_tokens"], request_bytes),
        completion_tokens: super::tokens(
            &body["usage"]["output_tokens"],
            super::answer_bytes(&content, &tool_calls),
        ),
        cost: None,
    };
    Ok(Completion {
        content,
        tool_calls,
        finish_reason,
        usage,
        model: body["model"].as_str().unwrap_or_default().to_owned(),
    })
}
