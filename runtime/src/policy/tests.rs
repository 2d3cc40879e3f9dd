//! Reloads and entity changes from many threads at once: each is one serialized, versioned
//! update, so none undoes another.

use super::sources::{PolicySources, SCHEMA_FILE};
use super::{Action, AuthzRequest, PolicyEngine, PolicyOrigin, tool_entity};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};

/// Plugins registered by each registering thread, and registering threads.
const PER_THREAD: usize = 12;
const REGISTRARS: usize = 4;
/// Policy sets written and reloaded while they register.
const RELOADS: usize = 40;

fn plugin(index: usize) -> String {
    format!("p{index}")
}

/// A policy directory whose permits allow `invoke` on the tools of every plugin, by
/// plugin: a tool is allowed only while its `Tool in Plugin` entity exists.
fn policy_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(SCHEMA_FILE),
        PolicySources::embedded().schema.text,
    )
    .unwrap();
    let permits: String = (0..PER_THREAD * REGISTRARS)
        .map(|i| {
            let p = plugin(i);
            format!("@id(\"{p}\")\npermit (principal, action == Action::\"invoke\", resource in Plugin::\"{p}\");\n")
        })
        .collect();
    std::fs::write(dir.path().join("plugins.cedar"), permits).unwrap();
    write_churn(dir.path(), 0);
    dir
}

/// A policy file that changes the set's version each round and decides nothing.
fn write_churn(dir: &Path, round: usize) {
    let text = format!(
        "@id(\"churn-{round}\")\nforbid (principal, action == Action::\"use_model\", resource) when {{ false }};\n"
    );
    let mut file = tempfile::NamedTempFile::new_in(dir).unwrap();
    std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
    file.persist(dir.join("churn.cedar")).unwrap();
}

fn invoke(tool: &str) -> AuthzRequest {
    AuthzRequest {
        principal: "dana".into(),
        action: Action::Invoke,
        resource: ("Tool".into(), tool.into()),
        context: json!({
            "session": "s",
            "profile": { "__entity": { "type": "Profile", "id": "developer" } },
            "resources": { "cpu_millis": 1, "memory_mb": 1, "disk_mb": 1, "timeout_ms": 1 },
            "input": {}
        }),
    }
}

#[test]
fn reloads_and_entity_changes_from_many_threads_undo_nothing() {
    let dir = policy_dir();
    let engine = Arc::new(PolicyEngine::load(PolicyOrigin::Dir(dir.path().into())).unwrap());
    // What has happened so far, for a watcher to check every active snapshot against:
    // the round of each policy version, and the tools whose entity change has returned.
    let rounds = Arc::new(Mutex::new(HashMap::from([(engine.version(), 0)])));
    let added = Arc::new(Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(REGISTRARS + 2));

    let mut threads = Vec::new();
    for thread in 0..REGISTRARS {
        let (engine, start, added) = (engine.clone(), start.clone(), added.clone());
        threads.push(std::thread::spawn(move || {
            start.wait();
            for i in thread * PER_THREAD..(thread + 1) * PER_THREAD {
                let p = plugin(i);
                // Both ways in: a plain upsert and a keyed registration.
                if i % 2 == 0 {
                    engine.upsert_entities([tool_entity(&p, "t")]).unwrap();
                } else {
                    engine
                        .register_entities(&format!("plugin:{p}"), || vec![tool_entity(&p, "t")])
                        .unwrap();
                }
                added.lock().unwrap().push(format!("{p}.t"));
            }
        }));
    }
    {
        let (engine, start, rounds) = (engine.clone(), start.clone(), rounds.clone());
        let dir = dir.path().to_owned();
        threads.push(std::thread::spawn(move || {
            start.wait();
            for round in 1..=RELOADS {
                write_churn(&dir, round);
                let version = PolicySources::read_dir(&dir).unwrap().version();
                rounds.lock().unwrap().insert(version, round);
                assert!(engine.reload().unwrap(), "round {round} is a new version");
            }
        }));
    }
    // Every snapshot ever active: policies never older than the last seen, and every
    // tool whose entity change returned still an entity.
    let watcher = {
        let (engine, start, done) = (engine.clone(), start.clone(), done.clone());
        let (rounds, added) = (rounds.clone(), added.clone());
        std::thread::spawn(move || {
            start.wait();
            let mut last_round = 0;
            while !done.load(Ordering::Acquire) {
                let added = added.lock().unwrap().clone();
                let snapshot = engine.snapshot();
                let round = rounds.lock().unwrap()[&snapshot.version];
                assert!(
                    round >= last_round,
                    "policies of round {round} after {last_round}"
                );
                last_round = round;
                for tool in &added {
                    let uid = cedar_policy::EntityUid::from_type_name_and_id(
                        "Tool".parse().unwrap(),
                        cedar_policy::EntityId::new(tool),
                    );
                    assert!(
                        snapshot.entities.get(&uid).is_some(),
                        "{tool} lost at round {round}"
                    );
                }
            }
        })
    };
    let finished: Vec<_> = threads.into_iter().map(|t| t.join()).collect();
    done.store(true, Ordering::Release);
    watcher.join().unwrap();
    for result in finished {
        result.unwrap();
    }

    // The latest policies, every entity, and one revision per update.
    let latest = PolicySources::read_dir(dir.path()).unwrap().version();
    assert_eq!(engine.version(), latest);
    for i in 0..PER_THREAD * REGISTRARS {
        let tool = format!("{}.t", plugin(i));
        let decision = engine.decide(&invoke(&tool));
        assert!(
            decision.allowed,
            "{tool} after the last reload: {decision:?}"
        );
        assert_eq!(decision.policy_version, latest);
    }
    assert_eq!(
        engine.status().revision,
        1 + RELOADS as u64 + (PER_THREAD * REGISTRARS) as u64
    );
}

#[test]
fn everyone_registering_a_plugin_at_once_returns_after_it_is_active() {
    let dir = policy_dir();
    let engine = Arc::new(PolicyEngine::load(PolicyOrigin::Dir(dir.path().into())).unwrap());
    let start = Arc::new(Barrier::new(16));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (engine, start) = (engine.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                engine
                    .register_entities("plugin:p0@1", || vec![tool_entity("p0", "t")])
                    .unwrap();
                engine.decide(&invoke("p0.t")).allowed
            })
        })
        .collect();
    for thread in threads {
        assert!(
            thread.join().unwrap(),
            "decided before the tools were entities"
        );
    }
    assert_eq!(engine.status().revision, 2, "registered once");
}

#[test]
fn an_entity_change_that_does_not_validate_changes_nothing() {
    let dir = policy_dir();
    let engine = PolicyEngine::load(PolicyOrigin::Dir(dir.path().into())).unwrap();
    let bad = json!({ "uid": { "type": "Nope", "id": "x" }, "attrs": {}, "parents": [] });
    assert!(
        engine
            .register_entities("bad", || vec![bad.clone(), tool_entity("p0", "t")])
            .is_err()
    );
    assert!(!engine.snapshot().is_registered("bad"));
    assert!(!engine.decide(&invoke("p0.t")).allowed);
    // Nor does it stay behind to spoil the next reload or registration.
    write_churn(dir.path(), 1);
    assert!(engine.reload().unwrap());
    engine
        .register_entities("good", || vec![tool_entity("p0", "t")])
        .unwrap();
    assert!(engine.decide(&invoke("p0.t")).allowed);
    assert_eq!(engine.status().revision, 3);
}
