//! `fs`: read, write, list, search and patch files in the directories the
//! task was granted. Paths are resolved by `toolgate_plugin_sdk::paths`
//! (relative to the host-given working directory, `..` resolved lexically,
//! checked against the preopens); the host enforces the real boundary.

mod glob;
mod list;
mod patch;
mod read;
mod search;
mod split;
mod walk;
mod write;

use toolgate_plugin_sdk::{self as sdk, Tool};

// The world re-exports `ToolInfo` and `ToolError` at the crate root.
wit_bindgen::generate!({ path: "../../../wit", world: "tool" });

const TOOLS: &[Tool] = &[
    read::TOOL,
    write::TOOL,
    list::TOOL,
    search::TOOL,
    patch::TOOL,
];

struct Fs;

impl Guest for Fs {
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

export!(Fs);
