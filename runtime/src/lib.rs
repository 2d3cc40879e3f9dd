//! toolgate: run AI agent tools as WebAssembly components, with exactly the
//! capabilities a policy granted and hard limits on what they may use.
//!
//! - [`sandbox`]: the engine that compiles plugins once and runs each task in a
//!   fresh, limited instance;
//! - [`policy`]: the [`policy::Gate`] seam every capability use is decided by.

pub mod cli;
pub mod policy;
pub mod sandbox;
