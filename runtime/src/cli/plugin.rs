use super::EngineArgs;
use clap::Subcommand;
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(crate) enum PluginCommand {
    /// Validate a plugin and print its tools, their input schemas, the
    /// component's imports (what it could ask for) and its digest.
    Inspect {
        /// A `.wasm` file, or the name of a bundled plugin (fs, http, json).
        plugin: String,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// List the available plugins and their tools.
    List {
        #[command(flatten)]
        engine: EngineArgs,
    },
}

pub(crate) async fn run(command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::Inspect { plugin, engine } => {
            let catalog = engine.catalog()?;
            let plugin = if looks_like_path(&plugin) {
                std::sync::Arc::new(catalog.load_file(Path::new(&plugin)).await?)
            } else {
                catalog.get(&plugin).await?
            };
            let report = json!({
                "name": plugin.name(),
                "digest": format!("sha256:{}", plugin.digest()),
                "tools": plugin.tools().iter().map(|t| json!({
                    "name": format!("{}.{}", plugin.name(), t.name),
                    "description": t.description,
                    "input_schema": t.input_schema,
                })).collect::<Vec<_>>(),
                "imports": plugin.imports(),
            });
            super::print_json(&report)?;
        }
        PluginCommand::List { engine } => {
            let catalog = engine.catalog()?;
            let mut plugins = Vec::new();
            for name in catalog.names() {
                let plugin = catalog.get(&name).await?;
                let tools: Vec<String> = plugin
                    .tools()
                    .iter()
                    .map(|t| format!("{name}.{}", t.name))
                    .collect();
                plugins.push(json!({ "name": name, "digest": format!("sha256:{}", plugin.digest()), "tools": tools }));
            }
            super::print_json(&serde_json::Value::from(plugins))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A plugin argument is a path if it has a separator or a `.wasm` suffix.
pub(crate) fn looks_like_path(arg: &str) -> bool {
    arg.contains('/') || arg.ends_with(".wasm")
}
