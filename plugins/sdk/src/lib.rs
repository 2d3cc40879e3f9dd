//! Helpers shared by the toolgate tool plugins.
//!
//! The WIT bindings are generated in each plugin (they own the `tool-error`
//! type), so this crate has its own [`ToolError`] that each plugin converts
//! with a one-line `match`. Everything here is plain Rust plus the `wasi`
//! crate, so the pure parts are unit-testable on the build machine.

pub mod http;
pub mod io;
pub mod paths;
pub mod text;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

/// Why a tool call failed; mirrors the WIT `tool-error` variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolError {
    InvalidInput(String),
    UnknownTool(String),
    Denied(String),
    Failed(String),
}

pub type ToolResult = Result<String, ToolError>;

/// One tool of a plugin: what `describe` reports and what `call` runs.
pub struct Tool {
    pub name: &'static str,
    pub description: &'static str,
    /// Builds the input JSON Schema; a function so `call` never pays for it.
    pub schema: fn() -> Value,
    pub run: fn(&str) -> ToolResult,
}

/// Runs the tool called `name` from `tools`, or reports `unknown-tool`.
pub fn dispatch(tools: &[Tool], name: &str, input: &str) -> ToolResult {
    match tools.iter().find(|t| t.name == name) {
        Some(tool) => (tool.run)(input),
        // The payload is the name alone; the host words the message.
        None => Err(ToolError::UnknownTool(name.to_string())),
    }
}

/// Parses the tool input; serde's message (field, line, column) goes back to
/// the agent as `invalid-input` so it can fix its call.
pub fn parse_input<T: DeserializeOwned>(input: &str) -> Result<T, ToolError> {
    serde_json::from_str(input).map_err(|e| ToolError::InvalidInput(e.to_string()))
}

/// Serialises a tool result as JSON text.
pub fn output<T: Serialize>(value: &T) -> ToolResult {
    serde_json::to_string(value)
        .map_err(|e| ToolError::Failed(format!("cannot encode result: {e}")))
}

/// A draft 2020-12 schema for an input object. `properties` is a JSON object
/// of property schemas; unknown properties are rejected so typos surface.
pub fn object_schema(properties: Value, required: &[&str]) -> Value {
    let properties = match properties {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct In {
        path: String,
    }

    #[test]
    fn missing_field_is_invalid_input() {
        let err = parse_input::<In>("{}").unwrap_err();
        assert!(matches!(err, ToolError::InvalidInput(m) if m.contains("missing field `path`")));
    }

    #[test]
    fn schema_has_the_required_shape() {
        let s = object_schema(json!({"path": {"type": "string"}}), &["path"]);
        assert_eq!(s["type"], "object");
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["required"][0], "path");
    }
}

/// Implements the `tool` world for a plugin made of `tools`: `describe`
/// reports them, `call` dispatches to them, errors map onto the WIT
/// `tool-error`. Use it after `wit_bindgen::generate!` at the crate root:
///
/// ```ignore
/// wit_bindgen::generate!({ path: "../../../wit", world: "tool" });
/// toolgate_plugin_sdk::export_tools!(Fs, TOOLS);
/// ```
#[macro_export]
macro_rules! export_tools {
    ($plugin:ident, $tools:expr) => {
        struct $plugin;

        impl Guest for $plugin {
            fn describe() -> Vec<ToolInfo> {
                $tools
                    .iter()
                    .map(|t| ToolInfo {
                        name: t.name.into(),
                        description: t.description.into(),
                        input_schema: (t.schema)().to_string(),
                    })
                    .collect()
            }

            fn call(name: String, input: String) -> Result<String, ToolError> {
                $crate::dispatch($tools, &name, &input).map_err(|err| match err {
                    $crate::ToolError::InvalidInput(m) => ToolError::InvalidInput(m),
                    $crate::ToolError::UnknownTool(m) => ToolError::UnknownTool(m),
                    $crate::ToolError::Denied(m) => ToolError::Denied(m),
                    $crate::ToolError::Failed(m) => ToolError::Failed(m),
                })
            }
        }

        export!($plugin);
    };
}
