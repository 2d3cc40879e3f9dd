//! Decision latency of the policy gate, and what the gate adds to a task.
//!
//! 1. `decide` against the shipped policy set;
//! 2. `decide` against a generated set of 1,000 policies over 10,000 entities;
//! 3. a trivial task (`echo`) through `run_gated` against the same task with
//!    an allow-all gate and no invoke decision.
//!
//! Run: `RUST_BACKTRACE=0 cargo bench --bench policy` (optionally `-- ITERATIONS`).

use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use toolgate::policy::{
    Action, AllowAll, AuthzRequest, CapabilityRequest, ConnectRequest, Gate, PolicyEngine,
    PolicyOrigin, ResourceRequest, TaskIdentity, principal_entity,
};
use toolgate::sandbox::{Catalog, EngineConfig, Executor, SandboxEngine, TaskRequest};
use toolgate::task::run_gated;

fn summarize(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{name:<44} n={:<7} p50={:>9.2?} p99={:>9.2?}",
        samples.len(),
        pick(0.5),
        pick(0.99)
    );
    pick(0.5)
}

fn profile(id: &str) -> serde_json::Value {
    json!({ "__entity": { "type": "Profile", "id": id } })
}

fn invoke(principal: &str, tool: &str, profile_id: &str) -> AuthzRequest {
    AuthzRequest {
        principal: principal.into(),
        action: Action::Invoke,
        resource: ("Tool".into(), tool.into()),
        context: json!({
            "session": "s",
            "profile": profile(profile_id),
            "resources": { "cpu_millis": 1000, "memory_mb": 256, "disk_mb": 512, "timeout_ms": 600000 },
            "input": { "path": "notes.txt" }
        }),
    }
}

fn connect(principal: &str, host: &str, profile_id: &str) -> AuthzRequest {
    AuthzRequest {
        principal: principal.into(),
        action: Action::Connect,
        resource: ("Domain".into(), host.into()),
        context: json!({
            "session": "s", "profile": profile(profile_id), "tool": "http.fetch",
            "scheme": "https", "host": host, "port": 443, "method": "GET", "path": "/",
            "address": { "__extn": { "fn": "ip", "arg": "140.82.112.6" } }
        }),
    }
}

/// Decides `requests` in turn the way tasks do: `invoke` through
/// `authorize_invoke`, capability uses through the task's gate.
/// `repeat`: the same requests come back (as an agent's calls do) and meet
/// the decision cache; otherwise every request has its own session id, so
/// each one is evaluated by Cedar.
fn measure(
    engine: &Arc<PolicyEngine>,
    requests: &[AuthzRequest],
    iterations: usize,
    repeat: bool,
) -> Vec<Duration> {
    let counter = std::cell::Cell::new(0u64);
    let session = || {
        counter.set(counter.get() + 1);
        if repeat {
            "s".to_owned()
        } else {
            format!("s{}", counter.get())
        }
    };
    let decide = |request: &AuthzRequest| -> bool {
        let profile = request.context["profile"]["__entity"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        match request.action {
            Action::Invoke => {
                let identity = TaskIdentity {
                    principal: request.principal.clone(),
                    profile,
                    session: session(),
                    tool: request.resource.1.clone(),
                };
                engine
                    .authorize_invoke(
                        &identity,
                        ResourceRequest::default(),
                        r#"{"path":"notes.txt"}"#,
                    )
                    .allowed
            }
            _ => {
                let identity = TaskIdentity {
                    principal: request.principal.clone(),
                    profile,
                    session: session(),
                    tool: "http.fetch".into(),
                };
                let gate = engine.task_gate(identity);
                let connect = CapabilityRequest::Connect(ConnectRequest {
                    scheme: "https".into(),
                    host: request.resource.1.clone(),
                    port: 443,
                    method: "GET".into(),
                    path: "/".into(),
                    addr: Some("140.82.112.6".parse().unwrap()),
                });
                gate.decide(&connect).allowed
            }
        }
    };
    for request in requests.iter().cycle().take(1000) {
        std::hint::black_box(decide(request));
    }
    let mut samples = Vec::with_capacity(iterations);
    for request in requests.iter().cycle().take(iterations) {
        let started = Instant::now();
        std::hint::black_box(decide(request));
        samples.push(started.elapsed());
    }
    samples
}

/// The schema-checked path of `toolgate policy explain` and policy tests.
fn measure_checked(
    engine: &PolicyEngine,
    requests: &[AuthzRequest],
    iterations: usize,
) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(iterations);
    for request in requests.iter().cycle().take(iterations) {
        let started = Instant::now();
        std::hint::black_box(engine.decide(request));
        samples.push(started.elapsed());
    }
    samples
}

