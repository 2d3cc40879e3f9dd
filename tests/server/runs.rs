//! Agent runs through the real server: the shipped `tool-loop` agent against fake providers
//! on loopback that speak the OpenAI and Anthropic wire formats, scripted turn by turn.

use crate::common::{Server, SseEvent, problem, read_events, test_policies};
use crate::fake_model::{FakeModel, KEY, Turn, answer, secrets_file, tool_call};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use toolgate::agents::{ProviderConfig, ProviderKind};

/// A server with `providers`, the fake's key as secret `model_key`, and `policy` added to
/// the test policies.
async fn server_with(providers: Vec<ProviderConfig>, policy: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let secrets = secrets_file(dir.path(), &[]);
    let policies = test_policies(dir.path());
    std::fs::write(policies.join("runs.cedar"), policy).unwrap();
    let server = Server::start_with(move |config| {
        config.model_providers = providers;
        config.secrets_file = Some(secrets);
        config.policies = Some(policies);
    })
    .await;
    (server, dir)
}

/// The session's events until run `run` ends.
async fn run_events(server: &Server, key: &str, session: &str, run: &str) -> Vec<SseEvent> {
    let stream = server
        .get(key, &format!("/v1/sessions/{session}/events?after=0"))
        .await;
    read_events(stream, |e| {
        (e.name == "run.completed" || e.name == "run.failed") && e.data["run"] == run
    })
    .await
}

