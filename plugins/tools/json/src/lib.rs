//! `json`: query a JSON document with JSONPath (RFC 9535).

mod query;

use toolgate_plugin_sdk::{self as sdk, Tool};

// The world re-exports `ToolInfo` and `ToolError` at the crate root.
wit_bindgen::generate!({ path: "../../../wit", world: "tool" });

const TOOLS: &[Tool] = &[query::TOOL];

struct Json;

impl Guest for Json {
    fn describe() -> Vec<ToolInfo> {
        TOOLS
            .iter()
            .map(|t| ToolInfo {
                name: t.name.into(),
                description: t.description.into(),
                input_schema: (t.schema)().to_string(),
            })
            .collect()
    }

    fn call(name: String, input: String) -> Result<String, ToolError> {
        sdk::dispatch(TOOLS, &name, &input).map_err(to_wit)
    }
}

fn to_wit(err: sdk::ToolError) -> ToolError {
    match err {
        sdk::ToolError::InvalidInput(m) => ToolError::InvalidInput(m),
        sdk::ToolError::UnknownTool(m) => ToolError::UnknownTool(m),
        sdk::ToolError::Denied(m) => ToolError::Denied(m),
        sdk::ToolError::Failed(m) => ToolError::Failed(m),
    }
}

export!(Json);