/// 1,000 policies over 10,000 entities: principals in groups and profiles,
/// tools in plugins and tool groups, domains in lists.
fn generated_set() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    std::fs::copy(
        root.join("schema.cedarschema"),
        dir.path().join("schema.cedarschema"),
    )
    .unwrap();
    let mut policies = String::new();
    for i in 0..1000 {
        let text = match i % 10 {
            0..=5 => format!(
                "@id(\"p{i}\") @fuel(\"{}\") permit (principal in Group::\"g{}\", action == Action::\"invoke\", resource in ToolGroup::\"tg{}\") when {{ principal in context.profile && context.resources.memory_mb <= 512 }};\n",
                1_000_000 + i,
                i % 200,
                i % 50
            ),
            6 | 7 => format!(
                "@id(\"p{i}\") permit (principal in Group::\"g{}\", action == Action::\"connect\", resource in DomainList::\"dl{}\") when {{ context.scheme == \"https\" && context.port == 443 }};\n",
                i % 200,
                i % 20
            ),
            8 => format!(
                "@id(\"p{i}\") forbid (principal == Principal::\"u{}\", action, resource) when {{ context has session && context.session == \"blocked-{i}\" }};\n",
                i * 7
            ),
            _ => format!(
                "@id(\"p{i}\") permit (principal in Group::\"g{}\", action == Action::\"read_secret\", resource == Secret::\"s{}\");\n",
                i % 200,
                i % 100
            ),
        };
        policies.push_str(&text);
    }
    std::fs::write(dir.path().join("generated.cedar"), policies).unwrap();
    let mut entities =
        vec![json!({ "uid": { "type": "Profile", "id": "standard" }, "attrs": {}, "parents": [] })];
    for g in 0..200 {
        entities.push(json!({ "uid": { "type": "Group", "id": format!("g{g}") }, "attrs": {}, "parents": [] }));
    }
    for t in 0..50 {
        entities.push(json!({ "uid": { "type": "ToolGroup", "id": format!("tg{t}") }, "attrs": {}, "parents": [] }));
    }
    for l in 0..20 {
        entities.push(json!({ "uid": { "type": "DomainList", "id": format!("dl{l}") }, "attrs": {}, "parents": [] }));
    }
    for u in 0..6000 {
        entities.push(json!({ "uid": { "type": "Principal", "id": format!("u{u}") }, "attrs": {},
            "parents": [{ "type": "Group", "id": format!("g{}", u % 200) }, { "type": "Profile", "id": "standard" }] }));
    }
    for t in 0..2500 {
        entities.push(json!({ "uid": { "type": "Tool", "id": format!("plugin{}.tool{t}", t % 100) }, "attrs": {},
            "parents": [{ "type": "Plugin", "id": format!("plugin{}", t % 100) }, { "type": "ToolGroup", "id": format!("tg{}", t % 50) }] }));
    }
    for d in 0..1230 {
        entities.push(
            json!({ "uid": { "type": "Domain", "id": format!("d{d}.example.com") }, "attrs": {},
            "parents": [{ "type": "DomainList", "id": format!("dl{}", d % 20) }] }),
        );
    }
    entities.push(json!({ "uid": { "type": "Tool", "id": "echo.echo" }, "attrs": {}, "parents": [{ "type": "ToolGroup", "id": "tg0" }] }));
    assert!(entities.len() >= 10_000, "{}", entities.len());
    std::fs::write(
        dir.path().join("entities.json"),
        serde_json::to_string(&entities).unwrap(),
    )
    .unwrap();
    dir
}

