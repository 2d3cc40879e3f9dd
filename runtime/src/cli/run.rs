use super::plugin::looks_like_path;
use super::{EXIT_TASK_FAILED, EngineArgs, print_json};
use crate::policy::{
    PolicyEngine, PolicyLimits, PolicyOrigin, ResourceRequest, TaskIdentity, principal_entity,
    tool_entity,
};
use crate::sandbox::{DirGrant, EventSink, Executor, Grants, Secret, TaskRequest, ToolEvent};
use crate::secrets::SecretStore;
use crate::vocabulary::EventName;
use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args)]
#[command(
    after_help = "The task goes through the policy gate as PRINCIPAL, a member of PROFILE: \
invoke is decided first, then every capability the tool uses (outbound requests, secrets, directories).\n\n\
Example:\n  toolgate run --plugin fs --tool read --dir .:/work:ro --input '{\"path\": \"README.md\"}'"
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
    /// Ask for a directory outside the workspace; policy decides read_file / write_file for it.
    #[arg(long = "outside-dir", value_name = "HOST:GUEST[:ro]", value_parser = DirGrant::parse)]
    outside: Vec<DirGrant>,
    /// Set an environment variable in the component.
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    envs: Vec<(String, String)>,
    /// Offer the secret NAME, its value from this process's variable ENV_VAR (default NAME).
    /// Variables TOOLGATE_SECRET_<NAME> and --secrets-file are offered too; policy decides each read.
    #[arg(long = "secret", value_name = "NAME[=ENV_VAR]")]
    secrets: Vec<String>,
    /// A JSON object of secrets, `{"name": "value"}`.
    #[arg(long, env = "TOOLGATE_SECRETS_FILE", value_name = "FILE")]
    secrets_file: Option<PathBuf>,
    /// Policy directory [default: the policies built into the binary].
    #[arg(long, env = "TOOLGATE_POLICIES", value_name = "DIR")]
    policies: Option<PathBuf>,
    /// The principal the task runs as.
    #[arg(long, default_value = "local")]
    principal: String,
    /// The profile of the session (the principal is made a member of it for this run).
    #[arg(long, default_value = "developer")]
    profile: String,
    /// Also allow loopback, private, link-local and metadata addresses (policy still decides each request).
    #[arg(long)]
    allow_private_network: bool,
    /// Fuel budget (about one unit per wasm instruction); at most what policy allows.
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
    /// Linear memory cap in MiB; at most what policy allows.
    #[arg(long, value_name = "N")]
    memory_mb: Option<u64>,
    /// Wall-clock deadline in milliseconds; at most what policy allows.
    #[arg(long, value_name = "N")]
    timeout_ms: Option<u64>,
    /// Cap on the result size in KiB; at most what policy allows.
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
            ToolEvent::Log { .. } => EventName::ToolLog,
            ToolEvent::Progress { .. } => EventName::ToolProgress,
        };
        let line = json!({ "event": name, "data": event });
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let input = read_input(&args.input)?;
    let policy = Arc::new(PolicyEngine::load(
        args.policies
            .clone()
            .map_or(PolicyOrigin::Embedded, PolicyOrigin::Dir),
    )?);
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
    // An unknown tool is a usage error, told apart from a policy denial.
    if plugin.tool(&tool).is_none() {
        let names: Vec<&str> = plugin.tools().iter().map(|t| t.name.as_str()).collect();
        bail!(
            "unknown tool `{}.{tool}`: plugin `{}` has {}",
            plugin.name(),
            plugin.name(),
            names.join(", ")
        );
    }
    // The local principal belongs to the profile asked for; the plugin's tools are entities of it.
    let mut entities = vec![principal_entity(&args.principal, &[&args.profile])];
    entities.extend(
        plugin
            .tools()
            .iter()
            .map(|t| tool_entity(plugin.name(), &t.name)),
    );
    policy.upsert_entities(entities)?;

    let mut secrets = SecretStore::from_env_and_file(args.secrets_file.as_deref())?;
    for spec in &args.secrets {
        let (name, var) = spec.split_once('=').unwrap_or((spec, spec));
        let value = std::env::var(var)
            .with_context(|| format!("secret `{name}`: environment variable `{var}` is not set"))?;
        secrets.insert(name, Secret::new(value));
    }
    let mut grants = Grants {
        dirs: args.dirs.clone(),
        outside: args.outside.clone(),
        env: args.envs.clone(),
        secrets: secrets.all(),
        ..Grants::default()
    };
    grants.network.http = true;
    grants.network.allow_private_addresses = args.allow_private_network;

    // Asked-for bounds only: the policy's limits fill in the rest, and cap these.
    let asked = PolicyLimits {
        fuel: args.fuel,
        memory_mb: args.memory_mb,
        timeout_ms: args.timeout_ms,
        output_kb: args.output_kb,
    };
    let executor = Executor::new(catalog.engine().clone(), Arc::new(crate::policy::AllowAll));
    let identity = TaskIdentity {
        principal: args.principal.clone(),
        profile: args.profile.clone(),
        session: "local".into(),
        tool: format!("{}.{}", plugin.name(), tool),
    };
    let request = TaskRequest {
        grants,
        events: Some(Arc::new(StderrEvents)),
        ..TaskRequest::new(&tool, input)
    };
    let gated = crate::task::run_gated(
        &policy,
        &executor,
        &plugin,
        identity,
        ResourceRequest::default(),
        asked,
        request,
    )
    .await;
    let outcome = gated.outcome;

    let mut report = json!({
        "tool": format!("{}.{}", plugin.name(), tool),
        "decision": gated.decision,
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
    print_json(&report)?;
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
