//! `toolgate sidecar`: the execution half, for an orchestrator on this or another host.

use crate::sandbox::{Catalog, EngineConfig, Executor, SandboxEngine};
use crate::server::listener::{self, ConnectionLimits};
use crate::sidecar::server::{SidecarService, router};
use crate::sidecar::{LocalSidecar, ShippedPolicies};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct SidecarArgs {
    /// Address to listen on.
    #[arg(
        long,
        env = "TOOLGATE_SIDECAR_LISTEN",
        default_value = "127.0.0.1:8081"
    )]
    listen: SocketAddr,
    /// A file holding the token the orchestrator sends (16 characters or more).
    #[arg(long, env = "TOOLGATE_SIDECAR_TOKEN_FILE", value_name = "FILE")]
    token_file: PathBuf,
    /// Where workspaces, shipped plugins and compiled plugins are kept
    /// [default: $XDG_DATA_HOME/toolgate-sidecar or ~/.local/share/toolgate-sidecar].
    #[arg(long, env = "TOOLGATE_SIDECAR_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Serve plain HTTP on an address other than loopback (the token then crosses the
    /// network in the clear: only on a network you trust, or behind a TLS proxy).
    #[arg(long)]
    allow_plaintext: bool,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(
        long,
        env = "TOOLGATE_SIDECAR_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(
        long,
        env = "TOOLGATE_SIDECAR_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// How long a connection may go without a request in flight, its TLS handshake
    /// included, before it is closed.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    header_timeout_ms: u64,
    /// Connections open at once (fewer when the descriptor limit is lower); more are closed
    /// as soon as they are accepted.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(4..=1_000_000))]
    max_connections: u64,
    /// Tools may reach loopback and private addresses (each request still decided by the
    /// orchestrator's policy): for services on a private network.
    #[arg(long, env = "TOOLGATE_SIDECAR_ALLOW_PRIVATE_NETWORK")]
    allow_private_network: bool,
    /// Tasks running at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    max_running_tasks: u32,
    /// The cpu this host offers sessions, in thousandths of a core [default: its cores].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    cpu_millis: Option<u64>,
    /// The memory it offers sessions, in MiB [default: its memory, or its cgroup's limit].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    memory_mb: Option<u64>,
    /// The disk it offers sessions' workspaces, in MiB [default: the size of the filesystem
    /// of its data directory].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    disk_mb: Option<u64>,
}

pub(crate) async fn sidecar(args: SidecarArgs) -> anyhow::Result<ExitCode> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match crate::sidecar::tls::server_config(cert, key) {
            Ok(config) => Some(config),
            Err(error) => {
                eprintln!("error: {error}");
                return Ok(ExitCode::from(super::EXIT_USAGE));
            }
        },
        _ => None,
    };
    if tls.is_none() && !args.listen.ip().is_loopback() && !args.allow_plaintext {
        eprintln!(
            "error: refusing to serve plain HTTP on {}: the orchestrator's token would cross the network in the clear; give --tls-cert and --tls-key, listen on loopback, or pass --allow-plaintext on a network you trust",
            args.listen
        );
        return Ok(ExitCode::from(super::EXIT_USAGE));
    }
    let token = std::fs::read_to_string(&args.token_file).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the token file {}: {e}",
            args.token_file.display()
        )
    })?;
    let token = token.trim().to_owned();
    if token.len() < 16 {
        eprintln!(
            "error: the token in {} is shorter than 16 characters",
            args.token_file.display()
        );
        return Ok(ExitCode::from(super::EXIT_USAGE));
    }
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    crate::store::create_private_dir(&data_dir)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let address = listener.local_addr()?;
    let holder = format!(
        "toolgate sidecar pid {}, listening on {address}",
        std::process::id()
    );
    let _lock = crate::store::data_dir::lock(&data_dir, &holder)?;
    // Sessions do not outlive a sidecar process: its orchestrator has ended them.
    let workspaces = data_dir.join("workspaces");
    if workspaces.exists() {
        crate::confined::remove_tree(&workspaces)?;
    }
    std::fs::create_dir_all(&workspaces)?;

    let engine = Arc::new(SandboxEngine::new(EngineConfig {
        concurrent_tasks: args.max_running_tasks,
        ..EngineConfig::default()
    })?);
    let policies = Arc::new(ShippedPolicies::default());
    let local = LocalSidecar::new(
        "sidecar",
        Executor::new(engine.clone(), Arc::new(crate::policy::AllowAll)),
        policies.clone(),
        workspaces,
    )
    .with_private_network(args.allow_private_network);
    let catalog = Catalog::new(engine, Some(&data_dir.join("cache")));
    let plugins = crate::sidecar::server::plugin_store(catalog, data_dir.join("plugins"))?;
    let machine = crate::sidecar::machine::MachineProbe::new(
        data_dir.join("workspaces"),
        crate::sidecar::machine::Declared {
            cpu_millis: args.cpu_millis,
            memory_mb: args.memory_mb,
            disk_mb: args.disk_mb,
        },
    );
    let service = SidecarService::new(local, policies, plugins, token, machine);
    let draining = service.clone();
    let stop = async move {
        super::serve::shutdown_signal().await;
        eprintln!("toolgate sidecar: draining (no new sessions; running tasks are cancelled)");
        draining.drain(Duration::from_secs(10)).await;
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!("toolgate sidecar listening on {scheme}://{address}");
    // The same bounds as the API server's: a peer without the token cannot hold the sidecar
    // with idle or trickling connections.
    let limits = ConnectionLimits {
        header_timeout: Duration::from_millis(args.header_timeout_ms),
        max_connections: crate::server::fd_limit::fit_connection_cap(
            usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        ),
    };
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let connections = Arc::new(crate::server::ConnectionStats::default());
    let open =
        listener::accept_until(listener, router(service), limits, connections, stop, tls).await;
    open.finish(Duration::from_secs(10)).await;
    Ok(ExitCode::SUCCESS)
}

fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("toolgate-sidecar")
}
