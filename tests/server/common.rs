use crate::contract::{Answer, Contract};
use futures_util::StreamExt;
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use toolgate::server::{App, ServeConfig};

pub fn artifact(name: &str) -> PathBuf {
    PathBuf::from(env!("TOOLGATE_PLUGIN_ARTIFACTS")).join(format!("{name}.wasm"))
}

/// Policies that let developers also run the test-only plugins.
pub fn test_policies(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let out = dir.join("policies");
    std::fs::create_dir_all(&out).unwrap();
    for file in ["schema.cedarschema", "entities.json", "profiles.cedar"] {
        std::fs::copy(root.join(file), out.join(file)).unwrap();
    }
    let extra = r#"@id("test.plugins")
@fuel("40000000000")
@timeout_ms("20000")
permit (principal, action == Action::"invoke", resource in Plugin::"hostile")
when { principal in context.profile && context.profile in Profile::"developer" };
@id("test.approver")
permit (principal == Principal::"approver", action == Action::"approve", resource);
"#;
    std::fs::write(out.join("test.cedar"), extra).unwrap();
    out
}

pub struct Server {
    pub base: String,
    pub app: Arc<App>,
    pub client: Client,
    pub admin: String,
    /// The documented answers this server's responses were checked against.
    pub checked: Arc<Mutex<BTreeSet<Answer>>>,
    /// Kept alive: the data, policies and plugins live in it.
    _data: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut ServeConfig)) -> Self {
        let data = tempfile::tempdir().unwrap();
        let plugins = data.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::copy(artifact("hostile"), plugins.join("hostile.wasm")).unwrap();
        Self::start_in(data, None, adjust).await
    }

    /// Stops the server and starts a new one on the same data directory.
    pub async fn restart(mut self) -> Self {
        let data = self.take_data();
        let admin = self.admin.clone();
        self.stop().await;
        Self::start_in(data, Some(admin), |_| {}).await
    }

    fn take_data(&mut self) -> tempfile::TempDir {
        std::mem::replace(&mut self._data, tempfile::tempdir().unwrap())
    }

    async fn start_in(
        data: tempfile::TempDir,
        admin: Option<String>,
        adjust: impl FnOnce(&mut ServeConfig),
    ) -> Self {
        let mut config = ServeConfig::for_data_dir(&data.path().join("data"));
        config.policies = Some(test_policies(data.path()));
        config.plugins = Some(data.path().join("plugins"));
        adjust(&mut config);
        let app = toolgate::server::build(config)
            .await
            .expect("server builds");
        let admin = admin.unwrap_or_else(|| {
            std::fs::read_to_string(
                app.admin_key_file
                    .as_ref()
                    .expect("first start makes a key"),
            )
            .unwrap()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(toolgate::server::run(listener, app.clone(), async move {
            let _ = stopped.await;
        }));
        Self {
            base,
            app,
            client: Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            admin: admin.trim().to_owned(),
            checked: Arc::default(),
            _data: data,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The server's data directory (store, workspaces).
    pub fn data_dir(&self) -> PathBuf {
        self._data.path().join("data")
    }

    /// A new key for `principal` in `profile`.
    pub fn key(&self, principal: &str, profile: &str) -> String {
        self.app
            .store
            .create_key(principal, profile, false)
            .unwrap()
            .key
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, key: &str, path: &str, body: Value) -> Response {
        self.send(
            self.client
                .post(self.url(path))
                .bearer_auth(key)
                .json(&body),
        )
        .await
    }

    pub async fn get(&self, key: &str, path: &str) -> Response {
        self.send(self.client.get(self.url(path)).bearer_auth(key))
            .await
    }

    pub async fn delete(&self, key: &str, path: &str) -> Response {
        self.send(self.client.delete(self.url(path)).bearer_auth(key))
            .await
    }

    /// Sends `request` and checks the response against the OpenAPI document (an event stream
    /// by its status and content type only: its body is left to the caller).
    pub async fn send(&self, request: RequestBuilder) -> Response {
        let request = request.build().unwrap();
        let method = request.method().clone();
        let path = request.url().path().to_owned();
        let response = self.client.execute(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let streaming = content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("text/event-stream"));
        if streaming {
            self.record(&method, &path, status, content_type.as_deref(), None);
            return response;
        }
        let version = response.version();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap();
        self.record(&method, &path, status, content_type.as_deref(), Some(&body));
        let mut rebuilt = http::Response::builder().status(status).version(version);
        *rebuilt.headers_mut().unwrap() = headers;
        Response::from(rebuilt.body(body).unwrap())
    }

    fn record(
        &self,
        method: &reqwest::Method,
        path: &str,
        status: StatusCode,
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) {
        match Contract::get().check(method, path, status.as_u16(), content_type, body) {
            Ok(Some(answer)) => {
                self.checked.lock().unwrap().insert(answer);
            }
            Ok(None) => {}
            Err(e) => panic!(
                "{method} {path} answered {status}, which the OpenAPI document does not allow: {e}"
            ),
        }
    }

    pub async fn session(&self, key: &str) -> String {
        let response = self.post(key, "/v1/sessions", json!({})).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// Asserts a problem+json response with `status` and `code`.
pub async fn problem(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16());
    body
}

/// One SSE event as read off the wire.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<u64>,
    pub name: String,
    pub data: Value,
}

/// Reads SSE events from `response` until `stop` says so or the stream ends.
pub async fn read_events(
    response: Response,
    mut stop: impl FnMut(&SseEvent) -> bool,
) -> Vec<SseEvent> {
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    while let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
        buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut event = SseEvent {
                id: None,
                name: "message".into(),
                data: Value::Null,
            };
            let mut is_event = false;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    event.id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event.name = v.trim().into();
                    is_event = true;
                } else if let Some(v) = line.strip_prefix("data:") {
                    event.data =
                        serde_json::from_str(v.trim()).unwrap_or(Value::String(v.trim().into()));
                    is_event = true;
                }
            }
            if is_event {
                if let Err(e) = Contract::get().check_event(&event.name, &event.data) {
                    panic!("an event the OpenAPI document does not allow: {e}");
                }
                let done = stop(&event);
                events.push(event);
                if done {
                    return events;
                }
            }
        }
    }
    events
}
