//! Integration tests of the policy gate: Cedar decisions in front of real
//! components, limits from annotations, reloads, and secrets kept secret.

mod commands;
mod common;
mod gated;
#[path = "../support/plugins.rs"]
mod plugins;
mod reload;
mod secrets;
#[path = "../support/server.rs"]
mod server;
mod shipped;
