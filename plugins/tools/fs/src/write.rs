//! `write`: create, replace or append to a file.

use serde::Deserialize;
use serde_json::{Value, json};
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::Path;
use toolgate_plugin_sdk::{self as sdk, Tool, ToolError, ToolResult, paths};

pub const TOOL: Tool = Tool {
    name: "write",
    description: "Write text to a file, replacing it (or appending with append: true). Creates the \
                  file if needed, and missing parent directories with create_dirs: true.",
    schema,
    run,
};

fn schema() -> Value {
    sdk::object_schema(
        json!({
            "path": {"type": "string", "description": "File to write, absolute or relative to the working directory."},
            "content": {"type": "string", "description": "Text to write (UTF-8)."},
            "append": {"type": "boolean", "description": "Append to the file instead of replacing it (default false)."},
            "create_dirs": {"type": "boolean", "description": "Create missing parent directories (default false)."}
        }),
        &["path", "content"],
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    path: String,
    content: String,
    #[serde(default)]
    append: bool,
    #[serde(default)]
    create_dirs: bool,
}

fn run(input: &str) -> ToolResult {
    let input: Input = sdk::parse_input(input)?;
    let full = paths::resolve(&input.path)?;
    let err = |e: std::io::Error| sdk::io::error(&input.path, &e);

    if input.create_dirs
        && let Some(parent) = Path::new(&full).parent()
    {
        fs::create_dir_all(parent).map_err(err)?;
    }
    let existed = fs::symlink_metadata(&full).is_ok();
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .append(input.append)
        .truncate(!input.append)
        .open(&full)
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound if !input.create_dirs => ToolError::Failed(format!(
                "{}: the parent directory does not exist (set create_dirs to create it)",
                input.path
            )),
            _ => err(e),
        })?;
    file.write_all(input.content.as_bytes()).map_err(err)?;
    file.flush().map_err(err)?;

    sdk::output(&json!({
        "path": input.path,
        "bytes_written": input.content.len(),
        "created": !existed,
    }))
}
