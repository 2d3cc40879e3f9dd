//! `tool-loop`: an agent that asks the model, runs the tools it asks for, gives it their
//! results, and repeats until the model answers without calling a tool (or steps run out).

mod input;

use serde_json::json;

use toolgate::plugin::agent_events::emit_message;
use toolgate::plugin::host::{self, LogLevel};
use toolgate::plugin::model::complete;
use toolgate::plugin::model_types::{
    CompletionRequest, Message, ModelError, Role, Sampling, ToolCall,
};
use toolgate::plugin::tools::{self, CallError};

// The world re-exports `RunOutput` and `RunError` at the crate root.
wit_bindgen::generate!({ path: "../../../wit", world: "agent" });

struct ToolLoop;

impl Guest for ToolLoop {
    fn run(input: String) -> Result<RunOutput, RunError> {
        let input = input::parse(&input).map_err(RunError::InvalidInput)?;
        // Asked once: the set a run may use does not change during it.
        let tools = tools::available();

        let mut messages = Vec::new();
        if let Some(system) = input.system {
            push(&mut messages, message(Role::System, system));
        }
        push(&mut messages, message(Role::User, input.prompt));

        let mut tool_calls = 0u64;
        for step in 1..=input.max_steps {
            host::progress(step, Some(input.max_steps), Some(&format!("step {step}")));
            let request = CompletionRequest {
                model: None,
                messages: messages.clone(),
                tools: tools.clone(),
                sampling: Sampling {
                    temperature: input.temperature,
                    top_p: None,
                    stop: Vec::new(),
                },
                max_tokens: input.max_tokens,
            };
            let completion = complete(&request).map_err(model_error)?;
            let calls = completion.tool_calls.clone();
            push(
                &mut messages,
                Message {
                    role: Role::Assistant,
                    content: completion.content.clone(),
                    tool_calls: completion.tool_calls,
                    tool_call_id: None,
                },
            );

            if calls.is_empty() {
                return Ok(RunOutput {
                    content: completion.content,
                    data: json!({ "steps": step, "tool_calls": tool_calls }).to_string(),
                });
            }
            for call in calls {
                tool_calls += 1;
                let content = call_tool(&call);
                push(
                    &mut messages,
                    Message {
                        role: Role::Tool,
                        content,
                        tool_calls: Vec::new(),
                        tool_call_id: Some(call.id),
                    },
                );
            }
        }
        Err(RunError::BudgetExhausted(format!(
            "no final answer within {} steps",
            input.max_steps
        )))
    }
}

/// Runs one tool call; a failure becomes the result the model sees, so it may recover.
fn call_tool(call: &ToolCall) -> String {
    host::log(LogLevel::Info, &format!("calling {}", call.name));
    match tools::call(&call.name, &call.arguments) {
        Ok(output) => output,
        Err(error) => {
            let (kind, message) = match error {
                CallError::Denied(m) => ("denied", m),
                CallError::UnknownTool(m) => ("unknown_tool", m),
                CallError::Failed(m) => ("failed", m),
            };
            json!({ "error": kind, "message": message }).to_string()
        }
    }
}

/// A limit is a budget the run spent; anything else ends the run as failed.
fn model_error(error: ModelError) -> RunError {
    let (kind, message) = match error {
        ModelError::LimitExceeded(m) => return RunError::BudgetExhausted(m),
        ModelError::Denied(m) => return RunError::Failed(format!("model call denied: {m}")),
        ModelError::UnknownModel(m) => ("unknown_model", m),
        ModelError::Timeout(m) => ("timeout", m),
        ModelError::Provider(m) => ("provider", m),
        ModelError::InvalidRequest(m) => ("invalid_request", m),
    };
    RunError::Failed(format!("model call failed: {kind}: {message}"))
}

fn message(role: Role, content: String) -> Message {
    Message {
        role,
        content,
        tool_calls: Vec::new(),
        tool_call_id: None,
    }
}

/// Adds a message to the conversation and makes it an event of the run.
fn push(messages: &mut Vec<Message>, message: Message) {
    emit_message(&message);
    messages.push(message);
}

export!(ToolLoop);
