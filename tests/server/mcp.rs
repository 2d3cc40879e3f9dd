//! `/mcp` over a real socket, spoken by hand: the 2025-11-25 session flow and the stateless
//! 2026-07-28 one, each tool call a task with its events; and every bad request answered
//! with a clear HTTP or JSON-RPC error. (The official SDKs drive it in `mcp_clients.rs`.)

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const LEGACY: &str = "2025-11-25";
const STATELESS: &str = "2026-07-28";

/// One MCP client of a server, speaking JSON-RPC over POSTs by hand.
pub struct McpClient<'a> {
    pub server: &'a Server,
    pub key: String,
    /// The query string of the endpoint URL (`session=...`), if any.
    pub query: String,
    /// Set by `initialize` (2025-11-25).
    pub session: Option<String>,
    next_id: u64,
}

impl<'a> McpClient<'a> {
    pub fn new(server: &'a Server, key: &str) -> Self {
        Self {
            server,
            key: key.to_owned(),
            query: String::new(),
            session: None,
            next_id: 1,
        }
    }

    pub fn url(&self) -> String {
        if self.query.is_empty() {
            self.server.url("/mcp")
        } else {
            self.server.url(&format!("/mcp?{}", self.query))
        }
    }

    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut request = self
            .server
            .client
            .post(self.url())
            .bearer_auth(&self.key)
            .header("accept", "application/json, text/event-stream")
            .json(body);
        if let Some(session) = &self.session {
            request = request
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", LEGACY);
        }
        request
    }

    /// `initialize` then `notifications/initialized`: an MCP session. Answers the result.
    pub async fn initialize(&mut self) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": LEGACY, "capabilities": {},
            "clientInfo": {"name": "toolgate-tests", "version": "1"}}});
        let response = self.post(&body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let session = response.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let answer = answer_of(response, 0).await;
        self.session = Some(session);
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let response = self.post(&initialized).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        answer["result"].clone()
    }

    /// One request in the MCP session (or stateless, with the 2026-07-28 headers and `_meta`
    /// when there is none): the whole JSON-RPC answer, and the notifications before it.
    pub async fn call(&mut self, method: &str, mut params: Value) -> (Value, Vec<Value>) {
        let id = self.next_id;
        self.next_id += 1;
        let mut request = if self.session.is_some() {
            self.post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
        } else {
            params["_meta"]["io.modelcontextprotocol/protocolVersion"] = STATELESS.into();
            params["_meta"]["io.modelcontextprotocol/clientCapabilities"] = json!({});
            let name = params["name"].as_str().map(str::to_owned);
            let mut request = self
                .post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
                .header("mcp-protocol-version", STATELESS)
                .header("mcp-method", method);
            if let Some(name) = name {
                request = request.header("mcp-name", name);
            }
            request
        };
        request = request.timeout(std::time::Duration::from_secs(60));
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{method}");
        let messages = messages_of(response).await;
        let (answer, notes): (Vec<Value>, Vec<Value>) = messages
            .into_iter()
            .partition(|m| m.get("id") == Some(&json!(id)));
        (answer.into_iter().next().expect("an answer"), notes)
    }

    /// `DELETE /mcp`: ends the MCP session.
    pub async fn end(&self) -> reqwest::Response {
        self.server
            .client
            .delete(self.server.url("/mcp"))
            .bearer_auth(&self.key)
            .header("mcp-session-id", self.session.as_deref().unwrap())
            .header("mcp-protocol-version", LEGACY)
            .send()
            .await
            .unwrap()
    }

    pub async fn tool(&mut self, name: &str, arguments: Value) -> Value {
        let (answer, _) = self
            .call("tools/call", json!({"name": name, "arguments": arguments}))
            .await;
        answer["result"].clone()
    }
}

