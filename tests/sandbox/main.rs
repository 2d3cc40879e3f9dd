//! Integration tests of the sandbox engine: real components built by the
//! build script, run through the real engine.

mod bad_plugins;
mod cli;
mod common;
mod hostile;
mod network;
#[path = "../support/plugins.rs"]
mod plugins;
#[path = "../support/server.rs"]
mod server;
mod tools;
