//! `read`: a file's content, from an offset, up to a byte limit.

use serde::Deserialize;
use serde_json::{Value, json};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use toolgate_plugin_sdk::{self as sdk, Tool, ToolError, ToolResult, paths, text};

const DEFAULT_LIMIT: u64 = 1 << 20;
/// Larger reads are capped: the result must fit the task's output budget.
const MAX_LIMIT: u64 = 16 << 20;

pub const TOOL: Tool = Tool {
    name: "read",
    description: "Read a file. Returns UTF-8 text, or base64 (\"encoding\": \"base64\") for binary \
                  content; use offset and limit to page through large files.",
    schema,
    run,
};

fn schema() -> Value {
    sdk::object_schema(
        json!({
            "path": {"type": "string", "description": "File to read, absolute or relative to the working directory."},
            "offset": {"type": "integer", "minimum": 0, "description": "Byte offset to start at (default 0)."},
            "limit": {"type": "integer", "minimum": 0, "description": "Maximum number of bytes to return (default 1048576, capped at 16777216)."}
        }),
        &["path"],
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    path: String,
    #[serde(default)]
    offset: u64,
    limit: Option<u64>,
}

fn run(input: &str) -> ToolResult {
    let input: Input = sdk::parse_input(input)?;
    let full = paths::resolve(&input.path)?;
    let err = |e: std::io::Error| sdk::io::error(&input.path, &e);

    let mut file = File::open(&full).map_err(err)?;
    let meta = file.metadata().map_err(err)?;
    if meta.is_dir() {
        return Err(ToolError::Failed(format!(
            "{} is a directory, use list",
            input.path
        )));
    }
    let size = meta.len();
    if input.offset > 0 {
        file.seek(SeekFrom::Start(input.offset)).map_err(err)?;
    }
    let limit = input.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let mut data = Vec::new();
    file.take(limit).read_to_end(&mut data).map_err(err)?;

    let end = input.offset + data.len() as u64;
    let truncated = end < size;
    let content = text::encode(data, truncated);
    let mut out = json!({
        "path": input.path,
        "content": content.text,
        "size": size,
        "truncated": truncated,
    });
    if let Some(encoding) = content.encoding {
        out["encoding"] = encoding.into();
    }
    if truncated {
        // Where to continue; it can be before `end` if a character was cut.
        out["next_offset"] = (input.offset + content.bytes as u64).into();
    }
    sdk::output(&out)
}
