//! Integration tests of the server: the real server on 127.0.0.1 port 0, a
//! real HTTP client and a real SSE client.

mod api;
mod approvals;
mod check;
mod common;
mod confinement;
mod connections;
mod contract;
mod crash;
mod credentials;
mod data_dir;
mod events;
mod fake_model;
mod files;
mod floods;
mod gate;
mod hosts;
mod keys;
mod languages;
mod listing;
mod mcp;
mod mcp_clients;
mod metrics;
mod openapi;
mod plugin_versions;
mod plugins;
mod processes;
mod quota;
mod runs;
mod shutdown;
mod sidecar_api;
mod sidecar_failures;
mod sidecars;
mod strict;
