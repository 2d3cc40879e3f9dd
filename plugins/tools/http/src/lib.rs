//! `http`: fetch a URL through the host's outbound HTTP (`wasi:http`), which
//! checks every request against the task's policy.

mod fetch;

use toolgate_plugin_sdk::Tool;

// The world re-exports `ToolInfo` and `ToolError` at the crate root.
wit_bindgen::generate!({ path: "../../../wit", world: "tool" });

const TOOLS: &[Tool] = &[fetch::TOOL];

toolgate_plugin_sdk::export_tools!(Http, TOOLS);