/// The JSON-RPC messages of an answer (SSE `data:` lines, or one JSON body).
pub async fn messages_of(response: reqwest::Response) -> Vec<Value> {
    let json = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let text = response.text().await.unwrap();
    if json {
        return vec![serde_json::from_str(&text).unwrap()];
    }
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .filter(|data| !data.is_empty())
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

async fn answer_of(response: reqwest::Response, id: u64) -> Value {
    messages_of(response)
        .await
        .into_iter()
        .find(|m| m.get("id") == Some(&json!(id)))
        .expect("an answer")
}

fn tool_names(result: &Value) -> Vec<String> {
    result["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

fn text_of(result: &Value) -> String {
    result["content"][0]["text"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_mcp_session_lists_what_policy_allows_and_runs_each_call_as_a_task() {
    let server = Server::start().await;
    let key = server.key("alice", "developer");
    let mut mcp = McpClient::new(&server, &key);
    let init = mcp.initialize().await;
    assert_eq!(init["protocolVersion"], LEGACY);
    assert_eq!(init["serverInfo"]["name"], "toolgate");
    assert_eq!(init["capabilities"]["tools"]["listChanged"], true);
    let session = init["_meta"]["toolgate/session"]
        .as_str()
        .unwrap()
        .to_owned();
    let view: Value = server
        .get(&key, &format!("/v1/sessions/{session}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["state"], "open");
    assert_eq!(view["profile"], "developer");

    let (listed, _) = mcp.call("tools/list", json!({})).await;
    let names = tool_names(&listed["result"]);
    assert!(names.contains(&"fs.write".to_owned()), "{names:?}");
    assert!(names.contains(&"fs.read".to_owned()), "{names:?}");
    // Networked sessions only: not listed for a developer.
    assert!(!names.contains(&"http.fetch".to_owned()), "{names:?}");
    let fs_read = &listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "fs.read")
        .unwrap()
        .clone();
    assert_eq!(fs_read["inputSchema"]["type"], "object");

    let written = mcp
        .tool(
            "fs.write",
            json!({"path": "note.txt", "content": "over mcp"}),
        )
        .await;
    assert_eq!(written["isError"], false, "{written}");
    assert_eq!(written["_meta"]["toolgate/session"], session.as_str());
    let read = mcp.tool("fs.read", json!({"path": "note.txt"})).await;
    assert_eq!(read["isError"], false, "{read}");
    assert!(text_of(&read).contains("over mcp"), "{read}");

    // A denial is a tool result with the reason, recorded as a task like any other.
    let denied = mcp
        .tool("http.fetch", json!({"url": "https://example.com"}))
        .await;
    assert_eq!(denied["isError"], true, "{denied}");
    assert!(text_of(&denied).contains("denied"), "{denied}");
    let denied_task = denied["_meta"]["toolgate/task"].as_str().unwrap();
    let task: Value = server
        .get(&key, &format!("/v1/sessions/{session}/tasks/{denied_task}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(task["state"], "failed");
    assert_eq!(task["error"]["kind"], "denied");

    // The calls' events are on the session's stream.
    let stream = server
        .client
        .get(server.url(&format!("/v1/sessions/{session}/events?after=0")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let tasks = [
        written["_meta"]["toolgate/task"].clone(),
        read["_meta"]["toolgate/task"].clone(),
    ];
    let mut completed = 0;
    let events = read_events(stream, |e| {
        if e.name == "task.completed" && tasks.contains(&e.data["task"]) {
            completed += 1;
        }
        e.name == "task.failed" && e.data["task"] == denied_task
    })
    .await;
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names[0], "session.created", "{names:?}");
    assert_eq!(completed, 2, "{names:?}");
    assert!(names.contains(&"policy.decision"), "{names:?}");

    // Unknown tool: a JSON-RPC error, not a task.
    let (unknown, _) = mcp
        .call(
            "tools/call",
            json!({"name": "nope.nothing", "arguments": {}}),
        )
        .await;
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
    assert_eq!(unknown["error"]["data"]["code"], "unknown_tool");

    // Closing the MCP session closes the session opened for it.
    let deleted = mcp.end().await;
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let mut state = String::new();
    for _ in 0..100 {
        let view: Value = server
            .get(&key, &format!("/v1/sessions/{session}"))
            .await
            .json()
            .await
            .unwrap();
        state = view["state"].as_str().unwrap().to_owned();
        if state == "closed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(state, "closed");
}

#[tokio::test]
async fn closing_the_session_ends_its_mcp_session_and_others_cannot_use_either() {
    let server = Server::start().await;
    let alice = server.key("alice", "developer");
    let bob = server.key("bob", "developer");
    // Bound to a session made over the API, named on the URL.
    let session = server.session(&alice).await;
    let mut mcp = McpClient::new(&server, &alice);
    mcp.query = format!("session={session}");
    let init = mcp.initialize().await;
    assert_eq!(init["_meta"]["toolgate/session"], session.as_str());
    let written = mcp
        .tool("fs.write", json!({"path": "a.txt", "content": "x"}))
        .await;
    assert_eq!(written["isError"], false, "{written}");

    // A second MCP session bound to the same session, then ended: the first stays Alice's.
    let mut second = McpClient::new(&server, &alice);
    second.query = format!("session={session}");
    second.initialize().await;
    let ended = second.end().await;
    assert!(ended.status().is_success());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(server.app.orchestrator.is_open(
        &toolgate::orchestrator::Caller {
            principal: "alice".into(),
            profile: "developer".into(),
            admin: false
        },
        &session
    ));

    // Bob can neither use Alice's MCP session nor bind one to her session.
    let mut stolen = McpClient::new(&server, &bob);
    stolen.session = mcp.session.clone();
    let refused = stolen
        .post(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    problem(refused, StatusCode::FORBIDDEN, "forbidden").await;
    let mut borrowing = McpClient::new(&server, &bob);
    borrowing.query = format!("session={session}");
    let body = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "b", "version": "1"}}});
    let answer = answer_of(borrowing.post(&body).send().await.unwrap(), 0).await;
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no session"),
        "{answer}"
    );

    // Closing the session over the API ends the MCP session: 404, start a new one.
    let closed = server
        .delete(&alice, &format!("/v1/sessions/{session}"))
        .await;
    assert_eq!(closed.status(), StatusCode::OK);
    let gone = mcp
        .post(&json!({"jsonrpc": "2.0", "id": 10, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    problem(gone, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn a_stateless_client_works_in_the_session_it_names_or_one_its_key_shares() {
    let server = Server::start().await;
    let key = server.key("carol", "developer");
    let mut mcp = McpClient::new(&server, &key);
    let written = mcp
        .tool("fs.write", json!({"path": "s.txt", "content": "stateless"}))
        .await;
    assert_eq!(written["isError"], false, "{written}");
    let shared = written["_meta"]["toolgate/session"]
        .as_str()
        .unwrap()
        .to_owned();
    // The next request of the key works in the same session: the file is there.
    let read = mcp.tool("fs.read", json!({"path": "s.txt"})).await;
    assert_eq!(read["_meta"]["toolgate/session"], shared.as_str());
    assert!(text_of(&read).contains("stateless"), "{read}");

    // Naming another session of the caller's works in that one.
    let other = server.session(&key).await;
    mcp.query = format!("session={other}");
    let missing = mcp.tool("fs.read", json!({"path": "s.txt"})).await;
    assert_eq!(missing["_meta"]["toolgate/session"], other.as_str());
    assert_eq!(missing["isError"], true, "{missing}");

    // Logs only when the request asks for them, progress only with a token.
    let (listed, _) = mcp.call("tools/list", json!({})).await;
    assert!(tool_names(&listed["result"]).contains(&"fs.read".to_owned()));
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let server = Server::start_with(|c| c.body_limit = 64 * 1024).await;
    let key = server.key("dave", "developer");
    let post = |key: Option<&str>, body: String| {
        let mut request = server
            .client
            .post(server.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request
    };
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}})
    .to_string();

    let none = post(None, initialize.clone()).send().await.unwrap();
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    problem(none, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let wrong = post(Some("tg_not_a_key"), initialize.clone())
        .send()
        .await
        .unwrap();
    problem(wrong, StatusCode::UNAUTHORIZED, "unauthorized").await;

    let evil_origin = post(Some(&key), initialize.clone())
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    let body = problem(evil_origin, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(
        body["detail"].as_str().unwrap().contains("Origin"),
        "{body}"
    );
    let local_origin = post(Some(&key), initialize.clone())
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(local_origin.status(), StatusCode::OK);
    let rebinding = post(Some(&key), initialize.clone())
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    let body = problem(rebinding, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(body["detail"].as_str().unwrap().contains("Host"), "{body}");

    // Not JSON: a JSON-RPC parse error.
    let garbled = post(
        Some(&key),
        "{\"jsonrpc\": \"2.0\", \"id\": 1, \"meth".into(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(garbled.status(), StatusCode::BAD_REQUEST);
    let body: Value = garbled.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32700, "{body}");
    // JSON but not JSON-RPC.
    let not_rpc = post(Some(&key), "[1, 2, 3]".into()).send().await.unwrap();
    assert!(not_rpc.status().is_client_error(), "{}", not_rpc.status());
    // Larger than the body limit: 413, nothing read past it.
    let huge = format!(
        "{{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \"tools/list\", \"params\": {{\"pad\": \"{}\"}}}}",
        "x".repeat(1 << 20)
    );
    let too_large = post(Some(&key), huge).send().await.unwrap();
    problem(
        too_large,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    // A session id nobody issued.
    let unknown = post(
        Some(&key),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string(),
    )
    .header("mcp-session-id", "no-such-session")
    .header("mcp-protocol-version", LEGACY)
    .send()
    .await
    .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    // The server still answers.
    let mut mcp = McpClient::new(&server, &key);
    mcp.initialize().await;
    let (listed, _) = mcp.call("tools/list", json!({})).await;
    assert!(!tool_names(&listed["result"]).is_empty());
}

#[tokio::test]
async fn a_principal_has_a_bounded_number_of_mcp_sessions() {
    let server = Server::start_with(|c| c.mcp_max_sessions_per_principal = 2).await;
    let key = server.key("erin", "developer");
    let mut first = McpClient::new(&server, &key);
    first.initialize().await;
    let mut second = McpClient::new(&server, &key);
    second.initialize().await;
    let body = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}});
    let third = McpClient::new(&server, &key);
    let refused = answer_of(third.post(&body).send().await.unwrap(), 0).await;
    assert_eq!(
        refused["error"]["data"]["code"], "too_many_sessions",
        "{refused}"
    );
    // Another principal is not affected; ending one makes room again.
    let other = server.key("frank", "developer");
    McpClient::new(&server, &other).initialize().await;
    let deleted = first.end().await;
    assert!(deleted.status().is_success());
    let mut again = false;
    for _ in 0..50 {
        let answer = answer_of(third.post(&body).send().await.unwrap(), 0).await;
        if answer.get("result").is_some() {
            again = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(again, "no room after an MCP session ended");
}

#[tokio::test]
async fn installing_a_plugin_tells_mcp_clients_their_tool_list_changed() {
    let server = Server::start().await;
    let key = server.key("gina", "developer");
    let mut mcp = McpClient::new(&server, &key);
    mcp.initialize().await;
    let (before, _) = mcp.call("tools/list", json!({})).await;
    assert!(!tool_names(&before["result"]).contains(&"echo.echo".to_owned()));
    let stream = server
        .client
        .get(server.url("/mcp"))
        .bearer_auth(&key)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", mcp.session.as_deref().unwrap())
        .header("mcp-protocol-version", LEGACY)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let upload = server
        .send(
            server
                .client
                .put(server.url("/v1/plugins/echo"))
                .bearer_auth(&server.admin)
                .header("content-type", "application/wasm")
                .body(std::fs::read(artifact("echo")).unwrap()),
        )
        .await;
    assert_eq!(upload.status(), StatusCode::CREATED);
    let mut body = stream.bytes_stream();
    let mut seen = String::new();
    let changed = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        use futures_util::StreamExt;
        while let Some(Ok(chunk)) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("notifications/tools/list_changed") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(changed, Ok(true), "{seen}");
    // The list is made again: the new plugin's tool, which developers may not run, stays out;
    // the tools they may run are still there.
    let (after, _) = mcp.call("tools/list", json!({})).await;
    let names = tool_names(&after["result"]);
    assert!(names.contains(&"fs.read".to_owned()), "{names:?}");
    assert!(!names.contains(&"echo.echo".to_owned()), "{names:?}");
}
