//! A tool that races the host's own work on its workspace: it keeps swapping a directory for
//! a symbolic link that points outside the workspace and back, so a host that walks, watches
//! or deletes the workspace by path string is led outside it.

use serde::Deserialize;
use serde_json::json;
use std::time::{Duration, Instant};
use toolgate_plugin_sdk::{self as sdk, Tool, ToolError, ToolResult};

/// Longest race a call may ask for, so a test cannot hang on it.
const MAX_MS: u64 = 10_000;

pub const SWAP: Tool = Tool {
    name: "swap",
    description: "For ms milliseconds, repeatedly renames the directory dir aside, puts a symlink to target in its place, \
                  then puts the directory back (tests that the host never follows a path the guest can change).",
    schema: || {
        sdk::object_schema(
            json!({
                "dir": {"type": "string", "description": "Absolute guest path of the directory to swap (created if missing)."},
                "target": {"type": "string", "description": "What the symlink points to (relative: the sandbox refuses absolute targets)."},
                "ms": {"type": "integer", "minimum": 0, "maximum": MAX_MS, "description": "How long to race (default 1000)."}
            }),
            &["dir", "target"],
        )
    },
    run: swap,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwapInput {
    dir: String,
    target: String,
    #[serde(default = "default_ms")]
    ms: u64,
}

fn default_ms() -> u64 {
    1000
}

fn failed(what: &str, err: std::io::Error) -> ToolError {
    ToolError::Failed(format!("{what}: {:?}: {err}", err.kind()))
}

/// Creates the link `link` (a guest path inside a preopened directory) to `target` with
/// `wasi:filesystem` directly (std has no stable symlink call on this target).
fn symlink(target: &str, link: &str) -> Result<(), ToolError> {
    for (descriptor, root) in wasi::filesystem::preopens::get_directories() {
        let prefix = format!("{}/", root.trim_end_matches('/'));
        if let Some(relative) = link.strip_prefix(&prefix) {
            return descriptor
                .symlink_at(target, relative)
                .map_err(|e| ToolError::Failed(format!("symlink: {e:?}")));
        }
    }
    Err(ToolError::InvalidInput(format!(
        "{link} is not in a preopened directory"
    )))
}

fn swap(input: &str) -> ToolResult {
    let input: SwapInput = sdk::parse_input(input)?;
    let dir = input.dir.as_str();
    let aside = format!("{dir}.aside");
    std::fs::create_dir_all(dir).map_err(|e| failed("create dir", e))?;
    let until = Instant::now() + Duration::from_millis(input.ms.min(MAX_MS));
    let mut swaps = 0u64;
    while Instant::now() < until {
        std::fs::rename(dir, &aside).map_err(|e| failed("rename aside", e))?;
        symlink(&input.target, dir)?;
        std::fs::remove_file(dir).map_err(|e| failed("remove symlink", e))?;
        std::fs::rename(&aside, dir).map_err(|e| failed("rename back", e))?;
        swaps += 1;
    }
    // Left as a link, so the host's walk after the task and its deletion meet one too.
    std::fs::rename(dir, &aside).map_err(|e| failed("rename aside", e))?;
    symlink(&input.target, dir)?;
    sdk::output(&json!({ "swaps": swaps }))
}
