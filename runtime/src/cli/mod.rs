//! The `toolgate` command line. Thin: parses arguments, builds the engine and
//! hands over to the library; errors become a message and a non-zero exit.

mod check;
mod plugin;
mod policy;
mod run;
mod serve;
mod sidecar;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Exit status of a task that ran and failed (the JSON on stdout says why).
pub const EXIT_TASK_FAILED: u8 = 1;
/// Exit status of bad usage: arguments, plugins or files that cannot be used.
pub const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "toolgate",
    version,
    about = "Run AI agent tools as sandboxed WebAssembly components"
)]
#[command(
    after_help = "Exit status: 0 success, 1 the task failed (see the JSON error), 2 bad usage or unusable plugin."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one tool call in the sandbox and print the result as JSON.
    Run(Box<run::RunArgs>),
    /// Work with plugins (WebAssembly components of the toolgate:plugin/tool world).
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Validate, test, explain and format Cedar policy sets.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Run the HTTP/SSE API server.
    Serve(Box<crate::server::ServeArgs>),
    /// Run the execution half for an orchestrator (`[[sidecars]]` in its config).
    Sidecar(Box<sidecar::SidecarArgs>),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(serve::KeysCommand),
    /// Print the OpenAPI document of the HTTP API (what `GET /openapi.json` serves).
    Openapi,
    /// Run the readiness checks against a server and print each (exit 1 when one fails):
    /// the API reached from here, the host's capacity, every decision with its reasons, the
    /// event self-test and the mode.
    Check(Box<check::CheckArgs>),
}

/// Where plugins come from and where their compilations are cached.
#[derive(Args, Clone)]
pub(crate) struct EngineArgs {
    /// A directory of extra plugins (`NAME.wasm` becomes plugin NAME).
    #[arg(long, env = "TOOLGATE_PLUGINS", value_name = "DIR")]
    plugins: Option<PathBuf>,
    /// Where compiled plugins are cached [default: $XDG_CACHE_HOME/toolgate or ~/.cache/toolgate].
    #[arg(long, env = "TOOLGATE_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile plugins in memory only; do not read or write the cache.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
}

impl EngineArgs {
    fn cache_dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        self.cache_dir.clone().or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache"))
                })?;
            Some(base.join("toolgate"))
        })
    }

    /// The engine and the catalog of plugins.
    fn catalog(&self) -> anyhow::Result<crate::sandbox::Catalog> {
        let engine = Arc::new(crate::sandbox::SandboxEngine::new(Default::default())?);
        let mut catalog = crate::sandbox::Catalog::new(engine, self.cache_dir().as_deref());
        if let Some(dir) = &self.plugins {
            catalog.add_dir(dir)?;
        }
        Ok(catalog)
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // A server tells its operator what it does; one-shot commands stay quiet.
    let default_filter = if matches!(cli.command, Command::Serve(_) | Command::Sidecar(_)) {
        "info,toolgate::decision=warn"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TOOLGATE_LOG")
                .unwrap_or_else(|_| default_filter.into()),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(*args).await,
            Command::Plugin(command) => plugin::run(command).await,
            Command::Policy(command) => policy::run(command),
            Command::Serve(args) => serve::serve(*args).await,
            Command::Sidecar(args) => sidecar::sidecar(*args).await,
            Command::Keys(command) => serve::keys(command),
            Command::Openapi => {
                print_json(&crate::server::api_doc::document()).map(|()| ExitCode::SUCCESS)
            }
            Command::Check(args) => check::check(*args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}

/// Prints a JSON document on stdout; a closed pipe (`| head`) is not an error.
pub(crate) fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    use std::io::Write;
    let text = serde_json::to_string_pretty(value)?;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn fail(error: anyhow::Error) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::from(EXIT_USAGE)
}
