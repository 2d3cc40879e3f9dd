//! `toolgate check`: the readiness checks against a running server, from where the command
//! runs. It reaches the API itself (check 1), then asks `POST /v1/preflight` for the rest (the
//! host's capacity, each decision with its reasons, the event self-test, the mode), prints
//! every check and exits non-zero when one fails.

use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub(crate) struct CheckArgs {
    /// The server's base URL.
    #[arg(long, env = "TOOLGATE_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// An API key (`Authorization: Bearer`) [default: $TOOLGATE_KEY].
    #[arg(long, env = "TOOLGATE_KEY", hide_env_values = true)]
    key: Option<String>,
    /// A tool the session will use (repeatable).
    #[arg(long = "tool", value_name = "TOOL")]
    tools: Vec<String>,
    /// A domain its tools will reach (repeatable).
    #[arg(long = "domain", value_name = "DOMAIN")]
    domains: Vec<String>,
    /// A path outside the workspace it will read (repeatable).
    #[arg(long = "file", value_name = "PATH")]
    files: Vec<String>,
    /// A secret it will read (repeatable).
    #[arg(long = "secret", value_name = "NAME")]
    secrets: Vec<String>,
    /// The model provider it will use.
    #[arg(long)]
    model_provider: Option<String>,
    /// The profile to open the session in [default: the key's].
    #[arg(long)]
    profile: Option<String>,
    /// A session request as `POST /v1/sessions` takes it (JSON); the flags add to it.
    #[arg(long, value_name = "FILE")]
    request: Option<PathBuf>,
    /// Skip the event self-test (a throwaway session running the bundled probe tool).
    #[arg(long)]
    no_event_test: bool,
    /// Print the checks as one JSON document.
    #[arg(long)]
    json: bool,
    /// How long each request may take.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    timeout_ms: u64,
}

/// One check as printed.
struct Line {
    check: String,
    name: Option<String>,
    ok: bool,
    detail: String,
}

/// The most of an answer read.
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

type Http = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<bytes::Bytes>,
>;

