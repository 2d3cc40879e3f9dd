//! toolgate's tools as MCP tool definitions.

use crate::orchestrator::ToolDescription;
use rmcp::model::{JsonObject, Tool};
use std::sync::Arc;

/// The MCP definition of a tool: its qualified name, description and input schema (a tool
/// whose schema is not an object gets the empty object schema, which MCP requires at least).
pub fn definition(tool: &ToolDescription) -> Tool {
    let schema: JsonObject = match &tool.input_schema {
        serde_json::Value::Object(map) => map.clone(),
        _ => {
            let mut map = JsonObject::new();
            map.insert("type".into(), "object".into());
            map
        }
    };
    Tool::new(
        tool.name.clone(),
        tool.description.clone(),
        Arc::new(schema),
    )
}
