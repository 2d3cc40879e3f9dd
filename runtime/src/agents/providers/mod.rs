//! Model providers an operator configures (`[[model_providers]]`), and the client that asks
//! them for completions: the request mapped to the provider's wire format, the credential
//! added by the host (never seen by an agent), a deadline per attempt, retries with backoff on
//! 429, 5xx and lost connections, the answer mapped back.

mod anthropic;
mod names;
mod openai;

use super::model::{Completion, CompletionRequest, ModelError};
use crate::sandbox::Secret;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use names::ToolNames;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Which wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI chat completions: `POST {base_url}/chat/completions` (`base_url` ends in `/v1`).
    Openai,
    /// Anthropic Messages: `POST {base_url}/v1/messages`.
    Anthropic,
}

/// One `[[model_providers]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// How policies name it: `ModelProvider::"<name>"`.
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    /// The models runs may ask of it.
    pub models: Vec<String>,
    /// The secret holding its API key; none for a provider that takes no key.
    #[serde(default)]
    pub api_key_secret: Option<String>,
    /// Each attempt's deadline (default 60,000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Attempts after the first on 429, 5xx or a lost connection (default 2).
    #[serde(default)]
    pub max_retries: Option<u32>,
}

/// The longest answer read from a provider.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// The first wait before a retry; each next one doubles, and a `Retry-After` up to
/// [`MAX_BACKOFF`] is honoured.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl ProviderConfig {
    /// Checks the table; the reason names what is wrong.
    pub fn check(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !name_ok {
            return Err(format!(
                "model provider name `{}` must be 1-64 of a-z, 0-9, `-` and `_`",
                self.name
            ));
        }
        let url: http::Uri = self.base_url.parse().map_err(|e| {
            format!(
                "model provider `{}`: base_url `{}` is not a URL: {e}",
                self.name, self.base_url
            )
        })?;
        if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
            return Err(format!(
                "model provider `{}`: base_url must be an http:// or https:// URL with a host",
                self.name
            ));
        }
        if self.models.is_empty() || self.models.iter().any(|m| m.trim().is_empty()) {
            return Err(format!(
                "model provider `{}`: `models` must list at least one model, none empty",
                self.name
            ));
        }
        if self.timeout_ms == Some(0) {
            return Err(format!(
                "model provider `{}`: timeout_ms must be above 0",
                self.name
            ));
        }
        if self.max_retries.is_some_and(|n| n > 10) {
            return Err(format!(
                "model provider `{}`: max_retries is at most 10",
                self.name
            ));
        }
        Ok(())
    }
}

type Http = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<bytes::Bytes>,
>;

/// One configured provider, its key resolved.
struct Provider {
    config: ProviderConfig,
    key: Option<Secret>,
}

/// The configured providers, by name.
pub struct Providers {
    providers: BTreeMap<String, Provider>,
    http: Http,
}

impl Providers {
    /// The providers of the config, each key read from `secrets`. A provider whose secret is
    /// missing is refused: a run would only fail later, at its first call.
    pub fn new(
        configs: &[ProviderConfig],
        secrets: &crate::secrets::SecretStore,
    ) -> Result<Self, String> {
        let mut providers = BTreeMap::new();
        for config in configs {
            config.check()?;
            let key = match &config.api_key_secret {
                None => None,
                Some(name) => Some(secrets.select([name.as_str()]).remove(name).ok_or_else(
                    || {
                        format!(
                            "model provider `{}`: no secret `{name}` (api_key_secret)",
                            config.name
                        )
                    },
                )?),
            };
            if providers
                .insert(
                    config.name.clone(),
                    Provider {
                        config: config.clone(),
                        key,
                    },
                )
                .is_some()
            {
                return Err(format!(
                    "model provider `{}` is configured twice",
                    config.name
                ));
            }
        }
        let tls = crate::sidecar::tls::client_config(&[]).map_err(|e| e.to_string())?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            providers,
            http: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }

    /// The models `provider` offers, the default first; `None` if it is not configured.
    pub fn models(&self, provider: &str) -> Option<&[String]> {
        self.providers
            .get(provider)
            .map(|p| p.config.models.as_slice())
    }

    /// Whether `provider` is configured and offers `model`.
    pub fn offers(&self, provider: &str, model: &str) -> bool {
        self.providers
            .get(provider)
            .is_some_and(|p| p.config.models.iter().any(|m| m == model))
    }

