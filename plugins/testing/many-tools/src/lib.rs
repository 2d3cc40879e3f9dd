//! `many_tools`: a hostile plugin whose `describe` returns 400,000 tools, far more than the
//! host accepts. Loading it must be refused quickly, naming the bound, while the host keeps
//! serving everything else. Never install it for agents.

// The world re-exports `ToolInfo` and `ToolError` at the crate root.
wit_bindgen::generate!({ path: "../../../wit", world: "tool" });

/// Tools described: far past the host's bound, and the size that once took minutes to load.
const TOOLS: u32 = 400_000;

struct ManyTools;

impl Guest for ManyTools {
    fn describe() -> Vec<ToolInfo> {
        (0..TOOLS)
            .map(|i| ToolInfo {
                name: format!("t{i}"),
                description: String::new(),
                input_schema: "{}".into(),
            })
            .collect()
    }

    fn call(name: String, _input: String) -> Result<String, ToolError> {
        Err(ToolError::UnknownTool(name))
    }
}

export!(ManyTools);
