//! Where secret values come from: environment variables `TOOLGATE_SECRET_<NAME>`
//! and/or a JSON file `{"name": "value"}`. Values are handed to a tool only
//! through the host `get-secret` import, after a `read_secret` decision, and
//! never appear in logs, events, errors or decision records.

use crate::sandbox::{Credential, Secret};
use std::collections::BTreeMap;
use std::path::Path;

pub const ENV_PREFIX: &str = "TOOLGATE_SECRET_";

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read secrets file {path}: {message}")]
    File { path: String, message: String },
    #[error("[[credentials]] for host `{host}`: {message}")]
    Credential { host: String, message: String },
}

/// One `[[credentials]]` table: a secret the host adds to tools' requests to one host.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialBinding {
    /// The secret's name (a session must name it, and policy allow `read_secret` on it).
    pub secret: String,
    /// The exact host name (or IP address) requests go to, e.g. `api.github.com`.
    pub host: String,
    /// The port requests go to (default: the scheme's, 443 or 80 for plain HTTP).
    #[serde(default)]
    pub port: Option<u16>,
    /// The header to set (default `authorization`).
    #[serde(default = "authorization")]
    pub header: String,
    /// The header's value, `{secret}` standing for the secret (default `Bearer {secret}`).
    #[serde(default = "bearer")]
    pub value: String,
    /// Also over plain HTTP (default: HTTPS only, so the value never crosses a network in clear).
    #[serde(default)]
    pub allow_http: bool,
}

fn authorization() -> String {
    "authorization".into()
}

fn bearer() -> String {
    "Bearer {secret}".into()
}

/// Headers a credential may not set: they frame the request or the connection, so the host
/// sets them.
const FRAMING_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
];

/// The configured secrets, by name.
#[derive(Debug, Clone, Default)]
pub struct SecretStore {
    values: BTreeMap<String, Secret>,
}

impl SecretStore {
    /// Secrets from `TOOLGATE_SECRET_<NAME>` variables (name lowercased) and,
    /// if given, a JSON file; the file wins on conflicts.
    pub fn load(
        env: impl IntoIterator<Item = (String, String)>,
        file: Option<&Path>,
    ) -> Result<Self, SecretsError> {
        let mut values = BTreeMap::new();
        for (key, value) in env {
            if let Some(name) = key.strip_prefix(ENV_PREFIX).filter(|n| !n.is_empty()) {
                values.insert(name.to_ascii_lowercase(), Secret::new(value));
            }
        }
        if let Some(path) = file {
            let fail = |message: String| SecretsError::File {
                path: path.display().to_string(),
                message,
            };
            let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
            // Deliberately no detail from the parser: it could quote a value.
            let parsed: BTreeMap<String, String> = serde_json::from_str(&text).map_err(|e| {
                fail(format!(
                    "not a JSON object of strings (line {}, column {})",
                    e.line(),
                    e.column()
                ))
            })?;
            values.extend(parsed.into_iter().map(|(k, v)| (k, Secret::new(v))));
        }
        Ok(Self { values })
    }

    pub fn from_env_and_file(file: Option<&Path>) -> Result<Self, SecretsError> {
        Self::load(std::env::vars(), file)
    }

    pub fn insert(&mut self, name: impl Into<String>, value: Secret) {
        self.values.insert(name.into(), value);
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// The named secrets that exist (to grant a task); unknown names are skipped.
    pub fn select<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, Secret> {
        names
            .into_iter()
            .filter_map(|n| self.values.get(n).map(|v| (n.to_owned(), v.clone())))
            .collect()
    }

    pub fn all(&self) -> BTreeMap<String, Secret> {
        self.values.clone()
    }

    /// Checks the `[[credentials]]` tables and resolves their values. A secret that does not
    /// exist, a bad host or header, or a value without `{secret}` is refused with the reason.
    pub fn bind(&self, bindings: &[CredentialBinding]) -> Result<Vec<Credential>, SecretsError> {
        bindings.iter().map(|b| self.bind_one(b)).collect()
    }

    fn bind_one(&self, binding: &CredentialBinding) -> Result<Credential, SecretsError> {
        let fail = |message: String| SecretsError::Credential {
            host: binding.host.clone(),
            message,
        };
        let host = binding.host.trim().to_ascii_lowercase();
        // As the request's URI gives it: a name, an IPv4 address, or an IPv6 one unbracketed.
        let unbracketed = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&host)
            .to_owned();
        let is_ip = unbracketed.parse::<std::net::IpAddr>().is_ok();
        let is_name = !unbracketed.is_empty()
            && unbracketed.len() <= 253
            && unbracketed.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !is_ip && !is_name {
            return Err(fail(
                "`host` must be a host name or IP address, without scheme, port or path \
                 (a port goes in `port`)"
                    .into(),
            ));
        }
        let host = unbracketed;
        let header = binding.header.trim().to_ascii_lowercase();
        if http::HeaderName::try_from(header.as_str()).is_err() {
            return Err(fail(format!("`{}` is not a header name", binding.header)));
        }
        if FRAMING_HEADERS.contains(&header.as_str()) {
            return Err(fail(format!(
                "the header `{header}` frames the request; it cannot hold a credential"
            )));
        }
        if binding.value.matches("{secret}").count() != 1 {
            return Err(fail("`value` must hold `{secret}` exactly once".into()));
        }
        if http::HeaderValue::try_from(binding.value.replace("{secret}", "")).is_err() {
            return Err(fail("`value` holds a control character".into()));
        }
        if binding.port == Some(0) {
            return Err(fail("`port` must be 1 to 65535".into()));
        }
        let Some(secret) = self.values.get(&binding.secret) else {
            return Err(fail(format!(
                "there is no secret `{}` (TOOLGATE_SECRET_<NAME> or the secrets file)",
                binding.secret
            )));
        };
        if secret.expose().trim().is_empty() {
            return Err(fail(format!("the secret `{}` is empty", binding.secret)));
        }
        let value = binding.value.replace("{secret}", secret.expose());
        // Deliberately no detail: it would quote the value.
        if http::HeaderValue::try_from(value.as_str()).is_err() {
            return Err(fail(format!(
                "the secret `{}` cannot be sent in a header (it holds a control character)",
                binding.secret
            )));
        }
        Ok(Credential {
            secret: binding.secret.clone(),
            host,
            port: binding.port,
            header,
            value: Secret::new(value),
            allow_http: binding.allow_http,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_and_file_secrets_merge() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secrets.json");
        std::fs::write(&file, r#"{"github_token": "from-file", "db": "pw"}"#).unwrap();
        let env = [
            (
                "TOOLGATE_SECRET_GITHUB_TOKEN".to_owned(),
                "from-env".to_owned(),
            ),
            ("TOOLGATE_SECRET_API".to_owned(), "k".to_owned()),
            ("PATH".to_owned(), "/bin".to_owned()),
        ];
        let store = SecretStore::load(env, Some(&file)).unwrap();
        assert_eq!(
            store.names().collect::<Vec<_>>(),
            ["api", "db", "github_token"]
        );
        assert_eq!(
            store.select(["github_token"])["github_token"].expose(),
            "from-file"
        );
    }

    #[test]
    fn a_bad_file_never_quotes_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secrets.json");
        std::fs::write(&file, r#"{"token": hunter2-unquoted}"#).unwrap();
        let error = SecretStore::load([], Some(&file)).unwrap_err().to_string();
        assert!(!error.contains("hunter2"), "{error}");
    }
}
