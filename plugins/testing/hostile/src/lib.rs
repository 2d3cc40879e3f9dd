//! `hostile`: test-only tools that misbehave on purpose (run forever, eat
//! memory, overflow the stack, flood output, probe capabilities), so the
//! host's limits and sandbox can be tested against a real component. Never
//! install it for agents.

mod probe;
mod runaway;

use toolgate_plugin_sdk::{self as sdk, Tool};

// The world re-exports `ToolInfo` and `ToolError` at the crate root.
wit_bindgen::generate!({ path: "../../../wit", world: "tool" });

const TOOLS: &[Tool] = &[
    runaway::SPIN,
    runaway::ALLOC,
    runaway::RECURSE,
    runaway::FLOOD,
    runaway::FLOOD_LOG,
    runaway::BIG_OUTPUT,
    runaway::SLEEP,
    runaway::PROGRESS,
    probe::READ,
    probe::WRITE,
    probe::ENV,
    probe::SOCKET,
    probe::FETCH,
    probe::SECRET,
];

struct Hostile;

impl Guest for Hostile {
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

export!(Hostile);
