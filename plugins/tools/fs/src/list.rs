//! `list`: the entries of a directory, optionally recursive.

use crate::walk::{self, Flow};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::Path;
use toolgate_plugin_sdk::{self as sdk, Tool, ToolResult, paths};

const DEFAULT_MAX_ENTRIES: usize = 1000;

pub const TOOL: Tool = Tool {
    name: "list",
    description: "List a directory's entries (name order) with kind (file, dir, symlink) and size; \
                  recursive: true walks subdirectories without following symlinks.",
    schema,
    run,
};

fn schema() -> Value {
    sdk::object_schema(
        json!({
            "path": {"type": "string", "description": "Directory to list, absolute or relative to the working directory (default \".\")."},
            "recursive": {"type": "boolean", "description": "Also list everything below subdirectories (default false)."},
            "max_entries": {"type": "integer", "minimum": 0, "description": "Stop after this many entries and set truncated (default 1000)."}
        }),
        &[],
    )
}

fn dot() -> String {
    ".".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    #[serde(default = "dot")]
    path: String,
    #[serde(default)]
    recursive: bool,
    max_entries: Option<usize>,
}

fn run(input: &str) -> ToolResult {
    let input: Input = sdk::parse_input(input)?;
    let full = paths::resolve(&input.path)?;
    let max = input.max_entries.unwrap_or(DEFAULT_MAX_ENTRIES);

    let mut entries = Vec::new();
    let mut truncated = false;
    walk::walk(Path::new(&full), input.recursive, &mut |e| {
        if entries.len() >= max {
            truncated = true;
            return Flow::Stop;
        }
        entries.push(json!({
            "path": paths::display(&input.path, e.rel),
            "kind": e.kind.as_str(),
            "size": e.size,
        }));
        Flow::Continue
    })
    .map_err(|e| sdk::io::error(&input.path, &e))?;

    sdk::output(&json!({ "entries": entries, "truncated": truncated }))
}
