use super::bindings::ToolPre;
use super::cache::ArtifactCache;
use super::engine::SandboxEngine;
use super::error::{PluginError, TaskError};
use super::executor::{self, DescribeFailure};
use super::input_schema::{InputSchema, Mismatch};
use super::state::TaskState;
use serde::Serialize;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

/// What a plugin says about one of its tools.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ToolInfo {
    pub name: String,
    pub description: String,
    pub input_schema: serde_json::Value,
}

/// One import of a component: what it could ask the host for.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ImportInfo {
    pub name: String,
    pub kind: &'static str,
}

/// A validated, compiled plugin, ready to be instantiated for any task.
pub struct Plugin {
    name: String,
    digest: String,
    tools: Vec<ToolInfo>,
    /// The compiled input schema of each tool, in the order of `tools`.
    schemas: Vec<InputSchema>,
    imports: Vec<ImportInfo>,
    pre: ToolPre<TaskState>,
}

/// The exports the `tool` world requires.
const REQUIRED_EXPORTS: [&str; 2] = ["describe", "call"];

impl Plugin {
    /// Validates `bytes` (whose SHA-256 is `digest`) as a component of the `tool` world,
    /// compiles it (or takes it from the cache), asks it for its tools within the describe
    /// bounds, and caches the compilation only once all of that succeeded. Compiling is
    /// long work: callers run this off the async workers (see `Catalog`).
    pub(crate) async fn load(
        engine: &SandboxEngine,
        cache: Option<&ArtifactCache>,
        name: &str,
        origin: &str,
        bytes: &[u8],
        digest: String,
    ) -> Result<Plugin, PluginError> {
        check_header(origin, bytes)?;
        let cached = cache.and_then(|c| c.load(engine.engine(), &digest));
        let from_cache = cached.is_some();
        let component = match cached {
            Some(component) => component,
            None => Component::new(engine.engine(), bytes).map_err(|e| PluginError::Invalid {
                origin: origin.into(),
                message: format!("{e:#}"),
            })?,
        };

        let missing = missing_exports(engine, &component, &REQUIRED_EXPORTS);
        if !missing.is_empty() {
            return Err(PluginError::WrongWorld {
                origin: origin.into(),
                missing,
            });
        }
        let instance_pre = engine.linker().instantiate_pre(&component).map_err(|e| {
            PluginError::UnsupportedImport {
                origin: origin.into(),
                message: format!("{e:#}"),
            }
        })?;
        let pre = ToolPre::new(instance_pre).map_err(|e| PluginError::WrongSignature {
            origin: origin.into(),
            message: format!("{e:#}"),
        })?;

        let tools = executor::describe(engine, &pre)
            .await
            .map_err(|failure| match failure {
                DescribeFailure::Refused(violation) => PluginError::BadToolInfo {
                    origin: origin.into(),
                    violation,
                },
                DescribeFailure::Failed(
                    error @ (TaskError::Internal { .. } | TaskError::Cancelled),
                ) => PluginError::Unavailable {
                    origin: origin.into(),
                    message: error.to_string(),
                },
                DescribeFailure::Failed(error) => PluginError::Describe {
                    origin: origin.into(),
                    message: error.to_string(),
                },
            })?;
        // A schema that does not compile could check no input: the plugin is refused.
        let schemas = tools
            .iter()
            .map(|tool| {
                InputSchema::compile(&tool.input_schema).map_err(|message| {
                    PluginError::InputSchema {
                        origin: origin.into(),
                        tool: tool.name.clone(),
                        message,
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let imports = imports_of(engine, &component);
        if !from_cache && let Some(cache) = cache {
            cache.store(&digest, &component);
        }
        Ok(Plugin {
            name: name.into(),
            digest,
            tools,
            schemas,
            imports,
            pre,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// SHA-256 of the component's bytes, hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn tools(&self) -> &[ToolInfo] {
        &self.tools
    }

    pub fn tool(&self, name: &str) -> Option<&ToolInfo> {
        self.tools.iter().find(|t| t.name == name)
    }

    /// Checks `input` against the input schema of `tool`; `None` when the plugin has no such tool.
    pub fn check_input(
        &self,
        tool: &str,
        input: &serde_json::Value,
    ) -> Option<Result<(), Mismatch>> {
        let index = self.tools.iter().position(|t| t.name == tool)?;
        Some(self.schemas[index].check(input))
    }

    pub fn imports(&self) -> &[ImportInfo] {
        &self.imports
    }

    pub(crate) fn pre(&self) -> &ToolPre<TaskState> {
        &self.pre
    }
}

/// The exports of `required` the component lacks, quoted for a message.
pub(crate) fn missing_exports(
    engine: &SandboxEngine,
    component: &Component,
    required: &[&str],
) -> Vec<String> {
    let ty = component.component_type();
    let exports: Vec<&str> = ty.exports(engine.engine()).map(|(name, _)| name).collect();
    required
        .iter()
        .filter(|e| !exports.contains(e))
        .map(|e| format!("`{e}`"))
        .collect()
}

/// Compiles a component that is not a tool (a host driver, an agent), checks it exports
/// `required` and that the linker provides its imports: what is left is to type it as its
/// world's `...Pre`. Long work: callers run it off the async workers.
pub(crate) fn link_component(
    engine: &SandboxEngine,
    origin: &str,
    bytes: &[u8],
    required: &[&str],
) -> Result<wasmtime::component::InstancePre<TaskState>, PluginError> {
    check_header(origin, bytes)?;
    let component = Component::new(engine.engine(), bytes).map_err(|e| PluginError::Invalid {
        origin: origin.into(),
        message: format!("{e:#}"),
    })?;
    let missing = missing_exports(engine, &component, required);
    if !missing.is_empty() {
        return Err(PluginError::WrongWorld {
            origin: origin.into(),
            missing,
        });
    }
    engine
        .linker()
        .instantiate_pre(&component)
        .map_err(|e| PluginError::UnsupportedImport {
            origin: origin.into(),
            message: format!("{e:#}"),
        })
}

/// Refuses what is not WebAssembly, and a core module where a component is wanted.
pub(crate) fn check_header(origin: &str, bytes: &[u8]) -> Result<(), PluginError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(PluginError::NotWasm {
            origin: origin.into(),
        });
    }
    // Bytes 4..8: version and layer. Layer 0 is a core module, layer 1 a component.
    if bytes[6..8] == [0, 0] {
        return Err(PluginError::CoreModule {
            origin: origin.into(),
        });
    }
    Ok(())
}

fn imports_of(engine: &SandboxEngine, component: &Component) -> Vec<ImportInfo> {
    component
        .component_type()
        .imports(engine.engine())
        .map(|(name, item)| ImportInfo {
            name: name.to_owned(),
            kind: match item.ty {
                ComponentItem::ComponentInstance(_) => "instance",
                ComponentItem::ComponentFunc(_) => "func",
                ComponentItem::CoreFunc(_) => "core-func",
                ComponentItem::Module(_) => "module",
                ComponentItem::Component(_) => "component",
                ComponentItem::Type(_) => "type",
                ComponentItem::Resource(_) => "resource",
            },
        })
        .collect()
}
