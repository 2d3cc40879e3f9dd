//! The gate under concurrent load: the first tasks of a plugin, and plugins installed
//! while the policy set reloads, are never denied for want of their tools' entities.

use crate::common::*;
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use toolgate::policy::PolicySources;

/// Plugins no task has used yet, and tasks fired at each of them, all at once.
const FIRST_USED: usize = 8;
const FIRST_TASKS: usize = 32;
/// Domains on the allow list of the first-use test.
const ALLOWED_DOMAINS: usize = 5000;
/// Plugins installed while the policies reload, and tasks fired at each.
const INSTALLS: usize = 12;
const TASKS_PER_INSTALL: usize = 8;

/// A policy file allowing developers every tool of `plugins`, by plugin: a tool is
/// allowed only once it is a `Tool in Plugin` entity.
fn allow_plugins(policies: &Path, plugins: impl IntoIterator<Item = String>) {
    let text: String = plugins
        .into_iter()
        .map(|p| {
            format!(
                "@id(\"gate.{p}\")\npermit (principal, action == Action::\"invoke\", resource in Plugin::\"{p}\")\nwhen {{ principal in context.profile && context.profile in Profile::\"developer\" }};\n"
            )
        })
        .collect();
    write_atomically(policies, "gate.cedar", &text);
}

/// Writes `dir/name` whole (a reload never reads half a file).
fn write_atomically(dir: &Path, name: &str, text: &str) {
    let mut file = tempfile::NamedTempFile::new_in(dir).unwrap();
    std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
    file.persist(dir.join(name)).unwrap();
}

/// A policy file that gives the set a new version and decides nothing.
fn churn(dir: &Path, round: usize) {
    write_atomically(
        dir,
        "churn.cedar",
        &format!(
            "@id(\"churn-{round}\")\nforbid (principal, action == Action::\"use_model\", resource) when {{ false }};\n"
        ),
    );
}

/// Runs `plugin.echo` in `session` and returns the finished task.
async fn echo(server: &Server, key: &str, session: &str, plugin: &str, n: usize) -> Value {
    let response = server
        .post(
            key,
            &format!("/v1/sessions/{session}/tasks"),
            json!({"tool": format!("{plugin}.echo"), "input": {"n": n}}),
        )
        .await;
    let status = response.status();
    let task: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{task}");
    task
}

/// Every task completed; a denied one shows its decision.
fn assert_all_completed(tasks: &[Value]) {
    let failed: Vec<&Value> = tasks.iter().filter(|t| t["state"] != "completed").collect();
    assert!(
        failed.is_empty(),
        "{} of {} tasks did not complete, e.g. {}",
        failed.len(),
        tasks.len(),
        failed[0]
    );
}

/// Adds a long domain allow list to the policy set's entities, as a real deployment may
/// have: rebuilding the entities then takes a while, as it does under load.
fn long_allow_list(policies: &Path) {
    let path = policies.join("entities.json");
    let mut entities: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    entities.extend((0..ALLOWED_DOMAINS).map(|i| {
        json!({
            "uid": { "type": "Domain", "id": format!("d{i}.example.com") },
            "attrs": {},
            "parents": [{ "type": "DomainList", "id": "networked" }],
        })
    }));
    std::fs::write(path, serde_json::to_string(&entities).unwrap()).unwrap();
}

fn unlimited(config: &mut toolgate::server::ServeConfig) {
    config.rate_limit = 100_000;
    config.rate_burst = 100_000;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_tasks_of_a_plugin_are_never_denied_for_want_of_its_entities() {
    // Plugins from the plugin directory that no task has used yet.
    let names: Vec<String> = (0..FIRST_USED).map(|i| format!("fresh{i}")).collect();
    let server = Server::start_with(|config| {
        unlimited(config);
        let plugins = config.plugins.clone().unwrap();
        for name in &names {
            std::fs::copy(artifact("echo"), plugins.join(format!("{name}.wasm"))).unwrap();
        }
        let policies = config.policies.as_ref().unwrap();
        allow_plugins(policies, names.clone());
        long_allow_list(policies);
    })
    .await;
    let key = server.key("pia", "developer");
    let session = server.session(&key).await;
    // Listing the plugins loads them, so the first tasks do not queue behind a load.
    let listed: Value = server.get(&key, "/v1/plugins").await.json().await.unwrap();
    let listed = listed["plugins"].as_array().unwrap();
    assert!(
        names
            .iter()
            .all(|n| listed.iter().any(|p| p["name"] == n.as_str()))
    );

    let tasks = join_all(names.iter().flat_map(|name| {
        let (server, key, session) = (&server, &key, &session);
        (0..FIRST_TASKS).map(move |n| echo(server, key, session, name, n))
    }))
    .await;
    assert_all_completed(&tasks);
    for task in &tasks {
        let plugin = task["tool"].as_str().unwrap().trim_end_matches(".echo");
        assert_eq!(
            task["decision"]["reasons"],
            json!([format!("gate.{plugin}")]),
            "{task}"
        );
        assert_eq!(task["output"]["n"], task["input"]["n"], "{task}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plugins_installed_while_policies_reload_are_never_denied_nor_lost() {
    let names: Vec<String> = (0..INSTALLS).map(|i| format!("fresh{i}")).collect();
    let mut policies = PathBuf::new();
    let server = Server::start_with(|config| {
        unlimited(config);
        config.policy_poll = Duration::from_millis(5);
        policies = config.policies.clone().unwrap();
        allow_plugins(&policies, names.clone());
        churn(&policies, 0);
    })
    .await;
    let key = server.key("pia", "developer");
    let session = server.session(&key).await;
    let echo_wasm = std::fs::read(artifact("echo")).unwrap();

    // A new policy version every few milliseconds, for the whole run.
    let stop = Arc::new(AtomicBool::new(false));
    let churner = {
        let (stop, policies) = (stop.clone(), policies.clone());
        tokio::spawn(async move {
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                churn(&policies, round);
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            round
        })
    };

    let mut tasks = Vec::new();
    for name in &names {
        let response = server
            .client
            .put(server.url(&format!("/v1/plugins/{name}")))
            .bearer_auth(&server.admin)
            .header("content-type", "application/wasm")
            .body(echo_wasm.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "{name}");
        tasks.extend(
            join_all((0..TASKS_PER_INSTALL).map(|n| echo(&server, &key, &session, name, n))).await,
        );
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = churner.await.unwrap();
    assert_all_completed(&tasks);
    assert!(
        rounds > 1,
        "the policies changed while plugins were installed"
    );

    // Once the last policy set is active, every installed plugin's tools are still allowed.
    let latest = PolicySources::read_dir(&policies).unwrap().version();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info: Value = server
            .get(&server.admin, "/v1/info")
            .await
            .json()
            .await
            .unwrap();
        if info["policy"]["version"] == latest.as_str() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the last set never became active: {info}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = join_all(
        names
            .iter()
            .map(|name| echo(&server, &key, &session, name, 0)),
    )
    .await;
    assert_all_completed(&after);
    for task in &after {
        assert_eq!(
            task["decision"]["policy_version"],
            latest.as_str(),
            "{task}"
        );
    }
    server.stop().await;
}
