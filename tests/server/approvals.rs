//! Approvals: a permit marked `@approval("required")` (the shipped `supervised` profile's
//! write tools) makes a task wait for a person. Only a principal the policy lets `approve`
//! answers; no answer in time denies; a restart keeps a pending approval pending; over MCP the
//! call waits until decided.

use crate::common::*;
use crate::mcp::McpClient;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

/// A server where a policy lets `bob` approve (the shipped `approvals.approvers` permit does
/// the same for the members of `Group::"approvers"`). The file stays across a restart.
async fn server_with_approver(adjust: impl FnOnce(&mut toolgate::server::ServeConfig)) -> Server {
    Server::start_with(|config| {
        let dir = config.policies.clone().unwrap();
        let permit = r#"@id("test.bob-approves")
permit (principal == Principal::"bob", action == Action::"approve", resource);
"#;
        std::fs::write(dir.join("approvers.cedar"), permit).unwrap();
        adjust(config);
    })
    .await
}

/// Starts `fs.write` in a supervised session without waiting; the task's id.
async fn start_write(server: &Server, key: &str, session: &str) -> String {
    let response = server
        .post(
            key,
            &format!("/v1/sessions/{session}/tasks"),
            json!({"tool": "fs.write", "input": {"path": "x.txt", "content": "approved"}, "wait": false}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let task: Value = response.json().await.unwrap();
    task["id"].as_str().unwrap().to_owned()
}

async fn task_state(server: &Server, key: &str, session: &str, task: &str) -> Value {
    server
        .get(key, &format!("/v1/sessions/{session}/tasks/{task}"))
        .await
        .json()
        .await
        .unwrap()
}

/// The task once it is in `state` (or whatever it is after 30 s).
async fn await_state(server: &Server, key: &str, session: &str, task: &str, state: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..600 {
        last = task_state(server, key, session, task).await;
        if last["state"] == state {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("task {task} never reached {state}: {last}");
}

async fn answer(
    server: &Server,
    key: &str,
    session: &str,
    task: &str,
    body: Value,
) -> reqwest::Response {
    server
        .post(
            key,
            &format!("/v1/sessions/{session}/tasks/{task}/approval"),
            body,
        )
        .await
}

#[tokio::test]
async fn a_waiting_task_runs_once_an_approver_says_yes() {
    let server = server_with_approver(|_| {}).await;
    let alice = server.key("alice", "supervised");
    let bob = server.key("bob", "readonly");
    let carol = server.key("carol", "developer");
    let session = server.session(&alice).await;
    let stream = server
        .client
        .get(server.url(&format!("/v1/sessions/{session}/events")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    let task = start_write(&server, &alice, &session).await;

    // An SSE client sees the request, with the decision that asked for it.
    let events = read_events(stream, |e| e.name == "approval.requested").await;
    let requested = events.last().unwrap();
    assert_eq!(requested.name, "approval.requested");
    assert_eq!(requested.data["task"], task.as_str());
    assert_eq!(requested.data["requester"], "alice");
    assert_eq!(requested.data["decision"]["approval_required"], true);
    assert_eq!(
        requested.data["answer_at"],
        format!("/v1/sessions/{session}/tasks/{task}/approval")
    );
    let waiting = task_state(&server, &alice, &session, &task).await;
    assert_eq!(waiting["state"], "awaiting_approval");
    let pending: Value = server
        .get(
            &alice,
            &format!("/v1/sessions/{session}/tasks/{task}/approval"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pending["state"], "pending");

    // Neither someone outside the approvers nor the requester may answer.
    let refused = answer(&server, &carol, &session, &task, json!({"approve": true})).await;
    let body = problem(refused, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(
        body["detail"].as_str().unwrap().contains("default deny"),
        "{body}"
    );
    let own = answer(&server, &alice, &session, &task, json!({"approve": true})).await;
    problem(own, StatusCode::FORBIDDEN, "forbidden").await;
    // Bad answers are refused with what to fix.
    let bad = answer(&server, &bob, &session, &task, json!({"approve": "yes"})).await;
    assert!(bad.status().is_client_error());
    let escapes = answer(
        &server,
        &bob,
        &session,
        &task,
        json!({"approve": false, "comment": "ok\u{1b}[2J\u{202e}"}),
    )
    .await;
    problem(escapes, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    let long = answer(
        &server,
        &bob,
        &session,
        &task,
        json!({"approve": true, "comment": "x".repeat(5000)}),
    )
    .await;
    problem(long, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    assert_eq!(
        task_state(&server, &alice, &session, &task).await["state"],
        "awaiting_approval"
    );

    // The approver's inbox lists it with what it would run; others' inboxes do not.
    let inbox: Value = server
        .get(&bob, "/v1/approvals")
        .await
        .json()
        .await
        .unwrap();
    let listed = inbox.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{inbox}");
    assert_eq!(listed[0]["task"], task.as_str());
    assert_eq!(listed[0]["input"]["content"], "approved");
    let none: Value = server
        .get(&carol, "/v1/approvals")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none, json!([]));

    let approved = answer(
        &server,
        &bob,
        &session,
        &task,
        json!({"approve": true, "comment": "fine"}),
    )
    .await;
    assert_eq!(approved.status(), StatusCode::OK);
    let approval: Value = approved.json().await.unwrap();
    assert_eq!(approval["state"], "approved");
    assert_eq!(approval["answered_by"], "bob");
    assert_eq!(approval["comment"], "fine");
    let done = await_state(&server, &alice, &session, &task, "completed").await;
    assert_eq!(done["output"]["bytes_written"], 8, "{done}");

    // The first answer is the only one; each answer is a recorded decision.
    let again = answer(&server, &bob, &session, &task, json!({"approve": false})).await;
    problem(again, StatusCode::CONFLICT, "conflict").await;
    server.app.store.flush().unwrap();
    let decisions = server.app.store.decisions(&session, Some(&task)).unwrap();
    let approvals: Vec<&Value> = decisions
        .iter()
        .filter(|d| d["action"] == "approve")
        .collect();
    assert!(approvals.len() >= 4, "{decisions:?}");
    assert!(
        approvals
            .iter()
            .any(|d| d["principal"] == "bob" && d["decision"]["allowed"] == true),
        "{approvals:?}"
    );
    assert!(
        approvals
            .iter()
            .any(|d| d["principal"] == "carol" && d["decision"]["allowed"] == false),
        "{approvals:?}"
    );
}

#[tokio::test]
async fn a_no_or_no_answer_in_time_denies_the_task() {
    let server = server_with_approver(|c| c.approval_timeout = Duration::from_secs(1)).await;
    let alice = server.key("alice", "supervised");
    let bob = server.key("bob", "readonly");
    let session = server.session(&alice).await;

    let expiring = start_write(&server, &alice, &session).await;
    let expired = await_state(&server, &alice, &session, &expiring, "failed").await;
    assert_eq!(expired["error"]["kind"], "denied", "{expired}");
    assert!(
        expired["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nobody approved"),
        "{expired}"
    );
    let late = answer(&server, &bob, &session, &expiring, json!({"approve": true})).await;
    problem(late, StatusCode::CONFLICT, "conflict").await;

    let refused = start_write(&server, &alice, &session).await;
    await_state(&server, &alice, &session, &refused, "awaiting_approval").await;
    let no = answer(
        &server,
        &bob,
        &session,
        &refused,
        json!({"approve": false, "comment": "not now"}),
    )
    .await;
    assert_eq!(no.status(), StatusCode::OK);
    let denied = await_state(&server, &alice, &session, &refused, "failed").await;
    assert_eq!(denied["error"]["kind"], "denied");
    assert!(
        denied["error"]["message"]
            .as_str()
            .unwrap()
            .contains("approval denied by `bob`: not now"),
        "{denied}"
    );
    // Nothing ran: no file.
    let file = server
        .get(&alice, &format!("/v1/sessions/{session}/files/x.txt"))
        .await;
    assert_eq!(file.status(), StatusCode::NOT_FOUND);

    // A cancelled waiting task ends its approval.
    let cancelled = start_write(&server, &alice, &session).await;
    await_state(&server, &alice, &session, &cancelled, "awaiting_approval").await;
    let cancel = server
        .post(
            &alice,
            &format!("/v1/sessions/{session}/tasks/{cancelled}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(cancel.status(), StatusCode::ACCEPTED);
    await_state(&server, &alice, &session, &cancelled, "cancelled").await;
    let approval: Value = server
        .get(
            &alice,
            &format!("/v1/sessions/{session}/tasks/{cancelled}/approval"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(approval["state"], "cancelled");
}

#[tokio::test]
async fn a_pending_approval_stays_pending_across_a_restart() {
    let server = server_with_approver(|_| {}).await;
    let alice = server.key("alice", "supervised");
    let bob = server.key("bob", "readonly");
    let session = server.session(&alice).await;
    let task = start_write(&server, &alice, &session).await;
    await_state(&server, &alice, &session, &task, "awaiting_approval").await;

    let server = server.restart().await;
    let waiting = task_state(&server, &alice, &session, &task).await;
    assert_eq!(waiting["state"], "awaiting_approval", "{waiting}");
    let approved = answer(&server, &bob, &session, &task, json!({"approve": true})).await;
    assert_eq!(approved.status(), StatusCode::OK);
    await_state(&server, &alice, &session, &task, "completed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_call_waits_until_a_person_decides() {
    let server = server_with_approver(|_| {}).await;
    let alice = server.key("alice", "supervised");
    let bob = server.key("bob", "readonly");
    let mut mcp = McpClient::new(&server, &alice);
    let init = mcp.initialize().await;
    let session = init["_meta"]["toolgate/session"]
        .as_str()
        .unwrap()
        .to_owned();
    let approver = async {
        for _ in 0..600 {
            let pending = server.app.store.pending_approvals().unwrap();
            if let Some(approval) = pending.iter().find(|a| a.session == session) {
                let task = approval.task.clone();
                return answer(&server, &bob, &session, &task, json!({"approve": true}))
                    .await
                    .status();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no approval was requested");
    };
    let call = mcp.call(
        "tools/call",
        json!({"name": "fs.write", "arguments": {"path": "m.txt", "content": "mcp"},
               "_meta": {"progressToken": "w"}}),
    );
    let ((answer, notes), approved) = tokio::join!(call, approver);
    assert_eq!(approved, StatusCode::OK);
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    // The wait was announced as progress, naming where to answer.
    assert!(
        notes.iter().any(|n| n["method"] == "notifications/progress"
            && n["params"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("approve")),
        "{notes:?}"
    );
}
