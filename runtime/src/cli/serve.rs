//! `toolgate serve` and `toolgate keys`.

use crate::policy::{PolicyEngine, PolicyOrigin};
use crate::server::{ServeArgs, ServeConfig};
use crate::store::Store;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

pub(crate) async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = ServeConfig::resolve(args)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    // The real address (port 0 picks one) is what the data directory's lock file records.
    let mut config = config;
    config.listen = listener.local_addr()?;
    let app = crate::server::build(config).await?;
    if let Some(file) = &app.admin_key_file {
        eprintln!(
            "created an admin API key in {} (use it as `Authorization: Bearer <key>`)",
            file.display()
        );
    }
    eprintln!("toolgate listening on http://{}", listener.local_addr()?);
    crate::server::run(listener, app, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// A key for a profile the policies do not know would open sessions nothing can be decided for.
fn known_profile(config: &ServeConfig, profile: &str) -> anyhow::Result<()> {
    let origin = config
        .policies
        .clone()
        .map_or(PolicyOrigin::Embedded, PolicyOrigin::Dir);
    let described = match &origin {
        PolicyOrigin::Embedded => "the policies built into toolgate".to_owned(),
        PolicyOrigin::Shipped(sources) => sources.origin.clone(),
        PolicyOrigin::Dir(dir) => format!("the policies in {}", dir.display()),
    };
    let engine = PolicyEngine::load(origin)
        .map_err(|e| anyhow::anyhow!("cannot load {described} to check the profile: {e}"))?;
    anyhow::ensure!(
        engine.has_profile(profile),
        "unknown profile `{profile}`: {described} have no `Profile::\"{profile}\"` entity (see entities.json)"
    );
    Ok(())
}

#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Create an API key for a principal; the key is printed once, alone on the last line.
    Create {
        #[arg(long)]
        principal: String,
        /// The profile the principal belongs to for policy decisions.
        #[arg(long)]
        profile: String,
        /// May manage plugins.
        #[arg(long)]
        admin: bool,
        #[arg(long, env = "TOOLGATE_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// The policy directory the server uses, where the profile must exist [default: the
        /// server's config, else the policies built into the binary].
        #[arg(long, env = "TOOLGATE_POLICIES")]
        policies: Option<PathBuf>,
        /// The server's config file (for its data directory and policies).
        #[arg(long, env = "TOOLGATE_CONFIG")]
        config: Option<PathBuf>,
        /// Create the data directory if there is none yet.
        #[arg(long)]
        init: bool,
    },
    /// List the keys (never their secrets), revoked ones included.
    List {
        /// Print JSON (one array) instead of a table.
        #[arg(long)]
        json: bool,
        #[arg(long, env = "TOOLGATE_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Revoke a key by its id: a server on the same data directory refuses it from its next
    /// request on and ends its event streams.
    Revoke {
        /// The key's id (`key_...`, see `keys list`).
        id: String,
        #[arg(long, env = "TOOLGATE_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
}

/// The store of an existing data directory: listing or revoking keys never creates one.
fn existing_store(data_dir: Option<PathBuf>) -> anyhow::Result<Store> {
    let config = ServeConfig::resolve(crate::server::ServeArgs {
        data_dir,
        ..Default::default()
    })?;
    crate::store::data_dir::check_existing(&config.data_dir, false)?;
    Ok(Store::open(&config.data_dir)?)
}

/// A time for people: RFC 7231's date in UTC, to the second.
fn when(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    httpdate::fmt_http_date(at)
}

fn list_keys(json: bool, data_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let store = existing_store(data_dir)?;
    let keys = store.list_keys()?;
    store.close();
    if json {
        super::print_json(&serde_json::to_value(&keys)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = format!(
        "{:<36}  {:<20}  {:<16}  {:<5}  {:<29}  {}\n",
        "ID", "PRINCIPAL", "PROFILE", "ADMIN", "CREATED", "REVOKED"
    );
    for key in &keys {
        out.push_str(&format!(
            "{:<36}  {:<20}  {:<16}  {:<5}  {:<29}  {}\n",
            key.id,
            key.principal,
            key.profile,
            if key.admin { "yes" } else { "no" },
            when(key.created_at_ms),
            key.revoked_at_ms.map_or_else(|| "-".to_owned(), when),
        ));
    }
    use std::io::Write;
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn revoke_key(id: &str, data_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let store = existing_store(data_dir)?;
    let already = store.key(id)?.and_then(|k| k.revoked_at_ms);
    let revoked = store.revoke_key(id)?;
    store.close();
    let key = revoked
        .ok_or_else(|| anyhow::anyhow!("no key with id `{id}` (see `toolgate keys list`)"))?;
    match already {
        Some(at) => eprintln!("key {} was already revoked ({})", key.id, when(at)),
        None => eprintln!(
            "revoked key {} of principal `{}` (profile `{}`)",
            key.id, key.principal, key.profile
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn keys(command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::List { json, data_dir } => list_keys(json, data_dir),
        KeysCommand::Revoke { id, data_dir } => revoke_key(&id, data_dir),
        KeysCommand::Create {
            principal,
            profile,
            admin,
            data_dir,
            policies,
            config,
            init,
        } => {
            let valid =
                |s: &str| !s.is_empty() && s.len() <= 128 && !s.chars().any(char::is_control);
            anyhow::ensure!(
                valid(&principal),
                "--principal must be 1-128 printable characters"
            );
            anyhow::ensure!(
                valid(&profile),
                "--profile must be 1-128 printable characters"
            );
            let config = ServeConfig::resolve(crate::server::ServeArgs {
                data_dir,
                policies,
                config,
                ..Default::default()
            })?;
            known_profile(&config, &profile)?;
            crate::store::data_dir::check_existing(&config.data_dir, init)?;
            let store = Store::open(&config.data_dir)?;
            let key = store.create_key(&principal, &profile, admin)?;
            store.close();
            eprintln!(
                "created key {} for principal `{principal}` (profile `{profile}`); it is shown only once:",
                key.id
            );
            println!("{}", key.key);
            Ok(ExitCode::SUCCESS)
        }
    }
}
