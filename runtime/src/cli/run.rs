use super::plugin::looks_like_path;
use super::{EXIT_TASK_FAILED, EngineArgs};
use crate::policy::{AllowAll, Gate, HostAllowList};
use crate::sandbox::{
    DirGrant, EventSink, Executor, Grants, Limits, Secret, TaskRequest, ToolEvent,
};
use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
#[command(
    after_help = "Example:\n  toolgate run --plugin fs --tool read --dir .:/work:ro --input '{\"path\": \"README.md\"}'"
)]
pub(crate) struct RunArgs {
    /// A bundled plugin name (fs, http, json), a plugin from --plugins, or a `.wasm` path.
    #[arg(long, value_name = "PATH_OR_NAME")]
    plugin: String,
    /// The tool to call: `read` or `fs.read`.
    #[arg(long, value_name = "NAME")]
    tool: String,
    /// The input JSON object; `@FILE` reads it from a file, `-` from stdin.
    #[arg(long, value_name = "JSON", default_value = "{}")]
    input: String,
    /// Preopen a host directory as GUEST (read-write unless `:ro`). The first is the working directory.
    #[arg(long = "dir", value_name = "HOST:GUEST[:ro]", value_parser = DirGrant::parse)]
    dirs: Vec<DirGrant>,
    /// Set an environment variable in the component.
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    envs: Vec<(String, String)>,
    /// Grant the secret NAME, its value taken from this process's variable ENV_VAR (default NAME).
    #[arg(long = "secret", value_name = "NAME[=ENV_VAR]")]
    secrets: Vec<String>,
    /// Allow outbound HTTP to HOST (`*.example.com` for subdomains, `*` for any host).
    #[arg(long = "allow-http", value_name = "HOST")]
    allow_http: Vec<String>,
    /// Also allow loopback, private, link-local and metadata addresses.
    #[arg(long)]
    allow_private_network: bool,
    /// Fuel budget (about one unit per wasm instruction).
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
    /// Linear memory cap in MiB.
    #[arg(long, value_name = "N")]
    memory_mb: Option<u64>,
    /// Wall-clock deadline in milliseconds.
    #[arg(long, value_name = "N")]
    timeout_ms: Option<u64>,
    /// Cap on the result size in KiB.
    #[arg(long, value_name = "N")]
    output_kb: Option<u64>,
    #[command(flatten)]
    engine: EngineArgs,
}

fn parse_env(spec: &str) -> Result<(String, String), String> {
    match spec.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.into(), v.into())),
        _ => Err(format!("`{spec}` is not K=V")),
    }
}

/// Prints tool events as JSON lines on stderr while the task runs.
struct StderrEvents;

impl EventSink for StderrEvents {
    fn emit(&self, event: ToolEvent) {
        let name = match &event {
            ToolEvent::Log { .. } => "tool.log",
            ToolEvent::Progress { .. } => "tool.progress",
        };
        let line = json!({ "event": name, "data": event });
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let input = read_input(&args.input)?;
    let catalog = args.engine.catalog()?;
    let plugin = if looks_like_path(&args.plugin) {
        Arc::new(catalog.load_file(Path::new(&args.plugin)).await?)
    } else {
        catalog.get(&args.plugin).await?
    };
    let tool = match args.tool.split_once('.') {
        Some((prefix, tool)) if prefix == plugin.name() => tool.to_owned(),
        Some(_) => bail!(
            "tool `{}` does not belong to plugin `{}`",
            args.tool,
            plugin.name()
        ),
        None => args.tool.clone(),
    };

    let mut grants = Grants {
        dirs: args.dirs.clone(),
        env: args.envs.clone(),
        ..Grants::default()
    };
    for spec in &args.secrets {
        let (name, var) = spec.split_once('=').unwrap_or((spec, spec));
        let value = std::env::var(var)
            .with_context(|| format!("secret `{name}`: environment variable `{var}` is not set"))?;
        grants.secrets.insert(name.to_owned(), Secret::new(value));
    }
    grants.network.http = !args.allow_http.is_empty();
    grants.network.allow_private_addresses = args.allow_private_network;
    let gate: Arc<dyn Gate> = if args.allow_http.is_empty() {
        Arc::new(AllowAll)
    } else {
        Arc::new(HostAllowList::new(args.allow_http.clone()))
    };

    let defaults = catalog.engine().config().default_limits;
    let limits = Limits {
        fuel: args.fuel.unwrap_or(defaults.fuel),
        memory_bytes: args.memory_mb.map_or(defaults.memory_bytes, |mb| mb << 20),
        timeout: args
            .timeout_ms
            .map_or(defaults.timeout, Duration::from_millis),
        output_bytes: args.output_kb.map_or(defaults.output_bytes, |kb| kb << 10),
        ..defaults
    };
    let executor = Executor::new(catalog.engine().clone(), gate);
    let request = TaskRequest {
        tool: tool.clone(),
        input,
        grants,
        limits: Some(limits),
        events: Some(Arc::new(StderrEvents)),
        cancel: None,
    };
    let outcome = executor.run(&plugin, request).await;

    let mut report = json!({
        "tool": format!("{}.{}", plugin.name(), tool),
        "usage": outcome.usage,
        "limits": outcome.limits,
    });
    if !outcome.decisions.is_empty() {
        report["decisions"] = serde_json::to_value(&outcome.decisions)?;
    }
    if !outcome.stdout.is_empty() {
        report["stdout"] = outcome.stdout.into();
    }
    if !outcome.stderr.is_empty() {
        report["stderr"] = outcome.stderr.into();
    }
    let code = match &outcome.result {
        Ok(output) => {
            report["output"] = serde_json::from_str(output)?;
            ExitCode::SUCCESS
        }
        Err(error) => {
            report["error"] = error.to_json();
            ExitCode::from(EXIT_TASK_FAILED)
        }
    };
    super::print_json(&report)?;
    Ok(code)
}

fn read_input(arg: &str) -> anyhow::Result<String> {
    let text = if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the input from stdin")?;
        text
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::read_to_string(path).with_context(|| format!("reading the input from {path}"))?
    } else {
        arg.to_owned()
    };
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text)
        .context("--input must be a JSON object")?;
    Ok(text)
}