    /// Asks `provider` for a completion of `request`.
    pub async fn complete(
        &self,
        provider: &str,
        request: &CompletionRequest,
    ) -> Result<Completion, ModelError> {
        let Some(p) = self.providers.get(provider) else {
            return Err(ModelError::UnknownModel(format!(
                "no model provider `{provider}`"
            )));
        };
        if !p.config.models.contains(&request.model) {
            return Err(ModelError::UnknownModel(format!(
                "provider `{provider}` offers {}, not `{}`",
                p.config.models.join(", "),
                request.model
            )));
        }
        if request.messages.is_empty() {
            return Err(ModelError::InvalidRequest("no messages".into()));
        }
        let names = ToolNames::new(request.tools.iter().map(|t| t.name.as_str()));
        let (url, body) = match p.config.kind {
            ProviderKind::Openai => (
                join(&p.config.base_url, openai::PATH),
                openai::request_body(request, &names),
            ),
            ProviderKind::Anthropic => (
                join(&p.config.base_url, anthropic::PATH),
                anthropic::request_body(request, &names)?,
            ),
        };
        let body = body.to_string();
        let request_bytes = body.len();
        let answer = self.send_with_retries(p, &url, body).await?;
        let completion = match p.config.kind {
            ProviderKind::Openai => openai::completion(&answer, &names, request_bytes),
            ProviderKind::Anthropic => anthropic::completion(&answer, &names, request_bytes),
        };
        completion
            .map(|c| redact_completion(c, p.key.as_ref()))
            .map_err(|e| redact_error(e, p.key.as_ref()))
    }

    /// POSTs `body`, retrying what may pass; the answer as JSON.
    async fn send_with_retries(
        &self,
        p: &Provider,
        url: &str,
        body: String,
    ) -> Result<Value, ModelError> {
        let timeout = Duration::from_millis(p.config.timeout_ms.unwrap_or(60_000));
        let retries = p.config.max_retries.unwrap_or(2);
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            let outcome = tokio::time::timeout(timeout, self.send(p, url, body.clone())).await;
            let (error, wait) = match outcome {
                Err(_) => (
                    ModelError::Timeout(format!(
                        "provider `{}` did not answer within {} ms",
                        p.config.name,
                        timeout.as_millis()
                    )),
                    None,
                ),
                Ok(Ok(Sent::Answer(answer))) => return Ok(answer),
                Ok(Ok(Sent::Retryable { error, retry_after })) => (error, retry_after),
                Ok(Err(error)) => return Err(redact_error(error, p.key.as_ref())),
            };
            if attempt >= retries {
                let error = match error {
                    ModelError::Timeout(m) => {
                        ModelError::Timeout(format!("{m} (after {} attempts)", attempt + 1))
                    }
                    ModelError::Provider(m) => {
                        ModelError::Provider(format!("{m} (after {} attempts)", attempt + 1))
                    }
                    other => other,
                };
                return Err(redact_error(error, p.key.as_ref()));
            }
            attempt += 1;
            let wait = wait.unwrap_or(backoff).min(MAX_BACKOFF);
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn send(&self, p: &Provider, url: &str, body: String) -> Result<Sent, ModelError> {
        let mut request = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json");
        if let Some(key) = &p.key {
            request = match p.config.kind {
                ProviderKind::Openai => request.header(
                    http::header::AUTHORIZATION,
                    format!("Bearer {}", key.expose()),
                ),
                ProviderKind::Anthropic => request.header("x-api-key", key.expose()),
            };
        }
        if p.config.kind == ProviderKind::Anthropic {
            request = request.header("anthropic-version", anthropic::VERSION);
        }
        let request = request
            .body(Full::new(bytes::Bytes::from(body)))
            .map_err(|e| ModelError::InvalidRequest(format!("cannot build the request: {e}")))?;
        let response = match self.http.request(request).await {
            Ok(response) => response,
            Err(error) => {
                return Ok(Sent::Retryable {
                    error: ModelError::Provider(format!(
                        "cannot reach provider `{}`: {error}",
                        p.config.name
                    )),
                    retry_after: None,
                });
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = match Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                return Err(ModelError::Provider(format!(
                    "provider `{}`'s answer is larger than {MAX_ANSWER_BYTES} bytes",
                    p.config.name
                )));
            }
            // The connection was lost mid-answer: worth another attempt, like a lost connect.
            Err(error) => {
                return Ok(Sent::Retryable {
                    error: ModelError::Provider(format!(
                        "provider `{}`'s answer was cut off: {error}",
                        p.config.name
                    )),
                    retry_after: None,
                });
            }
        };
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map(Sent::Answer)
                .map_err(|e| {
                    ModelError::Provider(format!(
                        "provider `{}` answered something that is not JSON: {e}",
                        p.config.name
                    ))
                });
        }
        let error = ModelError::Provider(format!(
            "provider `{}` answered {status}: {}",
            p.config.name,
            error_text(&bytes, p.key.as_ref())
        ));
        if status == http::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Ok(Sent::Retryable { error, retry_after })
        } else {
            Err(error)
        }
    }
}

