//! `probe`: the readiness check's event self-test. `probe.write` logs, reports progress and
//! writes `probe.txt` in the workspace; `probe.fail` fails on purpose. Run in a throwaway
//! session, they show that a host emits start, tool call, file change, completion and
//! failure events.

use serde_json::json;
use toolgate::plugin::host::{self, LogLevel};
use toolgate_plugin_sdk::{Tool, ToolResult, object_schema, output};

wit_bindgen::generate!({ path: "../../../wit", world: "tool" });

fn write(_input: &str) -> ToolResult {
    host::log(LogLevel::Info, "probe: the tool was called");
    host::progress(1, Some(2), Some("writing probe.txt"));
    // Relative to the task's working directory (the workspace), as every tool resolves paths.
    let path = toolgate_plugin_sdk::paths::resolve("probe.txt")?;
    std::fs::write(&path, "toolgate event self-test\n").map_err(|e| {
        toolgate_plugin_sdk::ToolError::Failed(format!("cannot write probe.txt: {e}"))
    })?;
    host::progress(2, Some(2), None);
    output(&json!({ "wrote": "probe.txt" }))
}

fn fail(_input: &str) -> ToolResult {
    Err(toolgate_plugin_sdk::ToolError::Failed(
        "the probe fails on purpose".into(),
    ))
}

const TOOLS: &[Tool] = &[
    Tool {
        name: "write",
        description: "Logs, reports progress and writes probe.txt in the workspace (toolgate's event self-test).",
        schema: || object_schema(json!({}), &[]),
        run: write,
    },
    Tool {
        name: "fail",
        description: "Fails on purpose (toolgate's event self-test).",
        schema: || object_schema(json!({}), &[]),
        run: fail,
    },
];

toolgate_plugin_sdk::export_tools!(Probe, TOOLS);
