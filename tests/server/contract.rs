//! Real responses checked against the OpenAPI document: the operation is found by method, path
//! template and status, the content type must be one it documents, and a JSON body must match
//! its schema (draft 2020-12, as OpenAPI 3.1 schemas are).

use reqwest::Method;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

/// One documented answer: method, path template and status.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Answer {
    pub method: String,
    pub template: String,
    pub status: u16,
}

pub struct Contract {
    doc: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

static CONTRACT: LazyLock<Contract> = LazyLock::new(|| Contract {
    doc: toolgate::server::api_doc::document(),
    validators: Mutex::default(),
});

impl Contract {
    pub fn get() -> &'static Contract {
        &CONTRACT
    }

    /// Every documented operation, as `(method, template)`.
    pub fn operations(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (template, item) in self.doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if ["get", "put", "post", "delete", "patch", "head", "options"]
                    .contains(&method.as_str())
                {
                    out.push((method.to_uppercase(), template.clone()));
                }
            }
        }
        out
    }

    /// The documented path `path` is an instance of: the one with the most literal segments.
    pub fn template(&self, path: &str) -> Option<String> {
        let segments: Vec<&str> = path.split('/').collect();
        self.doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .filter_map(|template| {
                let parts: Vec<&str> = template.split('/').collect();
                // A last `{path}` takes the rest of the path, `/`s included (axum's `{*path}`).
                let rest = parts.last() == Some(&"{path}") && segments.len() > parts.len();
                if parts.len() != segments.len() && !rest {
                    return None;
                }
                let mut literal = 0;
                for (part, segment) in parts.iter().zip(&segments) {
                    if part.starts_with('{') && part.ends_with('}') {
                        if segment.is_empty() {
                            return None;
                        }
                    } else if part == segment {
                        literal += 1;
                    } else {
                        return None;
                    }
                }
                Some((literal, template.clone()))
            })
            .max()
            .map(|(_, template)| template)
    }

    /// Checks one response. `body` is `None` for a stream that is not read here. Returns the
    /// documented answer it is, or `None` for an answer no operation owns (an unknown route's
    /// 404, an undocumented method's 405).
    pub fn check(
        &self,
        method: &Method,
        path: &str,
        status: u16,
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<Option<Answer>, String> {
        let Some(template) = self.template(path) else {
            return if status == 404 {
                Ok(None)
            } else {
                Err(format!("no documented path matches `{path}`"))
            };
        };
        let method_key = method.as_str().to_lowercase();
        let Some(operation) = self.doc["paths"][&template].get(&method_key) else {
            return if status == 405 {
                Ok(None)
            } else {
                Err(format!("`{method} {template}` is not documented"))
            };
        };
        let mut response = operation["responses"]
            .get(status.to_string())
            .ok_or_else(|| format!("`{method} {template}` does not document status {status}"))?;
        if let Some(reference) = response.get("$ref").and_then(Value::as_str) {
            response = self.resolve(reference)?;
        }
        let answer = Answer {
            method: method.as_str().to_owned(),
            template: template.clone(),
            status,
        };
        let essence = |text: &str| text.split(';').next().unwrap_or_default().trim().to_owned();
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            return match body {
                Some(body) if !body.is_empty() => Err(format!(
                    "`{method} {template}` {status} documents no body, got {} bytes",
                    body.len()
                )),
                _ => Ok(Some(answer)),
            };
        };
        let received = essence(content_type.ok_or("no content-type")?);
        let (documented, media) = content
            .iter()
            .find(|(documented, _)| essence(documented) == received)
            .ok_or_else(|| {
                format!(
                    "`{method} {template}` {status} is documented as {:?}, not `{received}`",
                    content.keys().collect::<Vec<_>>()
                )
            })?;
        let Some(body) = body else {
            return Ok(Some(answer));
        };
        if !received.ends_with("json") {
            return Ok(Some(answer));
        }
        let instance: Value = serde_json::from_slice(body).map_err(|e| {
            format!(
                "the body is not JSON ({e}): {}",
                String::from_utf8_lossy(body)
            )
        })?;
        let key = format!("{method} {template} {status} {documented}");
        let validator = self.validator(&key, &media["schema"])?;
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("at `{}`: {e}", e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(Some(answer))
        } else {
            Err(format!(
                "the body does not match the schema of `{key}`:\n  {}\nbody: {instance}",
                errors.join("\n  ")
            ))
        }
    }

    /// Checks the `data:` of an SSE event against the schema the stream documents for its name.
    pub fn check_event(&self, name: &str, data: &Value) -> Result<(), String> {
        let schema = self.doc["paths"]["/v1/sessions/{id}/events"]["get"]["x-events"]
            .get(name)
            .ok_or_else(|| format!("the event `{name}` is not documented"))?;
        let key = format!("event {name}");
        let validator = self.validator(&key, schema)?;
        let errors: Vec<String> = validator
            .iter_errors(data)
            .map(|e| format!("at `{}`: {e}", e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the data of `{name}` does not match its schema:\n  {}\ndata: {data}",
                errors.join("\n  ")
            ))
        }
    }

    fn resolve(&self, reference: &str) -> Result<&Value, String> {
        let pointer = reference
            .strip_prefix('#')
            .ok_or_else(|| format!("`{reference}` is not a local reference"))?;
        self.doc
            .pointer(pointer)
            .ok_or_else(|| format!("`{reference}` points at nothing"))
    }

    /// A validator of `schema` whose `$ref`s reach the document's schemas (moved under `$defs`).
    fn validator(&self, key: &str, schema: &Value) -> Result<Arc<jsonschema::Validator>, String> {
        let mut validators = self.validators.lock().unwrap();
        if let Some(validator) = validators.get(key) {
            return Ok(validator.clone());
        }
        let mut root = serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "allOf": [schema],
            "$defs": self.doc["components"]["schemas"],
        });
        let text = root
            .to_string()
            .replace("#/components/schemas/", "#/$defs/");
        root = serde_json::from_str(&text).unwrap();
        let validator = Arc::new(
            jsonschema::draft202012::new(&root)
                .map_err(|e| format!("the schema of `{key}` does not compile: {e}"))?,
        );
        validators.insert(key.to_owned(), validator.clone());
        Ok(validator)
    }
}

#[test]
fn a_body_that_does_not_match_its_schema_is_refused() {
    let contract = Contract::get();
    let json = Some("application/json");
    let session = "/v1/sessions/s_1";
    let wrong = contract.check(&Method::GET, session, 200, json, Some(br#"{"id": 1}"#));
    assert!(wrong.unwrap_err().contains("does not match"));
    let problem =
        br#"{"type":"t","title":"Not Found","status":404,"code":"conflict","detail":"d"}"#;
    let wrong_code = contract.check(
        &Method::GET,
        session,
        404,
        Some("application/problem+json"),
        Some(problem),
    );
    assert!(wrong_code.unwrap_err().contains("does not match"));
    let undocumented = contract.check(&Method::GET, session, 418, json, Some(b"{}"));
    assert!(
        undocumented
            .unwrap_err()
            .contains("does not document status 418")
    );
    let wrong_type = contract.check(&Method::GET, session, 200, Some("text/html"), Some(b""));
    assert!(wrong_type.unwrap_err().contains("not `text/html`"));
    assert_eq!(
        contract.check(&Method::GET, "/nope", 404, None, Some(b"")),
        Ok(None),
        "an unknown route's 404 belongs to no operation"
    );
}