/// What one attempt gave.
enum Sent {
    Answer(Value),
    Retryable {
        error: ModelError,
        retry_after: Option<Duration>,
    },
}

/// A token count as the provider reported it: a whole number, or one written as a float or a
/// string. Missing or unreadable, it is estimated from `bytes` (about 3 bytes a token, more
/// than most models use), so token limits never take an answer for free.
fn tokens(reported: &Value, bytes: usize) -> u64 {
    let read = match reported {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f.ceil() as u64)
        }),
        Value::String(text) => text.trim().parse::<u64>().ok(),
        _ => None,
    };
    read.unwrap_or_else(|| (bytes as u64).div_ceil(3))
}

/// The size of an answer, to estimate its tokens when the provider does not say.
fn answer_bytes(content: &str, tool_calls: &[super::model::ToolCall]) -> usize {
    content.len()
        + tool_calls
            .iter()
            .map(|c| c.name.len() + c.arguments.len())
            .sum::<usize>()
}

/// `base` and `path` with one `/` between them.
fn join(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

/// What a provider's error answer says, short: its `error.message` when it has one. The key
/// is taken out before the text is cut, so no part of it is left.
fn error_text(bytes: &[u8], key: Option<&Secret>) -> String {
    let text = serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| {
            v["error"]["message"]
                .as_str()
                .or_else(|| v["error"].as_str())
                .or_else(|| v["message"].as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned());
    let text: String = text.chars().filter(|c| !c.is_control()).collect();
    let text = match key.map(Secret::expose).filter(|k| k.len() >= 4) {
        Some(key) => text.replace(key, "[redacted]"),
        None => text,
    };
    let mut text: String = text.chars().take(500).collect();
    if text.is_empty() {
        text = "(no body)".into();
    }
    text
}

/// The error with any copy of the key taken out (a provider may echo what it was sent).
fn redact_error(error: ModelError, key: Option<&Secret>) -> ModelError {
    let Some(key) = key.map(Secret::expose).filter(|k| k.len() >= 4) else {
        return error;
    };
    let clean = |text: String| text.replace(key, "[redacted]");
    match error {
        ModelError::Denied(t) => ModelError::Denied(clean(t)),
        ModelError::LimitExceeded(t) => ModelError::LimitExceeded(clean(t)),
        ModelError::UnknownModel(t) => ModelError::UnknownModel(clean(t)),
        ModelError::Timeout(t) => ModelError::Timeout(clean(t)),
        ModelError::Provider(t) => ModelError::Provider(clean(t)),
        ModelError::InvalidRequest(t) => ModelError::InvalidRequest(clean(t)),
    }
}

/// The answer with any copy of the key taken out: a provider that echoes its request must
/// not hand the key to the agent.
fn redact_completion(mut completion: Completion, key: Option<&Secret>) -> Completion {
    let Some(key) = key.map(Secret::expose).filter(|k| k.len() >= 4) else {
        return completion;
    };
    let clean = |text: &mut String| {
        if text.contains(key) {
            *text = text.replace(key, "[redacted]");
        }
    };
    clean(&mut completion.content);
    clean(&mut completion.model);
    for call in &mut completion.tool_calls {
        clean(&mut call.id);
        clean(&mut call.name);
        // Arguments are JSON: the key may hide in escapes (`\u0073k-...`), so the strings are
        // read first.
        if let Ok(mut arguments) = serde_json::from_str::<Value>(&call.arguments)
            && redact_strings(&mut arguments, key)
        {
            call.arguments = arguments.to_string();
        }
        clean(&mut call.arguments);
    }
    completion
}

/// Replaces the key in every string (keys included) of `value`; whether any was.
fn redact_strings(value: &mut Value, key: &str) -> bool {
    match value {
        Value::String(text) if text.contains(key) => {
            *text = text.replace(key, "[redacted]");
            true
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |found, item| redact_strings(item, key) | found),
        Value::Object(fields) => {
            let hidden: Vec<String> = fields.keys().filter(|k| k.contains(key)).cloned().collect();
            let mut found = !hidden.is_empty();
            for name in hidden {
                if let Some(v) = fields.remove(&name) {
                    fields.insert(name.replace(key, "[redacted]"), v);
                }
            }
            for item in fields.values_mut() {
                found |= redact_strings(item, key);
            }
            found
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