async fn start_run(server: &Server, key: &str, session: &str, body: Value) -> (StatusCode, Value) {
    let response = server
        .post(key, &format!("/v1/sessions/{session}/runs"), body)
        .await;
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// `turn` with `usage.cost` set, as OpenAI-compatible gateways report it.
fn with_cost(turn: Turn, cost: f64) -> Turn {
    let Turn::Answer(status, body) = turn else {
        return turn;
    };
    let mut body: Value = serde_json::from_str(&body).unwrap();
    body["usage"]["cost"] = cost.into();
    Turn::Answer(status, body.to_string())
}

/// `GET path` as JSON.
async fn get_json(server: &Server, key: &str, path: &str) -> Value {
    server.get(key, path).await.json().await.unwrap()
}

fn assert_no_key(what: &str, text: &str) {
    assert!(!text.contains(KEY), "the provider key leaked into {what}");
    assert!(
        !text.contains(&KEY[8..20]),
        "part of the provider key leaked into {what}"
    );
}

/// The model writes a file, reads it back and answers: the run, its events in order, its
/// tasks linked to it, its usage summed, and the key nowhere.
async fn write_read_answer(kind: ProviderKind) {
    let turns = vec![
        tool_call(
            kind,
            "call_1",
            "fs_write",
            json!({"path": "notes.txt", "content": "ahoy"}),
            (100, 20),
        ),
        tool_call(
            kind,
            "call_2",
            "fs_read",
            json!({"path": "notes.txt"}),
            (150, 10),
        ),
        answer(kind, "The file says ahoy.", (200, 8)),
    ];
    let fake = FakeModel::start(kind, turns).await;
    let (server, _dir) = server_with(vec![fake.provider("local", 5_000, 0)], "").await;
    let key = server.key("olga", "developer");
    let session = server.session(&key).await;
    let info: Value = get_json(&server, &key, "/v1/info").await;
    assert_eq!(info["agents"], json!(["tool-loop"]));
    assert_eq!(
        info["model_providers"],
        json!([{"name": "local", "models": ["fake-large", "fake-small"]}])
    );
    assert!(
        !info.to_string().contains(&fake.base_url),
        "no provider address"
    );

    let (status, run) = start_run(
        &server,
        &key,
        &session,
        json!({"agent": "tool-loop", "input": {"prompt": "Write ahoy to notes.txt, then read it."}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["state"], "completed", "{run}");
    assert_eq!(run["output"]["content"], "The file says ahoy.");
    assert_eq!(run["output"]["data"]["tool_calls"], 2);
    assert_eq!(run["provider"], "local");
    assert_eq!(run["model"], "fake-large");
    let usage = &run["usage"];
    assert_eq!(usage["model_calls"], 3, "{usage}");
    assert_eq!(usage["prompt_tokens"], 450);
    assert_eq!(usage["completion_tokens"], 38);
    assert_eq!(usage["tool_calls"], 2);
    let run_id = run["id"].as_str().unwrap();
    let stored = get_json(
        &server,
        &key,
        &format!("/v1/sessions/{session}/runs/{run_id}"),
    )
    .await;
    assert_eq!(stored, run);

    // The tool calls are tasks of the session, linked to the run; the file is there.
    let tasks: Value = get_json(&server, &key, &format!("/v1/sessions/{session}/tasks")).await;
    let tasks = tasks["tasks"].as_array().unwrap().clone();
    assert_eq!(tasks.len(), 2, "{tasks:?} {:#}", fake.seen()[2].body);
    for task in &tasks {
        assert_eq!(task["run"], run_id);
        assert_eq!(task["state"], "completed");
    }
    let file = server
        .get(&key, &format!("/v1/sessions/{session}/files/notes.txt"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(file, "ahoy");

    // What the provider got: the key in the header the host added, the tools offered, and
    // the tool results fed back.
    let seen = fake.seen();
    assert_eq!(seen.len(), 3);
    match kind {
        ProviderKind::Openai => {
            assert_eq!(seen[0].headers["authorization"], format!("Bearer {KEY}"));
            let tools: Vec<&str> = seen[0].body["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["function"]["name"].as_str().unwrap())
                .collect();
            assert!(
                tools.contains(&"fs_write") && tools.contains(&"fs_read"),
                "{tools:?}"
            );
            let last = seen[2].body["messages"].as_array().unwrap();
            let results: Vec<&Value> = last.iter().filter(|m| m["role"] == "tool").collect();
            assert_eq!(results.len(), 2);
            assert_eq!(results[1]["tool_call_id"], "call_2");
            assert!(results[1]["content"].as_str().unwrap().contains("ahoy"));
        }
        ProviderKind::Anthropic => {
            assert_eq!(seen[0].headers["x-api-key"], KEY);
            assert!(seen[0].headers.contains_key("anthropic-version"));
            let tools: Vec<&str> = seen[0].body["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap())
                .collect();
            assert!(tools.contains(&"fs_write"), "{tools:?}");
            let text = seen[2].body["messages"].to_string();
            assert!(
                text.contains("tool_result") && text.contains("call_2"),
                "{text}"
            );
        }
    }

    // The events, in order.
    let events = run_events(&server, &key, &session, run_id).await;
    let names: Vec<&str> = events
        .iter()
        .filter(|e| e.data["run"] == run_id)
        .map(|e| e.name.as_str())
        .collect();
    let expected = [
        "run.started",
        "message", // user
        "run.progress",
        "policy.decision",
        "model.called",
        "message", // assistant: fs.write
        "run.log",
        "task.queued",
        "message", // tool
        "run.progress",
        "policy.decision",
        "model.called",
        "message", // assistant: fs.read
        "run.log",
        "task.queued",
        "message", // tool
        "run.progress",
        "policy.decision",
        "model.called",
        "message", // the answer
        "run.completed",
    ];
    assert_eq!(names, expected);
    let messages: Vec<&Value> = events
        .iter()
        .filter(|e| e.name == "message")
        .map(|e| &e.data)
        .collect();
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[1]["tool_calls"][0]["name"], "fs.write");
    assert_eq!(messages[2]["role"], "tool");
    assert_eq!(messages[2]["tool_call_id"], "call_1");
    assert_eq!(messages[5]["content"], "The file says ahoy.");
    // Each tool call's own task events sit between its queueing and its result.
    let completed = events.iter().filter(|e| e.name == "task.completed").count();
    assert_eq!(completed, 2);
    let decisions: Vec<&Value> = events
        .iter()
        .filter(|e| e.name == "policy.decision" && e.data["action"] == "use_model")
        .map(|e| &e.data["decision"])
        .collect();
    assert_eq!(decisions.len(), 3);
    assert!(decisions.iter().all(|d| d["allowed"] == true));
    assert_eq!(decisions[0]["model_limits"]["model_calls"], 100);

    // The key is nowhere a client or the store can see.
    let all_events: String = events.iter().map(|e| e.data.to_string()).collect();
    assert_no_key("the events", &all_events);
    assert_no_key("the run", &run.to_string());
    assert_no_key("the tasks", &Value::from(tasks).to_string());
    drop(events);
    server.stop().await;
}

#[tokio::test]
async fn an_openai_run_writes_reads_and_answers() {
    write_read_answer(ProviderKind::Openai).await;
}

#[tokio::test]
async fn an_anthropic_run_writes_reads_and_answers() {
    write_read_answer(ProviderKind::Anthropic).await;
}

/// Policies for the failure cases: a second model call in a run is refused.
const ONE_CALL: &str = r#"@id("test.one-model-call")
forbid (principal, action == Action::"use_model", resource == ModelProvider::"strict")
when { context has calls && context.calls >= 1 };
@id("test.strict")
@tokens_per_call("64")
permit (principal, action == Action::"use_model", resource == ModelProvider::"strict");
"#;

#[tokio::test]
async fn failures_are_typed_and_leave_nothing_running() {
    // One fake per case, each its own provider.
    let (openai, anthropic) = (ProviderKind::Openai, ProviderKind::Anthropic);
    let hanging = FakeModel::start(ProviderKind::Anthropic, vec![Turn::Hang]).await;
    let garbage = FakeModel::start(
        ProviderKind::Openai,
        vec![Turn::Answer(200, "<html>not a completion</html>".into())],
    )
    .await;
    let lacking_turns = vec![
        tool_call(
            anthropic,
            "t1",
            "fs.write",
            json!({"path": "x.txt", "content": "no"}),
            (10, 5),
        ),
        tool_call(anthropic, "t2", "nope_tool", json!({}), (10, 5)),
        answer(anthropic, "I cannot write here.", (10, 5)),
    ];
    let loop_turn = tool_call(openai, "l", "fs_list", json!({"path": "."}), (30, 10));
    let denied_turn = tool_call(openai, "c1", "fs_list", json!({"path": "."}), (10, 5));
    let denied = FakeModel::start(openai, vec![denied_turn]).await;
    let flaky = FakeModel::start(
        openai,
        vec![
            Turn::Answer(500, r#"{"error": "overloaded"}"#.into()),
            // A gateway that says what the call cost.
            with_cost(answer(openai, "fine now", (10, 2)), 0.0025),
        ],
    )
    .await;
    let lacking = FakeModel::start(anthropic, lacking_turns).await;
    let looping = FakeModel::start(openai, vec![loop_turn; 8]).await;
    let policy = format!(
        "{ONE_CALL}\n{}",
        ["flaky", "hanging", "garbage", "lacking", "looping"]
            .iter()
            .map(|p| format!(
                "@id(\"test.{p}\")\npermit (principal, action == Action::\"use_model\", resource == ModelProvider::\"{p}\");\n"
            ))
            .collect::<String>()
    );
    let (server, _dir) = server_with(
        vec![
            denied.provider("strict", 5_000, 0),
            flaky.provider("flaky", 5_000, 2),
            hanging.provider("hanging", 300, 0),
            garbage.provider("garbage", 5_000, 0),
            lacking.provider("lacking", 5_000, 0),
            looping.provider("looping", 5_000, 0),
        ],
        &policy,
    )
    .await;
    let dev = server.key("olga", "developer");
    let reader = server.key("rita", "readonly");

    // A model call denied by policy: the agent gets a typed error and fails the run.
    let session = server.session(&dev).await;
    let (status, run) = start_run(
        &server,
        &dev,
        &session,
        json!({"agent": "tool-loop", "provider": "strict", "input": {"prompt": "list"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["error"]["kind"], "agent_failed");
    let message = run["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("model call denied") && message.contains("test.one-model-call"),
        "{message}"
    );
    assert_eq!(run["usage"]["model_calls"], 1);
    // @tokens_per_call lowered what the agent asked for.
    assert_eq!(
        denied.seen()[0].body["max_tokens"],
        64,
        "{}",
        denied.seen()[0].body
    );

    // 500, then 200: retried within one call.
    let session = server.session(&dev).await;
    let (_, run) = start_run(
        &server,
        &dev,
        &session,
        json!({"agent": "tool-loop", "provider": "flaky", "input": {"prompt": "hi"}}),
    )
    .await;
    assert_eq!(run["state"], "completed", "{run}");
    assert_eq!(run["output"]["content"], "fine now");
    assert_eq!(flaky.seen().len(), 2);
    assert_eq!(run["usage"]["model_calls"], 1);
    assert_eq!(run["usage"]["cost_usd"], 0.0025, "{run}");

    // A provider that hangs past its deadline.
    let hung_session = server.session(&dev).await;
    let session = hung_session.clone();
    let started = Instant::now();
    let (_, run) = start_run(
        &server,
        &dev,
        &session,
        json!({"agent": "tool-loop", "provider": "hanging", "input": {"prompt": "hi"}}),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(run["state"], "failed", "{run}");
    assert!(
        run["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timeout"),
        "{run}"
    );

    // One that answers garbage.
    let session = server.session(&dev).await;
    let (_, run) = start_run(
        &server,
        &dev,
        &session,
        json!({"agent": "tool-loop", "provider": "garbage", "input": {"prompt": "hi"}}),
    )
    .await;
    assert_eq!(run["state"], "failed", "{run}");
    assert!(
        run["error"]["message"]
            .as_str()
            .unwrap()
            .contains("provider"),
        "{run}"
    );
    assert_no_key("a provider error", &run.to_string());

    // Tools the profile lacks, and one nobody has: each a task outcome the model is told of.
    let session = server.session(&reader).await;
    let (_, run) = start_run(
        &server,
        &reader,
        &session,
        json!({"agent": "tool-loop", "provider": "lacking", "input": {"prompt": "write"}}),
    )
    .await;
    assert_eq!(run["state"], "completed", "{run}");
    let offered = lacking.seen()[0].body["tools"].to_string();
    assert!(
        offered.contains("fs_read") && !offered.contains("fs_write"),
        "{offered}"
    );
    let fed_back = lacking.seen()[2].body["messages"].to_string();
    assert!(
        fed_back.contains("denied") && fed_back.contains("unknown_tool"),
        "{fed_back}"
    );
    let tasks: Value = get_json(&server, &reader, &format!("/v1/sessions/{session}/tasks")).await;
    let tasks = tasks["tasks"].as_array().unwrap();
    assert_eq!(
        tasks.len(),
        1,
        "the denied call is a task; the unknown tool is not"
    );
    assert_eq!(tasks[0]["state"], "failed");
    assert_eq!(tasks[0]["error"]["kind"], "denied");
    assert_eq!(tasks[0]["run"], run["id"]);

    // An agent that loops past its step budget, then past its token budget.
    let session = server.session(&dev).await;
    let (_, run) = start_run(
        &server,
        &dev,
        &session,
        json!({"agent": "tool-loop", "provider": "looping",
               "input": {"prompt": "go", "max_steps": 3}}),
    )
    .await;
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["error"]["kind"], "budget_exhausted");
    assert_eq!(run["usage"]["model_calls"], 3);
    let (_, run) = start_run(
        &server,
        &dev,
        &session,
        json!({"agent": "tool-loop", "provider": "looping",
               "input": {"prompt": "go"}, "limits": {"tokens": 100}}),
    )
    .await;
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["error"]["kind"], "budget_exhausted");
    assert!(
        run["error"]["message"].as_str().unwrap().contains("token"),
        "{run}"
    );
    // 40 tokens a call: the third call may use only what is left, the fourth is refused.
    assert_eq!(run["usage"]["model_calls"], 3, "{run}");
    let seen = looping.seen();
    assert_eq!(seen[3].body["max_tokens"], 100);
    assert_eq!(seen[5].body["max_tokens"], 20);

    // Nothing is left running: the session whose provider hung takes a new run at once.
    let (status, run) = start_run(
        &server,
        &dev,
        &hung_session,
        json!({"agent": "tool-loop", "provider": "flaky", "input": {"prompt": "again"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    server.stop().await;
}

#[tokio::test]
async fn one_run_at_a_time_cancel_and_restart() {
    let fake = FakeModel::start(ProviderKind::Openai, vec![Turn::Hang, Turn::Hang]).await;
    let (server, _dir) = server_with(vec![fake.provider("local", 30_000, 0)], "").await;
    let key = server.key("olga", "developer");
    let session = server.session(&key).await;
    let body = json!({"agent": "tool-loop", "input": {"prompt": "wait"}, "wait": false});
    let (status, run) = start_run(&server, &key, &session, body.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(run["state"], "queued");
    let id = run["id"].as_str().unwrap().to_owned();

    let busy = server
        .post(&key, &format!("/v1/sessions/{session}/runs"), body.clone())
        .await;
    let refused = problem(busy, StatusCode::CONFLICT, "run_active").await;
    assert_eq!(refused["run"], id);

    // Another principal sees no such run and cannot cancel it.
    let other = server.key("oscar", "developer");
    problem(
        server
            .post(
                &other,
                &format!("/v1/sessions/{session}/runs/{id}/cancel"),
                json!({}),
            )
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    let cancelled = server
        .post(
            &key,
            &format!("/v1/sessions/{session}/runs/{id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.status(), StatusCode::ACCEPTED);
    let mut state = Value::Null;
    for _ in 0..100 {
        let run: Value =
            get_json(&server, &key, &format!("/v1/sessions/{session}/runs/{id}")).await;
        state = run["state"].clone();
        if state != "running" && state != "queued" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, "cancelled");
    problem(
        server
            .post(
                &key,
                &format!("/v1/sessions/{session}/runs/{id}/cancel"),
                json!({}),
            )
            .await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;

    // A run cut by a restart comes back interrupted, with its event.
    let (_, run) = start_run(&server, &key, &session, body).await;
    let id = run["id"].as_str().unwrap().to_owned();
    for _ in 0..100 {
        if fake.seen().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let server = server.restart().await;
    let run: Value = get_json(&server, &key, &format!("/v1/sessions/{session}/runs/{id}")).await;
    assert_eq!(run["state"], "interrupted", "{run}");
    assert_eq!(run["error"]["kind"], "interrupted");
    let events = run_events(&server, &key, &session, &id).await;
    let last = events.last().unwrap();
    assert!(
        events.iter().any(|e| e.name == "run.failed"
            && e.data["run"] == id.as_str()
            && e.data["state"] == "interrupted"),
        "{last:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_run_requests_are_refused_clearly() {
    let fake = FakeModel::start(ProviderKind::Openai, Vec::new()).await;
    let (server, _dir) = server_with(
        vec![
            fake.provider("local", 5_000, 0),
            fake.provider("unpermitted", 5_000, 0),
        ],
        "",
    )
    .await;
    let key = server.key("olga", "developer");
    let session = server.session(&key).await;
    let path = format!("/v1/sessions/{session}/runs");
    let cases = [
        (
            json!({"agent": "nope", "provider": "local"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_agent",
        ),
        (
            json!({"agent": "tool-loop", "provider": "elsewhere"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_model",
        ),
        (
            json!({"agent": "tool-loop", "provider": "local", "model": "gpt-9"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_model",
        ),
        (
            json!({"agent": "tool-loop"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_model",
        ),
        (
            json!({"agent": "tool-loop", "provider": "local", "input": [1]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({"agent": "tool-loop", "provider": "local", "limits": {"tokens": 0}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({"agent": "tool-loop", "provider": "local", "limits": {"steps": 3}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({"agent": "tool-loop", "provider": "local", "surprise": true}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({"provider": "local"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({"agent": "tool-loop", "provider": "unpermitted"}),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
    ];
    for (body, status, code) in cases {
        let detail = problem(server.post(&key, &path, body.clone()).await, status, code).await;
        assert!(
            !detail["detail"].as_str().unwrap_or("").is_empty(),
            "{body}: {detail}"
        );
    }
    // The agent refuses an input it does not take: a typed failure, not a server error.
    let (status, run) = start_run(
        &server,
        &key,
        &session,
        json!({"agent": "tool-loop", "provider": "local", "input": {"prompt": ""}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(run["state"], "failed");
    assert_eq!(run["error"]["kind"], "invalid_input");
    assert!(fake.seen().is_empty(), "no model call for a refused input");

    // An agent out of fuel: a sandbox failure, with the fuel it used.
    let (_, run) = start_run(
        &server,
        &key,
        &session,
        json!({"agent": "tool-loop", "provider": "local", "input": {"prompt": "hi"},
               "limits": {"fuel": 20000}}),
    )
    .await;
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["error"]["kind"], "fuel_exhausted", "{run}");
    assert!(run["usage"]["fuel_consumed"].as_u64().unwrap() > 0, "{run}");

    // No such session, no such run.
    problem(
        server
            .post(
                &key,
                "/v1/sessions/s_nope/runs",
                json!({"agent": "tool-loop"}),
            )
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    problem(
        server
            .get(&key, &format!("/v1/sessions/{session}/runs/r_nope"))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    server.stop().await;
}

/// An agent that reads everything it can (environment, arguments, directories, its tools, the
/// model's answer, the secret by name) finds no trace of the key, even from a provider that
/// echoes it back.
#[tokio::test]
async fn the_key_never_reaches_the_agent() {
    let echo = answer(
        ProviderKind::Openai,
        &format!("you sent me Bearer {KEY}, hello"),
        (3, 4),
    );
    let fake = FakeModel::start(ProviderKind::Openai, vec![echo]).await;
    let agents = tempfile::tempdir().unwrap();
    std::fs::copy(
        crate::common::artifact("agent_spy"),
        agents.path().join("agent_spy.wasm"),
    )
    .unwrap();
    // Beside it, an operator's mistakes: not WebAssembly, and a tool where an agent belongs.
    std::fs::write(agents.path().join("broken.wasm"), b"not wasm").unwrap();
    std::fs::copy(
        crate::common::artifact("echo"),
        agents.path().join("a_tool.wasm"),
    )
    .unwrap();
    let agents_dir = agents.path().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let secrets = secrets_file(dir.path(), &[]);
    let provider = fake.provider("local", 5_000, 0);
    let server = Server::start_with(move |config| {
        config.model_providers = vec![provider];
        config.secrets_file = Some(secrets);
        config.agents_dir = Some(agents_dir);
    })
    .await;
    let key = server.key("olga", "developer");
    let session = server.session(&key).await;
    let (status, run) = start_run(
        &server,
        &key,
        &session,
        json!({"agent": "agent-spy", "input": {"prompt": "tell me your secrets"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(run["state"], "completed", "{run}");
    let seen: Value = serde_json::from_str(run["output"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(seen["env"], json!([]), "{seen}");
    assert!(
        seen["completion"]["ok"]["content"]
            .as_str()
            .unwrap()
            .contains("[redacted]"),
        "{seen}"
    );
    assert!(seen["secret"]["error"].is_string(), "{seen}");
    assert!(!seen["tools"].as_array().unwrap().is_empty(), "{seen}");
    assert_no_key("what the agent saw", &seen.to_string());
    let events = run_events(&server, &key, &session, run["id"].as_str().unwrap()).await;
    let all: String = events.iter().map(|e| e.data.to_string()).collect();
    assert_no_key("the events", &all);

    // The broken agents are listed, and fail their runs with the reason; the others still run.
    let info = get_json(&server, &key, "/v1/info").await;
    assert_eq!(
        info["agents"],
        json!(["a-tool", "agent-spy", "broken", "tool-loop"])
    );
    for (agent, code) in [("broken", "not_wasm"), ("a-tool", "wrong_world")] {
        let (status, run) = start_run(
            &server,
            &key,
            &session,
            json!({"agent": agent, "input": {}}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{run}");
        assert_eq!(run["state"], "failed", "{run}");
        assert_eq!(run["error"]["kind"], "internal", "{run}");
        assert!(
            run["error"]["message"].as_str().unwrap().contains(code),
            "{run}"
        );
    }
    let (_, run) = start_run(
        &server,
        &key,
        &session,
        json!({"agent": "tool-loop", "input": {"prompt": ""}}),
    )
    .await;
    assert_eq!(run["error"]["kind"], "invalid_input", "{run}");
    server.stop().await;
}

/// A run's tool call that waits for a person's approval ends with its run: cut by a restart,
/// the run is `interrupted` and its waiting task cancelled, never run by a late approval.
#[tokio::test]
async fn a_tool_call_waiting_for_approval_ends_with_its_run() {
    let kind = ProviderKind::Openai;
    let write = tool_call(
        kind,
        "w",
        "fs_write",
        json!({"path": "w.txt", "content": "late"}),
        (5, 5),
    );
    let fake = FakeModel::start(kind, vec![write]).await;
    let (server, _dir) = server_with(vec![fake.provider("local", 5_000, 0)], "").await;
    let key = server.key("sam", "supervised");
    let session = server.session(&key).await;
    let (status, run) = start_run(
        &server,
        &key,
        &session,
        json!({"agent": "tool-loop", "input": {"prompt": "write"}, "wait": false}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let tasks = format!("/v1/sessions/{session}/tasks");
    let mut waiting = Value::Null;
    for _ in 0..200 {
        let listed: Value = get_json(&server, &key, &tasks).await;
        if let Some(task) = listed["tasks"].as_array().and_then(|t| t.first())
            && task["state"] == "awaiting_approval"
        {
            waiting = task.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(waiting["run"], run["id"], "{waiting}");
    let server = server.restart().await;
    let run: Value = get_json(
        &server,
        &key,
        &format!(
            "/v1/sessions/{session}/runs/{}",
            run["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(run["state"], "interrupted", "{run}");
    let task: Value = get_json(
        &server,
        &key,
        &format!("{tasks}/{}", waiting["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(task["state"], "cancelled", "{task}");
    let approval: Value = get_json(
        &server,
        &key,
        &format!("{tasks}/{}/approval", waiting["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(approval["state"], "cancelled", "{approval}");
    server.stop().await;
}

/// The server's own log, at debug level, never holds the key: not from a provider's error that
/// echoes it, nor from an answer that does.
#[tokio::test]
async fn the_key_is_never_logged() {
    use std::io::{BufRead, BufReader};
    let kind = ProviderKind::Openai;
    let echo_error = json!({"error": {"message": format!("bad key {KEY}")}});
    let fake = FakeModel::start(
        kind,
        vec![
            Turn::Answer(401, echo_error.to_string()),
            answer(kind, &format!("your key is {KEY}"), (1, 1)),
            Turn::Answer(500, format!("<html>{KEY}</html>")),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("toolgate.toml");
    std::fs::write(
        &config,
        format!(
            "[[model_providers]]\nname = \"local\"\nkind = \"openai\"\nbase_url = \"{}\"\n\
             models = [\"fake-large\"]\napi_key_secret = \"model_key\"\nmax_retries = 0\n",
            fake.base_url
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_toolgate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .env("TOOLGATE_LOG", "debug")
        .env("TOOLGATE_SECRET_MODEL_KEY", KEY)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("the server starts").unwrap();
        log.lock().unwrap().push_str(&line);
        if let Some(url) = line.strip_prefix("toolgate listening on ") {
            break url.trim().to_owned();
        }
    };
    let kept = log.clone();
    let reader = std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            kept.lock().unwrap().push_str(&line);
            kept.lock().unwrap().push('\n');
        }
    });
    let admin = std::fs::read_to_string(data.join("admin.key")).unwrap();
    let client = reqwest::Client::new();
    let session: Value = client
        .post(format!("{base}/v1/sessions"))
        .bearer_auth(admin.trim())
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let runs = format!(
        "{base}/v1/sessions/{}/runs",
        session["id"].as_str().unwrap()
    );
    let mut answers = String::new();
    for _ in 0..3 {
        let run: Value = client
            .post(&runs)
            .bearer_auth(admin.trim())
            .json(&json!({"agent": "tool-loop", "input": {"prompt": "hi"}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            run["state"] == "failed" || run["state"] == "completed",
            "{run}"
        );
        answers.push_str(&run.to_string());
    }
    assert_eq!(fake.seen().len(), 3);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    reader.join().unwrap();
    let log = log.lock().unwrap().clone();
    assert!(log.contains("DEBUG"), "the log is at debug level");
    assert_no_key("the server's log", &log);
    assert_no_key("the runs", &answers);
}

/// A run whose session is placed on a `toolgate sidecar`: the agent and the model calls stay
/// with the orchestrator, its tool calls run on the sidecar, where the session's files are.
#[tokio::test]
async fn a_run_of_a_session_on_a_remote_sidecar() {
    use crate::processes::{call, orchestrator, sidecar};
    let kind = ProviderKind::Openai;
    let fake = FakeModel::start(
        kind,
        vec![
            tool_call(
                kind,
                "a",
                "fs_write",
                json!({"path": "far.txt", "content": "remote"}),
                (5, 5),
            ),
            tool_call(kind, "b", "fs_read", json!({"path": "far.txt"}), (5, 5)),
            answer(kind, "it says remote", (5, 5)),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let secrets = secrets_file(dir.path(), &[]);
    let (_sidecar, url) = sidecar(dir.path(), &[]);
    let tables = format!(
        "secrets_file = \"{}\"\n[[sidecars]]\nid = \"far\"\nurl = \"{url}\"\ntoken_file = \"{}\"\n\
         [[model_providers]]\nname = \"local\"\nkind = \"openai\"\nbase_url = \"{}\"\n\
         models = [\"fake-large\"]\napi_key_secret = \"model_key\"\n",
        secrets.display(),
        dir.path().join("sidecar.token").display(),
        fake.base_url,
    );
    let (_orchestrator, base, admin) = orchestrator(dir.path(), &tables);
    let client = reqwest::Client::new();
    let (status, session) = call(&client, &admin, format!("{base}/v1/sessions"), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    assert_eq!(session["host"], "far", "{session}");
    let id = session["id"].as_str().unwrap();
    let (status, run) = call(
        &client,
        &admin,
        format!("{base}/v1/sessions/{id}/runs"),
        json!({"agent": "tool-loop", "input": {"prompt": "write then read"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["state"], "completed", "{run}");
    assert_eq!(run["output"]["content"], "it says remote");
    assert_eq!(run["usage"]["tool_calls"], 2);
    // What the sidecar's fs.read gave back reached the model.
    let fed_back = fake.seen()[2].body["messages"].to_string();
    assert!(fed_back.contains("remote"), "{fed_back}");
    let tasks =
        crate::processes::get(&client, &admin, format!("{base}/v1/sessions/{id}/tasks")).await;
    let tasks = tasks["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    assert!(
        tasks
            .iter()
            .all(|t| t["state"] == "completed" && t["run"] == run["id"])
    );
}
