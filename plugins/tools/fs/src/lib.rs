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

use toolgate_plugin_sdk::Tool;

// The world re-exports `ToolInfo` and `ToolError` at the crate root.
wit_bindgen::generate!({ path: "../../../wit", world: "tool" });

const TOOLS: &[Tool] = &[
    read::TOOL,
    write::TOOL,
    list::TOOL,
    search::TOOL,
    patch::TOOL,
];

toolgate_plugin_sdk::export_tools!(Fs, TOOLS);
