//! `hostile`: test-only tools that misbehave on purpose (run forever, eat
//! memory, overflow the stack, flood output, probe capabilities), so the
//! host's limits and sandbox can be tested against a real component. Never
//! install it for agents.

mod disk;
mod floods;
mod probe;
mod runaway;
mod swap;

use toolgate_plugin_sdk::Tool;

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
    disk::FILL,
    swap::SWAP,
    floods::LOG_EMPTY,
    floods::PROGRESS_FLOOD,
    floods::FETCH_FLOOD,
];

toolgate_plugin_sdk::export_tools!(Hostile, TOOLS);
