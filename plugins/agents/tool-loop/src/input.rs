//! The run's input, checked field by field so that each error names its field.

use serde_json::{Map, Value};

/// The most model calls a run may ask for: each step is one.
pub const MAX_STEPS: u64 = 64;
const DEFAULT_STEPS: u64 = 8;

/// What a run asks for.
#[derive(Debug, PartialEq)]
pub struct Input {
    pub prompt: String,
    pub system: Option<String>,
    pub max_steps: u64,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
}

/// Reads the input JSON text; the error says what to fix.
pub fn parse(text: &str) -> Result<Input, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("input is not valid JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("input must be a JSON object".into());
    };
    // Refused rather than ignored: a misspelt `max_step` should not silently run 8 steps.
    if let Some(unknown) = fields.keys().find(|k| {
        !matches!(
            k.as_str(),
            "prompt" | "system" | "max_steps" | "max_tokens" | "temperature"
        )
    }) {
        return Err(format!(
            "unknown field `{unknown}` (expected prompt, system, max_steps, max_tokens, temperature)"
        ));
    }

    let prompt = string(&fields, "prompt")?.ok_or("missing field `prompt`")?;
    if prompt.trim().is_empty() {
        return Err("field `prompt` must not be empty".into());
    }
    let system = string(&fields, "system")?;
    if system.as_deref().is_some_and(|s| s.trim().is_empty()) {
        return Err("field `system` must not be empty (leave it out instead)".into());
    }
    let max_steps = match integer(&fields, "max_steps")? {
        None => DEFAULT_STEPS,
        Some(n @ 1..=MAX_STEPS) => n,
        Some(n) => {
            return Err(format!(
                "field `max_steps` must be between 1 and {MAX_STEPS}, not {n}"
            ));
        }
    };
    let max_tokens = match integer(&fields, "max_tokens")? {
        None => None,
        Some(n) => match u32::try_from(n) {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(format!(
                    "field `max_tokens` must be between 1 and {}, not {n}",
                    u32::MAX
                ));
            }
        },
    };
    let temperature = match fields.get("temperature") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(t) if t >= 0.0 => Some(t),
            _ => return Err(format!("field `temperature` must be 0 or more, not {n}")),
        },
        Some(_) => return Err("field `temperature` must be a number".into()),
    };

    Ok(Input {
        prompt,
        system,
        max_steps,
        max_tokens,
        temperature,
    })
}

/// An optional string field; `null` counts as absent.
fn string(fields: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("field `{name}` must be a string")),
    }
}

/// An optional non-negative integer field; `null` counts as absent.
fn integer(fields: &Map<String, Value>, name: &str) -> Result<Option<u64>, String> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("field `{name}` must be a positive integer, not {n}")),
        Some(_) => Err(format!("field `{name}` must be an integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let input = parse(r#"{"prompt": "hi"}"#).unwrap();
        assert_eq!(
            input,
            Input {
                prompt: "hi".into(),
                system: None,
                max_steps: 8,
                max_tokens: None,
                temperature: None,
            }
        );
    }

    #[test]
    fn all_fields() {
        let input = parse(
            r#"{"prompt": "hi", "system": "be brief", "max_steps": 64, "max_tokens": 100, "temperature": 0.5}"#,
        )
        .unwrap();
        assert_eq!(input.system.as_deref(), Some("be brief"));
        assert_eq!(input.max_steps, 64);
        assert_eq!(input.max_tokens, Some(100));
        assert_eq!(input.temperature, Some(0.5));
    }

    #[test]
    fn errors_name_the_field() {
        for (text, field) in [
            ("[]", "object"),
            ("{", "JSON"),
            ("{}", "prompt"),
            (r#"{"prompt": " "}"#, "prompt"),
            (r#"{"prompt": 1}"#, "prompt"),
            (r#"{"prompt": "hi", "system": ""}"#, "system"),
            (r#"{"prompt": "hi", "max_steps": 0}"#, "max_steps"),
            (r#"{"prompt": "hi", "max_steps": 65}"#, "max_steps"),
            (r#"{"prompt": "hi", "max_steps": -1}"#, "max_steps"),
            (r#"{"prompt": "hi", "max_steps": 2.5}"#, "max_steps"),
            (r#"{"prompt": "hi", "max_tokens": 0}"#, "max_tokens"),
            (
                r#"{"prompt": "hi", "max_tokens": 4294967296}"#,
                "max_tokens",
            ),
            (r#"{"prompt": "hi", "temperature": "hot"}"#, "temperature"),
            (r#"{"prompt": "hi", "temperature": -1}"#, "temperature"),
            (r#"{"prompt": "hi", "max_step": 3}"#, "max_step"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(field), "{text}: {error}");
        }
    }
}