fn main() {
    let iterations: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);

    let shipped = Arc::new(PolicyEngine::load(PolicyOrigin::Embedded).unwrap());
    shipped
        .upsert_entities([
            principal_entity("alice", &["developer"]),
            principal_entity("carol", &["networked"]),
        ])
        .unwrap();
    let requests = [
        invoke("alice", "fs.read", "developer"),
        invoke("alice", "http.fetch", "developer"),
        connect("carol", "api.github.com", "networked"),
        connect("carol", "evil.example.com", "networked"),
    ];
    assert!(shipped.decide(&requests[0]).allowed && !shipped.decide(&requests[1]).allowed);
    summarize(
        "decide, shipped set (11 policies), evaluated",
        measure(&shipped, &requests, iterations, false),
    );
    summarize(
        "decide, shipped set, repeated (cache)",
        measure(&shipped, &requests, iterations, true),
    );
    summarize(
        "decide, shipped set, schema-checked (explain)",
        measure_checked(&shipped, &requests, iterations / 10),
    );

    let dir = generated_set();
    let started = Instant::now();
    let generated = Arc::new(PolicyEngine::load(PolicyOrigin::Dir(dir.path().into())).unwrap());
    println!(
        "load + validate 1,000 policies / 10,000 entities: {:.2?}",
        started.elapsed()
    );
    let mut requests = Vec::new();
    for u in (0..6000).step_by(97) {
        requests.push(invoke(
            &format!("u{u}"),
            &format!("plugin{}.tool{}", u % 100, u % 2500),
            "standard",
        ));
        requests.push(connect(
            &format!("u{u}"),
            &format!("d{}.example.com", u % 1230),
            "standard",
        ));
    }
    let allowed = requests
        .iter()
        .filter(|r| generated.decide(r).allowed)
        .count();
    println!("generated requests: {} ({allowed} allowed)", requests.len());
    summarize(
        "decide, 1,000 policies / 10,000 entities, evaluated",
        measure(&generated, &requests, iterations, false),
    );
    summarize(
        "decide, 1,000 policies, repeated (cache)",
        measure(&generated, &requests, iterations, true),
    );

    // What the gate adds to a trivial task.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let engine = Arc::new(SandboxEngine::new(EngineConfig::default()).unwrap());
        let bytes = std::fs::read(
            std::path::Path::new(env!("TOOLGATE_PLUGIN_ARTIFACTS")).join("echo.wasm"),
        )
        .unwrap();
        let plugin = Catalog::new(engine.clone(), None)
            .load_bytes("echo", &bytes)
            .await
            .unwrap();
        let executor = Executor::new(engine, Arc::new(AllowAll));
        let policy = generated;
        let identity = TaskIdentity {
            principal: "u0".into(),
            profile: "standard".into(),
            session: "s".into(),
            tool: "echo.echo".into(),
        };
        let tasks = iterations / 5;
        let mut plain = Vec::with_capacity(tasks);
        let mut gated = Vec::with_capacity(tasks);
        for i in 0..tasks + tasks / 10 {
            let started = Instant::now();
            let outcome = executor
                .run(&plugin, TaskRequest::new("echo", r#"{"a":1}"#))
                .await;
            assert!(outcome.result.is_ok());
            let plain_time = started.elapsed();
            let started = Instant::now();
            let outcome = run_gated(
                &policy,
                &executor,
                &plugin,
                identity.clone(),
                ResourceRequest::default(),
                toolgate::policy::PolicyLimits::default(),
                TaskRequest::new("echo", r#"{"a":1}"#),
            )
            .await;
            assert!(
                outcome.ran && outcome.outcome.result.is_ok(),
                "{:?}",
                outcome.decision
            );
            if i >= tasks / 10 {
                plain.push(plain_time);
                gated.push(started.elapsed());
            }
        }
        let plain = summarize("trivial task, allow-all gate", plain);
        let gated = summarize("trivial task, Cedar gate (1,000 policies)", gated);
        println!(
            "the gate adds {:.1}% at the median",
            (gated.as_secs_f64() / plain.as_secs_f64() - 1.0) * 100.0
        );
    });
}
