//! `json`: query a JSON document with JSONPath (RFC 9535).

mod query;

use toolgate_plugin_sdk::Tool;

// The world re-exports `ToolInfo` and `ToolError` at the crate root.
wit_bindgen::generate!({ path: "../../../wit", world: "tool" });

const TOOLS: &[Tool] = &[query::TOOL];

toolgate_plugin_sdk::export_tools!(Json, TOOLS);