fn client() -> anyhow::Result<Http> {
    let tls = crate::sidecar::tls::client_config(&[])?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// What a request answered: status and body, or why there was no answer.
async fn send(
    http: &Http,
    method: http::Method,
    url: &str,
    key: Option<&str>,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<(http::StatusCode, Value), String> {
    let mut request = http::Request::builder().method(method).uri(url);
    if let Some(key) = key {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let payload = match body {
        Some(body) => {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
            bytes::Bytes::from(body.to_string())
        }
        None => bytes::Bytes::new(),
    };
    let request = request
        .body(Full::new(payload))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let exchange = async {
        let response = http.request(request).await.map_err(|e| {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            message
        })?;
        let status = response.status();
        // A server that is not toolgate may answer anything: read a bounded amount.
        let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| format!("the answer broke off or is over {MAX_ANSWER_BYTES} bytes: {e}"))?
            .to_bytes();
        let value = serde_json::from_slice(&body).unwrap_or_else(|_| {
            Value::String(String::from_utf8_lossy(&body).chars().take(512).collect())
        });
        Ok((status, value))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {} ms", timeout.as_millis()))?
}

/// The session request: the file's, with the flags added.
fn session_request(args: &CheckArgs) -> Result<Value, String> {
    let mut request = match &args.request {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let value: Value = serde_json::from_str(&text)
                .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
            if !value.is_object() {
                return Err(format!(
                    "{} must hold a JSON object (a session request)",
                    path.display()
                ));
            }
            value
        }
        None => json!({}),
    };
    for (field, items) in [
        ("tools", &args.tools),
        ("domains", &args.domains),
        ("files", &args.files),
        ("secrets", &args.secrets),
    ] {
        if items.is_empty() {
            continue;
        }
        let list = request
            .as_object_mut()
            .expect("an object")
            .entry(field)
            .or_insert_with(|| json!([]));
        let Some(list) = list.as_array_mut() else {
            return Err(format!("`{field}` of the request must be a list"));
        };
        list.extend(items.iter().map(|item| json!(item)));
    }
    if let Some(provider) = &args.model_provider {
        request["model_provider"] = json!(provider);
    }
    if let Some(profile) = &args.profile {
        request["profile"] = json!(profile);
    }
    Ok(request)
}

/// The start of a value, for a message.
fn excerpt(value: &Value) -> String {
    let text = value.to_string();
    let cut: String = text.chars().take(120).collect();
    if cut.len() < text.len() {
        format!("{cut}...")
    } else {
        cut
    }
}

fn problem_text(status: http::StatusCode, body: &Value) -> String {
    let detail = body["detail"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| body.to_string());
    match body["code"].as_str() {
        Some(code) => format!("{status} `{code}`: {detail}"),
        None => format!("{status}: {detail}"),
    }
}

pub(crate) async fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let base = args.server.trim_end_matches('/').to_owned();
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        eprintln!("error: --server must be an http(s) URL, not {base:?}");
        return Ok(ExitCode::from(super::EXIT_USAGE));
    }
    let request = match session_request(&args) {
        Ok(request) => request,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(super::EXIT_USAGE));
        }
    };
    let Some(key) = args.key.as_deref() else {
        eprintln!("error: give an API key with --key or TOOLGATE_KEY");
        return Ok(ExitCode::from(super::EXIT_USAGE));
    };
    let http = client()?;
    let timeout = Duration::from_millis(args.timeout_ms);
    let mut lines = Vec::new();

    // 1. The API, reached from here with this key.
    let info = send(
        &http,
        http::Method::GET,
        &format!("{base}/v1/info"),
        Some(key),
        None,
        timeout,
    )
    .await;
    let info = match info {
        Ok((status, info)) if status.is_success() && info["name"] != "toolgate" => {
            lines.push(Line {
                check: "api".into(),
                name: Some(base.clone()),
                ok: false,
                detail: format!(
                    "something answers, but not toolgate's API (GET /v1/info said {})",
                    excerpt(&info)
                ),
            });
            return finish(&lines, None, args.json);
        }
        Ok((status, info)) if status.is_success() => {
            lines.push(Line {
                check: "api".into(),
                name: Some(base.clone()),
                ok: true,
                detail: format!(
                    "reachable from here: {} {}, policy version {}",
                    info["name"].as_str().unwrap_or("?"),
                    info["version"].as_str().unwrap_or("?"),
                    info["policy"]["version"].as_str().unwrap_or("?")
                ),
            });
            info
        }
        Ok((status, body)) => {
            lines.push(Line {
                check: "api".into(),
                name: Some(base.clone()),
                ok: false,
                detail: format!("reached, but refused: {}", problem_text(status, &body)),
            });
            return finish(&lines, None, args.json);
        }
        Err(why) => {
            lines.push(Line {
                check: "api".into(),
                name: Some(base.clone()),
                ok: false,
                detail: format!("not reachable from here: {why}"),
            });
            return finish(&lines, None, args.json);
        }
    };

    // 2-5. The server's own checks.
    let answer = send(
        &http,
        http::Method::POST,
        &format!(
            "{base}/v1/preflight{}",
            if args.no_event_test {
                "?event_self_test=false"
            } else {
                ""
            }
        ),
        Some(key),
        Some(&request),
        timeout,
    )
    .await;
    match answer {
        Ok((status, preflight))
            if status.is_success()
                && preflight["ready"].is_boolean()
                && preflight["checks"]
                    .as_array()
                    .is_some_and(|c| !c.is_empty()) =>
        {
            for check in preflight["checks"].as_array().into_iter().flatten() {
                lines.push(Line {
                    check: check["check"].as_str().unwrap_or("?").to_owned(),
                    name: check["name"].as_str().map(str::to_owned),
                    ok: check["ok"].as_bool().unwrap_or(false),
                    detail: check["detail"].as_str().unwrap_or_default().to_owned(),
                });
            }
            // The server's own verdict counts too.
            if preflight["ready"] == false && lines.iter().all(|l| l.ok) {
                lines.push(Line {
                    check: "preflight".into(),
                    name: None,
                    ok: false,
                    detail: "the server says the session is not ready".into(),
                });
            }
        }
        Ok((status, body)) if status.is_success() => lines.push(Line {
            check: "preflight".into(),
            name: None,
            ok: false,
            detail: format!("not a preflight answer: {}", excerpt(&body)),
        }),
        Ok((status, body)) => lines.push(Line {
            check: "preflight".into(),
            name: None,
            ok: false,
            detail: problem_text(status, &body),
        }),
        Err(why) => lines.push(Line {
            check: "preflight".into(),
            name: None,
            ok: false,
            detail: why,
        }),
    }
    finish(&lines, info["mode"].as_str(), args.json)
}

/// Prints the checks; exit 0 when all passed, 1 otherwise.
fn finish(lines: &[Line], mode: Option<&str>, as_json: bool) -> anyhow::Result<ExitCode> {
    let ready = lines.iter().all(|l| l.ok);
    if as_json {
        let checks: Vec<Value> = lines
            .iter()
            .map(|l| json!({ "check": l.check, "name": l.name, "ok": l.ok, "detail": l.detail }))
            .collect();
        super::print_json(&json!({ "ready": ready, "mode": mode, "checks": checks }))?;
    } else {
        let mut out = String::new();
        for line in lines {
            let what = match &line.name {
                Some(name) => format!("{} {name}", line.check),
                None => line.check.clone(),
            };
            out.push_str(&format!(
                "{}  {what:<32}  {}\n",
                if line.ok { "PASS" } else { "FAIL" },
                line.detail
            ));
        }
        let failed = lines.iter().filter(|l| !l.ok).count();
        if let Some(mode) = mode {
            out.push_str(&format!("mode: {mode}\n"));
        }
        if ready {
            out.push_str(&format!("ready: all {} checks passed\n", lines.len()));
        } else {
            out.push_str(&format!(
                "not ready: {failed} of {} checks failed\n",
                lines.len()
            ));
        }
        use std::io::Write;
        let _ = std::io::stdout().lock().write_all(out.as_bytes());
    }
    Ok(if ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
