//! toolgate: run AI agent tools as WebAssembly components, with exactly the
//! capabilities a policy granted and hard limits on what they may use.
//!
//! - [`sandbox`]: the engine that compiles plugins once and runs each task in a
//!   fresh, limited instance;
//! - [`policy`]: Cedar decisions for every task and every capability use;
//! - [`task`]: the path of one task through the policy gate into the sandbox;
//! - [`confined`]: host-side walks and deletions of a workspace, by file descriptor.

pub mod agents;
pub mod cli;
pub mod confined;
pub mod events;
pub mod gate;
pub mod hosts;
pub mod mcp;
pub mod orchestrator;
pub mod policy;
pub mod sandbox;
pub mod secrets;
pub mod server;
pub mod sidecar;
pub mod store;
pub mod task;
pub mod telemetry;
pub mod vocabulary;

/// The build script's toolchain check (it cannot test itself).
#[cfg(test)]
#[path = "../build_support/wasm_target_tests.rs"]
mod build_wasm_target_tests;
