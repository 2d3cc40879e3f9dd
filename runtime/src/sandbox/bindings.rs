//! Host-side bindings of the `toolgate:plugin/tool` world (see `wit/tool.wit`).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "toolgate:plugin/tool",
    imports: { default: trappable },
    exports: { default: async },
});

pub use self::toolgate::plugin::host::{LogLevel as WitLogLevel, SecretError};
pub use self::toolgate::plugin::types::{ToolError as WitToolError, ToolInfo as WitToolInfo};
